//! The `events` import: log lines and progress for the user, and the
//! cancellation flag the plugin polls.

use std::io::Write;
use std::sync::Arc;

use crate::cancel::Cancel;
use crate::units::human_bytes;

/// How chatty the host is; lines above the chosen level are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn label(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl std::str::FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Ok(LogLevel::Error),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            "trace" => Ok(LogLevel::Trace),
            _ => Err(format!(
                "unknown log level {s:?} (expected error, warn, info, debug or trace)"
            )),
        }
    }
}

/// Where the plugin says it is (the WIT `progress-event`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    PackageStarted {
        name: String,
        index: u32,
        total: u32,
    },
    Phase {
        package: String,
        phase: String,
    },
    BlobsPlanned {
        count: u32,
        bytes: u64,
    },
    ArchiveWritten {
        name: String,
        bytes: u64,
    },
}

impl Progress {
    /// The event with its (plugin- or registry-supplied) text sanitized.
    pub fn sanitized(&self) -> Progress {
        match self {
            Progress::PackageStarted { name, index, total } => Progress::PackageStarted {
                name: sanitize(name),
                index: *index,
                total: *total,
            },
            Progress::Phase { package, phase } => Progress::Phase {
                package: sanitize(package),
                phase: sanitize(phase),
            },
            Progress::BlobsPlanned { .. } => self.clone(),
            Progress::ArchiveWritten { name, bytes } => Progress::ArchiveWritten {
                name: sanitize(name),
                bytes: *bytes,
            },
        }
    }

    /// The line shown for this event.
    pub fn line(&self) -> String {
        match self {
            Progress::PackageStarted { name, index, total } => {
                format!("[{index}/{total}] package {name}")
            }
            Progress::Phase { package, phase } => format!("{package}: {phase}"),
            Progress::BlobsPlanned { count, bytes } => {
                format!("transferring {count} blobs ({})", human_bytes(*bytes))
            }
            Progress::ArchiveWritten { name, bytes } => {
                format!("wrote {name} ({})", human_bytes(*bytes))
            }
        }
    }
}

/// What the host's blob transfers report, for byte counters and rates.
/// Only `fetch-blobs` transfers (the bulk of a pull) are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// The plugin planned `blobs` downloads of `bytes` in all (its
    /// `blobs-planned` progress event), passed on whatever the log level so
    /// that counters stay right under `--quiet`.
    Planned { blobs: u64, bytes: u64 },
    /// A blob download started; `size` is its expected size in bytes.
    Started { size: u64 },
    /// Bytes of a blob arrived (verified as part of the whole blob later).
    Received(u64),
    /// A download attempt broke off and will be retried: the bytes it had
    /// received are thrown away and will arrive again.
    Discarded(u64),
    /// A blob download ended (`ok` = verified and in place).
    Finished { ok: bool },
}

/// Receives what a session reports: log lines, the plugin's progress events
/// and the host's byte counts. Called from several threads at once (blob
/// transfers run concurrently), so implementations must be cheap and must
/// not block for long.
///
/// Text is already sanitized (control characters replaced), so it is safe
/// to print. Log lines arrive only when their level is enabled by
/// [`HostConfig::log_level`](crate::HostConfig::log_level), progress events
/// only when `info` is, transfer events always.
pub trait EventSink: Send + Sync {
    /// A log line from the plugin or the host.
    fn log(&self, level: LogLevel, message: &str);
    /// A progress event from the plugin.
    fn progress(&self, event: &Progress);
    /// A transfer event from the host; ignored unless overridden.
    fn transfer(&self, event: Transfer) {
        let _ = event;
    }
}

/// The default sink: `<level>: <message>` lines on stderr, progress events
/// as `info:` lines, transfers not shown.
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrSink;

impl EventSink for StderrSink {
    fn log(&self, level: LogLevel, message: &str) {
        let line = format!("{}: {message}\n", level.label());
        // Nothing useful can be done when stderr is gone.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn progress(&self, event: &Progress) {
        self.log(LogLevel::Info, &event.line());
    }
}

