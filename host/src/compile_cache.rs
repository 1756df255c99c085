//! A cache of compiled plugins: compiling the component with Cranelift takes
//! most of a second, loading the machine code wasmtime produced for it takes
//! milliseconds.
//!
//! The artifact of `Engine::precompile_component` is stored in the user's own
//! cache directory, named by the SHA-256 of the plugin bytes and wasmtime's
//! compatibility hash of the engine's configuration, so a changed plugin or
//! another host build never picks up a stale artifact. An artifact is native
//! code that runs without the sandbox's checks, so one is only loaded when it
//! is a regular file owned by the current user and writable by no one else,
//! and when its trailing checksum (SHA-256 of key and artifact) matches: a
//! truncated, damaged or renamed file is compiled afresh instead of crashing.
//! Every failure to read or write the cache falls back to compiling; the
//! cache never stops a load.

use std::collections::hash_map::DefaultHasher;
use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Overrides the cache directory.
pub const CACHE_DIR_ENV: &str = "PACKAGES_MIRROR_CACHE_DIR";
/// Length of the SHA-256 trailer that follows the artifact in a cache file.
const TRAILER: usize = 32;

/// What the cache did for one load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// No cache was asked for: compiled.
    Off,
    /// Loaded from this artifact; nothing was compiled.
    Hit(PathBuf),
    /// Compiled, and the artifact written to this file for the next load.
    Stored(PathBuf),
    /// Compiled; the cache could not be used or written (the reason).
    Unusable(String),
}

/// The cache directory: `$PACKAGES_MIRROR_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/packages-mirror`, else `~/.cache/packages-mirror`.
/// `None` when none of them is set.
pub fn default_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var(CACHE_DIR_ENV) {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = var("XDG_CACHE_HOME").map(PathBuf::from)
        && dir.is_absolute()
    {
        return Some(dir.join("packages-mirror"));
    }
    var("HOME").map(|home| PathBuf::from(home).join(".cache").join("packages-mirror"))
}

/// What an artifact is for: the plugin's SHA-256 and the engine
/// configuration's compatibility hash. It names the file and is part of the
/// file's checksum, so an artifact copied under another key is not loaded.
struct Key {
    plugin: [u8; 32],
    engine: u64,
}

impl Key {
    fn new(engine: &Engine, wasm: &[u8]) -> Key {
        // DefaultHasher has fixed keys: the same host binary gets the same hash.
        let mut engine_hash = DefaultHasher::new();
        engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        Key {
            plugin: Sha256::digest(wasm).into(),
            engine: engine_hash.finish(),
        }
    }

    fn file_name(&self) -> String {
        format!(
            "plugin-{}-{:016x}.cwasm",
            hex::encode(&self.plugin[..16]),
            self.engine
        )
    }

    /// The trailer of a cache file holding `artifact` for this key.
    fn checksum(&self, artifact: &[u8]) -> [u8; TRAILER] {
        let mut h = Sha256::new();
        h.update(self.plugin);
        h.update(self.engine.to_le_bytes());
        h.update(artifact);
        h.finalize().into()
    }
}

/// The cache file of `wasm` compiled by `engine` in `dir`.
pub fn artifact_path(dir: &Path, engine: &Engine, wasm: &[u8]) -> PathBuf {
    dir.join(Key::new(engine, wasm).file_name())
}

/// Loads `wasm` from the cache in `dir`, or compiles it and stores the
/// artifact there. Errors are compile errors only.
pub fn load_or_compile(
    engine: &Engine,
    wasm: &[u8],
    dir: &Path,
) -> wasmtime::Result<(Component, CacheOutcome)> {
    let key = Key::new(engine, wasm);
    let path = dir.join(key.file_name());
    let miss = match read_trusted(&path, &key) {
        Ok(artifact) => {
            // SAFETY: the artifact is one `precompile_component` wrote for
            // this plugin and this engine configuration (the checksum binds
            // it to the key and proves it whole), in a file only the current
            // user can write: trusted like the host binary itself. wasmtime
            // still checks its header and version.
            match unsafe { Component::deserialize(engine, &artifact) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit(path))),
                Err(e) => Some(format!("{}: not loadable ({e})", path.display())),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => Some(format!("{}: {e}", path.display())),
    };
    let artifact = engine.precompile_component(wasm)?;
    // SAFETY: produced just now by this engine.
    let component = unsafe { Component::deserialize(engine, &artifact)? };
    let outcome = match store(&path, &key, &artifact) {
        Ok(()) => CacheOutcome::Stored(path),
        Err(e) => CacheOutcome::Unusable(format!(
            "{}cannot write {}: {e}",
            miss.map(|m| format!("{m}; ")).unwrap_or_default(),
            path.display()
        )),
    };
    Ok((component, outcome))
}

/// The artifact in `path`, when the file is a regular file of the current
/// user that no one else may write, and its trailer matches.
fn read_trusted(path: &Path, key: &Key) -> io::Result<Vec<u8>> {
    let mut file = open_nofollow(path)?;
    check_owner(&file)?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)?;
    if data.len() < TRAILER {
        return Err(io::Error::other("truncated"));
    }
    let (artifact, trailer) = data.split_at(data.len() - TRAILER);
    if key.checksum(artifact) != trailer {
        return Err(io::Error::other("damaged (checksum mismatch)"));
    }
    data.truncate(data.len() - TRAILER);
    Ok(data)
}

