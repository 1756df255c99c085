//! Packing layouts into the bundle's tar archives, optionally split into
//! fixed-size chunks. The plugin writes the tar headers; the host copies the
//! file bodies, so blob bytes never pass through the guest.
//!
//! Archives appear atomically: everything is written under `.tmp` names and
//! renamed only once the whole archive is complete.

use crate::error::{Error, FsContext, Result};
use crate::options::Archive;
use crate::ports::{Host, Output};

const BLOCK: u64 = 512;
/// Header bytes are batched up to this size before crossing to the host.
const FLUSH_AT: usize = 1 << 20;

/// A file to put into an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Where the bytes are, relative to the bundle directory.
    pub source: String,
    /// The entry's path inside the tar.
    pub path: String,
    pub size: u64,
}

/// Lists every file below `dir` (relative to `base`) as archive members whose
/// tar paths are relative to `base`, sorted by path.
pub fn collect_members(host: &Host, base: &str, dir: &str) -> Result<Vec<Member>> {
    let mut members = Vec::new();
    let mut pending = vec![dir.to_string()];
    while let Some(rel) = pending.pop() {
        let full = format!("{base}/{rel}");
        for name in host.fs.list_dir(&full).ctx(&full)? {
            let child_rel = format!("{rel}/{name}");
            let child = format!("{base}/{child_rel}");
            match host.fs.stat(&child).ctx(&child)? {
                Some(s) if s.is_dir => pending.push(child_rel),
                Some(s) => members.push(Member {
                    source: child,
                    path: child_rel,
                    size: s.size,
                }),
                None => {}
            }
        }
    }
    members.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(members)
}

/// Writes `name` (e.g. `package-foo.tar`) into the bundle directory from
/// `members`. With `chunk_size > 0` the archive is split into
/// `name.0000.chunk`, `name.0001.chunk`, … of exactly `chunk_size` bytes
/// (the last one shorter). Old files of the same archive are replaced.
pub fn write(host: &Host, name: &str, members: &[Member], chunk_size: u64) -> Result<Archive> {
    let mut writer = ChunkedWriter::new(host, name, chunk_size);
    let outcome = write_tar(host, &mut writer, members).and_then(|()| writer.close());
    match outcome {
        Ok(parts) => publish(host, name, parts),
        Err(e) => {
            writer.discard();
            Err(e)
        }
    }
}

fn write_tar(host: &Host, w: &mut ChunkedWriter, members: &[Member]) -> Result<()> {
    for m in members {
        if host.events.cancelled() {
            return Err(Error::Cancelled);
        }
        w.write(&header_bytes(&m.path, m.size)?)?;
        w.copy(&m.source, m.size)?;
        let pad = (BLOCK - m.size % BLOCK) % BLOCK;
        w.write(&vec![0; pad as usize])?;
    }
    // The end-of-archive marker: two zero blocks.
    w.write(&[0; 2 * BLOCK as usize])
}

/// The header block(s) of one regular file; paths longer than the ustar
/// field get a GNU long-name entry, which the `tar` crate writes for us.
fn header_bytes(path: &str, size: u64) -> Result<Vec<u8>> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    let mut builder = tar::Builder::new(Vec::new());
    // An empty body: append_data then writes the header (and long-name
    // entry) only; the host copies the real body after it.
    builder
        .append_data(&mut header, path, std::io::empty())
        .map_err(|e| Error::Internal(format!("tar header for {path}: {e}")))?;
    // Not `into_inner`: that would also append the end-of-archive blocks.
    Ok(builder.get_ref().clone())
}

/// Renames the temporary parts into place, after removing any older copy
/// of the same archive (whole or chunked).
fn publish(host: &Host, name: &str, parts: Vec<(String, u64)>) -> Result<Archive> {
    remove_archive(host, name)?;
    let mut files = Vec::new();
    let mut size = 0;
    for (tmp, len) in parts {
        let target = tmp
            .strip_suffix(".tmp")
            .expect("parts end in .tmp")
            .to_string();
        host.fs.rename(&tmp, &target).ctx(&target)?;
        files.push(target);
        size += len;
    }
    Ok(Archive {
        name: name.to_string(),
        files,
        size,
    })
}

