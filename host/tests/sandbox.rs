//! The sandbox holds: a hostile component (tests/hostile-plugin, built by
//! tests/build.sh) attacks the host through every import and through WASI,
//! and each attempt is refused or stopped.
//!
//! The component reports each attempt as a `warnings` line
//! `<what>: Ok …` / `<what>: Err …`.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use host::registry::{RegistryConfig, Source};
use host::{CallError, HostConfig, Plugin, PullOptions, PullSummary, Session};

fn wasm_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace.join(dir),
        _ => workspace.join("target"),
    };
    target.join("wasm32-wasip2").join("release")
}

fn component(name: &str) -> PathBuf {
    let path = wasm_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it with `bash tests/build.sh`",
        path.display()
    );
    path
}

fn hostile() -> Plugin {
    Plugin::load(&component("hostile_plugin.wasm")).unwrap()
}

/// A scratch directory with `bundle/` (the root granted to the plugin) and
/// `outside/` next to it.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sandbox-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bundle")).unwrap();
        std::fs::create_dir_all(dir.join("outside")).unwrap();
        Scratch(dir.canonicalize().unwrap())
    }
    fn bundle(&self) -> PathBuf {
        self.0.join("bundle")
    }
    fn outside(&self) -> PathBuf {
        self.0.join("outside")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn session(scratch: &Scratch, tune: impl FnOnce(&mut HostConfig)) -> Session {
    // Nothing listens on port 1: no request in these tests may succeed.
    let source = Source::parse("127.0.0.1:1/source").unwrap();
    let mut registry = RegistryConfig::new(source);
    registry.insecure = true;
    let mut config = HostConfig::new(registry, scratch.bundle());
    tune(&mut config);
    Session::new(hostile(), config).unwrap()
}

fn options(words: &[&str]) -> PullOptions {
    PullOptions {
        source_root: "127.0.0.1:1/source".into(),
        include_packages: words.iter().map(|w| w.to_string()).collect(),
        exclude_packages: vec![],
        only_extra_images: false,
        skip_vex_images: false,
        bundle_chunk_size: 0,
        access_timeout_ms: 0,
        dry_run: false,
        proxy_registry: false,
    }
}

fn attack(session: &Session, words: &[&str]) -> PullSummary {
    session
        .pull_packages(&options(words))
        .unwrap_or_else(|e| panic!("attack {words:?} did not return: {e}"))
}

/// Every report line of an attempt is an error containing `expected`.
fn assert_refused(summary: &PullSummary, expected: &[(&str, &str)]) {
    let lines = &summary.warnings;
    for (what, why) in expected {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{what}: ")))
            .unwrap_or_else(|| panic!("no report for {what:?} in {lines:#?}"));
        assert!(
            line.contains(": Err ") && line.contains(why),
            "{what}: expected an error mentioning {why:?}, got {line}"
        );
    }
}

#[cfg(unix)]
#[test]
fn writes_outside_the_root_are_refused() {
    let scratch = Scratch::new("write");
    let outside = scratch.outside();
    std::fs::write(outside.join("keep"), b"keep").unwrap();
    std::os::unix::fs::symlink(&outside, scratch.bundle().join("link-out")).unwrap();
    let session = session(&scratch, |_| {});
    let summary = attack(&session, &["escape-write", outside.to_str().unwrap()]);
    assert_refused(
        &summary,
        &[
            ("write-file absolute", "is absolute"),
            ("write-file dotdot", "`..`"),
            ("write-file through a symlink", "symbolic link"),
            ("create-output dotdot", "`..`"),
            ("create-output through a symlink", "symbolic link"),
            ("create-dir-all dotdot", "`..`"),
            ("create-dir-all through a symlink", "symbolic link"),
            ("rename out of the root", "`..`"),
            ("rename onto a symlink's target", "symbolic link"),
            ("remove the root", "cannot be removed"),
            ("remove dotdot", "`..`"),
            ("remove through a symlink", "symbolic link"),
            // WASI has no preopened directory: std::fs has nowhere to go.
            ("wasi std::fs::write absolute", ""),
            ("wasi std::fs::write relative", ""),
            ("wasi std::fs::create_dir", ""),
        ],
    );
    let mut left: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, vec!["keep"], "nothing was written outside the root");
    assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"keep");
}

#[cfg(unix)]
#[test]
fn etc_passwd_cannot_be_read() {
    let scratch = Scratch::new("passwd");
    std::os::unix::fs::symlink("/etc", scratch.bundle().join("etc-link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", scratch.bundle().join("passwd-link")).unwrap();
    let session = session(&scratch, |_| {});
    let summary = attack(&session, &["read-passwd"]);
    assert_refused(
        &summary,
        &[
            ("read-file absolute", "is absolute"),
            ("read-file dotdot", "`..`"),
            ("read-file through a directory symlink", "symbolic link"),
            ("read-file of a file symlink", "symbolic link"),
            ("stat through a symlink", "symbolic link"),
            ("list-dir of a symlink", "symbolic link"),
            ("read-layer-files of a symlink", "symbolic link"),
            ("copy-from absolute", "is absolute"),
            ("copy-from a symlink", "symbolic link"),
            ("copy-from through a directory symlink", "symbolic link"),
            ("wasi std::fs::read", ""),
            ("wasi std::fs::read_dir", ""),
        ],
    );
    assert!(
        summary
            .warnings
            .contains(&"environment count: 0".to_string())
    );
    assert!(summary.warnings.contains(&"argument count: 0".to_string()));
    assert!(
        summary.warnings.iter().all(|l| !l.contains("root:")),
        "no passwd content crossed: {:#?}",
        summary.warnings
    );
}

#[test]
fn no_other_host_can_be_reached() {
    let scratch = Scratch::new("net");
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    other.set_nonblocking(true).unwrap();
    let addr = other.local_addr().unwrap().to_string();
    let session = session(&scratch, |_| {});
    let summary = attack(&session, &["network", &addr]);
    assert_refused(
        &summary,
        &[
            ("wasi tcp connect", ""),
            ("wasi udp send", ""),
            ("wasi dns lookup", ""),
            ("registry repo with a URL", "invalid repository name"),
            ("registry repo with a host", "invalid repository name"),
            ("registry repo dotdot", "invalid repository name"),
            ("registry repo absolute", "invalid repository name"),
            ("registry manifest ref with a URL", ""),
        ],
    );
    std::thread::sleep(Duration::from_millis(100));
    match other.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok((mut conn, peer)) => {
            let mut seen = Vec::new();
            let _ = conn.read_to_end(&mut seen);
            panic!("the plugin reached another host from {peer}: {seen:?}");
        }
        Err(e) => panic!("accept: {e}"),
    }
}

