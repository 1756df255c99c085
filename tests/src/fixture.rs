//! A realistic package tree for the test registry, and what a correct pull
//! of it must produce (SPEC §1–§3, §6).
//!
//! Tree under `<root>` = `127.0.0.1:PORT/deckhouse/ee` (see [`Fixture::describe`]):
//!
//! - `<root>/packages` tags: `commander`, `console`, `ghost`, `stronghold`
//!   (one placeholder image behind all four).
//! - `console`: channels alpha→v1.3.0, beta→v1.2.0, early-access→v1.2.0,
//!   stable→v1.1.0 (the very same manifest as `version:v1.1.0`),
//!   rock-solid→v1.0.0, lts→v1.0.0 (the only package with `lts`). Release
//!   images `version:v0.9.0` (named by no channel) and v1.0.0…v1.3.0. Main
//!   images v0.9.0…v1.3.0 share a base layer; v1.0.0's top layer is an
//!   uncompressed tar. Extras `extra/nginx:1.24.0` (only named by v0.9.0),
//!   `extra/nginx:1.25.3`, `extra/postgres:13`, `extra/postgres:14` (a numeric
//!   tag in `extra_images.json`, next to bool/object/array/null values that
//!   must be ignored). Internal images I1, I2 pushed by digest only, named in
//!   nested `images_digests.json` (plus a short fake digest and a dangling
//!   one that is not in the registry). VEX: `v1.2.0.att`,
//!   `sha256-<console:v1.1.0>.att`, and `sha256-<nginx:1.25.3>.att` in the
//!   extra's repository.
//! - `commander`: channels alpha→`0.3.0` (no leading `v`; uncompressed layer),
//!   beta→v0.2.0 (`version.json` in the lower layer, an unrelated top layer),
//!   early-access→v0.2.0 (same manifest as `version:v0.2.0`), stable and
//!   rock-solid→v0.1.0; no `lts`. Main image v0.3.0 is a linux/amd64 +
//!   linux/arm64 image index. Extra `extra/envoy:v1.30.0`; internal image IC.
//! - `stronghold`: only `version:v2.0.0` and `version:v2.1.0` (no channels);
//!   a main image `stronghold:v2.1.0` that an unfiltered pull must not take.
//! - `ghost`: listed, nothing else in the registry.

pub mod hostile;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::oci::{
    Artifact, Blob, Client, Compression, DSSE_ENVELOPE, Image, Index, Layer, OCI_CONFIG, Platform,
    hex_of, layer, raw_layer, sha256_digest,
};

/// The five default release channels.
pub const CHANNELS: [&str; 5] = ["alpha", "beta", "early-access", "stable", "rock-solid"];
/// The optional sixth channel.
pub const LTS: &str = "lts";
/// The registry path of the root, under the registry host.
pub const ROOT_PATH: &str = "deckhouse/ee";
/// Annotation keys of `index.json` descriptors.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const SHORT_TAG: &str = "io.deckhouse.image.short_tag";

/// One manifest put into the registry.
#[derive(Clone, Debug)]
pub struct Push {
    /// Repository relative to the root (`packages/console/version`).
    pub repo: String,
    /// The tag, or `None` for an image pushed by digest only.
    pub tag: Option<String>,
    pub artifact: Artifact,
}

/// An image a layout must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedImage {
    /// `org.opencontainers.image.ref.name`.
    pub ref_name: String,
    /// `io.deckhouse.image.short_tag`.
    pub short_tag: String,
    /// The manifest digest the descriptor must name (the linux/amd64 image of an index).
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// Manifest, config and layer digests.
    pub blobs: BTreeSet<String>,
}

/// One OCI layout inside an archive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpectedLayout {
    /// Keyed by ref name.
    pub images: BTreeMap<String, ExpectedImage>,
}

impl ExpectedLayout {
    /// Every blob digest the layout must store (and nothing else).
    pub fn blobs(&self) -> BTreeSet<String> {
        self.images
            .values()
            .flat_map(|i| i.blobs.iter().cloned())
            .collect()
    }

    pub fn short_tags(&self) -> BTreeSet<String> {
        self.images.values().map(|i| i.short_tag.clone()).collect()
    }
}

/// One archive of the bundle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpectedArchive {
    /// Keyed by the layout's directory inside the tar (`packages/console/version`).
    pub layouts: BTreeMap<String, ExpectedLayout>,
}

impl ExpectedArchive {
    /// The exact set of tar entry paths.
    pub fn entries(&self) -> BTreeSet<String> {
        let mut set = BTreeSet::new();
        for (dir, layout) in &self.layouts {
            set.insert(format!("{dir}/index.json"));
            set.insert(format!("{dir}/oci-layout"));
            for d in layout.blobs() {
                set.insert(format!("{dir}/blobs/sha256/{}", hex_of(&d)));
            }
        }
        set
    }
}

