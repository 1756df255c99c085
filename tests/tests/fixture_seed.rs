//! The fixture against the real registry, read back with skopeo: every tag
//! and digest is served, tag lists are exact, the index has its two
//! platforms, and the files inside the layers say what the package specs
//! (from which the expected bundle is derived) claim.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tests::fixture::{CHANNELS, Fixture, LTS};
use tests::oci::{Artifact, OCI_INDEX, OCI_MANIFEST, sha256_digest};
use tests::process::{self, Captured};
use tests::seeded_registry;

fn skopeo(args: &[&str]) -> Captured {
    let mut cmd = process::command("skopeo");
    cmd.args(args);
    process::run(&mut cmd, Duration::from_secs(60)).expect("running skopeo (run tests/setup.sh)")
}

fn inspect_raw(reference: &str) -> Vec<u8> {
    let out = skopeo(&["inspect", "--raw", "--tls-verify=false", reference]);
    assert!(out.success(), "{}", out.transcript());
    out.stdout.into_bytes()
}

/// The tags skopeo lists for `docker://<repo_ref>`, sorted.
fn skopeo_tags(repo_ref: &str) -> Vec<String> {
    let out = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{repo_ref}"),
    ]);
    assert!(out.success(), "{}", out.transcript());
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let mut tags: Vec<String> = v["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    tags.sort();
    tags
}

#[test]
fn every_pushed_manifest_is_served_under_its_tag_and_digest() {
    let (registry, fixture) = seeded_registry().unwrap();
    let mut checked = 0;
    for push in &fixture.pushes {
        let reference = push
            .tag
            .clone()
            .unwrap_or_else(|| push.artifact.digest().to_string());
        let raw = inspect_raw(&fixture.docker_ref(&push.repo, &reference));
        assert_eq!(
            sha256_digest(&raw),
            push.artifact.digest(),
            "{}:{reference} serves another manifest\nregistry log:\n{}",
            push.repo,
            registry.log()
        );
        if let Artifact::Index(index) = &push.artifact {
            for (_, image) in &index.images {
                let raw = inspect_raw(&fixture.docker_ref(&push.repo, image.digest()));
                assert_eq!(sha256_digest(&raw), image.digest());
            }
        }
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} manifests pushed");
}

#[test]
fn tag_lists_are_exactly_the_fixture_tags() {
    let (registry, fixture) = seeded_registry().unwrap();
    let client = tests::oci::Client::new(&registry.base_url());
    let repos: BTreeSet<String> = fixture.pushes.iter().map(|p| p.repo.clone()).collect();
    for repo in &repos {
        let want = fixture.tags(repo);
        if want.is_empty() {
            // Only untagged manifests: distribution lists no tags.
            continue;
        }
        let got = skopeo_tags(&format!("{}/{repo}", fixture.root));
        assert_eq!(got, want, "tags of {repo}");
        let via_http = client
            .list_tags(&fixture.registry_repo(repo))
            .unwrap()
            .unwrap();
        assert_eq!(via_http, want, "tags of {repo} over HTTP");
    }
    // The package list is the tags of <root>/packages.
    assert_eq!(fixture.tags("packages"), fixture.package_names);
    assert_eq!(
        fixture.package_names,
        vec!["commander", "console", "ghost", "stronghold"]
    );
    // A package with nothing in the registry: its repositories do not exist.
    assert_eq!(
        client
            .list_tags(&fixture.registry_repo("packages/ghost/version"))
            .unwrap(),
        None
    );
    // lts exists for console only.
    assert!(
        fixture
            .tags("packages/console/version")
            .contains(&LTS.to_string())
    );
    assert!(
        !fixture
            .tags("packages/commander/version")
            .contains(&LTS.to_string())
    );
    // Untagged internal images are in the main repositories.
    for (package, digest) in &fixture.facts.internal {
        assert!(
            fixture
                .untagged(&format!("packages/{package}"))
                .contains(digest)
        );
    }
}

