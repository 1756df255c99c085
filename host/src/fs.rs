//! The `filesystem` import: file operations confined to the bundle directory.
//!
//! Every guest path is checked lexically by [`confine::components`] (no
//! absolute paths, no `..`) and then opened by [`beneath`] relative to a
//! descriptor of the root, so that the kernel refuses a symlink anywhere on
//! the path at the moment of the open: the plugin cannot read or write
//! outside the directory the user chose, even if something swaps a link in.
//!
//! Operations keep working after a cancellation: the plugin still has to pack
//! the packages that completed and clean up its work dir.

pub mod beneath;
pub mod confine;

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustix::fs::OFlags;

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
    match e.raw_os_error() {
        // O_NOFOLLOW, RESOLVE_NO_SYMLINKS.
        Some(libc::ELOOP) => {
            return FsError::Denied(format!(
                "{path}: goes through a symbolic link, which is not followed"
            ));
        }
        // RESOLVE_BENEATH.
        Some(libc::EXDEV) => {
            return FsError::Denied(format!("{path}: leads out of the bundle directory"));
        }
        _ => {}
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

const CREATE: OFlags = OFlags::WRONLY.union(OFlags::CREATE).union(OFlags::TRUNC);

/// The bundle directory as the guest sees it.
#[derive(Debug)]
pub struct Confined {
    root: PathBuf,
    /// Opened on first use: the host may create the directory after this.
    dir: OnceLock<beneath::Root>,
    temps: Arc<TempTracker>,
}

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
            dir: OnceLock::new(),
            temps,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn temps(&self) -> &Arc<TempTracker> {
        &self.temps
    }

    /// The root descriptor and the components of guest path `path`.
    fn parts<'p>(&self, path: &'p str) -> Result<(&beneath::Root, Vec<&'p str>), FsError> {
        let parts = confine::components(path)?;
        let root = match self.dir.get() {
            Some(root) => root,
            None => {
                let opened = beneath::Root::open(&self.root).map_err(|e| io_error(&e, "."))?;
                self.dir.get_or_init(|| opened)
            }
        };
        Ok((root, parts))
    }

    pub fn stat(&self, path: &str) -> Result<Option<Stat>, FsError> {
        let (root, parts) = self.parts(path)?;
        if parts.is_empty() {
            return Ok(Some(Stat {
                size: 0,
                is_dir: true,
            }));
        }
        let found = root
            .parent(&parts)
            .and_then(|(dir, name)| beneath::kind(dir.as_fd(), name));
        match found {
            Ok(Some((rustix::fs::FileType::Symlink, _))) => {
                Err(io_error(&io::Error::from_raw_os_error(libc::ELOOP), path))
            }
            Ok(Some((kind, size))) => {
                let is_dir = kind == rustix::fs::FileType::Directory;
                Ok(Some(Stat {
                    size: if is_dir { 0 } else { size },
                    is_dir,
                }))
            }
            Ok(None) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&e, path)),
        }
    }

    pub fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        let (root, parts) = self.parts(path)?;
        self.temps.note_create(path);
        beneath::create_dir_all(root, &parts).map_err(|e| io_error(&e, path))
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
    /// archives, and `finish` syncs those.
    pub fn write_file(&self, path: &str, data: &[u8]) -> Result<(), FsError> {
        confine::components(path)?;
        let tmp = format!("{path}.write.tmp");
        let mut f = self.create_file(&tmp)?;
        let written = f
            .write_all(data)
            .map_err(|e| io_error(&e, path))
            .and_then(|()| self.rename(&tmp, path));
        if written.is_err() {
            let _ = self.remove(&tmp);
        }
        written
    }

    pub fn rename(&self, source: &str, target: &str) -> Result<(), FsError> {
        let (root, from) = self.parts(source)?;
        let (_, to) = self.parts(target)?;
        self.temps.note_create(target);
        let what = format!("rename {source} to {target}");
        let renamed = root.parent(&from).and_then(|(from_dir, from_name)| {
            let (to_dir, to_name) = root.parent(&to)?;
            Ok(rustix::fs::renameat(
                &from_dir, from_name, &to_dir, to_name,
            )?)
        });
        renamed.map_err(|e| io_error(&e, &what))
    }

    pub fn remove(&self, path: &str) -> Result<(), FsError> {
        let (root, parts) = self.parts(path)?;
        if parts.is_empty() {
            return Err(FsError::Denied(
                "the bundle directory itself cannot be removed".into(),
            ));
        }
        let removed = root
            .parent(&parts)
            .and_then(|(dir, name)| beneath::remove_tree(dir.as_fd(), name.as_ref()));
        match removed {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&e, path)),
        }
    }

    pub fn list_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        let (root, parts) = self.parts(path)?;
        let dir = root
            .open_at(&parts, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| io_error(&e, path))?;
        let mut names = Vec::new();
        for raw in beneath::names(dir).map_err(|e| io_error(&e, path))? {
            let name = raw.into_string().map_err(|raw| {
                FsError::Other(format!("{path}: entry {raw:?} is not valid UTF-8"))
            })?;
            names.push(name);
        }
        names.sort();
        Ok(names)
    }

    /// Creates (or truncates) a regular file for writing.
    pub fn create_file(&self, path: &str) -> Result<File, FsError> {
        let (root, parts) = self.parts(path)?;
        self.temps.note_create(path);
        let fd = root
            .open_at(&parts, CREATE)
            .map_err(|e| io_error(&e, path))?;
        Ok(File::from(fd))
    }

    pub fn create_output(&self, path: &str) -> Result<Output, FsError> {
        let file = self.create_file(path)?;
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

    /// Opens an existing file for reading without following a link.
    pub fn open_read(&self, path: &str) -> Result<File, FsError> {
        let (root, parts) = self.parts(path)?;
        let fd = root
            .open_at(&parts, OFlags::RDONLY)
            .map_err(|e| io_error(&e, path))?;
        Ok(File::from(fd))
    }
}