/// What a pull must write: archive file name → content.
pub type ExpectedBundle = BTreeMap<String, ExpectedArchive>;

/// What the registry holds for one package, as the pull sees it.
#[derive(Clone, Debug, Default)]
pub struct PackageSpec {
    pub name: String,
    /// Channel → version named by its `version.json` (normalised with `v`).
    pub channels: BTreeMap<String, String>,
    /// Versions an unfiltered pull resolves, in first-seen order.
    pub channel_versions: Vec<String>,
    /// Tags of `packages/<name>/version`.
    pub version_tags: BTreeSet<String>,
    /// Tags of `packages/<name>` that are versions (main images).
    pub main_versions: BTreeSet<String>,
    /// Per main version: extra images `(name, tag)` of its `extra_images.json`.
    pub extras: BTreeMap<String, Vec<(String, String)>>,
    /// Per main version: internal digests of its `images_digests.json` that exist.
    pub internal: BTreeMap<String, Vec<String>>,
}

/// Specific digests and names the tests check by name.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// `commander:v0.3.0`: the index, its linux/amd64 and linux/arm64 manifests.
    pub index_ref: String,
    pub index_digest: String,
    pub amd64_digest: String,
    pub arm64_digest: String,
    /// Blobs only the arm64 image has (must not be in any bundle).
    pub arm64_only_blobs: BTreeSet<String>,
    /// (package, digest) of every internal image.
    pub internal: Vec<(String, String)>,
    /// A digest named in `images_digests.json` that the registry does not have.
    pub dangling_internal: String,
    /// (package, version) with a release image that no channel names.
    pub untracked_version: (String, String),
    /// The digest of `console:v1.1.0`, whose VEX is `sha256-<hex>.att`.
    pub console_v110_digest: String,
    /// The digest of `console/extra/nginx:1.25.3`.
    pub nginx_digest: String,
    /// Packages listed in `<root>/packages` that have no channels.
    pub channel_less: Vec<String>,
}

/// The whole fixture: what to push and what a pull must give.
pub struct Fixture {
    /// `127.0.0.1:PORT/deckhouse/ee` (the `--source` value).
    pub root: String,
    /// `127.0.0.1:PORT`.
    pub registry_host: String,
    /// Package names (tags of `<root>/packages`), sorted.
    pub package_names: Vec<String>,
    /// Manifests in push order.
    pub pushes: Vec<Push>,
    pub packages: BTreeMap<String, PackageSpec>,
    pub facts: Facts,
    /// repo → reference (tag or digest) → artifact.
    content: BTreeMap<String, BTreeMap<String, Artifact>>,
}

fn json_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap()
}

fn version_json(version: &str) -> Vec<u8> {
    json_bytes(&json!({"version": version}))
}

/// A release (channel or version) image: one gzip layer with `version.json`
/// and a changelog.
fn release_image(version_json: &[u8], changelog: &str) -> Image {
    Image::new(
        &Platform::linux("amd64"),
        vec![layer(
            &[
                ("version.json", version_json),
                ("changelog.yaml", changelog.as_bytes()),
            ],
            Compression::Gzip,
        )],
    )
}

/// A small image holding one file.
fn file_image(path: &str, content: &str) -> Image {
    Image::new(
        &Platform::linux("amd64"),
        vec![layer(&[(path, content.as_bytes())], Compression::Gzip)],
    )
}

/// A cosign-style attestation image for `subject`.
fn vex_image(subject: &Image, note: &str) -> Image {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://openvex.dev/ns",
        "subject": [{"digest": {"sha256": hex_of(subject.digest())}}],
        "predicate": {"statements": [], "note": note},
    });
    let envelope = json!({
        "payloadType": "application/vnd.in-toto+json",
        "payload": String::from_utf8(json_bytes(&statement)).unwrap(),
        "signatures": [],
    });
    let l: Layer = raw_layer(DSSE_ENVELOPE, json_bytes(&envelope));
    let config = Blob::new(
        OCI_CONFIG,
        serde_json::to_vec(&json!({
            "architecture": "",
            "os": "",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [l.diff_id]},
        }))
        .unwrap(),
    );
    Image::from_parts(
        config,
        vec![l],
        Some(json!({"dev.sigstore.cosign/predicateType": "https://openvex.dev/ns"})),
    )
}

struct Builder {
    pushes: Vec<Push>,
    content: BTreeMap<String, BTreeMap<String, Artifact>>,
}

