//! The benchmark's registry content: packages with big, incompressible
//! layers, generated from a seeded PRNG (the same bytes on every run) and
//! pushed to the throwaway registry.
//!
//! Per package `pkg-NN` (SPEC layout under `<root>/packages`):
//! - main images `v1.0.0`, `v1.1.0`, … : a base layer shared by every
//!   version, a middle layer shared by all but the first, one or two layers
//!   of their own (1–64 MiB) and a small top layer with `extra_images.json`
//!   and `images_digests.json`, as real packages have;
//! - one extra image `extra/proxy` with a 4 MiB layer;
//! - release images `version:<v>` (a `version.json`), the five channels
//!   tagged on them (alpha and beta the newest, rock-solid the oldest).
//!
//! No layer is shared between packages: every archive must hold its own copy
//! of a shared one, so the bytes a correct pull must fetch and write are
//! exactly the unique blob bytes.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::fixture::{CHANNELS, ROOT_PATH};
use crate::oci::{Blob, Client, Compression, Image, Layer, OCI_LAYER_GZIP, Platform, layer};

const MIB: usize = 1 << 20;
/// Sizes in MiB of the layers only one version has, by version (cycled).
const OWN_LAYERS: [&[usize]; 3] = [&[1, 16], &[4, 24], &[2, 64]];
const BASE_MIB: usize = 32;
const MIDDLE_MIB: usize = 8;
const EXTRA_MIB: usize = 4;
const EXTRA_NAME: &str = "proxy";

/// How much to generate.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Shape {
    pub packages: usize,
    pub versions: usize,
    /// Layer sizes are divided by this (1 = full size; bigger for a quick
    /// smoke run of the benchmark itself).
    pub shrink: usize,
}

/// One blob a correct pull must store, and where the registry has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// Registry repository (`deckhouse/ee/packages/pkg-00`).
    pub repo: String,
    pub digest: String,
    pub size: u64,
}

/// An image a mirror job copies: root-relative repository and tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageTag {
    pub repo: String,
    pub tag: String,
}

/// What was pushed, as the jobs need it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Content {
    pub package_names: Vec<String>,
    /// Per package: layout directory (`packages/pkg-00/version`) → images.
    pub layouts: BTreeMap<String, BTreeMap<String, Vec<ImageTag>>>,
    /// Every distinct layer and config blob (manifests, a few hundred bytes
    /// each, are left out).
    pub blobs: Vec<BlobRef>,
    /// Unique blob bytes per package (its layouts' blobs).
    pub package_bytes: BTreeMap<String, u64>,
}

impl Content {
    pub fn unique_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }

    pub fn image_count(&self) -> usize {
        self.layouts
            .values()
            .flat_map(|l| l.values())
            .map(Vec::len)
            .sum()
    }
}

/// xorshift64*: fast, seeded, and its output does not compress.
struct Rng(u64);

