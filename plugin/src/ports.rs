//! The plugin's view of its host: plain Rust mirrors of the WIT imports.
//!
//! The core modules are written against these traits so that they run
//! natively under `cargo test` with in-memory doubles; `glue.rs` implements
//! them over the real imports inside the component.

use std::cell::RefCell;
use std::fmt;

/// A manifest or blob descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// A repository (relative to the source root) and a tag or digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    pub repo: String,
    pub reference: String,
}

impl ImageRef {
    pub fn new(repo: impl Into<String>, reference: impl Into<String>) -> Self {
        Self {
            repo: repo.into(),
            reference: reference.into(),
        }
    }

    /// True when the reference is a digest rather than a tag.
    pub fn is_digest(&self) -> bool {
        self.reference.starts_with("sha256:")
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if self.is_digest() { '@' } else { ':' };
        write!(f, "{}{}{}", self.repo, sep, self.reference)
    }
}

/// A manifest as served, with the descriptor the host computed over it.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub descriptor: Descriptor,
    pub body: Vec<u8>,
}

/// A blob to download straight into a file.
#[derive(Clone, Debug)]
pub struct BlobFetch {
    pub repo: String,
    pub digest: String,
    pub size: u64,
    pub path: String,
}

/// A file found inside a layer.
#[derive(Clone, Debug)]
pub struct LayerFile {
    pub name: String,
    pub content: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryError {
    NotFound(String),
    Unauthorized(String),
    Denied(String),
    Integrity(String),
    Cancelled,
    /// A timeout ran out (the text names the request).
    Timeout(String),
    /// The bundle directory failed while a blob was written into it.
    Filesystem(FsError),
    Other(String),
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(m) => write!(f, "not found: {m}"),
            Self::Unauthorized(m) => write!(f, "unauthorized: {m}"),
            Self::Denied(m) => write!(f, "denied: {m}"),
            Self::Integrity(m) => write!(f, "integrity check failed: {m}"),
            Self::Cancelled => f.write_str("cancelled"),
            Self::Timeout(m) => write!(f, "timed out: {m}"),
            Self::Filesystem(e) => write!(f, "bundle directory: {e}"),
            Self::Other(m) => f.write_str(m),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FsError {
    NotFound(String),
    Denied(String),
    NoSpace(String),
    Other(String),
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(m) => write!(f, "not found: {m}"),
            Self::Denied(m) => write!(f, "denied: {m}"),
            Self::NoSpace(m) => write!(f, "disk full: {m}"),
            Self::Other(m) => f.write_str(m),
        }
    }
}

pub trait Registry {
    fn list_tags(&self, repo: &str, timeout_ms: Option<u64>) -> Result<Vec<String>, RegistryError>;
    fn resolve(&self, refs: &[ImageRef]) -> Vec<Result<Option<Descriptor>, RegistryError>>;
    fn fetch_manifests(&self, refs: &[ImageRef]) -> Vec<Result<Manifest, RegistryError>>;
    fn fetch_blobs(&self, fetches: &[BlobFetch]) -> Vec<Result<(), RegistryError>>;
    fn read_layer_files(
        &self,
        repo: &str,
        digest: &str,
        names: &[String],
        max_bytes: u64,
    ) -> Result<Vec<LayerFile>, RegistryError>;
}

/// An archive being written.
pub trait Output {
    fn write(&mut self, data: &[u8]) -> Result<(), FsError>;
    fn copy_from(&mut self, src: &str, offset: u64, len: u64) -> Result<(), FsError>;
    fn finish(self: Box<Self>) -> Result<(), FsError>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStat {
    pub size: u64,
    pub is_dir: bool,
}

pub trait Fs {
    fn stat(&self, path: &str) -> Result<Option<FileStat>, FsError>;
    fn create_dir_all(&self, path: &str) -> Result<(), FsError>;
    fn read_file(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, FsError>;
    fn write_file(&self, path: &str, data: &[u8]) -> Result<(), FsError>;
    fn rename(&self, source: &str, target: &str) -> Result<(), FsError>;
    fn remove(&self, path: &str) -> Result<(), FsError>;
    fn list_dir(&self, path: &str) -> Result<Vec<String>, FsError>;
    fn create_output(&self, path: &str) -> Result<Box<dyn Output>, FsError>;
    fn read_layer_files(
        &self,
        path: &str,
        names: &[String],
        max_bytes: u64,
    ) -> Result<Vec<LayerFile>, FsError>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    PackageStarted {
        name: String,
        index: u32,
        total: u32,
    },
    Phase {
        package: String,
        phase: &'static str,
    },
    BlobsPlanned {
        count: u32,
        bytes: u64,
    },
    ArchiveWritten {
        name: String,
        size: u64,
    },
}

pub trait Events {
    fn log(&self, level: Level, message: &str);
    fn progress(&self, event: Progress);
    fn cancelled(&self) -> bool;
}

/// Everything the core needs from its host, borrowed for one export call.
pub struct Host<'a> {
    pub registry: &'a dyn Registry,
    pub fs: &'a dyn Fs,
    pub events: &'a dyn Events,
    /// Warnings repeated in the summary.
    warnings: RefCell<Vec<String>>,
}

impl<'a> Host<'a> {
    pub fn new(registry: &'a dyn Registry, fs: &'a dyn Fs, events: &'a dyn Events) -> Self {
        Self {
            registry,
            fs,
            events,
            warnings: RefCell::new(Vec::new()),
        }
    }

    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut self.warnings.borrow_mut())
    }

    pub fn warn(&self, message: impl AsRef<str>) {
        self.events.log(Level::Warn, message.as_ref());
        self.warnings
            .borrow_mut()
            .push(message.as_ref().to_string());
    }

    pub fn info(&self, message: impl AsRef<str>) {
        self.events.log(Level::Info, message.as_ref());
    }

    pub fn debug(&self, message: impl AsRef<str>) {
        self.events.log(Level::Debug, message.as_ref());
    }
}
