//! Temporary entries at the bundle top level that this run created.
//!
//! By convention anything at the top of the bundle directory whose name ends
//! in `.tmp` is temporary (the plugin's work dir, `*.tar.tmp`, our own
//! `*.download.tmp`). The host removes those it saw being created when a run
//! fails or is interrupted, and never touches `.tmp` entries that were already
//! there, which may belong to someone else.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::fs::confine;

/// The suffix that marks a top-level entry as temporary.
pub const TEMP_SUFFIX: &str = ".tmp";

#[derive(Debug)]
pub struct TempTracker {
    root: PathBuf,
    created: Mutex<BTreeSet<String>>,
}

impl TempTracker {
    pub fn new(root: &Path) -> Self {
        TempTracker {
            root: root.to_path_buf(),
            created: Mutex::new(BTreeSet::new()),
        }
    }

    /// Call before creating anything at guest path `path`: when its top-level
    /// entry is temporary and does not exist yet, this run is creating it.
    pub fn note_create(&self, path: &str) {
        let Some(top) = confine::top_level(path) else {
            return;
        };
        if !top.ends_with(TEMP_SUFFIX) {
            return;
        }
        let mut created = self.lock();
        if created.contains(top) {
            return;
        }
        if std::fs::symlink_metadata(self.root.join(top)).is_err() {
            created.insert(top.to_owned());
        }
    }

    /// The top-level temporary entries noted so far.
    pub fn created(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    /// Deletes every noted entry that still exists. Best effort: this runs on
    /// the way out of a failed run, where one more error helps nobody.
    pub fn remove_all(&self) {
        for name in self.created() {
            let path = self.root.join(&name);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {
                    let _ = std::fs::remove_dir_all(&path);
                }
                Ok(_) => {
                    let _ = std::fs::remove_file(&path);
                }
                Err(_) => {}
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        // A panic elsewhere must not stop the cleanup.
        self.created.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_what_this_run_created() {
        let dir = crate::testutil::TempDir::new("temps");
        let root = dir.path();
        std::fs::write(root.join("old.tar.tmp"), b"x").unwrap();
        let t = TempTracker::new(root);

        t.note_create("old.tar.tmp");
        t.note_create("new.tar.tmp");
        t.note_create("work.tmp/a/b");
        t.note_create("package-a.tar");
        std::fs::write(root.join("new.tar.tmp"), b"x").unwrap();
        std::fs::create_dir_all(root.join("work.tmp/a")).unwrap();
        std::fs::write(root.join("package-a.tar"), b"x").unwrap();
        assert_eq!(t.created(), vec!["new.tar.tmp", "work.tmp"]);

        t.remove_all();
        assert!(root.join("old.tar.tmp").exists());
        assert!(!root.join("new.tar.tmp").exists());
        assert!(!root.join("work.tmp").exists());
        assert!(root.join("package-a.tar").exists());
    }
}
