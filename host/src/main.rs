//! `host run <plugin.wasm> pull …`: mirror Deckhouse packages with a plugin;
//! `host inspect`, `host completions`, `host man`.

mod cli;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use cli::progress::{CliSink, LogFormat};
use host::report::{Report, Status};

use host::registry::credentials::{self, CredError, Explicit};
use host::registry::{RegistryConfig, Source};
use host::units::{parse_chunk_size, parse_duration};
use host::{
    CacheOutcome, CallError, EventSink, HostConfig, LogLevel, Plugin, PullError, PullOptions,
    PullSummary, Session,
};

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_INTERRUPTED: u8 = 130;

#[derive(Parser, Debug)]
#[command(
    name = "host",
    version,
    about = "Runs a packages-mirror WebAssembly plugin: mirrors Deckhouse packages into a bundle directory"
)]
struct Cli {
    /// Log level: error, warn, info, debug or trace. Progress is info-level:
    /// warn or error hides it.
    #[arg(long, global = true, default_value = "info", value_name = "LEVEL")]
    log_level: LogLevel,

    /// Log line format on stderr: text, or json (one object per line with
    /// ts, level, msg and, for progress events, event and its fields).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    log_format: LogFormat,

    /// Only errors on stderr (no progress, no info or warn lines; warnings
    /// are still repeated in the summary).
    #[arg(long, short, global = true, conflicts_with = "log_level")]
    quiet: bool,

    /// Compile the plugin every time instead of keeping its compiled code in
    /// $PACKAGES_MIRROR_CACHE_DIR, $XDG_CACHE_HOME/packages-mirror or
    /// ~/.cache/packages-mirror.
    #[arg(long, global = true, env = "PACKAGES_MIRROR_NO_COMPILE_CACHE")]
    no_compile_cache: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load a plugin component and run one of its commands.
    Run {
        /// The plugin component (.wasm).
        plugin: PathBuf,
        #[command(subcommand)]
        action: Action,
    },
    /// Describe a plugin component: its world, WIT packages, imports and
    /// exports, and whether this host can run it (exit 1 when it cannot).
    Inspect {
        /// The plugin component (.wasm).
        plugin: PathBuf,
    },
    /// Print a shell completion script for `host` on stdout.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page of `host` (roff) on stdout, or write one page per
    /// command into a directory.
    Man {
        /// Write host.1, host-run.1, host-run-pull.1, … into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    /// A framed summary table on stdout.
    Text,
    /// One JSON document on stdout (host/schema/pull-summary.schema.json),
    /// also when the pull fails; no table.
    Json,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Pull packages (unless --no-packages) and package versions into a bundle directory.
    Pull(Box<PullArgs>),
}

#[derive(Args, Debug)]
struct PullArgs {
    /// Source registry root: host[:port]/path (no scheme).
    #[arg(long, value_name = "HOST[:PORT]/PATH")]
    source: String,
    /// Use plain HTTP instead of HTTPS.
    #[arg(long)]
    insecure: bool,
    /// Do not verify the registry's TLS certificate.
    #[arg(long)]
    tls_skip_verify: bool,
    /// Login for the source registry.
    #[arg(long, env = "D8_MIRROR_SOURCE_LOGIN", value_name = "LOGIN")]
    source_login: Option<String>,
    /// Password for the source registry.
    #[arg(
        long,
        env = "D8_MIRROR_SOURCE_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    source_password: Option<String>,
    /// Deckhouse license token: sent as login `license-token` with the token as password.
    #[arg(long, value_name = "TOKEN", hide_env_values = true)]
    license: Option<String>,
    /// Extra CA certificates (PEM) to trust besides the system roots.
    #[arg(long, value_name = "FILE")]
    tls_ca_file: Option<PathBuf>,
    /// Pull only these packages: `name` or `name@constraint` (repeatable).
    #[arg(long, value_name = "EXPR")]
    include_package: Vec<String>,
    /// Pull all packages but these: package names only (repeatable).
    #[arg(long, value_name = "EXPR")]
    exclude_package: Vec<String>,
    /// Skip pulling packages (package versions are still pulled).
    #[arg(long)]
    no_packages: bool,
    /// Pull only the extra images of the selected packages.
    #[arg(long)]
    only_extra_images: bool,
    /// Do not look for VEX attestations.
    #[arg(long)]
    skip_vex_images: bool,
    /// Split archives into chunks of SIZE: decimal GB (0.5 = 500000000 bytes) or a number with a
    /// unit (B, kB, MB, GB, KiB, MiB, GiB); 0 = no chunks.
    #[arg(long, value_name = "SIZE", default_value = "0", value_parser = parse_chunk_size, allow_hyphen_values = true)]
    images_bundle_chunk_size: u64,
    /// Print what would be pulled; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// The source is a pull-through cache that refuses tag listing.
    #[arg(long)]
    proxy_registry: bool,
    /// Time limit of the access check (listing <root>/packages), e.g. 30s, 5m [default: none
    /// beyond the 30 s connect and 300 s read timeouts of every request].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Registry transfers run at once (default: 4 per CPU, at least 8, at most 64).
    #[arg(long, value_name = "N", default_value_t = host::registry::default_concurrency(), value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
    /// Memory the plugin may use (its linear memory), e.g. 512MiB, 2GiB.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_memory_limit)]
    memory_limit: u64,
    /// Wall-clock limit of each plugin call, e.g. 30m, 12h; 0 = none.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    call_timeout: Duration,
    /// Archive files the plugin may hold open at once.
    #[arg(long, value_name = "N", default_value = "64", value_parser = clap::value_parser!(u16).range(1..))]
    max_open_files: u16,
    /// What to print on stdout at the end: text (a summary table) or json.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text, value_name = "FORMAT")]
    output: OutputFormat,
    /// Add the source, the bundle directory, every archive file with its
    /// size on disk and the transfer counters to the summary table.
    #[arg(long)]
    verbose_summary: bool,
    /// The bundle directory (created if missing).
    bundle_dir: PathBuf,
}

fn parse_memory_limit(text: &str) -> Result<u64, String> {
    match parse_chunk_size(text)? {
        0 => Err("the memory limit must be more than 0".into()),
        n => Ok(n),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            plugin,
            action: Action::Pull(args),
        } => {
            let level = if cli.quiet {
                LogLevel::Error
            } else {
                cli.log_level
            };
            let terminal = std::io::stderr().is_terminal()
                && std::env::var_os("TERM").is_none_or(|t| t != "dumb");
            let sink = Arc::new(CliSink::new(
                cli.log_format,
                !cli.quiet && level >= LogLevel::Info,
                terminal,
            ));
            let cache_dir = if cli.no_compile_cache {
                None
            } else {
                host::compile_cache::default_dir()
            };
            run_pull(&plugin, cache_dir.as_deref(), *args, level, &sink)
        }
        Command::Inspect { plugin } => inspect(&plugin),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "host", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man { dir } => man(dir.as_deref()),
    }
}

