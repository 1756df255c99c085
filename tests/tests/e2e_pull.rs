//! End to end: a real `docker-registry` on 127.0.0.1 seeded with the fixture,
//! the real `host` binary running the real `plugin.wasm`, and the bundle
//! checked against SPEC.md with GNU tar and skopeo.
//!
//! Needs the release artifacts (`bash tests/build.sh`); every test says so
//! clearly when they are missing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use tests::artifacts::{self, Artifacts};
use tests::bundle::{self, check_archive, check_bundle, dir_names, sha256_file};
use tests::env::{Env, artifacts, assert_no_problems, tail};
use tests::fixture::{CHANNELS, ExpectedArchive, ExpectedBundle, ExpectedImage, Fixture, LTS};
use tests::oci::hex_of;
use tests::process;
use tests::pull::pull;
use tests::registry::closed_port;
use tests::slowproxy::SlowProxy;

/// Per package: resolved versions, image count and VEX count of an expected bundle
/// (what SPEC §8's summary reports for a package archive).
fn summary_counts(archive: &ExpectedArchive) -> (usize, usize) {
    let images: usize = archive.layouts.values().map(|l| l.images.len()).sum();
    let vex: usize = archive
        .layouts
        .values()
        .flat_map(|l| l.images.values())
        .filter(|i| i.short_tag.ends_with(".att"))
        .count();
    (images, vex)
}

fn has_word(line: &str, word: &str) -> bool {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_'))
        .any(|w| w == word)
}

#[test]
fn unfiltered_pull_writes_the_expected_bundle() {
    let env = Env::new();
    let out = env.pull_ok("bundle", &[]);
    let expected = env.fixture.expected_unfiltered();
    let scratch = env.path("unpacked");
    let problems = check_bundle(&env.path("bundle"), &expected, &scratch);
    assert_no_problems(&problems, &out);

    // The points the fixture was built to probe, said explicitly.
    let facts = &env.fixture.facts;
    let console = scratch.join("package-console/packages/console");
    let commander = scratch.join("package-commander/packages/commander");
    let versions = scratch.join("package-versions/packages");
    let (_, main) = bundle::read_index(&commander).unwrap();
    let c030 = main
        .iter()
        .find(|e| e.ref_name.as_deref() == Some(facts.index_ref.as_str()))
        .expect("commander:v0.3.0 in the main layout");
    assert_eq!(
        c030.digest, facts.amd64_digest,
        "the linux/amd64 manifest, not the index"
    );
    for d in facts
        .arm64_only_blobs
        .iter()
        .chain([&facts.index_digest, &facts.arm64_digest])
    {
        assert!(
            !commander.join("blobs/sha256").join(hex_of(d)).exists(),
            "{d} (index / arm64) must not be in the bundle"
        );
    }
    for (package, digest) in &facts.internal {
        let dir = scratch.join(format!("package-{package}/packages/{package}"));
        let (_, entries) = bundle::read_index(&dir).unwrap();
        assert!(
            entries.iter().any(|e| e.digest == *digest
                && e.short_tag.as_deref() == Some(hex_of(digest))
                && e.ref_name.as_deref()
                    == Some(format!("{}/packages/{package}@{digest}", env.fixture.root).as_str())),
            "internal image {digest} of {package}"
        );
    }
    assert!(
        !console
            .join("blobs/sha256")
            .join(hex_of(&facts.dangling_internal))
            .exists()
    );
    let (pkg, untracked) = &facts.untracked_version;
    let short_tags = |dir: &Path| -> BTreeSet<String> {
        bundle::read_index(dir)
            .unwrap()
            .1
            .into_iter()
            .filter_map(|e| e.short_tag)
            .collect()
    };
    assert!(!short_tags(&console.join("version")).contains(untracked));
    assert!(!short_tags(&console).contains(untracked));
    assert!(short_tags(&versions.join(format!("{pkg}/version"))).contains(untracked));
    assert!(short_tags(&console.join("extra/postgres")).contains("14"));
    assert!(
        !short_tags(&console.join("extra/nginx")).contains("1.24.0"),
        "nginx:1.24.0 is only named by the untracked v0.9.0"
    );
    assert!(short_tags(&console).contains("v1.2.0.att"));
    assert!(short_tags(&console).contains(&format!(
        "sha256-{}.att",
        hex_of(&facts.console_v110_digest)
    )));
    assert!(
        short_tags(&console.join("extra/nginx"))
            .contains(&format!("sha256-{}.att", hex_of(&facts.nginx_digest)))
    );
    for name in &facts.channel_less {
        assert!(
            !env.path("bundle")
                .join(format!("package-{name}.tar"))
                .exists()
        );
    }
    assert!(short_tags(&versions.join("stronghold/version")).contains("v2.1.0"));
    assert!(short_tags(&console.join("version")).contains(LTS));
    assert!(!short_tags(&commander.join("version")).contains(LTS));

    // The summary (SPEC §8): every package with images, its versions and counts.
    let text = format!("{}\n{}", out.stdout, out.stderr);
    for (archive, content) in &expected {
        let Some(name) = archive
            .strip_prefix("package-")
            .and_then(|n| n.strip_suffix(".tar"))
            .filter(|n| *n != "versions")
        else {
            continue;
        };
        let spec = &env.fixture.packages[name];
        for v in &spec.channel_versions {
            assert!(
                text.contains(v.as_str()),
                "the summary does not mention {name} {v}:\n{}",
                out.transcript()
            );
        }
        let (images, _vex) = summary_counts(content);
        assert!(
            text.lines()
                .any(|l| has_word(l, name) && has_word(l, &images.to_string())),
            "no summary line names {name} with its {images} images:\n{}",
            out.transcript()
        );
    }
}

