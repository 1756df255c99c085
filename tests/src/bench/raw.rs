//! The raw limit: every unique blob read from the registry once and written
//! to disk once, by the simplest concurrent client — no digests, no
//! layouts, no archives. Run in a child process (the bench binary with
//! `--raw-fetch`) so that it is measured like the other jobs.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::content::BlobRef;

const BUFFER: usize = 1 << 20;

/// The list file the child reads: one `repo digest size` per line.
pub fn write_list(path: &Path, blobs: &[BlobRef]) -> Result<()> {
    let text: String = blobs
        .iter()
        .map(|b| format!("{} {} {}\n", b.repo, b.digest, b.size))
        .collect();
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

pub fn read_list(path: &Path) -> Result<Vec<BlobRef>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .map(|line| {
            let mut parts = line.split(' ');
            let (Some(repo), Some(digest), Some(size)) = (parts.next(), parts.next(), parts.next())
            else {
                bail!("bad blob list line {line:?}");
            };
            Ok(BlobRef {
                repo: repo.into(),
                digest: digest.into(),
                size: size.parse()?,
            })
        })
        .collect()
}

/// Downloads every blob from `base` (`http://127.0.0.1:PORT`) into `out`,
/// `concurrency` at a time, each file synced to disk like a finished
/// archive.
pub fn fetch_all(base: &str, blobs: &[BlobRef], out: &Path, concurrency: usize) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..concurrency.max(1))
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let mut buf = vec![0u8; BUFFER];
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(blob) = blobs.get(i) else {
                            return Ok(());
                        };
                        fetch_one(&agent, base, blob, out, &mut buf)?;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("fetch worker panicked"))
    })
}

fn fetch_one(
    agent: &ureq::Agent,
    base: &str,
    blob: &BlobRef,
    out: &Path,
    buf: &mut [u8],
) -> Result<()> {
    let url = format!("{base}/v2/{}/blobs/{}", blob.repo, blob.digest);
    let mut resp = agent.get(&url).call().with_context(|| url.clone())?;
    if resp.status() != 200 {
        bail!("GET {url} answered {}", resp.status());
    }
    let hex = blob.digest.trim_start_matches("sha256:");
    let mut file = std::fs::File::create(out.join(hex))?;
    let mut reader = resp.body_mut().as_reader();
    let mut total = 0u64;
    loop {
        let n = reader.read(buf)?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])?;
        total += n as u64;
    }
    if total != blob.size {
        bail!("{url}: {total} bytes, expected {}", blob.size);
    }
    file.sync_all()?;
    Ok(())
}
