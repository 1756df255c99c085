//! Blob transfers: `fetch-blobs` (straight into files, verified natively)
//! and `read-layer-files` (a layer streamed through the shared scanner).

use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use futures_util::StreamExt;
use reqwest::header::{CONTENT_RANGE, HeaderMap, HeaderValue, RANGE};
use reqwest::{Method, Response, StatusCode};
use sha2::{Digest, Sha256};

use super::error::{self, RegError};
use super::transport::{Failure, gave_up};
use super::{Client, valid_digest};
use crate::events::Transfer;
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

        self.events.transfer(Transfer::Started { size: fetch.size });
        let result = self.download(&full, fetch, fs, &tmp, &what).await;
        let result = result.and_then(|()| {
            fs.rename(&tmp, &fetch.path)
                .map_err(|e| fs_failure(&e, &what))
        });
        if result.is_err() {
            let _ = fs.remove(&tmp);
        }
        self.events
            .transfer(Transfer::Finished { ok: result.is_ok() });
        result
    }

    /// Downloads into `tmp`, trying again after a broken connection or a
    /// body cut short: from where it stopped (`Range`) when the registry
    /// honours that, else from the start.
    async fn download(
        &self,
        full: &str,
        fetch: &BlobFetch,
        fs: &Confined,
        tmp: &str,
        what: &str,
    ) -> Result<(), RegError> {
        let file = fs.create_file(tmp).map_err(|e| fs_failure(&e, what))?;
        let mut partial = Partial {
            // Plain buffered writes: they land in the page cache at memory
            // speed, cheaper than a hop to tokio's blocking pool per chunk.
            out: BufWriter::with_capacity(1024 * 1024, file),
            hasher: Sha256::new(),
            received: 0,
        };
        let mut attempt = 1;
        loop {
            match self.download_rest(full, fetch, &mut partial, what).await {
                Ok(()) => break,
                Err(Failure::Transient(e)) if attempt < self.config.retry.attempts => {
                    self.pause_before_retry(&e, attempt).await?;
                    attempt += 1;
                }
                Err(Failure::Transient(e)) => return Err(gave_up(e, attempt)),
                Err(Failure::Final(e)) => return Err(e),
            }
        }
        let digest = format!("sha256:{}", hex::encode(partial.hasher.finalize()));
        if digest != fetch.digest {
            return Err(RegError::integrity(format!(
                "{what}: the bytes hash to {digest}"
            )));
        }
        Ok(())
    }

    /// One request for the bytes of the blob not yet in `partial`.
    async fn download_rest(
        &self,
        full: &str,
        fetch: &BlobFetch,
        partial: &mut Partial,
        what: &str,
    ) -> Result<(), Failure> {
        let io_failure =
            |e: io::Error| Failure::Final(fs_failure(&crate::fs::io_error(&e, &fetch.path), what));
        let from = partial.received;
        let mut resp = self
            .blob_response(full, &fetch.digest, from, what)
            .await
            .map_err(Failure::Final)?;
        if resp.status() == StatusCode::PARTIAL_CONTENT {
            let range = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok());
            if from == 0 || !range_starts_at(range, from, fetch.size) {
                return Err(Failure::Final(RegError::integrity(format!(
                    "{what}: asked for bytes {from}- of {}, the registry sent {}",
                    fetch.size,
                    crate::events::sanitize(
                        range.unwrap_or("a partial answer without Content-Range")
                    )
                ))));
            }
            self.debug(format_args!("{what}: resuming at byte {from}"));
        } else if from > 0 {
            // The registry ignored `Range` and sends the whole blob again.
            self.debug(format_args!("{what}: no range support, starting over"));
            self.events.transfer(Transfer::Discarded(partial.received));
            partial.restart().map_err(io_failure)?;
        }
        let expected = fetch.size - partial.received;
        if let Some(len) = resp.content_length()
            && len != expected
        {
            return Err(Failure::Final(RegError::integrity(format!(
                "{what}: the registry announced {len} bytes, expected {expected}",
            ))));
        }
        loop {
            let chunk = self
                .cancellable(resp.chunk())
                .await
                .map_err(Failure::Final)?
                .map_err(|e| {
                    Failure::Transient(RegError::transport(
                        &e,
                        &format!(
                            "{what}: transfer interrupted after {} of {} bytes",
                            partial.received, fetch.size
                        ),
                    ))
                })?;
            let Some(chunk) = chunk else { break };
            if partial.received + chunk.len() as u64 > fetch.size {
                return Err(Failure::Final(RegError::integrity(format!(
                    "{what}: the registry sent more than the expected {} bytes",
                    fetch.size
                ))));
            }
            partial.append(&chunk).map_err(io_failure)?;
            self.events.transfer(Transfer::Received(chunk.len() as u64));
        }
        partial.out.flush().map_err(io_failure)?;
        if partial.received != fetch.size {
            // A body without a length that ended early: cut short.
            return Err(Failure::Transient(RegError::integrity(format!(
                "{what}: the body ended after {} of {} bytes",
                partial.received, fetch.size
            ))));
        }
        Ok(())
    }

    /// `GET /v2/<repo>/blobs/<digest>` (from byte `from` on, with `Range`,
    /// when it is not 0), redirects followed, status checked.
    async fn blob_response(
        &self,
        full: &str,
        digest: &str,
        from: u64,
        what: &str,
    ) -> Result<Response, RegError> {
        let url = self.url(&format!("{full}/blobs/{digest}"))?;
        let mut headers = HeaderMap::new();
        if from > 0 {
            let range = HeaderValue::from_str(&format!("bytes={from}-"))
                .expect("a range of digits is a valid header value");
            headers.insert(RANGE, range);
        }
        let resp = self.send(Method::GET, &url, &headers, full, what).await?;
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
        let resp = runtime.block_on(self.blob_response(&full, digest, 0, &what))?;
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
}

/// What has arrived of a blob: the file so far, its running hash and size.
struct Partial {
    out: BufWriter<std::fs::File>,
    hasher: Sha256,
    received: u64,
}

impl Partial {
    fn append(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.out.write_all(chunk)?;
        self.hasher.update(chunk);
        self.received += chunk.len() as u64;
        Ok(())
    }

    /// Forgets everything received: an empty file, a fresh hash.
    fn restart(&mut self) -> io::Result<()> {
        self.out.seek(SeekFrom::Start(0))?;
        self.out.get_ref().set_len(0)?;
        self.hasher = Sha256::new();
        self.received = 0;
        Ok(())
    }
}

/// True when `Content-Range` is `bytes <from>-<size-1>/<size or *>`.
fn range_starts_at(content_range: Option<&str>, from: u64, size: u64) -> bool {
    let Some(spec) = content_range.and_then(|v| v.trim().strip_prefix("bytes ")) else {
        return false;
    };
    let Some((span, total)) = spec.split_once('/') else {
        return false;
    };
    let total_ok = total == "*" || total.parse::<u64>() == Ok(size);
    span.split_once('-').is_some_and(|(first, last)| {
        first.parse::<u64>() == Ok(from) && last.parse::<u64>() == Ok(size - 1)
    }) && total_ok
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