impl Builder {
    fn tag(&mut self, repo: &str, tag: &str, artifact: impl Into<Artifact>) -> Artifact {
        let artifact = artifact.into();
        self.content
            .entry(repo.to_string())
            .or_default()
            .insert(tag.to_string(), artifact.clone());
        self.pushes.push(Push {
            repo: repo.to_string(),
            tag: Some(tag.to_string()),
            artifact: artifact.clone(),
        });
        artifact
    }

    fn untagged(&mut self, repo: &str, artifact: impl Into<Artifact>) -> Artifact {
        let artifact = artifact.into();
        self.content
            .entry(repo.to_string())
            .or_default()
            .insert(artifact.digest().to_string(), artifact.clone());
        self.pushes.push(Push {
            repo: repo.to_string(),
            tag: None,
            artifact: artifact.clone(),
        });
        artifact
    }
}

impl Fixture {
    /// The fixture for a registry at `registry_host` (`127.0.0.1:PORT`).
    pub fn new(registry_host: &str) -> Fixture {
        Self::build(registry_host, false)
    }

    /// The fixture plus the [`hostile`] packages, listed in `<root>/packages`
    /// next to the normal ones.
    pub fn with_hostile(registry_host: &str) -> Fixture {
        Self::build(registry_host, true)
    }

