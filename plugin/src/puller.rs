//! Getting images: resolve references, fetch manifests (picking `linux/amd64`
//! out of indexes), and store manifests and blobs in a layout. Every step is
//! one batched call so the host can run the requests concurrently.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, FsContext, RegistryContext, Result};
use crate::layout::Layout;
use crate::manifest::{self, Parsed};
use crate::names::{self, PackageRepos};
use crate::ports::{BlobFetch, Descriptor, Host, ImageRef, Manifest, Progress, RegistryError};

const PLATFORM_OS: &str = "linux";
const PLATFORM_ARCH: &str = "amd64";
/// Decompressed bytes the host may read from one layer while looking for a
/// metadata file; bounds a gzip bomb.
const LAYER_SCAN_LIMIT: u64 = 1 << 30;

/// An image whose manifest is known (and, for an index, already narrowed to
/// `linux/amd64`).
#[derive(Clone, Debug)]
pub struct Image {
    /// How the image was asked for.
    pub source: ImageRef,
    /// What the reference resolved to: the index digest for a multi-platform tag.
    pub resolved: Descriptor,
    /// The image manifest that goes into the layout.
    pub manifest: Manifest,
    pub config: Descriptor,
    /// Layers, bottom first.
    pub layers: Vec<Descriptor>,
}

/// Resolves references without downloading anything but headers.
/// `Ok(None)` is "does not exist".
pub fn resolve(host: &Host, refs: &[ImageRef]) -> Vec<Result<Option<Descriptor>>> {
    if refs.is_empty() {
        return Vec::new();
    }
    host.registry
        .resolve(refs)
        .into_iter()
        .zip(refs)
        .map(|(r, image)| match r {
            Err(RegistryError::NotFound(_)) => Ok(None),
            other => other.ctx(format!("resolving {image}")),
        })
        .collect()
}

/// Fetches the manifests of resolved images, following indexes to their
/// `linux/amd64` image.
pub fn fetch_images(host: &Host, items: &[(ImageRef, Descriptor)]) -> Vec<Result<Image>> {
    if items.is_empty() {
        return Vec::new();
    }
    let by_digest: Vec<ImageRef> = items
        .iter()
        .map(|(r, d)| ImageRef::new(&r.repo, &d.digest))
        .collect();
    let fetched = host.registry.fetch_manifests(&by_digest);

    // First pass: images are done; indexes name the child to fetch next.
    let mut results: Vec<Option<Result<Image>>> = Vec::with_capacity(items.len());
    let mut children: Vec<(usize, ImageRef)> = Vec::new();
    for (i, ((source, resolved), fetched)) in items.iter().zip(fetched).enumerate() {
        let outcome = fetched
            .ctx(format!("fetching manifest of {source}"))
            .and_then(|m| {
                let parsed = parse(source, &m)?;
                Ok((m, parsed))
            });
        match outcome {
            Err(e) => results.push(Some(Err(e))),
            Ok((m, Parsed::Image { config, layers })) => results.push(Some(Ok(Image {
                source: source.clone(),
                resolved: resolved.clone(),
                manifest: m,
                config,
                layers,
            }))),
            Ok((_, Parsed::Index(entries))) => {
                match manifest::select_platform(&entries, PLATFORM_OS, PLATFORM_ARCH) {
                    Some(e) => {
                        children.push((i, ImageRef::new(&source.repo, &e.descriptor.digest)));
                        results.push(None);
                    }
                    None => results.push(Some(Err(Error::Registry(format!(
                        "{source}: the image index has no {PLATFORM_OS}/{PLATFORM_ARCH} image"
                    ))))),
                }
            }
        }
    }

    let child_refs: Vec<ImageRef> = children.iter().map(|(_, r)| r.clone()).collect();
    let child_manifests = if child_refs.is_empty() {
        Vec::new()
    } else {
        host.registry.fetch_manifests(&child_refs)
    };
    for ((i, child), fetched) in children.into_iter().zip(child_manifests) {
        let (source, resolved) = &items[i];
        let outcome = fetched
            .ctx(format!(
                "fetching {PLATFORM_OS}/{PLATFORM_ARCH} manifest of {source}"
            ))
            .and_then(|m| match parse(&child, &m)? {
                Parsed::Image { config, layers } => Ok(Image {
                    source: source.clone(),
                    resolved: resolved.clone(),
                    manifest: m,
                    config,
                    layers,
                }),
                Parsed::Index(_) => Err(Error::Registry(format!(
                    "{source}: nested image indexes are not supported"
                ))),
            });
        results[i] = Some(outcome);
    }
    results
        .into_iter()
        .map(|r| r.expect("every item has an outcome"))
        .collect()
}

fn parse(source: &ImageRef, m: &Manifest) -> Result<Parsed> {
    manifest::parse(&m.descriptor.media_type, &m.body)
        .map_err(|e| Error::Registry(format!("{source}: {e}")))
}

/// An image to record in a layout under a name.
pub struct Placement<'a> {
    pub image: &'a Image,
    pub ref_name: String,
    pub short_tag: String,
}

impl<'a> Placement<'a> {
    /// Each image under the ref name and short tag it was asked for by.
    pub fn for_images(repos: &PackageRepos, images: &'a [Image]) -> Vec<Self> {
        images
            .iter()
            .map(|image| Placement {
                image,
                ref_name: repos.ref_name(&image.source.repo, &image.source.reference),
                short_tag: short_tag(&image.source.reference),
            })
            .collect()
    }
}

