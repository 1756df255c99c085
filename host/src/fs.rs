//! The `filesystem` import: file operations confined to the bundle directory.
//!
//! Every guest path goes through [`confine::resolve`] (no absolute paths, no
//! `..`, no symlinks on the way) and files are opened with `O_NOFOLLOW`, so the
//! plugin cannot read or write outside the directory the user chose.
//!
//! Operations keep working after a cancellation: the plugin still has to pack
//! the packages that completed and clean up its work dir.
//!
//! Archives are written behind: `finish` flushes an output without waiting
//! for the disk, and renaming a finished output returns at once while a
//! background thread syncs the file and only then renames it. The disk
//! writes of one package's archive thus overlap the download of the next,
//! and an archive still never appears under its final name before its bytes
//! are on disk. Any later operation on either name, listing a directory, and
//! the end of every export call ([`Confined::settle`]) wait for it; a failed
//! sync is reported there.

pub mod confine;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::layer;
use crate::temps::TempTracker;

/// Why a filesystem operation failed; mirrors the WIT `fs-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsError {
    NotFound(String),
    Denied(String),
    NoSpace(String),
    Other(String),
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsError::NotFound(m) | FsError::Denied(m) | FsError::NoSpace(m) | FsError::Other(m) => {
                f.write_str(m)
            }
        }
    }
}

impl From<confine::Denied> for FsError {
    fn from(d: confine::Denied) -> Self {
        FsError::Denied(d.0)
    }
}

/// Maps an I/O error on guest path `path` to an [`FsError`] whose message
/// names the guest path (never the host's absolute one).
pub fn io_error(e: &io::Error, path: &str) -> FsError {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ELOOP) {
        return FsError::Denied(format!("{path}: is a symbolic link, which is not followed"));
    }
    match e.kind() {
        io::ErrorKind::NotFound => FsError::NotFound(format!("{path}: not found")),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => FsError::NoSpace(format!(
            "{path}: the disk is full (no space left on device)"
        )),
        io::ErrorKind::PermissionDenied => FsError::Denied(format!("{path}: permission denied")),
        _ => FsError::Other(format!("{path}: {e}")),
    }
}

/// What `stat` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub size: u64,
    pub is_dir: bool,
}

/// The bundle directory as the guest sees it.
#[derive(Debug)]
pub struct Confined {
    root: PathBuf,
    temps: Arc<TempTracker>,
    /// Outputs finished but not yet synced, by guest path.
    finished: Mutex<HashMap<String, File>>,
    /// Renames of finished outputs under way: (source, target, sync + rename).
    renaming: Mutex<Vec<PendingRename>>,
}

type PendingRename = (String, String, JoinHandle<Result<(), FsError>>);

impl Confined {
    /// `root` is canonicalized once so that a symlinked bundle path chosen by
    /// the user is fine, while links inside it are not. A root that does not
    /// exist (a dry run) is kept as given: every operation then fails.
    pub fn new(root: &Path, temps: Arc<TempTracker>) -> io::Result<Self> {
        let root = match root.canonicalize() {
            Ok(root) => root,
            Err(e) if e.kind() == io::ErrorKind::NotFound && root.is_absolute() => {
                root.to_path_buf()
            }
            Err(e) => return Err(e),
        };
        Ok(Confined {
            root,
            temps,
            finished: Mutex::default(),
            renaming: Mutex::default(),
        })
    }

    /// Waits for every rename under way; the first failure is returned.
    /// Finished outputs that were never renamed are closed.
    pub fn settle(&self) -> Result<(), FsError> {
        lock(&self.finished).clear();
        let pending = std::mem::take(&mut *lock(&self.renaming));
        let mut first = Ok(());
        for (_, _, thread) in pending {
            let done = thread
                .join()
                .unwrap_or_else(|_| Err(FsError::Other("archive sync thread panicked".into())));
            if first.is_ok() {
                first = done;
            }
        }
        first
    }