#[test]
fn skopeo_reads_every_image_of_every_layout() {
    let env = Env::new();
    let out = env.pull_ok("bundle", &[]);
    let scratch = env.path("unpacked");
    let mut problems = Vec::new();
    let mut images = 0;
    for (name, archive) in env.fixture.expected_unfiltered() {
        let dest = scratch.join(name.trim_end_matches(".tar"));
        bundle::unpack(&env.path("bundle").join(&name), &dest).unwrap();
        for dir in archive.layouts.keys() {
            images += archive.layouts[dir].images.len();
            problems.extend(
                bundle::skopeo_check_layout(&dest.join(dir), &env.path("skopeo"))
                    .unwrap()
                    .into_iter()
                    .map(|p| format!("{name}: {dir}: {p}")),
            );
        }
    }
    assert!(images > 50, "only {images} images checked");
    assert_no_problems(&problems, &out);
}

#[test]
fn second_pull_into_the_same_bundle_gives_identical_archives() {
    let env = Env::new();
    env.pull_ok("bundle", &[]);
    let hash_all = || -> BTreeMap<String, String> {
        dir_names(&env.path("bundle"))
            .unwrap()
            .into_iter()
            .map(|n| {
                let h = sha256_file(&env.path("bundle").join(&n)).unwrap();
                (n, h)
            })
            .collect()
    };
    let first = hash_all();
    let out = env.pull_ok("bundle", &[]);
    let second = hash_all();
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        env.fixture.expected_unfiltered().keys().collect::<Vec<_>>()
    );
    assert_eq!(
        first,
        second,
        "archives differ between two runs\n{}",
        out.transcript()
    );
    env.assert_bundle(&env.fixture.expected_unfiltered(), &out);
}

#[test]
fn no_packages_writes_only_package_versions() {
    let env = Env::new();
    let out = env.pull_ok("bundle", &["--no-packages"]);
    let mut expected = ExpectedBundle::new();
    expected.insert(
        "package-versions.tar".into(),
        env.fixture.versions_archive().unwrap(),
    );
    env.assert_bundle(&expected, &out);
}

#[test]
fn skip_vex_images_leaves_attestations_out() {
    let env = Env::new();
    let out = env.pull_ok("bundle", &["--skip-vex-images"]);
    let expected = env.fixture.expected_for(&env.fixture.package_names, false);
    env.assert_bundle(&expected, &out);
}

#[test]
fn exclude_package_drops_only_its_archive() {
    let env = Env::new();
    let out = env.pull_ok("bundle", &["--exclude-package", "console"]);
    let names: Vec<String> = env
        .fixture
        .package_names
        .iter()
        .filter(|n| *n != "console")
        .cloned()
        .collect();
    // package-versions.tar still covers every package (SPEC §3).
    let expected = env.fixture.expected_for(&names, true);
    assert!(expected.contains_key("package-commander.tar"));
    assert!(!expected.contains_key("package-console.tar"));
    env.assert_bundle(&expected, &out);
}

