//! Measuring a child process: wall time, peak RSS (`wait4`), the bytes it
//! wrote and the part of them that never reached the disk (`/proc/<pid>/io`
//! read while it is a zombie: `write_bytes` counts page-cache pages when
//! they are dirtied, `cancelled_write_bytes` the dirty pages it deleted
//! before write-back); and the peak size of a directory while it runs.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What one child process cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub wall: Duration,
    /// Peak resident set, bytes.
    pub max_rss: u64,
    /// Bytes written (page-cache pages dirtied).
    pub written: u64,
    /// Of those, bytes deleted before they were written back to the disk.
    pub cancelled: u64,
}

impl Usage {
    /// Several processes run one after another: times and writes add up,
    /// the peak RSS is the largest.
    pub fn then(self, other: Usage) -> Usage {
        Usage {
            wall: self.wall + other.wall,
            max_rss: self.max_rss.max(other.max_rss),
            written: self.written + other.written,
            cancelled: self.cancelled + other.cancelled,
        }
    }

    /// Bytes that went (or will go) to the disk.
    pub fn to_disk(&self) -> u64 {
        self.written.saturating_sub(self.cancelled)
    }
}

/// Runs `cmd` to completion with stdout and stderr appended to `log`; fails
/// (with the log's tail) unless it exits 0.
pub fn run(cmd: &mut Command, log: &Path) -> Result<Usage> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let started = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {}", crate::process::describe(cmd)))?;
    let (status, usage) = wait4(child.id())?;
    let wall = started.elapsed();
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        bail!(
            "{} failed ({status}); last lines of {}:\n{}",
            crate::process::describe(cmd),
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(Usage { wall, ..usage })
}

/// Waits for `pid` to exit, reads its I/O counters while it is a zombie,
/// then reaps it for its status and peak RSS.
fn wait4(pid: u32) -> Result<(ExitStatus, Usage)> {
    use std::os::unix::process::ExitStatusExt;
    let id = libc::id_t::from(pid);
    let pid = libc::pid_t::try_from(pid)?;
    loop {
        // SAFETY: siginfo_t is plain data that waitid fills.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer; pid is our own child; WNOWAIT leaves it
        // waitable.
        let r = unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r == 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("waitid");
        }
    }
    let io = proc_io(&format!("/proc/{pid}/io"));
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals; pid is our own child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("wait4");
        }
    }
    Ok((
        ExitStatus::from_raw(status),
        Usage {
            wall: Duration::ZERO,
            // Linux reports kilobytes.
            max_rss: u64::try_from(ru.ru_maxrss).unwrap_or(0) * 1024,
            written: io.0,
            cancelled: io.1,
        },
    ))
}

/// `write_bytes` and `cancelled_write_bytes` of a `/proc/…/io` file (zeros
/// when it cannot be read).
pub fn proc_io(path: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("write_bytes:"), field("cancelled_write_bytes:"))
}

/// Samples the allocated size of a directory tree every 50 ms until
/// stopped, keeping the peak.
pub struct PeakSize {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl PeakSize {
    pub fn start(dir: PathBuf) -> PeakSize {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(tree_size(&dir));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        });
        PeakSize { stop, thread }
    }

    /// The largest size seen, bytes.
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

/// Allocated bytes below `dir` (0 when it does not exist); entries that
/// vanish while it is walked are skipped.
pub fn tree_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        total += meta.blocks() * 512;
        if meta.is_dir() {
            total += tree_size(&entry.path());
        }
    }
    total
}

/// Flushes the filesystem holding `path`, so one run's write-back does not
/// land in the next run's time.
pub fn sync_filesystem(path: &Path) {
    if let Ok(f) = std::fs::File::open(path) {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor.
        unsafe { libc::syncfs(f.as_raw_fd()) };
    }
}
