//! The end-of-pull report: one [`Report`] built from the export calls'
//! summaries, printed as a framed table ([`render_text`]) or as one JSON
//! document (`serde_json::to_string_pretty(&report)`, described by
//! `host/schema/pull-summary.schema.json`).

use std::fmt::Write as _;
use std::path::Path;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, ContentArrangement, Table};
use serde::Serialize;

use crate::PullSummary;
use crate::events::sanitize;
use crate::units::human_bytes;

/// Version of the JSON document's layout; bumped when a field changes meaning
/// or disappears (adding a field does not bump it).
pub const FORMAT_VERSION: u32 = 1;

/// How the pull ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
    Interrupted,
}

/// Everything the end-of-pull summary says.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    pub status: Status,
    /// The process exit code that goes with `status` (0, 1, 2 or 130).
    pub exit_code: u8,
    /// The one-line error when the pull failed or was interrupted.
    pub error: Option<String>,
    pub dry_run: bool,
    /// The source root as given (`host[:port]/path`).
    pub source: String,
    pub bundle_dir: String,
    /// One entry per export call that finished, in call order.
    pub calls: Vec<CallReport>,
    /// All archives of all calls.
    pub archive_count: usize,
    pub archive_bytes: u64,
    pub transfer: TransferStats,
    pub elapsed_seconds: f64,
}

/// What one export call produced.
#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    /// The export: `pull-packages` or `pull-package-versions`.
    pub call: String,
    pub packages: Vec<PackageReport>,
    pub archives: Vec<ArchiveReport>,
    pub warnings: Vec<String>,
    pub totals: CallTotals,
}

#[derive(Debug, Clone, Serialize)]
pub struct PackageReport {
    pub name: String,
    pub versions: Vec<String>,
    pub images: u32,
    pub vex_images: u32,
    /// The package's own archive (`package-<name>.tar`) when this call
    /// wrote one, and its size: the bytes this package added to the bundle.
    pub archive: Option<String>,
    pub bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchiveReport {
    pub name: String,
    /// Total size as the plugin wrote it.
    pub size: u64,
    /// The files on disk (the archive or its chunks), with their sizes as
    /// found on disk after the pull (`null` when it could not be read).
    pub files: Vec<FileReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub name: String,
    pub size: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CallTotals {
    pub packages: usize,
    pub versions: usize,
    pub images: u64,
    pub vex_images: u64,
    /// Sum of the call's archive sizes.
    pub bytes: u64,
}

/// Blob transfers of the whole run, as counted by the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TransferStats {
    /// Blobs and bytes the plugin planned to fetch (`blobs-planned`).
    pub blobs_planned: u64,
    pub bytes_planned: u64,
    /// Blobs fetched and verified, and bytes received (retried bytes once).
    pub blobs_fetched: u64,
    pub bytes_received: u64,
}

impl Report {
    /// A successful report of `calls` (export name, summary); the caller
    /// fills in `transfer` and `elapsed_seconds`, and marks failures with
    /// [`Report::failed`]. Archive files are looked up in `bundle_dir`.
    pub fn new(calls: &[(&str, &PullSummary)], source: &str, bundle_dir: &Path) -> Report {
        let dry_run = calls.iter().any(|(_, s)| s.dry_run);
        let calls: Vec<CallReport> = calls
            .iter()
            .map(|(call, s)| CallReport::new(call, s, bundle_dir))
            .collect();
        let archives = calls.iter().flat_map(|c| &c.archives);
        Report {
            format_version: FORMAT_VERSION,
            status: Status::Ok,
            exit_code: 0,
            error: None,
            dry_run,
            source: source.to_owned(),
            bundle_dir: bundle_dir.display().to_string(),
            archive_count: archives.clone().count(),
            archive_bytes: archives.map(|a| a.size).sum(),
            calls,
            transfer: TransferStats::default(),
            elapsed_seconds: 0.0,
        }
    }

