//! `resolve` (HEAD, GET fallback) and `fetch-manifests` (GET and verify).

use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};

use super::error::{Kind, RegError};
use super::{Client, valid_digest, valid_reference};

/// Manifests larger than this are refused (the distribution spec suggests
/// registries accept at least 4 MiB; ours are a few KiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Every manifest kind we handle; without it some registries answer 404.
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// A manifest as served, with the descriptor computed over its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub descriptor: Descriptor,
    pub body: Vec<u8>,
}

/// A repository (relative to the source root) and a tag or digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub repo: String,
    pub reference: String,
}

impl Client {
    /// Resolves each reference to a descriptor, concurrently; results are in
    /// request order, `None` for a reference that does not exist.
    pub async fn resolve(&self, refs: &[ImageRef]) -> Vec<Result<Option<Descriptor>, RegError>> {
        futures_util::stream::iter(refs)
            .map(|r| self.resolve_one(r))
            .buffered(self.config.concurrency.max(1))
            .collect()
            .await
    }

    /// Downloads each manifest, concurrently; results are in request order.
    pub async fn fetch_manifests(&self, refs: &[ImageRef]) -> Vec<Result<Manifest, RegError>> {
        futures_util::stream::iter(refs)
            .map(|r| self.fetch_manifest(r))
            .buffered(self.config.concurrency.max(1))
            .collect()
            .await
    }

    async fn resolve_one(&self, r: &ImageRef) -> Result<Option<Descriptor>, RegError> {
        let (url, what) = self.manifest_url(r)?;
        let full = self.full_repo(&r.repo)?;
        let resp = self
            .send(Method::HEAD, &url, &accept_manifests(), &full, &what)
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => match head_descriptor(resp.headers()) {
                Some(d) => {
                    check_digest(r, &d.digest, &what)?;
                    Ok(Some(d))
                }
                // The answer lacks what a descriptor needs: ask for the body.
                None => self.resolve_by_get(r).await,
            },
            // Registries that refuse HEAD (or answer it oddly) still serve GET.
            StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::FORBIDDEN
            | StatusCode::NOT_IMPLEMENTED => self.resolve_by_get(r).await,
            _ => Err(self.failure(resp, &what).await),
        }
    }

    async fn resolve_by_get(&self, r: &ImageRef) -> Result<Option<Descriptor>, RegError> {
        match self.fetch_manifest(r).await {
            Ok(m) => Ok(Some(m.descriptor)),
            Err(e) if e.kind == Kind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Downloads one manifest and computes its digest; when the reference is
    /// a digest, the bytes must hash to it.
    pub async fn fetch_manifest(&self, r: &ImageRef) -> Result<Manifest, RegError> {
        let (url, what) = self.manifest_url(r)?;
        let full = self.full_repo(&r.repo)?;
        let answer = self
            .fetch_small(
                Method::GET,
                &url,
                &accept_manifests(),
                &full,
                &what,
                MAX_MANIFEST_BYTES,
            )
            .await?;
        answer.error_unless_success(&what)?;
        let content_type = media_type_header(&answer.headers);
        let body = answer.body;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        check_digest(r, &digest, &what)?;
        let media_type = content_type
            .filter(|t| is_manifest_type(t))
            .or_else(|| media_type_from_body(&body))
            .ok_or_else(|| {
                RegError::other(format!(
                    "{what}: the answer is not an image manifest or index"
                ))
            })?;
        Ok(Manifest {
            descriptor: Descriptor {
                media_type,
                digest,
                size: body.len() as u64,
            },
            body,
        })
    }

    fn manifest_url(&self, r: &ImageRef) -> Result<(reqwest::Url, String), RegError> {
        let full = self.full_repo(&r.repo)?;
        if !valid_reference(&r.reference) {
            return Err(RegError::other(format!(
                "invalid reference {:?} for {}",
                crate::events::sanitize(&r.reference),
                self.display_repo(&full)
            )));
        }
        let sep = if valid_digest(&r.reference) { '@' } else { ':' };
        let what = format!("{}{sep}{}", self.display_repo(&full), r.reference);
        let url = self.url(&format!("{full}/manifests/{}", r.reference))?;
        Ok((url, what))
    }
}

fn check_digest(r: &ImageRef, digest: &str, what: &str) -> Result<(), RegError> {
    if valid_digest(&r.reference) && r.reference != digest {
        return Err(RegError::integrity(format!(
            "{what}: the registry served content with digest {digest}"
        )));
    }
    Ok(())
}

/// A descriptor from HEAD headers, when they are complete and well-formed.
fn head_descriptor(headers: &HeaderMap) -> Option<Descriptor> {
    let digest = headers.get("docker-content-digest")?.to_str().ok()?.trim();
    let size = headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let media_type = bare_media_type(headers.get(CONTENT_TYPE)?.to_str().ok()?);
    if !valid_digest(digest) || !is_manifest_type(&media_type) {
        return None;
    }
    Some(Descriptor {
        media_type,
        digest: digest.to_owned(),
        size,
    })
}

fn media_type_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(bare_media_type)
}

/// `Accept` for manifest requests.
fn accept_manifests() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_MANIFESTS));
    headers
}

/// `application/json; charset=utf-8` → `application/json`.
fn bare_media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn is_manifest_type(t: &str) -> bool {
    [
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
    ]
    .contains(&t)
}

/// The manifest's own `mediaType`, or, for an OCI document without one, the
/// type its shape says (`manifests` → index, `layers`/`config` → manifest).
pub fn media_type_from_body(body: &[u8]) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
    if let Some(t) = doc.get("mediaType").and_then(|t| t.as_str()) {
        let t = bare_media_type(t);
        return is_manifest_type(&t).then_some(t);
    }
    if doc.get("schemaVersion").and_then(|v| v.as_u64()) != Some(2) {
        return None;
    }
    if doc.get("manifests").is_some() {
        Some(OCI_INDEX.to_owned())
    } else if doc.get("config").is_some() || doc.get("layers").is_some() {
        Some(OCI_MANIFEST.to_owned())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        assert_eq!(
            bare_media_type("application/vnd.oci.image.index.v1+json; charset=utf-8"),
            OCI_INDEX
        );
        assert_eq!(
            media_type_from_body(br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#),
            Some(DOCKER_MANIFEST.into())
        );
        assert_eq!(
            media_type_from_body(br#"{"schemaVersion":2,"manifests":[]}"#),
            Some(OCI_INDEX.into())
        );
        assert_eq!(
            media_type_from_body(br#"{"schemaVersion":2,"config":{},"layers":[]}"#),
            Some(OCI_MANIFEST.into())
        );
        assert_eq!(media_type_from_body(br#"{"schemaVersion":1}"#), None);
        assert_eq!(media_type_from_body(br#"{"mediaType":"text/html"}"#), None);
    }

    #[test]
    fn head_descriptors_need_all_headers() {
        let d = format!("sha256:{}", "0".repeat(64));
        let mut h = HeaderMap::new();
        h.insert("docker-content-digest", d.parse().unwrap());
        h.insert(CONTENT_LENGTH, "123".parse().unwrap());
        assert_eq!(head_descriptor(&h), None);
        h.insert(CONTENT_TYPE, OCI_MANIFEST.parse().unwrap());
        assert_eq!(
            head_descriptor(&h),
            Some(Descriptor {
                media_type: OCI_MANIFEST.into(),
                digest: d,
                size: 123
            })
        );
        h.insert("docker-content-digest", "md5:abc".parse().unwrap());
        assert_eq!(head_descriptor(&h), None);
    }
}
