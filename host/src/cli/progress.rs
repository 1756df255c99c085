//! The CLI's [`EventSink`]: progress bars on a terminal, plain lines
//! otherwise, or one JSON object per line (`--log-format json`).
//!
//! Everything goes to stderr; stdout is kept for the summary (or the JSON
//! document of `--output json`).

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value, json};

use host::report::TransferStats;
use host::units::human_bytes;
use host::{EventSink, LogLevel, Progress, Transfer};

/// How often, at most, a plain-text byte progress line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `<level>: <message>` lines (and progress bars on a terminal).
    Text,
    /// One JSON object per line: `ts`, `level`, `msg`, and for progress
    /// events `event` and its fields.
    Json,
}

/// Counters shared by every transfer thread.
#[derive(Default)]
struct Counters {
    blobs_planned: AtomicU64,
    bytes_planned: AtomicU64,
    blobs_fetched: AtomicU64,
    bytes_received: AtomicU64,
    active: AtomicU64,
}

/// Where the plugin says it is, for the status line.
#[derive(Default)]
struct Status {
    position: String,
    phase: String,
}

struct Bars {
    multi: MultiProgress,
    bytes: ProgressBar,
    status: ProgressBar,
}

pub struct CliSink {
    format: LogFormat,
    show_progress: bool,
    bars: Option<Bars>,
    counters: Counters,
    status: Mutex<Status>,
    /// When the last plain byte progress line was printed.
    last_plain: Mutex<Instant>,
    first_byte: Mutex<Option<Instant>>,
    /// The title of the export call that started, shown with its first
    /// progress event (a call that fails at once, e.g. on a bad filter,
    /// prints only its error).
    call_title: Mutex<Option<String>>,
}

impl CliSink {
    /// `terminal`: stderr is a terminal that can draw bars. Progress is shown
    /// (bars, or lines) only with `show_progress`.
    pub fn new(format: LogFormat, show_progress: bool, terminal: bool) -> CliSink {
        let bars = (format == LogFormat::Text && show_progress && terminal).then(Bars::new);
        CliSink {
            format,
            show_progress,
            bars,
            counters: Counters::default(),
            status: Mutex::default(),
            last_plain: Mutex::new(Instant::now()),
            first_byte: Mutex::default(),
            call_title: Mutex::default(),
        }
    }

    /// The transfer counters so far.
    pub fn stats(&self) -> TransferStats {
        let c = &self.counters;
        TransferStats {
            blobs_planned: c.blobs_planned.load(Ordering::Relaxed),
            bytes_planned: c.bytes_planned.load(Ordering::Relaxed),
            blobs_fetched: c.blobs_fetched.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
        }
    }

    /// Removes the bars, before the summary is printed.
    pub fn finish(&self) {
        if let Some(b) = &self.bars {
            b.bytes.finish_and_clear();
            b.status.finish_and_clear();
            let _ = b.multi.clear();
        }
    }

    /// Announces an export call (with its first progress event), so that
    /// the second call's `[1/N]` package lines do not read as a repeat of
    /// the first call's.
    pub fn call_started(&self, title: &str) {
        *self.call_title.lock().unwrap_or_else(|e| e.into_inner()) = Some(title.to_owned());
    }

    fn show_call_title(&self) {
        let Some(title) = self
            .call_title
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        match (self.format, &self.bars) {
            (LogFormat::Json, _) => self.json_line(LogLevel::Info, &title, Map::new()),
            (LogFormat::Text, Some(_)) => self.text_line(&title),
            (LogFormat::Text, None) => self.text_line(&format!("info: {title}")),
        }
    }

    /// A message of the host itself (Ctrl+C), printed as is in text mode.
    pub fn notice(&self, level: LogLevel, text: &str) {
        match self.format {
            LogFormat::Json => self.json_line(level, text, Map::new()),
            LogFormat::Text => self.text_line(text),
        }
    }

