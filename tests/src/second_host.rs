//! The second host: `tests/second-host/host.py`, a Python program on the
//! `wasmtime` package from PyPI that implements the WIT imports itself and
//! runs the same `plugin.wasm`. `tests/setup.sh` puts its interpreter in
//! `<target>/second-host-venv`; `PACKAGES_MIRROR_SECOND_HOST_PYTHON` names
//! another interpreter that has `wasmtime` installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use crate::artifacts::{target_dir, workspace_root};
use crate::process::{self, Captured};
use crate::pull::PULL_TIMEOUT;

/// Env var naming the Python interpreter explicitly.
pub const PYTHON_ENV: &str = "PACKAGES_MIRROR_SECOND_HOST_PYTHON";

/// The second host's script in the repository.
pub fn script() -> PathBuf {
    workspace_root().join("tests/second-host/host.py")
}

/// The interpreter of the virtualenv `tests/setup.sh` creates.
pub fn python_path() -> PathBuf {
    match std::env::var_os(PYTHON_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => target_dir().join("second-host-venv/bin/python"),
    }
}

/// The interpreter, after checking it can import `wasmtime`; otherwise an
/// error that says how to get it.
pub fn locate_python() -> Result<PathBuf> {
    let python = python_path();
    if !python.is_file() {
        bail!(
            "the second host's Python environment is missing: {} does not exist.\n\
             Run `bash tests/setup.sh` (with the same CARGO_TARGET_DIR) to create it, \
             or set {PYTHON_ENV} to a Python that has wasmtime installed.",
            python.display()
        );
    }
    let mut cmd = process::command(&python);
    cmd.args(["-c", "import wasmtime.component"]);
    let out = process::run(&mut cmd, std::time::Duration::from_secs(60))?;
    if !out.success() {
        bail!(
            "{} cannot import wasmtime.component; run `bash tests/setup.sh` again.\n{}",
            python.display(),
            out.transcript()
        );
    }
    Ok(python)
}

/// `python host.py <plugin> --source <source> <extra...> <bundle>`.
pub fn pull(
    python: &Path,
    plugin: &Path,
    source: &str,
    bundle: &Path,
    extra: &[&str],
) -> Result<Captured> {
    let mut cmd: Command = process::command(python);
    cmd.arg(script())
        .arg(plugin)
        .arg("--source")
        .arg(source)
        .args(extra)
        .arg(bundle);
    process::run(&mut cmd, PULL_TIMEOUT)
}
