//! What the operator sees: progress and log lines on stderr, the summary (or
//! the JSON document of `--output json`) on stdout, `host inspect`, shell
//! completions, the man page, and the embedding example. Real host, real
//! plugin, real registry seeded with the fixture.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tests::artifacts::{self, target_dir};
use tests::env::{Env, artifacts};
use tests::process::{self, Captured};
use tests::registry::closed_port;
use tests::schema::validate_summary;

/// Package names of the archives a full pull of the fixture writes.
fn expected_packages(env: &Env) -> BTreeSet<String> {
    env.fixture
        .expected_unfiltered()
        .keys()
        .filter_map(|a| a.strip_prefix("package-")?.strip_suffix(".tar"))
        .filter(|n| *n != "versions")
        .map(str::to_owned)
        .collect()
}

fn json_doc(out: &Captured) -> Value {
    validate_summary(&out.stdout).unwrap_or_else(|e| panic!("{e:#}\n{}", out.transcript()))
}

/// `host <args…>` with a time limit.
fn host(args: &[&str]) -> Captured {
    let host = artifacts::locate_host().unwrap_or_else(|e| panic!("{e:#}"));
    process::run(process::command(host).args(args), Duration::from_secs(120)).unwrap()
}

#[test]
fn json_output_validates_and_matches_the_bundle() {
    let env = Env::new();
    let out = env.pull_ok(
        "bundle",
        &["--output", "json", "--images-bundle-chunk-size", "50KiB"],
    );
    let doc = json_doc(&out);
    assert_eq!(doc["status"], "ok");
    assert_eq!(doc["exit_code"], 0);
    assert!(doc["error"].is_null());
    assert!(
        !out.stdout.contains('╭') && !out.stdout.contains("Pull summary"),
        "--output json prints no table:\n{}",
        out.stdout
    );
    let calls = doc["calls"].as_array().unwrap();
    let names: Vec<&str> = calls.iter().map(|c| c["call"].as_str().unwrap()).collect();
    assert_eq!(names, ["pull-packages", "pull-package-versions"]);

    // The packages are the fixture's, each with its own archive.
    let pulled: BTreeSet<String> = calls[0]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let name = p["name"].as_str().unwrap();
            assert_eq!(p["archive"], format!("package-{name}.tar"), "{p}");
            name.to_owned()
        })
        .collect();
    assert_eq!(pulled, expected_packages(&env), "{}", out.stdout);

    // Every archive's size is what its files hold on disk.
    let bundle = env.path("bundle");
    let mut total = 0;
    let mut chunked = 0;
    for call in calls {
        for a in call["archives"].as_array().unwrap() {
            let files = a["files"].as_array().unwrap();
            let mut on_disk = 0;
            for f in files {
                let name = f["name"].as_str().unwrap();
                let len = std::fs::metadata(bundle.join(name))
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
                    .len();
                assert_eq!(f["size"], len, "{name}");
                on_disk += len;
            }
            assert_eq!(a["size"], on_disk, "{a}");
            total += on_disk;
            chunked += usize::from(files.len() > 1);
        }
    }
    assert!(
        chunked > 0,
        "50KiB chunks split no archive:\n{}",
        out.stdout
    );
    assert_eq!(doc["archive_bytes"], total);
    let t = &doc["transfer"];
    assert!(t["bytes_received"].as_u64().unwrap() > 0, "{t}");
    assert_eq!(t["bytes_received"], t["bytes_planned"], "{t}");
    assert_eq!(t["blobs_fetched"], t["blobs_planned"], "{t}");
}

