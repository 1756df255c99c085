//! One OCI image layout directory (`oci-layout`, `index.json`, `blobs/`) as
//! it is being filled.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::error::{FsContext, Result};
use crate::manifest::OCI_INDEX;
use crate::ports::{Descriptor, Fs};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const SHORT_TAG: &str = "io.deckhouse.image.short_tag";
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The `index.json` document. Annotations are a BTreeMap so the file is the
/// same bytes on every run.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexJson {
    schema_version: u32,
    media_type: String,
    manifests: Vec<Entry>,
}

/// One descriptor of `index.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Entry {
    pub fn ref_name(&self) -> &str {
        self.annotations.get(REF_NAME).map_or("", String::as_str)
    }

    pub fn short_tag(&self) -> &str {
        self.annotations.get(SHORT_TAG).map_or("", String::as_str)
    }

    pub fn is_vex(&self) -> bool {
        self.short_tag().ends_with(".att")
    }
}

#[derive(Debug)]
pub struct Layout {
    dir: String,
    entries: Vec<Entry>,
    blobs: HashSet<String>,
}

impl Layout {
    pub fn new(dir: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            entries: Vec::new(),
            blobs: HashSet::new(),
        }
    }

    pub fn dir(&self) -> &str {
        &self.dir
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn vex_count(&self) -> usize {
        self.entries.iter().filter(|e| e.is_vex()).count()
    }

    pub fn blob_path(&self, digest: &str) -> String {
        blob_path(&self.dir, digest)
    }

    /// True once the blob was stored in this layout (blobs are stored once).
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blobs.contains(digest)
    }

    pub fn mark_blob(&mut self, digest: &str) {
        self.blobs.insert(digest.to_string());
    }

    pub fn has_short_tag(&self, tag: &str) -> bool {
        self.entries.iter().any(|e| e.short_tag() == tag)
    }

    /// Records an image under its ref name. The same (ref name, digest) twice
    /// is a no-op; a ref name seen with another digest is replaced, so a
    /// layout never holds two images for one tag.
    pub fn add(&mut self, manifest: &Descriptor, ref_name: &str, short_tag: &str) {
        let entry = Entry {
            media_type: manifest.media_type.clone(),
            digest: manifest.digest.clone(),
            size: manifest.size,
            annotations: BTreeMap::from([
                (REF_NAME.to_string(), ref_name.to_string()),
                (SHORT_TAG.to_string(), short_tag.to_string()),
            ]),
        };
        match self.entries.iter_mut().find(|e| e.ref_name() == ref_name) {
            Some(existing) => *existing = entry,
            None => self.entries.push(entry),
        }
    }

    /// Writes `oci-layout` and `index.json` (sorted by ref name). An empty
    /// layout writes nothing, so it never reaches an archive.
    pub fn write(&mut self, fs: &dyn Fs) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        self.entries
            .sort_by(|a, b| a.ref_name().cmp(b.ref_name()).then(a.digest.cmp(&b.digest)));
        let index = IndexJson {
            schema_version: 2,
            media_type: OCI_INDEX.to_string(),
            manifests: self.entries.clone(),
        };
        let body = serde_json::to_vec_pretty(&index).expect("index.json serializes");
        fs.create_dir_all(&self.dir).ctx(&self.dir)?;
        let layout_file = format!("{}/oci-layout", self.dir);
        fs.write_file(&layout_file, OCI_LAYOUT).ctx(&layout_file)?;
        let index_file = format!("{}/index.json", self.dir);
        fs.write_file(&index_file, &body).ctx(&index_file)
    }

    /// Reads back what `write` put on disk; used by the completeness check so
    /// that it checks the files, not our memory of them.
    pub fn read_index(fs: &dyn Fs, dir: &str) -> Result<Vec<Entry>> {
        let path = format!("{dir}/index.json");
        let body = fs.read_file(&path, 64 << 20).ctx(&path)?;
        let index: IndexJson = serde_json::from_slice(&body)
            .map_err(|e| crate::error::Error::Internal(format!("{path}: {e}")))?;
        Ok(index.manifests)
    }
}

pub fn blob_path(dir: &str, digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("{dir}/blobs/sha256/{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(c: char) -> Descriptor {
        Descriptor {
            media_type: crate::manifest::OCI_MANIFEST.into(),
            digest: format!("sha256:{}", c.to_string().repeat(64)),
            size: 10,
        }
    }

    #[test]
    fn add_is_idempotent_and_replaces_moved_tags() {
        let mut l = Layout::new("x");
        l.add(&desc('a'), "r/p:v1", "v1");
        l.add(&desc('a'), "r/p:v1", "v1");
        assert_eq!(l.entries().len(), 1);
        l.add(&desc('b'), "r/p:v1", "v1");
        assert_eq!(l.entries().len(), 1);
        assert_eq!(l.entries()[0].digest, desc('b').digest);
        l.add(&desc('a'), "r/p:v1.att", "v1.att");
        assert_eq!(l.vex_count(), 1);
    }

    #[test]
    fn blob_paths() {
        assert_eq!(
            blob_path("w/packages/p", &desc('c').digest),
            format!("w/packages/p/blobs/sha256/{}", "c".repeat(64))
        );
    }
}
