//! Running the real `host run <plugin.wasm> pull ...`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use crate::artifacts::Artifacts;
use crate::process::{self, Captured};

/// Upper bound for one pull of the fixture (it takes seconds).
pub const PULL_TIMEOUT: Duration = Duration::from_secs(300);

/// `host run <plugin> pull --insecure --source <source> <extra...> <bundle>`,
/// with proxy variables removed (the registry is on loopback).
pub fn pull_command(artifacts: &Artifacts, source: &str, bundle: &Path, extra: &[&str]) -> Command {
    let mut args = vec!["--insecure"];
    args.extend_from_slice(extra);
    https_pull_command(artifacts, source, bundle, &args)
}

/// `host run <plugin> pull --source <source> <extra...> <bundle>`: HTTPS,
/// proxy variables removed.
pub fn https_pull_command(
    artifacts: &Artifacts,
    source: &str,
    bundle: &Path,
    extra: &[&str],
) -> Command {
    let mut cmd = process::command(&artifacts.host);
    cmd.arg("run")
        .arg(&artifacts.plugin)
        .arg("pull")
        .args(extra)
        .arg("--source")
        .arg(source)
        .arg(bundle);
    cmd
}

/// Run a pull to completion, capturing its output.
pub fn pull(
    artifacts: &Artifacts,
    source: &str,
    bundle: &Path,
    extra: &[&str],
) -> Result<Captured> {
    process::run(
        &mut pull_command(artifacts, source, bundle, extra),
        PULL_TIMEOUT,
    )
}