    /// Marks the report as failed (or interrupted) with `exit_code` and the
    /// error line.
    pub fn failed(mut self, status: Status, exit_code: u8, error: &str) -> Report {
        self.status = status;
        self.exit_code = exit_code;
        self.error = Some(sanitize(error));
        self
    }
}

impl CallReport {
    fn new(call: &str, s: &PullSummary, bundle_dir: &Path) -> CallReport {
        let archives: Vec<ArchiveReport> = s
            .archives
            .iter()
            .map(|a| ArchiveReport {
                name: sanitize(&a.name),
                size: a.size,
                files: a
                    .files
                    .iter()
                    .map(|f| FileReport {
                        name: sanitize(f),
                        size: file_size(bundle_dir, f),
                    })
                    .collect(),
            })
            .collect();
        let packages: Vec<PackageReport> = s
            .packages
            .iter()
            .map(|p| {
                let own = format!("package-{}.tar", p.name);
                let archive = archives.iter().find(|a| a.name == own);
                PackageReport {
                    name: sanitize(&p.name),
                    versions: p.versions.iter().map(|v| sanitize(v)).collect(),
                    images: p.images,
                    vex_images: p.vex_images,
                    archive: archive.map(|a| a.name.clone()),
                    bytes: archive.map(|a| a.size),
                }
            })
            .collect();
        let totals = CallTotals {
            packages: packages.len(),
            versions: packages.iter().map(|p| p.versions.len()).sum(),
            images: packages.iter().map(|p| u64::from(p.images)).sum(),
            vex_images: packages.iter().map(|p| u64::from(p.vex_images)).sum(),
            bytes: archives.iter().map(|a| a.size).sum(),
        };
        CallReport {
            call: call.to_owned(),
            packages,
            archives,
            warnings: s.warnings.iter().map(|w| sanitize(w)).collect(),
            totals,
        }
    }

    fn title(&self) -> &str {
        match self.call.as_str() {
            "pull-packages" => "Packages",
            "pull-package-versions" => "Package versions",
            other => other,
        }
    }
}

/// Size of a bundle file named by the plugin (a plain file name; anything
/// with a path separator is not looked up).
fn file_size(bundle_dir: &Path, name: &str) -> Option<u64> {
    if name.is_empty() || name.contains(['/', '\\']) || name == ".." {
        return None;
    }
    std::fs::symlink_metadata(bundle_dir.join(name))
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

/// The framed summary for a terminal `width` columns wide. `verbose` adds the
/// source and bundle paths, every archive file with its size on disk, and
/// the transfer counters.
pub fn render_text(report: &Report, verbose: bool, width: u16) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Pull summary{}",
        if report.dry_run {
            " (dry run, nothing written)"
        } else {
            ""
        }
    );
    if verbose {
        let _ = writeln!(out, "  source:     {}", report.source);
        let _ = writeln!(out, "  bundle dir: {}", report.bundle_dir);
    }
    for call in &report.calls {
        let _ = writeln!(out, "{}:", call.title());
        if call.packages.is_empty() {
            let _ = writeln!(out, "  (none)");
        } else {
            let _ = writeln!(out, "{}", packages_table(call, width));
        }
    }
    let archives: Vec<&ArchiveReport> = report.calls.iter().flat_map(|c| &c.archives).collect();
    if !archives.is_empty() {
        let _ = writeln!(out, "Archives:");
        let _ = writeln!(out, "{}", archives_table(&archives, report, verbose, width));
    }
    let warnings: Vec<&String> = report.calls.iter().flat_map(|c| &c.warnings).collect();
    if !warnings.is_empty() {
        let _ = writeln!(out, "Warnings:");
        for w in warnings {
            let _ = writeln!(out, "  - {w}");
        }
    }
    let t = &report.transfer;
    if verbose {
        let _ = writeln!(
            out,
            "Transfers: {} of {} planned blob(s) fetched, {} received of {} planned",
            t.blobs_fetched,
            t.blobs_planned,
            human_bytes(t.bytes_received),
            human_bytes(t.bytes_planned)
        );
    }
    let rate = if report.elapsed_seconds > 0.0 {
        format!(
            ", {}/s",
            human_bytes((t.bytes_received as f64 / report.elapsed_seconds) as u64)
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "Downloaded {}{rate}; elapsed {:.1}s",
        human_bytes(t.bytes_received),
        report.elapsed_seconds
    );
    if let Some(error) = &report.error {
        let _ = writeln!(out, "Stopped: {error}");
    }
    out
}

fn table(width: u16, header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED.with_rounded_corners())
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(width)
        .set_header(header.iter().copied());
    table
}

