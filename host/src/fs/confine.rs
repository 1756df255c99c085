//! Turning a guest path into a host path that stays inside the granted root.
//!
//! The guest names paths relative to the bundle directory. A hostile registry
//! can feed the plugin names like `../../etc`, so the host, not the plugin, is
//! the last line: lexical checks first, then no symlink on the way.

use std::io;
use std::path::{Path, PathBuf};

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

/// Splits a guest path into its components, refusing anything that is not a
/// plain relative path with `/` separators. `.` alone means the root itself.
pub fn components(path: &str) -> Result<Vec<&str>, Denied> {
    let deny = |why: &str| Err(Denied(format!("path {path:?} {why}")));
    if path == "." {
        return Ok(Vec::new());
    }
    if path.is_empty() {
        return deny("is empty");
    }
    if path.contains('\0') {
        return deny("contains a NUL byte");
    }
    if path.contains('\\') {
        return deny("contains a backslash");
    }
    if path.starts_with('/') {
        return deny("is absolute");
    }
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts {
        match *part {
            "" => return deny("has an empty component"),
            "." | ".." => return deny("has a `.` or `..` component"),
            _ => {}
        }
    }
    Ok(parts)
}

/// Resolves `path` under `root` (an absolute, canonical directory), refusing a
/// path whose existing components include a symlink. Components that do not
/// exist yet are fine: the caller is about to create them.
pub fn resolve(root: &Path, path: &str) -> Result<PathBuf, Denied> {
    let parts = components(path)?;
    let mut full = root.to_path_buf();
    let mut exists = true;
    for part in parts {
        full.push(part);
        if !exists {
            continue;
        }
        match std::fs::symlink_metadata(&full) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Denied(format!(
                    "path {path:?} goes through a symbolic link, which is not followed"
                )));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => exists = false,
            // Let the operation itself report e.g. "not a directory".
            Err(_) => exists = false,
        }
    }
    Ok(full)
}

/// The first component of a guest path (its entry at the bundle top level).
pub fn top_level(path: &str) -> Option<&str> {
    components(path).ok()?.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_relative_paths() {
        assert_eq!(components("a/b.tar").unwrap(), vec!["a", "b.tar"]);
        assert_eq!(
            components(".packages-work.tmp/x").unwrap(),
            vec![".packages-work.tmp", "x"]
        );
        assert!(components(".").unwrap().is_empty());
        assert_eq!(components("..a/b..").unwrap(), vec!["..a", "b.."]);
    }

    #[test]
    fn refuses_escapes_and_odd_forms() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/..",
            "a//b",
            "a/",
            "./a",
            "a/./b",
            "a\\b",
            "..\\x",
            "a\0b",
        ] {
            assert!(components(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn top_level_entry() {
        assert_eq!(top_level("x.tar.tmp"), Some("x.tar.tmp"));
        assert_eq!(top_level("w.tmp/a/b"), Some("w.tmp"));
        assert_eq!(top_level("/abs"), None);
    }

    #[cfg(unix)]
    #[test]
    fn refuses_symlinks_out_of_the_root() {
        let dir = crate::testutil::TempDir::new("confine");
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("inner")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        std::os::unix::fs::symlink(outside.join("f"), root.join("inner/file-link")).unwrap();

        assert!(resolve(&root, "escape/f").is_err());
        assert!(resolve(&root, "escape").is_err());
        assert!(resolve(&root, "inner/file-link").is_err());
        assert_eq!(
            resolve(&root, "inner/new/deeper").unwrap(),
            root.join("inner/new/deeper")
        );
        assert!(resolve(&root, "../outside/f").is_err());
        assert!(resolve(&root, "/etc/passwd").is_err());
    }
}