    /// Waits for the renames under way whose source or target is `path`.
    fn settle_path(&self, path: &str) -> Result<(), FsError> {
        let mine: Vec<PendingRename> = {
            let mut renaming = lock(&self.renaming);
            let (mine, others) = std::mem::take(&mut *renaming)
                .into_iter()
                .partition(|(source, target, _)| source == path || target == path);
            *renaming = others;
            mine
        };
        for (_, _, thread) in mine {
            thread
                .join()
                .unwrap_or_else(|_| Err(FsError::Other("archive sync thread panicked".into())))?;
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn temps(&self) -> &Arc<TempTracker> {
        &self.temps
    }

    /// The host path for guest path `path`.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, FsError> {
        Ok(confine::resolve(&self.root, path)?)
    }

    pub fn stat(&self, path: &str) -> Result<Option<Stat>, FsError> {
        let full = self.resolve(path)?;
        self.settle_path(path)?;
        match std::fs::symlink_metadata(&full) {
            Ok(meta) => Ok(Some(Stat {
                size: if meta.is_dir() { 0 } else { meta.len() },
                is_dir: meta.is_dir(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&e, path)),
        }
    }

    pub fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        let full = self.resolve(path)?;
        self.temps.note_create(path);
        std::fs::create_dir_all(&full).map_err(|e| io_error(&e, path))
    }

    pub fn read_file(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, FsError> {
        let file = self.open_read(path)?;
        let len = file.metadata().map_err(|e| io_error(&e, path))?.len();
        if len > max_bytes {
            return Err(too_big(path, len, max_bytes));
        }
        let mut data = Vec::with_capacity(len as usize);
        file.take(max_bytes.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| io_error(&e, path))?;
        if data.len() as u64 > max_bytes {
            return Err(too_big(path, data.len() as u64, max_bytes));
        }
        Ok(data)
    }

    /// Atomic for readers (a temporary file renamed into place) but not
    /// synced: the plugin writes manifests and `index.json` into its work
    /// directory, which is temporary; what must reach the disk are the
    /// archives, and `finish` + `rename` sync those.
    pub fn write_file(&self, path: &str, data: &[u8]) -> Result<(), FsError> {
        let full = self.resolve(path)?;
        self.settle_path(path)?;
        let tmp_guest = format!("{path}.write.tmp");
        let tmp = self.resolve(&tmp_guest)?;
        self.temps.note_create(&tmp_guest);
        let written = (|| {
            let mut f = create_nofollow(&tmp)?;
            f.write_all(data)?;
            std::fs::rename(&tmp, &full)
        })();
        written.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_error(&e, path)
        })
    }

    /// Renames `source` to `target`. A finished output is synced and
    /// renamed in the background (see the module comment).
    pub fn rename(&self, source: &str, target: &str) -> Result<(), FsError> {
        let from = self.resolve(source)?;
        let to = self.resolve(target)?;
        self.settle_path(source)?;
        self.settle_path(target)?;
        self.temps.note_create(target);
        let what = format!("rename {source} to {target}");
        let Some(file) = lock(&self.finished).remove(source) else {
            return std::fs::rename(&from, &to).map_err(|e| io_error(&e, &what));
        };
        let shown = source.to_owned();
        let thread = std::thread::Builder::new()
            .name("host-archive-sync".into())
            .spawn(move || {
                file.sync_all().map_err(|e| io_error(&e, &shown))?;
                std::fs::rename(&from, &to).map_err(|e| io_error(&e, &what))
            })
            .map_err(|e| FsError::Other(format!("{source}: cannot start a sync thread: {e}")))?;
        lock(&self.renaming).push((source.to_owned(), target.to_owned(), thread));
        Ok(())
    }

    pub fn remove(&self, path: &str) -> Result<(), FsError> {
        let full = self.resolve(path)?;
        self.settle_path(path)?;
        lock(&self.finished).remove(path);
        if full == self.root {
            return Err(FsError::Denied(
                "the bundle directory itself cannot be removed".into(),
            ));
        }
        let result = match std::fs::symlink_metadata(&full) {
            // remove_dir_all does not follow symlinks inside the tree.
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&full),
            Ok(_) => std::fs::remove_file(&full),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&e, path)),
        }
    }

    pub fn list_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        let full = self.resolve(path)?;
        // A rename under way would make the listing depend on timing.
        self.settle()?;
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&full).map_err(|e| io_error(&e, path))? {
            let entry = entry.map_err(|e| io_error(&e, path))?;
            let name = entry.file_name().into_string().map_err(|raw| {
                FsError::Other(format!("{path}: entry {raw:?} is not valid UTF-8"))
            })?;
            names.push(name);
        }
        names.sort();
        Ok(names)
    }

    pub fn create_output(&self, path: &str) -> Result<Output, FsError> {
        let full = self.resolve(path)?;
        self.settle_path(path)?;
        lock(&self.finished).remove(path);
        self.temps.note_create(path);
        let file = create_nofollow(&full).map_err(|e| io_error(&e, path))?;
        Ok(Output {
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
            path: path.to_owned(),
        })
    }

    pub fn read_layer_files(
        &self,
        path: &str,
        names: &[String],
        max_bytes: u64,
    ) -> Result<Vec<layer::FoundFile>, FsError> {
        let file = self.open_read(path)?;
        layer::scan(io::BufReader::new(file), names, max_bytes).map_err(|e| match e {
            layer::ScanError::Integrity(m) => FsError::Other(format!("{path}: {m}")),
            layer::ScanError::Io(e) => io_error(&e, path),
        })
    }

    /// Opens an existing regular file for reading without following a link.
    pub fn open_read(&self, path: &str) -> Result<File, FsError> {
        let full = self.resolve(path)?;
        self.settle_path(path)?;
        let mut options = OpenOptions::new();
        options.read(true);
        no_follow(&mut options);
        options.open(&full).map_err(|e| io_error(&e, path))
    }
}

