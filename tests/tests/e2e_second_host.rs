//! The plugin is not tied to our Rust host: `tests/second-host/host.py`, a
//! host written in Python on PyPI's `wasmtime` with its own implementation of
//! every import (registry over HTTP, the confined filesystem with the
//! `output` resource, events), loads the same `plugin.wasm` and pulls from
//! the same real `docker-registry`. Its bundle must be byte-identical to the
//! Rust host's, and GNU tar and skopeo must read it.
//!
//! Needs the release artifacts (`bash tests/build.sh`) and the second host's
//! Python environment (`bash tests/setup.sh`); a missing one fails the test
//! with the command to run.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use tests::artifacts;
use tests::bundle::{self, check_bundle, dir_names, sha256_file};
use tests::process::Captured;
use tests::registry::closed_port;
use tests::{second_host, seeded_registry};

fn hashes(dir: &Path) -> BTreeMap<String, String> {
    dir_names(dir)
        .unwrap()
        .into_iter()
        .map(|n| {
            let h = sha256_file(&dir.join(&n)).unwrap();
            (n, h)
        })
        .collect()
}

fn assert_success(out: &Captured, what: &str, registry_log: &str) {
    let tail: Vec<&str> = registry_log.lines().collect();
    assert!(
        out.code() == Some(0),
        "{what} failed:\n{}\nregistry log (tail):\n{}",
        out.transcript(),
        tail[tail.len().saturating_sub(40)..].join("\n")
    );
}

#[test]
fn python_host_pulls_the_same_bundle_as_the_rust_host() {
    let artifacts = artifacts::locate().unwrap_or_else(|e| panic!("{e:#}"));
    let python = second_host::locate_python().unwrap_or_else(|e| panic!("{e:#}"));
    let (registry, fixture) = seeded_registry().expect("starting and seeding the registry");
    let tmp = tempfile::Builder::new()
        .prefix("pm-host2-")
        .tempdir()
        .unwrap();
    let (rust_bundle, py_bundle) = (tmp.path().join("rust"), tmp.path().join("python"));

    let rust = tests::pull::pull(&artifacts, &fixture.root, &rust_bundle, &[]).unwrap();
    assert_success(&rust, "the Rust host", &registry.log());
    let py = second_host::pull(&python, &artifacts.plugin, &fixture.root, &py_bundle, &[]).unwrap();
    assert_success(&py, "the Python host", &registry.log());

    // What the Python host says it wrote is what is on disk.
    let summary: Value = serde_json::from_str(&py.stdout).unwrap_or_else(|e| {
        panic!(
            "the Python host's summary is not JSON ({e}):\n{}",
            py.stdout
        )
    });
    let mut reported: Vec<String> = ["pull-packages", "pull-package-versions"]
        .iter()
        .flat_map(|call| {
            summary[call]["archives"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|a| a["files"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect();
    reported.sort();
    assert_eq!(
        reported,
        dir_names(&py_bundle).unwrap(),
        "{}",
        py.transcript()
    );

    // The bundle is the one the fixture expects, read with GNU tar.
    let expected = fixture.expected_unfiltered();
    let scratch = tmp.path().join("unpacked");
    let problems = check_bundle(&py_bundle, &expected, &scratch);
    assert!(
        problems.is_empty(),
        "{} problem(s) in the Python host's bundle:\n  {}\n\n{}",
        problems.len(),
        problems.join("\n  "),
        py.transcript()
    );

    // Byte for byte what the Rust host wrote (archives are deterministic).
    let (rust_hashes, py_hashes) = (hashes(&rust_bundle), hashes(&py_bundle));
    assert_eq!(
        rust_hashes.keys().collect::<Vec<_>>(),
        py_hashes.keys().collect::<Vec<_>>(),
        "the two hosts wrote different archives"
    );
    for (name, rust_hash) in &rust_hashes {
        if &py_hashes[name] != rust_hash {
            let rust_members = bundle::tar_list(&rust_bundle.join(name)).unwrap();
            let py_members = bundle::tar_list(&py_bundle.join(name)).unwrap();
            panic!(
                "{name} differs between the hosts ({rust_hash} vs {}); members equal: {}\n\
                 rust: {rust_members:?}\npython: {py_members:?}",
                py_hashes[name],
                rust_members == py_members
            );
        }
    }

    // skopeo, the independent reader, copies every image out of it.
    let mut problems = Vec::new();
    let mut images = 0;
    for (name, archive) in &expected {
        let dest = scratch.join(name.trim_end_matches(".tar"));
        for dir in archive.layouts.keys() {
            images += archive.layouts[dir].images.len();
            problems.extend(
                bundle::skopeo_check_layout(&dest.join(dir), &tmp.path().join("skopeo"))
                    .unwrap()
                    .into_iter()
                    .map(|p| format!("{name}: {dir}: {p}")),
            );
        }
    }
    assert!(images > 50, "only {images} images checked");
    assert!(problems.is_empty(), "skopeo:\n  {}", problems.join("\n  "));
}

#[test]
fn python_host_reports_a_registry_error_from_the_plugin() {
    let artifacts = artifacts::locate().unwrap_or_else(|e| panic!("{e:#}"));
    let python = second_host::locate_python().unwrap_or_else(|e| panic!("{e:#}"));
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    let source = format!("127.0.0.1:{}/deckhouse/ee", closed_port());
    let out = second_host::pull(&python, &artifacts.plugin, &source, &bundle, &[]).unwrap();
    // The import's `registry-error.other` travelled through the plugin and
    // came back as the export's `pull-error.registry`.
    assert_eq!(out.code(), Some(1), "{}", out.transcript());
    assert!(
        out.stderr.contains("error: pull-packages: registry:")
            && out.stderr.contains("Connection refused"),
        "{}",
        out.transcript()
    );
    assert_eq!(dir_names(&bundle).unwrap(), Vec::<String>::new());
}
