//! Where the source registry's credentials come from.
//!
//! In order, the first that applies wins:
//! 1. `--source-login`/`--source-password` (or `D8_MIRROR_SOURCE_LOGIN` /
//!    `D8_MIRROR_SOURCE_PASSWORD`; a flag beats its variable);
//! 2. `--license TOKEN`, sent as login `license-token`;
//! 3. the file named by `REGISTRY_AUTH_FILE` (containers-auth.json: `auths`);
//! 4. Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//!    `~/.docker/config.json`): `credHelpers[host]`, then `auths`, then
//!    `credsStore`, the helpers being `docker-credential-<name>` programs on
//!    `PATH`;
//! 5. anonymous.
//!
//! Secrets never appear in the errors of this module: they name files,
//! registries and helpers only.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;

use super::auth::Credentials;

/// The login `--license` tokens are sent with.
pub const LICENSE_LOGIN: &str = "license-token";

/// What the command line (and its environment variables) gave.
#[derive(Default, Clone)]
pub struct Explicit {
    pub login: Option<String>,
    pub password: Option<String>,
    pub license: Option<String>,
}

/// Credentials and a description of where they came from (for logs; no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub credentials: Credentials,
    pub from: String,
}

/// Why credentials could not be determined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredError {
    /// The flags contradict each other (a usage error).
    Usage(String),
    /// A credentials file or helper failed.
    Source(String),
}

impl std::fmt::Display for CredError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredError::Usage(m) | CredError::Source(m) => f.write_str(m),
        }
    }
}

/// Finds the credentials for registry `host` (`host[:port]`) and root path
/// `root`. `env` reads environment variables (the process's own in the CLI).
pub fn resolve(
    host: &str,
    root: &str,
    explicit: &Explicit,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Option<Found>, CredError> {
    match (&explicit.login, &explicit.password, &explicit.license) {
        (Some(_), Some(_), Some(_)) => {
            return Err(CredError::Usage(
                "give either --license or --source-login/--source-password, not both".into(),
            ));
        }
        (Some(u), Some(p), None) => {
            return Ok(Some(Found {
                credentials: Credentials {
                    username: u.clone(),
                    password: p.clone(),
                },
                from: "--source-login/--source-password".into(),
            }));
        }
        (None, None, Some(token)) => {
            return Ok(Some(Found {
                credentials: Credentials {
                    username: LICENSE_LOGIN.into(),
                    password: token.clone(),
                },
                from: "--license".into(),
            }));
        }
        (None, None, None) => {}
        _ => {
            return Err(CredError::Usage(
                "--source-login and --source-password go together".into(),
            ));
        }
    }

    let keys = lookup_keys(host, root);
    let path_var = env("PATH");
    if let Some(file) = env("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()) {
        let file = PathBuf::from(file);
        let config = read_config(&file, true)?.unwrap_or_default();
        if let Some(found) = from_config(&config, &file, host, &keys, path_var.as_deref())? {
            return Ok(Some(found));
        }
    }
    let docker = match env("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => env("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".docker").join("config.json")),
    };
    if let Some(file) = docker
        && let Some(config) = read_config(&file, false)?
    {
        return from_config(&config, &file, host, &keys, path_var.as_deref());
    }
    Ok(None)
}

#[derive(Default, serde::Deserialize)]
struct Config {
    #[serde(default)]
    auths: std::collections::HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::HashMap<String, String>,
}

#[derive(Default, serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Reads a config file; a missing file is `None` unless `required`.
fn read_config(file: &Path, required: bool) -> Result<Option<Config>, CredError> {
    let text = match std::fs::read(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(e) => {
            return Err(CredError::Source(format!(
                "cannot read credentials file {}: {e}",
                file.display()
            )));
        }
    };
    // serde's message may quote the document; name the position only.
    serde_json::from_slice(&text).map(Some).map_err(|e| {
        CredError::Source(format!(
            "credentials file {} is not valid JSON (line {}, column {})",
            file.display(),
            e.line(),
            e.column()
        ))
    })
}