/// Runs the pull and prints the summary (text or JSON) and the error line.
fn run_pull(
    plugin: &Path,
    cache_dir: Option<&Path>,
    args: PullArgs,
    level: LogLevel,
    sink: &Arc<CliSink>,
) -> ExitCode {
    let started = Instant::now();
    let (output, verbose, dry_run) = (args.output, args.verbose_summary, args.dry_run);
    let (source, bundle_dir) = (args.source.clone(), args.bundle_dir.clone());
    let (calls, failure) = match pull(plugin, cache_dir, args, level, sink) {
        Ok(done) => (done.calls, done.failure),
        Err(failure) => (Vec::new(), Some(failure)),
    };
    sink.finish();
    let borrowed: Vec<(&str, &PullSummary)> = calls.iter().map(|(c, s)| (*c, s)).collect();
    let mut report = Report::new(&borrowed, &source, &bundle_dir);
    // The flag, not the summaries: a run that failed before any call
    // finished has no summary to say it was a dry run.
    report.dry_run = dry_run;
    report.transfer = sink.stats();
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    let code = failure.as_ref().map_or(0, |f| f.code);
    if let Some(Failure { code, message }) = &failure {
        let status = if *code == EXIT_INTERRUPTED {
            Status::Interrupted
        } else {
            Status::Failed
        };
        let text = message.as_deref().unwrap_or("failed");
        report = report.failed(status, *code, text);
        if let Some(m) = message {
            sink.log(LogLevel::Error, &host::events::sanitize(m));
        }
    }
    match output {
        OutputFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => sink.log(LogLevel::Error, &format!("cannot write the summary: {e}")),
        },
        // A failed pull prints only its error; an interrupted one says what
        // it finished.
        OutputFormat::Text if !calls.is_empty() && (code == 0 || code == EXIT_INTERRUPTED) => {
            let width = console::Term::stdout()
                .size_checked()
                .map_or(100, |(_, w)| w.clamp(40, 160));
            print!("{}", host::report::render_text(&report, verbose, width));
        }
        OutputFormat::Text => {}
    }
    ExitCode::from(code)
}

