//! The limits through the real `host` CLI, against the hostile component
//! (tests/hostile-plugin, built by tests/build.sh): each flag is honoured,
//! the error names the limit and its value in one line, and no temporary
//! file is left in the bundle. The attacks themselves are asserted in detail
//! by `host/tests/sandbox.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tests::artifacts::{self, Artifacts};
use tests::process::{self, Captured};

fn hostile(name: &str) -> Artifacts {
    let host = artifacts::locate_host().unwrap_or_else(|e| panic!("{e:#}"));
    let plugin = artifacts::wasm_component(name).unwrap_or_else(|e| panic!("{e:#}"));
    Artifacts { host, plugin }
}

/// `host run <hostile> pull … --include-package <attack> <bundle>`; nothing
/// listens on port 1, and the attacks send no request.
fn run(art: &Artifacts, bundle: &Path, attack: &str, flags: &[&str]) -> Captured {
    let mut extra: Vec<&str> = flags.to_vec();
    extra.extend(["--include-package", attack]);
    let mut cmd = tests::pull::pull_command(art, "127.0.0.1:1/source", bundle, &extra);
    process::run(&mut cmd, Duration::from_secs(120)).unwrap()
}

fn error_lines(out: &Captured) -> Vec<&str> {
    out.stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn bundle(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("bundle")
}

#[test]
fn call_timeout_stops_an_endless_loop_and_removes_its_temporary_archive() {
    let art = hostile("hostile_plugin.wasm");
    let tmp = tempfile::tempdir().unwrap();
    let bundle = bundle(&tmp);
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join("package-earlier.tar"), b"an earlier archive").unwrap();
    let out = run(&art, &bundle, "spin", &["--call-timeout", "2s"]);
    assert_eq!(out.code(), Some(1), "{}", out.transcript());
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "{}", out.transcript());
    assert!(
        errors[0].contains("call time limit of 2s (--call-timeout)"),
        "{}",
        out.transcript()
    );
    assert!(
        out.elapsed < Duration::from_secs(30),
        "{}",
        out.transcript()
    );
    assert_eq!(names(&bundle), vec!["package-earlier.tar"]);
    assert_eq!(
        std::fs::read(bundle.join("package-earlier.tar")).unwrap(),
        b"an earlier archive"
    );
}

#[test]
fn memory_limit_stops_unbounded_allocation() {
    let art = hostile("hostile_plugin.wasm");
    let tmp = tempfile::tempdir().unwrap();
    let bundle = bundle(&tmp);
    let out = run(&art, &bundle, "memory", &["--memory-limit", "64MiB"]);
    assert_eq!(out.code(), Some(1), "{}", out.transcript());
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "{}", out.transcript());
    assert!(
        errors[0].contains("memory limit of 64.0 MiB (--memory-limit)"),
        "{}",
        out.transcript()
    );
}

#[test]
fn max_open_files_caps_output_handles() {
    let art = hostile("hostile_plugin.wasm");
    let tmp = tempfile::tempdir().unwrap();
    let bundle = bundle(&tmp);
    let out = run(&art, &bundle, "handles", &["--max-open-files", "3"]);
    assert_eq!(out.code(), Some(0), "{}", out.transcript());
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains("opened 3 outputs"), "{}", out.transcript());
    assert!(
        text.contains("too many open outputs; the limit is 3 (--max-open-files)"),
        "{}",
        out.transcript()
    );
}

/// A tiny request that would make the host do a lot ends the call with
/// an error naming the host's limit (tests/hostile-plugin `batch`,
/// `long-string`).
#[test]
fn batches_and_strings_over_the_host_limits_end_the_call() {
    let art = hostile("hostile_plugin.wasm");
    for (attack, message) in [
        (
            "batch",
            "registry.resolve was called with 100000 references; the host's limit is 256 per call",
        ),
        (
            "long-string",
            "registry.list-tags was called with a string of 16777216 bytes; the host's limit is 4096 bytes",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let out = run(&art, &bundle(&tmp), attack, &[]);
        assert_eq!(out.code(), Some(1), "{attack}\n{}", out.transcript());
        let errors = error_lines(&out);
        assert_eq!(errors.len(), 1, "{attack}\n{}", out.transcript());
        assert!(
            errors[0].contains(&format!("stopped in pull-packages: {message}")),
            "{attack}\n{}",
            out.transcript()
        );
    }
}

#[test]
fn a_plugin_of_another_wit_version_is_refused_in_one_line() {
    let art = hostile("hostile_plugin_v0_2.wasm");
    let tmp = tempfile::tempdir().unwrap();
    let bundle = bundle(&tmp);
    let out = run(&art, &bundle, "ok", &[]);
    assert_eq!(out.code(), Some(1), "{}", out.transcript());
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines,
        vec![format!(
            "error: plugin {} was built for deckhouse:packages-mirror@0.2.0, but this host implements deckhouse:packages-mirror@0.1.0",
            art.plugin.display()
        )],
        "{}",
        out.transcript()
    );
    assert!(!bundle.exists(), "nothing was created");
}