/// Keys an `auths` entry may have for the source, most specific first:
/// `host/root/…` prefixes (containers-auth.json allows namespaces), then the
/// host alone.
fn lookup_keys(host: &str, root: &str) -> Vec<String> {
    let mut keys = Vec::new();
    if !root.is_empty() {
        let parts: Vec<&str> = root.split('/').collect();
        for n in (1..=parts.len()).rev() {
            keys.push(format!("{host}/{}", parts[..n].join("/")));
        }
    }
    keys.push(host.to_owned());
    if host == "docker.io" || host == "registry-1.docker.io" {
        keys.push("index.docker.io/v1".into());
    }
    keys
}

/// An `auths` key without scheme and trailing `/`, `/v1/` or `/v2/`.
fn normalize_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.trim_end_matches('/');
    let k = k
        .strip_suffix("/v2")
        .or_else(|| k.strip_suffix("/v1"))
        .unwrap_or(k);
    if k == "index.docker.io/v1" {
        return k.into();
    }
    k.to_owned()
}

fn from_config(
    config: &Config,
    file: &Path,
    host: &str,
    keys: &[String],
    path_var: Option<&std::ffi::OsStr>,
) -> Result<Option<Found>, CredError> {
    if let Some(helper) = config.cred_helpers.get(host) {
        return run_helper(helper, host, path_var);
    }
    for key in keys {
        let entry = config
            .auths
            .iter()
            .find(|(k, _)| normalize_key(k) == *key)
            .map(|(_, e)| e);
        let Some(entry) = entry else { continue };
        let from = format!("{} (auths entry {key})", file.display());
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let bad = || {
                CredError::Source(format!(
                    "{from}: the `auth` value is not base64 of login:password"
                ))
            };
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| bad())?;
            let raw = String::from_utf8(raw).map_err(|_| bad())?;
            let (u, p) = raw.split_once(':').ok_or_else(bad)?;
            return Ok(Some(Found {
                credentials: Credentials {
                    username: u.into(),
                    password: p.into(),
                },
                from,
            }));
        }
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            return Ok(Some(Found {
                credentials: Credentials {
                    username: u.clone(),
                    password: p.clone(),
                },
                from,
            }));
        }
    }
    match &config.creds_store {
        Some(store) if !store.is_empty() => run_helper(store, host, path_var),
        _ => Ok(None),
    }
}

