//! Blob transfers: `fetch-blobs` (straight into files, verified natively)
//! and `read-layer-files` (a layer streamed through the shared scanner).

use std::io::{self, BufWriter, Read, Write};
use std::sync::Arc;

use futures_util::StreamExt;
use reqwest::{Method, Response};
use sha2::{Digest, Sha256};

use super::error::{self, RegError};
use super::{Client, valid_digest};
use crate::fs::{Confined, FsError};
use crate::layer;

/// Suffix of the file a blob is downloaded into before it is verified.
pub const DOWNLOAD_SUFFIX: &str = ".download.tmp";

/// One blob to download into a file of the bundle directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobFetch {
    pub repo: String,
    pub digest: String,
    pub size: u64,
    /// Guest path of the destination file.
    pub path: String,
}

/// How one download attempt ended badly.
enum Failure {
    /// Worth another try (the connection broke mid-body).
    Transient(RegError),
    Final(RegError),
}

impl Client {
    /// Downloads every blob into its file, up to `concurrency` at once on the
    /// runtime's worker threads; results are in request order.
    pub async fn fetch_blobs(
        self: &Arc<Self>,
        fs: &Arc<Confined>,
        fetches: Vec<BlobFetch>,
    ) -> Vec<Result<(), RegError>> {
        let concurrency = self.config.concurrency.max(1);
        futures_util::stream::iter(fetches)
            .map(|fetch| {
                let (client, fs) = (Arc::clone(self), Arc::clone(fs));
                tokio::spawn(async move { client.fetch_blob(&fs, &fetch).await })
            })
            .buffered(concurrency)
            .map(|joined| {
                joined
                    .unwrap_or_else(|e| Err(RegError::other(format!("blob transfer failed: {e}"))))
            })
            .collect()
            .await
    }

    /// Downloads one blob to `<path>.download.tmp`, verifies size and digest
    /// while streaming, and renames it into place. The temporary file is gone
    /// whatever the outcome.
    pub async fn fetch_blob(&self, fs: &Confined, fetch: &BlobFetch) -> Result<(), RegError> {
        let full = self.full_repo(&fetch.repo)?;
        if !valid_digest(&fetch.digest) {
            return Err(RegError::other(format!(
                "invalid blob digest {:?}",
                crate::events::sanitize(&fetch.digest)
            )));
        }
        let what = format!("blob {} of {}", fetch.digest, self.display_repo(&full));
        crate::fs::confine::components(&fetch.path)
            .map_err(|e| fs_failure(&FsError::from(e), &what))?;
        let tmp = format!("{}{DOWNLOAD_SUFFIX}", fetch.path);

        let mut attempt = 1;
        let result = loop {
            match self.download(&full, fetch, fs, &tmp, &what).await {
                Ok(()) => break Ok(()),
                Err(Failure::Transient(e)) if attempt < self.config.retry.attempts => {
                    attempt += 1;
                    self.debug_retry(&e);
                    let delay = self.config.retry.base_delay;
                    if let Err(cancelled) = self.cancellable(tokio::time::sleep(delay)).await {
                        break Err(cancelled);
                    }
                }
                Err(Failure::Transient(e) | Failure::Final(e)) => break Err(e),
            }
        };
        let result = result.and_then(|()| {
            fs.rename(&tmp, &fetch.path)
                .map_err(|e| fs_failure(&e, &what))
        });
        if result.is_err() {
            let _ = fs.remove(&tmp);
        }
        result
    }

