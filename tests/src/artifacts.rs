//! Where the built host binary and plugin component are.
//!
//! `<target>/release/host` and `<target>/wasm32-wasip2/release/plugin.wasm`,
//! where `<target>` is `CARGO_TARGET_DIR` (relative to the workspace root when
//! relative) or `<workspace>/target`. `PACKAGES_MIRROR_HOST` and
//! `PACKAGES_MIRROR_PLUGIN` override each path.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// Env var naming the host binary explicitly.
pub const HOST_ENV: &str = "PACKAGES_MIRROR_HOST";
/// Env var naming the plugin component explicitly.
pub const PLUGIN_ENV: &str = "PACKAGES_MIRROR_PLUGIN";

/// The built artifacts.
#[derive(Clone, Debug)]
pub struct Artifacts {
    pub host: PathBuf,
    pub plugin: PathBuf,
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

/// The cargo target directory the artifacts are built into.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// The host binary's expected path.
pub fn host_path() -> PathBuf {
    match std::env::var_os(HOST_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => target_dir().join("release").join("host"),
    }
}

/// The plugin component's expected path.
pub fn plugin_path() -> PathBuf {
    match std::env::var_os(PLUGIN_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => target_dir()
            .join("wasm32-wasip2")
            .join("release")
            .join("plugin.wasm"),
    }
}

/// A component built by tests/build.sh into `<target>/wasm32-wasip2/release`
/// (`hostile_plugin_v0_2.wasm`, …), or an error saying how to build it.
pub fn wasm_component(name: &str) -> Result<PathBuf> {
    let path = target_dir()
        .join("wasm32-wasip2")
        .join("release")
        .join(name);
    if !path.is_file() {
        bail!("{} is missing: run `bash tests/build.sh`", path.display());
    }
    Ok(path)
}

/// Only the host binary (for CLI error cases that need no plugin).
pub fn locate_host() -> Result<PathBuf> {
    let host = host_path();
    if !host.is_file() {
        bail!(
            "the host binary is missing: {} does not exist.\n\
             Build it first: `bash tests/build.sh` (or `cargo build --release --workspace`), \
             or set {HOST_ENV} to its path.",
            host.display()
        );
    }
    Ok(host)
}

/// Both artifacts, or an error saying how to build whichever is missing.
pub fn locate() -> Result<Artifacts> {
    let host = host_path();
    let plugin = plugin_path();
    let mut missing = Vec::new();
    if !host.is_file() {
        missing.push(format!(
            "  host binary {}: `cargo build --release --workspace` (or set {HOST_ENV})",
            host.display()
        ));
    }
    if !plugin.is_file() {
        missing.push(format!(
            "  plugin component {}: `cargo build --release --target wasm32-wasip2 -p plugin` (or set {PLUGIN_ENV})",
            plugin.display()
        ));
    }
    if !missing.is_empty() {
        bail!(
            "build artifacts are missing:\n{}\nRun `bash tests/build.sh` to build both.",
            missing.join("\n")
        );
    }
    Ok(Artifacts { host, plugin })
}