#[test]
fn multi_platform_main_image_is_an_index_of_amd64_and_arm64() {
    let (_registry, fixture) = seeded_registry().unwrap();
    let raw = inspect_raw(&fixture.docker_ref("packages/commander", "v0.3.0"));
    assert_eq!(sha256_digest(&raw), fixture.facts.index_digest);
    let v: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["mediaType"], OCI_INDEX);
    let platforms: BTreeMap<String, String> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap(),
                    m["platform"]["architecture"].as_str().unwrap()
                ),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        platforms,
        BTreeMap::from([
            (
                "linux/amd64".to_string(),
                fixture.facts.amd64_digest.clone()
            ),
            (
                "linux/arm64".to_string(),
                fixture.facts.arm64_digest.clone()
            ),
        ])
    );
    // A default (amd64) copy selects the amd64 manifest.
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("img");
    let out = skopeo(&[
        "--insecure-policy",
        "--override-os",
        "linux",
        "--override-arch",
        "amd64",
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &fixture.docker_ref("packages/commander", "v0.3.0"),
        &format!("dir:{}", dest.display()),
    ]);
    assert!(out.success(), "{}", out.transcript());
    let manifest = fs::read(dest.join("manifest.json")).unwrap();
    assert_eq!(sha256_digest(&manifest), fixture.facts.amd64_digest);
    assert!(!fixture.facts.arm64_only_blobs.is_empty());
}

/// Files of a `dir:` copy's layers, top layer first: (layer media type, files).
fn layer_files(dir: &Path) -> Vec<(String, BTreeMap<String, Vec<u8>>)> {
    let manifest: Value =
        serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    let mut out = Vec::new();
    for l in manifest["layers"].as_array().unwrap().iter().rev() {
        let media_type = l["mediaType"].as_str().unwrap().to_string();
        let digest = l["digest"].as_str().unwrap();
        let blob = fs::read(dir.join(digest.trim_start_matches("sha256:"))).unwrap();
        assert_eq!(sha256_digest(&blob), digest);
        let mut files = BTreeMap::new();
        if media_type.contains("tar") {
            let reader: Box<dyn Read> = if blob.starts_with(&[0x1f, 0x8b]) {
                assert!(media_type.ends_with("+gzip"));
                Box::new(flate2::read::GzDecoder::new(&blob[..]))
            } else {
                assert!(media_type.ends_with(".tar"));
                Box::new(&blob[..])
            };
            let mut archive = tar::Archive::new(reader);
            for e in archive.entries().unwrap() {
                let mut e = e.unwrap();
                let name = e.path().unwrap().display().to_string();
                let mut content = Vec::new();
                e.read_to_end(&mut content).unwrap();
                files.insert(name, content);
            }
        }
        out.push((media_type, files));
    }
    out
}

/// The first `name` in the layers, top first (SPEC §1).
fn find_file(layers: &[(String, BTreeMap<String, Vec<u8>>)], name: &str) -> Option<Vec<u8>> {
    layers.iter().find_map(|(_, f)| f.get(name).cloned())
}

fn copy_out(fixture: &Fixture, repo: &str, reference: &str, tmp: &Path) -> std::path::PathBuf {
    let dest = tmp.join(format!(
        "{}-{}",
        repo.replace('/', "_"),
        reference.replace(':', "_")
    ));
    let out = skopeo(&[
        "--insecure-policy",
        "--override-os",
        "linux",
        "--override-arch",
        "amd64",
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &fixture.docker_ref(repo, reference),
        &format!("dir:{}", dest.display()),
    ]);
    assert!(out.success(), "{}", out.transcript());
    dest
}

