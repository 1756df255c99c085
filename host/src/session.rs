//! Loading the plugin component and calling its exports.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::WasiCtx;

use crate::bindings::{PackagesMirror, PackagesMirrorPre};
use crate::cancel::Cancel;
use crate::compile_cache::{self, CacheOutcome};
use crate::events::{EventSink, Events, LogLevel, StderrSink};
use crate::fs::Confined;
use crate::imports::{RunContext, StoreState};
use crate::registry::{Client, RegistryConfig};
use crate::temps::TempTracker;
use crate::units;
use crate::{PullError, PullOptions, PullSummary};

/// Default cap of the guest's linear memory (`--memory-limit`).
pub const DEFAULT_MEMORY_LIMIT: usize = 1 << 30;
/// Default wall-clock limit of one export call (`--call-timeout`).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// Default cap of `output` handles the plugin may hold open at once
/// (`--max-open-files`); the real plugin holds one.
pub const DEFAULT_MAX_OPEN_OUTPUTS: usize = 64;
/// The WIT package this host implements.
pub const WIT_PACKAGE: &str = "deckhouse:packages-mirror";
/// Its version; a component of another `0.x` minor (or major) is refused.
pub const WIT_VERSION: &str = "0.1.0";
/// Elements a guest table may hold (function references); generous for any
/// real component, small enough to stop a table-growth attack.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// How often the epoch advances; the call deadline is checked at this pace.
const EPOCH_TICK: Duration = Duration::from_millis(50);
/// After the deadline, how long a call blocked in a host import may take to
/// come back before the session is cancelled to make it return.
const DEADLINE_GRACE: Duration = Duration::from_secs(2);
/// After a cancellation (Ctrl+C), how long the plugin's own code may keep
/// running before the host stops it: a well-behaved plugin returns at its
/// next `events.cancelled` check; a stuck one must not hold the user.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

const EXPORTS: [&str; 2] = ["pull-packages", "pull-package-versions"];

const WASM_MAGIC: &[u8] = b"\0asm";
const CORE_MODULE_VERSION: &[u8] = &[0x01, 0x00, 0x00, 0x00];

/// A compiled, type-checked packages-mirror component.
#[derive(Clone)]
pub struct Plugin {
    path: PathBuf,
    pre: PackagesMirrorPre<StoreState>,
    cache: CacheOutcome,
    load_time: Duration,
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
        Self::load_with_cache(path, None)
    }

    /// Like [`Plugin::load`], with a cache of compiled components in
    /// `cache_dir` (see [`compile_cache`]): the first load compiles and
    /// stores the artifact, later loads of the same plugin by the same host
    /// build skip compiling. Any cache problem falls back to compiling.
    pub fn load_with_cache(path: &Path, cache_dir: Option<&Path>) -> Result<Plugin, String> {
        let started = Instant::now();
        let (engine, component, cache) = compile(path, cache_dir)?;
        let mut plugin = Plugin::link(path, &engine, &component)?;
        plugin.cache = cache;
        plugin.load_time = started.elapsed();
        Ok(plugin)
    }

    /// Checks that an already compiled component is of this host's world and
    /// links it against the host's imports.
    pub(crate) fn link(
        path: &Path,
        engine: &Engine,
        component: &wasmtime::component::Component,
    ) -> Result<Plugin, String> {
        let shown = path.display();
        check_world(engine, component).map_err(|m| format!("plugin {shown} {m}"))?;
        let mut linker: Linker<StoreState> = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| format!("cannot link WASI: {}", one_line(&e)))?;
        PackagesMirror::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |s| s)
            .map_err(|e| format!("cannot link host imports: {}", one_line(&e)))?;
        let pre = linker
            .instantiate_pre(component)
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
            cache: CacheOutcome::Off,
            load_time: Duration::ZERO,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the compiled code came from the cache.
    pub fn cache_outcome(&self) -> &CacheOutcome {
        &self.cache
    }

    /// How long [`Plugin::load`] took: reading, compiling or loading from
    /// the cache, type-checking and linking.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }
}

/// How a session is set up.
#[derive(Clone)]
pub struct HostConfig {
    pub registry: RegistryConfig,
    /// The one directory the plugin may touch. In a dry run it need not exist.
    pub bundle_dir: PathBuf,
    pub log_level: LogLevel,
    /// Cap of the guest's linear memory, in bytes.
    pub memory_limit: usize,
    /// Wall-clock limit of one export call; `None` = no limit.
    pub call_timeout: Option<Duration>,
    /// Cap of `output` handles open at once.
    pub max_open_outputs: usize,
    /// Where log lines, progress events and transfer byte counts go;
    /// [`StderrSink`] (plain lines on stderr) unless replaced.
    pub events: Arc<dyn EventSink>,
}