    fn build(registry_host: &str, with_hostile: bool) -> Fixture {
        let root = format!("{registry_host}/{ROOT_PATH}");
        let mut b = Builder {
            pushes: Vec::new(),
            content: BTreeMap::new(),
        };
        let mut packages: BTreeMap<String, PackageSpec> = BTreeMap::new();
        let mut facts = Facts::default();
        let amd64 = Platform::linux("amd64");
        let base = layer(
            &[
                (
                    "etc/os-release",
                    b"ID=distroless\nVERSION_ID=12\n".as_slice(),
                ),
                (
                    "etc/passwd",
                    b"root:x:0:0:root:/root:/sbin/nologin\n".as_slice(),
                ),
            ],
            Compression::Gzip,
        );
        let main_image = |top: Layer, label: &str| {
            Image::with_config_extra(
                &amd64,
                vec![base.clone(), top],
                json!({"io.deckhouse.package": label}),
                None,
            )
        };

        // ---------------- console ----------------
        let console_internal_1 = file_image("usr/bin/console-backend", "console backend binary\n");
        let console_internal_2 =
            file_image("usr/bin/console-frontend", "console frontend assets\n");
        let i1 = console_internal_1.digest().to_string();
        let i2 = console_internal_2.digest().to_string();
        let dangling = sha256_digest(b"an image nobody pushed");
        facts.dangling_internal = dangling.clone();
        b.untagged("packages/console", console_internal_1);
        b.untagged("packages/console", console_internal_2);

        // Release images per version.
        let mut console_release: BTreeMap<&str, Image> = BTreeMap::new();
        for v in ["v0.9.0", "v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0"] {
            let img = release_image(
                &version_json(v),
                &format!("console {v}:\n  features:\n  - improvements for {v}\n"),
            );
            b.tag("packages/console/version", v, img.clone());
            console_release.insert(v, img);
        }
        // Channels: distinct images, except stable = version:v1.1.0 itself.
        let console_channels = [
            ("alpha", "v1.3.0"),
            ("beta", "v1.2.0"),
            ("early-access", "v1.2.0"),
            ("stable", "v1.1.0"),
            ("rock-solid", "v1.0.0"),
            ("lts", "v1.0.0"),
        ];
        for (channel, v) in console_channels {
            let img = if channel == "stable" {
                console_release[v].clone()
            } else {
                release_image(
                    &json_bytes(&json!({"version": v, "channel": channel, "suspend": false})),
                    &format!("channel {channel}\n"),
                )
            };
            b.tag("packages/console/version", channel, img);
        }

        // Main images.
        let console_main: Vec<(&str, Layer)> = vec![
            (
                "v0.9.0",
                layer(
                    &[(
                        "extra_images.json",
                        &json_bytes(&json!({"nginx": "1.24.0"})),
                    )],
                    Compression::Gzip,
                ),
            ),
            (
                "v1.0.0",
                // An uncompressed tar layer.
                layer(
                    &[
                        ("extra_images.json", &json_bytes(&json!({"postgres": 13}))),
                        ("images_digests.json", &json_bytes(&json!({}))),
                    ],
                    Compression::None,
                ),
            ),
            (
                "v1.1.0",
                layer(
                    &[(
                        "images_digests.json",
                        &json_bytes(&json!({"backend": {"image": i1}})),
                    )],
                    Compression::Gzip,
                ),
            ),
            (
                "v1.2.0",
                layer(
                    &[
                        (
                            "extra_images.json",
                            &json_bytes(&json!({"nginx": "1.25.3"})),
                        ),
                        ("images_digests.json", &json_bytes(&json!({"backend": i1}))),
                    ],
                    Compression::Gzip,
                ),
            ),
            (
                "v1.3.0",
                layer(
                    &[
                        ("openapi/config-values.yaml", b"type: object\n".as_slice()),
                        (
                            "extra_images.json",
                            &json_bytes(&json!({
                                "nginx": "1.25.3",
                                "postgres": 14,
                                "debug": true,
                                "meta": {"tag": "ignored"},
                                "list": ["ignored"],
                                "nothing": null,
                            })),
                        ),
                        (
                            "images_digests.json",
                            &json_bytes(&json!({
                                "console": {"backend": i1, "frontend": i2},
                                "all": [i1, i2, {"again": i2}],
                                "short": "sha256:abc123",
                                "legacy": dangling,
                                "count": 2,
                            })),
                        ),
                    ],
                    Compression::Gzip,
                ),
            ),
        ];
        let mut console_main_images: BTreeMap<&str, Image> = BTreeMap::new();
        for (v, top) in console_main {
            let img = main_image(top, &format!("console {v}"));
            b.tag("packages/console", v, img.clone());
            console_main_images.insert(v, img);
        }
        // VEX: by tag for v1.2.0, by digest for v1.1.0.
        b.tag(
            "packages/console",
            "v1.2.0.att",
            vex_image(&console_main_images["v1.2.0"], "console v1.2.0 by tag"),
        );
        let v110 = console_main_images["v1.1.0"].digest().to_string();
        facts.console_v110_digest = v110.clone();
        b.tag(
            "packages/console",
            &format!("sha256-{}.att", hex_of(&v110)),
            vex_image(&console_main_images["v1.1.0"], "console v1.1.0 by digest"),
        );
        // Extras.
        for (name, tag) in [
            ("nginx", "1.24.0"),
            ("nginx", "1.25.3"),
            ("postgres", "13"),
            ("postgres", "14"),
        ] {
            let img = file_image(
                &format!("usr/sbin/{name}"),
                &format!("{name} {tag} binary\n"),
            );
            let repo = format!("packages/console/extra/{name}");
            b.tag(&repo, tag, img.clone());
            if (name, tag) == ("nginx", "1.25.3") {
                facts.nginx_digest = img.digest().to_string();
                b.tag(
                    &repo,
                    &format!("sha256-{}.att", hex_of(img.digest())),
                    vex_image(&img, "nginx 1.25.3 by digest"),
                );
            }
        }
        packages.insert(
            "console".into(),
            PackageSpec {
                name: "console".into(),
                channels: console_channels
                    .iter()
                    .map(|(c, v)| (c.to_string(), v.to_string()))
                    .collect(),
                channel_versions: ["v1.3.0", "v1.2.0", "v1.1.0", "v1.0.0"]
                    .map(String::from)
                    .to_vec(),
                version_tags: console_release
                    .keys()
                    .map(|s| s.to_string())
                    .chain(console_channels.iter().map(|(c, _)| c.to_string()))
                    .collect(),
                main_versions: console_main_images.keys().map(|s| s.to_string()).collect(),
                extras: [
                    ("v0.9.0", vec![("nginx", "1.24.0")]),
                    ("v1.0.0", vec![("postgres", "13")]),
                    ("v1.2.0", vec![("nginx", "1.25.3")]),
                    ("v1.3.0", vec![("nginx", "1.25.3"), ("postgres", "14")]),
                ]
                .into_iter()
                .map(|(v, e)| {
                    (
                        v.to_string(),
                        e.into_iter()
                            .map(|(n, t)| (n.to_string(), t.to_string()))
                            .collect(),
                    )
                })
                .collect(),
                internal: [
                    ("v1.1.0", vec![i1.clone()]),
                    ("v1.2.0", vec![i1.clone()]),
                    ("v1.3.0", vec![i1.clone(), i2.clone()]),
                ]
                .into_iter()
                .map(|(v, d)| (v.to_string(), d))
                .collect(),
            },
        );
        facts.internal.push(("console".into(), i1.clone()));
        facts.internal.push(("console".into(), i2.clone()));
        facts.untracked_version = ("console".into(), "v0.9.0".into());

        // ---------------- commander ----------------
        let commander_internal = file_image("usr/bin/commander-agent", "commander agent\n");
        let ic = commander_internal.digest().to_string();
        b.untagged("packages/commander", commander_internal);
        facts.internal.push(("commander".into(), ic.clone()));

        let mut commander_release: BTreeMap<&str, Image> = BTreeMap::new();
        for v in ["v0.1.0", "v0.2.0", "v0.3.0"] {
            let img = release_image(&version_json(v), &format!("commander {v}\n"));
            b.tag("packages/commander/version", v, img.clone());
            commander_release.insert(v, img);
        }
        // alpha: version without the leading v, in an uncompressed layer.
        b.tag(
            "packages/commander/version",
            "alpha",
            Image::new(
                &amd64,
                vec![layer(
                    &[
                        ("version.json", &json_bytes(&json!({"version": "0.3.0"}))),
                        ("changelog.yaml", b"channel alpha\n".as_slice()),
                    ],
                    Compression::None,
                )],
            ),
        );
        // beta: version.json in the lower layer, an unrelated top layer.
        b.tag(
            "packages/commander/version",
            "beta",
            Image::new(
                &amd64,
                vec![
                    layer(
                        &[("version.json", &version_json("v0.2.0"))],
                        Compression::Gzip,
                    ),
                    layer(
                        &[("docs/README.md", b"# commander\nrelease notes\n".as_slice())],
                        Compression::Gzip,
                    ),
                ],
            ),
        );
        b.tag(
            "packages/commander/version",
            "early-access",
            commander_release["v0.2.0"].clone(),
        );
        for channel in ["stable", "rock-solid"] {
            b.tag(
                "packages/commander/version",
                channel,
                release_image(&version_json("v0.1.0"), &format!("channel {channel}\n")),
            );
        }
        let commander_top = |extras: Value, digests: Option<Value>| {
            let e = json_bytes(&extras);
            let d = digests.map(|d| json_bytes(&d));
            let mut files: Vec<(&str, &[u8])> = vec![("extra_images.json", &e)];
            if let Some(d) = &d {
                files.push(("images_digests.json", d));
            }
            layer(&files, Compression::Gzip)
        };
        let c010 = main_image(commander_top(json!({}), None), "commander v0.1.0");
        let c020 = main_image(
            commander_top(json!({"envoy": "v1.30.0"}), None),
            "commander v0.2.0",
        );
        b.tag("packages/commander", "v0.1.0", c010);
        b.tag("packages/commander", "v0.2.0", c020);
        // v0.3.0: a two-platform index.
        let top030 = commander_top(
            json!({"envoy": "v1.30.0"}),
            Some(json!({"agent": {"digest": ic}})),
        );
        let arch_image = |arch: &str| {
            Image::with_config_extra(
                &Platform::linux(arch),
                vec![
                    base.clone(),
                    top030.clone(),
                    layer(
                        &[(
                            "usr/bin/commander",
                            format!("commander v0.3.0 for {arch}\n").as_bytes(),
                        )],
                        Compression::Gzip,
                    ),
                ],
                json!({"io.deckhouse.package": format!("commander v0.3.0 {arch}")}),
                None,
            )
        };
        let c030_amd64 = arch_image("amd64");
        let c030_arm64 = arch_image("arm64");
        facts.amd64_digest = c030_amd64.digest().to_string();
        facts.arm64_digest = c030_arm64.digest().to_string();
        facts.arm64_only_blobs = c030_arm64
            .blob_digests()
            .difference(&c030_amd64.blob_digests())
            .cloned()
            .collect();
        let index = Index::new(vec![
            (Platform::linux("amd64"), c030_amd64),
            (Platform::linux("arm64"), c030_arm64),
        ]);
        facts.index_digest = index.digest().to_string();
        facts.index_ref = format!("{root}/packages/commander:v0.3.0");
        b.tag("packages/commander", "v0.3.0", index);
        b.tag(
            "packages/commander/extra/envoy",
            "v1.30.0",
            file_image("usr/local/bin/envoy", "envoy v1.30.0\n"),
        );
        packages.insert(
            "commander".into(),
            PackageSpec {
                name: "commander".into(),
                channels: [
                    ("alpha", "v0.3.0"),
                    ("beta", "v0.2.0"),
                    ("early-access", "v0.2.0"),
                    ("stable", "v0.1.0"),
                    ("rock-solid", "v0.1.0"),
                ]
                .iter()
                .map(|(c, v)| (c.to_string(), v.to_string()))
                .collect(),
                channel_versions: ["v0.3.0", "v0.2.0", "v0.1.0"].map(String::from).to_vec(),
                version_tags: commander_release
                    .keys()
                    .map(|s| s.to_string())
                    .chain(CHANNELS.iter().map(|c| c.to_string()))
                    .collect(),
                main_versions: ["v0.1.0", "v0.2.0", "v0.3.0"].map(String::from).into(),
                extras: [
                    ("v0.2.0", vec![("envoy", "v1.30.0")]),
                    ("v0.3.0", vec![("envoy", "v1.30.0")]),
                ]
                .into_iter()
                .map(|(v, e)| {
                    (
                        v.to_string(),
                        e.into_iter()
                            .map(|(n, t)| (n.to_string(), t.to_string()))
                            .collect(),
                    )
                })
                .collect(),
                internal: [("v0.3.0".to_string(), vec![ic.clone()])].into(),
            },
        );

        // ---------------- stronghold: version tags only ----------------
        for v in ["v2.0.0", "v2.1.0"] {
            b.tag(
                "packages/stronghold/version",
                v,
                release_image(&version_json(v), &format!("stronghold {v}\n")),
            );
        }
        b.tag(
            "packages/stronghold",
            "v2.1.0",
            main_image(
                layer(
                    &[("extra_images.json", &json_bytes(&json!({})))],
                    Compression::Gzip,
                ),
                "stronghold v2.1.0",
            ),
        );
        packages.insert(
            "stronghold".into(),
            PackageSpec {
                name: "stronghold".into(),
                version_tags: ["v2.0.0", "v2.1.0"].map(String::from).into(),
                main_versions: ["v2.1.0".to_string()].into(),
                ..Default::default()
            },
        );
        packages.insert(
            "ghost".into(),
            PackageSpec {
                name: "ghost".into(),
                ..Default::default()
            },
        );
        facts.channel_less = vec!["ghost".into(), "stronghold".into()];

        // ---------------- the package list, pushed last ----------------
        let placeholder = file_image("README", "this tag names a package\n");
        let mut listed: Vec<String> = ["stronghold", "console", "ghost", "commander"]
            .map(String::from)
            .to_vec();
        if with_hostile {
            listed.extend(hostile::add(&mut b, &mut packages));
        }
        for name in &listed {
            b.tag("packages", name, placeholder.clone());
        }
        let mut package_names: Vec<String> = packages.keys().cloned().collect();
        package_names.sort();

        Fixture {
            root,
            registry_host: registry_host.to_string(),
            package_names,
            pushes: b.pushes,
            packages,
            facts,
            content: b.content,
        }
    }