    fn text_line(&self, line: &str) {
        match &self.bars {
            // Printed above the bars, which are redrawn below it.
            Some(b) => b.multi.suspend(|| eprintln_raw(line)),
            None => eprintln_raw(line),
        }
    }

    fn json_line(&self, level: LogLevel, msg: &str, fields: Map<String, Value>) {
        let mut object = Map::new();
        object.insert(
            "ts".into(),
            humantime::format_rfc3339_millis(SystemTime::now())
                .to_string()
                .into(),
        );
        object.insert("level".into(), level.label().into());
        object.insert("msg".into(), msg.into());
        object.extend(fields);
        eprintln_raw(&Value::Object(object).to_string());
    }

    fn update_status(&self) {
        let Some(b) = &self.bars else { return };
        let status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let active = self.counters.active.load(Ordering::Relaxed);
        b.status.set_prefix(status.position.clone());
        b.status.set_message(format!(
            "{}{}{active} transfer(s) active",
            status.phase,
            if status.phase.is_empty() { "" } else { " · " }
        ));
    }

    /// In plain modes, a byte progress line now and then while bytes flow.
    fn plain_byte_progress(&self) {
        if self.bars.is_some() || !self.show_progress {
            return;
        }
        let Ok(mut last) = self.last_plain.try_lock() else {
            return;
        };
        if last.elapsed() < PLAIN_EVERY {
            return;
        }
        *last = Instant::now();
        drop(last);
        let s = self.stats();
        let since = self
            .first_byte
            .lock()
            .ok()
            .and_then(|f| *f)
            .map_or(Duration::ZERO, |t| t.elapsed());
        let rate = if since.as_secs_f64() > 0.0 {
            (s.bytes_received as f64 / since.as_secs_f64()) as u64
        } else {
            0
        };
        let active = self.counters.active.load(Ordering::Relaxed);
        let msg = format!(
            "downloaded {} of {} ({}/s), {active} transfer(s) active",
            human_bytes(s.bytes_received),
            human_bytes(s.bytes_planned),
            human_bytes(rate)
        );
        match self.format {
            LogFormat::Text => self.text_line(&format!("info: {msg}")),
            LogFormat::Json => {
                let fields = json!({
                    "event": "bytes",
                    "bytes_received": s.bytes_received,
                    "bytes_planned": s.bytes_planned,
                    "bytes_per_second": rate,
                    "active": active,
                });
                self.json_line(LogLevel::Info, &msg, object(fields));
            }
        }
    }
}

impl Bars {
    fn new() -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let status = multi.add(ProgressBar::new_spinner());
        status.set_style(
            ProgressStyle::with_template("{spinner:.green} {prefix:.bold} {wide_msg}")
                .expect("a valid template"),
        );
        status.enable_steady_tick(Duration::from_millis(120));
        let bytes = multi.add(ProgressBar::new(0));
        bytes.set_style(
            ProgressStyle::with_template(
                "  [{elapsed_precise}] {wide_bar:.cyan/blue} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        Bars {
            multi,
            bytes,
            status,
        }
    }
}

impl EventSink for CliSink {
    fn log(&self, level: LogLevel, message: &str) {
        match self.format {
            LogFormat::Json => self.json_line(level, message, Map::new()),
            LogFormat::Text => self.text_line(&format!("{}: {message}", level.label())),
        }
    }

    fn progress(&self, event: &Progress) {
        if !self.show_progress {
            return;
        }
        self.show_call_title();
        if self.format == LogFormat::Json {
            self.json_line(
                LogLevel::Info,
                &event.line(),
                object(progress_fields(event)),
            );
            return;
        }
        let Some(_) = &self.bars else {
            self.text_line(&format!("info: {}", event.line()));
            return;
        };
        {
            let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
            match event {
                Progress::PackageStarted { name, index, total } => {
                    status.position = format!("[{index}/{total}] {name}");
                    status.phase.clear();
                }
                Progress::Phase { package, phase } => {
                    if !status.position.ends_with(package.as_str()) {
                        status.position = package.clone();
                    }
                    phase.clone_into(&mut status.phase);
                }
                Progress::BlobsPlanned { .. } | Progress::ArchiveWritten { .. } => {}
            }
        }
        // Packages and archives stay on screen as history above the bars.
        if matches!(
            event,
            Progress::PackageStarted { .. } | Progress::ArchiveWritten { .. }
        ) {
            self.text_line(&event.line());
        }
        self.update_status();
    }