#[test]
fn json_output_on_failure_and_usage_error() {
    let art = artifacts();
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    let source = format!("127.0.0.1:{}/deckhouse", closed_port());
    // A failing `--output json` pull: its exit code and its document.
    let failed_pull = |extra: &[&str]| {
        let mut args = vec!["--output", "json"];
        args.extend_from_slice(extra);
        let out = process::run(
            &mut tests::pull::pull_command(&art, &source, &bundle, &args),
            Duration::from_secs(240),
        )
        .unwrap();
        let doc = json_doc(&out);
        (out, doc)
    };
    let (out, doc) = failed_pull(&[]);
    assert_eq!(out.code(), Some(1), "{}", out.transcript());
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["exit_code"], 1);
    assert!(
        doc["error"]
            .as_str()
            .unwrap()
            .contains(&source[..source.find('/').unwrap()]),
        "{doc}"
    );
    assert!(out.stderr.contains("error: "), "{}", out.transcript());
    assert_eq!(doc["dry_run"], false, "{doc}");

    // A dry run that fails before any call finished is still reported as one.
    let (out, doc) = failed_pull(&["--dry-run"]);
    assert_eq!(out.code(), Some(1), "{}", out.transcript());
    assert_eq!(
        (doc["status"].as_str(), doc["dry_run"].as_bool()),
        (Some("failed"), Some(true)),
        "{doc}"
    );

    // A usage error found by the plugin (a bad filter, not a bad flag): exit 2.
    let (out, doc) = failed_pull(&["--include-package", "console@not-a-version"]);
    assert_eq!(out.code(), Some(2), "{}", out.transcript());
    assert_eq!(
        (doc["status"].as_str(), doc["exit_code"].as_u64()),
        (Some("failed"), Some(2))
    );
}

/// Lines with an ANSI escape (ESC) in them.
fn escapes(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.contains('\u{1b}')).collect()
}

#[test]
fn plain_progress_framed_summary_and_quiet() {
    let env = Env::new();
    let out = env.pull_ok("bundle", &[]);
    // Not a terminal: plain lines, no escapes, no carriage-return redraws.
    assert!(escapes(&out.stderr).is_empty(), "{}", out.transcript());
    assert!(escapes(&out.stdout).is_empty(), "{}", out.transcript());
    assert!(!out.stderr.contains('\r'), "{}", out.transcript());
    // Each call is announced, so the second call's [1/N] lines are not read
    // as a repeat of the first's.
    let announced = |call: &str| {
        out.stderr
            .lines()
            .position(|l| l.starts_with(&format!("info: {call}: ")))
            .unwrap_or_else(|| panic!("{call} is not announced:\n{}", out.stderr))
    };
    assert!(
        announced("pull-packages") < announced("pull-package-versions"),
        "{}",
        out.stderr
    );
    let progress: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("info: [") && l.contains("] package "))
        .collect();
    for name in expected_packages(&env) {
        assert!(
            progress
                .iter()
                .any(|l| l.ends_with(&format!(" package {name}"))),
            "no progress line for {name}:\n{}",
            out.stderr
        );
    }
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("info: wrote package-")),
        "{}",
        out.stderr
    );
    // The summary: framed tables with a row per package and the totals.
    assert!(out.stdout.starts_with("Pull summary\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains('╭') && out.stdout.contains('╯'),
        "{}",
        out.stdout
    );
    for name in expected_packages(&env) {
        let row = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("│ {name} ")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{}", out.stdout));
        // Package, versions, images, VEX, bytes (its archive's size).
        let cells: Vec<&str> = row.trim_matches('│').split('┆').map(str::trim).collect();
        assert_eq!(cells.len(), 5, "{row}");
        assert!(cells[4].ends_with("KiB"), "no archive size in {row}");
    }
    assert!(
        out.stdout.contains("│ package-versions.tar"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("elapsed "), "{}", out.stdout);

    // --quiet: no info (or warn) lines, still the summary.
    let quiet = env.pull_ok("quiet", &["--quiet"]);
    let chatty: Vec<&str> = quiet
        .stderr
        .lines()
        .filter(|l| !l.starts_with("error:"))
        .collect();
    assert!(chatty.is_empty(), "--quiet printed {chatty:?}");
    assert!(
        quiet.stdout.contains("Pull summary"),
        "{}",
        quiet.transcript()
    );
    // Quiet hides progress, not the counts the summary reports.
    let quiet = env.pull_ok("quiet-json", &["--quiet", "--output", "json"]);
    let t = &json_doc(&quiet)["transfer"];
    assert!(t["blobs_planned"].as_u64().unwrap() > 0, "{t}");
    assert_eq!(t["blobs_planned"], t["blobs_fetched"], "{t}");
    assert_eq!(t["bytes_planned"], t["bytes_received"], "{t}");
}

#[test]
fn json_log_lines_and_verbose_summary() {
    let env = Env::new();
    let out = env.pull_ok(
        "bundle",
        &[
            "--log-format",
            "json",
            "--log-level",
            "debug",
            "--verbose-summary",
            "--images-bundle-chunk-size",
            "50KiB",
        ],
    );
    let mut events = BTreeSet::new();
    let mut levels = BTreeSet::new();
    for line in out.stderr.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line:?}"));
        assert!(v["ts"].as_str().is_some_and(|t| t.ends_with('Z')), "{line}");
        assert!(v["msg"].is_string(), "{line}");
        levels.insert(v["level"].as_str().unwrap().to_owned());
        if let Some(e) = v["event"].as_str() {
            events.insert(e.to_owned());
            if e == "archive-written" {
                assert!(v["archive"].is_string() && v["bytes"].is_u64(), "{line}");
            }
        }
    }
    for e in [
        "package-started",
        "phase",
        "blobs-planned",
        "archive-written",
    ] {
        assert!(events.contains(e), "no {e} event in:\n{}", out.stderr);
    }
    assert!(
        levels.contains("info") && levels.contains("debug"),
        "{levels:?}"
    );
    // --verbose-summary names every chunk file and the transfer counters.
    for entry in std::fs::read_dir(env.path("bundle")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(out.stdout.contains(&name), "{name} not in:\n{}", out.stdout);
    }
    assert!(out.stdout.contains("Transfers: "), "{}", out.stdout);
    assert!(out.stdout.contains("source:     "), "{}", out.stdout);
}