/// Log output and the cancellation flag of one run: filters by level,
/// sanitizes, and hands everything to the session's [`EventSink`].
#[derive(Clone)]
pub struct Events {
    level: LogLevel,
    cancel: Cancel,
    sink: Arc<dyn EventSink>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

impl Events {
    /// Events printed by [`StderrSink`].
    pub fn new(level: LogLevel, cancel: Cancel) -> Self {
        Events::with_sink(level, cancel, Arc::new(StderrSink))
    }

    pub fn with_sink(level: LogLevel, cancel: Cancel, sink: Arc<dyn EventSink>) -> Self {
        Events {
            level,
            cancel,
            sink,
        }
    }

    pub fn enabled(&self, level: LogLevel) -> bool {
        level <= self.level
    }

    /// Passes a log line on, sanitized, when its level is enabled.
    pub fn log(&self, level: LogLevel, message: &str) {
        if self.enabled(level) {
            self.sink.log(level, &sanitize(message));
        }
    }

    /// Passes a progress event on, sanitized, when `info` is enabled; the
    /// blobs it plans go on as a transfer event in any case.
    pub fn progress(&self, event: &Progress) {
        if let Progress::BlobsPlanned { count, bytes } = event {
            self.sink.transfer(Transfer::Planned {
                blobs: u64::from(*count),
                bytes: *bytes,
            });
        }
        if self.enabled(LogLevel::Info) {
            self.sink.progress(&event.sanitized());
        }
    }

    pub fn transfer(&self, event: Transfer) {
        self.sink.transfer(event);
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

/// Keeps registry-supplied text (tags, error bodies) from driving the
/// terminal: control characters other than newline and tab are replaced.
pub fn sanitize(message: &str) -> String {
    message
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_filter_and_parse() {
        let e = Events::new("warn".parse().unwrap(), Cancel::new());
        assert!(e.enabled(LogLevel::Error));
        assert!(e.enabled(LogLevel::Warn));
        assert!(!e.enabled(LogLevel::Info));
        assert!("loud".parse::<LogLevel>().is_err());
    }

    /// Records what reaches a sink.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<String>>);

    impl EventSink for Recorder {
        fn log(&self, level: LogLevel, message: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{}:{message}", level.label()));
        }
        fn progress(&self, event: &Progress) {
            self.0
                .lock()
                .unwrap()
                .push(format!("progress:{}", event.line()));
        }
        fn transfer(&self, event: Transfer) {
            self.0.lock().unwrap().push(format!("{event:?}"));
        }
    }

    #[test]
    fn sink_gets_filtered_sanitized_events() {
        let sink = Arc::new(Recorder::default());
        let e = Events::with_sink(LogLevel::Info, Cancel::new(), sink.clone());
        e.log(LogLevel::Debug, "hidden");
        e.log(LogLevel::Warn, "tag \u{1b}[31m");
        e.progress(&Progress::Phase {
            package: "a\u{7}".into(),
            phase: "images".into(),
        });
        e.transfer(Transfer::Received(5));
        let got = sink.0.lock().unwrap().clone();
        assert_eq!(
            got,
            [
                "warn:tag \u{fffd}[31m",
                "progress:a\u{fffd}: images",
                "Received(5)"
            ]
        );
        // Progress is info-level: a quieter level drops it, but the blobs it
        // plans and the transfers still count.
        let sink = Arc::new(Recorder::default());
        let e = Events::with_sink(LogLevel::Warn, Cancel::new(), sink.clone());
        e.progress(&Progress::BlobsPlanned { count: 1, bytes: 2 });
        e.transfer(Transfer::Finished { ok: true });
        assert_eq!(
            *sink.0.lock().unwrap(),
            ["Planned { blobs: 1, bytes: 2 }", "Finished { ok: true }"]
        );
    }

    #[test]
    fn strips_terminal_escapes() {
        assert_eq!(sanitize("a\u{1b}[2Jb\nc"), "a\u{fffd}[2Jb\nc");
    }

    #[test]
    fn progress_lines() {
        let p = Progress::ArchiveWritten {
            name: "package-a.tar".into(),
            bytes: 1536,
        };
        assert_eq!(p.line(), "wrote package-a.tar (1.5 KiB)");
        let p = Progress::PackageStarted {
            name: "a".into(),
            index: 1,
            total: 3,
        };
        assert_eq!(p.line(), "[1/3] package a");
    }
}
