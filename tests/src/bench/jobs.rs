//! The three runs of the benchmark, on the same registry and content:
//! our `host run plugin.wasm pull`, the same mirror job done with skopeo
//! and GNU tar, and the raw-copy limit.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::content::Content;
use super::measure::{self, PeakSize, Usage};
use crate::artifacts::Artifacts;
use crate::process;

/// One measured run.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub name: &'static str,
    pub usage: Usage,
    /// Peak size of the job's scratch space next to its archives (our work
    /// directory, skopeo's layouts); `None` when it has none.
    pub peak_scratch: Option<u64>,
    /// Total size of what it produced.
    pub output: u64,
}

/// `host run <plugin> pull --insecure --source <root> [--concurrency N] <dir>`.
pub fn ours(
    art: &Artifacts,
    root: &str,
    dir: &Path,
    concurrency: Option<usize>,
    log: &Path,
) -> Result<RunResult> {
    let n = concurrency.map(|n| n.to_string());
    let extra: Vec<&str> = match &n {
        Some(n) => vec!["--concurrency", n],
        None => vec![],
    };
    let mut cmd = crate::pull::pull_command(art, root, dir, &extra);
    let scratch = PeakSize::start(dir.join(".packages-work.tmp"));
    let usage = measure::run(&mut cmd, log);
    let peak = scratch.stop();
    Ok(RunResult {
        name: "packages-mirror pull",
        usage: usage?,
        peak_scratch: Some(peak),
        output: measure::tree_size(dir),
    })
}

/// The same job with skopeo: per package, `skopeo copy` of every image into
/// its OCI layout (`oci:<layout>:<tag>`), one image after another as a
/// script would, then GNU tar of the package's layouts, synced like our
/// archives, and the layouts removed; the release layouts of every package
/// go into `package-versions.tar` at the end.
pub fn skopeo(root: &str, content: &Content, dir: &Path, log: &Path) -> Result<RunResult> {
    let work = dir.join("work");
    std::fs::create_dir_all(&work)?;
    let scratch = PeakSize::start(work.clone());
    let result = skopeo_job(root, content, dir, &work, log);
    let peak = scratch.stop();
    let usage = result?;
    Ok(RunResult {
        name: "skopeo copy + tar",
        usage,
        peak_scratch: Some(peak),
        output: measure::tree_size(dir),
    })
}

fn skopeo_job(root: &str, content: &Content, dir: &Path, work: &Path, log: &Path) -> Result<Usage> {
    let mut total = Usage::default();
    let copy = |layout: &Path, repo: &str, tag: &str| -> Result<Usage> {
        let mut cmd = process::command("skopeo");
        cmd.args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{root}/{repo}:{tag}"))
            .arg(format!("oci:{}:{tag}", layout.display()));
        measure::run(&mut cmd, log)
    };
    for name in &content.package_names {
        for (repo, images) in &content.layouts[name] {
            let layout = work.join(repo);
            std::fs::create_dir_all(&layout)?;
            for image in images {
                total = total.then(copy(&layout, repo, &image.tag)?);
            }
        }
    }
    // Release layouts first, into package-versions.tar (like ours, it has
    // its own copies), then each package's archive.
    let versions: Vec<String> = content
        .package_names
        .iter()
        .map(|n| format!("packages/{n}/version"))
        .collect();
    total = total.then(tar(
        work,
        &dir.join("package-versions.tar"),
        &versions,
        log,
    )?);
    for name in &content.package_names {
        let archive = dir.join(format!("package-{name}.tar"));
        total = total.then(tar(work, &archive, &[format!("packages/{name}")], log)?);
        // The layouts go as soon as their archive is written, like ours;
        // whatever of them never reached the disk counts as cancelled.
        let started = std::time::Instant::now();
        let before = measure::proc_io("/proc/self/io").1;
        std::fs::remove_dir_all(work.join("packages").join(name))?;
        total.cancelled += measure::proc_io("/proc/self/io").1 - before;
        total.wall += started.elapsed();
    }
    Ok(total)
}

