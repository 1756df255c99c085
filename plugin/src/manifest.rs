//! Image manifests and indexes, OCI and Docker v2, as far as mirroring needs
//! them: which blobs an image has, and which image of an index to take.

use oci_spec::image::{Arch, ImageIndex, ImageManifest, Os};

use crate::names;
use crate::ports::Descriptor;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// More blobs than this in one manifest is not an image anyone ships; it is
/// refused instead of planned.
const MAX_BLOBS: usize = 4096;

/// What a manifest body says.
#[derive(Debug)]
pub enum Parsed {
    /// An image: its config then its layers, bottom layer first.
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    /// An image index: the images it lists with their platforms.
    Index(Vec<IndexEntry>),
}

#[derive(Debug)]
pub struct IndexEntry {
    pub descriptor: Descriptor,
    pub os: Option<String>,
    pub architecture: Option<String>,
}

/// True for the index media types (OCI and Docker).
pub fn is_index_media_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

pub fn parse(media_type: &str, body: &[u8]) -> Result<Parsed, String> {
    let is_index = if media_type.is_empty() || media_type == "application/json" {
        body_looks_like_index(body)
    } else {
        is_index_media_type(media_type)
    };
    if is_index {
        let index: ImageIndex =
            serde_json::from_slice(body).map_err(|e| format!("invalid image index: {e}"))?;
        if index.manifests().len() > MAX_BLOBS {
            return Err(format!(
                "image index lists {} manifests (limit {MAX_BLOBS})",
                index.manifests().len()
            ));
        }
        let entries = index
            .manifests()
            .iter()
            .map(|d| {
                Ok(IndexEntry {
                    descriptor: convert(d)?,
                    os: d.platform().as_ref().map(|p| os_name(p.os())),
                    architecture: d.platform().as_ref().map(|p| arch_name(p.architecture())),
                })
            })
            .collect::<Result<_, String>>()?;
        return Ok(Parsed::Index(entries));
    }
    let manifest: ImageManifest =
        serde_json::from_slice(body).map_err(|e| format!("invalid image manifest: {e}"))?;
    if manifest.layers().len() > MAX_BLOBS {
        return Err(format!(
            "manifest lists {} layers (limit {MAX_BLOBS})",
            manifest.layers().len()
        ));
    }
    Ok(Parsed::Image {
        config: convert(manifest.config())?,
        layers: manifest
            .layers()
            .iter()
            .map(convert)
            .collect::<Result<_, _>>()?,
    })
}

/// The entry for `linux/amd64`, the platform `d8` mirrors by default.
pub fn select_platform<'a>(
    entries: &'a [IndexEntry],
    os: &str,
    arch: &str,
) -> Option<&'a IndexEntry> {
    entries
        .iter()
        .find(|e| e.os.as_deref() == Some(os) && e.architecture.as_deref() == Some(arch))
}

fn body_looks_like_index(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Probe>(body).is_ok_and(|p| {
        p.media_type.as_deref().is_some_and(is_index_media_type) || p.manifests.is_some()
    })
}

fn convert(d: &oci_spec::image::Descriptor) -> Result<Descriptor, String> {
    let digest = d.digest().to_string();
    if !names::is_sha256_digest(&digest) {
        return Err(format!(
            "unsupported digest {digest:?} (only sha256 is mirrored)"
        ));
    }
    Ok(Descriptor {
        media_type: d.media_type().to_string(),
        digest,
        size: d.size(),
    })
}

fn os_name(os: &Os) -> String {
    serde_plain(os)
}

fn arch_name(arch: &Arch) -> String {
    serde_plain(arch)
}

/// The wire spelling of an oci-spec enum (`linux`, `amd64`).
fn serde_plain<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn docker_v2_manifest() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":7,"digest":"{}"}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":9,"digest":"{}"}}]}}"#,
            digest('a'),
            digest('b')
        );
        let Parsed::Image { config, layers } = parse(DOCKER_MANIFEST, body.as_bytes()).unwrap()
        else {
            panic!("not an image")
        };
        assert_eq!(config.digest, digest('a'));
        assert_eq!(
            config.media_type,
            "application/vnd.docker.container.image.v1+json"
        );
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].size, 9);
    }

    #[test]
    fn index_platform_selection() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[
            {{"mediaType":"{OCI_MANIFEST}","size":1,"digest":"{}","platform":{{"os":"linux","architecture":"arm64"}}}},
            {{"mediaType":"{OCI_MANIFEST}","size":2,"digest":"{}","platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            digest('a'),
            digest('b')
        );
        // No media type from the server: the body decides.
        let Parsed::Index(entries) = parse("", body.as_bytes()).unwrap() else {
            panic!("not an index")
        };
        let amd64 = select_platform(&entries, "linux", "amd64").unwrap();
        assert_eq!(amd64.descriptor.digest, digest('b'));
        assert!(select_platform(&entries, "linux", "s390x").is_none());
    }

    #[test]
    fn bad_digests_and_bodies_are_refused() {
        let body = r#"{"schemaVersion":2,"config":{"mediaType":"x","size":1,"digest":"sha512:abcd"},"layers":[]}"#;
        assert!(parse(OCI_MANIFEST, body.as_bytes()).is_err());
        assert!(parse(OCI_MANIFEST, b"{").is_err());
    }
}
