//! The bundle checks themselves, proved on a reference bundle built without
//! our host or plugin: skopeo copies every expected image from the seeded
//! registry into OCI layouts, index.json gets the short tags and the sort
//! order SPEC §6 asks for, and GNU tar packs regular-file entries. The checks
//! must accept it, and must catch what is wrong in spoiled copies of it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tests::bundle::{self, check_bundle, dir_names};
use tests::fixture::{ExpectedBundle, Fixture, REF_NAME, SHORT_TAG};
use tests::process;
use tests::seeded_registry;

fn run_ok(cmd: &mut std::process::Command) {
    let out = process::run(cmd, Duration::from_secs(120)).unwrap();
    assert!(out.success(), "{}", out.transcript());
}

fn files_under(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            files_under(root, &e.path(), out);
        } else {
            out.push(e.path().strip_prefix(root).unwrap().display().to_string());
        }
    }
}

/// Build the expected bundle into `out` with skopeo + GNU tar.
fn reference_bundle(expected: &ExpectedBundle, work: &Path, out: &Path) {
    fs::create_dir_all(out).unwrap();
    for (archive, content) in expected {
        let root = work.join(archive.trim_end_matches(".tar"));
        for (dir, layout) in &content.layouts {
            let path = root.join(dir);
            fs::create_dir_all(&path).unwrap();
            for img in layout.images.values() {
                let mut cmd = process::command("skopeo");
                cmd.args([
                    "--insecure-policy",
                    "--override-os",
                    "linux",
                    "--override-arch",
                    "amd64",
                    "copy",
                    "--quiet",
                    "--preserve-digests",
                    "--src-tls-verify=false",
                ])
                .arg(format!("docker://{}", img.ref_name))
                .arg(format!("oci:{}:{}", path.display(), img.ref_name));
                run_ok(&mut cmd);
            }
            // Short tags and the sort order.
            let index_path = path.join("index.json");
            let mut index: Value = serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
            let manifests = index["manifests"].as_array_mut().unwrap();
            for m in manifests.iter_mut() {
                let name = m["annotations"][REF_NAME].as_str().unwrap().to_string();
                m["annotations"][SHORT_TAG] = Value::from(layout.images[&name].short_tag.clone());
            }
            manifests.sort_by(|a, b| {
                a["annotations"][REF_NAME]
                    .as_str()
                    .cmp(&b["annotations"][REF_NAME].as_str())
            });
            index["mediaType"] = Value::from(tests::oci::OCI_INDEX);
            fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
        }
        let mut files = Vec::new();
        files_under(&root, &root, &mut files);
        files.sort();
        let mut cmd = process::command("tar");
        cmd.arg("-cf")
            .arg(out.join(archive))
            .arg("-C")
            .arg(&root)
            .arg("--no-recursion")
            .args(&files);
        run_ok(&mut cmd);
    }
}

fn setup() -> (
    tests::registry::Registry,
    Fixture,
    tempfile::TempDir,
    PathBuf,
) {
    let (registry, fixture) = seeded_registry().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let bundle_dir = tmp.path().join("bundle");
    reference_bundle(
        &fixture.expected_unfiltered(),
        &tmp.path().join("work"),
        &bundle_dir,
    );
    (registry, fixture, tmp, bundle_dir)
}

#[test]
fn checks_accept_a_reference_bundle_and_reject_spoiled_ones() {
    let (_registry, fixture, tmp, bundle_dir) = setup();
    let expected = fixture.expected_unfiltered();
    assert_eq!(
        dir_names(&bundle_dir).unwrap(),
        expected.keys().cloned().collect::<Vec<_>>()
    );
    let problems = check_bundle(&bundle_dir, &expected, &tmp.path().join("u1"));
    assert!(problems.is_empty(), "{problems:#?}");

    // skopeo reads every reference layout back.
    let unpacked = tmp.path().join("u1");
    for (archive, content) in &expected {
        for dir in content.layouts.keys() {
            let layout = unpacked.join(archive.trim_end_matches(".tar")).join(dir);
            let p = bundle::skopeo_check_layout(&layout, &tmp.path().join("sk")).unwrap();
            assert!(p.is_empty(), "{p:#?}");
        }
    }

    // An expectation with one image more: the check reports it missing.
    let mut more = expected.clone();
    let extra = fixture
        .expected_image("packages/console", "v0.9.0")
        .unwrap();
    more.get_mut("package-console.tar")
        .unwrap()
        .layouts
        .get_mut("packages/console")
        .unwrap()
        .images
        .insert(extra.ref_name.clone(), extra.clone());
    let problems = check_bundle(&bundle_dir, &more, &tmp.path().join("u2"));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("missing image") && p.contains(":v0.9.0")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("missing entry")),
        "{problems:#?}"
    );

    // A leftover temporary file and a missing archive are reported.
    fs::write(bundle_dir.join("package-console.tar.tmp"), b"x").unwrap();
    fs::rename(
        bundle_dir.join("package-commander.tar"),
        tmp.path().join("moved.tar"),
    )
    .unwrap();
    let problems = check_bundle(&bundle_dir, &expected, &tmp.path().join("u3"));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("temporary leftover package-console.tar.tmp")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("want exactly")),
        "{problems:#?}"
    );
}

#[test]
fn layout_checks_catch_index_and_blob_mistakes() {
    let (_registry, fixture, tmp, bundle_dir) = setup();
    let expected = fixture.expected_unfiltered();
    let archive = &expected["package-console.tar"];
    let dest = tmp.path().join("u");
    bundle::unpack(&bundle_dir.join("package-console.tar"), &dest).unwrap();
    let layout_dir = dest.join("packages/console");
    let layout = &archive.layouts["packages/console"];
    assert!(
        bundle::check_layout(&layout_dir, layout)
            .unwrap()
            .is_empty()
    );

    // Unsorted manifests, a wrong short tag, a corrupted blob, an index digest.
    let index_path = layout_dir.join("index.json");
    let original = fs::read(&index_path).unwrap();
    let mut index: Value = serde_json::from_slice(&original).unwrap();
    index["manifests"].as_array_mut().unwrap().reverse();
    index["manifests"][0]["annotations"][SHORT_TAG] = Value::from("wrong");
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let blob_dir = layout_dir.join("blobs/sha256");
    let victim = dir_names(&blob_dir).unwrap()[0].clone();
    fs::write(blob_dir.join(&victim), b"corrupted").unwrap();
    fs::write(blob_dir.join("0".repeat(64)), b"stray").unwrap();
    let problems = bundle::check_layout(&layout_dir, layout).unwrap();
    for needle in [
        "not sorted",
        "short tag Some(\"wrong\")",
        &format!("blob {victim} has content"),
        &format!("unexpected blob sha256:{}", "0".repeat(64)),
    ] {
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{needle:?} not reported in {problems:#?}"
        );
    }

    // Directory entries in a tar are reported (entries must be regular files).
    let root = tmp.path().join("dirs");
    fs::create_dir_all(root.join("packages/x")).unwrap();
    fs::write(root.join("packages/x/oci-layout"), b"{}").unwrap();
    let tar_path = tmp.path().join("package-x.tar");
    let mut cmd = process::command("tar");
    cmd.arg("-cf")
        .arg(&tar_path)
        .arg("-C")
        .arg(&root)
        .arg("packages");
    run_ok(&mut cmd);
    let (_, problems) = bundle::check_archive(
        &tar_path,
        &tests::fixture::ExpectedArchive::default(),
        &tmp.path().join("ux"),
    )
    .unwrap();
    assert!(
        problems.iter().any(|p| p.contains("is not a regular file")),
        "{problems:#?}"
    );
}
