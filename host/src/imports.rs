//! The store's data and the WIT import traits it implements: thin glue that
//! converts between generated types and the native modules (`registry`,
//! `fs`, `events`), which know nothing about wasm.

use std::sync::Arc;

use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::deckhouse::packages_mirror::{events, filesystem, registry, types};
use crate::events::{Events, LogLevel, Progress};
use crate::fs::{Confined, FsError, Output};
use crate::registry::blobs::BlobFetch;
use crate::registry::error::FsKind;
use crate::registry::manifests::{Descriptor, ImageRef};
use crate::registry::{Client, Kind, RegError};

/// What every call of one session shares.
pub(crate) struct RunContext {
    pub registry: Arc<Client>,
    pub fs: Arc<Confined>,
    pub events: Events,
    pub runtime: tokio::runtime::Handle,
}

/// The data of one store (one export call).
pub(crate) struct StoreState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: crate::session::Limits,
    /// `output` resources currently open, and the cap on them.
    pub open_outputs: usize,
    pub max_open_outputs: usize,
    pub run: Arc<RunContext>,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for StoreState {}

fn reg_error(e: RegError) -> registry::RegistryError {
    use registry::RegistryError as W;
    match e.kind {
        Kind::NotFound => W::NotFound(e.message),
        Kind::Unauthorized => W::Unauthorized(e.message),
        Kind::Denied => W::Denied(e.message),
        Kind::Integrity => W::Integrity(e.message),
        Kind::Cancelled => W::Cancelled,
        Kind::Timeout => W::Timeout(e.message),
        Kind::Filesystem(fs) => W::Filesystem(fs_error(match fs {
            FsKind::NotFound => FsError::NotFound(e.message),
            FsKind::Denied => FsError::Denied(e.message),
            FsKind::NoSpace => FsError::NoSpace(e.message),
            FsKind::Other => FsError::Other(e.message),
        })),
        Kind::Other => W::Other(e.message),
    }
}

fn descriptor(d: Descriptor) -> registry::Descriptor {
    registry::Descriptor {
        media_type: d.media_type,
        digest: d.digest,
        size: d.size,
    }
}

fn image_refs(refs: Vec<registry::ImageRef>) -> Vec<ImageRef> {
    refs.into_iter()
        .map(|r| ImageRef {
            repo: r.repo,
            reference: r.reference,
        })
        .collect()
}

fn layer_files(found: Vec<crate::layer::FoundFile>) -> Vec<types::LayerFile> {
    found
        .into_iter()
        .map(|f| types::LayerFile {
            name: f.name,
            content: f.content,
        })
        .collect()
}

impl registry::Host for StoreState {
    fn list_tags(
        &mut self,
        repo: String,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Result<Vec<String>, registry::RegistryError>> {
        let run = &self.run;
        let timeout = timeout_ms
            .filter(|ms| *ms > 0)
            .map(std::time::Duration::from_millis);
        Ok(run
            .runtime
            .block_on(run.registry.list_tags(&repo, timeout))
            .map_err(reg_error))
    }

    fn resolve(
        &mut self,
        refs: Vec<registry::ImageRef>,
    ) -> wasmtime::Result<Vec<Result<Option<registry::Descriptor>, registry::RegistryError>>> {
        let run = &self.run;
        let refs = image_refs(refs);
        let results = run.runtime.block_on(run.registry.resolve(&refs));
        Ok(results
            .into_iter()
            .map(|r| r.map(|d| d.map(descriptor)).map_err(reg_error))
            .collect())
    }

    fn fetch_manifests(
        &mut self,
        refs: Vec<registry::ImageRef>,
    ) -> wasmtime::Result<Vec<Result<registry::Manifest, registry::RegistryError>>> {
        let run = &self.run;
        let refs = image_refs(refs);
        let results = run.runtime.block_on(run.registry.fetch_manifests(&refs));
        Ok(results
            .into_iter()
            .map(|r| {
                r.map(|m| registry::Manifest {
                    descriptor: descriptor(m.descriptor),
                    body: m.body,
                })
                .map_err(reg_error)
            })
            .collect())
    }

    fn fetch_blobs(
        &mut self,
        fetches: Vec<registry::BlobFetch>,
    ) -> wasmtime::Result<Vec<Result<(), registry::RegistryError>>> {
        let run = &self.run;
        let fetches = fetches
            .into_iter()
            .map(|f| BlobFetch {
                repo: f.repo,
                digest: f.digest,
                size: f.size,
                path: f.path,
            })
            .collect();
        let results = run
            .runtime
            .block_on(run.registry.fetch_blobs(&run.fs, fetches));
        Ok(results.into_iter().map(|r| r.map_err(reg_error)).collect())
    }

    fn read_layer_files(
        &mut self,
        repo: String,
        digest: String,
        names: Vec<String>,
        max_bytes: u64,
    ) -> wasmtime::Result<Result<Vec<types::LayerFile>, registry::RegistryError>> {
        let run = &self.run;
        Ok(run
            .registry
            .read_layer_files_blocking(&run.runtime, &repo, &digest, &names, max_bytes)
            .map(layer_files)
            .map_err(reg_error))
    }
}

fn fs_error(e: FsError) -> types::FsError {
    use types::FsError as W;
    match e {
        FsError::NotFound(m) => W::NotFound(m),
        FsError::Denied(m) => W::Denied(m),
        FsError::NoSpace(m) => W::NoSpace(m),
        FsError::Other(m) => W::Other(m),
    }
}

impl filesystem::HostOutput for StoreState {
    fn write(
        &mut self,
        output: Resource<Output>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), types::FsError>> {
        let out = self.table.get_mut(&output)?;
        Ok(out.write(&data).map_err(fs_error))
    }