    fn transfer(&self, event: Transfer) {
        let c = &self.counters;
        match event {
            Transfer::Planned { blobs, bytes } => {
                c.blobs_planned.fetch_add(blobs, Ordering::Relaxed);
                let total = c.bytes_planned.fetch_add(bytes, Ordering::Relaxed) + bytes;
                if let Some(b) = &self.bars {
                    b.bytes.set_length(total);
                }
            }
            Transfer::Started { .. } => {
                c.active.fetch_add(1, Ordering::Relaxed);
                self.update_status();
            }
            Transfer::Received(n) => {
                c.bytes_received.fetch_add(n, Ordering::Relaxed);
                if let Ok(mut first) = self.first_byte.lock() {
                    first.get_or_insert_with(Instant::now);
                }
                if let Some(b) = &self.bars {
                    b.bytes.inc(n);
                }
                self.plain_byte_progress();
            }
            Transfer::Discarded(n) => {
                let _ = c
                    .bytes_received
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                        Some(v.saturating_sub(n))
                    });
                if let Some(b) = &self.bars {
                    b.bytes.set_position(b.bytes.position().saturating_sub(n));
                }
            }
            Transfer::Finished { ok } => {
                let _ = c
                    .active
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                        Some(v.saturating_sub(1))
                    });
                if ok {
                    c.blobs_fetched.fetch_add(1, Ordering::Relaxed);
                }
                self.update_status();
            }
        }
    }
}

/// The fields of a progress event in a JSON log line.
fn progress_fields(event: &Progress) -> Value {
    match event {
        Progress::PackageStarted { name, index, total } => {
            json!({"event": "package-started", "package": name, "index": index, "total": total})
        }
        Progress::Phase { package, phase } => {
            json!({"event": "phase", "package": package, "phase": phase})
        }
        Progress::BlobsPlanned { count, bytes } => {
            json!({"event": "blobs-planned", "count": count, "bytes": bytes})
        }
        Progress::ArchiveWritten { name, bytes } => {
            json!({"event": "archive-written", "archive": name, "bytes": bytes})
        }
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// One line on stderr; nothing useful can be done when stderr is gone.
fn eprintln_raw(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(line.as_bytes());
    let _ = err.write_all(b"\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_bytes_and_blobs() {
        let sink = CliSink::new(LogFormat::Text, false, false);
        for e in [
            Transfer::Planned {
                blobs: 2,
                bytes: 300,
            },
            Transfer::Started { size: 100 },
            Transfer::Received(60),
            Transfer::Discarded(60),
            Transfer::Received(100),
            Transfer::Finished { ok: true },
            Transfer::Started { size: 200 },
            Transfer::Received(10),
            Transfer::Finished { ok: false },
        ] {
            sink.transfer(e);
        }
        assert_eq!(
            sink.stats(),
            TransferStats {
                blobs_planned: 2,
                bytes_planned: 300,
                blobs_fetched: 1,
                bytes_received: 110,
            }
        );
        assert_eq!(sink.counters.active.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn json_fields_of_progress_events() {
        let v = progress_fields(&Progress::ArchiveWritten {
            name: "package-a.tar".into(),
            bytes: 7,
        });
        assert_eq!(v["event"], "archive-written");
        assert_eq!(v["archive"], "package-a.tar");
        assert_eq!(v["bytes"], 7);
    }
}
