//! The summary printed at the end of a `pull`.

use std::fmt::Write as _;
use std::time::Duration;

use crate::PullSummary;
use crate::units::human_bytes;

/// Renders the summaries of the calls that ran, in order, each with a title
/// (`packages`, `package versions`), followed by archives, warnings and the
/// elapsed time.
pub fn render(calls: &[(&str, &PullSummary)], elapsed: Duration) -> String {
    let mut out = String::new();
    let dry_run = calls.iter().any(|(_, s)| s.dry_run);
    let _ = writeln!(
        out,
        "Summary{}:",
        if dry_run {
            " (dry run, nothing written)"
        } else {
            ""
        }
    );

    for (title, summary) in calls {
        let _ = writeln!(out, "  {title}:");
        if summary.packages.is_empty() {
            let _ = writeln!(out, "    (none)");
            continue;
        }
        let width = summary
            .packages
            .iter()
            .map(|p| p.name.len())
            .max()
            .unwrap_or(0);
        let (mut images, mut vex, mut versions) = (0u64, 0u64, 0usize);
        for p in &summary.packages {
            images += u64::from(p.images);
            vex += u64::from(p.vex_images);
            versions += p.versions.len();
            let list = if p.versions.is_empty() {
                "-".to_owned()
            } else {
                p.versions.join(", ")
            };
            let _ = writeln!(
                out,
                "    {:width$}  images: {}  vex: {}  versions: {list}",
                p.name, p.images, p.vex_images
            );
        }
        let _ = writeln!(
            out,
            "    total: {} package(s), {versions} version(s), {images} image(s), {vex} VEX",
            summary.packages.len()
        );
    }

    let archives: Vec<_> = calls.iter().flat_map(|(_, s)| &s.archives).collect();
    if !archives.is_empty() {
        let _ = writeln!(out, "  archives:");
        let width = archives.iter().map(|a| a.name.len()).max().unwrap_or(0);
        for a in &archives {
            let chunks = if a.files.len() > 1 {
                format!(" in {} chunks", a.files.len())
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "    {:width$}  {}{chunks}",
                a.name,
                human_bytes(a.size)
            );
        }
        let total: u64 = archives.iter().map(|a| a.size).sum();
        let _ = writeln!(
            out,
            "    total: {} archive(s), {}",
            archives.len(),
            human_bytes(total)
        );
    }

    let warnings: Vec<_> = calls.iter().flat_map(|(_, s)| &s.warnings).collect();
    if !warnings.is_empty() {
        let _ = writeln!(out, "  warnings:");
        for w in warnings {
            let _ = writeln!(out, "    {}", crate::events::sanitize(w));
        }
    }
    let _ = writeln!(out, "  elapsed: {:.1}s", elapsed.as_secs_f64());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Archive, PackageSummary};

    #[test]
    fn renders_packages_archives_and_totals() {
        let s = PullSummary {
            dry_run: false,
            packages: vec![PackageSummary {
                name: "foo".into(),
                versions: vec!["v1.0.0".into(), "v1.1.0".into()],
                images: 5,
                vex_images: 2,
            }],
            archives: vec![Archive {
                name: "package-foo.tar".into(),
                files: vec![
                    "package-foo.tar.0000.chunk".into(),
                    "package-foo.tar.0001.chunk".into(),
                ],
                size: 2048,
            }],
            warnings: vec!["careful".into()],
        };
        let text = render(&[("packages", &s)], Duration::from_millis(1500));
        assert!(
            text.contains("foo  images: 5  vex: 2  versions: v1.0.0, v1.1.0"),
            "{text}"
        );
        assert!(
            text.contains("total: 1 package(s), 2 version(s), 5 image(s), 2 VEX"),
            "{text}"
        );
        assert!(
            text.contains("package-foo.tar  2.0 KiB in 2 chunks"),
            "{text}"
        );
        assert!(text.contains("warnings:\n    careful"), "{text}");
        assert!(text.contains("elapsed: 1.5s"), "{text}");
    }
}