impl std::fmt::Debug for HostConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostConfig")
            .field("registry", &self.registry)
            .field("bundle_dir", &self.bundle_dir)
            .field("log_level", &self.log_level)
            .field("memory_limit", &self.memory_limit)
            .field("call_timeout", &self.call_timeout)
            .field("max_open_outputs", &self.max_open_outputs)
            .finish_non_exhaustive()
    }
}

impl HostConfig {
    pub fn new(registry: RegistryConfig, bundle_dir: PathBuf) -> Self {
        HostConfig {
            registry,
            bundle_dir,
            log_level: LogLevel::Info,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            call_timeout: Some(DEFAULT_CALL_TIMEOUT),
            max_open_outputs: DEFAULT_MAX_OPEN_OUTPUTS,
            events: Arc::new(StderrSink),
        }
    }
}

/// Why an export call did not produce a summary.
#[derive(Debug, Clone)]
pub enum CallError {
    /// The plugin returned an error.
    Pull(PullError),
    /// The plugin trapped (a panic, a bug); its instance is gone.
    Crashed(String),
    /// The plugin hit a resource limit of the host (memory, time); the
    /// message names the limit, its value and the flag that sets it.
    Limit(String),
    /// The host could not run the call.
    Host(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Pull(e) => f.write_str(&describe_pull_error(e)),
            CallError::Crashed(m) | CallError::Limit(m) | CallError::Host(m) => f.write_str(m),
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
    call_timeout: Option<Duration>,
    max_open_outputs: usize,
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
        let events = Events::with_sink(config.log_level, cancel.clone(), config.events);
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
            call_timeout: config.call_timeout.filter(|t| !t.is_zero()),
            max_open_outputs: config.max_open_outputs,
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
            limits: Limits {
                memory: self.memory_limit,
                memory_hit: false,
            },
            open_outputs: 0,
            max_open_outputs: self.max_open_outputs,
            run: Arc::clone(&self.run),
        };
        let mut store = Store::new(self.plugin.pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        let deadline = self.call_timeout.map(|t| Instant::now() + t);
        let cancel = self.cancel.clone();
        let mut cancel_seen: Option<Instant> = None;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            let now = Instant::now();
            if deadline.is_some_and(|at| now >= at) {
                return Err(wasmtime::Error::new(Stopped::Deadline));
            }
            if cancel.is_cancelled() && now >= *cancel_seen.get_or_insert(now) + CANCEL_GRACE {
                return Err(wasmtime::Error::new(Stopped::CancelIgnored));
            }
            Ok(UpdateDeadline::Continue(1))
        });
        let _ticker = Ticker::start(self.plugin.pre.engine(), deadline, &self.cancel);
        let bindings = self.plugin.pre.instantiate(&mut store).map_err(|e| {
            CallError::Host(format!(
                "cannot instantiate plugin {}: {}",
                self.plugin.path.display(),
                one_line(&e)
            ))
        })?;
        let result = f(&bindings, &mut store);
        let shown = self.plugin.path.display();
        let past_deadline = deadline.is_some_and(|at| Instant::now() >= at);
        let deadline_hit = match &result {
            Err(e) => e.downcast_ref::<Stopped>() == Some(&Stopped::Deadline) || past_deadline,
            // Blocked in an import until the grace period cancelled it.
            Ok(Err(_)) => past_deadline,
            Ok(Ok(_)) => false,
        };
        if deadline_hit {
            let limit = human_duration(self.call_timeout.unwrap_or_default());
            return Err(CallError::Limit(format!(
                "plugin {shown} stopped in {export}: it ran longer than the call time limit of {limit} (--call-timeout)"
            )));
        }
        match result {
            Ok(Ok(summary)) => Ok(summary),
            Ok(Err(e)) => Err(CallError::Pull(e)),
            Err(ref e) if e.downcast_ref::<Stopped>() == Some(&Stopped::CancelIgnored) => {
                self.run.events.log(
                    LogLevel::Warn,
                    &format!(
                        "plugin {shown} kept running {} after the cancellation; stopped",
                        human_duration(CANCEL_GRACE)
                    ),
                );
                Err(CallError::Pull(PullError::Cancelled))
            }
            // wasmtime wraps an import's error in a backtrace: look inside.
            Err(ref e) if let Some(limit) = e.downcast_ref::<crate::bounds::LimitExceeded>() => {
                Err(CallError::Limit(format!(
                    "plugin {shown} stopped in {export}: {limit}"
                )))
            }
            Err(_) if store.data().limits.memory_hit => Err(CallError::Limit(format!(
                "plugin {shown} stopped in {export}: it needed more than the memory limit of {} (--memory-limit)",
                units::human_bytes(self.memory_limit as u64)
            ))),
            Err(e) => Err(CallError::Crashed(format!(
                "plugin {shown} crashed in {export}: {}",
                trap_text(&e)
            ))),
        }
    }
}