#[test]
fn progress_bars_in_a_terminal() {
    // `script` gives the host a pseudo-terminal, as an operator's shell does.
    let env = Env::new();
    let art = &env.artifacts;
    let cmd = format!(
        "{} run {} pull --insecure --source {} {}",
        art.host.display(),
        art.plugin.display(),
        env.fixture.root,
        env.path("bundle").display()
    );
    let out = process::run(
        process::command("script")
            .args(["-qfec", &cmd, "/dev/null"])
            .env("TERM", "xterm-256color")
            .env("COLUMNS", "120"),
        Duration::from_secs(300),
    )
    .unwrap();
    assert_eq!(out.code(), Some(0), "{}", out.transcript());
    let screen = &out.stdout;
    // indicatif redraws in place with escapes; its bar shows bytes, rate, ETA.
    assert!(screen.contains('\u{1b}'), "no terminal drawing:\n{screen}");
    assert!(screen.contains("ETA"), "no bytes bar:\n{screen}");
    assert!(
        screen.contains("transfer(s) active"),
        "no status line:\n{screen}"
    );
    assert!(
        !screen.contains("info: ["),
        "plain lines on a terminal:\n{screen}"
    );
    assert!(screen.contains("Pull summary"), "{screen}");
}

#[test]
fn inspect_describes_the_plugin_and_refuses_another_version() {
    let art = artifacts();
    let out = host(&["inspect", art.plugin.to_str().unwrap()]);
    assert_eq!(out.code(), Some(0), "{}", out.transcript());
    for want in [
        "world:        deckhouse:packages-mirror/packages-mirror@0.1.0",
        "deckhouse:packages-mirror@0.1.0",
        "compatible:   yes",
        "deckhouse:packages-mirror/registry@0.1.0 (interface)",
        "fetch-blobs: func(fetches: list) -> list",
        "pull-packages: func(options: record) -> result",
        "pull-package-versions: func(options: record) -> result",
    ] {
        assert!(
            out.stdout.contains(want),
            "{want:?} not in:\n{}",
            out.stdout
        );
    }
    let exports = out.stdout.split("exports:\n").nth(1).unwrap();
    assert!(
        !exports.contains("registry@"),
        "imports listed as exports:\n{exports}"
    );

    let other = artifacts::wasm_component("hostile_plugin_v0_2.wasm").unwrap();
    let out = host(&["inspect", other.to_str().unwrap()]);
    assert_eq!(out.code(), Some(1), "{}", out.transcript());
    assert!(
        out.stdout.contains("deckhouse:packages-mirror@0.2.0"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("compatible:   no: "), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("this host implements deckhouse:packages-mirror@0.1.0"),
        "{}",
        out.stdout
    );

    let out = host(&["inspect", "/nonexistent/plugin.wasm"]);
    assert_eq!(out.code(), Some(1));
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[test]
fn completions_and_man_pages_come_from_the_cli() {
    let out = host(&["completions", "bash"]);
    assert_eq!(out.code(), Some(0), "{}", out.transcript());
    for want in ["--include-package", "--output", "--log-format", "inspect"] {
        assert!(out.stdout.contains(want), "bash completion lacks {want}");
    }
    assert!(out.stdout.contains("complete -F _host"), "{}", out.stdout);
    let zsh = host(&["completions", "zsh"]);
    assert!(zsh.stdout.starts_with("#compdef host"), "{}", zsh.stdout);

    let out = host(&["man"]);
    assert_eq!(out.code(), Some(0), "{}", out.transcript());
    assert!(out.stdout.contains(".TH host 1"), "{}", out.stdout);
    let dir = tempfile::tempdir().unwrap();
    let out = host(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(out.code(), Some(0), "{}", out.transcript());
    let page = dir.path().join("host-run-pull.1");
    let roff = std::fs::read_to_string(&page).unwrap();
    assert!(roff.contains(".TH host-run-pull 1"), "{roff}");
    assert!(roff.contains("include\\-package"), "{roff}");
    // man(1) renders it (groff parses the roff).
    let rendered = process::run(
        process::command("man")
            .args(["-P", "cat", "-l"])
            .arg(&page)
            .env("MANWIDTH", "100"),
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(rendered.code(), Some(0), "{}", rendered.transcript());
    let text = rendered.stdout.replace(['\u{2010}', '\u{2212}'], "-");
    assert!(text.contains("--include-package"), "{text}");
    assert!(text.contains("host-run-pull"), "{text}");
}

#[test]
fn embed_example_pulls_with_its_own_sink() {
    let env = Env::new();
    let example = target_dir().join("release").join("examples").join("embed");
    assert!(
        example.is_file(),
        "{} is missing: `cargo build --release -p host --examples`",
        example.display()
    );
    let bundle = env.path("bundle");
    let out = process::run(
        process::command(&example)
            .arg(&env.artifacts.plugin)
            .arg(&env.fixture.root)
            .arg(&bundle)
            .arg("--insecure"),
        Duration::from_secs(300),
    )
    .unwrap();
    assert_eq!(out.code(), Some(0), "{}", out.transcript());
    // Progress counts every package of the source; the summary those with images.
    let all = env.fixture.package_names.len();
    assert!(
        out.stderr.contains(&format!("[embed] package 1/{all}")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("[embed] wrote package-versions.tar"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("Pull summary"), "{}", out.stdout);
    let line = out.stdout.lines().last().unwrap_or_default();
    let bytes: u64 = line
        .strip_prefix("[embed] ")
        .and_then(|l| l.split(' ').next())
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {line:?}"));
    assert!(bytes > 0, "{line}");
    let with_images = expected_packages(&env).len();
    assert!(
        line.ends_with(&format!("{with_images} package(s)")),
        "{line}"
    );
    assert!(Path::new(&bundle).join("package-versions.tar").is_file());
}