/// Writes `artifact` and its checksum to a private temporary file in the
/// cache directory (created 0700) and renames it into place, so a reader
/// never sees half a file.
fn store(path: &Path, key: &Key, artifact: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("cache files live in a directory");
    create_private_dir(dir)?;
    let name = path.file_name().expect("a file name").to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = create_private(&tmp)?;
        file.write_all(artifact)?;
        file.write_all(&key.checksum(artifact))?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(unix)]
fn open_nofollow(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(unix)]
fn check_owner(file: &File) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    if meta.uid() != me || meta.mode() & 0o022 != 0 {
        return Err(io::Error::other(
            "not trusted: owned by another user or writable by others",
        ));
    }
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(unix)]
fn create_private(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

// Elsewhere the cache is not used: every load compiles.
#[cfg(not(unix))]
fn open_nofollow(_: &Path) -> io::Result<File> {
    Err(io::ErrorKind::NotFound.into())
}

#[cfg(not(unix))]
fn check_owner(_: &File) -> io::Result<()> {
    Err(io::Error::other("no owner check on this platform"))
}

#[cfg(not(unix))]
fn create_private_dir(_: &Path) -> io::Result<()> {
    Err(io::Error::other("the compile cache needs a Unix system"))
}

#[cfg(not(unix))]
fn create_private(_: &Path) -> io::Result<File> {
    Err(io::Error::other("the compile cache needs a Unix system"))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::os::unix::fs::PermissionsExt;

    /// The smallest component: the header of an empty one.
    const EMPTY: &[u8] = b"\0asm\x0d\0\x01\0";

    /// Another valid component: the empty one with a custom section.
    fn other() -> Vec<u8> {
        let mut c = EMPTY.to_vec();
        c.extend_from_slice(&[0, 4, 1, b'x', b'y', b'z']);
        c
    }

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        Engine::new(&config).unwrap()
    }

    fn outcome(engine: &Engine, wasm: &[u8], dir: &Path) -> CacheOutcome {
        load_or_compile(engine, wasm, dir).unwrap().1
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_second_load_comes_from_the_cache() {
        let tmp = TempDir::new("cache-hit");
        let dir = tmp.path().join("cache");
        let engine = engine();
        let path = artifact_path(&dir, &engine, EMPTY);
        assert_eq!(
            outcome(&engine, EMPTY, &dir),
            CacheOutcome::Stored(path.clone())
        );
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(outcome(&engine, EMPTY, &dir), CacheOutcome::Hit(path));
        // Only the artifact: no temporary file left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn a_truncated_or_damaged_artifact_is_compiled_again() {
        let tmp = TempDir::new("cache-damaged");
        let dir = tmp.path().to_path_buf();
        let engine = engine();
        let path = artifact_path(&dir, &engine, EMPTY);
        outcome(&engine, EMPTY, &dir);
        let good = std::fs::read(&path).unwrap();

        std::fs::write(&path, &good[..good.len() / 2]).unwrap();
        assert_eq!(
            outcome(&engine, EMPTY, &dir),
            CacheOutcome::Stored(path.clone())
        );
        assert_eq!(std::fs::read(&path).unwrap(), good, "rewritten whole");

        let mut damaged = good.clone();
        damaged[good.len() / 3] ^= 0xff;
        std::fs::write(&path, &damaged).unwrap();
        assert_eq!(
            outcome(&engine, EMPTY, &dir),
            CacheOutcome::Stored(path.clone())
        );
        assert_eq!(outcome(&engine, EMPTY, &dir), CacheOutcome::Hit(path));
    }

    #[test]
    fn a_changed_plugin_or_engine_does_not_use_a_stale_artifact() {
        let tmp = TempDir::new("cache-stale");
        let dir = tmp.path().to_path_buf();
        let engine = engine();
        let a = artifact_path(&dir, &engine, EMPTY);
        let b = artifact_path(&dir, &engine, &other());
        assert_ne!(a, b);
        outcome(&engine, EMPTY, &dir);
        // A's artifact under B's name: the checksum binds it to A's key.
        std::fs::copy(&a, &b).unwrap();
        assert_eq!(outcome(&engine, &other(), &dir), CacheOutcome::Stored(b));
        // Another engine configuration gets its own file.
        let plain = Engine::new(&wasmtime::Config::new()).unwrap();
        let c = artifact_path(&dir, &plain, EMPTY);
        assert_ne!(a, c);
        assert_eq!(outcome(&plain, EMPTY, &dir), CacheOutcome::Stored(c));
    }

    #[test]
    fn an_artifact_others_may_write_is_not_loaded() {
        let tmp = TempDir::new("cache-mode");
        let dir = tmp.path().to_path_buf();
        let engine = engine();
        let path = artifact_path(&dir, &engine, EMPTY);
        outcome(&engine, EMPTY, &dir);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(
            outcome(&engine, EMPTY, &dir),
            CacheOutcome::Stored(path.clone())
        );
        assert_eq!(mode(&path), 0o600, "replaced by a private file");
    }

    #[test]
    fn an_unusable_cache_directory_still_loads() {
        let tmp = TempDir::new("cache-unusable");
        let not_a_dir = tmp.path().join("file");
        std::fs::write(&not_a_dir, b"x").unwrap();
        let engine = engine();
        let (_, outcome) = load_or_compile(&engine, EMPTY, &not_a_dir).unwrap();
        assert!(
            matches!(&outcome, CacheOutcome::Unusable(m) if m.contains("cannot write")),
            "{outcome:?}"
        );
        assert!(load_or_compile(&engine, b"\0asm\x0d\0\x01\0garbage", tmp.path()).is_err());
    }
}