/// Runs `docker-credential-<name> get` with the server on stdin. "Not found"
/// answers are `None`; the helper's output is never quoted.
fn run_helper(
    name: &str,
    host: &str,
    path_var: Option<&std::ffi::OsStr>,
) -> Result<Option<Found>, CredError> {
    let program = format!("docker-credential-{name}");
    if name.is_empty() || name.contains(['/', '\\']) {
        return Err(CredError::Source(format!(
            "invalid credential helper name {name:?}"
        )));
    }
    let path = path_var
        .and_then(|p| {
            std::env::split_paths(p)
                .map(|d| d.join(&program))
                .find(|f| f.is_file())
        })
        .ok_or_else(|| {
            CredError::Source(format!(
                "credential helper {program} (for {host}) is not on PATH"
            ))
        })?;
    let mut child = Command::new(&path)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| CredError::Source(format!("cannot run {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(host.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CredError::Source(format!("cannot run {program}: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if text.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(CredError::Source(format!(
            "credential helper {program} failed for {host} ({})",
            out.status
        )));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let answer: Answer = serde_json::from_slice(&out.stdout).map_err(|_| {
        CredError::Source(format!(
            "credential helper {program} gave an answer that is not the expected JSON"
        ))
    })?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    if answer.username == "<token>" {
        return Err(CredError::Source(format!(
            "credential helper {program} gave an identity token for {host}, which is not supported; use --source-login/--source-password"
        )));
    }
    Ok(Some(Found {
        credentials: Credentials {
            username: answer.username,
            password: answer.secret,
        },
        from: format!("credential helper {program}"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::collections::HashMap;

    const SECRET: &str = "s3cr3t-Pa55";

    fn env_of(vars: &[(&str, &Path)]) -> impl Fn(&str) -> Option<OsString> + use<> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_os_str().to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// A `docker-credential-<name>` script answering for `host` only.
    fn helper(dir: &Path, name: &str, host: &str, user: &str, secret: &str) {
        use std::os::unix::fs::PermissionsExt;
        let f = dir.join(format!("docker-credential-{name}"));
        write(
            &f,
            &format!(
                "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread server\nif [ \"$server\" = \"{host}\" ]; then\n  echo '{{\"ServerURL\":\"{host}\",\"Username\":\"{user}\",\"Secret\":\"{secret}\"}}'\nelse\n  echo 'credentials not found in native keychain'; exit 1\nfi\n"
            ),
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn flags_then_license_then_nothing() {
        let none = |_: &str| None;
        let ex = Explicit {
            login: Some("u".into()),
            password: Some("p".into()),
            license: None,
        };
        let f = resolve("r:5000", "", &ex, &none).unwrap().unwrap();
        assert_eq!(f.credentials, creds("u", "p"));
        let ex = Explicit {
            license: Some("LIC".into()),
            ..Default::default()
        };
        let f = resolve("r:5000", "", &ex, &none).unwrap().unwrap();
        assert_eq!(f.credentials, creds(LICENSE_LOGIN, "LIC"));
        assert_eq!(f.from, "--license");
        assert_eq!(resolve("r:5000", "", &Explicit::default(), &none), Ok(None));

        let half = Explicit {
            login: Some("u".into()),
            ..Default::default()
        };
        assert!(matches!(
            resolve("r", "", &half, &none),
            Err(CredError::Usage(_))
        ));
        let both = Explicit {
            login: Some("u".into()),
            password: Some("p".into()),
            license: Some("l".into()),
        };
        assert!(matches!(
            resolve("r", "", &both, &none),
            Err(CredError::Usage(_))
        ));
    }

    #[test]
    fn docker_config_auths_helpers_and_store() {
        let dir = TempDir::new("creds-docker");
        let bin = dir.path().join("bin");
        helper(&bin, "pass", "helped:5000", "hu", "hs");
        helper(&bin, "desktop", "stored:5000", "su", "ss");
        let docker = dir.path().join("docker");
        write(
            &docker.join("config.json"),
            &format!(
                r#"{{"auths":{{"https://plain:5000/v1/":{{"auth":"{}"}},"split:5000":{{"username":"su2","password":"sp2"}},"helped:5000":{{"auth":"{}"}}}},
                   "credHelpers":{{"helped:5000":"pass"}},"credsStore":"desktop"}}"#,
                b64("pu:pp:with:colons"),
                b64("wrong:wrong")
            ),
        );
        let env = env_of(&[("DOCKER_CONFIG", &docker), ("PATH", &bin)]);
        let get = |host: &str| resolve(host, "deckhouse/ee", &Explicit::default(), &env);
        assert_eq!(
            get("plain:5000").unwrap().unwrap().credentials,
            creds("pu", "pp:with:colons")
        );
        assert_eq!(
            get("split:5000").unwrap().unwrap().credentials,
            creds("su2", "sp2")
        );
        // credHelpers beats auths for its host.
        let f = get("helped:5000").unwrap().unwrap();
        assert_eq!(f.credentials, creds("hu", "hs"));
        assert_eq!(f.from, "credential helper docker-credential-pass");
        // credsStore answers for hosts without an entry.
        assert_eq!(
            get("stored:5000").unwrap().unwrap().credentials,
            creds("su", "ss")
        );
        // …and "not found" from the store is anonymous, not an error.
        assert_eq!(get("other:5000"), Ok(None));
        // Flags still win over the file.
        let ex = Explicit {
            login: Some("flag".into()),
            password: Some("flagp".into()),
            license: None,
        };
        assert_eq!(
            resolve("plain:5000", "", &ex, &env)
                .unwrap()
                .unwrap()
                .credentials,
            creds("flag", "flagp")
        );
    }

    #[test]
    fn home_docker_config_is_the_default() {
        let dir = TempDir::new("creds-home");
        write(
            &dir.path().join(".docker/config.json"),
            &format!(r#"{{"auths":{{"r:1":{{"auth":"{}"}}}}}}"#, b64("a:b")),
        );
        let env = env_of(&[("HOME", dir.path())]);
        assert_eq!(
            resolve("r:1", "", &Explicit::default(), &env)
                .unwrap()
                .unwrap()
                .credentials,
            creds("a", "b")
        );
        let empty = TempDir::new("creds-nohome");
        let env = env_of(&[("HOME", empty.path())]);
        assert_eq!(resolve("r:1", "", &Explicit::default(), &env), Ok(None));
    }

    #[test]
    fn registry_auth_file_comes_before_docker_config_and_knows_namespaces() {
        let dir = TempDir::new("creds-authfile");
        let auth = dir.path().join("auth.json");
        write(
            &auth,
            &format!(
                r#"{{"auths":{{"r:1/deckhouse":{{"auth":"{}"}},"r:1":{{"auth":"{}"}}}}}}"#,
                b64("ns:nsp"),
                b64("host:hostp")
            ),
        );
        let docker = dir.path().join("docker");
        write(
            &docker.join("config.json"),
            &format!(
                r#"{{"auths":{{"r:1":{{"auth":"{}"}},"r:2":{{"auth":"{}"}}}}}}"#,
                b64("d:dp"),
                b64("d2:d2p")
            ),
        );
        let env = env_of(&[("REGISTRY_AUTH_FILE", &auth), ("DOCKER_CONFIG", &docker)]);
        let get = |host: &str, root: &str| {
            resolve(host, root, &Explicit::default(), &env)
                .unwrap()
                .map(|f| f.credentials)
        };
        assert_eq!(get("r:1", "deckhouse/ee"), Some(creds("ns", "nsp")));
        assert_eq!(get("r:1", "other"), Some(creds("host", "hostp")));
        // Not in the auth file: Docker's config is still consulted.
        assert_eq!(get("r:2", ""), Some(creds("d2", "d2p")));
        // A named auth file that is missing is an error.
        let missing = dir.path().join("missing.json");
        let env = env_of(&[("REGISTRY_AUTH_FILE", &missing)]);
        assert!(matches!(
            resolve("r:1", "", &Explicit::default(), &env),
            Err(CredError::Source(_))
        ));
    }

    #[test]
    fn errors_never_quote_secrets() {
        let dir = TempDir::new("creds-errors");
        let docker = dir.path().join("docker");
        // Broken JSON right after a secret.
        write(
            &docker.join("config.json"),
            &format!(r#"{{"auths":{{"r:1":{{"password":"{SECRET}" oops"#),
        );
        let env = env_of(&[("DOCKER_CONFIG", &docker)]);
        let e = resolve("r:1", "", &Explicit::default(), &env).unwrap_err();
        assert!(!e.to_string().contains(SECRET), "{e}");
        // An `auth` value that does not decode.
        write(
            &docker.join("config.json"),
            &format!(r#"{{"auths":{{"r:1":{{"auth":"{}"}}}}}}"#, b64(SECRET)),
        );
        let e = resolve("r:1", "", &Explicit::default(), &env).unwrap_err();
        assert!(!e.to_string().contains(SECRET), "{e}");
        assert!(!e.to_string().contains(&b64(SECRET)), "{e}");
        // A helper that prints its secret and fails.
        let bin = dir.path().join("bin");
        helper(&bin, "leaky", "nobody", "u", SECRET);
        {
            use std::os::unix::fs::PermissionsExt;
            let f = bin.join("docker-credential-leaky");
            write(
                &f,
                &format!("#!/bin/sh\necho '{SECRET}'; echo '{SECRET}' >&2; exit 2\n"),
            );
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        write(&docker.join("config.json"), r#"{"credsStore":"leaky"}"#);
        let env = env_of(&[("DOCKER_CONFIG", &docker), ("PATH", &bin)]);
        let e = resolve("r:1", "", &Explicit::default(), &env).unwrap_err();
        assert!(e.to_string().contains("docker-credential-leaky"), "{e}");
        assert!(!e.to_string().contains(SECRET), "{e}");
        // A helper missing from PATH.
        write(
            &docker.join("config.json"),
            r#"{"credHelpers":{"r:1":"absent"}}"#,
        );
        let e = resolve("r:1", "", &Explicit::default(), &env).unwrap_err();
        assert!(e.to_string().contains("not on PATH"), "{e}");
        // Debug output of what was found hides the password.
        let f = Found {
            credentials: creds("u", SECRET),
            from: "x".into(),
        };
        assert!(!format!("{f:?}").contains(SECRET));
    }
}