/// Removes `name` and its chunks if a previous run left them.
pub fn remove_archive(host: &Host, name: &str) -> Result<()> {
    host.fs.remove(name).ctx(name)?;
    for i in 0.. {
        let chunk = chunk_name(name, i);
        if host.fs.stat(&chunk).ctx(&chunk)?.is_none() {
            break;
        }
        host.fs.remove(&chunk).ctx(&chunk)?;
    }
    Ok(())
}

pub fn chunk_name(name: &str, index: u32) -> String {
    format!("{name}.{index:04}.chunk")
}

/// A byte sink that rolls over to a new chunk file every `chunk_size` bytes.
struct ChunkedWriter<'h, 'a> {
    host: &'h Host<'a>,
    name: String,
    chunk_size: u64,
    /// Temporary files written so far, with their sizes.
    parts: Vec<(String, u64)>,
    current: Option<Box<dyn Output>>,
    buffer: Vec<u8>,
}

impl<'h, 'a> ChunkedWriter<'h, 'a> {
    fn new(host: &'h Host<'a>, name: &str, chunk_size: u64) -> Self {
        Self {
            host,
            name: name.to_string(),
            chunk_size,
            parts: Vec::new(),
            current: None,
            buffer: Vec::new(),
        }
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    fn copy(&mut self, source: &str, len: u64) -> Result<()> {
        self.flush()?;
        let mut offset = 0;
        while offset < len {
            let room = self.room()?;
            let n = room.min(len - offset);
            let out = self.current.as_mut().expect("room opened an output");
            out.copy_from(source, offset, n).ctx(source)?;
            self.grow(n);
            offset += n;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let data = std::mem::take(&mut self.buffer);
        let mut rest = &data[..];
        while !rest.is_empty() {
            let room = self.room()?;
            // Not `room as usize`: on wasm32 a room of 4 GiB would be 0
            // and this loop would never end.
            let n = usize::try_from(room).map_or(rest.len(), |room| room.min(rest.len()));
            let path = self.parts.last().map(|p| p.0.clone()).unwrap_or_default();
            let out = self.current.as_mut().expect("room opened an output");
            out.write(&rest[..n]).ctx(&path)?;
            self.grow(n as u64);
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Bytes the current file can still take, opening the next one if full.
    fn room(&mut self) -> Result<u64> {
        let full = self.chunk_size > 0
            && self
                .parts
                .last()
                .is_some_and(|(_, len)| *len >= self.chunk_size);
        if self.current.is_none() || full {
            self.finish_current()?;
            let path = if self.chunk_size == 0 {
                format!("{}.tmp", self.name)
            } else {
                format!("{}.tmp", chunk_name(&self.name, self.parts.len() as u32))
            };
            self.current = Some(self.host.fs.create_output(&path).ctx(&path)?);
            self.parts.push((path, 0));
        }
        let used = self.parts.last().map_or(0, |p| p.1);
        Ok(if self.chunk_size == 0 {
            u64::MAX
        } else {
            self.chunk_size - used
        })
    }

    fn grow(&mut self, n: u64) {
        if let Some(last) = self.parts.last_mut() {
            last.1 += n;
        }
    }

    fn finish_current(&mut self) -> Result<()> {
        if let Some(out) = self.current.take() {
            let path = self.parts.last().map(|p| p.0.clone()).unwrap_or_default();
            out.finish().ctx(&path)?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<Vec<(String, u64)>> {
        self.flush()?;
        self.finish_current()?;
        Ok(std::mem::take(&mut self.parts))
    }

    /// Removes every temporary part; errors are ignored because the write
    /// already failed and the host sweeps `.tmp` files as a last resort.
    fn discard(&mut self) {
        self.current = None;
        for (path, _) in self.parts.drain(..) {
            let _ = self.host.fs.remove(&path);
        }
    }
}