#[test]
fn include_with_a_bare_version_adds_the_matching_versions_to_the_channels() {
    // `0.9.0` means >=0.9.0, <1.0.0 (SPEC §4): v0.9.0 joins the channel versions.
    let env = Env::new();
    let out = env.pull_ok("bundle", &["--include-package", "console@0.9.0"]);
    let spec = &env.fixture.packages["console"];
    let mut versions: Vec<&str> = spec.channel_versions.iter().map(String::as_str).collect();
    versions.push("v0.9.0");
    let mut expected = ExpectedBundle::new();
    expected.insert(
        "package-console.tar".into(),
        env.fixture
            .package_archive("console", &versions, true, true)
            .unwrap(),
    );
    expected.insert(
        "package-versions.tar".into(),
        env.fixture.versions_archive().unwrap(),
    );
    env.assert_bundle(&expected, &out);
}

#[test]
fn include_with_an_exact_pin_publishes_it_to_every_channel() {
    // `=v0.9.0`: no channels pulled, no tag listing; a single pin without a
    // channel is aliased to the five channels and lts (SPEC §2.6).
    let env = Env::new();
    let out = env.pull_ok("bundle", &["--include-package", "console@=v0.9.0"]);
    let fixture = &env.fixture;
    let mut archive = fixture
        .package_archive("console", &["v0.9.0"], false, true)
        .unwrap();
    let pinned = fixture
        .expected_image("packages/console/version", "v0.9.0")
        .unwrap();
    let version = archive.layouts.get_mut("packages/console/version").unwrap();
    for c in CHANNELS.iter().chain(std::iter::once(&LTS)) {
        let ref_name = format!("{}/packages/console/version:{c}", fixture.root);
        version.images.insert(
            ref_name.clone(),
            ExpectedImage {
                ref_name,
                short_tag: c.to_string(),
                ..pinned.clone()
            },
        );
    }
    assert!(archive.layouts.contains_key("packages/console/extra/nginx"));
    let mut expected = ExpectedBundle::new();
    expected.insert("package-console.tar".into(), archive);
    expected.insert(
        "package-versions.tar".into(),
        fixture.versions_archive().unwrap(),
    );
    env.assert_bundle(&expected, &out);
}

#[test]
fn only_extra_images_writes_the_extras_of_the_channel_versions() {
    // SPEC §2.4: channel versions are read (so extras are found), but no
    // channel, main or internal image is written.
    let env = Env::new();
    let out = env.pull_ok("bundle", &["--only-extra-images"]);
    let mut expected = env.fixture.expected_unfiltered();
    for (name, archive) in expected.iter_mut() {
        if name != "package-versions.tar" {
            archive.layouts.retain(|dir, _| dir.contains("/extra/"));
        }
    }
    expected.retain(|_, a| !a.layouts.is_empty());
    assert!(expected.contains_key("package-console.tar"));
    env.assert_bundle(&expected, &out);
}

#[test]
fn chunked_archives_concatenate_to_the_unchunked_tar() {
    const CHUNK: u64 = 8192;
    let env = Env::new();
    env.pull_ok("whole", &[]);
    let out = env.pull_ok("chunked", &["--images-bundle-chunk-size", "8192B"]);
    let expected = env.fixture.expected_unfiltered();
    let names = dir_names(&env.path("chunked")).unwrap();
    for (archive, content) in &expected {
        let chunks: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with(&format!("{archive}.")))
            .collect();
        assert!(!chunks.is_empty(), "no chunks of {archive} in {names:?}");
        let mut joined = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(
                **c,
                format!("{archive}.{i:04}.chunk"),
                "chunk names of {archive}"
            );
            let bytes = fs::read(env.path("chunked").join(c)).unwrap();
            if i + 1 < chunks.len() {
                assert_eq!(bytes.len() as u64, CHUNK, "{c} is not the last chunk");
            } else {
                assert!(
                    !bytes.is_empty() && bytes.len() as u64 <= CHUNK,
                    "last chunk {c}"
                );
            }
            joined.extend(bytes);
        }
        let whole = fs::read(env.path("whole").join(archive)).unwrap();
        assert!(
            joined == whole,
            "chunks of {archive} do not concatenate to the unchunked tar"
        );
        let tar_path = env.path(&format!("joined-{archive}"));
        fs::write(&tar_path, &joined).unwrap();
        let scratch = env.path(&format!("unpacked-{archive}"));
        let (_, problems) = check_archive(&tar_path, content, &scratch).unwrap();
        assert_no_problems(&problems, &out);
    }
    let want: usize = expected.len();
    let got: BTreeSet<&str> = names
        .iter()
        .filter_map(|n| n.split(".tar.").next())
        .collect();
    assert_eq!(got.len(), want, "archives in {names:?}");
    assert!(
        names.iter().all(|n| n.ends_with(".chunk")),
        "only chunks: {names:?}"
    );
}

