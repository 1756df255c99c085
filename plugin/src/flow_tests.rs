//! The export flows end to end over the in-memory host.

use std::collections::BTreeMap;

use crate::error::Error;
use crate::layout::{REF_NAME, SHORT_TAG};
use crate::options::Options;
use crate::testkit::{World, read_tar};

const ROOT: &str = "reg.test/d8";

struct Seeded {
    world: World,
    internal: String,
    v120: String,
    mesh_amd64: String,
    scanner: String,
}

/// The package tree of the SPEC in miniature: channels, lts, extras with a
/// numeric tag, an internal image, VEX both ways, an index, and a package
/// with no channels.
fn seed() -> Seeded {
    let world = World::new();
    let r = &world.registry;
    for name in ["console", "mesh", "tools"] {
        r.tag_only("packages", name);
    }
    let channel = |pkg: &str, ch: &str, v: &str| {
        r.image(
            &format!("packages/{pkg}/version"),
            ch,
            &[("version.json", &format!(r#"{{"version":"{v}"}}"#))],
        );
    };
    for (ch, v) in [
        ("alpha", "v1.2.0"),
        ("beta", "v1.2.0"),
        ("early-access", "v1.1.0"),
        ("stable", "v1.1.0"),
        ("rock-solid", "v1.0.0"),
        ("lts", "v1.0.0"),
    ] {
        channel("console", ch, v);
    }
    for v in ["v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0"] {
        channel("console", v, v);
    }
    let internal = r.image("packages/console", "", &[]);
    r.image("packages/console", "v1.0.0", &[]);
    r.image("packages/console", "v1.1.0", &[]);
    let v120 = r.image(
        "packages/console",
        "v1.2.0",
        &[
            (
                "extra_images.json",
                r#"{"scanner":"v0.5.0","db":14,"junk":[1]}"#,
            ),
            (
                "images_digests.json",
                &format!(r#"{{"console":{{"api":"{internal}"}}}}"#),
            ),
        ],
    );
    r.image("packages/console", "v1.3.0", &[]);
    r.image("packages/console", "v1.1.0.att", &[]);
    r.image(
        "packages/console",
        &crate::puller::digest_att_tag(&v120).unwrap(),
        &[],
    );
    let scanner = r.image("packages/console/extra/scanner", "v0.5.0", &[]);
    r.image(
        "packages/console/extra/scanner",
        &crate::puller::digest_att_tag(&scanner).unwrap(),
        &[],
    );
    r.image("packages/console/extra/db", "14", &[]);

    for ch in ["alpha", "beta", "early-access", "stable", "rock-solid"] {
        channel("mesh", ch, "0.3.0");
    }
    let arm = r.image("packages/mesh", "", &[("arch", "arm64")]);
    let mesh_amd64 = r.image("packages/mesh", "", &[("arch", "amd64")]);
    r.index("packages/mesh", "v0.3.0", &arm, &mesh_amd64);

    channel("tools", "v2.0.0", "v2.0.0");
    r.image("packages/tools", "v2.0.0", &[]);
    Seeded {
        world,
        internal,
        v120,
        mesh_amd64,
        scanner,
    }
}

fn opts() -> Options {
    Options {
        source_root: ROOT.into(),
        ..Options::default()
    }
}

/// Short tags per layout directory of an archive: dir → [(short tag, ref name, digest)].
fn layouts(entries: &[(String, Vec<u8>)]) -> BTreeMap<String, Vec<(String, String, String)>> {
    let mut out = BTreeMap::new();
    for (path, content) in entries {
        let Some(dir) = path.strip_suffix("/index.json") else {
            continue;
        };
        let index: serde_json::Value = serde_json::from_slice(content).unwrap();
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(index["mediaType"], crate::manifest::OCI_INDEX);
        let list = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["annotations"][SHORT_TAG].as_str().unwrap().to_string(),
                    m["annotations"][REF_NAME].as_str().unwrap().to_string(),
                    m["digest"].as_str().unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>();
        let mut sorted = list.clone();
        sorted.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(list, sorted, "{dir}/index.json is sorted by ref name");
        out.insert(dir.to_string(), list);
    }
    out
}

fn tags(layout: &[(String, String, String)]) -> Vec<&str> {
    let mut t: Vec<&str> = layout.iter().map(|(t, _, _)| t.as_str()).collect();
    t.sort();
    t
}

#[test]
fn unfiltered_pull_mirrors_every_package() {
    let s = seed();
    let w = &s.world;
    let summary = crate::pull_packages(&w.host(), &opts()).unwrap();
    let names: Vec<&str> = summary.archives.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["package-console.tar", "package-mesh.tar"]);
    assert!(
        w.fs.get("package-tools.tar").is_none(),
        "no channels → no archive"
    );

    let entries = w.tar_entries("package-console.tar");
    assert!(
        entries
            .iter()
            .all(|(p, _)| p.starts_with("packages/console/"))
    );
    let l = layouts(&entries);
    let internal_hex = s.internal.strip_prefix("sha256:").unwrap();
    let v120_att = crate::puller::digest_att_tag(&s.v120).unwrap();
    let mut main = vec![
        "v1.0.0",
        "v1.1.0",
        "v1.2.0",
        "v1.1.0.att",
        &v120_att,
        internal_hex,
    ];
    main.sort();
    assert_eq!(tags(&l["packages/console"]), main);
    assert_eq!(
        tags(&l["packages/console/version"]),
        [
            "alpha",
            "beta",
            "early-access",
            "lts",
            "rock-solid",
            "stable",
            "v1.0.0",
            "v1.1.0",
            "v1.2.0"
        ]
    );
    let scanner_att = crate::puller::digest_att_tag(&s.scanner).unwrap();
    let mut scanner = vec!["v0.5.0", scanner_att.as_str()];
    scanner.sort();
    assert_eq!(tags(&l["packages/console/extra/scanner"]), scanner);
    assert_eq!(tags(&l["packages/console/extra/db"]), ["14"]);

    let internal = l["packages/console"]
        .iter()
        .find(|e| e.0 == internal_hex)
        .unwrap();
    assert_eq!(
        internal.1,
        format!("{ROOT}/packages/console@{}", s.internal)
    );
    let stable = l["packages/console/version"]
        .iter()
        .find(|e| e.0 == "stable")
        .unwrap();
    assert_eq!(stable.1, format!("{ROOT}/packages/console/version:stable"));

    // Every blob is named after its sha256, and every layout is complete.
    for (path, content) in &entries {
        if let Some((_, hex)) = path.split_once("/blobs/sha256/") {
            assert_eq!(
                crate::testkit::sha256(content),
                format!("sha256:{hex}"),
                "{path}"
            );
        }
    }
    for dir in l.keys() {
        let layout_file = entries
            .iter()
            .find(|(p, _)| *p == format!("{dir}/oci-layout"))
            .unwrap();
        assert_eq!(layout_file.1, br#"{"imageLayoutVersion":"1.0.0"}"#);
    }

    // The index resolved to linux/amd64, version.json without `v` got one.
    let mesh = layouts(&w.tar_entries("package-mesh.tar"));
    assert_eq!(mesh["packages/mesh"][0].0, "v0.3.0");
    assert_eq!(mesh["packages/mesh"][0].2, s.mesh_amd64);
    assert_eq!(summary.packages[1].versions, ["v0.3.0"]);

    assert_eq!(summary.packages[0].name, "console");
    assert_eq!(summary.packages[0].versions, ["v1.2.0", "v1.1.0", "v1.0.0"]);
    assert_eq!(summary.packages[0].vex_images, 3);
    assert!(w.events.warnings().iter().any(|m| m.contains("junk")));
    assert!(
        w.fs.paths().iter().all(|p| !p.contains(".tmp")),
        "{:?}",
        w.fs.paths()
    );
}

#[test]
fn package_versions_carry_every_release_tag() {
    let s = seed();
    let w = &s.world;
    let summary = crate::pull_package_versions(&w.host(), &opts()).unwrap();
    assert_eq!(summary.archives.len(), 1);
    let l = layouts(&w.tar_entries("package-versions.tar"));
    assert!(tags(&l["packages/console/version"]).contains(&"v1.3.0"));
    assert_eq!(tags(&l["packages/tools/version"]), ["v2.0.0"]);
    assert_eq!(l.len(), 3);
    assert_eq!(summary.packages[0].versions, ["v1.2.0", "v1.1.0", "v1.0.0"]);
    assert!(w.fs.paths().iter().all(|p| !p.contains(".tmp")));
}

#[test]
fn a_single_exact_pin_is_published_to_every_channel() {
    let s = seed();
    let w = &s.world;
    let o = Options {
        include_packages: vec!["console@=v1.1.0".into()],
        ..opts()
    };
    crate::pull_packages(&w.host(), &o).unwrap();
    let l = layouts(&w.tar_entries("package-console.tar"));
    let version = &l["packages/console/version"];
    assert_eq!(
        tags(version),
        [
            "alpha",
            "beta",
            "early-access",
            "lts",
            "rock-solid",
            "stable",
            "v1.1.0"
        ]
    );
    assert!(
        version.iter().all(|e| e.2 == version[0].2),
        "all aliases share one digest"
    );
    assert_eq!(tags(&l["packages/console"]), ["v1.1.0", "v1.1.0.att"]);
    let heads = w.registry.heads();
    assert!(
        !heads.iter().any(|h| h.ends_with("version:alpha")),
        "exact pins resolve no channels: {heads:?}"
    );
    assert!(
        !w.registry
            .requests
            .borrow()
            .iter()
            .any(|r| r.starts_with("LIST packages/"))
    );
}

#[test]
fn a_pin_with_a_channel_aliases_that_channel_only() {
    let s = seed();
    let w = &s.world;
    let o = Options {
        include_packages: vec!["console@=v1.1.0+stable".into(), "console@=v1.0.0".into()],
        ..opts()
    };
    crate::pull_packages(&w.host(), &o).unwrap();
    let l = layouts(&w.tar_entries("package-console.tar"));
    assert_eq!(
        tags(&l["packages/console/version"]),
        ["stable", "v1.0.0", "v1.1.0"]
    );
}

#[test]
fn a_range_adds_latest_patches_to_channel_versions() {
    let s = seed();
    let w = &s.world;
    let o = Options {
        include_packages: vec!["console@^1.1.0".into()],
        ..opts()
    };
    let summary = crate::pull_packages(&w.host(), &o).unwrap();
    assert_eq!(
        summary.packages[0].versions,
        ["v1.2.0", "v1.1.0", "v1.0.0", "v1.3.0"]
    );
}

#[test]
fn proxy_mode_probes_in_walk_order_and_never_sends_rejected_candidates() {
    let w = World::new();
    for v in ["v1.6.0", "v1.6.1", "v1.6.2", "v1.7.0", "v2.0.0"] {
        w.registry.image("packages/p", v, &[]);
    }
    w.registry.refuse_listing.set(true);
    let o = Options {
        include_packages: vec!["p@>=1.6.0 <2.0.0".into()],
        proxy_registry: true,
        ..opts()
    };
    let summary = crate::pull_packages(&w.host(), &o).unwrap();
    let probes: Vec<String> = w
        .registry
        .heads()
        .into_iter()
        .filter(|h| h.starts_with("packages/p:v"))
        .collect();
    assert_eq!(
        &probes[..8],
        [
            "packages/p:v1.6.0",
            "packages/p:v1.6.1",
            "packages/p:v1.6.2",
            "packages/p:v1.6.3",
            "packages/p:v1.7.0",
            "packages/p:v1.7.1",
            "packages/p:v1.8.0",
            // v2.0.0 is rejected by the constraint, so it is never sent;
            // then the main images of the selection are resolved.
            "packages/p:v1.6.0",
        ]
    );
    assert_eq!(summary.packages[0].versions, ["v1.6.0", "v1.6.2", "v1.7.0"]);
}

#[test]
fn proxy_mode_without_include_list_or_version_is_a_usage_error() {
    let w = World::new();
    let o = Options {
        proxy_registry: true,
        ..opts()
    };
    assert!(matches!(
        crate::pull_packages(&w.host(), &o),
        Err(Error::InvalidOptions(_))
    ));
    let o = Options {
        proxy_registry: true,
        include_packages: vec!["p@*".into()],
        ..opts()
    };
    let err = crate::pull_packages(&w.host(), &o).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidOptions(m) if m.contains("names no version")),
        "{err}"
    );
}

#[test]
fn chunks_are_exact_and_concatenate_to_the_archive() {
    let whole = {
        let s = seed();
        crate::pull_packages(&s.world.host(), &opts()).unwrap();
        s.world.fs.get("package-mesh.tar").unwrap()
    };
    let s = seed();
    let o = Options {
        bundle_chunk_size: 1000,
        ..opts()
    };
    let summary = crate::pull_packages(&s.world.host(), &o).unwrap();
    let mesh = summary
        .archives
        .iter()
        .find(|a| a.name == "package-mesh.tar")
        .unwrap();
    assert!(mesh.files.len() > 2);
    let mut joined = Vec::new();
    for (i, f) in mesh.files.iter().enumerate() {
        assert_eq!(f, &format!("package-mesh.tar.{i:04}.chunk"));
        let data = s.world.fs.get(f).unwrap();
        if i + 1 < mesh.files.len() {
            assert_eq!(data.len(), 1000, "{f}");
        }
        joined.extend(data);
    }
    assert_eq!(joined, whole);
    assert!(s.world.fs.get("package-mesh.tar").is_none());
    assert!(!read_tar(&joined).is_empty());
}

#[test]
fn cancellation_keeps_finished_packages_and_nothing_else() {
    let s = seed();
    let w = &s.world;
    // console finishes; the cancel lands while mesh is being pulled.
    let checks_for_console = {
        let probe = seed();
        crate::pull_packages(
            &probe.world.host(),
            &Options {
                include_packages: vec!["console".into()],
                ..opts()
            },
        )
        .unwrap();
        probe.world.events.checks()
    };
    w.events.cancel_after.set(Some(checks_for_console + 1));
    let err = crate::pull_packages(&w.host(), &opts()).unwrap_err();
    assert_eq!(err, Error::Cancelled);
    let paths = w.fs.paths();
    assert!(
        paths.contains(&"package-console.tar".to_string()),
        "{paths:?}"
    );
    assert_eq!(
        paths.len(),
        1,
        "only the finished archive remains: {paths:?}"
    );
}

#[test]
fn only_extra_images_still_reads_channel_versions() {
    let s = seed();
    let w = &s.world;
    let o = Options {
        only_extra_images: true,
        include_packages: vec!["console".into()],
        ..opts()
    };
    crate::pull_packages(&w.host(), &o).unwrap();
    let l = layouts(&w.tar_entries("package-console.tar"));
    let dirs: Vec<&str> = l.keys().map(String::as_str).collect();
    assert_eq!(
        dirs,
        [
            "packages/console/extra/db",
            "packages/console/extra/scanner"
        ]
    );
}

#[test]
fn dry_run_writes_nothing_and_counts_the_plan() {
    let s = seed();
    let w = &s.world;
    let o = Options {
        dry_run: true,
        ..opts()
    };
    let summary = crate::pull_packages(&w.host(), &o).unwrap();
    assert!(summary.dry_run);
    assert!(w.fs.paths().is_empty());
    let console = &summary.packages[0];
    // 6 channels + 3 main + 3 version images.
    assert_eq!(console.images, 12);
    assert!(
        w.registry
            .requests
            .borrow()
            .iter()
            .all(|r| !r.starts_with("BLOB"))
    );
}

#[test]
fn dry_run_of_package_versions_counts_each_packages_release_images() {
    let s = seed();
    let w = &s.world;
    let o = Options {
        dry_run: true,
        ..opts()
    };
    let summary = crate::pull_package_versions(&w.host(), &o).unwrap();
    assert!(w.fs.paths().is_empty());
    let console = summary
        .packages
        .iter()
        .find(|p| p.name == "console")
        .expect("console is planned");
    // 6 channels + v1.0.0..v1.3.0, each tag once.
    assert_eq!(console.images, 10);
    assert!(
        w.registry
            .requests
            .borrow()
            .iter()
            .all(|r| !r.starts_with("BLOB"))
    );
    // The versions the channels name, as a real pull reports them.
    let real = seed();
    let pulled = crate::pull_package_versions(&real.world.host(), &opts()).unwrap();
    let real_console = pulled
        .packages
        .iter()
        .find(|p| p.name == "console")
        .unwrap();
    assert!(!real_console.versions.is_empty());
    assert_eq!(console.versions, real_console.versions);
}

#[test]
fn a_registry_without_packages_is_a_warning() {
    let w = World::new();
    let summary = crate::pull_packages(&w.host(), &opts()).unwrap();
    assert!(summary.archives.is_empty());
    assert!(
        summary
            .warnings
            .iter()
            .any(|m| m.contains("no packages in source"))
    );
    let summary = crate::pull_package_versions(&w.host(), &opts()).unwrap();
    assert!(summary.archives.is_empty());
    assert!(w.fs.paths().is_empty());
}

#[test]
fn hostile_package_names_are_skipped() {
    let s = seed();
    s.world.registry.tag_only("packages", "Evil..Name");
    crate::pull_packages(&s.world.host(), &opts()).unwrap();
    assert!(
        s.world
            .events
            .warnings()
            .iter()
            .any(|m| m.contains("Evil..Name"))
    );
}