/// `90s` → `1m30s`-style text for a limit.
fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// Why the epoch callback stopped the plugin's code.
#[derive(Debug, PartialEq, Eq)]
enum Stopped {
    /// The call deadline passed.
    Deadline,
    /// The plugin ran [`CANCEL_GRACE`] past a cancellation.
    CancelIgnored,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stopped::Deadline => "the call time limit was reached",
            Stopped::CancelIgnored => "the plugin did not stop after the cancellation",
        })
    }
}

impl std::error::Error for Stopped {}

/// Advances the engine's epoch while a call runs, so the store's deadline
/// callback gets to look at the clock and the cancellation. If the call is
/// still running [`DEADLINE_GRACE`] after the deadline (blocked in a host
/// import, where epochs are not checked), it cancels the session so that the
/// import returns. Stopped when dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: &Engine, deadline: Option<Instant>, cancel: &Cancel) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.clone();
        let cancel = cancel.clone();
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("host-deadline".into())
            .spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    std::thread::park_timeout(EPOCH_TICK);
                    engine.increment_epoch();
                    let overdue = deadline.is_some_and(|at| Instant::now() >= at + DEADLINE_GRACE);
                    if overdue && !cancel.is_cancelled() {
                        cancel.cancel();
                    }
                }
            })
            .ok();
        Ticker { stop, thread }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// The store's resource limiter: caps linear memory (remembering when the cap
/// was hit, to name it in the error) and table sizes.
pub(crate) struct Limits {
    memory: usize,
    memory_hit: bool,
}

impl wasmtime::ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            self.memory_hit = true;
            return Err(wasmtime::Error::msg(format!(
                "memory limit of {} bytes reached",
                self.memory
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Reads and compiles the component at `path` on an engine set up for
/// this host (epoch interruption for the call deadline). Errors are one line
/// naming the path: missing or unreadable file, not a component.
/// Reads and compiles (or loads from `cache_dir`, see [`compile_cache`]) the
/// component at `path`; errors are one line naming the path.
pub(crate) fn compile(
    path: &Path,
    cache_dir: Option<&Path>,
) -> Result<(Engine, wasmtime::component::Component, CacheOutcome), String> {
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
    let mut config = wasmtime::Config::new();
    // The call deadline: compiled code checks the epoch at loop headers
    // and function entries, so even `loop {}` is stopped.
    config.epoch_interruption(true);
    let engine = Engine::new(&config)
        .map_err(|e| format!("cannot set up the WebAssembly engine: {}", one_line(&e)))?;
    let compiled = match cache_dir {
        Some(dir) => compile_cache::load_or_compile(&engine, &bytes, dir),
        None => {
            wasmtime::component::Component::new(&engine, &bytes).map(|c| (c, CacheOutcome::Off))
        }
    };
    let (component, cache) = compiled
        .map_err(|e| format!("plugin {shown} is not a valid component: {}", one_line(&e)))?;
    Ok((engine, component, cache))
}

/// Checks, before linking, that the component is a packages-mirror plugin of
/// the version this host speaks. Returns the rest of a one-line message.
pub(crate) fn check_world(
    engine: &Engine,
    component: &wasmtime::component::Component,
) -> Result<(), String> {
    let ty = component.component_type();
    let compatible = |version: &str| {
        let ours = WIT_VERSION
            .rsplit_once('.')
            .map_or(WIT_VERSION, |(mm, _)| mm);
        version
            .strip_prefix(ours)
            .is_some_and(|rest| rest.starts_with('.'))
    };
    for (name, _) in ty.imports(engine) {
        let Some(rest) = name
            .strip_prefix(WIT_PACKAGE)
            .and_then(|r| r.strip_prefix('/'))
        else {
            continue;
        };
        let version = rest.split_once('@').map_or("", |(_, v)| v);
        if !compatible(version) {
            let version = if version.is_empty() {
                "no version"
            } else {
                version
            };
            return Err(format!(
                "was built for {WIT_PACKAGE}@{version}, but this host implements {WIT_PACKAGE}@{WIT_VERSION}"
            ));
        }
    }
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
    let missing: Vec<&str> = EXPORTS
        .into_iter()
        .filter(|e| !exports.iter().any(|n| n == e))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "does not export the world {WIT_PACKAGE}@{WIT_VERSION} (missing {})",
            missing.join(", ")
        ));
    }
    Ok(())
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

/// A trap in words: the trap code when there is one, else the first line of
/// the error.
fn trap_text(e: &wasmtime::Error) -> String {
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