    /// The registry repository (`deckhouse/ee/<repo>`) of a root-relative repo.
    pub fn registry_repo(&self, repo: &str) -> String {
        format!("{ROOT_PATH}/{repo}")
    }

    /// `docker://127.0.0.1:PORT/deckhouse/ee/<repo>:<tag>` or `@digest`.
    pub fn docker_ref(&self, repo: &str, reference: &str) -> String {
        let sep = if reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        format!("docker://{}/{repo}{sep}{reference}", self.root)
    }

    /// Push everything to the registry.
    pub fn seed(&self, client: &Client) -> Result<()> {
        client.ping().context("the test registry does not answer")?;
        for p in &self.pushes {
            let repo = self.registry_repo(&p.repo);
            client
                .push(&repo, &p.artifact, p.tag.as_deref())
                .with_context(|| {
                    format!(
                        "seeding {repo}{}",
                        p.tag
                            .as_deref()
                            .map(|t| format!(":{t}"))
                            .unwrap_or_default()
                    )
                })?;
        }
        Ok(())
    }

    /// What the registry holds at `repo` (root-relative) under `reference`
    /// (a tag, or a digest for an untagged push or an index's child).
    pub fn lookup(&self, repo: &str, reference: &str) -> Option<Artifact> {
        let repo_content = self.content.get(repo)?;
        if let Some(a) = repo_content.get(reference) {
            return Some(a.clone());
        }
        // Any manifest pushed to the repo is reachable by digest.
        repo_content.values().find_map(|a| match a {
            Artifact::Image(i) if i.digest() == reference => Some(a.clone()),
            Artifact::Index(x) if x.digest() == reference => Some(a.clone()),
            Artifact::Index(x) => x
                .images
                .iter()
                .find(|(_, i)| i.digest() == reference)
                .map(|(_, i)| Artifact::Image(i.clone())),
            _ => None,
        })
    }

