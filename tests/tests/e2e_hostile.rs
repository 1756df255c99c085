//! Hostile registry content in a real `docker-registry`, pulled by the real
//! host and plugin next to a normal package (`commander`). Each attack must
//! end in the warning or error SPEC.md and the README "Security model" name,
//! with nothing written outside the bundle directory, no partial archive,
//! and the normal package's archive intact (checked with GNU tar + skopeo).
//! The hostile packages are described in `tests/src/fixture/hostile.rs`.

use std::path::{Path, PathBuf};

use tests::artifacts::{self, Artifacts};
use tests::bundle::{check_bundle, dir_names};
use tests::fixture::hostile::{self, BLOBS, BOMB, DEEP, HUGE, LINKS, NAMES, NOT_JSON};
use tests::fixture::{ExpectedBundle, Fixture};
use tests::oci::{self, Blob, Client, OCI_INDEX, OCI_MANIFEST};
use tests::process::Captured;
use tests::pull::pull;
use tests::registry::Registry;

const NORMAL: &str = "commander";

struct Env {
    artifacts: Artifacts,
    _registry: Registry,
    fixture: Fixture,
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let artifacts = artifacts::locate().unwrap_or_else(|e| panic!("{e:#}"));
        let (registry, fixture) =
            tests::seeded_hostile_registry().expect("starting and seeding the registry");
        Env {
            artifacts,
            _registry: registry,
            fixture,
            tmp: tempfile::Builder::new()
                .prefix("pm-hostile-")
                .tempdir()
                .unwrap(),
        }
    }

    /// Pulls `packages` into `<tmp>/<case>/bundle`, then checks that
    /// `<tmp>/<case>` holds nothing but the bundle (a `../escape` would land
    /// there) and that no file named `escape` was written anywhere.
    fn pull(&self, case: &str, packages: &[&str]) -> (PathBuf, Captured) {
        let dir = self.tmp.path().join(case);
        std::fs::create_dir_all(&dir).unwrap();
        let bundle = dir.join("bundle");
        let mut args = Vec::new();
        for p in packages {
            args.extend(["--include-package", p]);
        }
        let out = pull(&self.artifacts, &self.fixture.root, &bundle, &args).unwrap();
        // What the user sees, for `--nocapture` (the README quotes it).
        eprintln!("--- {case}\n{}", out.transcript());
        assert_eq!(
            dir_names(&dir).unwrap(),
            vec!["bundle"],
            "something was written next to the bundle directory\n{}",
            out.transcript()
        );
        assert!(
            find_named(self.tmp.path(), "escape").is_empty(),
            "{:?}\n{}",
            find_named(self.tmp.path(), "escape"),
            out.transcript()
        );
        (bundle, out)
    }

    /// Problems unless the bundle holds exactly `expected`, every archive
    /// checked.
    fn check_bundle(&self, bundle: &Path, expected: &ExpectedBundle) -> Vec<String> {
        let scratch = bundle.with_file_name("unpacked");
        let problems = check_bundle(bundle, expected, &scratch);
        let _ = std::fs::remove_dir_all(scratch);
        problems
    }
}

fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_name() == name {
            found.push(path.clone());
        }
        if entry.file_type().unwrap().is_dir() {
            found.extend(find_named(&path, name));
        }
    }
    found
}

/// Lines of `level:` (`warn`, `error`) on stderr.
fn lines<'a>(out: &'a Captured, level: &str) -> Vec<&'a str> {
    let prefix = format!("{level}: ");
    out.stderr
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .collect()
}

/// Unless some line of `level` holds every fragment, a problem. Problems
/// are collected so that one run shows every protection that failed.
fn check_said(problems: &mut Vec<String>, out: &Captured, level: &str, fragments: &[&str]) {
    if !lines(out, level)
        .iter()
        .any(|l| fragments.iter().all(|f| l.contains(f)))
    {
        problems.push(format!("no {level} line with all of {fragments:?}"));
    }
}

fn assert_no_problems(problems: &[String], out: &Captured) {
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}\n{}",
        problems.len(),
        problems.join("\n  "),
        out.transcript()
    );
}