fn is_digest(s: &str) -> bool {
    s.len() == 71
        && s.starts_with("sha256:")
        && s[7..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn collect_digests(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if is_digest(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect_digests(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_digests(x, out)),
        _ => {}
    }
}

#[test]
fn layer_files_agree_with_the_package_specs() {
    let (_registry, fixture) = seeded_registry().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for (name, spec) in &fixture.packages {
        let version_repo = format!("packages/{name}/version");
        // Channels: version.json, top layer first, `v` added when missing.
        for c in CHANNELS.iter().chain(std::iter::once(&LTS)) {
            let exists = fixture.lookup(&version_repo, c).is_some();
            assert_eq!(exists, spec.channels.contains_key(*c), "{name} channel {c}");
            if !exists {
                continue;
            }
            let layers = layer_files(&copy_out(&fixture, &version_repo, c, tmp.path()));
            let vj = find_file(&layers, "version.json").expect("version.json");
            let v: Value = serde_json::from_slice(&vj).unwrap();
            let mut version = v["version"].as_str().unwrap().to_string();
            if !version.starts_with('v') {
                version = format!("v{version}");
            }
            assert_eq!(&version, &spec.channels[*c], "{name} channel {c}");
        }
        // Unfiltered versions = channel versions, first seen in channel order.
        let mut seen = Vec::new();
        for c in CHANNELS.iter().chain(std::iter::once(&LTS)) {
            if let Some(v) = spec.channels.get(*c)
                && !seen.contains(v)
            {
                seen.push(v.clone());
            }
        }
        assert_eq!(seen, spec.channel_versions, "{name} versions");
        // Main images: extra_images.json and images_digests.json.
        let main_repo = format!("packages/{name}");
        for v in &spec.main_versions {
            let layers = layer_files(&copy_out(&fixture, &main_repo, v, tmp.path()));
            let mut extras = Vec::new();
            if let Some(bytes) = find_file(&layers, "extra_images.json") {
                let obj: Value = serde_json::from_slice(&bytes).unwrap();
                for (x, tag) in obj.as_object().unwrap() {
                    match tag {
                        Value::String(s) => extras.push((x.clone(), s.clone())),
                        Value::Number(n) => extras.push((x.clone(), n.to_string())),
                        _ => {}
                    }
                }
            }
            extras.sort();
            let mut want = spec.extras.get(v).cloned().unwrap_or_default();
            want.sort();
            assert_eq!(extras, want, "extras of {name}:{v}");
            for (x, tag) in &extras {
                assert!(
                    fixture
                        .lookup(&format!("packages/{name}/extra/{x}"), tag)
                        .is_some(),
                    "extra {x}:{tag} of {name}:{v} is not in the registry"
                );
            }
            let mut digests = Vec::new();
            if let Some(bytes) = find_file(&layers, "images_digests.json") {
                collect_digests(&serde_json::from_slice(&bytes).unwrap(), &mut digests);
            }
            let existing: BTreeSet<String> = digests
                .iter()
                .filter(|d| fixture.lookup(&main_repo, d).is_some())
                .cloned()
                .collect();
            let want: BTreeSet<String> = spec
                .internal
                .get(v)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect();
            assert_eq!(existing, want, "internal images of {name}:{v}");
            if digests.contains(&fixture.facts.dangling_internal) {
                let out = skopeo(&[
                    "inspect",
                    "--raw",
                    "--tls-verify=false",
                    &fixture.docker_ref(&main_repo, &fixture.facts.dangling_internal),
                ]);
                assert!(!out.success(), "the dangling digest must not exist");
            }
        }
    }
    // Layer quirks the pull must cope with.
    let alpha = layer_files(&copy_out(
        &fixture,
        "packages/commander/version",
        "alpha",
        tmp.path(),
    ));
    assert!(
        alpha[0].0.ends_with(".tar"),
        "commander alpha: uncompressed layer"
    );
    let beta = layer_files(&copy_out(
        &fixture,
        "packages/commander/version",
        "beta",
        tmp.path(),
    ));
    assert_eq!(beta.len(), 2);
    assert!(
        !beta[0].1.contains_key("version.json"),
        "top layer is unrelated"
    );
    assert!(
        beta[1].1.contains_key("version.json"),
        "version.json is in the lower layer"
    );
    let c100 = layer_files(&copy_out(
        &fixture,
        "packages/console",
        "v1.0.0",
        tmp.path(),
    ));
    assert!(
        c100[0].0.ends_with(".tar"),
        "console v1.0.0: uncompressed top layer"
    );
}

#[test]
fn expected_bundle_matches_the_seeded_registry() {
    // The expected unfiltered bundle only names refs the registry serves.
    let (_registry, fixture) = seeded_registry().unwrap();
    let expected = fixture.expected_unfiltered();
    assert_eq!(
        expected.keys().cloned().collect::<Vec<_>>(),
        vec![
            "package-commander.tar",
            "package-console.tar",
            "package-versions.tar"
        ]
    );
    for archive in expected.values() {
        for layout in archive.layouts.values() {
            for img in layout.images.values() {
                let (repo_ref, reference) = match img.ref_name.split_once('@') {
                    Some((r, d)) => (r.to_string(), d.to_string()),
                    None => {
                        let (r, t) = img.ref_name.rsplit_once(':').unwrap();
                        (r.to_string(), t.to_string())
                    }
                };
                let repo = repo_ref
                    .strip_prefix(&format!("{}/", fixture.root))
                    .unwrap()
                    .to_string();
                // Resolve like a default pull: the tag, then amd64 for an index.
                let raw = inspect_raw(&fixture.docker_ref(&repo, &reference));
                let v: Value = serde_json::from_slice(&raw).unwrap();
                let digest = if v["mediaType"] == OCI_INDEX {
                    v["manifests"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|m| m["platform"]["architecture"] == "amd64")
                        .unwrap()["digest"]
                        .as_str()
                        .unwrap()
                        .to_string()
                } else {
                    sha256_digest(&raw)
                };
                assert_eq!(digest, img.digest, "{}", img.ref_name);
            }
        }
    }
    print!("{}", fixture.describe());
}

#[test]
fn slow_proxy_forwards_to_the_registry_with_a_delay() {
    let (registry, fixture) = seeded_registry().unwrap();
    let upstream = format!("127.0.0.1:{}", registry.port()).parse().unwrap();
    let proxy = tests::slowproxy::SlowProxy::start(upstream, Duration::from_millis(100)).unwrap();
    let client = tests::oci::Client::new(&format!("http://127.0.0.1:{}", proxy.port()));
    let start = std::time::Instant::now();
    let tags = client
        .list_tags(&fixture.registry_repo("packages"))
        .unwrap()
        .unwrap();
    assert_eq!(tags, fixture.package_names);
    assert!(start.elapsed() >= Duration::from_millis(100));
    let raw = inspect_raw(&format!(
        "docker://127.0.0.1:{}/{}",
        proxy.port(),
        "deckhouse/ee/packages/console:v1.3.0"
    ));
    assert_eq!(
        sha256_digest(&raw),
        fixture
            .lookup("packages/console", "v1.3.0")
            .unwrap()
            .digest()
    );
}

#[test]
fn auth_registry_wants_the_test_credentials() {
    use tests::registry::{TEST_PASSWORD, TEST_USER};
    let (registry, fixture) = tests::seeded_registry_with_auth().unwrap();
    let anonymous = tests::oci::Client::new(&registry.base_url());
    let r = anonymous.request("GET", "/v2/", &[], None).unwrap();
    assert_eq!(r.status, 401);
    let authed =
        tests::oci::Client::new(&registry.base_url()).with_basic_auth(TEST_USER, TEST_PASSWORD);
    authed.ping().unwrap();
    let wrong = tests::oci::Client::new(&registry.base_url()).with_basic_auth(TEST_USER, "nope");
    assert!(wrong.ping().is_err());
    let reference = fixture.docker_ref("packages/console", "v1.3.0");
    let out = skopeo(&["inspect", "--raw", "--tls-verify=false", &reference]);
    assert!(!out.success(), "anonymous skopeo must be refused");
    let creds = format!("{TEST_USER}:{TEST_PASSWORD}");
    let out = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &creds,
        &reference,
    ]);
    assert!(out.success(), "{}", out.transcript());
    assert_eq!(
        sha256_digest(out.stdout.as_bytes()),
        fixture
            .lookup("packages/console", "v1.3.0")
            .unwrap()
            .digest()
    );
}

