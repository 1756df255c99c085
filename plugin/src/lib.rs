//! The packages part of `d8 mirror pull`, as a WebAssembly component.
//!
//! Every decision lives here (which packages, which versions, which images,
//! where they go, how they are packed); the host only moves bytes. The core
//! modules are plain Rust over the traits in [`ports`], so they run natively
//! under `cargo test`; [`glue`] binds them to the WIT world inside the
//! component.

pub mod archive;
pub mod constraint;
pub mod discovery;
pub mod error;
pub mod filter;
pub mod layout;
pub mod manifest;
pub mod metadata;
pub mod names;
pub mod options;
pub mod packages;
pub mod ports;
pub mod probe;
pub mod puller;
pub mod versions;
pub mod workdir;

#[cfg(target_arch = "wasm32")]
mod glue;

#[cfg(test)]
mod flow_tests;
#[cfg(test)]
mod testkit;

use error::Result;
use options::{Options, Summary};
use ports::Host;

/// The `pull-packages` export.
pub fn pull_packages(host: &Host, opts: &Options) -> Result<Summary> {
    let mut summary = packages::pull_packages(host, opts)?;
    summary.warnings = host.take_warnings();
    Ok(summary)
}

/// The `pull-package-versions` export.
pub fn pull_package_versions(host: &Host, opts: &Options) -> Result<Summary> {
    let mut summary = versions::pull_package_versions(host, opts)?;
    summary.warnings = host.take_warnings();
    Ok(summary)
}
