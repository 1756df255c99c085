//! The `registry` import: an OCI distribution client scoped to one source.
//!
//! The plugin names repositories relative to the source root and references
//! (tags or digests); this module adds the scheme, host, root path, auth and
//! TLS, and refuses names that could point anywhere else.

pub mod auth;
pub mod blobs;
pub mod credentials;
pub mod error;
pub mod manifests;
pub mod tags;
mod transport;

#[cfg(test)]
mod client_tests;

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Url;

use crate::cancel::Cancel;
use crate::events::Events;
pub use auth::Credentials;
pub use error::{Kind, RegError};

/// Where the mirror reads from: `host[:port]` and a root path (maybe empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub host: String,
    pub root: String,
}

impl Source {
    /// Parses `--source`: `host[:port]/path/to/root`, without a scheme.
    pub fn parse(text: &str) -> Result<Source, String> {
        let t = text.trim();
        if t.contains("://") {
            return Err(format!(
                "--source {text:?}: give host[:port]/path without a scheme (use --insecure for plain HTTP)"
            ));
        }
        let t = t.trim_end_matches('/');
        let (host, root) = t.split_once('/').unwrap_or((t, ""));
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]_".contains(c));
        if !host_ok {
            return Err(format!("--source {text:?}: invalid registry host {host:?}"));
        }
        if !root.is_empty() && !valid_repo(root) {
            return Err(format!(
                "--source {text:?}: invalid repository path {root:?} (lowercase letters, digits, '.', '_', '-' and '/')"
            ));
        }
        Ok(Source {
            host: host.to_owned(),
            root: root.to_owned(),
        })
    }

    /// `host/root` (or `host`): the form written into ref names.
    pub fn display(&self) -> String {
        if self.root.is_empty() {
            self.host.clone()
        } else {
            format!("{}/{}", self.host, self.root)
        }
    }
}

/// How often and how patiently transient failures (connection errors and
/// resets, bodies that break off, 429, 5xx) are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in total, the first included.
    pub attempts: u32,
    /// Delay before the first retry; doubled for each further one, and
    /// jittered (each delay is drawn from its upper half).
    pub base_delay: Duration,
    /// Upper bound of any delay, `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// Transfers at once by default: 4 per CPU (a transfer mostly waits on the
/// network; hashing and writing take a fraction of a core), at least 8 so a
/// small machine still hides round trips to a distant registry, at most 64.
pub fn default_concurrency() -> u16 {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    u16::try_from(cpus.saturating_mul(4).clamp(8, 64)).unwrap_or(64)
}

/// Everything the registry client needs to know.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub source: Source,
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
    /// HTTPS without certificate verification.
    pub tls_skip_verify: bool,
    /// A PEM file of extra CA certificates trusted besides the system roots.
    pub tls_ca_file: Option<std::path::PathBuf>,
    pub credentials: Option<Credentials>,
    /// Transfers and lookups run at once within one batch.
    pub concurrency: usize,
    pub retry: RetryPolicy,
    pub connect_timeout: Duration,
    /// Longest wait for any single read from a connection.
    pub read_timeout: Duration,
}

impl RegistryConfig {
    pub fn new(source: Source) -> Self {
        RegistryConfig {
            source,
            insecure: false,
            tls_skip_verify: false,
            tls_ca_file: None,
            credentials: None,
            concurrency: usize::from(default_concurrency()),
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(300),
        }
    }
}

/// Bearer endpoint learned from a challenge, reused for later scopes.
#[derive(Debug, Clone)]
struct TokenEndpoint {
    realm: Url,
    service: Option<String>,
}

/// A Bearer token and when to stop using it (a margin before its expiry).
#[derive(Debug, Clone)]
struct CachedToken {
    token: String,
    renew_at: std::time::Instant,
}