fn align_right(table: &mut Table, columns: &[usize]) {
    for &i in columns {
        if let Some(c) = table.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

fn packages_table(call: &CallReport, width: u16) -> Table {
    let mut t = table(width, &["Package", "Versions", "Images", "VEX", "Bytes"]);
    for p in &call.packages {
        t.add_row(vec![
            p.name.clone(),
            if p.versions.is_empty() {
                "-".to_owned()
            } else {
                p.versions.join(", ")
            },
            p.images.to_string(),
            p.vex_images.to_string(),
            p.bytes.map_or_else(|| "-".to_owned(), human_bytes),
        ]);
    }
    let totals = &call.totals;
    t.add_row(vec![
        format!("total: {}", totals.packages),
        format!("{} version(s)", totals.versions),
        totals.images.to_string(),
        totals.vex_images.to_string(),
        human_bytes(totals.bytes),
    ]);
    align_right(&mut t, &[2, 3, 4]);
    t
}

fn archives_table(
    archives: &[&ArchiveReport],
    report: &Report,
    verbose: bool,
    width: u16,
) -> Table {
    let mut t = table(width, &["Archive", "Size", "Files"]);
    for a in archives {
        t.add_row(vec![
            a.name.clone(),
            human_bytes(a.size),
            a.files.len().to_string(),
        ]);
        if verbose {
            for f in &a.files {
                t.add_row(vec![
                    format!("  {}", f.name),
                    f.size.map_or_else(|| "?".to_owned(), human_bytes),
                    String::new(),
                ]);
            }
        }
    }
    t.add_row(vec![
        format!("total: {}", report.archive_count),
        human_bytes(report.archive_bytes),
        archives
            .iter()
            .map(|a| a.files.len())
            .sum::<usize>()
            .to_string(),
    ]);
    align_right(&mut t, &[1, 2]);
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Archive, PackageSummary};

    fn summary() -> PullSummary {
        PullSummary {
            dry_run: false,
            packages: vec![
                PackageSummary {
                    name: "foo".into(),
                    versions: vec!["v1.0.0".into(), "v1.1.0".into()],
                    images: 5,
                    vex_images: 2,
                },
                PackageSummary {
                    name: "bar\u{1b}".into(),
                    versions: vec![],
                    images: 1,
                    vex_images: 0,
                },
            ],
            archives: vec![Archive {
                name: "package-foo.tar".into(),
                files: vec![
                    "package-foo.tar.0000.chunk".into(),
                    "package-foo.tar.0001.chunk".into(),
                ],
                size: 2048,
            }],
            warnings: vec!["careful".into()],
        }
    }

    #[test]
    fn report_totals_and_package_bytes() {
        let dir = crate::testutil::TempDir::new("report");
        std::fs::write(dir.path().join("package-foo.tar.0000.chunk"), [0u8; 1500]).unwrap();
        let s = summary();
        let r = Report::new(&[("pull-packages", &s)], "r.example/x", dir.path());
        let call = &r.calls[0];
        assert_eq!(
            call.totals,
            CallTotals {
                packages: 2,
                versions: 2,
                images: 6,
                vex_images: 2,
                bytes: 2048
            }
        );
        assert_eq!(call.packages[0].bytes, Some(2048));
        assert_eq!(call.packages[1].bytes, None);
        assert_eq!(call.packages[1].name, "bar\u{fffd}");
        assert_eq!(call.archives[0].files[0].size, Some(1500));
        assert_eq!(call.archives[0].files[1].size, None);
        assert_eq!((r.archive_count, r.archive_bytes), (1, 2048));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["status"], "ok");
        assert_eq!(json["calls"][0]["packages"][0]["vex_images"], 2);
    }

    #[test]
    fn renders_a_framed_table() {
        let s = summary();
        let mut r = Report::new(&[("pull-packages", &s)], "r.example/x", Path::new("/nx"));
        r.elapsed_seconds = 1.5;
        let text = render_text(&r, false, 100);
        let row = text
            .lines()
            .find(|l| l.contains("foo") && !l.contains("package-foo"))
            .unwrap_or_else(|| panic!("{text}"));
        for cell in ["v1.0.0, v1.1.0", " 5 ", " 2 ", "2.0 KiB", "│"] {
            assert!(row.contains(cell), "{cell:?} not in {row:?}\n{text}");
        }
        assert!(text.contains("total: 2"), "{text}");
        assert!(text.contains('╭') && text.contains('╯'), "{text}");
        assert!(text.contains("- careful"), "{text}");
        assert!(text.contains("elapsed 1.5s"), "{text}");
        assert!(
            !text.contains("0000.chunk"),
            "chunks only in verbose: {text}"
        );
        let verbose = render_text(&r, true, 100);
        assert!(verbose.contains("package-foo.tar.0001.chunk"), "{verbose}");
        assert!(verbose.contains("source:     r.example/x"), "{verbose}");
        // A narrow terminal wraps cells instead of overflowing.
        let narrow = render_text(&r, false, 40);
        assert!(narrow.lines().all(|l| l.chars().count() <= 40), "{narrow}");
    }
}
