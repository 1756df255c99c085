//! Caps on what one import call may make the host do.
//!
//! The guest's own memory is capped (`--memory-limit`), but a small request
//! can make the host do much more: one `resolve` of 100 000 references is a
//! few MiB in the guest and 100 000 requests (and their answers, held until
//! the call returns) in the host. These caps keep the host's work per call
//! proportional to what any real plugin needs; going over one ends the call
//! with an error that names the limit. The plugin splits larger batches
//! itself (see the WIT).

/// Items in one `resolve`, `fetch-manifests` or `fetch-blobs` call.
pub const MAX_BATCH: usize = 256;
/// Bytes of one string the host acts on: a repository, reference, digest,
/// path or file name.
pub const MAX_STRING: usize = 4096;
/// Names in one `read-layer-files` call (each file may be 16 MiB).
pub const MAX_LAYER_NAMES: usize = 16;
/// Bytes `filesystem.read-file` returns at most, whatever `max-bytes` says.
pub const MAX_READ_FILE: u64 = 256 << 20;

/// A plugin asked the host for more than a cap allows.
#[derive(Debug)]
pub struct LimitExceeded(pub String);

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LimitExceeded {}

/// Fails when `call` got more than `max` items.
pub fn batch(call: &str, what: &str, len: usize, max: usize) -> wasmtime::Result<()> {
    if len > max {
        return Err(LimitExceeded(format!(
            "{call} was called with {len} {what}; the host's limit is {max} per call"
        ))
        .into());
    }
    Ok(())
}

/// Fails when one of `strings` is longer than [`MAX_STRING`].
pub fn strings<'a>(call: &str, strings: impl IntoIterator<Item = &'a str>) -> wasmtime::Result<()> {
    for s in strings {
        if s.len() > MAX_STRING {
            return Err(LimitExceeded(format!(
                "{call} was called with a string of {} bytes; the host's limit is {MAX_STRING} bytes",
                s.len()
            ))
            .into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_a_cap_is_an_error_naming_it() {
        assert!(batch("registry.resolve", "references", MAX_BATCH, MAX_BATCH).is_ok());
        let e = batch("registry.resolve", "references", MAX_BATCH + 1, MAX_BATCH).unwrap_err();
        assert_eq!(
            e.to_string(),
            "registry.resolve was called with 257 references; the host's limit is 256 per call"
        );
        assert!(e.downcast_ref::<LimitExceeded>().is_some());
        let long = "a".repeat(MAX_STRING + 1);
        assert!(strings("filesystem.stat", ["ok", long.as_str()]).is_err());
        assert!(strings("filesystem.stat", ["ok", &long[1..]]).is_ok());
    }
}
