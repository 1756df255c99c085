//! Binds the core to the WIT world: the imports become the [`ports`] traits,
//! the exports call the core. Nothing else happens here.

use crate::error::Error;
use crate::options::{Archive, Options, PackageSummary, Summary};
use crate::ports::{
    self, Descriptor, FileStat, FsError, ImageRef, LayerFile, Level, RegistryError,
};

// The generated import shims take one argument per flattened WIT field.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ path: "../wit", world: "packages-mirror" });
}
use bindings::{Guest, PullError, PullOptions, PullSummary, export};

use bindings::deckhouse::packages_mirror::{events, filesystem, registry, types};

struct Component;

impl Guest for Component {
    fn pull_packages(options: PullOptions) -> Result<PullSummary, PullError> {
        run(options, crate::pull_packages)
    }

    fn pull_package_versions(options: PullOptions) -> Result<PullSummary, PullError> {
        run(options, crate::pull_package_versions)
    }
}

export!(Component with_types_in bindings);

fn run(
    options: PullOptions,
    call: fn(&ports::Host, &Options) -> crate::error::Result<Summary>,
) -> Result<PullSummary, PullError> {
    let opts = Options {
        source_root: options.source_root,
        include_packages: options.include_packages,
        exclude_packages: options.exclude_packages,
        only_extra_images: options.only_extra_images,
        skip_vex_images: options.skip_vex_images,
        bundle_chunk_size: options.bundle_chunk_size,
        access_timeout_ms: options.access_timeout_ms,
        dry_run: options.dry_run,
        proxy_registry: options.proxy_registry,
    };
    let host = ports::Host::new(&WitRegistry, &WitFs, &WitEvents);
    call(&host, &opts).map(summary_to_wit).map_err(error_to_wit)
}

fn summary_to_wit(s: Summary) -> PullSummary {
    PullSummary {
        dry_run: s.dry_run,
        packages: s.packages.into_iter().map(package_to_wit).collect(),
        archives: s.archives.into_iter().map(archive_to_wit).collect(),
        warnings: s.warnings,
    }
}

fn package_to_wit(p: PackageSummary) -> types::PackageSummary {
    types::PackageSummary {
        name: p.name,
        versions: p.versions,
        images: p.images,
        vex_images: p.vex_images,
    }
}

fn archive_to_wit(a: Archive) -> types::Archive {
    types::Archive {
        name: a.name,
        files: a.files,
        size: a.size,
    }
}

fn error_to_wit(e: Error) -> PullError {
    match e {
        Error::InvalidOptions(m) => PullError::InvalidOptions(m),
        Error::Registry(m) => PullError::Registry(m),
        Error::Filesystem(m) => PullError::Filesystem(m),
        Error::Incomplete(m) => PullError::Incomplete(m),
        Error::Cancelled => PullError::Cancelled,
        Error::Internal(m) => PullError::Internal(m),
    }
}

struct WitRegistry;

fn registry_error(e: registry::RegistryError) -> RegistryError {
    use registry::RegistryError as W;
    match e {
        W::NotFound(m) => RegistryError::NotFound(m),
        W::Unauthorized(m) => RegistryError::Unauthorized(m),
        W::Denied(m) => RegistryError::Denied(m),
        W::Integrity(m) => RegistryError::Integrity(m),
        W::Cancelled => RegistryError::Cancelled,
        W::Timeout(m) => RegistryError::Timeout(m),
        W::Filesystem(e) => RegistryError::Filesystem(fs_error(e)),
        W::Other(m) => RegistryError::Other(m),
    }
}

fn descriptor(d: registry::Descriptor) -> Descriptor {
    Descriptor {
        media_type: d.media_type,
        digest: d.digest,
        size: d.size,
    }
}

/// Items the host takes in one batched registry call (see the WIT); longer
/// lists are sent in several calls.
const HOST_BATCH: usize = 256;

fn wit_refs(refs: &[ImageRef]) -> Vec<registry::ImageRef> {
    refs.iter()
        .map(|r| registry::ImageRef {
            repo: r.repo.clone(),
            reference: r.reference.clone(),
        })
        .collect()
}

fn layer_files(files: Vec<types::LayerFile>) -> Vec<LayerFile> {
    files
        .into_iter()
        .map(|f| LayerFile {
            name: f.name,
            content: f.content,
        })
        .collect()
}

impl ports::Registry for WitRegistry {
    fn list_tags(&self, repo: &str, timeout_ms: Option<u64>) -> Result<Vec<String>, RegistryError> {
        registry::list_tags(repo, timeout_ms).map_err(registry_error)
    }

    fn resolve(&self, refs: &[ImageRef]) -> Vec<Result<Option<Descriptor>, RegistryError>> {
        refs.chunks(HOST_BATCH)
            .flat_map(|chunk| registry::resolve(&wit_refs(chunk)))
            .map(|r| r.map(|d| d.map(descriptor)).map_err(registry_error))
            .collect()
    }

