//! The demo: a throwaway registry on 127.0.0.1 seeded with the test fixture,
//! then the real `host run <plugin.wasm> pull` into a bundle directory, then
//! the bundle listing.
//!
//! Usage: `demo [BUNDLE_DIR]` (default `./demo-bundle`; removed first).
//! Artifacts come from the workspace target dir (`CARGO_TARGET_DIR`
//! honoured); `PACKAGES_MIRROR_HOST` / `PACKAGES_MIRROR_PLUGIN` override.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tests::artifacts;
use tests::bundle;
use tests::fixture::Fixture;
use tests::oci::Client;
use tests::process;
use tests::pull::pull_command;
use tests::registry::Registry;
use tests::slowproxy::SlowProxy;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Only remove a directory that looks like a bundle we wrote (or is empty),
/// never an arbitrary directory someone typed by mistake.
fn remove_old_bundle(dir: &Path) -> Result<()> {
    let md = match fs::symlink_metadata(dir) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("inspecting {}", dir.display())),
    };
    if !md.is_dir() {
        bail!(
            "{} exists and is not a directory; choose another bundle path",
            dir.display()
        );
    }
    for name in bundle::dir_names(dir)? {
        let ours = name.starts_with("package-")
            && (name.ends_with(".tar") || name.ends_with(".chunk") || name.ends_with(".tmp"))
            || name.ends_with(".tmp");
        if !ours {
            bail!(
                "{} holds {name:?}, which is not part of a bundle; refusing to remove it \
                 (choose another bundle path)",
                dir.display()
            );
        }
    }
    fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}

const USAGE: &str = "usage: demo [--serve] [BUNDLE_DIR]\n\n\
     Starts a throwaway docker-registry on 127.0.0.1, seeds it with the test\n\
     package tree, runs `host run plugin.wasm pull` into BUNDLE_DIR (default\n\
     ./demo-bundle, removed first) and lists the bundle.\n\
     --serve keeps the registry running afterwards, for your own commands,\n\
     until Enter is pressed.\n\
     DEMO_SLOW_MS=N slows every registry answer down by N ms per chunk.\n\
     Build the artifacts first: bash tests/build.sh";

fn run() -> Result<ExitCode> {
    let mut serve = false;
    let mut bundle_arg = None;
    for arg in std::env::args_os().skip(1) {
        match arg.to_str() {
            Some("-h" | "--help") => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            Some("--serve") => serve = true,
            Some(flag) if flag.starts_with('-') => bail!("unknown option {flag:?}\n{USAGE}"),
            _ if bundle_arg.is_none() => bundle_arg = Some(arg),
            _ => bail!("more than one bundle directory given\n{USAGE}"),
        }
    }
    let bundle_dir = PathBuf::from(bundle_arg.unwrap_or_else(|| "demo-bundle".into()));
    let bundle_dir = if bundle_dir.is_absolute() {
        bundle_dir
    } else {
        std::env::current_dir()?.join(bundle_dir)
    };
    let art = artifacts::locate()?;
    println!("host:   {}", art.host.display());
    println!("plugin: {}", art.plugin.display());
    remove_old_bundle(&bundle_dir)?;

    let registry = Registry::start()?;
    println!(
        "registry: docker-registry listening on {}",
        registry.base_url()
    );
    let fixture = Fixture::new(&registry.host());
    fixture
        .seed(&Client::new(&registry.base_url()))
        .with_context(|| format!("seeding the registry; its log:\n{}", registry.log()))?;
    println!(
        "seeded {} manifests under {} (packages: {})",
        fixture.pushes.len(),
        fixture.root,
        fixture.package_names.join(", ")
    );

    // DEMO_SLOW_MS=N: pull through a proxy that delays every chunk N ms, so
    // the progress display can be watched (and captured) mid-pull.
    let slow = std::env::var("DEMO_SLOW_MS")
        .ok()
        .and_then(|ms| ms.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(|ms| {
            let upstream = format!("127.0.0.1:{}", registry.port()).parse()?;
            SlowProxy::start(upstream, Duration::from_millis(ms))
        })
        .transpose()?;
    let source = match &slow {
        Some(proxy) => Fixture::new(&format!("127.0.0.1:{}", proxy.port())).root,
        None => fixture.root.clone(),
    };
    let mut cmd = pull_command(&art, &source, &bundle_dir, &[]);
    println!("\n$ {}\n", process::describe(&cmd));
    let status = cmd
        .status()
        .with_context(|| format!("running {}", art.host.display()))?;
    println!();
    if !status.success() {
        eprintln!("demo: the pull failed ({status})");
    }
    if bundle_dir.is_dir() {
        println!("bundle {}:", bundle_dir.display());
        print!("{}", bundle::listing(&bundle_dir)?);
    } else {
        println!(
            "no bundle directory was written at {}",
            bundle_dir.display()
        );
    }
    if serve {
        serve_until_enter(&art, &fixture.root)?;
    }
    drop(registry);
    println!("registry stopped");
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

/// Keeps the registry (owned by the caller) up for the user's own commands
/// until Enter, or end of input when stdin is not a terminal.
fn serve_until_enter(art: &artifacts::Artifacts, source: &str) -> Result<()> {
    println!(
        "\nThe registry stays up at {source} (plain HTTP, so pass --insecure). Try:\n\n  \
         {host} run {plugin} pull --insecure --source {source} --dry-run /tmp/try-bundle\n  \
         {host} run {plugin} pull --insecure --source {source} --output json \\\n      \
         --include-package 'console@~1.2' /tmp/try-bundle\n\n\
         Press Enter to stop it.",
        host = art.host.display(),
        plugin = art.plugin.display(),
    );
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("waiting for Enter")?;
    Ok(())
}
