//! A throwaway `docker-registry` (CNCF distribution 2.8, Debian's package) on
//! 127.0.0.1 with filesystem storage in a temporary directory.
//!
//! The registry is started with `http.addr: 127.0.0.1:0`; the port it got is
//! read from its log line `listening on 127.0.0.1:PORT`. Dropping the
//! [`Registry`] kills the process and removes its storage.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::tls::TestCa;

/// Where Debian installs the registry binary; `DOCKER_REGISTRY_BIN` overrides.
pub const DEFAULT_REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// The user of [`Registry::start_with_test_auth`].
pub const TEST_USER: &str = "mirror";
/// Its password (a throwaway value for a loopback test registry).
pub const TEST_PASSWORD: &str = "s3cret";
/// htpasswd line for TEST_USER / TEST_PASSWORD (bcrypt, cost 4 so that the
/// registry's check on every request stays cheap).
pub const TEST_HTPASSWD: &str =
    "mirror:$2b$04$unH4uI.rWp83r/r9xkWJgefQQcHGAiQjkqbHnVKMIWzu1FppaspWS\n";

/// How long to wait for the registry to report its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running registry. Killed and cleaned up on drop.
pub struct Registry {
    child: Option<Child>,
    port: u16,
    dir: Option<tempfile::TempDir>,
    log_path: PathBuf,
    /// Serving HTTPS (`http.tls`) instead of plain HTTP.
    https: bool,
}

impl Registry {
    /// Start a registry with no authentication.
    pub fn start() -> Result<Registry> {
        Self::start_with(None, None)
    }

    /// Start a registry that requires HTTP basic auth for every request.
    /// `htpasswd` is the content of an htpasswd file with bcrypt entries
    /// (`user:$2y$...`), as distribution accepts.
    pub fn start_with_htpasswd(htpasswd: &str) -> Result<Registry> {
        Self::start_with(Some(htpasswd), None)
    }

    /// Start a registry serving HTTPS with `ca`'s server certificate and
    /// requiring basic auth for [`TEST_USER`] / [`TEST_PASSWORD`].
    pub fn start_https_with_test_auth(ca: &TestCa) -> Result<Registry> {
        Self::start_with(Some(TEST_HTPASSWD), Some(ca))
    }

    /// Start a registry with basic auth for [`TEST_USER`] / [`TEST_PASSWORD`].
    pub fn start_with_test_auth() -> Result<Registry> {
        Self::start_with_htpasswd(TEST_HTPASSWD)
    }

    fn start_with(htpasswd: Option<&str>, tls: Option<&TestCa>) -> Result<Registry> {
        let bin = std::env::var_os("DOCKER_REGISTRY_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_REGISTRY_BIN));
        if !bin.exists() {
            bail!(
                "{} not found: install Debian's docker-registry (run tests/setup.sh) \
                 or point DOCKER_REGISTRY_BIN at it",
                bin.display()
            );
        }
        let dir = storage_parent()
            .and_then(|parent| {
                tempfile::Builder::new()
                    .prefix("pm-registry-")
                    .tempdir_in(parent)
                    .ok()
            })
            .map(Ok)
            .unwrap_or_else(|| tempfile::Builder::new().prefix("pm-registry-").tempdir())
            .context("creating the registry's temporary directory")?;
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage)?;
        let auth = match htpasswd {
            Some(content) => {
                let path = dir.path().join("htpasswd");
                fs::write(&path, content)?;
                format!(
                    "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
                    path.display()
                )
            }
            None => String::new(),
        };
        let tls_config = match tls {
            Some(ca) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                ca.server_cert().display(),
                ca.server_key().display()
            ),
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:0\n  secret: packages-mirror-tests\n\
             {tls_config}{auth}",
            storage = storage.display()
        );
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config)?;
        let log_path = dir.path().join("registry.log");
        let out_path = dir.path().join("registry.out");
        let log = fs::File::create(&log_path)?;
        let out = fs::File::create(&out_path)?;
        let child = Command::new(&bin)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut registry = Registry {
            child: Some(child),
            port: 0,
            dir: Some(dir),
            log_path,
            https: tls.is_some(),
        };
        registry.port = registry.wait_for_port(&out_path)?;
        Ok(registry)
    }

    fn wait_for_port(&mut self, out_path: &Path) -> Result<u16> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            for path in [self.log_path.as_path(), out_path] {
                let text = read_lossy(path);
                if let Some(port) = parse_listening_port(&text) {
                    return Ok(port);
                }
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "docker-registry exited ({status}) before listening; its log:\n{}{}",
                    read_lossy(&self.log_path),
                    read_lossy(out_path)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "docker-registry did not report `listening on 127.0.0.1:PORT` within {:?}; its log:\n{}",
                    START_TIMEOUT,
                    read_lossy(&self.log_path)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The port the registry listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, the registry host as a `--source` prefix.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT` (`https://` when serving HTTPS).
    pub fn base_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The registry's log so far (for failure messages).
    pub fn log(&self) -> String {
        read_lossy(&self.log_path)
    }

    /// Stop the registry now (also done on drop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where registry storage goes: `PM_REGISTRY_TMPDIR` if set, else
/// `/dev/shm` when it is a writable directory (the registry syncs every
/// upload to disk, which makes seeding ~20x slower on a real disk), else
/// the default temporary directory (`None`).
fn storage_parent() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PM_REGISTRY_TMPDIR") {
        return Some(PathBuf::from(dir));
    }
    let shm = Path::new("/dev/shm");
    let writable = shm.is_dir()
        && tempfile::Builder::new()
            .prefix("pm-probe-")
            .tempfile_in(shm)
            .is_ok();
    writable.then(|| shm.to_path_buf())
}

fn read_lossy(path: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Find `listening on 127.0.0.1:PORT` in a registry log.
pub fn parse_listening_port(log: &str) -> Option<u16> {
    const NEEDLE: &str = "listening on 127.0.0.1:";
    let start = log.find(NEEDLE)? + NEEDLE.len();
    let digits: String = log[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok().filter(|p| *p != 0)
}

/// A TCP port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    port
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn parses_port_from_log_line() {
        let log = "time=\"x\" level=info msg=\"redis not configured\"\n\
                   time=\"x\" level=info msg=\"listening on 127.0.0.1:45017\" go.version=go1.19.8\n";
        assert_eq!(parse_listening_port(log), Some(45017));
        assert_eq!(parse_listening_port("nothing yet"), None);
        assert_eq!(parse_listening_port("listening on 127.0.0.1:"), None);
    }
}