    fn fetch_manifests(&self, refs: &[ImageRef]) -> Vec<Result<ports::Manifest, RegistryError>> {
        refs.chunks(HOST_BATCH)
            .flat_map(|chunk| registry::fetch_manifests(&wit_refs(chunk)))
            .map(|r| {
                r.map(|m| ports::Manifest {
                    descriptor: descriptor(m.descriptor),
                    body: m.body,
                })
                .map_err(registry_error)
            })
            .collect()
    }

    fn fetch_blobs(&self, fetches: &[ports::BlobFetch]) -> Vec<Result<(), RegistryError>> {
        let wit: Vec<registry::BlobFetch> = fetches
            .iter()
            .map(|f| registry::BlobFetch {
                repo: f.repo.clone(),
                digest: f.digest.clone(),
                size: f.size,
                path: f.path.clone(),
            })
            .collect();
        wit.chunks(HOST_BATCH)
            .flat_map(registry::fetch_blobs)
            .map(|r| r.map_err(registry_error))
            .collect()
    }

    fn read_layer_files(
        &self,
        repo: &str,
        digest: &str,
        names: &[String],
        max_bytes: u64,
    ) -> Result<Vec<LayerFile>, RegistryError> {
        registry::read_layer_files(repo, digest, names, max_bytes)
            .map(layer_files)
            .map_err(registry_error)
    }
}

struct WitFs;

fn fs_error(e: types::FsError) -> FsError {
    use types::FsError as W;
    match e {
        W::NotFound(m) => FsError::NotFound(m),
        W::Denied(m) => FsError::Denied(m),
        W::NoSpace(m) => FsError::NoSpace(m),
        W::Other(m) => FsError::Other(m),
    }
}

struct WitOutput(filesystem::Output);

impl ports::Output for WitOutput {
    fn write(&mut self, data: &[u8]) -> Result<(), FsError> {
        self.0.write(data).map_err(fs_error)
    }

    fn copy_from(&mut self, src: &str, offset: u64, len: u64) -> Result<(), FsError> {
        self.0.copy_from(src, offset, len).map_err(fs_error)
    }

    fn finish(self: Box<Self>) -> Result<(), FsError> {
        self.0.finish().map_err(fs_error)
    }
}

impl ports::Fs for WitFs {
    fn stat(&self, path: &str) -> Result<Option<FileStat>, FsError> {
        filesystem::stat(path)
            .map(|s| {
                s.map(|s| FileStat {
                    size: s.size,
                    is_dir: s.is_dir,
                })
            })
            .map_err(fs_error)
    }

    fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        filesystem::create_dir_all(path).map_err(fs_error)
    }

    fn read_file(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, FsError> {
        filesystem::read_file(path, max_bytes).map_err(fs_error)
    }

    fn write_file(&self, path: &str, data: &[u8]) -> Result<(), FsError> {
        filesystem::write_file(path, data).map_err(fs_error)
    }

    fn rename(&self, source: &str, target: &str) -> Result<(), FsError> {
        filesystem::rename(source, target).map_err(fs_error)
    }

    fn remove(&self, path: &str) -> Result<(), FsError> {
        filesystem::remove(path).map_err(fs_error)
    }

    fn list_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        filesystem::list_dir(path).map_err(fs_error)
    }

    fn create_output(&self, path: &str) -> Result<Box<dyn ports::Output>, FsError> {
        filesystem::create_output(path)
            .map(|o| Box::new(WitOutput(o)) as Box<dyn ports::Output>)
            .map_err(fs_error)
    }

    fn read_layer_files(
        &self,
        path: &str,
        names: &[String],
        max_bytes: u64,
    ) -> Result<Vec<LayerFile>, FsError> {
        filesystem::read_layer_files(path, names, max_bytes)
            .map(layer_files)
            .map_err(fs_error)
    }
}

struct WitEvents;

impl ports::Events for WitEvents {
    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Error => events::Level::Error,
            Level::Warn => events::Level::Warn,
            Level::Info => events::Level::Info,
            Level::Debug => events::Level::Debug,
            Level::Trace => events::Level::Trace,
        };
        events::log(level, message);
    }

    fn progress(&self, event: ports::Progress) {
        use events::ProgressEvent as W;
        let event = match event {
            ports::Progress::PackageStarted { name, index, total } => {
                W::PackageStarted((name, index, total))
            }
            ports::Progress::Phase { package, phase } => W::Phase((package, phase.to_string())),
            ports::Progress::BlobsPlanned { count, bytes } => W::BlobsPlanned((count, bytes)),
            ports::Progress::ArchiveWritten { name, size } => W::ArchiveWritten((name, size)),
        };
        events::progress(&event);
    }

    fn cancelled(&self) -> bool {
        events::cancelled()
    }
}
