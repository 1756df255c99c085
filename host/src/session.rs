//! Loading the plugin component and calling its exports.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimitsBuilder};
use wasmtime_wasi::WasiCtx;

use crate::bindings::{PackagesMirror, PackagesMirrorPre};
use crate::cancel::Cancel;
use crate::events::{Events, LogLevel};
use crate::fs::Confined;
use crate::imports::{RunContext, StoreState};
use crate::registry::{Client, RegistryConfig};
use crate::temps::TempTracker;
use crate::{PullError, PullOptions, PullSummary};

/// Default cap of the guest's linear memory.
pub const DEFAULT_MEMORY_LIMIT: usize = 1 << 30;

const WASM_MAGIC: &[u8] = b"\0asm";
const CORE_MODULE_VERSION: &[u8] = &[0x01, 0x00, 0x00, 0x00];

/// A compiled, type-checked packages-mirror component.
#[derive(Clone)]
pub struct Plugin {
    path: PathBuf,
    pre: PackagesMirrorPre<StoreState>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Reads, compiles and links the component at `path`. Errors are one line
    /// naming the path: missing or unreadable file, not a component, or a
    /// component of another world.
    pub fn load(path: &Path) -> Result<Plugin, String> {
        let shown = path.display();
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read plugin {shown}: {e}"))?;
        if !bytes.starts_with(WASM_MAGIC) {
            return Err(format!("plugin {shown} is not a WebAssembly component"));
        }
        if bytes.get(4..8) == Some(CORE_MODULE_VERSION) {
            return Err(format!(
                "plugin {shown} is a core WebAssembly module, not a component (build it for wasm32-wasip2)"
            ));
        }
        let engine = Engine::new(&wasmtime::Config::new())
            .map_err(|e| format!("cannot set up the WebAssembly engine: {}", one_line(&e)))?;
        let component = wasmtime::component::Component::new(&engine, &bytes)
            .map_err(|e| format!("plugin {shown} is not a valid component: {}", one_line(&e)))?;

        let mut linker: Linker<StoreState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| format!("cannot link WASI: {}", one_line(&e)))?;
        PackagesMirror::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |s| s)
            .map_err(|e| format!("cannot link host imports: {}", one_line(&e)))?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(PackagesMirrorPre::new)
            .map_err(|e| {
                format!(
                    "plugin {shown} does not fit this host (world deckhouse:packages-mirror@0.1.0): {}",
                    one_line(&e)
                )
            })?;
        Ok(Plugin {
            path: path.to_path_buf(),
            pre,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// How a session is set up.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub registry: RegistryConfig,
    /// The one directory the plugin may touch. In a dry run it need not exist.
    pub bundle_dir: PathBuf,
    pub log_level: LogLevel,
    /// Cap of the guest's linear memory, in bytes.
    pub memory_limit: usize,
}

impl HostConfig {
    pub fn new(registry: RegistryConfig, bundle_dir: PathBuf) -> Self {
        HostConfig {
            registry,
            bundle_dir,
            log_level: LogLevel::Info,
            memory_limit: DEFAULT_MEMORY_LIMIT,
        }
    }
}

/// Why an export call did not produce a summary.
#[derive(Debug, Clone)]
pub enum CallError {
    /// The plugin returned an error.
    Pull(PullError),
    /// The plugin trapped (a panic, the memory cap); its instance is gone.
    Crashed(String),
    /// The host could not run the call.
    Host(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Pull(e) => f.write_str(&describe_pull_error(e)),
            CallError::Crashed(m) | CallError::Host(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CallError {}

/// One line for a plugin error.
pub fn describe_pull_error(e: &PullError) -> String {
    match e {
        PullError::InvalidOptions(m) => m.clone(),
        PullError::Registry(m) => format!("registry: {m}"),
        PullError::Filesystem(m) => format!("bundle directory: {m}"),
        PullError::Incomplete(m) => format!("incomplete pull: {m}"),
        PullError::Cancelled => "interrupted".to_owned(),
        PullError::Internal(m) => format!("internal plugin error: {m}"),
    }
}

/// A plugin bound to a registry, a bundle directory and a cancellation
/// signal. Each export call gets a fresh store and instance, so a trap in one
/// call cannot poison the next.
///
/// The calls block; they must not run on a tokio runtime thread.
pub struct Session {
    plugin: Plugin,
    run: Arc<RunContext>,
    cancel: Cancel,
    temps: Arc<TempTracker>,
    memory_limit: usize,
    // Declared last: dropped after everything that holds a handle to it.
    _runtime: tokio::runtime::Runtime,
}

impl Session {
    pub fn new(plugin: Plugin, config: HostConfig) -> Result<Session, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("host-io")
            .build()
            .map_err(|e| format!("cannot start the I/O runtime: {e}"))?;
        let cancel = Cancel::new();
        let events = Events::new(config.log_level, cancel.clone());
        let root = bundle_root(&config.bundle_dir)?;
        let temps = Arc::new(TempTracker::new(&root));
        let fs = Confined::new(&root, Arc::clone(&temps))
            .map_err(|e| format!("bundle directory {}: {e}", config.bundle_dir.display()))?;
        let registry = Client::new(config.registry, cancel.clone(), events.clone())?;
        let run = Arc::new(RunContext {
            registry: Arc::new(registry),
            fs: Arc::new(fs),
            events,
            runtime: runtime.handle().clone(),
        });
        Ok(Session {
            plugin,
            run,
            cancel,
            temps,
            memory_limit: config.memory_limit,
            _runtime: runtime,
        })
    }

    /// The signal that cancels this session's calls (Ctrl+C, a deadline).
    pub fn cancel_handle(&self) -> Cancel {
        self.cancel.clone()
    }

    /// Temporary bundle entries created so far, for cleanup after a failure.
    pub fn temps(&self) -> Arc<TempTracker> {
        Arc::clone(&self.temps)
    }

    pub fn events(&self) -> &Events {
        &self.run.events
    }

    /// Calls export `pull-packages`.
    pub fn pull_packages(&self, options: &PullOptions) -> Result<PullSummary, CallError> {
        self.call("pull-packages", |bindings, store| {
            bindings.call_pull_packages(store, options)
        })
    }

    /// Calls export `pull-package-versions`.
    pub fn pull_package_versions(&self, options: &PullOptions) -> Result<PullSummary, CallError> {
        self.call("pull-package-versions", |bindings, store| {
            bindings.call_pull_package_versions(store, options)
        })
    }

    fn call(
        &self,
        export: &str,
        f: impl FnOnce(
            &PackagesMirror,
            &mut Store<StoreState>,
        ) -> wasmtime::Result<Result<PullSummary, PullError>>,
    ) -> Result<PullSummary, CallError> {
        let mut wasi = WasiCtx::builder();
        // No preopens, no environment, no arguments, no network: the plugin
        // reaches the world only through our imports. Its panics go to stderr.
        wasi.inherit_stderr();
        let state = StoreState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.memory_limit)
                .trap_on_grow_failure(true)
                .build(),
            run: Arc::clone(&self.run),
        };
        let mut store = Store::new(self.plugin.pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        let bindings = self.plugin.pre.instantiate(&mut store).map_err(|e| {
            CallError::Host(format!(
                "cannot instantiate plugin {}: {}",
                self.plugin.path.display(),
                one_line(&e)
            ))
        })?;
        match f(&bindings, &mut store) {
            Ok(Ok(summary)) => Ok(summary),
            Ok(Err(e)) => Err(CallError::Pull(e)),
            Err(e) => Err(CallError::Crashed(format!(
                "plugin {} crashed in {export}: {}",
                self.plugin.path.display(),
                trap_text(&e, self.memory_limit)
            ))),
        }
    }
}

/// The bundle directory as an absolute path; canonical when it exists (a dry
/// run may name one that does not).
fn bundle_root(dir: &Path) -> Result<PathBuf, String> {
    match dir.canonicalize() {
        Ok(p) => Ok(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::path::absolute(dir).map_err(|e| format!("bundle directory {}: {e}", dir.display()))
        }
        Err(e) => Err(format!("bundle directory {}: {e}", dir.display())),
    }
}

/// A trap in words: the trap code when there is one, the memory cap when it
/// was hit, else the first line of the error.
fn trap_text(e: &wasmtime::Error, memory_limit: usize) -> String {
    let text = one_line(e);
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        let hint = match trap {
            wasmtime::Trap::UnreachableCodeReached => {
                " (usually a panic in the plugin; its message is above)"
            }
            _ => "",
        };
        return format!("{trap}{hint}");
    }
    if text.contains("memory") && text.contains("limit") || text.contains("grow") {
        return format!(
            "it needed more than the {} MiB of memory it may use ({text})",
            memory_limit >> 20
        );
    }
    text
}

/// The outermost message of an error chain, on one line.
fn one_line(e: &wasmtime::Error) -> String {
    let mut text = e.to_string();
    if let Some(root) = e.chain().last() {
        let root = root.to_string();
        if root != text {
            text = format!("{text}: {root}");
        }
    }
    text.lines().next().unwrap_or("").trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    fn load_error(bytes: Option<&[u8]>) -> String {
        let dir = TempDir::new("load");
        let path = dir.path().join("plugin.wasm");
        if let Some(bytes) = bytes {
            std::fs::write(&path, bytes).unwrap();
        }
        let e = Plugin::load(&path).unwrap_err();
        assert!(
            e.contains(&path.display().to_string()),
            "names the path: {e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
        e
    }

    #[test]
    fn load_errors_are_one_line_and_name_the_file() {
        assert!(load_error(None).contains("cannot read plugin"));
        assert!(load_error(Some(b"hello")).contains("not a WebAssembly component"));
        assert!(load_error(Some(b"\0asm\x01\0\0\0")).contains("core WebAssembly module"));
        assert!(load_error(Some(b"\0asm\x0d\0\x01\0garbage")).contains("not a valid component"));
    }
}
