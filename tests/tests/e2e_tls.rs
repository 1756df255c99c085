//! End to end over HTTPS: Debian's real `docker-registry` serving TLS with a
//! certificate from a throwaway CA and requiring htpasswd (bcrypt) basic
//! auth, seeded over HTTPS; the real host and plugin pull from it directly
//! and through an `HTTPS_PROXY`.

use std::path::Path;

use tests::artifacts::{self, Artifacts};
use tests::bundle::{check_bundle, dir_names};
use tests::fixture::Fixture;
use tests::process::{self, Captured};
use tests::pull::{PULL_TIMEOUT, https_pull_command};
use tests::registry::{Registry, TEST_PASSWORD, TEST_USER};
use tests::tls::TestCa;
use tests::tunnel::ConnectProxy;

struct Env {
    artifacts: Artifacts,
    registry: Registry,
    fixture: Fixture,
    ca: TestCa,
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let artifacts = artifacts::locate().unwrap_or_else(|e| panic!("{e:#}"));
        let (registry, fixture, ca) = tests::seeded_https_registry_with_auth()
            .expect("starting and seeding the HTTPS registry");
        let tmp = tempfile::Builder::new()
            .prefix("pm-e2e-tls-")
            .tempdir()
            .unwrap();
        Env {
            artifacts,
            registry,
            fixture,
            ca,
            tmp,
        }
    }

    fn ca(&self) -> String {
        self.ca.ca_pem().display().to_string()
    }

    /// Pulls into `<tmp>/<bundle>` with `extra` flags and `env` variables.
    fn pull(&self, bundle: &str, extra: &[&str], env: &[(&str, &str)]) -> Captured {
        let mut cmd = https_pull_command(
            &self.artifacts,
            &self.fixture.root,
            &self.tmp.path().join(bundle),
            extra,
        );
        cmd.envs(env.iter().copied());
        process::run(&mut cmd, PULL_TIMEOUT).expect("running the host")
    }

    fn assert_ok(&self, out: &Captured, bundle: &str) {
        assert_eq!(
            out.code(),
            Some(0),
            "{}\nregistry log (tail):\n{}",
            out.transcript(),
            self.registry.log()
        );
        let problems = check_bundle(
            &self.tmp.path().join(bundle),
            &self.fixture.expected_unfiltered(),
            &self.tmp.path().join(format!("{bundle}-unpacked")),
        );
        assert!(
            problems.is_empty(),
            "{} problem(s) in the bundle:\n  {}\n{}",
            problems.len(),
            problems.join("\n  "),
            out.transcript()
        );
    }

    /// Exit 1, an error line holding `needle` (lowercase) and nothing of a
    /// bundle left behind; returns the error line.
    fn assert_fails_with(&self, out: &Captured, bundle: &str, needle: &str) -> String {
        assert_eq!(out.code(), Some(1), "want exit 1:\n{}", out.transcript());
        let error = out
            .stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| panic!("no error line:\n{}", out.transcript()));
        assert!(
            error.to_lowercase().contains(needle),
            "the error does not say {needle:?}:\n{}",
            out.transcript()
        );
        assert_left_nothing(&self.tmp.path().join(bundle));
        error.to_string()
    }
}

fn assert_left_nothing(bundle: &Path) {
    if bundle.exists() {
        let names = dir_names(bundle).unwrap();
        assert!(
            names
                .iter()
                .all(|n| !n.ends_with(".tar") && !n.ends_with(".tmp") && !n.ends_with(".chunk")),
            "left behind {names:?}"
        );
    }
}

fn assert_not_printed(out: &Captured, secret: &str) {
    assert!(
        !out.stdout.contains(secret) && !out.stderr.contains(secret),
        "{secret:?} was printed:\n{}",
        out.transcript()
    );
}

#[test]
fn pull_over_https_with_htpasswd_and_a_private_ca() {
    let env = Env::new();
    let ca = env.ca();
    let out = env.pull(
        "bundle",
        &[
            "--log-level",
            "trace",
            "--tls-ca-file",
            &ca,
            "--source-login",
            TEST_USER,
            "--source-password",
            TEST_PASSWORD,
        ],
        &[],
    );
    env.assert_ok(&out, "bundle");
    assert_not_printed(&out, TEST_PASSWORD);
    // The basic-auth header value (base64 of login:password) neither.
    assert_not_printed(&out, "bWlycm9yOnMzY3JldA");

    // The same credentials from the environment, the CA from SSL_CERT_FILE
    // (which names the trusted bundle, as for OpenSSL and Go tools).
    let out = env.pull(
        "bundle-env",
        &[],
        &[
            ("SSL_CERT_FILE", ca.as_str()),
            ("D8_MIRROR_SOURCE_LOGIN", TEST_USER),
            ("D8_MIRROR_SOURCE_PASSWORD", TEST_PASSWORD),
        ],
    );
    env.assert_ok(&out, "bundle-env");
}

#[test]
fn https_faults_are_one_clear_error() {
    let env = Env::new();
    let ca = env.ca();
    // The registry's certificate is signed by a CA nobody told us about.
    let out = env.pull(
        "no-ca",
        &[
            "--source-login",
            TEST_USER,
            "--source-password",
            TEST_PASSWORD,
        ],
        &[],
    );
    env.assert_fails_with(&out, "no-ca", "certificate");
    assert_not_printed(&out, TEST_PASSWORD);

    // A wrong password, at the most talkative log level.
    let wrong = "not-the-Password-42";
    let out = env.pull(
        "wrong-password",
        &[
            "--log-level",
            "trace",
            "--tls-ca-file",
            &ca,
            "--source-login",
            TEST_USER,
            "--source-password",
            wrong,
        ],
        &[],
    );
    env.assert_fails_with(&out, "wrong-password", "unauthorized");
    assert_not_printed(&out, wrong);

    // No credentials at all.
    let out = env.pull("anonymous", &["--tls-ca-file", &ca], &[]);
    env.assert_fails_with(&out, "anonymous", "unauthorized");
}

#[test]
fn https_proxy_carries_the_pull_unless_no_proxy_names_the_registry() {
    let env = Env::new();
    let ca = env.ca();
    let flags = [
        "--tls-ca-file",
        &ca,
        "--source-login",
        TEST_USER,
        "--source-password",
        TEST_PASSWORD,
    ];
    let proxy = ConnectProxy::start().unwrap();
    let url = proxy.url();
    let out = env.pull("proxied", &flags, &[("HTTPS_PROXY", &url)]);
    env.assert_ok(&out, "proxied");
    let seen = proxy.seen();
    let tunnel = format!("CONNECT {} HTTP/1.1", env.registry.host());
    assert!(!seen.is_empty(), "the pull did not use the proxy");
    assert!(
        seen.iter().all(|line| *line == tunnel),
        "the proxy saw other requests: {seen:?}"
    );

    let proxy = ConnectProxy::start().unwrap();
    let url = proxy.url();
    let out = env.pull(
        "direct",
        &flags,
        &[("HTTPS_PROXY", &url), ("NO_PROXY", "localhost,127.0.0.1")],
    );
    env.assert_ok(&out, "direct");
    assert_eq!(proxy.seen(), Vec::<String>::new(), "NO_PROXY was ignored");
}