fn inspect(plugin: &Path) -> ExitCode {
    match host::inspect::inspect(plugin) {
        Ok(found) => {
            print!("{}", found.render(plugin));
            if found.fits.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FAILED)
            }
        }
        Err(m) => {
            eprintln!("error: {}", host::events::sanitize(&m));
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn man(dir: Option<&Path>) -> ExitCode {
    let result = match dir {
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(Cli::command(), dir)),
        None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the man page: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// An exit code, with the line to print (none when already reported).
struct Failure {
    code: u8,
    message: Option<String>,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: Some(message.into()),
        }
    }
}

/// The calls that finished, and why the run stopped early (if it did).
struct Done {
    calls: Vec<(&'static str, PullSummary)>,
    failure: Option<Failure>,
}

fn pull(
    plugin: &Path,
    cache_dir: Option<&Path>,
    args: PullArgs,
    log_level: LogLevel,
    sink: &Arc<CliSink>,
) -> Result<Done, Failure> {
    let source = Source::parse(&args.source).map_err(|m| Failure::new(EXIT_USAGE, m))?;
    let explicit = Explicit {
        login: args.source_login,
        password: args.source_password,
        license: args.license,
    };
    let found = credentials::resolve(&source.host, &source.root, &explicit, &|k| {
        std::env::var_os(k)
    })
    .map_err(|e| match e {
        CredError::Usage(m) => Failure::new(EXIT_USAGE, m),
        CredError::Source(m) => Failure::new(EXIT_FAILED, m),
    })?;
    if log_level >= LogLevel::Debug {
        let line = match &found {
            Some(f) => format!(
                "source credentials from {} (login {})",
                f.from,
                host::events::sanitize(&f.credentials.username)
            ),
            None => "no source credentials; anonymous access".to_owned(),
        };
        sink.log(LogLevel::Debug, &line);
    }
    let credentials = found.map(|f| f.credentials);
    let plugin =
        Plugin::load_with_cache(plugin, cache_dir).map_err(|m| Failure::new(EXIT_FAILED, m))?;
    if log_level >= LogLevel::Debug {
        let line = format!(
            "plugin loaded in {} ms ({})",
            plugin.load_time().as_millis(),
            describe_cache(plugin.cache_outcome())
        );
        sink.log(LogLevel::Debug, &line);
    }
    let created_bundle_dir = prepare_bundle_dir(&args.bundle_dir, args.dry_run)?;

    let mut registry = RegistryConfig::new(source.clone());
    registry.insecure = args.insecure;
    registry.tls_skip_verify = args.tls_skip_verify;
    registry.tls_ca_file = args.tls_ca_file;
    registry.credentials = credentials;
    registry.concurrency = usize::from(args.concurrency);
    let mut config = HostConfig::new(registry, args.bundle_dir.clone());
    config.log_level = log_level;
    config.memory_limit = usize::try_from(args.memory_limit).unwrap_or(usize::MAX);
    config.call_timeout = Some(args.call_timeout).filter(|t| !t.is_zero());
    config.max_open_outputs = usize::from(args.max_open_files);
    config.events = Arc::clone(sink) as Arc<dyn EventSink>;
    let session = Session::new(plugin, config).map_err(|m| Failure::new(EXIT_FAILED, m))?;
    install_interrupt_handler(&session, sink);

    let options = PullOptions {
        source_root: source.display(),
        include_packages: args.include_package,
        exclude_packages: args.exclude_package,
        only_extra_images: args.only_extra_images,
        skip_vex_images: args.skip_vex_images,
        bundle_chunk_size: args.images_bundle_chunk_size,
        access_timeout_ms: args
            .timeout
            .map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        dry_run: args.dry_run,
        proxy_registry: args.proxy_registry,
    };

    let (calls, result) = run_calls(
        &session,
        &options,
        args.no_packages && !args.only_extra_images,
        sink,
    );
    let cancelled =
        session.cancel_handle().is_cancelled() && !matches!(result, Err(CallError::Limit(_)));
    if result.is_err() || cancelled {
        session.temps().remove_all();
        if created_bundle_dir {
            // Only succeeds when empty: a failed run leaves no trace.
            let _ = std::fs::remove_dir(&args.bundle_dir);
        }
    }
    let failure = match result {
        Err(e) => Some(call_failure(&e, cancelled)),
        Ok(()) if cancelled => Some(Failure::new(EXIT_INTERRUPTED, "interrupted")),
        Ok(()) => None,
    };
    Ok(Done { calls, failure })
}

fn describe_cache(outcome: &CacheOutcome) -> String {
    let shown = |p: &Path| host::events::sanitize(&p.display().to_string());
    match outcome {
        CacheOutcome::Off => "compiled; compile cache off".into(),
        CacheOutcome::Hit(p) => format!("from the compile cache {}", shown(p)),
        CacheOutcome::Stored(p) => format!("compiled; cached in {}", shown(p)),
        CacheOutcome::Unusable(why) => format!(
            "compiled; compile cache unusable: {}",
            host::events::sanitize(why)
        ),
    }
}

/// Runs `pull-packages` (unless skipped) and then `pull-package-versions`;
/// a cancelled first call stops there. Returns the calls that finished and
/// the error that stopped the run, if any.
fn run_calls(
    session: &Session,
    options: &PullOptions,
    skip_packages: bool,
    sink: &CliSink,
) -> (Vec<(&'static str, PullSummary)>, Result<(), CallError>) {
    let mut done = Vec::new();
    if !skip_packages {
        sink.call_started("pull-packages: one package-<name>.tar per package");
        match session.pull_packages(options) {
            Ok(s) => done.push(("pull-packages", s)),
            Err(e) => return (done, Err(e)),
        }
        if session.cancel_handle().is_cancelled() {
            return (done, Ok(()));
        }
    }
    sink.call_started(
        "pull-package-versions: every package's release images into package-versions.tar",
    );
    match session.pull_package_versions(options) {
        Ok(s) => done.push(("pull-package-versions", s)),
        Err(e) => return (done, Err(e)),
    }
    (done, Ok(()))
}

fn call_failure(e: &CallError, cancelled: bool) -> Failure {
    match e {
        // A deadline may cancel the session to end a blocked import.
        CallError::Limit(m) => Failure::new(EXIT_FAILED, m.clone()),
        CallError::Pull(PullError::Cancelled) => Failure::new(EXIT_INTERRUPTED, "interrupted"),
        _ if cancelled => Failure::new(EXIT_INTERRUPTED, format!("interrupted: {e}")),
        CallError::Pull(PullError::InvalidOptions(m)) => Failure::new(EXIT_USAGE, m.clone()),
        _ => Failure::new(EXIT_FAILED, e.to_string()),
    }
}

/// The bundle directory must be a directory; it is created when missing,
/// except in a dry run, which writes nothing. Returns whether it was created.
fn prepare_bundle_dir(dir: &Path, dry_run: bool) -> Result<bool, Failure> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(false),
        Ok(_) => Err(Failure::new(
            EXIT_FAILED,
            format!(
                "bundle path {} exists and is not a directory",
                dir.display()
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dry_run {
                return Ok(false);
            }
            std::fs::create_dir_all(dir).map_err(|e| {
                Failure::new(
                    EXIT_FAILED,
                    format!("cannot create bundle directory {}: {e}", dir.display()),
                )
            })?;
            Ok(true)
        }
        Err(e) => Err(Failure::new(
            EXIT_FAILED,
            format!("bundle directory {}: {e}", dir.display()),
        )),
    }
}

/// First Ctrl+C: cancel (in-flight requests end, complete packages are
/// still packed). Second: remove this run's temporary entries and leave.
fn install_interrupt_handler(session: &Session, sink: &Arc<CliSink>) {
    let notify = Arc::clone(sink);
    let cancel = session.cancel_handle();
    let temps = session.temps();
    let presses = Arc::new(AtomicUsize::new(0));
    let result = ctrlc::set_handler(move || {
        if presses.fetch_add(1, Ordering::SeqCst) == 0 {
            notify.notice(
                LogLevel::Warn,
                "interrupted: stopping; complete packages are still packed (press Ctrl+C again to abort at once)",
            );
            cancel.cancel();
        } else {
            notify.finish();
            notify.notice(LogLevel::Warn, "aborted: removing temporary files");
            temps.remove_all();
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
    });
    if let Err(e) = result {
        sink.log(
            LogLevel::Warn,
            &format!("Ctrl+C will not stop the pull cleanly: {e}"),
        );
    }
}