#[test]
fn quirky_front_behaves_like_a_picky_registry() {
    use std::sync::atomic::Ordering;
    use tests::quirky::{Quirks, QuirkyRegistry, Stats, TOKEN};
    let (registry, fixture) = seeded_registry().unwrap();
    let front = QuirkyRegistry::start(
        &registry.base_url(),
        Quirks {
            throttle_first: 2,
            ..Quirks::default()
        },
    )
    .unwrap();
    let repo = "deckhouse/ee/packages/console";
    let client = tests::oci::Client::new(&format!("http://{}", front.host()));
    // Anonymous: a Bearer challenge naming the token realm and the scope.
    let r = client.request("GET", "/v2/", &[], None).unwrap();
    assert_eq!(r.status, 401);
    let r = client
        .request("GET", &format!("/v2/{repo}/tags/list"), &[], None)
        .unwrap();
    assert_eq!(r.status, 401);
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    // 429 twice with Retry-After, then the manifest; HEAD refused.
    let path = format!("/v2/{repo}/manifests/v1.3.0");
    let accept = ("Accept", tests::oci::MANIFEST_ACCEPT);
    for _ in 0..2 {
        let r = client
            .request("GET", &path, &[auth[0], accept], None)
            .unwrap();
        assert_eq!(r.status, 429);
    }
    let r = client
        .request("GET", &path, &[auth[0], accept], None)
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        sha256_digest(&r.body),
        fixture
            .lookup("packages/console", "v1.3.0")
            .unwrap()
            .digest()
    );
    let r = client
        .request("HEAD", &path, &[auth[0], accept], None)
        .unwrap();
    assert_eq!(r.status, 405);
    // Pagination with an opaque cursor, followed by skopeo.
    let r = client
        .request("GET", &format!("/v2/{repo}/tags/list"), &auth, None)
        .unwrap();
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["tags"].as_array().unwrap().len(), 2);
    let got = skopeo_tags(&format!("{}/{repo}", front.host()));
    assert_eq!(got, fixture.tags("packages/console"));
    assert!(Stats::get(&front.stats.pages) > 3);
    assert!(Stats::get(&front.stats.tokens) >= 1);
    // Blobs: redirected to the blob store, which refuses Authorization.
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("img");
    let out = skopeo(&[
        "--insecure-policy",
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{}/{repo}:v1.3.0", front.host()),
        &format!("dir:{}", dest.display()),
    ]);
    assert!(
        out.success(),
        "{}\n{}",
        out.transcript(),
        front.stats.summary()
    );
    assert!(
        Stats::get(&front.stats.redirects) >= 3,
        "{}",
        front.stats.summary()
    );
    assert_eq!(front.stats.blob_auth_rejected.load(Ordering::Relaxed), 0);
    let r = client
        .request(
            "GET",
            &format!(
                "http://127.0.0.1:{}/store/{repo}/{}",
                front.blob_port(),
                fixture
                    .lookup("packages/console", "v1.3.0")
                    .unwrap()
                    .default_image()
                    .config
                    .digest
            ),
            &auth,
            None,
        )
        .unwrap();
    assert_eq!(r.status, 400, "the blob store refuses Authorization");
    assert_eq!(front.stats.blob_auth_rejected.load(Ordering::Relaxed), 1);
}