/// The plugin is 32-bit: chunk sizes at and past 4 GiB once wrapped to a
/// room of 0 bytes and spun forever. Each archive must now be one chunk.
#[test]
fn chunk_sizes_past_four_gib_give_one_chunk_per_archive() {
    let env = Env::new();
    env.pull_ok("whole", &[]);
    let expected = env.fixture.expected_unfiltered();
    for size in ["4GiB", "4294967297B"] {
        let dir = format!("chunked-{size}");
        // A regression ends at the call limit instead of hanging the test.
        env.pull_ok(
            &dir,
            &["--images-bundle-chunk-size", size, "--call-timeout", "2m"],
        );
        let names = dir_names(&env.path(&dir)).unwrap();
        let want: Vec<String> = expected.keys().map(|a| format!("{a}.0000.chunk")).collect();
        assert_eq!(names, want, "with chunks of {size}");
        for archive in expected.keys() {
            let chunk = fs::read(env.path(&dir).join(format!("{archive}.0000.chunk"))).unwrap();
            let whole = fs::read(env.path("whole").join(archive)).unwrap();
            assert!(chunk == whole, "{archive} with chunks of {size}");
        }
    }
}

#[test]
fn dry_run_writes_nothing() {
    let env = Env::new();
    let out = env.pull_ok("bundle", &["--dry-run"]);
    let bundle_dir = env.path("bundle");
    if bundle_dir.exists() {
        let names = dir_names(&bundle_dir).unwrap();
        assert!(
            names.is_empty(),
            "a dry run wrote {names:?}\n{}",
            out.transcript()
        );
    }
    let text = format!("{}\n{}", out.stdout, out.stderr);
    for name in ["commander", "console"] {
        assert!(
            text.contains(name),
            "the dry run does not mention {name}:\n{}",
            out.transcript()
        );
    }
    assert!(text.contains("version:alpha") || text.contains("alpha"));
}

#[test]
fn proxy_registry_mode_probes_versions_of_the_included_package() {
    // ~1.2.0 probes v1.2.0 (exists), v1.2.1 (missing), v1.3.0 (rejected by
    // the constraint, not sent), v2.0.0 (rejected): v1.2.0 joins the channel
    // versions. Names come from the include list only (SPEC §5, §3.1).
    let env = Env::new();
    let out = env.pull_ok(
        "bundle",
        &["--proxy-registry", "--include-package", "console@~1.2.0"],
    );
    let spec = &env.fixture.packages["console"];
    let versions: Vec<&str> = spec.channel_versions.iter().map(String::as_str).collect();
    let mut expected = ExpectedBundle::new();
    expected.insert(
        "package-console.tar".into(),
        env.fixture
            .package_archive("console", &versions, true, true)
            .unwrap(),
    );
    let mut versions_archive = env.fixture.versions_archive().unwrap();
    versions_archive
        .layouts
        .retain(|dir, _| dir == "packages/console/version");
    expected.insert("package-versions.tar".into(), versions_archive);
    env.assert_bundle(&expected, &out);
}

// ---------------------------------------------------------------- CLI errors

fn non_empty_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

#[test]
fn missing_plugin_file_is_a_one_line_error_and_writes_nothing() {
    let host = artifacts::locate_host().unwrap_or_else(|e| panic!("{e:#}"));
    let tmp = tempfile::tempdir().unwrap();
    let plugin = tmp.path().join("no-such-dir").join("plugin.wasm");
    let bundle_dir = tmp.path().join("bundle");
    let art = Artifacts {
        host,
        plugin: plugin.clone(),
    };
    let source = format!("127.0.0.1:{}/deckhouse/ee", closed_port());
    let out = pull(&art, &source, &bundle_dir, &[]).unwrap();
    assert!(out.status.is_some(), "{}", out.transcript());
    assert_ne!(out.code(), Some(0), "{}", out.transcript());
    let lines = non_empty_lines(&out.stderr);
    assert_eq!(lines.len(), 1, "want one error line:\n{}", out.transcript());
    assert!(
        lines[0].contains(&plugin.display().to_string()),
        "the error does not name {}:\n{}",
        plugin.display(),
        out.transcript()
    );
    assert!(!bundle_dir.exists(), "the bundle directory was created");
}

