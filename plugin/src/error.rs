//! The errors an export call can end with; they map one to one onto the
//! WIT `pull-error` variant.

use std::fmt;

use crate::ports::{FsError, RegistryError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    InvalidOptions(String),
    Registry(String),
    Filesystem(String),
    Incomplete(String),
    Cancelled,
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidOptions(m) => write!(f, "invalid options: {m}"),
            Self::Registry(m) => write!(f, "registry: {m}"),
            Self::Filesystem(m) => write!(f, "bundle directory: {m}"),
            Self::Incomplete(m) => write!(f, "incomplete: {m}"),
            Self::Cancelled => f.write_str("cancelled"),
            Self::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl Error {
    /// A registry failure with context: what the plugin was doing.
    pub fn registry(context: impl fmt::Display, err: RegistryError) -> Self {
        match err {
            RegistryError::Cancelled => Self::Cancelled,
            // A full disk while fetching is the bundle directory's fault,
            // not the registry's.
            RegistryError::Filesystem(e) => Self::fs(context, e),
            other => Self::Registry(format!("{context}: {other}")),
        }
    }

    /// A filesystem failure with context.
    pub fn fs(context: impl fmt::Display, err: FsError) -> Self {
        Self::Filesystem(format!("{context}: {err}"))
    }
}

/// Adds context to a filesystem result.
pub trait FsContext<T> {
    fn ctx(self, context: impl fmt::Display) -> Result<T>;
}

impl<T> FsContext<T> for std::result::Result<T, FsError> {
    fn ctx(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::fs(context, e))
    }
}

/// Adds context to a registry result, keeping cancellation distinct.
pub trait RegistryContext<T> {
    fn ctx(self, context: impl fmt::Display) -> Result<T>;
}

impl<T> RegistryContext<T> for std::result::Result<T, RegistryError> {
    fn ctx(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::registry(context, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_while_fetching_is_a_filesystem_error() {
        let e = Error::registry(
            "fetching blob sha256:ab",
            RegistryError::Filesystem(FsError::NoSpace("x: no space left on device".into())),
        );
        assert_eq!(
            e,
            Error::Filesystem(
                "fetching blob sha256:ab: disk full: x: no space left on device".into()
            )
        );
        assert!(e.to_string().starts_with("bundle directory: "), "{e}");
    }

    #[test]
    fn a_timeout_is_a_registry_error_naming_it() {
        let e = Error::registry(
            "listing tags",
            RegistryError::Timeout("listing tags of r/p: timed out after 5s".into()),
        );
        assert_eq!(
            e,
            Error::Registry(
                "listing tags: timed out: listing tags of r/p: timed out after 5s".into()
            )
        );
        assert_eq!(
            Error::registry("x", RegistryError::Cancelled),
            Error::Cancelled
        );
    }
}
