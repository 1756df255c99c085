//! In-memory doubles of the host for native unit tests of the flows.
//!
//! Layers here are not tars: a layer blob is a JSON object of file name →
//! content, which both `read_layer_files` doubles read. Real tar/gzip
//! scanning is the host's job and is tested there and end to end.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use sha2::{Digest as _, Sha256};

use crate::manifest::{OCI_INDEX, OCI_MANIFEST};
use crate::ports::*;

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

#[derive(Default)]
pub struct MemFs {
    pub files: RefCell<BTreeMap<String, Vec<u8>>>,
    pub dirs: RefCell<std::collections::BTreeSet<String>>,
}

impl MemFs {
    pub fn paths(&self) -> Vec<String> {
        self.files.borrow().keys().cloned().collect()
    }

    pub fn get(&self, path: &str) -> Option<Vec<u8>> {
        self.files.borrow().get(path).cloned()
    }
}

struct MemOutput {
    fs: Rc<MemFs>,
    path: String,
}

impl Output for MemOutput {
    fn write(&mut self, data: &[u8]) -> Result<(), FsError> {
        self.fs
            .files
            .borrow_mut()
            .get_mut(&self.path)
            .expect("output exists")
            .extend_from_slice(data);
        Ok(())
    }

    fn copy_from(&mut self, src: &str, offset: u64, len: u64) -> Result<(), FsError> {
        let data = self
            .fs
            .get(src)
            .ok_or_else(|| FsError::NotFound(src.to_string()))?;
        let slice = data
            .get(offset as usize..(offset + len) as usize)
            .ok_or_else(|| FsError::Other(format!("{src}: short file")))?
            .to_vec();
        self.write(&slice)
    }

    fn finish(self: Box<Self>) -> Result<(), FsError> {
        Ok(())
    }
}

fn under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// The MemFs behind an `Rc`, so outputs can hold it.
#[derive(Clone, Default)]
pub struct SharedFs(pub Rc<MemFs>);

impl std::ops::Deref for SharedFs {
    type Target = MemFs;

    fn deref(&self) -> &MemFs {
        &self.0
    }
}

impl Fs for SharedFs {
    fn stat(&self, path: &str) -> Result<Option<FileStat>, FsError> {
        if let Some(f) = self.0.files.borrow().get(path) {
            return Ok(Some(FileStat {
                size: f.len() as u64,
                is_dir: false,
            }));
        }
        let is_dir = self
            .0
            .dirs
            .borrow()
            .iter()
            .any(|d| d == path || under(d, path))
            || self.0.files.borrow().keys().any(|f| under(f, path));
        Ok(is_dir.then_some(FileStat {
            size: 0,
            is_dir: true,
        }))
    }

    fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        self.0.dirs.borrow_mut().insert(path.to_string());
        Ok(())
    }

    fn read_file(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, FsError> {
        let data = self
            .0
            .get(path)
            .ok_or_else(|| FsError::NotFound(path.to_string()))?;
        if data.len() as u64 > max_bytes {
            return Err(FsError::Other(format!("{path}: too large")));
        }
        Ok(data)
    }

    fn write_file(&self, path: &str, data: &[u8]) -> Result<(), FsError> {
        self.0
            .files
            .borrow_mut()
            .insert(path.to_string(), data.to_vec());
        Ok(())
    }

    fn rename(&self, source: &str, target: &str) -> Result<(), FsError> {
        let data = self
            .0
            .files
            .borrow_mut()
            .remove(source)
            .ok_or_else(|| FsError::NotFound(source.to_string()))?;
        self.0.files.borrow_mut().insert(target.to_string(), data);
        Ok(())
    }

    fn remove(&self, path: &str) -> Result<(), FsError> {
        self.0
            .files
            .borrow_mut()
            .retain(|f, _| f != path && !under(f, path));
        self.0
            .dirs
            .borrow_mut()
            .retain(|d| d != path && !under(d, path));
        Ok(())
    }

    fn list_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        let mut names: Vec<String> = Vec::new();
        let prefix = format!("{path}/");
        let files = self.0.files.borrow();
        let dirs = self.0.dirs.borrow();
        for p in files.keys().chain(dirs.iter()) {
            if let Some(rest) = p.strip_prefix(&prefix) {
                let first = rest.split('/').next().unwrap().to_string();
                if !names.contains(&first) {
                    names.push(first);
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn create_output(&self, path: &str) -> Result<Box<dyn Output>, FsError> {
        self.0
            .files
            .borrow_mut()
            .insert(path.to_string(), Vec::new());
        Ok(Box::new(MemOutput {
            fs: self.0.clone(),
            path: path.to_string(),
        }))
    }

    fn read_layer_files(
        &self,
        path: &str,
        names: &[String],
        _max_bytes: u64,
    ) -> Result<Vec<LayerFile>, FsError> {
        let data = self
            .0
            .get(path)
            .ok_or_else(|| FsError::NotFound(path.to_string()))?;
        Ok(fake_layer_files(&data, names))
    }
}

fn fake_layer_files(blob: &[u8], names: &[String]) -> Vec<LayerFile> {
    let map: BTreeMap<String, String> = serde_json::from_slice(blob).unwrap_or_default();
    map.into_iter()
        .filter(|(n, _)| names.contains(n))
        .map(|(name, content)| LayerFile {
            name,
            content: content.into_bytes(),
        })
        .collect()
}

/// A registry in memory: tags, manifests and blobs per repository, plus a
/// log of what was asked.
pub struct MemRegistry {
    fs: SharedFs,
    tags: RefCell<BTreeMap<String, BTreeMap<String, String>>>,
    manifests: RefCell<HashMap<String, (String, Vec<u8>)>>,
    blobs: RefCell<HashMap<String, Vec<u8>>>,
    /// Repositories whose tag listing is refused (a proxy).
    pub refuse_listing: Cell<bool>,
    /// Every request, e.g. `HEAD packages/a:v1.0.0`.
    pub requests: RefCell<Vec<String>>,
    counter: Cell<u32>,
}

impl MemRegistry {
    pub fn new(fs: SharedFs) -> Self {
        Self {
            fs,
            tags: RefCell::default(),
            manifests: RefCell::default(),
            blobs: RefCell::default(),
            refuse_listing: Cell::new(false),
            requests: RefCell::default(),
            counter: Cell::new(0),
        }
    }

    fn blob(&self, data: Vec<u8>) -> Descriptor {
        let digest = sha256(&data);
        let size = data.len() as u64;
        self.blobs.borrow_mut().insert(digest.clone(), data);
        Descriptor {
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            digest,
            size,
        }
    }

    /// Pushes a one-layer image holding `files`, tagged `tag` (or untagged
    /// when `tag` is empty). Returns the manifest digest.
    pub fn image(&self, repo: &str, tag: &str, files: &[(&str, &str)]) -> String {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        let mut map: BTreeMap<String, String> = files
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // Makes every layer unique.
        map.insert(format!(".id-{n}"), format!("{repo}:{tag}"));
        let layer = self.blob(serde_json::to_vec(&map).unwrap());
        let config =
            self.blob(format!(r#"{{"architecture":"amd64","os":"linux","n":{n}}}"#).into_bytes());
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{}","size":{}}}]}}"#,
            config.digest, config.size, layer.media_type, layer.digest, layer.size
        );
        self.manifest(repo, tag, OCI_MANIFEST, body.into_bytes())
    }

    /// Pushes an index of two images (arm64 first, amd64 second).
    pub fn index(&self, repo: &str, tag: &str, arm64: &str, amd64: &str) -> String {
        let size = |d: &str| self.manifests.borrow()[d].1.len();
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{arm64}","size":{},"platform":{{"os":"linux","architecture":"arm64"}}}},{{"mediaType":"{OCI_MANIFEST}","digest":"{amd64}","size":{},"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            size(arm64),
            size(amd64)
        );
        self.manifest(repo, tag, OCI_INDEX, body.into_bytes())
    }

    fn manifest(&self, repo: &str, tag: &str, media_type: &str, body: Vec<u8>) -> String {
        let digest = sha256(&body);
        self.manifests
            .borrow_mut()
            .insert(digest.clone(), (media_type.to_string(), body));
        let mut tags = self.tags.borrow_mut();
        let repo_tags = tags.entry(repo.to_string()).or_default();
        if !tag.is_empty() {
            repo_tags.insert(tag.to_string(), digest.clone());
        }
        digest
    }

    /// A repository that exists only as a tag list (like `packages`).
    pub fn tag_only(&self, repo: &str, tag: &str) {
        self.image(repo, tag, &[]);
    }

    fn lookup(&self, r: &ImageRef) -> Option<(String, String, Vec<u8>)> {
        let digest = if r.is_digest() {
            self.tags.borrow().get(&r.repo)?;
            r.reference.clone()
        } else {
            self.tags.borrow().get(&r.repo)?.get(&r.reference)?.clone()
        };
        let (media_type, body) = self.manifests.borrow().get(&digest)?.clone();
        Some((digest, media_type, body))
    }

    fn note(&self, line: String) {
        self.requests.borrow_mut().push(line);
    }

    /// The HEAD requests made, in order.
    pub fn heads(&self) -> Vec<String> {
        self.requests
            .borrow()
            .iter()
            .filter_map(|l| l.strip_prefix("HEAD ").map(str::to_string))
            .collect()
    }
}

impl Registry for MemRegistry {
    fn list_tags(
        &self,
        repo: &str,
        _timeout_ms: Option<u64>,
    ) -> Result<Vec<String>, RegistryError> {
        self.note(format!("LIST {repo}"));
        if self.refuse_listing.get() {
            return Err(RegistryError::Denied("listing refused".into()));
        }
        self.tags
            .borrow()
            .get(repo)
            .map(|t| t.keys().cloned().collect())
            .ok_or_else(|| RegistryError::NotFound(repo.to_string()))
    }

    fn resolve(&self, refs: &[ImageRef]) -> Vec<Result<Option<Descriptor>, RegistryError>> {
        refs.iter()
            .map(|r| {
                self.note(format!("HEAD {r}"));
                Ok(self.lookup(r).map(|(digest, media_type, body)| Descriptor {
                    media_type,
                    digest,
                    size: body.len() as u64,
                }))
            })
            .collect()
    }

    fn fetch_manifests(&self, refs: &[ImageRef]) -> Vec<Result<Manifest, RegistryError>> {
        refs.iter()
            .map(|r| {
                self.note(format!("GET {r}"));
                self.lookup(r)
                    .map(|(digest, media_type, body)| Manifest {
                        descriptor: Descriptor {
                            media_type,
                            digest,
                            size: body.len() as u64,
                        },
                        body,
                    })
                    .ok_or_else(|| RegistryError::NotFound(r.to_string()))
            })
            .collect()
    }

    fn fetch_blobs(&self, fetches: &[BlobFetch]) -> Vec<Result<(), RegistryError>> {
        fetches
            .iter()
            .map(|f| {
                self.note(format!("BLOB {}", f.digest));
                let data = self
                    .blobs
                    .borrow()
                    .get(&f.digest)
                    .cloned()
                    .ok_or_else(|| RegistryError::NotFound(f.digest.clone()))?;
                assert_eq!(data.len() as u64, f.size, "size of {}", f.digest);
                self.fs.write_file(&f.path, &data).unwrap();
                Ok(())
            })
            .collect()
    }

    fn read_layer_files(
        &self,
        _repo: &str,
        digest: &str,
        names: &[String],
        _max_bytes: u64,
    ) -> Result<Vec<LayerFile>, RegistryError> {
        self.note(format!("SCAN {digest}"));
        let blob = self
            .blobs
            .borrow()
            .get(digest)
            .cloned()
            .ok_or_else(|| RegistryError::NotFound(digest.to_string()))?;
        Ok(fake_layer_files(&blob, names))
    }
}

#[derive(Default)]
pub struct MemEvents {
    pub logs: RefCell<Vec<(Level, String)>>,
    /// Cancel once this many `cancelled()` checks were made.
    pub cancel_after: Cell<Option<u32>>,
    checks: Cell<u32>,
}

impl Events for MemEvents {
    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }

    fn progress(&self, _event: Progress) {}

    fn cancelled(&self) -> bool {
        let n = self.checks.get() + 1;
        self.checks.set(n);
        self.cancel_after.get().is_some_and(|limit| n > limit)
    }
}

impl MemEvents {
    /// How many times `cancelled()` was asked.
    pub fn checks(&self) -> u32 {
        self.checks.get()
    }

    pub fn warnings(&self) -> Vec<String> {
        self.logs
            .borrow()
            .iter()
            .filter(|(l, _)| *l == Level::Warn)
            .map(|(_, m)| m.clone())
            .collect()
    }
}

/// A fresh registry, filesystem and event sink.
pub struct World {
    pub fs: SharedFs,
    pub registry: MemRegistry,
    pub events: MemEvents,
}

impl World {
    pub fn new() -> Self {
        let fs = SharedFs::default();
        Self {
            registry: MemRegistry::new(fs.clone()),
            fs,
            events: MemEvents::default(),
        }
    }

    pub fn host(&self) -> Host<'_> {
        Host::new(&self.registry, &self.fs, &self.events)
    }

    /// Entries of a tar archive written to the MemFs: (path, content).
    pub fn tar_entries(&self, archive: &str) -> Vec<(String, Vec<u8>)> {
        let data = self
            .fs
            .0
            .get(archive)
            .unwrap_or_else(|| panic!("{archive} missing"));
        read_tar(&data)
    }
}

pub fn read_tar(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut archive = tar::Archive::new(data);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().to_string();
            let mut content = Vec::new();
            e.read_to_end(&mut content).unwrap();
            (path, content)
        })
        .collect()
}