#[test]
fn unreachable_registry_fails_and_leaves_no_archive() {
    let art = artifacts();
    let tmp = tempfile::tempdir().unwrap();
    let bundle_dir = tmp.path().join("bundle");
    let port = closed_port();
    let source = format!("127.0.0.1:{port}/deckhouse/ee");
    let out = process::run(
        &mut tests::pull::pull_command(&art, &source, &bundle_dir, &[]),
        Duration::from_secs(240),
    )
    .unwrap();
    assert!(out.status.is_some(), "the host hung:\n{}", out.transcript());
    assert_eq!(
        out.code(),
        Some(1),
        "want exit 1 (pull failed):\n{}",
        out.transcript()
    );
    let text = format!("{}\n{}", out.stdout, out.stderr);
    assert!(
        text.contains(&format!("127.0.0.1:{port}")),
        "the error does not name the registry:\n{}",
        out.transcript()
    );
    if bundle_dir.exists() {
        let names = dir_names(&bundle_dir).unwrap();
        assert!(
            names
                .iter()
                .all(|n| !n.ends_with(".tar") && !n.ends_with(".tmp") && !n.ends_with(".chunk")),
            "left behind {names:?}"
        );
    }
}

#[test]
fn bundle_path_that_is_a_file_is_refused() {
    // A working registry, so the bundle path is the only thing wrong.
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bundle");
    fs::write(&file, b"not a directory\n").unwrap();
    let out = pull(&env.artifacts, &env.fixture.root, &file, &[]).unwrap();
    assert!(out.status.is_some(), "{}", out.transcript());
    assert_ne!(out.code(), Some(0), "{}", out.transcript());
    assert_eq!(fs::read(&file).unwrap(), b"not a directory\n");
    assert!(
        out.stderr.contains(&file.display().to_string()),
        "the error does not name {}:\n{}",
        file.display(),
        out.transcript()
    );
    assert_eq!(dir_names(tmp.path()).unwrap(), vec!["bundle"]);
}

// ---------------------------------------------------------------- interrupt

#[test]
fn interrupt_stops_the_pull_and_leaves_only_complete_archives() {
    // A slow path to the registry makes the pull last seconds; Ctrl+C
    // (SIGINT) after the first package is packed must exit 130, leave no
    // temporary file, keep that complete archive and write nothing for the
    // package being pulled, nor package-versions.tar (SPEC §2.8, §3.3).
    let env = Env::new();
    let upstream = format!("127.0.0.1:{}", env.registry.port())
        .parse()
        .unwrap();
    let proxy = SlowProxy::start(upstream, Duration::from_millis(150)).unwrap();
    let fixture = Fixture::new(&format!("127.0.0.1:{}", proxy.port()));
    let bundle_dir = env.path("bundle");
    let log_out = fs::File::create(env.path("host.out")).unwrap();
    let log_err = fs::File::create(env.path("host.err")).unwrap();
    let mut cmd = tests::pull::pull_command(&env.artifacts, &fixture.root, &bundle_dir, &[]);
    cmd.stdin(std::process::Stdio::null())
        .stdout(log_out)
        .stderr(log_err);
    let mut child = cmd.spawn().unwrap();
    let transcript = || {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            fs::read_to_string(env.path("host.out")).unwrap_or_default(),
            fs::read_to_string(env.path("host.err")).unwrap_or_default()
        )
    };
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the pull ended ({status}) before it could be interrupted; slow the proxy down\n{}",
                transcript()
            );
        }
        // Packages go in name order and each is packed when complete:
        // interrupt once the first is packed, while the second is pulled.
        if bundle_dir.join("package-commander.tar").is_file() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "package-commander.tar did not appear within 120 s\n{}",
            transcript()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let kill = process::run(
        // The shell's builtin kill: no dependency on a kill binary.
        process::command("sh").args(["-c", "kill -INT \"$1\"", "sh", &child.id().to_string()]),
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(kill.success(), "{}", kill.transcript());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the host did not stop within 60 s of SIGINT\n{}",
                transcript()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130), "want exit 130\n{}", transcript());
    let expected = fixture.expected_unfiltered();
    let names = if bundle_dir.is_dir() {
        dir_names(&bundle_dir).unwrap()
    } else {
        Vec::new()
    };
    eprintln!("after the interrupt the bundle holds {names:?}");
    let mut problems = Vec::new();
    for n in &names {
        match expected.get(n) {
            Some(archive) => problems.extend(bundle::check_unpacked(
                &bundle_dir.join(n),
                archive,
                &env.path("unpacked"),
            )),
            None => problems.push(format!("left behind {n}")),
        }
    }
    if !names.contains(&"package-commander.tar".to_string()) {
        problems.push("the complete package-commander.tar was removed".into());
    }
    if names.contains(&"package-versions.tar".to_string()) {
        problems.push("package-versions.tar was written after the interrupt".into());
    }
    assert!(
        problems.is_empty(),
        "after the interrupt the bundle holds {names:?}:\n  {}\n{}",
        problems.join("\n  "),
        transcript()
    );
    drop(proxy);
}

