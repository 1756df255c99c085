//! Checks of a bundle directory against the SPEC (§6): archive entries read
//! with GNU tar, OCI layouts (`oci-layout`, `index.json`, blobs), and skopeo
//! as an independent reader.
//!
//! Check functions collect every problem as a line of text instead of
//! stopping at the first, so one failing run says everything that is wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::fixture::{ExpectedArchive, ExpectedBundle, ExpectedLayout, REF_NAME, SHORT_TAG};
use crate::oci::{OCI_INDEX, hex_of};
use crate::process::{self, Captured};

const TAR_TIMEOUT: Duration = Duration::from_secs(120);
const SKOPEO_TIMEOUT: Duration = Duration::from_secs(120);

/// `sha256:<hex>` of a file's content.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

fn tar(args: &[&std::ffi::OsStr]) -> Result<Captured> {
    let mut cmd = process::command("tar");
    cmd.args(args);
    let out = process::run(&mut cmd, TAR_TIMEOUT)?;
    if !out.success() {
        bail!("GNU tar failed:\n{}", out.transcript());
    }
    Ok(out)
}

/// Entry paths of a tar, as GNU `tar -tf` prints them, in archive order.
pub fn tar_list(archive: &Path) -> Result<Vec<String>> {
    let out = tar(&["-tf".as_ref(), archive.as_os_str()])?;
    Ok(out.stdout.lines().map(str::to_string).collect())
}

/// The type letter of each entry as `tar -tvf` prints it (`-` regular file,
/// `d` directory, `l` symlink, `h` hard link, ...).
pub fn tar_entry_types(archive: &Path) -> Result<Vec<char>> {
    let out = tar(&["-tvf".as_ref(), archive.as_os_str()])?;
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| l.chars().next())
        .collect())
}

/// Unpack a tar with GNU `tar -xf` into `dest` (created).
pub fn unpack(archive: &Path, dest: &Path) -> Result<()> {
    fs::create_dir_all(dest)?;
    tar(&[
        "-xf".as_ref(),
        archive.as_os_str(),
        "-C".as_ref(),
        dest.as_os_str(),
    ])?;
    Ok(())
}

/// Names in a directory, sorted.
pub fn dir_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        names.push(e?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Check one archive: GNU tar entry list, entry types, then every layout
/// after unpacking it into `scratch`. Returns the unpack directory and the
/// problems found.
pub fn check_archive(
    archive: &Path,
    expected: &ExpectedArchive,
    scratch: &Path,
) -> Result<(PathBuf, Vec<String>)> {
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut problems = Vec::new();
    let entries = tar_list(archive)?;
    let mut seen = BTreeSet::new();
    for e in &entries {
        if e.starts_with('/') || e.split('/').any(|c| c == ".." || c == ".") || e.contains('\\') {
            problems.push(format!("{name}: bad entry path {e:?}"));
        }
        if !seen.insert(e.clone()) {
            problems.push(format!("{name}: duplicate entry {e}"));
        }
    }
    let types = tar_entry_types(archive)?;
    for (t, e) in types.iter().zip(&entries) {
        if *t != '-' {
            problems.push(format!(
                "{name}: entry {e} is not a regular file (type {t:?})"
            ));
        }
    }
    let want = expected.entries();
    for missing in want.difference(&seen) {
        problems.push(format!("{name}: missing entry {missing}"));
    }
    for extra in seen.difference(&want) {
        problems.push(format!("{name}: unexpected entry {extra}"));
    }
    let dest = scratch.join(name.trim_end_matches(".tar"));
    unpack(archive, &dest)?;
    for (dir, layout) in &expected.layouts {
        let path = dest.join(dir);
        if !path.join("index.json").is_file() {
            problems.push(format!("{name}: no layout at {dir}/"));
            continue;
        }
        for p in check_layout(&path, layout)? {
            problems.push(format!("{name}: {dir}: {p}"));
        }
    }
    Ok((dest, problems))
}

/// The bundle directory holds exactly the expected archives, nothing
/// temporary, and every archive matches its expected content.
pub fn check_bundle(bundle_dir: &Path, expected: &ExpectedBundle, scratch: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let names = dir_names(bundle_dir).expect("listing the bundle directory");
    let want: Vec<String> = expected.keys().cloned().collect();
    if names != want {
        problems.push(format!(
            "bundle directory holds {names:?}, want exactly {want:?}"
        ));
    }
    for n in &names {
        if n.ends_with(".tmp") || n.contains(".tmp.") {
            problems.push(format!("temporary leftover {n}"));
        }
    }
    for (name, archive) in expected {
        let path = bundle_dir.join(name);
        if !path.is_file() {
            continue;
        }
        problems.extend(check_unpacked(&path, archive, scratch));
    }
    problems
}

pub fn check_unpacked(path: &Path, archive: &ExpectedArchive, scratch: &Path) -> Vec<String> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let (dest, mut problems) = check_archive(path, archive, scratch)
        .unwrap_or_else(|e| panic!("reading {}: {e:#}", path.display()));
    // The push side pushes every directory holding an index.json.
    let layouts = layouts_under(&dest).unwrap();
    let want: Vec<String> = archive.layouts.keys().cloned().collect();
    if layouts != want {
        problems.push(format!(
            "{name}: directories with an index.json are {layouts:?}, want {want:?}"
        ));
    }
    problems
}