    /// Tags of a root-relative repo, sorted.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let Some(c) = self.content.get(repo) else {
            return Vec::new();
        };
        c.keys()
            .filter(|k| !k.starts_with("sha256:"))
            .cloned()
            .collect()
    }

    /// Untagged digests pushed to a root-relative repo.
    pub fn untagged(&self, repo: &str) -> Vec<String> {
        let Some(c) = self.content.get(repo) else {
            return Vec::new();
        };
        c.keys()
            .filter(|k| k.starts_with("sha256:"))
            .cloned()
            .collect()
    }

    /// The expected descriptor for `repo` + tag/digest pulled by default
    /// (linux/amd64 for an index). `None` when the registry does not have it.
    pub fn expected_image(&self, repo: &str, reference: &str) -> Option<ExpectedImage> {
        let artifact = self.lookup(repo, reference)?;
        let image = artifact.default_image();
        let (ref_name, short_tag) = if let Some(hex) = reference.strip_prefix("sha256:") {
            (format!("{}/{repo}@{reference}", self.root), hex.to_string())
        } else {
            (
                format!("{}/{repo}:{reference}", self.root),
                reference.to_string(),
            )
        };
        Some(ExpectedImage {
            ref_name,
            short_tag,
            digest: image.digest().to_string(),
            media_type: image.manifest.media_type.clone(),
            size: image.manifest.size(),
            blobs: image.blob_digests(),
        })
    }

    fn add(&self, layout: &mut ExpectedLayout, repo: &str, reference: &str) -> bool {
        match self.expected_image(repo, reference) {
            Some(img) => {
                layout.images.insert(img.ref_name.clone(), img);
                true
            }
            None => false,
        }
    }

    /// VEX images of an image pulled from `repo` by `reference` (SPEC §2.4 VEX).
    fn add_vex(&self, layout: &mut ExpectedLayout, repo: &str, reference: &str) {
        let Some(img) = self.expected_image(repo, reference) else {
            return;
        };
        if !reference.starts_with("sha256:") {
            self.add(layout, repo, &format!("{reference}.att"));
        }
        self.add(layout, repo, &format!("sha256-{}.att", hex_of(&img.digest)));
    }

    /// The archive `package-<name>.tar` of a pull resolving `versions` for
    /// the package. `channels`: whether channel images are pulled (not for
    /// exact constraints). `None` when the package would have no image.
    pub fn package_archive(
        &self,
        name: &str,
        versions: &[&str],
        channels: bool,
        vex: bool,
    ) -> Option<ExpectedArchive> {
        let main_repo = format!("packages/{name}");
        let version_repo = format!("packages/{name}/version");
        let mut version = ExpectedLayout::default();
        let mut main = ExpectedLayout::default();
        let mut extras: BTreeMap<String, ExpectedLayout> = BTreeMap::new();
        if channels {
            for c in CHANNELS.iter().chain(std::iter::once(&LTS)) {
                self.add(&mut version, &version_repo, c);
            }
        }
        let spec = self.packages.get(name);
        for v in versions {
            self.add(&mut version, &version_repo, v);
            if self.add(&mut main, &main_repo, v) && vex {
                self.add_vex(&mut main, &main_repo, v);
            }
            let Some(spec) = spec else { continue };
            for d in spec.internal.get(*v).into_iter().flatten() {
                if self.add(&mut main, &main_repo, d) && vex {
                    self.add_vex(&mut main, &main_repo, d);
                }
            }
            for (x, tag) in spec.extras.get(*v).into_iter().flatten() {
                let repo = format!("packages/{name}/extra/{x}");
                let layout = extras.entry(x.clone()).or_default();
                if self.add(layout, &repo, tag) && vex {
                    self.add_vex(layout, &repo, tag);
                }
            }
        }
        let mut archive = ExpectedArchive::default();
        let dir = format!("packages/{name}");
        for (sub, layout) in [(dir.clone(), main), (format!("{dir}/version"), version)] {
            if !layout.images.is_empty() {
                archive.layouts.insert(sub, layout);
            }
        }
        for (x, layout) in extras {
            if !layout.images.is_empty() {
                archive.layouts.insert(format!("{dir}/extra/{x}"), layout);
            }
        }
        (!archive.layouts.is_empty()).then_some(archive)
    }

    /// `package-versions.tar` (SPEC §3): per package, channels, `lts`, the
    /// channel versions and every tag of the version repository.
    pub fn versions_archive(&self) -> Option<ExpectedArchive> {
        let mut archive = ExpectedArchive::default();
        for name in &self.package_names {
            let repo = format!("packages/{name}/version");
            let mut layout = ExpectedLayout::default();
            for c in CHANNELS.iter().chain(std::iter::once(&LTS)) {
                self.add(&mut layout, &repo, c);
            }
            if let Some(spec) = self.packages.get(name) {
                for v in &spec.channel_versions {
                    self.add(&mut layout, &repo, v);
                }
            }
            for t in self.tags(&repo) {
                self.add(&mut layout, &repo, &t);
            }
            if !layout.images.is_empty() {
                archive
                    .layouts
                    .insert(format!("packages/{name}/version"), layout);
            }
        }
        (!archive.layouts.is_empty()).then_some(archive)
    }

    /// The bundle of a pull with no filter and default options.
    pub fn expected_unfiltered(&self) -> ExpectedBundle {
        self.expected_for(&self.package_names, true)
    }

    /// The bundle of a pull of `names` with no version constraint.
    pub fn expected_for(&self, names: &[String], vex: bool) -> ExpectedBundle {
        let mut bundle = ExpectedBundle::new();
        for name in names {
            let Some(spec) = self.packages.get(name) else {
                continue;
            };
            let versions: Vec<&str> = spec.channel_versions.iter().map(String::as_str).collect();
            if let Some(a) = self.package_archive(name, &versions, true, vex) {
                bundle.insert(format!("package-{name}.tar"), a);
            }
        }
        if let Some(a) = self.versions_archive() {
            bundle.insert("package-versions.tar".into(), a);
        }
        bundle
    }

    /// A human-readable description of the tree and the expected bundle.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("root: {}\n", self.root));
        for (name, spec) in &self.packages {
            out.push_str(&format!("package {name}\n"));
            for (c, v) in &spec.channels {
                out.push_str(&format!("  channel {c} -> {v}\n"));
            }
            out.push_str(&format!(
                "  version tags: {}\n",
                spec.version_tags
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
            out.push_str(&format!(
                "  main images: {}\n",
                spec.main_versions
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
            for (v, e) in &spec.extras {
                let list: Vec<String> = e.iter().map(|(n, t)| format!("{n}:{t}")).collect();
                out.push_str(&format!("  extras of {v}: {}\n", list.join(" ")));
            }
            for (v, d) in &spec.internal {
                out.push_str(&format!("  internal of {v}: {}\n", d.join(" ")));
            }
            for repo in [format!("packages/{name}")]
                .into_iter()
                .chain(
                    spec.extras
                        .values()
                        .flatten()
                        .map(|(x, _)| format!("packages/{name}/extra/{x}")),
                )
                .collect::<BTreeSet<_>>()
            {
                for t in self.tags(&repo).iter().filter(|t| t.ends_with(".att")) {
                    out.push_str(&format!("  VEX {repo}:{t}\n"));
                }
            }
        }
        out.push_str("expected unfiltered bundle:\n");
        for (archive, content) in self.expected_unfiltered() {
            out.push_str(&format!("  {archive}\n"));
            for (dir, layout) in &content.layouts {
                out.push_str(&format!("    {dir}/\n"));
                for img in layout.images.values() {
                    out.push_str(&format!(
                        "      {}  short_tag={}  {}\n",
                        img.ref_name, img.short_tag, img.digest
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn unfiltered_bundle_has_the_expected_shape() {
        let f = Fixture::new("127.0.0.1:5000");
        let b = f.expected_unfiltered();
        assert_eq!(
            b.keys().cloned().collect::<Vec<_>>(),
            vec![
                "package-commander.tar",
                "package-console.tar",
                "package-versions.tar"
            ]
        );
        let console = &b["package-console.tar"];
        assert_eq!(
            console.layouts.keys().cloned().collect::<Vec<_>>(),
            vec![
                "packages/console",
                "packages/console/extra/nginx",
                "packages/console/extra/postgres",
                "packages/console/version",
            ]
        );
        let main = &console.layouts["packages/console"];
        let tags = main.short_tags();
        for t in ["v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0", "v1.2.0.att"] {
            assert!(tags.contains(t), "{t} in {tags:?}");
        }
        assert!(!tags.contains("v0.9.0"));
        assert!(tags.contains(&format!(
            "sha256-{}.att",
            hex_of(&f.facts.console_v110_digest)
        )));
        for (_, d) in f.facts.internal.iter().filter(|(p, _)| p == "console") {
            assert!(tags.contains(hex_of(d)));
        }
        assert_eq!(main.images.len(), 8);
        let version = &console.layouts["packages/console/version"];
        assert_eq!(version.images.len(), 10);
        assert_eq!(
            console.layouts["packages/console/extra/nginx"].short_tags(),
            BTreeSet::from([
                "1.25.3".to_string(),
                format!("sha256-{}.att", hex_of(&f.facts.nginx_digest))
            ])
        );
        assert_eq!(
            console.layouts["packages/console/extra/postgres"].short_tags(),
            BTreeSet::from(["13".to_string(), "14".to_string()])
        );
        let commander_main = &b["package-commander.tar"].layouts["packages/commander"];
        let c030 = &commander_main.images[&f.facts.index_ref];
        assert_eq!(c030.digest, f.facts.amd64_digest);
        assert!(c030.blobs.is_disjoint(&f.facts.arm64_only_blobs));
        let versions = &b["package-versions.tar"];
        assert_eq!(
            versions.layouts.keys().cloned().collect::<Vec<_>>(),
            vec![
                "packages/commander/version",
                "packages/console/version",
                "packages/stronghold/version"
            ]
        );
        assert_eq!(
            versions.layouts["packages/console/version"].images.len(),
            11
        );
        assert_eq!(
            versions.layouts["packages/commander/version"].images.len(),
            8
        );
        assert_eq!(
            versions.layouts["packages/stronghold/version"].images.len(),
            2
        );
        // Digests do not depend on the port.
        let g = Fixture::new("127.0.0.1:6000");
        assert_eq!(f.facts.amd64_digest, g.facts.amd64_digest);
    }
}