impl Rng {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A gzip layer holding one file of `size` random bytes from `seed`. The
/// gzip stream uses stored blocks: the bytes are random anyway, and
/// generating 1 GiB stays a matter of seconds.
fn random_layer(path: &str, size: usize, seed: u64) -> Layer {
    let mut data = vec![0u8; size];
    Rng(seed | 1).fill(&mut data);
    let tar = crate::oci::tar_of(&[(path, &data)]);
    drop(data);
    let diff_id = crate::oci::sha256_digest(&tar);
    let mut gz = flate2::GzBuilder::new().mtime(0).write(
        Vec::with_capacity(tar.len() + 4096),
        flate2::Compression::none(),
    );
    gz.write_all(&tar).expect("gzip to memory");
    let blob = Blob::new(OCI_LAYER_GZIP, gz.finish().expect("gzip to memory"));
    Layer { blob, diff_id }
}

fn json_layer(files: &[(&str, serde_json::Value)]) -> Layer {
    let bytes: Vec<(&str, Vec<u8>)> = files
        .iter()
        .map(|(n, v)| (*n, serde_json::to_vec(v).unwrap()))
        .collect();
    let refs: Vec<(&str, &[u8])> = bytes.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    layer(&refs, Compression::Gzip)
}

/// Generates the content and pushes it; returns what the jobs need.
pub fn generate_and_push(client: &Client, shape: Shape) -> Result<Content> {
    let amd64 = Platform::linux("amd64");
    let mut content = Content::default();
    let mut seen = std::collections::BTreeSet::new();
    let size = |mib: usize| (mib * MIB / shape.shrink.max(1)).max(4096);
    for p in 0..shape.packages {
        let name = format!("pkg-{p:02}");
        let main_repo = format!("packages/{name}");
        let version_repo = format!("{main_repo}/version");
        let extra_repo = format!("{main_repo}/extra/{EXTRA_NAME}");
        let seed = |n: u64| (p as u64 + 1) * 1_000_003 + n;
        let base = random_layer("usr/lib/base.bin", size(BASE_MIB), seed(1));
        let middle = random_layer("usr/lib/middle.bin", size(MIDDLE_MIB), seed(2));
        let mut layouts: BTreeMap<String, Vec<ImageTag>> = BTreeMap::new();
        let mut images: Vec<(String, String, Image)> = Vec::new();

        let extra_tag = format!("v1.{p}");
        let extra = Image::new(
            &amd64,
            vec![random_layer("usr/bin/proxy", size(EXTRA_MIB), seed(3))],
        );
        images.push((extra_repo.clone(), extra_tag.clone(), extra));

        let versions: Vec<String> = (0..shape.versions).map(|v| format!("v1.{v}.0")).collect();
        for (v, version) in versions.iter().enumerate() {
            let mut layers = vec![base.clone()];
            if v > 0 {
                layers.push(middle.clone());
            }
            for (k, mib) in OWN_LAYERS[v % OWN_LAYERS.len()].iter().enumerate() {
                let path = format!("opt/{name}/part{k}.bin");
                layers.push(random_layer(
                    &path,
                    size(*mib),
                    seed(100 + v as u64 * 10 + k as u64),
                ));
            }
            layers.push(json_layer(&[
                ("extra_images.json", json!({ EXTRA_NAME: extra_tag })),
                ("images_digests.json", json!({})),
            ]));
            let main = Image::with_config_extra(
                &amd64,
                layers,
                json!({"io.deckhouse.package": format!("{name} {version}")}),
                None,
            );
            images.push((main_repo.clone(), version.clone(), main));
            let release = Image::new(
                &amd64,
                // The package name keeps release images of different packages
                // apart (no blob shared between archives).
                vec![json_layer(&[(
                    "version.json",
                    json!({"version": version, "package": name}),
                )])],
            );
            images.push((version_repo.clone(), version.clone(), release));
        }
        // Channels on the release images: newest for alpha and beta, oldest
        // for rock-solid, the middle one for the others.
        let last = versions.len() - 1;
        let channel_version = |c: &str| match c {
            "alpha" | "beta" => last,
            "rock-solid" => 0,
            _ => last / 2,
        };
        let mut channel_tags = Vec::new();
        for c in CHANNELS {
            let release = images
                .iter()
                .find(|(r, t, _)| *r == version_repo && *t == versions[channel_version(c)])
                .map(|(_, _, i)| i.clone())
                .expect("release image of every version");
            channel_tags.push((c.to_string(), release));
        }
        for (c, i) in channel_tags {
            images.push((version_repo.clone(), c, i));
        }

        let mut package_bytes = 0;
        let mut package_seen = std::collections::BTreeSet::new();
        for (repo, tag, image) in &images {
            let registry_repo = format!("{ROOT_PATH}/{repo}");
            client
                .push_image(&registry_repo, image, Some(tag))
                .with_context(|| format!("pushing {repo}:{tag}"))?;
            layouts.entry(repo.clone()).or_default().push(ImageTag {
                repo: repo.clone(),
                tag: tag.clone(),
            });
            let blobs = std::iter::once(&image.config).chain(image.layers.iter().map(|l| &l.blob));
            for blob in blobs {
                // Per layout, as the archive stores them.
                if package_seen.insert((repo.clone(), blob.digest.clone())) {
                    package_bytes += blob.size();
                }
                if seen.insert(blob.digest.clone()) {
                    content.blobs.push(BlobRef {
                        repo: registry_repo.clone(),
                        digest: blob.digest.clone(),
                        size: blob.size(),
                    });
                }
            }
        }
        content.layouts.insert(name.clone(), layouts);
        content.package_bytes.insert(name.clone(), package_bytes);
        content.package_names.push(name);
    }
    // The package list, pushed last.
    let placeholder = Image::new(&amd64, vec![json_layer(&[("README", json!("package"))])]);
    for name in &content.package_names {
        client.push_image(&format!("{ROOT_PATH}/packages"), &placeholder, Some(name))?;
    }
    Ok(content)
}