/// A descriptor of `index.json`.
#[derive(Clone, Debug)]
pub struct IndexEntry {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub ref_name: Option<String>,
    pub short_tag: Option<String>,
}

/// Read and shape-check `index.json` of a layout.
pub fn read_index(layout: &Path) -> Result<(Value, Vec<IndexEntry>)> {
    let path = layout.join("index.json");
    let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    let mut entries = Vec::new();
    for d in v["manifests"].as_array().into_iter().flatten() {
        entries.push(IndexEntry {
            media_type: d["mediaType"].as_str().unwrap_or_default().to_string(),
            digest: d["digest"].as_str().unwrap_or_default().to_string(),
            size: d["size"].as_u64().unwrap_or(u64::MAX),
            ref_name: d["annotations"][REF_NAME].as_str().map(str::to_string),
            short_tag: d["annotations"][SHORT_TAG].as_str().map(str::to_string),
        });
    }
    Ok((v, entries))
}

/// Check one unpacked OCI layout against what it must hold.
pub fn check_layout(dir: &Path, expected: &ExpectedLayout) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    // oci-layout
    match fs::read(dir.join("oci-layout")) {
        Ok(b) => match serde_json::from_slice::<Value>(&b) {
            Ok(v) if v == serde_json::json!({"imageLayoutVersion": "1.0.0"}) => {}
            Ok(v) => problems.push(format!(
                "oci-layout is {v}, want {{\"imageLayoutVersion\":\"1.0.0\"}}"
            )),
            Err(e) => problems.push(format!("oci-layout is not JSON: {e}")),
        },
        Err(e) => problems.push(format!("no oci-layout: {e}")),
    }
    // index.json
    let (index, entries) = read_index(dir)?;
    if index["schemaVersion"] != 2 {
        problems.push(format!(
            "index.json schemaVersion is {}, want 2",
            index["schemaVersion"]
        ));
    }
    if index["mediaType"] != OCI_INDEX {
        problems.push(format!(
            "index.json mediaType is {}, want {OCI_INDEX}",
            index["mediaType"]
        ));
    }
    let names: Vec<String> = entries
        .iter()
        .map(|e| e.ref_name.clone().unwrap_or_default())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    if names != sorted {
        problems.push(format!(
            "index.json manifests are not sorted by {REF_NAME}: {names:?}"
        ));
    }
    let mut by_name: BTreeMap<String, &IndexEntry> = BTreeMap::new();
    let mut short_tags: BTreeMap<String, String> = BTreeMap::new();
    for e in &entries {
        let Some(n) = &e.ref_name else {
            problems.push(format!("descriptor {} has no {REF_NAME}", e.digest));
            continue;
        };
        if by_name.insert(n.clone(), e).is_some() {
            problems.push(format!("ref name {n} appears twice"));
        }
        match &e.short_tag {
            None => problems.push(format!("{n} has no {SHORT_TAG}")),
            Some(t) => {
                if let Some(other) = short_tags.insert(t.clone(), e.digest.clone())
                    && other != e.digest
                {
                    problems.push(format!(
                        "short tag {t} names two different manifests ({other}, {})",
                        e.digest
                    ));
                }
            }
        }
    }
    for (n, want) in &expected.images {
        let Some(got) = by_name.get(n) else {
            problems.push(format!("missing image {n} ({})", want.digest));
            continue;
        };
        if got.short_tag.as_deref() != Some(want.short_tag.as_str()) {
            problems.push(format!(
                "{n}: short tag {:?}, want {:?}",
                got.short_tag, want.short_tag
            ));
        }
        if got.digest != want.digest {
            problems.push(format!("{n}: digest {}, want {}", got.digest, want.digest));
        }
        if got.media_type != want.media_type {
            problems.push(format!(
                "{n}: mediaType {}, want {}",
                got.media_type, want.media_type
            ));
        }
        if got.size != want.size {
            problems.push(format!("{n}: size {}, want {}", got.size, want.size));
        }
    }
    for n in by_name.keys() {
        if !expected.images.contains_key(n) {
            problems.push(format!("unexpected image {n}"));
        }
    }
    // blobs
    let blob_dir = dir.join("blobs").join("sha256");
    let mut present = BTreeSet::new();
    if blob_dir.is_dir() {
        for name in dir_names(&blob_dir)? {
            let path = blob_dir.join(&name);
            let digest = sha256_file(&path)?;
            if hex_of(&digest) != name {
                problems.push(format!("blob {name} has content {digest}"));
            }
            present.insert(format!("sha256:{name}"));
        }
    } else {
        problems.push("no blobs/sha256 directory".into());
    }
    let want_blobs = expected.blobs();
    for d in want_blobs.difference(&present) {
        problems.push(format!("missing blob {d}"));
    }
    for d in present.difference(&want_blobs) {
        problems.push(format!("unexpected blob {d}"));
    }
    // every manifest's config and layers
    for e in &entries {
        let path = blob_dir.join(hex_of(&e.digest));
        let Ok(bytes) = fs::read(&path) else {
            problems.push(format!("manifest blob {} is missing", e.digest));
            continue;
        };
        if bytes.len() as u64 != e.size {
            problems.push(format!(
                "manifest {} is {} bytes, descriptor says {}",
                e.digest,
                bytes.len(),
                e.size
            ));
        }
        let Ok(m) = serde_json::from_slice::<Value>(&bytes) else {
            problems.push(format!("manifest {} is not JSON", e.digest));
            continue;
        };
        if m["mediaType"].as_str().is_some_and(|t| t != e.media_type) {
            problems.push(format!(
                "manifest {} says mediaType {}, its descriptor {}",
                e.digest, m["mediaType"], e.media_type
            ));
        }
        if m.get("manifests").is_some() {
            problems.push(format!(
                "{} is an image index; the layout must hold the linux/amd64 image",
                e.digest
            ));
            continue;
        }
        let children =
            std::iter::once(&m["config"]).chain(m["layers"].as_array().into_iter().flatten());
        for c in children {
            let d = c["digest"].as_str().unwrap_or_default();
            let size = c["size"].as_u64().unwrap_or(u64::MAX);
            match fs::metadata(blob_dir.join(hex_of(d))) {
                Ok(md) if md.len() == size => {}
                Ok(md) => problems.push(format!(
                    "blob {d} of manifest {} is {} bytes, want {size}",
                    e.digest,
                    md.len()
                )),
                Err(_) => problems.push(format!("blob {d} of manifest {} is missing", e.digest)),
            }
        }
    }
    Ok(problems)
}