impl Drop for Confined {
    fn drop(&mut self) {
        let _ = self.settle();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn too_big(path: &str, len: u64, max: u64) -> FsError {
    FsError::Other(format!("{path}: {len} bytes, more than the {max} allowed"))
}

fn create_nofollow(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    no_follow(&mut options);
    options.open(path)
}

#[cfg(unix)]
fn no_follow(options: &mut OpenOptions) {
    use std::os::unix::fs::OpenOptionsExt;
    options.custom_flags(libc::O_NOFOLLOW);
}

#[cfg(not(unix))]
fn no_follow(_options: &mut OpenOptions) {}

/// An archive being written (the WIT `output` resource).
#[derive(Debug)]
pub struct Output {
    file: Option<BufWriter<File>>,
    path: String,
}

impl Output {
    pub fn write(&mut self, data: &[u8]) -> Result<(), FsError> {
        let path = &self.path;
        let file = self.file.as_mut().ok_or_else(|| finished(path))?;
        file.write_all(data).map_err(|e| io_error(&e, path))
    }

    /// Appends `len` bytes of `src` from `offset`. `io::copy` between two
    /// `File`s lets std use `copy_file_range`/`sendfile` on Linux, so the bytes
    /// stay in the kernel.
    pub fn copy_from(
        &mut self,
        fs: &Confined,
        src: &str,
        offset: u64,
        len: u64,
    ) -> Result<(), FsError> {
        let path = &self.path;
        let out = self.file.as_mut().ok_or_else(|| finished(path))?;
        let mut source = fs.open_read(src)?;
        let size = source.metadata().map_err(|e| io_error(&e, src))?.len();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(FsError::Other(format!(
                "{src}: is {size} bytes; cannot copy {len} bytes from offset {offset}"
            )));
        }
        source
            .seek(SeekFrom::Start(offset))
            .map_err(|e| io_error(&e, src))?;
        out.flush().map_err(|e| io_error(&e, path))?;
        let copied = io::copy(&mut source.take(len), out.get_mut())
            .map_err(|e| io_error(&e, &format!("{path} (copying from {src})")))?;
        if copied != len {
            return Err(FsError::Other(format!(
                "{src}: copied {copied} of {len} bytes; the file changed while being read"
            )));
        }
        Ok(())
    }

    /// Flushes and hands the file to `fs`, which syncs it when it is
    /// renamed (see the module comment).
    pub fn finish(&mut self, fs: &Confined) -> Result<(), FsError> {
        let path = &self.path;
        let out = self.file.take().ok_or_else(|| finished(path))?;
        let file = out.into_inner().map_err(|e| io_error(e.error(), path))?;
        lock(&fs.finished).insert(path.clone(), file);
        Ok(())
    }
}

fn finished(path: &str) -> FsError {
    FsError::Other(format!("{path}: output already finished"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    fn confined(dir: &TempDir) -> Confined {
        let root = dir.path().join("bundle");
        std::fs::create_dir_all(&root).unwrap();
        Confined::new(&root, Arc::new(TempTracker::new(&root))).unwrap()
    }

    #[test]
    fn refuses_paths_out_of_the_root() {
        let dir = TempDir::new("fs-refuse");
        let fs = confined(&dir);
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        for bad in ["/etc/passwd", "../secret", "a/../../secret", "", "a\\b"] {
            assert!(
                matches!(fs.read_file(bad, 10), Err(FsError::Denied(_))),
                "{bad}"
            );
            assert!(
                matches!(fs.write_file(bad, b"x"), Err(FsError::Denied(_))),
                "{bad}"
            );
            assert!(
                matches!(fs.create_output(bad), Err(FsError::Denied(_))),
                "{bad}"
            );
            assert!(matches!(fs.remove(bad), Err(FsError::Denied(_))), "{bad}");
        }
        assert!(dir.path().join("secret").exists());
    }

    #[cfg(unix)]
    #[test]
    fn refuses_symlinks_out_of_the_root() {
        let dir = TempDir::new("fs-symlink");
        let fs = confined(&dir);
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("f"), b"secret").unwrap();
        std::os::unix::fs::symlink(&outside, fs.root().join("out")).unwrap();
        std::os::unix::fs::symlink(outside.join("f"), fs.root().join("f")).unwrap();

        assert!(matches!(
            fs.read_file("out/f", 100),
            Err(FsError::Denied(_))
        ));
        assert!(matches!(fs.read_file("f", 100), Err(FsError::Denied(_))));
        assert!(matches!(
            fs.write_file("out/g", b"x"),
            Err(FsError::Denied(_))
        ));
        assert!(matches!(fs.create_output("f"), Err(FsError::Denied(_))));
        assert!(matches!(fs.stat("out"), Err(FsError::Denied(_))));
        assert!(!outside.join("g").exists());
        assert_eq!(std::fs::read(outside.join("f")).unwrap(), b"secret");
    }

    #[test]
    fn archives_are_renamed_behind_and_failures_surface() {
        let dir = TempDir::new("fs-behind");
        let fs = confined(&dir);
        let mut out = fs.create_output("a.tar.tmp").unwrap();
        out.write(b"archive").unwrap();
        out.finish(&fs).unwrap();
        fs.rename("a.tar.tmp", "a.tar").unwrap();
        // Any later look at either name waits for the rename.
        assert_eq!(fs.stat("a.tar.tmp").unwrap(), None);
        assert_eq!(fs.read_file("a.tar", 100).unwrap(), b"archive");

        // The rename itself fails in the background: reported by settle.
        let mut out = fs.create_output("b.tar.tmp").unwrap();
        out.finish(&fs).unwrap();
        fs.rename("b.tar.tmp", "no-such-dir/b.tar").unwrap();
        let e = fs.settle().unwrap_err();
        assert!(
            matches!(&e, FsError::NotFound(m) if m.contains("b.tar.tmp")),
            "{e:?}"
        );
        assert!(fs.settle().is_ok(), "reported once");
        assert!(dir.path().join("bundle/b.tar.tmp").exists());
    }

    #[test]
    fn a_full_disk_says_so() {
        let e = io_error(&io::Error::from(io::ErrorKind::StorageFull), "x.tar.tmp");
        assert_eq!(
            e,
            FsError::NoSpace("x.tar.tmp: the disk is full (no space left on device)".into())
        );
        let e = io_error(&io::Error::from(io::ErrorKind::NotFound), "a");
        assert!(matches!(e, FsError::NotFound(_)));
    }

    #[test]
    fn files_and_outputs() {
        let dir = TempDir::new("fs-ops");
        let fs = confined(&dir);
        fs.create_dir_all("w.tmp/blobs").unwrap();
        fs.write_file("w.tmp/blobs/a", b"0123456789").unwrap();
        assert_eq!(fs.read_file("w.tmp/blobs/a", 10).unwrap(), b"0123456789");
        assert!(fs.read_file("w.tmp/blobs/a", 9).is_err());
        assert_eq!(
            fs.stat("w.tmp/blobs/a").unwrap(),
            Some(Stat {
                size: 10,
                is_dir: false
            })
        );
        assert_eq!(fs.stat("nope").unwrap(), None);
        assert_eq!(fs.list_dir("w.tmp").unwrap(), vec!["blobs"]);

        let mut out = fs.create_output("x.tar.tmp").unwrap();
        out.write(b"<").unwrap();
        out.copy_from(&fs, "w.tmp/blobs/a", 2, 5).unwrap();
        out.write(b">").unwrap();
        assert!(out.copy_from(&fs, "w.tmp/blobs/a", 8, 5).is_err());
        out.finish(&fs).unwrap();
        assert!(out.write(b"late").is_err());
        fs.rename("x.tar.tmp", "x.tar").unwrap();
        assert_eq!(fs.read_file("x.tar", 100).unwrap(), b"<23456>");

        fs.remove("w.tmp").unwrap();
        fs.remove("w.tmp").unwrap();
        assert_eq!(fs.stat("w.tmp").unwrap(), None);
        assert!(matches!(
            fs.read_file("w.tmp/blobs/a", 10),
            Err(FsError::NotFound(_))
        ));
        assert_eq!(fs.temps().created(), vec!["w.tmp", "x.tar.tmp"]);
    }
}