#[test]
fn open_outputs_are_capped() {
    let scratch = Scratch::new("handles");
    let session = session(&scratch, |c| c.max_open_outputs = 8);
    let summary = attack(&session, &["handles"]);
    assert!(
        summary.warnings.contains(&"opened 8 outputs".to_string()),
        "{:#?}",
        summary.warnings
    );
    assert_refused(
        &summary,
        &[(
            "create-output over the limit",
            "too many open outputs; the limit is 8 (--max-open-files)",
        )],
    );
}

#[test]
fn unbounded_allocation_hits_the_memory_limit_and_the_next_call_works() {
    let scratch = Scratch::new("memory");
    let session = session(&scratch, |c| c.memory_limit = 64 << 20);
    let started = Instant::now();
    let e = session.pull_packages(&options(&["memory"])).unwrap_err();
    let CallError::Limit(message) = &e else {
        panic!("expected a limit error, got {e:?}");
    };
    assert!(
        message.contains("memory limit of 64.0 MiB (--memory-limit)")
            && message.contains("pull-packages"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // A fresh store per call: the trap did not poison the session.
    let next = session.pull_package_versions(&options(&[])).unwrap();
    assert_eq!(next.warnings, vec!["ok"]);
    let again = attack(&session, &["ok"]);
    assert_eq!(again.warnings, vec!["ok"]);
}

#[test]
fn an_endless_loop_is_stopped_at_the_call_deadline() {
    let scratch = Scratch::new("spin");
    let session = session(&scratch, |c| c.call_timeout = Some(Duration::from_secs(1)));
    let started = Instant::now();
    let e = session.pull_packages(&options(&["spin"])).unwrap_err();
    let elapsed = started.elapsed();
    let CallError::Limit(message) = &e else {
        panic!("expected a limit error, got {e:?}");
    };
    assert!(
        message.contains("call time limit of 1s (--call-timeout)"),
        "{message}"
    );
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(10),
        "stopped after {elapsed:?}"
    );
    // The temporary archive it left is known to the host, which removes it.
    assert!(scratch.bundle().join("package-spin.tar.tmp").exists());
    session.temps().remove_all();
    assert!(!scratch.bundle().join("package-spin.tar.tmp").exists());
    // The next call gets a fresh store and a fresh deadline.
    let next = attack(&session, &["ok"]);
    assert_eq!(next.warnings, vec!["ok"]);
}

/// Ctrl+C on a plugin that never looks at `events.cancelled`: the host
/// stops it after its grace period instead of waiting for the call limit.
#[test]
fn a_plugin_that_ignores_the_cancellation_is_stopped() {
    let scratch = Scratch::new("ignore-cancel");
    // The call limit is only a backstop: without the grace period the call
    // would end there, as a limit error.
    let session = session(&scratch, |c| {
        c.call_timeout = Some(Duration::from_secs(120))
    });
    let cancel = session.cancel_handle();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        cancel.cancel();
    });
    let e = session.pull_packages(&options(&["spin"])).unwrap_err();
    canceller.join().unwrap();
    assert!(
        matches!(e, CallError::Pull(host::PullError::Cancelled)),
        "expected a cancelled call, got {e:?}"
    );
    session.temps().remove_all();
    assert!(!scratch.bundle().join("package-spin.tar.tmp").exists());
}

#[test]
fn a_panic_is_a_crash_and_the_next_call_works() {
    let scratch = Scratch::new("panic");
    let session = session(&scratch, |_| {});
    let e = session.pull_packages(&options(&["panic"])).unwrap_err();
    assert!(matches!(e, CallError::Crashed(_)), "{e:?}");
    assert!(e.to_string().contains("crashed in pull-packages"), "{e}");
    assert_eq!(attack(&session, &["ok"]).warnings, vec!["ok"]);
}

#[test]
fn a_component_of_another_wit_version_is_refused_in_one_line() {
    let path = component("hostile_plugin_v0_2.wasm");
    let e = Plugin::load(&path).unwrap_err();
    assert_eq!(
        e,
        format!(
            "plugin {} was built for deckhouse:packages-mirror@0.2.0, but this host implements deckhouse:packages-mirror@0.1.0",
            path.display()
        )
    );
    assert!(!e.contains('\n'));
}

#[test]
fn the_real_plugin_passes_the_world_check() {
    let path = wasm_dir().join("plugin.wasm");
    if path.is_file() {
        Plugin::load(&path).unwrap();
    }
}
