//! Embedding the host: load a plugin, pass options, receive progress events
//! through an [`EventSink`], get the summary.
//!
//! ```text
//! cargo run --release -p host --example embed -- \
//!     <plugin.wasm> <host[:port]/path> <bundle-dir> [--insecure] [--dry-run]
//! ```
//!
//! The e2e test `e2e_output::embed_example_pulls_with_its_own_sink` runs it
//! against a seeded local registry.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use host::registry::{RegistryConfig, Source};
use host::report::Report;
use host::{EventSink, HostConfig, LogLevel, Plugin, Progress, PullOptions, Session, Transfer};

/// Prints progress events and warnings, counts downloaded bytes.
#[derive(Default)]
struct MySink {
    bytes: AtomicU64,
}

impl EventSink for MySink {
    fn log(&self, level: LogLevel, message: &str) {
        if level <= LogLevel::Warn {
            eprintln!("[embed] {}: {message}", level.label());
        }
    }

    fn progress(&self, event: &Progress) {
        match event {
            Progress::PackageStarted { name, index, total } => {
                eprintln!("[embed] package {index}/{total}: {name}");
            }
            Progress::ArchiveWritten { name, bytes } => {
                eprintln!("[embed] wrote {name} ({bytes} bytes)");
            }
            Progress::Phase { .. } | Progress::BlobsPlanned { .. } => {}
        }
    }

    fn transfer(&self, event: Transfer) {
        if let Transfer::Received(n) = event {
            self.bytes.fetch_add(n, Ordering::Relaxed);
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("embed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| a.starts_with("--"))
        .collect();
    let [plugin, source, bundle] = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .collect::<Vec<_>>()[..]
    else {
        return Err(
            "usage: embed <plugin.wasm> <host[:port]/path> <bundle-dir> [--insecure] [--dry-run]"
                .into(),
        );
    };
    let dry_run = flags.contains(&"--dry-run");

    let plugin = Plugin::load(plugin.as_ref())?;
    let source = Source::parse(source)?;
    let mut registry = RegistryConfig::new(source.clone());
    registry.insecure = flags.contains(&"--insecure");
    let bundle_dir = PathBuf::from(bundle);
    if !dry_run {
        std::fs::create_dir_all(&bundle_dir).map_err(|e| format!("{bundle}: {e}"))?;
    }
    let sink = Arc::new(MySink::default());
    let mut config = HostConfig::new(registry, bundle_dir.clone());
    config.events = sink.clone();
    let session = Session::new(plugin, config)?;

    let options = PullOptions {
        source_root: source.display(),
        include_packages: vec![],
        exclude_packages: vec![],
        only_extra_images: false,
        skip_vex_images: false,
        bundle_chunk_size: 0,
        access_timeout_ms: 0,
        dry_run,
        proxy_registry: false,
    };
    let packages = session.pull_packages(&options).map_err(|e| e.to_string())?;
    let versions = session
        .pull_package_versions(&options)
        .map_err(|e| e.to_string())?;

    // The same report the CLI prints, here as a table of 100 columns.
    let report = Report::new(
        &[
            ("pull-packages", &packages),
            ("pull-package-versions", &versions),
        ],
        &source.display(),
        &bundle_dir,
    );
    print!("{}", host::report::render_text(&report, false, 100));
    println!(
        "[embed] {} bytes downloaded, {} package(s)",
        sink.bytes.load(Ordering::Relaxed),
        report.calls[0].totals.packages
    );
    Ok(())
}
