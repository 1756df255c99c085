//! Turning a guest path into a host path that stays inside the granted root.
//!
//! The guest names paths relative to the bundle directory. A hostile registry
//! can feed the plugin names like `../../etc`, so the host, not the plugin, is
//! the last line: these lexical checks first, then `super::beneath` opens the
//! path so that no symlink on the way is followed.

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
}