    async fn download(
        &self,
        full: &str,
        fetch: &BlobFetch,
        fs: &Confined,
        tmp: &str,
        what: &str,
    ) -> Result<(), Failure> {
        let mut resp = self
            .blob_response(full, &fetch.digest, what)
            .await
            .map_err(Failure::Final)?;
        if let Some(len) = resp.content_length()
            && len != fetch.size
        {
            return Err(Failure::Final(RegError::integrity(format!(
                "{what}: the registry announced {len} bytes, expected {}",
                fetch.size
            ))));
        }
        let io_failure =
            |e: io::Error| Failure::Final(fs_failure(&crate::fs::io_error(&e, &fetch.path), what));
        let file = fs
            .create_file(tmp)
            .map_err(|e| Failure::Final(fs_failure(&e, what)))?;
        // Plain buffered writes: they land in the page cache at memory speed,
        // which is cheaper than a hop to tokio's blocking pool per chunk.
        let mut out = BufWriter::with_capacity(1024 * 1024, file);
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        loop {
            let chunk = self
                .cancellable(resp.chunk())
                .await
                .map_err(Failure::Final)?
                .map_err(|e| {
                    Failure::Transient(RegError::transport(
                        &e,
                        &format!("{what}: transfer interrupted"),
                    ))
                })?;
            let Some(chunk) = chunk else { break };
            received += chunk.len() as u64;
            if received > fetch.size {
                return Err(Failure::Final(RegError::integrity(format!(
                    "{what}: the registry sent more than the expected {} bytes",
                    fetch.size
                ))));
            }
            hasher.update(&chunk);
            out.write_all(&chunk).map_err(io_failure)?;
        }
        out.flush().map_err(io_failure)?;
        if received != fetch.size {
            return Err(Failure::Final(RegError::integrity(format!(
                "{what}: received {received} bytes, expected {}",
                fetch.size
            ))));
        }
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        if digest != fetch.digest {
            return Err(Failure::Final(RegError::integrity(format!(
                "{what}: the bytes hash to {digest}"
            ))));
        }
        Ok(())
    }

    /// `GET /v2/<repo>/blobs/<digest>`, redirects followed, status checked.
    async fn blob_response(
        &self,
        full: &str,
        digest: &str,
        what: &str,
    ) -> Result<Response, RegError> {
        let url = self.url(&format!("{full}/blobs/{digest}"))?;
        let resp = self.send(Method::GET, &url, None, full).await?;
        if !resp.status().is_success() {
            return Err(self.failure(resp, what).await);
        }
        Ok(resp)
    }

    /// Streams a layer blob through [`layer::scan`] on the calling thread,
    /// which must not be a runtime thread (it blocks on `runtime`).
    pub fn read_layer_files_blocking(
        &self,
        runtime: &tokio::runtime::Handle,
        repo: &str,
        digest: &str,
        names: &[String],
        max_bytes: u64,
    ) -> Result<Vec<layer::FoundFile>, RegError> {
        let full = self.full_repo(repo)?;
        if !valid_digest(digest) {
            return Err(RegError::other(format!(
                "invalid blob digest {:?}",
                crate::events::sanitize(digest)
            )));
        }
        let what = format!("layer {digest} of {}", self.display_repo(&full));
        let resp = runtime.block_on(self.blob_response(&full, digest, &what))?;
        let body = BodyReader {
            client: self,
            runtime,
            resp,
            pending: bytes::Bytes::new(),
        };
        layer::scan(
            io::BufReader::with_capacity(256 * 1024, body),
            names,
            max_bytes,
        )
        .map_err(|e| match e {
            layer::ScanError::Integrity(m) => RegError::integrity(format!("{what}: {m}")),
            layer::ScanError::Io(_) if self.cancel.is_cancelled() => RegError::cancelled(),
            layer::ScanError::Io(e) => RegError::other(format!("{what}: {e}")),
        })
    }

    fn debug_retry(&self, e: &RegError) {
        self.debug(format_args!("retrying: {e}"));
    }
}

/// A response body as a blocking reader, for the tar scanner.
struct BodyReader<'a> {
    client: &'a Client,
    runtime: &'a tokio::runtime::Handle,
    resp: Response,
    pending: bytes::Bytes,
}

impl Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pending.is_empty() {
            let next = self
                .runtime
                .block_on(self.client.cancellable(self.resp.chunk()))
                .map_err(|_| io::Error::other("cancelled"))?
                .map_err(|e| io::Error::other(error::describe_transport(&e)))?;
            match next {
                Some(chunk) => self.pending = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Ok(n)
    }
}

/// A filesystem problem while fetching a blob: reported as such (a full disk
/// is `filesystem(no-space)`), never as a network error.
fn fs_failure(e: &FsError, what: &str) -> RegError {
    RegError::filesystem(e, what)
}
