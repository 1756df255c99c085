//! Finding a few small files inside a layer tar, whatever its compression.
//!
//! Both `registry.read-layer-files` (a blob streamed over HTTP) and
//! `filesystem.read-layer-files` (a blob already on disk) call [`scan`], so the
//! two imports cannot disagree about what a layer contains.

use std::cell::{Cell, RefCell};
use std::io::{self, Read};
use std::rc::Rc;

/// Largest single file returned from a layer: the files asked for are small
/// JSON documents, and each one crosses into the guest's memory.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// A file found in a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundFile {
    /// The name as requested.
    pub name: String,
    /// Its bytes.
    pub content: Vec<u8>,
}

/// Why a layer could not be scanned.
#[derive(Debug)]
pub enum ScanError {
    /// The layer is bigger than allowed, or not a readable tar.
    Integrity(String),
    /// Reading the underlying bytes failed (network, disk, cancellation).
    Io(io::Error),
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanError::Integrity(m) => f.write_str(m),
            ScanError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// The compression a layer uses, told from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    pub fn sniff(prefix: &[u8]) -> Self {
        if prefix.starts_with(GZIP_MAGIC) {
            Compression::Gzip
        } else if prefix.starts_with(ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Strips what tar writers put in front of member names (`./`, `/`).
pub fn normalize_entry_name(name: &str) -> &str {
    let mut n = name;
    loop {
        if let Some(rest) = n.strip_prefix("./") {
            n = rest;
        } else if let Some(rest) = n.strip_prefix('/') {
            n = rest;
        } else {
            return n;
        }
    }
}

/// Reads the layer from `reader` and returns the regular files among `names`,
/// in the order of `names`. Stops as soon as every name is found; fails with
/// [`ScanError::Integrity`] once more than `max_bytes` decompressed bytes
/// would be needed.
pub fn scan<R: Read>(
    reader: R,
    names: &[String],
    max_bytes: u64,
) -> Result<Vec<FoundFile>, ScanError> {
    let wanted: Vec<&str> = names.iter().map(|n| normalize_entry_name(n)).collect();
    let mut found: Vec<Option<Vec<u8>>> = vec![None; names.len()];
    if names.is_empty() {
        return Ok(Vec::new());
    }

    let source = Watch::new(reader);
    let source_error = source.error_slot();
    let mut source = source;
    let mut prefix = Vec::with_capacity(4);
    (&mut source)
        .take(4)
        .read_to_end(&mut prefix)
        .map_err(|e| failure(e, &source_error, &Default::default(), max_bytes))?;
    let raw = io::Cursor::new(prefix.clone()).chain(source);
    let decompressed: Box<dyn Read> = match Compression::sniff(&prefix) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(raw)
                .map_err(|e| failure(e, &source_error, &Default::default(), max_bytes))?,
        ),
        Compression::None => Box::new(raw),
    };
    let limited = Limit::new(decompressed, max_bytes);
    let tripped = limited.tripped_flag();
    let fail = |e: io::Error| failure(e, &source_error, &tripped, max_bytes);

    let mut archive = tar::Archive::new(limited);
    let entries = archive.entries().map_err(fail)?;
    for entry in entries {
        let mut entry = entry.map_err(fail)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path_bytes();
        let Ok(path) = std::str::from_utf8(&path) else {
            continue;
        };
        let name = normalize_entry_name(path).to_owned();
        let Some(slot) = wanted.iter().position(|w| *w == name) else {
            continue;
        };
        if found[slot].is_some() {
            continue;
        }
        let size = entry.header().size().unwrap_or(u64::MAX);
        if size > MAX_FILE_BYTES {
            return Err(ScanError::Integrity(format!(
                "file {name} in layer is {size} bytes, more than the {MAX_FILE_BYTES} allowed"
            )));
        }
        let mut content = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut content).map_err(fail)?;
        found[slot] = Some(content);
        if found.iter().all(Option::is_some) {
            break;
        }
    }

    Ok(names
        .iter()
        .zip(found)
        .filter_map(|(name, content)| {
            content.map(|content| FoundFile {
                name: name.clone(),
                content,
            })
        })
        .collect())
}

/// Tells the three ways a scan fails apart: the size limit tripped, the
/// source failed (network, disk, cancellation: its error is kept), or the bytes
/// are not a tar in a known compression. The decompressors and the tar crate
/// rewrap errors, so flags set at the source are the reliable signal.
fn failure(
    e: io::Error,
    source_error: &SharedError,
    tripped: &Rc<Cell<bool>>,
    max_bytes: u64,
) -> ScanError {
    if tripped.get() {
        ScanError::Integrity(format!(
            "layer has more than {max_bytes} bytes of uncompressed data before the requested files"
        ))
    } else if let Some(source) = source_error.borrow_mut().take() {
        ScanError::Io(source)
    } else {
        ScanError::Integrity(format!("layer is not a readable tar: {e}"))
    }
}

