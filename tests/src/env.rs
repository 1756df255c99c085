//! One end-to-end environment: the built artifacts, a seeded registry and a
//! scratch directory for bundles (shared by the e2e test files).

use std::path::PathBuf;

use crate::artifacts::{self, Artifacts};
use crate::bundle::check_bundle;
use crate::fixture::{ExpectedBundle, Fixture};
use crate::process::Captured;
use crate::pull::pull;
use crate::registry::Registry;
use crate::seeded_registry;

/// The artifacts, or a panic saying how to build them.
pub fn artifacts() -> Artifacts {
    match artifacts::locate() {
        Ok(a) => a,
        Err(e) => panic!("{e:#}"),
    }
}

pub struct Env {
    pub artifacts: Artifacts,
    pub registry: Registry,
    pub fixture: Fixture,
    pub tmp: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let artifacts = artifacts();
        let (registry, fixture) = seeded_registry().expect("starting and seeding the registry");
        let mut tmp = tempfile::Builder::new()
            .prefix("pm-e2e-")
            .tempdir()
            .unwrap();
        if std::env::var_os("PM_KEEP_TMP").is_some() {
            // Keep bundles and unpacked layouts for a look after the run.
            tmp.disable_cleanup(true);
            eprintln!("PM_KEEP_TMP: keeping {}", tmp.path().display());
        }
        Env {
            artifacts,
            registry,
            fixture,
            tmp,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Pull into `<tmp>/<bundle>`, whatever the outcome.
    pub fn pull(&self, bundle: &str, extra: &[&str]) -> Captured {
        pull(
            &self.artifacts,
            &self.fixture.root,
            &self.path(bundle),
            extra,
        )
        .expect("running the host")
    }

    /// Pull into `<tmp>/<bundle>`; the run must succeed.
    pub fn pull_ok(&self, bundle: &str, extra: &[&str]) -> Captured {
        let out = self.pull(bundle, extra);
        assert!(
            out.code() == Some(0),
            "the pull failed:\n{}\nregistry log (tail):\n{}",
            out.transcript(),
            tail(&self.registry.log(), 40)
        );
        out
    }

    /// `<tmp>/bundle` holds exactly `expected` (unpacked into `<tmp>/unpacked`).
    pub fn assert_bundle(&self, expected: &ExpectedBundle, out: &Captured) {
        let problems = check_bundle(&self.path("bundle"), expected, &self.path("unpacked"));
        assert_no_problems(&problems, out);
    }
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub fn assert_no_problems(problems: &[String], out: &Captured) {
    assert!(
        problems.is_empty(),
        "{} problem(s) in the bundle:\n  {}\n\n{}",
        problems.len(),
        problems.join("\n  "),
        out.transcript()
    );
}
