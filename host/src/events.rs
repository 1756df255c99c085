//! The `events` import: log lines and progress for the user, and the
//! cancellation flag the plugin polls.

use std::io::Write;

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

/// Log output and the cancellation flag of one run.
#[derive(Debug, Clone)]
pub struct Events {
    level: LogLevel,
    cancel: Cancel,
}

impl Events {
    pub fn new(level: LogLevel, cancel: Cancel) -> Self {
        Events { level, cancel }
    }

    pub fn enabled(&self, level: LogLevel) -> bool {
        level <= self.level
    }

    /// Writes `<level>: <message>` to stderr.
    pub fn log(&self, level: LogLevel, message: &str) {
        if !self.enabled(level) {
            return;
        }
        let line = format!("{}: {}\n", level.label(), sanitize(message));
        // Nothing useful can be done when stderr is gone.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    pub fn progress(&self, event: &Progress) {
        self.log(LogLevel::Info, &event.line());
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