/// Resolves references and fetches the manifests of those that exist;
/// `on_missing` is told about each one that does not. Errors are fatal.
pub fn resolve_and_fetch(
    host: &Host,
    refs: &[ImageRef],
    on_missing: impl Fn(&ImageRef),
) -> Result<Vec<Image>> {
    let mut found = Vec::new();
    for (r, resolved) in refs.iter().zip(resolve(host, refs)) {
        match resolved? {
            Some(d) => found.push((r.clone(), d)),
            None => on_missing(r),
        }
    }
    fetch_images(host, &found).into_iter().collect()
}

/// Writes the manifests and downloads the missing blobs of `images` into the
/// layout, then records them in its index. Blobs already stored are skipped.
pub fn store(host: &Host, layout: &mut Layout, images: &[Placement]) -> Result<()> {
    if images.is_empty() {
        return Ok(());
    }
    let blobs_dir = format!("{}/blobs/sha256", layout.dir());
    host.fs.create_dir_all(&blobs_dir).ctx(&blobs_dir)?;

    let mut fetches: Vec<BlobFetch> = Vec::new();
    let mut owners: Vec<&ImageRef> = Vec::new();
    let mut planned: HashSet<String> = HashSet::new();
    for p in images {
        let m = &p.image.manifest;
        if !layout.has_blob(&m.descriptor.digest) {
            let path = layout.blob_path(&m.descriptor.digest);
            host.fs.write_file(&path, &m.body).ctx(&path)?;
            layout.mark_blob(&m.descriptor.digest);
        }
        for blob in std::iter::once(&p.image.config).chain(&p.image.layers) {
            if layout.has_blob(&blob.digest) || planned.contains(&blob.digest) {
                continue;
            }
            planned.insert(blob.digest.clone());
            fetches.push(BlobFetch {
                repo: p.image.source.repo.clone(),
                digest: blob.digest.clone(),
                size: blob.size,
                path: layout.blob_path(&blob.digest),
            });
            owners.push(&p.image.source);
        }
    }
    if !fetches.is_empty() {
        host.events.progress(Progress::BlobsPlanned {
            count: fetches.len() as u32,
            bytes: fetches.iter().map(|f| f.size).sum(),
        });
        let results = host.registry.fetch_blobs(&fetches);
        let mut first_error = None;
        for ((fetch, owner), result) in fetches.iter().zip(owners).zip(results) {
            match result {
                Ok(()) => layout.mark_blob(&fetch.digest),
                Err(e) if first_error.is_none() => {
                    first_error = Some(Error::registry(
                        format_args!("downloading blob {} of {owner}", fetch.digest),
                        e,
                    ));
                }
                Err(_) => {}
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
    }
    for p in images {
        layout.add(&p.image.manifest.descriptor, &p.ref_name, &p.short_tag);
    }
    Ok(())
}

/// Reads metadata files from an image, top layer first: the first layer
/// holding a name wins. Reads the layers from `layout` when they are stored
/// there, else streams them from the registry.
pub fn read_image_files(
    host: &Host,
    image: &Image,
    layout: Option<&Layout>,
    names: &[&str],
) -> Result<HashMap<String, Vec<u8>>, ReadFilesError> {
    let mut found: HashMap<String, Vec<u8>> = HashMap::new();
    for layer in image.layers.iter().rev() {
        let wanted: Vec<String> = names
            .iter()
            .filter(|n| !found.contains_key(**n))
            .map(|n| n.to_string())
            .collect();
        if wanted.is_empty() {
            break;
        }
        let files = match layout.filter(|l| l.has_blob(&layer.digest)) {
            Some(l) => host
                .fs
                .read_layer_files(&l.blob_path(&layer.digest), &wanted, LAYER_SCAN_LIMIT)
                .map_err(|e| {
                    ReadFilesError::Fs(Error::fs(format!("reading layer of {}", image.source), e))
                })?,
            None => host
                .registry
                .read_layer_files(&image.source.repo, &layer.digest, &wanted, LAYER_SCAN_LIMIT)
                .map_err(ReadFilesError::Registry)?,
        };
        for f in files {
            found.entry(f.name).or_insert(f.content);
        }
    }
    Ok(found)
}

/// Why metadata files could not be read: the caller decides which registry
/// failures are fatal (extra images retry, internal digests only warn).
#[derive(Debug)]
pub enum ReadFilesError {
    Registry(RegistryError),
    Fs(Error),
}

impl ReadFilesError {
    pub fn into_error(self, context: impl std::fmt::Display) -> Error {
        match self {
            Self::Registry(e) => Error::registry(context, e),
            Self::Fs(e) => e,
        }
    }
}

/// The short tag recorded for an image asked for by `reference`: the tag
/// itself, or the hex of a digest (`@` and `:` cannot be in a tag).
pub fn short_tag(reference: &str) -> String {
    reference
        .strip_prefix("sha256:")
        .unwrap_or(reference)
        .to_string()
}

/// The cosign attestation tag for a digest: `sha256-<hex>.att`.
pub fn digest_att_tag(digest: &str) -> Option<String> {
    digest
        .strip_prefix("sha256:")
        .filter(|hex| names::is_sha256_hex(hex))
        .map(|hex| format!("sha256-{hex}.att"))
}
