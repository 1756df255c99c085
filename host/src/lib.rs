//! A wasmtime host for the `deckhouse:packages-mirror` plugin.
//!
//! The host moves bytes and the plugin decides: this crate knows nothing about
//! packages, channels or versions. It offers the plugin generic primitives
//! (registry requests scoped to one source, a filesystem confined to the
//! bundle directory, log/progress/cancellation) and runs its two exports.
//!
//! Embedding in short: [`Plugin::load`] a component, fill a [`HostConfig`]
//! (set [`HostConfig::events`] to your own [`EventSink`] to receive log lines,
//! progress events and transfer byte counts), open a [`Session`], call
//! [`Session::pull_packages`] / [`Session::pull_package_versions`], and turn
//! the [`PullSummary`]s into a [`report::Report`] (a table with
//! [`report::render_text`], or JSON with serde). `host/examples/embed.rs` is
//! a complete program; [`inspect::inspect`] describes a component without
//! running it.
//!
//! ```no_run
//! use host::{HostConfig, Plugin, PullOptions, Session};
//! use host::registry::{RegistryConfig, Source};
//!
//! let plugin = Plugin::load("plugin.wasm".as_ref())?;
//! let source = Source::parse("registry.example.com/deckhouse/ee")?;
//! let config = HostConfig::new(RegistryConfig::new(source.clone()), "bundle".into());
//! let session = Session::new(plugin, config)?;
//! let options = PullOptions {
//!     source_root: source.display(),
//!     include_packages: vec![],
//!     exclude_packages: vec![],
//!     only_extra_images: false,
//!     skip_vex_images: false,
//!     bundle_chunk_size: 0,
//!     access_timeout_ms: 0,
//!     dry_run: true,
//!     proxy_registry: false,
//! };
//! let summary = session.pull_packages(&options).map_err(|e| e.to_string())?;
//! println!("{} packages", summary.packages.len());
//! # Ok::<(), String>(())
//! ```

mod bindings;
pub mod bounds;
pub mod cancel;
pub mod compile_cache;
pub mod events;
pub mod fs;
mod imports;
pub mod inspect;
pub mod layer;
pub mod registry;
pub mod report;
mod session;
pub mod temps;
pub mod units;

#[cfg(test)]
mod testutil;

pub use bindings::deckhouse::packages_mirror::types::{
    Archive, PackageSummary, PullError, PullOptions, PullSummary,
};
pub use cancel::Cancel;
pub use compile_cache::CacheOutcome;
pub use events::{EventSink, LogLevel, Progress, StderrSink, Transfer};
pub use session::{
    CallError, DEFAULT_CALL_TIMEOUT, DEFAULT_MAX_OPEN_OUTPUTS, DEFAULT_MEMORY_LIMIT, HostConfig,
    Plugin, Session, WIT_PACKAGE, WIT_VERSION, describe_pull_error,
};