// ---------------------------------------------------------------- basic auth

#[test]
fn pull_with_credentials_from_a_basic_auth_registry() {
    use tests::registry::{TEST_PASSWORD, TEST_USER};
    let art = artifacts();
    let (registry, fixture) =
        tests::seeded_registry_with_auth().expect("starting and seeding the registry");
    let tmp = tempfile::tempdir().unwrap();
    let bundle_dir = tmp.path().join("bundle");
    let out = pull(
        &art,
        &fixture.root,
        &bundle_dir,
        &[
            "--source-login",
            TEST_USER,
            "--source-password",
            TEST_PASSWORD,
        ],
    )
    .unwrap();
    assert_eq!(
        out.code(),
        Some(0),
        "{}\nregistry log (tail):\n{}",
        out.transcript(),
        tail(&registry.log(), 40)
    );
    let problems = check_bundle(
        &bundle_dir,
        &fixture.expected_unfiltered(),
        &tmp.path().join("unpacked"),
    );
    assert_no_problems(&problems, &out);
    assert!(
        !out.stdout.contains(TEST_PASSWORD) && !out.stderr.contains(TEST_PASSWORD),
        "the password was printed:\n{}",
        out.transcript()
    );
}

#[test]
fn pull_without_credentials_from_a_basic_auth_registry_fails() {
    let art = artifacts();
    let (_registry, fixture) =
        tests::seeded_registry_with_auth().expect("starting and seeding the registry");
    let tmp = tempfile::tempdir().unwrap();
    let bundle_dir = tmp.path().join("bundle");
    let out = pull(&art, &fixture.root, &bundle_dir, &[]).unwrap();
    assert_eq!(out.code(), Some(1), "want exit 1:\n{}", out.transcript());
    let text = format!("{}\n{}", out.stdout, out.stderr).to_lowercase();
    assert!(
        ["unauthorized", "401", "credentials", "authentication"]
            .iter()
            .any(|w| text.contains(w)),
        "the error does not say authentication failed:\n{}",
        out.transcript()
    );
    if bundle_dir.exists() {
        let names = dir_names(&bundle_dir).unwrap();
        assert!(
            names
                .iter()
                .all(|n| !n.ends_with(".tar") && !n.ends_with(".tmp")),
            "left behind {names:?}"
        );
    }
}

// ------------------------------------------------------- a picky registry

#[test]
fn pull_through_a_picky_registry() {
    // Bearer tokens for anonymous pulls, paginated tag lists with opaque
    // cursors, HEAD refused, 429 + Retry-After, blobs redirected to a store
    // that rejects the Authorization header (see tests::quirky).
    use tests::quirky::{Quirks, QuirkyRegistry, Stats};
    let env = Env::new();
    let front = QuirkyRegistry::start(&env.registry.base_url(), Quirks::default()).unwrap();
    let fixture = Fixture::new(&front.host());
    let bundle_dir = env.path("bundle");
    let out = pull(&env.artifacts, &fixture.root, &bundle_dir, &[]).unwrap();
    let stats = &front.stats;
    assert_eq!(
        out.code(),
        Some(0),
        "{}\nquirks: {}",
        out.transcript(),
        stats.summary()
    );
    let problems = check_bundle(
        &bundle_dir,
        &fixture.expected_unfiltered(),
        &env.path("unpacked"),
    );
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}\nquirks: {}\n{}",
        problems.len(),
        problems.join("\n  "),
        stats.summary(),
        out.transcript()
    );
    let summary = stats.summary();
    eprintln!("quirks: {summary}");
    assert!(Stats::get(&stats.tokens) >= 1, "{summary}");
    assert!(
        Stats::get(&stats.pages) >= 10,
        "tag lists were paginated: {summary}"
    );
    assert_eq!(Stats::get(&stats.throttled), 3, "{summary}");
    assert!(Stats::get(&stats.redirects) > 0, "{summary}");
    assert!(Stats::get(&stats.blob_downloads) > 0, "{summary}");
    assert_eq!(
        Stats::get(&stats.blob_auth_rejected),
        0,
        "Authorization was sent to the blob store: {summary}"
    );
}