/// `tar -cf <archive> -C <base> <paths…>`, then the archive synced to disk.
fn tar(base: &Path, archive: &Path, paths: &[String], log: &Path) -> Result<Usage> {
    let mut cmd = process::command("tar");
    cmd.arg("-cf").arg(archive).arg("-C").arg(base).args(paths);
    let mut usage = measure::run(&mut cmd, log)?;
    let started = std::time::Instant::now();
    std::fs::File::open(archive)?.sync_all()?;
    usage.wall += started.elapsed();
    Ok(usage)
}

/// The raw limit: this binary again, as `--raw-fetch`.
pub fn raw(
    base_url: &str,
    list: &Path,
    dir: &Path,
    concurrency: usize,
    log: &Path,
) -> Result<RunResult> {
    let me = std::env::current_exe().context("locating the bench binary")?;
    let mut cmd = process::command(me);
    cmd.arg("--raw-fetch")
        .arg(base_url)
        .arg(list)
        .arg(dir)
        .arg(concurrency.to_string());
    let usage = measure::run(&mut cmd, log)?;
    Ok(RunResult {
        name: "raw copy (limit)",
        usage,
        peak_scratch: None,
        output: measure::tree_size(dir),
    })
}

/// Plugin load times from `host --log-level debug … --dry-run`: with an
/// empty compile cache (cold) and again (warm). Returns the load times the
/// host reports and the whole processes' wall times.
pub struct StartTimes {
    pub cold_load: Duration,
    pub warm_load: Duration,
    pub cold_process: Duration,
    pub warm_process: Duration,
}

pub fn start_times(
    art: &Artifacts,
    root: &str,
    package: &str,
    scratch: &Path,
    log: &Path,
) -> Result<StartTimes> {
    let cache = scratch.join("compile-cache");
    let _ = std::fs::remove_dir_all(&cache);
    let once = || -> Result<(Duration, Duration)> {
        let mut cmd = crate::pull::pull_command(
            art,
            root,
            &scratch.join("dry-run-bundle"),
            &["--dry-run", "--include-package", package],
        );
        cmd.arg("--log-level")
            .arg("debug")
            .env("PACKAGES_MIRROR_CACHE_DIR", &cache);
        let before = std::fs::metadata(log).map_or(0, |m| m.len()) as usize;
        let usage = measure::run(&mut cmd, log)?;
        let text = std::fs::read_to_string(log)?;
        Ok((load_time(&text[before..])?, usage.wall))
    };
    let (cold_load, cold_process) = once()?;
    let (warm_load, warm_process) = once()?;
    Ok(StartTimes {
        cold_load,
        warm_load,
        cold_process,
        warm_process,
    })
}

/// `debug: plugin loaded in N ms (…)` in a host's log.
fn load_time(log: &str) -> Result<Duration> {
    const NEEDLE: &str = "plugin loaded in ";
    let Some(at) = log.find(NEEDLE) else {
        bail!("the host did not log its plugin load time; log:\n{log}");
    };
    let ms: String = log[at + NEEDLE.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Ok(Duration::from_millis(ms.parse()?))
}

/// The host's default `--concurrency`, read from its help so the raw
/// baseline uses the same number without restating the rule.
pub fn default_concurrency(art: &Artifacts) -> Result<usize> {
    let out = Command::new(&art.host)
        .arg("run")
        .arg(&art.plugin)
        .args(["pull", "--help"])
        .output()?;
    let help = String::from_utf8_lossy(&out.stdout);
    let after = help
        .split("--concurrency")
        .nth(1)
        .context("the host's help has no --concurrency")?;
    let value = after
        .split("[default: ")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .context("the host's help shows no --concurrency default")?;
    Ok(value.trim().parse()?)
}

/// A fresh, empty directory.
pub fn fresh_dir(path: PathBuf) -> Result<PathBuf> {
    if path.exists() {
        std::fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    std::fs::create_dir_all(&path)?;
    Ok(path)
}
