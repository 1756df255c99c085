//! The benchmark: generates a registry (8 packages × 3 versions, layers of
//! 1–64 MiB, shared layers, about 1.2 GiB of unique blobs), then in one run
//! measures our pull, the same job with skopeo + GNU tar, and the raw-copy
//! limit, and prints one table with the goals of issue 6.
//!
//! Usage: `bench [--packages N] [--versions N] [--concurrency N]
//! [--shrink N] [--keep]` — run through `bash tests/bench.sh`, which builds
//! first. Scratch space: `<target>/bench` (about 4 GiB at the peak).

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tests::artifacts;
use tests::bench::content::{self, Content, Shape};
use tests::bench::jobs::{self, RunResult, StartTimes};
use tests::bench::measure;
use tests::bench::raw;
use tests::oci::Client;
use tests::registry::Registry;

const MB: f64 = 1e6;

struct Args {
    shape: Shape,
    concurrency: Option<usize>,
    keep: bool,
}

fn usage() -> &'static str {
    "usage: bench [--packages N] [--versions N] [--concurrency N] [--shrink N] [--keep]\n\n\
     Generates a registry on 127.0.0.1, then measures `host run plugin.wasm pull`,\n\
     the same job with skopeo copy + GNU tar, and the raw-copy limit, and prints\n\
     one table. --shrink N divides every layer size by N (a quick smoke run);\n\
     --keep leaves the outputs under <target>/bench. Build first: bash tests/build.sh"
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        shape: Shape {
            packages: 8,
            versions: 3,
            shrink: 1,
        },
        concurrency: None,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut number = |name: &str| -> Result<usize> {
            let v = it.next().with_context(|| format!("{name} needs a value"))?;
            match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => bail!("{name}: {v:?} is not a positive number"),
            }
        };
        match a.as_str() {
            "--packages" => args.shape.packages = number("--packages")?,
            "--versions" => args.shape.versions = number("--versions")?,
            "--shrink" => args.shape.shrink = number("--shrink")?,
            "--concurrency" => args.concurrency = Some(number("--concurrency")?),
            "--keep" => args.keep = true,
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{}", usage()),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let result = match argv.get(1).map(String::as_str) {
        Some("--raw-fetch") => raw_fetch(&argv[2..]),
        Some("--generate") => generate(&argv[2..]),
        _ => parse_args().and_then(run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The child of the raw run: `--raw-fetch BASE_URL LIST DIR CONCURRENCY`.
fn raw_fetch(args: &[String]) -> Result<()> {
    let [base, list, dir, concurrency] = args else {
        bail!("--raw-fetch BASE_URL LIST DIR CONCURRENCY");
    };
    let blobs = raw::read_list(Path::new(list))?;
    raw::fetch_all(base, &blobs, Path::new(dir), concurrency.parse()?)
}

/// The child that generates and pushes the content:
/// `--generate BASE_URL SHAPE_JSON OUT_JSON`. A child of its own because
/// the layers it builds in memory would otherwise raise this process's peak
/// RSS, which Linux hands down to every child it starts (`ru_maxrss` counts
/// the memory of the process that called exec).
fn generate(args: &[String]) -> Result<()> {
    let [base, shape, out] = args else {
        bail!("--generate BASE_URL SHAPE_JSON OUT_JSON");
    };
    let shape: Shape = serde_json::from_str(shape)?;
    let content = content::generate_and_push(&Client::new(base), shape)?;
    std::fs::write(out, serde_json::to_vec(&content)?)?;
    Ok(())
}

fn run(args: Args) -> Result<()> {
    let art = artifacts::locate()?;
    let scratch = artifacts::target_dir().join("bench");
    std::fs::create_dir_all(&scratch)?;
    let log = scratch.join("bench.log");
    std::fs::write(&log, "")?;
    let concurrency = match args.concurrency {
        Some(n) => n,
        None => jobs::default_concurrency(&art)?,
    };

    let registry = Registry::start()?;
    let started = Instant::now();
    let content_file = scratch.join("content.json");
    let mut cmd = tests::process::command(std::env::current_exe()?);
    cmd.arg("--generate")
        .arg(registry.base_url())
        .arg(serde_json::to_string(&args.shape)?)
        .arg(&content_file);
    measure::run(&mut cmd, &log)
        .with_context(|| format!("seeding the registry; its log:\n{}", registry.log()))?;
    let content: Content = serde_json::from_slice(&std::fs::read(&content_file)?)?;
    let root = format!("{}/{}", registry.host(), tests::fixture::ROOT_PATH);
    eprintln!(
        "bench: generated and pushed {} images, {} unique blobs, {:.0} MB, in {:.1} s",
        content.image_count(),
        content.blobs.len(),
        content.unique_bytes() as f64 / MB,
        started.elapsed().as_secs_f64()
    );
    let list = scratch.join("blobs.txt");
    raw::write_list(&list, &content.blobs)?;

    eprintln!("bench: start time (cold and warm compile cache)");
    let start = jobs::start_times(&art, &root, &content.package_names[0], &scratch, &log)?;

    // Each run starts from a flushed disk and ends with its output removed.
    let mut results = Vec::new();
    let out = |name: &str| jobs::fresh_dir(scratch.join(name));
    eprintln!("bench: raw copy, concurrency {concurrency}");
    measure::sync_filesystem(&scratch);
    let dir = out("raw")?;
    results.push(jobs::raw(
        &registry.base_url(),
        &list,
        &dir,
        concurrency,
        &log,
    )?);
    finish(&dir, args.keep)?;

    eprintln!("bench: packages-mirror pull");
    measure::sync_filesystem(&scratch);
    let dir = out("ours")?;
    results.push(jobs::ours(&art, &root, &dir, args.concurrency, &log)?);
    finish(&dir, args.keep)?;

    eprintln!("bench: skopeo copy + tar");
    measure::sync_filesystem(&scratch);
    let dir = out("skopeo")?;
    results.push(jobs::skopeo(&root, &content, &dir, &log)?);
    finish(&dir, args.keep)?;

    print!(
        "{}",
        report(&content, &results, &start, concurrency, args.shape)
    );
    Ok(())
}

fn finish(dir: &Path, keep: bool) -> Result<()> {
    if !keep {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(())
}

fn report(
    content: &Content,
    results: &[RunResult],
    start: &StartTimes,
    concurrency: usize,
    shape: Shape,
) -> String {
    let unique = content.unique_bytes() as f64;
    let mut t = String::new();
    t += &format!(
        "\n{} packages × {} versions, {} images, {} unique blobs, {:.0} MB unique; concurrency {concurrency}\n\n",
        shape.packages,
        shape.versions,
        content.image_count(),
        content.blobs.len(),
        unique / MB
    );
    t += "| run | wall s | MB/s | peak RSS MB | written MB (× unique) | to disk MB (× unique) | peak scratch MB |\n";
    t += "|---|---:|---:|---:|---:|---:|---:|\n";
    for r in results {
        let wall = r.usage.wall.as_secs_f64();
        t += &format!(
            "| {} | {:.2} | {:.0} | {:.1} | {:.0} ({:.2}×) | {:.0} ({:.2}×) | {} |\n",
            r.name,
            wall,
            unique / MB / wall,
            r.usage.max_rss as f64 / MB,
            r.usage.written as f64 / MB,
            r.usage.written as f64 / unique,
            r.usage.to_disk() as f64 / MB,
            r.usage.to_disk() as f64 / unique,
            r.peak_scratch
                .map_or("–".into(), |p| format!("{:.0}", p as f64 / MB)),
        );
    }
    t += &format!(
        "| start: plugin load (cold / warm compile cache) | {:.3} / {:.3} | | | | | |\n",
        start.cold_load.as_secs_f64(),
        start.warm_load.as_secs_f64()
    );
    t += &format!(
        "| start: whole dry-run process (cold / warm) | {:.3} / {:.3} | | | | | |\n\n",
        start.cold_process.as_secs_f64(),
        start.warm_process.as_secs_f64()
    );

    let [raw, ours, skopeo] = results else {
        return t;
    };
    let secs = |r: &RunResult| r.usage.wall.as_secs_f64();
    let vs_skopeo = secs(skopeo) / secs(ours);
    let vs_raw = secs(raw) / secs(ours);
    let largest_package = content.package_bytes.values().copied().max().unwrap_or(0);
    let mut goal = |text: String, ok: bool| {
        t += &format!("{} {text}\n", if ok { "PASS" } else { "FAIL" });
    };
    goal(
        format!("throughput: {vs_skopeo:.1}× skopeo + tar (goal ≥ 3×)"),
        vs_skopeo >= 3.0,
    );
    goal(
        format!(
            "throughput: {:.0} % of the raw limit (goal ≥ 60 %)",
            vs_raw * 100.0
        ),
        vs_raw >= 0.6,
    );
    goal(
        format!(
            "memory: host peak RSS {:.1} MB with layers up to 64 MiB (goal < 150 MB)",
            ours.usage.max_rss as f64 / MB
        ),
        (ours.usage.max_rss as f64) < 150.0 * MB,
    );
    goal(
        format!(
            "start: plugin load {:.0} ms with a warm compile cache (goal < 300 ms; cold {:.0} ms)",
            start.warm_load.as_secs_f64() * 1e3,
            start.cold_load.as_secs_f64() * 1e3
        ),
        start.warm_load.as_secs_f64() < 0.3,
    );
    goal(
        format!(
            "disk: wrote {:.2}× the unique blob bytes into files, {:.2}× reached the disk \
             (goal: each blob written once, ≤ 1.05×)",
            ours.usage.written as f64 / unique,
            ours.usage.to_disk() as f64 / unique
        ),
        (ours.usage.written as f64) <= unique * 1.05,
    );
    let peak = ours.peak_scratch.unwrap_or(0);
    goal(
        format!(
            "disk: peak work directory {:.0} MB (goal ≤ the largest package's layouts, {:.0} MB)",
            peak as f64 / MB,
            largest_package as f64 / MB
        ),
        // Allocation rounding and layout metadata.
        (peak as f64) <= largest_package as f64 * 1.02 + MB,
    );
    t
}
