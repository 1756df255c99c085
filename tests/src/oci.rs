//! Real OCI images built in memory (tar layers, config JSON, manifests,
//! two-platform indexes) and a small blocking client that pushes them to the
//! test registry over plain HTTP.
//!
//! Everything is deterministic: the same files give the same digests on every
//! run (tar mtimes are 0, gzip headers carry no time), so tests can name
//! digests before anything is pushed.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";

/// Every Accept value a registry may need to serve a manifest.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The hex part of `sha256:<hex>`.
pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Bytes with a media type and their digest: a layer, a config or a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub data: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, data: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_string(),
            digest: sha256_digest(&data),
            data,
        }
    }

    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// An OCI descriptor of this blob.
    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size(),
        })
    }
}

/// How a layer's tar is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    /// A plain, uncompressed tar (`application/vnd.oci.image.layer.v1.tar`).
    None,
}

/// A layer blob plus its diff id (digest of the uncompressed tar).
#[derive(Clone, Debug)]
pub struct Layer {
    pub blob: Blob,
    pub diff_id: String,
}

/// A tar archive (ustar, regular files, mode 0644, mtime 0) of `files`, in
/// the given order.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        builder
            .append_data(&mut header, path, *content)
            .expect("writing a tar to memory");
    }
    builder.into_inner().expect("finishing a tar in memory")
}

/// gzip with a fixed header (no mtime, no name), so output is deterministic.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip to memory");
    enc.finish().expect("gzip to memory")
}

/// One member of a hand-made tar. The hostile layers need what
/// `tar::Builder::append_data` refuses to write: `..` in a name, links.
#[derive(Clone, Copy, Debug)]
pub enum TarEntry<'a> {
    File(&'a str, &'a [u8]),
    /// A hard link `name` to `target`.
    HardLink(&'a str, &'a str),
    /// A symbolic link `name` pointing at `target`.
    Symlink(&'a str, &'a str),
}

/// A tar of `entries` with their names written byte for byte (ustar,
/// mtime 0), names and link targets up to 100 bytes.
pub fn tar_of_entries(entries: &[TarEntry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let (name, target, kind, content): (&str, &str, tar::EntryType, &[u8]) = match *entry {
            TarEntry::File(name, content) => (name, "", tar::EntryType::Regular, content),
            TarEntry::HardLink(name, target) => (name, target, tar::EntryType::Link, &[]),
            TarEntry::Symlink(name, target) => (name, target, tar::EntryType::Symlink, &[]),
        };
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..target.len()].copy_from_slice(target.as_bytes());
        header.set_cksum();
        builder
            .append(&header, content)
            .expect("writing a tar to memory");
    }
    builder.into_inner().expect("finishing a tar in memory")
}

/// A gzip tar layer of `entries`.
pub fn layer_of_entries(entries: &[TarEntry]) -> Layer {
    let tar = tar_of_entries(entries);
    Layer {
        diff_id: sha256_digest(&tar),
        blob: Blob::new(OCI_LAYER_GZIP, gzip(&tar)),
    }
}

/// A gzip bomb: a layer that inflates to more than `inflated` bytes (a tar
/// member `filler` of that many zeros) before `files`. It is a series of gzip
/// members, one per 64 MiB of zeros, all compressed once; decompressors read
/// concatenated members as one stream. `inflated` is rounded up to 64 MiB.
pub fn gzip_bomb_layer(inflated: u64, files: &[(&str, &[u8])]) -> Layer {
    const CHUNK: usize = 64 << 20;
    let chunks = inflated.div_ceil(CHUNK as u64);
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(chunks * CHUNK as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_path("filler").expect("a plain name");
    header.set_cksum();
    let zeros = vec![0u8; CHUNK];
    let tail = tar_of(files);
    let zero_member = gzip(&zeros);
    let mut data = gzip(header.as_bytes());
    let mut diff = Sha256::new();
    diff.update(header.as_bytes());
    for _ in 0..chunks {
        data.extend_from_slice(&zero_member);
        diff.update(&zeros);
    }
    data.extend_from_slice(&gzip(&tail));
    diff.update(&tail);
    Layer {
        diff_id: format!("sha256:{}", hex::encode(diff.finalize())),
        blob: Blob::new(OCI_LAYER_GZIP, data),
    }
}

/// A layer holding `files`.
pub fn layer(files: &[(&str, &[u8])], compression: Compression) -> Layer {
    let tar = tar_of(files);
    let diff_id = sha256_digest(&tar);
    let blob = match compression {
        Compression::Gzip => Blob::new(OCI_LAYER_GZIP, gzip(&tar)),
        Compression::None => Blob::new(OCI_LAYER_TAR, tar),
    };
    Layer { blob, diff_id }
}

/// An arbitrary non-tar layer (e.g. a DSSE envelope of an attestation).
pub fn raw_layer(media_type: &str, data: Vec<u8>) -> Layer {
    let blob = Blob::new(media_type, data);
    let diff_id = blob.digest.clone();
    Layer { blob, diff_id }
}

/// The target platform of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
}