/// Copy every image of an unpacked layout out with skopeo
/// (`oci:<layout>:<ref.name>` → `dir:`), the independent reader of the
/// bundle. Checks the copied manifest is the one the descriptor names.
pub fn skopeo_check_layout(layout: &Path, scratch: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let (_, entries) = read_index(layout)?;
    fs::create_dir_all(scratch)?;
    for (i, e) in entries.iter().enumerate() {
        let Some(name) = &e.ref_name else { continue };
        let dest = scratch.join(format!("skopeo-{i}"));
        let _ = fs::remove_dir_all(&dest);
        let mut cmd = process::command("skopeo");
        cmd.arg("--insecure-policy")
            .arg("copy")
            .arg("--quiet")
            .arg(format!("oci:{}:{name}", layout.display()))
            .arg(format!("dir:{}", dest.display()));
        let out = process::run(&mut cmd, SKOPEO_TIMEOUT)?;
        if !out.success() {
            problems.push(format!(
                "skopeo cannot copy {name} out of {}:\n{}",
                layout.display(),
                out.transcript()
            ));
            continue;
        }
        match sha256_file(&dest.join("manifest.json")) {
            Ok(d) if d == e.digest => {}
            Ok(d) => problems.push(format!(
                "skopeo copied {name} as manifest {d}, index.json says {}",
                e.digest
            )),
            Err(err) => problems.push(format!("skopeo copy of {name}: {err:#}")),
        }
        let _ = fs::remove_dir_all(&dest);
    }
    Ok(problems)
}