/// Links, `..` entries, a gzip bomb, bad names and tags: each one warns, and
/// the pull mirrors everything else, the normal package included.
#[test]
fn hostile_layers_names_and_tags_warn_and_the_pull_goes_on() {
    let env = Env::new();
    let packages = [NORMAL, LINKS, BOMB, NAMES];
    let (bundle, out) = env.pull("warnings", &packages);
    let mut problems = Vec::new();
    if out.code() != Some(0) {
        problems.push(format!("exit code {:?}, want 0", out.code()));
    }
    // Links and `../escape` are never followed or extracted: version.json is
    // "not there"; extra_images.json (a symlink to /etc/passwd) and
    // images_digests.json (a hard link) are absent, so the internal image
    // only the link names is not pulled (the bundle check below).
    check_said(
        &mut problems,
        &out,
        "warn",
        &[&format!(
            "packages/{LINKS}/version:stable: no version.json in the image"
        )],
    );
    // The bomb is read up to the 1 GiB limit, not whole.
    check_said(
        &mut problems,
        &out,
        "warn",
        &[
            &format!("reading layer of packages/{BOMB}:v1.0.0"),
            "more than 1073741824 bytes of uncompressed data before the requested files",
        ],
    );
    for (name, _, refused) in hostile::bad_extra_entries() {
        check_said(
            &mut problems,
            &out,
            "warn",
            &[
                &format!("packages/{NAMES}:v1.0.0: extra_images.json: "),
                &format!("{refused:?}"),
                ", skipped",
            ],
        );
        if bundle.with_file_name(&name).exists() {
            problems.push(format!("{name} was created next to the bundle"));
        }
    }
    check_said(
        &mut problems,
        &out,
        "warn",
        &[&format!(
            "packages/{NAMES}/version:alpha: version.json: expected"
        )],
    );
    check_said(
        &mut problems,
        &out,
        "warn",
        &[&format!(
            "packages/{NAMES}/version:beta: version.json: version \"../../x\" is not a valid tag"
        )],
    );
    check_said(
        &mut problems,
        &out,
        "warn",
        &[&format!(
            "registry lists package {:?}, which is not a valid repository name; skipped",
            hostile::UPPER_CASE_LISTING
        )],
    );

    let names: Vec<String> = packages.iter().map(|p| p.to_string()).collect();
    let expected = env.fixture.expected_for(&names, true);
    assert!(expected.contains_key(&format!("package-{NORMAL}.tar")));
    problems.extend(env.check_bundle(&bundle, &expected));
    assert_no_problems(&problems, &out);
}

/// `extra_images.json` that cannot be used and a manifest of 5000 blobs stop
/// the pull (SPEC: extras are never dropped silently) with one error line
/// naming the package and the value; the normal package, pulled before, is
/// packed and intact, and nothing partial is left.
#[test]
fn unusable_metadata_and_oversized_manifests_stop_the_pull_cleanly() {
    let env = Env::new();
    let cases: [(&str, &[&str]); 4] = [
        (DEEP, &["extra_images.json", "nested deeper than 64 levels"]),
        (NOT_JSON, &["extra_images.json", "expected value"]),
        (
            HUGE,
            &["extra_images.json", "bytes, more than the 16777216 allowed"],
        ),
        (
            BLOBS,
            &[&format!("{} layers (limit 4096)", hostile::MANY_BLOBS)],
        ),
    ];
    let mut expected = env.fixture.expected_for(&[NORMAL.to_string()], true);
    expected.remove("package-versions.tar");
    let (mut all, mut transcripts) = (Vec::new(), String::new());
    for (package, fragments) in cases {
        let (bundle, out) = env.pull(package, &[NORMAL, package]);
        let mut problems = Vec::new();
        if out.code() != Some(1) {
            problems.push(format!("exit code {:?}, want 1", out.code()));
        }
        let errors = lines(&out, "error").len();
        if errors != 1 {
            problems.push(format!("{errors} error lines, want 1"));
        }
        let mut fragments = fragments.to_vec();
        let source = format!("packages/{package}:v1.0.0");
        fragments.push(&source);
        check_said(&mut problems, &out, "error", &fragments);
        problems.extend(env.check_bundle(&bundle, &expected));
        all.extend(problems.iter().map(|p| format!("{package}: {p}")));
        transcripts.push_str(&format!("--- {package}\n{}\n", out.transcript()));
    }
    assert!(
        all.is_empty(),
        "{} problem(s):\n  {}\n{transcripts}",
        all.len(),
        all.join("\n  ")
    );
}

/// An index cannot name itself (its digest covers its own body), and
/// docker-registry refuses an index whose child manifest it does not hold,
/// so a cycle of indexes cannot be served. (The plugin follows one level of
/// index only, and refuses an index inside an index.)
#[test]
fn the_registry_refuses_an_index_naming_a_manifest_it_does_not_hold() {
    let registry = Registry::start().unwrap();
    let client = Client::new(&registry.base_url());
    let missing = oci::sha256_digest(b"the index itself, or any manifest not pushed");
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": missing,
            "size": 100,
            "platform": {"os": "linux", "architecture": "amd64"},
        }],
    });
    let index = Blob::new(OCI_INDEX, serde_json::to_vec(&body).unwrap());
    let pushed = client.push_manifest("deckhouse/ee/packages/x", "v1.0.0", &index);
    let err = pushed.expect_err("docker-registry accepted an index with a dangling child");
    assert!(err.to_string().contains("answered 400"), "{err:#}");
}