impl Platform {
    pub fn linux(architecture: &str) -> Platform {
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
        }
    }
}

/// An OCI image: manifest, config and layers.
#[derive(Clone, Debug)]
pub struct Image {
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Layer>,
}

impl Image {
    /// An image for `platform` with `layers` (bottom first).
    pub fn new(platform: &Platform, layers: Vec<Layer>) -> Image {
        Self::with_config_extra(platform, layers, Value::Null, None)
    }

    /// Like [`Image::new`], with `labels` in the config (to make otherwise
    /// equal images differ) and manifest `annotations`.
    pub fn with_config_extra(
        platform: &Platform,
        layers: Vec<Layer>,
        labels: Value,
        annotations: Option<Value>,
    ) -> Image {
        let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
        let mut cfg = json!({
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        if !labels.is_null() {
            cfg["config"]["Labels"] = labels;
        }
        let config = Blob::new(OCI_CONFIG, serde_json::to_vec(&cfg).unwrap());
        Self::from_parts(config, layers, annotations)
    }

    /// An image from an explicit config blob.
    pub fn from_parts(config: Blob, layers: Vec<Layer>, annotations: Option<Value>) -> Image {
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": layers.iter().map(|l| l.blob.descriptor()).collect::<Vec<_>>(),
        });
        if let Some(a) = annotations {
            manifest["annotations"] = a;
        }
        let manifest = Blob::new(OCI_MANIFEST, serde_json::to_vec(&manifest).unwrap());
        Image {
            manifest,
            config,
            layers,
        }
    }

    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    /// Digests of every blob a layout holding this image must store:
    /// the manifest, the config and each layer.
    pub fn blob_digests(&self) -> BTreeSet<String> {
        let mut set = BTreeSet::new();
        set.insert(self.manifest.digest.clone());
        set.insert(self.config.digest.clone());
        for l in &self.layers {
            set.insert(l.blob.digest.clone());
        }
        set
    }
}

/// An OCI image index over several platform images.
#[derive(Clone, Debug)]
pub struct Index {
    pub manifest: Blob,
    pub images: Vec<(Platform, Image)>,
}

impl Index {
    pub fn new(images: Vec<(Platform, Image)>) -> Index {
        let manifests: Vec<Value> = images
            .iter()
            .map(|(p, img)| {
                let mut d = img.manifest.descriptor();
                d["platform"] = json!({"architecture": p.architecture, "os": p.os});
                d
            })
            .collect();
        let body = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        });
        Index {
            manifest: Blob::new(OCI_INDEX, serde_json::to_vec(&body).unwrap()),
            images,
        }
    }

    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    /// The image for a platform.
    pub fn image_for(&self, os: &str, architecture: &str) -> Option<&Image> {
        self.images
            .iter()
            .find(|(p, _)| p.os == os && p.architecture == architecture)
            .map(|(_, i)| i)
    }
}

/// What a tag or digest points at.
#[derive(Clone, Debug)]
pub enum Artifact {
    Image(Image),
    Index(Index),
}

impl From<Image> for Artifact {
    fn from(i: Image) -> Artifact {
        Artifact::Image(i)
    }
}

impl From<Index> for Artifact {
    fn from(i: Index) -> Artifact {
        Artifact::Index(i)
    }
}

impl Artifact {
    /// The digest the registry serves for it (the index's own digest for an index).
    pub fn digest(&self) -> &str {
        match self {
            Artifact::Image(i) => i.digest(),
            Artifact::Index(x) => x.digest(),
        }
    }

    pub fn media_type(&self) -> &str {
        match self {
            Artifact::Image(i) => &i.manifest.media_type,
            Artifact::Index(x) => &x.manifest.media_type,
        }
    }

    /// The image a default (linux/amd64) pull selects.
    pub fn default_image(&self) -> &Image {
        match self {
            Artifact::Image(i) => i,
            Artifact::Index(x) => x
                .image_for("linux", "amd64")
                .expect("every fixture index has a linux/amd64 image"),
        }
    }
}

/// A blocking client for the test registry on 127.0.0.1 (plain HTTP, or
/// HTTPS with a test CA).
pub struct Client {
    base: String,
    agent: ureq::Agent,
    basic_auth: Option<String>,
}

/// A registry answer with its status, headers of interest and body.
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub docker_content_digest: Option<String>,
    pub location: Option<String>,
    pub content_length: Option<u64>,
    pub body: Vec<u8>,
}

