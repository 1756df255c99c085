//! Registry failures, and how HTTP answers map onto them.

use crate::events::sanitize;

/// The class of a failure; mirrors the WIT `registry-error` cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NotFound,
    Unauthorized,
    Denied,
    Integrity,
    Cancelled,
    /// A connect/read timeout or a request's own time limit ran out.
    Timeout,
    /// The bundle directory failed while a blob was written into it.
    Filesystem(FsKind),
    Other,
}

/// The class of a filesystem failure inside [`Kind::Filesystem`]; mirrors
/// the WIT `fs-error` cases (the message stays in [`RegError::message`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    NotFound,
    Denied,
    NoSpace,
    Other,
}

impl FsKind {
    pub fn of(e: &crate::fs::FsError) -> FsKind {
        use crate::fs::FsError as F;
        match e {
            F::NotFound(_) => FsKind::NotFound,
            F::Denied(_) => FsKind::Denied,
            F::NoSpace(_) => FsKind::NoSpace,
            F::Other(_) => FsKind::Other,
        }
    }
}

/// A failed registry request. The message names the request (full reference
/// or URL) and what the registry said; it never contains credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegError {
    pub kind: Kind,
    pub message: String,
}

impl RegError {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        RegError {
            kind,
            message: message.into(),
        }
    }

    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(Kind::NotFound, m)
    }

    pub fn integrity(m: impl Into<String>) -> Self {
        Self::new(Kind::Integrity, m)
    }

    pub fn other(m: impl Into<String>) -> Self {
        Self::new(Kind::Other, m)
    }

    pub fn timeout(m: impl Into<String>) -> Self {
        Self::new(Kind::Timeout, m)
    }

    /// A filesystem failure `e` while doing `what`.
    pub fn filesystem(e: &crate::fs::FsError, what: &str) -> Self {
        Self::new(Kind::Filesystem(FsKind::of(e)), format!("{what}: {e}"))
    }

    /// A transport failure of `what`: a timeout when reqwest says so.
    pub fn transport(e: &reqwest::Error, what: &str) -> Self {
        let text = format!("{what}: {}", describe_transport(e));
        if e.is_timeout() {
            Self::timeout(text)
        } else {
            Self::other(text)
        }
    }

    pub fn cancelled() -> Self {
        Self::new(Kind::Cancelled, "cancelled")
    }

    pub fn is_cancelled(&self) -> bool {
        self.kind == Kind::Cancelled
    }
}

impl std::fmt::Display for RegError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RegError {}

/// Classifies a non-success answer to the request described by `what`, using
/// the status and the distribution-spec error body
/// (`{"errors":[{"code":"…","message":"…"}]}`) when there is one.
pub fn from_response(status: u16, reason: &str, body: &[u8], what: &str) -> RegError {
    let errors = parse_error_body(body);
    let has = |code: &str| errors.iter().any(|(c, _)| c == code);
    let unknown = has("NAME_UNKNOWN") || has("MANIFEST_UNKNOWN") || has("BLOB_UNKNOWN");
    let kind = if unknown || status == 404 {
        Kind::NotFound
    } else if status == 401 || has("UNAUTHORIZED") {
        Kind::Unauthorized
    } else if status == 403 || has("DENIED") {
        Kind::Denied
    } else {
        Kind::Other
    };

    let mut message = format!("{what}: {status} {reason}");
    if !errors.is_empty() {
        let details: Vec<String> = errors
            .iter()
            .map(|(code, msg)| match (code.is_empty(), msg.is_empty()) {
                (false, false) => format!("{code}: {msg}"),
                (false, true) => code.clone(),
                (true, _) => msg.clone(),
            })
            .collect();
        message.push_str(": ");
        message.push_str(&details.join("; "));
    } else if let Some(text) = short_text(body) {
        message.push_str(": ");
        message.push_str(&text);
    }
    if kind == Kind::Unauthorized {
        message.push_str(" (check --source-login/--source-password)");
    }
    RegError::new(kind, sanitize(&message))
}

/// The `(code, message)` pairs of a distribution-spec error body.
pub fn parse_error_body(body: &[u8]) -> Vec<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    serde_json::from_slice::<Body>(body)
        .map(|b| {
            b.errors
                .into_iter()
                .filter(|e| !e.code.is_empty() || !e.message.is_empty())
                .map(|e| (e.code, e.message))
                .collect()
        })
        .unwrap_or_default()
}

/// A plain-text body worth quoting: one short line, not an HTML page.
fn short_text(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?.trim();
    let line = text.lines().next()?.trim();
    if line.is_empty() || line.starts_with('<') {
        return None;
    }
    Some(line.chars().take(200).collect())
}

/// Describes a transport error with its causes (reqwest's own text hides
/// them); URLs carry no credentials, so this is safe to show.
pub fn describe_transport(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    sanitize(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_distribution_error_codes() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"v1"}}]}"#;
        let e = from_response(404, "Not Found", body, "r/p:v1");
        assert_eq!(e.kind, Kind::NotFound);
        assert_eq!(
            e.message,
            "r/p:v1: 404 Not Found: MANIFEST_UNKNOWN: manifest unknown"
        );

        let body = br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#;
        assert_eq!(
            from_response(400, "Bad Request", body, "x").kind,
            Kind::NotFound
        );

        let body = br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#;
        let e = from_response(400, "Bad Request", body, "x");
        assert_eq!(e.kind, Kind::Denied);
        assert!(e.message.contains("DENIED: requested access"));

        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
        let e = from_response(401, "Unauthorized", body, "x");
        assert_eq!(e.kind, Kind::Unauthorized);
        assert!(e.message.contains("--source-login"));
    }

    #[test]
    fn maps_statuses_without_a_body() {
        assert_eq!(
            from_response(404, "Not Found", b"", "x").kind,
            Kind::NotFound
        );
        assert_eq!(
            from_response(401, "Unauthorized", b"", "x").kind,
            Kind::Unauthorized
        );
        assert_eq!(from_response(403, "Forbidden", b"", "x").kind, Kind::Denied);
        let e = from_response(500, "Internal Server Error", b"boom\nmore", "x");
        assert_eq!(e.kind, Kind::Other);
        assert_eq!(e.message, "x: 500 Internal Server Error: boom");
        let e = from_response(502, "Bad Gateway", b"<html><body>bad</body></html>", "x");
        assert_eq!(e.message, "x: 502 Bad Gateway");
    }

    #[test]
    fn a_full_disk_is_a_filesystem_error() {
        let fs = crate::fs::io_error(
            &std::io::Error::from(std::io::ErrorKind::StorageFull),
            "w/blob",
        );
        let e = RegError::filesystem(&fs, "blob sha256:ab of r/p");
        assert_eq!(e.kind, Kind::Filesystem(FsKind::NoSpace));
        assert!(
            e.message
                .starts_with("blob sha256:ab of r/p: w/blob: the disk is full"),
            "{e}"
        );
    }

    #[test]
    fn several_errors_are_joined() {
        let body = br#"{"errors":[{"code":"A","message":"one"},{"code":"B"},{"message":"three"}]}"#;
        let e = from_response(400, "Bad Request", body, "x");
        assert_eq!(e.message, "x: 400 Bad Request: A: one; B; three");
    }
}