fn too_big(path: &str, len: u64, max: u64) -> FsError {
    FsError::Other(format!("{path}: {len} bytes, more than the {max} allowed"))
}

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

    /// Flushes, syncs and closes.
    pub fn finish(&mut self) -> Result<(), FsError> {
        let path = &self.path;
        let mut out = self.file.take().ok_or_else(|| finished(path))?;
        out.flush().map_err(|e| io_error(&e, path))?;
        out.get_ref().sync_all().map_err(|e| io_error(&e, path))
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

    /// A symlink in an intermediate component of the work dir (what a race
    /// would swap in between a check and a use) is refused by every
    /// operation: the open itself does not follow it, there is no separate
    /// check to race.
    #[test]
    fn a_symlink_in_an_intermediate_component_is_never_followed() {
        let dir = TempDir::new("fs-intermediate");
        let fs = confined(&dir);
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(outside.join("sub")).unwrap();
        std::fs::write(outside.join("f"), b"secret").unwrap();
        fs.create_dir_all(".packages-work.tmp").unwrap();
        fs.write_file(".packages-work.tmp/inside", b"inside")
            .unwrap();
        std::os::unix::fs::symlink(&outside, fs.root().join(".packages-work.tmp/x")).unwrap();

        let denied = |what: &str, r: Result<(), FsError>| match r {
            Err(FsError::Denied(m)) => assert!(m.contains("symbolic link"), "{what}: {m}"),
            other => panic!("{what}: expected a refusal, got {other:?}"),
        };
        let w = ".packages-work.tmp/x";
        denied("read", fs.read_file(&format!("{w}/f"), 100).map(drop));
        denied("open", fs.open_read(&format!("{w}/f")).map(drop));
        denied("write", fs.write_file(&format!("{w}/g"), b"x"));
        denied("create-dir-all", fs.create_dir_all(&format!("{w}/d/e")));
        denied("create-dir-all of the link", fs.create_dir_all(w));
        denied("output", fs.create_output(&format!("{w}/o")).map(drop));
        denied("list-dir", fs.list_dir(&format!("{w}/sub")).map(drop));
        denied("list-dir of the link", fs.list_dir(w).map(drop));
        denied("stat", fs.stat(&format!("{w}/f")).map(drop));
        denied(
            "rename out",
            fs.rename(".packages-work.tmp/inside", &format!("{w}/moved")),
        );
        denied(
            "rename in",
            fs.rename(&format!("{w}/f"), ".packages-work.tmp/stolen"),
        );
        denied("remove", fs.remove(&format!("{w}/f")));
        denied("remove below", fs.remove(&format!("{w}/sub")));
        denied(
            "copy-from",
            fs.create_output(".packages-work.tmp/out")
                .unwrap()
                .copy_from(&fs, &format!("{w}/f"), 0, 1),
        );

        let mut left: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["f", "sub"], "nothing was written outside");
        assert_eq!(std::fs::read(outside.join("f")).unwrap(), b"secret");
        // Removing the link itself removes the link, not what it points at.
        fs.remove(w).unwrap();
        assert!(outside.join("f").exists());
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
        out.finish().unwrap();
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
