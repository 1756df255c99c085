//! The work directory where layouts are built before packing.

use crate::error::{FsContext, Result};
use crate::ports::Host;

/// Inside the bundle directory so the final rename never crosses
/// filesystems, and named `.tmp` so the host can sweep it after a crash.
pub const WORK_DIR: &str = ".packages-work.tmp";

/// Runs `work` in a fresh work directory and removes it afterwards, whether
/// `work` succeeded or not; the first error wins.
pub fn scoped<T>(host: &Host, work: impl FnOnce() -> Result<T>) -> Result<T> {
    host.fs.remove(WORK_DIR).ctx(WORK_DIR)?;
    let outcome = work();
    let cleanup = host.fs.remove(WORK_DIR).ctx(WORK_DIR);
    let value = outcome?;
    cleanup?;
    Ok(value)
}