/// The registry client of one run.
pub struct Client {
    http: reqwest::Client,
    config: RegistryConfig,
    scheme: &'static str,
    cancel: Cancel,
    events: Events,
    /// Tokens per scope.
    tokens: std::sync::Mutex<HashMap<String, CachedToken>>,
    endpoint: std::sync::Mutex<Option<TokenEndpoint>>,
    token_fetch: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("source", &self.config.source)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(config: RegistryConfig, cancel: Cancel, events: Events) -> Result<Client, String> {
        // reqwest is built without a default provider; a second install (e.g.
        // another client in the same process) is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder();
        if let Some(file) = &config.tls_ca_file {
            let pem = std::fs::read(file)
                .map_err(|e| format!("--tls-ca-file {}: {e}", file.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                format!(
                    "--tls-ca-file {}: not a PEM certificate bundle: {}",
                    file.display(),
                    error::describe_transport(&e)
                )
            })?;
            if certs.is_empty() {
                return Err(format!(
                    "--tls-ca-file {}: no PEM certificate in it",
                    file.display()
                ));
            }
            // Added to the system roots, not instead of them.
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .user_agent(concat!(
                "deckhouse-packages-mirror-host/",
                env!("CARGO_PKG_VERSION")
            ))
            // reqwest drops Authorization when a redirect leaves the host, so
            // blob storage behind a redirect never sees registry credentials.
            .redirect(reqwest::redirect::Policy::limited(10))
            // Never downgrade an HTTPS source to plain HTTP on a redirect.
            .https_only(!config.insecure)
            .tls_danger_accept_invalid_certs(config.tls_skip_verify)
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .build()
            .map_err(|e| {
                format!(
                    "cannot set up the HTTP client: {}",
                    error::describe_transport(&e)
                )
            })?;
        Ok(Client {
            http,
            scheme: if config.insecure { "http" } else { "https" },
            config,
            cancel,
            events,
            tokens: Default::default(),
            endpoint: Default::default(),
            token_fetch: Default::default(),
        })
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The repository path on the registry for a plugin-relative `repo`.
    pub fn full_repo(&self, repo: &str) -> Result<String, RegError> {
        if !valid_repo(repo) {
            return Err(RegError::other(format!(
                "invalid repository name {:?}",
                crate::events::sanitize(repo)
            )));
        }
        Ok(if self.config.source.root.is_empty() {
            repo.to_owned()
        } else {
            format!("{}/{}", self.config.source.root, repo)
        })
    }

    /// `host/full-repo`, for messages.
    pub fn display_repo(&self, full: &str) -> String {
        format!("{}/{full}", self.config.source.host)
    }

    /// `<scheme>://<host>/v2/<path>`.
    fn url(&self, path: &str) -> Result<Url, RegError> {
        let text = format!("{}://{}/v2/{path}", self.scheme, self.config.source.host);
        Url::parse(&text).map_err(|e| RegError::other(format!("invalid URL {text}: {e}")))
    }
}

/// A repository path as the distribution spec allows it: `/`-separated
/// components of lowercase letters, digits and `.`, `_`, `-`, none of them
/// empty, `.` or `..`.
pub fn valid_repo(repo: &str) -> bool {
    !repo.is_empty()
        && repo.len() <= 255
        && repo.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        })
}

/// A tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`).
pub fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b))
}

/// `sha256:` followed by 64 lowercase hex digits.
pub fn valid_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A tag or a digest.
pub fn valid_reference(reference: &str) -> bool {
    valid_tag(reference) || valid_digest(reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        let s = Source::parse("127.0.0.1:5000/deckhouse/ee/").unwrap();
        assert_eq!(s.host, "127.0.0.1:5000");
        assert_eq!(s.root, "deckhouse/ee");
        assert_eq!(s.display(), "127.0.0.1:5000/deckhouse/ee");
        let s = Source::parse("registry.example.com").unwrap();
        assert_eq!(s.root, "");
        assert_eq!(s.display(), "registry.example.com");
        assert!(Source::parse("https://r.example.com/x").is_err());
        assert!(Source::parse("r.example.com/Upper").is_err());
        assert!(Source::parse("r.example.com/a/../b").is_err());
        assert!(Source::parse("").is_err());
    }

    #[test]
    fn names() {
        assert!(valid_repo("packages/foo/extra/bar-1.x_y"));
        for bad in [
            "", "a//b", "/a", "a/", "../a", "a/..", "A", "a b", "a?b", "a%2f",
        ] {
            assert!(!valid_repo(bad), "{bad}");
        }
        assert!(valid_tag("v1.2.3") && valid_tag("sha256-abc.att") && valid_tag("_x"));
        assert!(!valid_tag("-x") && !valid_tag("a/b") && !valid_tag("") && !valid_tag("a:b"));
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(valid_digest(&d) && valid_reference(&d));
        assert!(
            !valid_digest("sha256:ABC") && !valid_digest(&format!("sha512:{}", "a".repeat(64)))
        );
    }
}
