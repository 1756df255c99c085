//! Opening paths under the bundle directory so that the open itself cannot
//! leave it: no check-then-use window for a symlink swapped into a path.
//!
//! The root is held open as a directory descriptor; every path is resolved
//! relative to it by the kernel. On Linux that is one `openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS` (a symlink
//! anywhere below the root fails with `ELOOP`); where `openat2` is missing
//! (`ENOSYS`: Linux before 5.6, some seccomp filters, other Unixes) each
//! component is opened with `O_NOFOLLOW` relative to its parent's descriptor.
//! Either way the root itself may be reached through a symlink: the user
//! chose it.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// Flags every descriptor gets.
const BASE: OFlags = OFlags::CLOEXEC.union(OFlags::NOFOLLOW);
/// A directory opened to look things up in and to list.
const DIR: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY);

/// The bundle directory, held open.
#[derive(Debug)]
pub struct Root(OwnedFd);

impl Root {
    /// Opens `dir` (following a symlink to it: that is the user's choice).
    pub fn open(dir: &Path) -> io::Result<Root> {
        let fd = rustix::fs::open(dir, DIR | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Root(fd))
    }

    /// Opens `parts` (a path split by `confine::components`; empty = the
    /// root) with `flags`, creating files with mode 0644 under `CREATE`.
    pub fn open_at(&self, parts: &[&str], flags: OFlags) -> io::Result<OwnedFd> {
        match self.open_beneath(parts, flags) {
            // `O_DIRECTORY | O_NOFOLLOW` on a symlink says "not a directory";
            // tell the user it was a link that was not followed.
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) && self.has_symlink(parts) => {
                Err(io::Error::from_raw_os_error(libc::ELOOP))
            }
            other => other,
        }
    }

    /// Whether a component of `parts` is a symlink (only to name an error:
    /// nothing is opened through it).
    fn has_symlink(&self, parts: &[&str]) -> bool {
        (1..=parts.len()).any(|n| {
            rustix::fs::statat(&self.0, parts[..n].join("/"), AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
        })
    }

    fn open_beneath(&self, parts: &[&str], flags: OFlags) -> io::Result<OwnedFd> {
        // openat2 refuses a mode without O_CREAT (EINVAL).
        let mode = if flags.contains(OFlags::CREATE) {
            Mode::from_raw_mode(0o644)
        } else {
            Mode::empty()
        };
        if parts.is_empty() {
            return Ok(rustix::fs::openat(&self.0, ".", flags | BASE, mode)?);
        }
        #[cfg(target_os = "linux")]
        {
            use rustix::fs::ResolveFlags;
            let resolve =
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(&self.0, parts.join("/"), flags | BASE, mode, resolve) {
                Err(rustix::io::Errno::NOSYS) => {}
                other => return Ok(other?),
            }
        }
        self.walk(parts, flags, mode)
    }

    /// The fallback: each directory on the way opened with `O_NOFOLLOW`
    /// relative to the previous one, so no component can be a symlink.
    fn walk(&self, parts: &[&str], flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        let (last, dirs) = parts.split_last().expect("parts is not empty");
        let mut dir: Option<OwnedFd> = None;
        for part in dirs {
            let at = dir.as_ref().map_or(self.0.as_fd(), |d| d.as_fd());
            dir = Some(rustix::fs::openat(at, *part, DIR | BASE, Mode::empty())?);
        }
        let at = dir.as_ref().map_or(self.0.as_fd(), |d| d.as_fd());
        Ok(rustix::fs::openat(at, *last, flags | BASE, mode)?)
    }

    /// The directory holding the last of `parts`, and that last name.
    pub fn parent<'p>(&self, parts: &[&'p str]) -> io::Result<(OwnedFd, &'p str)> {
        let (last, dirs) = parts
            .split_last()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
        Ok((self.open_at(dirs, DIR)?, last))
    }
}

/// What `name` in `dir` is, without following a symlink; `None` if absent.
pub fn kind(dir: BorrowedFd, name: &str) -> io::Result<Option<(FileType, u64)>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some((
            FileType::from_raw_mode(st.st_mode),
            st.st_size as u64,
        ))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Creates `parts` and every missing parent, one `mkdirat` at a time under
/// a descriptor of the parent.
pub fn create_dir_all(root: &Root, parts: &[&str]) -> io::Result<()> {
    for end in 1..=parts.len() {
        let (dir, name) = root.parent(&parts[..end])?;
        match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => match kind(dir.as_fd(), name)? {
                Some((FileType::Directory, _)) => {}
                Some((FileType::Symlink, _)) => return Err(rustix::io::Errno::LOOP.into()),
                _ => return Err(rustix::io::Errno::EXIST.into()),
            },
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The names in directory `dir`, without `.` and `..`.
pub fn names(dir: OwnedFd) -> io::Result<Vec<std::ffi::OsString>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::new(dir)? {
        let name = OsStr::from_bytes(entry?.file_name().to_bytes()).to_owned();
        if name != "." && name != ".." {
            names.push(name);
        }
    }
    Ok(names)
}

/// Removes `name` in `dir`: a file or symlink is unlinked, a directory
/// emptied first, each level opened with `O_NOFOLLOW` under its parent.
pub fn remove_tree(dir: BorrowedFd, name: &OsStr) -> io::Result<()> {
    let is_dir = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => FileType::from_raw_mode(st.st_mode) == FileType::Directory,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if !is_dir {
        return Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?);
    }
    let inner = rustix::fs::openat(dir, name, DIR | BASE, Mode::empty())?;
    for child in names(inner.try_clone()?)? {
        remove_tree(inner.as_fd(), &child)?;
    }
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    /// A symlink planted in an intermediate component is never followed,
    /// whichever way the path is opened.
    #[test]
    fn a_symlinked_component_is_refused_by_the_open_itself() {
        let dir = TempDir::new("beneath");
        let root_dir = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root_dir.join("work")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("f"), b"secret").unwrap();
        std::os::unix::fs::symlink(&outside, root_dir.join("work/x")).unwrap();
        let root = Root::open(&root_dir).unwrap();

        let parts = ["work", "x", "f"];
        let e = root.open_at(&parts, OFlags::RDONLY).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        let e = root
            .walk(&parts, OFlags::RDONLY, Mode::empty())
            .unwrap_err();
        assert!(
            [Some(libc::ELOOP), Some(libc::ENOTDIR)].contains(&e.raw_os_error()),
            "{e}"
        );
        assert!(create_dir_all(&root, &["work", "x", "new"]).is_err());
        assert!(!outside.join("new").exists());
        assert!(root.open_at(&["work"], DIR).is_ok());
    }
}