impl Client {
    /// A client for `base` (`http://127.0.0.1:PORT`). Proxies from the
    /// environment are ignored: the registry is on loopback.
    pub fn new(base: &str) -> Client {
        Self::with_tls(base, ureq::tls::TlsConfig::default())
    }

    /// A client for an HTTPS `base` whose certificate is signed by the CA in
    /// the PEM file `ca_pem` (that CA alone is trusted).
    pub fn with_ca(base: &str, ca_pem: &std::path::Path) -> Result<Client> {
        let pem = std::fs::read(ca_pem).with_context(|| format!("reading {}", ca_pem.display()))?;
        let ca = ureq::tls::Certificate::from_pem(&pem)
            .with_context(|| format!("{}: not a PEM certificate", ca_pem.display()))?;
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&[ca]))
            .unversioned_rustls_crypto_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .build();
        Ok(Self::with_tls(base, tls))
    }

    fn with_tls(base: &str, tls: ureq::tls::TlsConfig) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(60)))
            .tls_config(tls)
            .build()
            .into();
        Client {
            base: base.trim_end_matches('/').to_string(),
            agent,
            basic_auth: None,
        }
    }

    /// Send HTTP basic auth with every request.
    pub fn with_basic_auth(mut self, user: &str, password: &str) -> Client {
        use base64_lite::encode;
        self.basic_auth = Some(format!("Basic {}", encode(format!("{user}:{password}"))));
        self
    }

    fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{}", self.base, path_or_url)
        }
    }

    /// One request. `body` is sent for PUT/POST.
    pub fn request(
        &self,
        method: &str,
        path_or_url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Reply> {
        let url = self.url(path_or_url);
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        if let Some(auth) = &self.basic_auth {
            builder = builder.header("Authorization", auth.as_str());
        }
        let result = match body {
            Some(b) => self.agent.run(builder.body(b.to_vec())?),
            None => self.agent.run(builder.body(())?),
        };
        let mut resp = result.with_context(|| format!("{method} {url}"))?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let status = resp.status().as_u16();
        let content_type = header("content-type");
        let docker_content_digest = header("docker-content-digest");
        let location = header("location");
        let content_length = header("content-length").and_then(|v| v.parse().ok());
        let body = if method == "HEAD" {
            Vec::new()
        } else {
            resp.body_mut()
                .with_config()
                .limit(256 * 1024 * 1024)
                .read_to_vec()
                .with_context(|| format!("reading the body of {method} {url}"))?
        };
        Ok(Reply {
            status,
            content_type,
            docker_content_digest,
            location,
            content_length,
            body,
        })
    }

    /// `GET /v2/` answers (the registry is up).
    pub fn ping(&self) -> Result<()> {
        let r = self.request("GET", "/v2/", &[], None)?;
        if r.status != 200 {
            bail!("GET /v2/ answered {}", r.status);
        }
        Ok(())
    }

    /// True when the blob is already in `repo`.
    pub fn has_blob(&self, repo: &str, digest: &str) -> Result<bool> {
        let r = self.request("HEAD", &format!("/v2/{repo}/blobs/{digest}"), &[], None)?;
        Ok(r.status == 200)
    }

    /// Upload a blob: POST to open an upload, then one monolithic PUT.
    pub fn push_blob(&self, repo: &str, blob: &Blob) -> Result<()> {
        if self.has_blob(repo, &blob.digest)? {
            return Ok(());
        }
        let r = self.request(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[("Content-Length", "0")],
            Some(&[]),
        )?;
        if r.status != 202 {
            bail!(
                "POST /v2/{repo}/blobs/uploads/ answered {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        let location = r
            .location
            .context("blob upload answered without a Location")?;
        let sep = if location.contains('?') { '&' } else { '?' };
        let put_url = format!("{location}{sep}digest={}", blob.digest);
        let r = self.request(
            "PUT",
            &put_url,
            &[("Content-Type", "application/octet-stream")],
            Some(&blob.data),
        )?;
        if r.status != 201 {
            bail!(
                "PUT blob {} to {repo} answered {}: {}",
                blob.digest,
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        Ok(())
    }

    /// PUT a manifest under `reference` (a tag, or its own digest).
    /// Returns the digest the registry reports.
    pub fn push_manifest(&self, repo: &str, reference: &str, manifest: &Blob) -> Result<String> {
        let r = self.request(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", manifest.media_type.as_str())],
            Some(&manifest.data),
        )?;
        if r.status != 201 {
            bail!(
                "PUT manifest {repo}:{reference} answered {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        let digest = r.docker_content_digest.unwrap_or_default();
        if digest != manifest.digest {
            bail!(
                "registry reports digest {digest:?} for {repo}:{reference}, expected {}",
                manifest.digest
            );
        }
        Ok(digest)
    }

    /// Push an image's blobs and manifest. `tag: None` pushes by digest only
    /// (an untagged image). Returns the manifest digest.
    pub fn push_image(&self, repo: &str, image: &Image, tag: Option<&str>) -> Result<String> {
        self.push_blob(repo, &image.config)?;
        // A few threads: the hostile fixture has an image of 5000 layers.
        let per_thread = image.layers.len().div_ceil(8).max(1);
        std::thread::scope(|s| {
            let pushers: Vec<_> = image
                .layers
                .chunks(per_thread)
                .map(|chunk| {
                    s.spawn(move || chunk.iter().try_for_each(|l| self.push_blob(repo, &l.blob)))
                })
                .collect();
            pushers
                .into_iter()
                .try_for_each(|p| p.join().expect("a pushing thread panicked"))
        })?;
        let reference = tag.unwrap_or(&image.manifest.digest);
        self.push_manifest(repo, reference, &image.manifest)
    }

    /// Push every platform image by digest, then the index under `tag`
    /// (or by digest). Returns the index digest.
    pub fn push_index(&self, repo: &str, index: &Index, tag: Option<&str>) -> Result<String> {
        for (_, image) in &index.images {
            self.push_image(repo, image, None)?;
        }
        let reference = tag.unwrap_or(&index.manifest.digest);
        self.push_manifest(repo, reference, &index.manifest)
    }

    /// Push an image or an index.
    pub fn push(&self, repo: &str, artifact: &Artifact, tag: Option<&str>) -> Result<String> {
        match artifact {
            Artifact::Image(i) => self.push_image(repo, i, tag),
            Artifact::Index(x) => self.push_index(repo, x, tag),
        }
    }

    /// Fetch a manifest (with the OCI Accept header the registry needs).
    /// `None` when it does not exist.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Result<Option<Reply>> {
        let r = self.request(
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", MANIFEST_ACCEPT)],
            None,
        )?;
        match r.status {
            200 => Ok(Some(r)),
            404 => Ok(None),
            s => bail!(
                "GET manifest {repo}:{reference} answered {s}: {}",
                String::from_utf8_lossy(&r.body)
            ),
        }
    }

    /// Tags of a repository, sorted (the registry returns them unsorted).
    /// `None` when the repository does not exist.
    pub fn list_tags(&self, repo: &str) -> Result<Option<Vec<String>>> {
        let r = self.request("GET", &format!("/v2/{repo}/tags/list?n=10000"), &[], None)?;
        match r.status {
            200 => {
                let v: Value = serde_json::from_slice(&r.body)?;
                let mut tags: Vec<String> = v["tags"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|t| t.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                tags.sort();
                Ok(Some(tags))
            }
            404 => Ok(None),
            s => bail!(
                "GET tags of {repo} answered {s}: {}",
                String::from_utf8_lossy(&r.body)
            ),
        }
    }
}

/// Base64 (standard alphabet, padded) for the basic-auth header, without a dependency.
mod base64_lite {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(input: impl AsRef<[u8]>) -> String {
        let input = input.as_ref();
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[cfg(test)]
    #[test]
    fn known_values() {
        assert_eq!(encode("user:pass"), "dXNlcjpwYXNz");
        assert_eq!(encode("a"), "YQ==");
        assert_eq!(encode("ab"), "YWI=");
        assert_eq!(encode("abc"), "YWJj");
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn layers_are_deterministic_and_readable() {
        let a = layer(
            &[("version.json", br#"{"version":"v1.0.0"}"#)],
            Compression::Gzip,
        );
        let b = layer(
            &[("version.json", br#"{"version":"v1.0.0"}"#)],
            Compression::Gzip,
        );
        assert_eq!(a.blob.digest, b.blob.digest);
        let plain = layer(
            &[("version.json", br#"{"version":"v1.0.0"}"#)],
            Compression::None,
        );
        assert_eq!(plain.diff_id, a.diff_id);
        assert_eq!(plain.blob.digest, plain.diff_id);
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&a.blob.data[..]));
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, vec!["version.json"]);
    }

    #[test]
    fn index_points_at_its_images() {
        let amd = Image::new(&Platform::linux("amd64"), vec![]);
        let arm = Image::new(&Platform::linux("arm64"), vec![]);
        assert_ne!(amd.digest(), arm.digest());
        let idx = Index::new(vec![
            (Platform::linux("amd64"), amd.clone()),
            (Platform::linux("arm64"), arm),
        ]);
        let v: Value = serde_json::from_slice(&idx.manifest.data).unwrap();
        assert_eq!(v["manifests"][0]["digest"], amd.digest());
        assert_eq!(v["manifests"][1]["platform"]["architecture"], "arm64");
        assert_eq!(Artifact::Index(idx).default_image().digest(), amd.digest());
    }
}