/// Every directory under `root` holding an `index.json` (what the push side
/// pushes), relative to `root`, sorted.
pub fn layouts_under(root: &Path) -> Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
        if dir.join("index.json").is_file() {
            let rel = dir.strip_prefix(root).unwrap_or(dir);
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
        for e in fs::read_dir(dir)? {
            let e = e?;
            if e.file_type()?.is_dir() && e.file_name() != "blobs" {
                walk(root, &e.path(), out)?;
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

/// A listing of a bundle directory, `ls -l` style, with the number of tar
/// members of every archive (`.tar` or first-to-last `.chunk` set).
pub fn listing(dir: &Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = String::new();
    let mut total = 0u64;
    for name in dir_names(dir)? {
        let path = dir.join(&name);
        let md = fs::symlink_metadata(&path)?;
        let mode = md.permissions().mode();
        let kind = if md.is_dir() { 'd' } else { '-' };
        let mut perms = String::new();
        for shift in [6, 3, 0] {
            let bits = (mode >> shift) & 7;
            perms.push(if bits & 4 != 0 { 'r' } else { '-' });
            perms.push(if bits & 2 != 0 { 'w' } else { '-' });
            perms.push(if bits & 1 != 0 { 'x' } else { '-' });
        }
        total += md.len();
        let members = if md.is_file() && name.ends_with(".tar") {
            match tar_list(&path) {
                Ok(l) => format!("  ({} tar members)", l.len()),
                Err(e) => format!("  (unreadable: {e})"),
            }
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{kind}{perms} {:>12}  {name}{members}\n",
            md.len()
        ));
    }
    out.push_str(&format!("total {total} bytes\n"));
    Ok(out)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn listing_counts_tar_members() {
        let tmp = tempfile::tempdir().unwrap();
        let tar = crate::oci::tar_of(&[("a/index.json", b"{}"), ("a/oci-layout", b"{}")]);
        fs::write(tmp.path().join("package-a.tar"), &tar).unwrap();
        fs::write(tmp.path().join("notes"), b"x").unwrap();
        let text = listing(tmp.path()).unwrap();
        println!("{text}");
        let line = text.lines().find(|l| l.contains("package-a.tar")).unwrap();
        assert!(line.starts_with("-rw"), "{line}");
        assert!(line.contains(&tar.len().to_string()), "{line}");
        assert!(line.ends_with("(2 tar members)"), "{line}");
        assert!(text.lines().any(|l| l.ends_with(" notes")));
        assert!(text.ends_with(&format!("total {} bytes\n", tar.len() + 1)));
    }
}