type SharedError = Rc<RefCell<Option<io::Error>>>;

/// A reader that keeps the first error of its source aside.
struct Watch<R> {
    inner: R,
    error: SharedError,
}

impl<R> Watch<R> {
    fn new(inner: R) -> Self {
        Watch {
            inner,
            error: Default::default(),
        }
    }

    fn error_slot(&self) -> SharedError {
        self.error.clone()
    }
}

impl<R: Read> Read for Watch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let copy = io::Error::new(e.kind(), e.to_string());
            self.error.borrow_mut().get_or_insert(e);
            copy
        })
    }
}

/// A reader that fails once more than `limit` bytes have passed through it.
struct Limit<R> {
    inner: R,
    remaining: u64,
    tripped: Rc<Cell<bool>>,
}

impl<R> Limit<R> {
    fn new(inner: R, limit: u64) -> Self {
        Limit {
            inner,
            remaining: limit,
            tripped: Default::default(),
        }
    }

    fn tripped_flag(&self) -> Rc<Cell<bool>> {
        self.tripped.clone()
    }
}

impl<R: Read> Read for Limit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            // Only an error if there is more data: probe one byte.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.tripped.set(true);
                    Err(io::Error::other("decompressed size limit reached"))
                }
            };
        }
        let cap = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..cap])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A tar with the given (path, content) regular files and one directory.
    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_size(0);
        dir.set_mode(0o755);
        b.append_data(&mut dir, "./etc/", io::empty()).unwrap();
        for (path, content) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // append_data refuses `./`-less absolute paths; write the name raw.
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, *content).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn sample() -> Vec<u8> {
        tar_of(&[
            ("./big.bin", &[7u8; 4096]),
            ("./version.json", br#"{"version":"v1.2.3"}"#),
            ("/extra_images.json", br#"{"a":"1"}"#),
            ("other/version.json", b"nested, not wanted"),
        ])
    }

    #[test]
    fn finds_files_in_plain_gzip_and_zstd_tars() {
        let tar = sample();
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        for (label, blob) in [("plain", tar.clone()), ("gzip", gzip(&tar)), ("zstd", zst)] {
            let found = scan(
                &blob[..],
                &names(&["extra_images.json", "version.json", "missing"]),
                1 << 20,
            )
            .unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(
                found,
                vec![
                    FoundFile {
                        name: "extra_images.json".into(),
                        content: br#"{"a":"1"}"#.to_vec()
                    },
                    FoundFile {
                        name: "version.json".into(),
                        content: br#"{"version":"v1.2.3"}"#.to_vec()
                    },
                ],
                "{label}"
            );
        }
    }

    #[test]
    fn sniffs_compression() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"vers"), Compression::None);
        assert_eq!(Compression::sniff(&[]), Compression::None);
    }

    #[test]
    fn requested_names_are_normalized_too() {
        let found = scan(&sample()[..], &names(&["./version.json"]), 1 << 20).unwrap();
        assert_eq!(found[0].name, "./version.json");
        assert_eq!(normalize_entry_name(".//./a/b"), "a/b");
    }

    #[test]
    fn stops_past_the_limit() {
        let tar = sample();
        for blob in [tar.clone(), gzip(&tar)] {
            match scan(&blob[..], &names(&["version.json"]), 2048) {
                Err(ScanError::Integrity(m)) => assert!(m.contains("2048"), "{m}"),
                other => panic!("expected a limit error, got {other:?}"),
            }
        }
        // Enough room for everything up to the file: fine.
        assert_eq!(
            scan(&tar[..], &names(&["version.json"]), 8192)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_file_above_the_per_file_cap_is_refused() {
        let big = vec![0u8; (MAX_FILE_BYTES + 1) as usize];
        let tar = tar_of(&[("version.json", &big)]);
        assert!(matches!(
            scan(&tar[..], &names(&["version.json"]), u64::MAX),
            Err(ScanError::Integrity(_))
        ));
    }

    #[test]
    fn garbage_and_source_errors_are_told_apart() {
        let junk = gzip(b"this is not a tar archive at all, just some text that is long enough");
        assert!(matches!(
            scan(&junk[..], &names(&["x"]), 1 << 20),
            Err(ScanError::Integrity(_))
        ));

        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
            }
        }
        match scan(Broken, &names(&["x"]), 1 << 20) {
            Err(ScanError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
            other => panic!("expected the source error, got {other:?}"),
        }
        assert_eq!(scan(&b""[..], &names(&["x"]), 10).unwrap(), vec![]);
    }
}
