//! End to end: what an operator sees for bad input, conflicting flags and
//! the access-check timeout, with the real host and plugin.

use std::path::Path;
use std::time::Duration;

use tests::artifacts;
use tests::process::Captured;
use tests::pull::pull;
use tests::registry::closed_port;
use tests::seeded_registry;
use tests::slowproxy::SlowProxy;

fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// A usage error: exit 2, one error line that quotes `quoted`, and no
/// bundle directory left behind.
fn assert_usage_error(out: &Captured, quoted: &str, bundle: &Path) {
    assert_eq!(out.code(), Some(2), "want exit 2:\n{}", out.transcript());
    let err = lines(&out.stderr);
    assert_eq!(err.len(), 1, "want one error line:\n{}", out.transcript());
    assert!(
        err[0].contains(quoted),
        "the error does not quote {quoted}:\n{}",
        out.transcript()
    );
    assert!(!bundle.exists(), "the bundle directory was created");
}

#[test]
fn malformed_filters_are_usage_errors_that_quote_the_value() {
    let art = artifacts::locate().unwrap_or_else(|e| panic!("{e:#}"));
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    // A closed port: a usage error must be found before any request.
    let source = format!("127.0.0.1:{}/deckhouse/ee", closed_port());
    for expr in [
        "console@",
        "@1.2.3",
        "console@not-a-version",
        "console@=v1.2.3+nightly",
        "Console",
    ] {
        let out = pull(&art, &source, &bundle, &["--include-package", expr]).unwrap();
        assert_usage_error(&out, &format!("{expr:?}"), &bundle);
        if expr == "console@" {
            assert!(
                out.stderr.contains("quote"),
                "no reminder to quote shell operators:\n{}",
                out.transcript()
            );
        }
    }
}

#[test]
fn bad_chunk_sizes_and_conflicting_flags_are_usage_errors() {
    let art = artifacts::locate().unwrap_or_else(|e| panic!("{e:#}"));
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    let source = format!("127.0.0.1:{}/deckhouse/ee", closed_port());
    for size in ["0MB", "-1GB", "12parsecs"] {
        let out = pull(
            &art,
            &source,
            &bundle,
            &["--images-bundle-chunk-size", size],
        )
        .unwrap();
        assert_eq!(out.code(), Some(2), "{size}:\n{}", out.transcript());
        assert!(out.stderr.contains(size), "{size}:\n{}", out.transcript());
        assert!(!bundle.exists());
    }
    let out = pull(&art, &source, &bundle, &["--proxy-registry"]).unwrap();
    assert_usage_error(&out, "--include-package", &bundle);
    let out = pull(&art, &source, &bundle, &["--source-login", "u"]).unwrap();
    assert_usage_error(&out, "--source-password", &bundle);
}

#[test]
fn include_wins_over_exclude_with_a_warning() {
    let art = artifacts::locate().unwrap_or_else(|e| panic!("{e:#}"));
    let (_registry, fixture) = seeded_registry().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    let out = pull(
        &art,
        &fixture.root,
        &bundle,
        &[
            "--include-package",
            "commander",
            "--exclude-package",
            "commander",
        ],
    )
    .unwrap();
    assert_eq!(out.code(), Some(0), "{}", out.transcript());
    assert!(
        out.stderr.contains("the include list wins"),
        "no warning:\n{}",
        out.transcript()
    );
    let mut names: Vec<String> = std::fs::read_dir(&bundle)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["package-commander.tar", "package-versions.tar"]);
}

#[test]
fn the_access_check_gives_up_after_the_timeout() {
    let art = artifacts::locate().unwrap_or_else(|e| panic!("{e:#}"));
    let (registry, fixture) = seeded_registry().unwrap();
    // Every answer of the registry arrives 3 s late; the check may take 500 ms.
    let upstream = registry.host().parse().unwrap();
    let proxy = SlowProxy::start(upstream, Duration::from_secs(3)).unwrap();
    let root = fixture
        .root
        .replacen(&registry.host(), &format!("127.0.0.1:{}", proxy.port()), 1);
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    let out = pull(&art, &root, &bundle, &["--timeout", "500ms"]).unwrap();
    assert_eq!(out.code(), Some(1), "{}", out.transcript());
    assert!(
        out.stderr.contains("timed out"),
        "the error does not say it timed out:\n{}",
        out.transcript()
    );
    assert!(
        !bundle.exists(),
        "a failed access check left a bundle directory"
    );
}