    fn copy_from(
        &mut self,
        output: Resource<Output>,
        src: String,
        offset: u64,
        len: u64,
    ) -> wasmtime::Result<Result<(), types::FsError>> {
        let out = self.table.get_mut(&output)?;
        Ok(out
            .copy_from(&self.run.fs, &src, offset, len)
            .map_err(fs_error))
    }

    fn finish(&mut self, output: Resource<Output>) -> wasmtime::Result<Result<(), types::FsError>> {
        let out = self.table.get_mut(&output)?;
        Ok(out.finish(&self.run.fs).map_err(fs_error))
    }

    fn drop(&mut self, output: Resource<Output>) -> wasmtime::Result<()> {
        self.table.delete(output)?;
        self.open_outputs = self.open_outputs.saturating_sub(1);
        Ok(())
    }
}

impl filesystem::Host for StoreState {
    fn stat(
        &mut self,
        path: String,
    ) -> wasmtime::Result<Result<Option<filesystem::FileStat>, types::FsError>> {
        Ok(self
            .run
            .fs
            .stat(&path)
            .map(|s| {
                s.map(|s| filesystem::FileStat {
                    size: s.size,
                    is_dir: s.is_dir,
                })
            })
            .map_err(fs_error))
    }

    fn create_dir_all(&mut self, path: String) -> wasmtime::Result<Result<(), types::FsError>> {
        Ok(self.run.fs.create_dir_all(&path).map_err(fs_error))
    }

    fn read_file(
        &mut self,
        path: String,
        max_bytes: u64,
    ) -> wasmtime::Result<Result<Vec<u8>, types::FsError>> {
        Ok(self.run.fs.read_file(&path, max_bytes).map_err(fs_error))
    }

    fn write_file(
        &mut self,
        path: String,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), types::FsError>> {
        Ok(self.run.fs.write_file(&path, &data).map_err(fs_error))
    }

    fn rename(
        &mut self,
        source: String,
        target: String,
    ) -> wasmtime::Result<Result<(), types::FsError>> {
        Ok(self.run.fs.rename(&source, &target).map_err(fs_error))
    }

    fn remove(&mut self, path: String) -> wasmtime::Result<Result<(), types::FsError>> {
        Ok(self.run.fs.remove(&path).map_err(fs_error))
    }

    fn list_dir(&mut self, path: String) -> wasmtime::Result<Result<Vec<String>, types::FsError>> {
        Ok(self.run.fs.list_dir(&path).map_err(fs_error))
    }

    fn create_output(
        &mut self,
        path: String,
    ) -> wasmtime::Result<Result<Resource<Output>, types::FsError>> {
        if self.open_outputs >= self.max_open_outputs {
            return Ok(Err(types::FsError::Denied(format!(
                "{path}: too many open outputs; the limit is {} (--max-open-files)",
                self.max_open_outputs
            ))));
        }
        match self.run.fs.create_output(&path) {
            Ok(out) => {
                let handle = self.table.push(out)?;
                self.open_outputs += 1;
                Ok(Ok(handle))
            }
            Err(e) => Ok(Err(fs_error(e))),
        }
    }

    fn read_layer_files(
        &mut self,
        path: String,
        names: Vec<String>,
        max_bytes: u64,
    ) -> wasmtime::Result<Result<Vec<types::LayerFile>, types::FsError>> {
        Ok(self
            .run
            .fs
            .read_layer_files(&path, &names, max_bytes)
            .map(layer_files)
            .map_err(fs_error))
    }
}

impl events::Host for StoreState {
    fn log(&mut self, level: events::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            events::Level::Error => LogLevel::Error,
            events::Level::Warn => LogLevel::Warn,
            events::Level::Info => LogLevel::Info,
            events::Level::Debug => LogLevel::Debug,
            events::Level::Trace => LogLevel::Trace,
        };
        self.run.events.log(level, &message);
        Ok(())
    }

    fn progress(&mut self, event: events::ProgressEvent) -> wasmtime::Result<()> {
        use events::ProgressEvent as E;
        let event = match event {
            E::PackageStarted((name, index, total)) => {
                Progress::PackageStarted { name, index, total }
            }
            E::Phase((package, phase)) => Progress::Phase { package, phase },
            E::BlobsPlanned((count, bytes)) => Progress::BlobsPlanned { count, bytes },
            E::ArchiveWritten((name, bytes)) => Progress::ArchiveWritten { name, bytes },
        };
        self.run.events.progress(&event);
        Ok(())
    }

    fn cancelled(&mut self) -> wasmtime::Result<bool> {
        Ok(self.run.events.cancelled())
    }
}
