//! `pull-package-versions`: the release metadata of every package into one
//! `package-versions.tar`, on every pull whatever the filters.

use crate::archive::{self, Member};
use crate::discovery::{self, Discovery};
use crate::error::{Error, FsContext, Result};
use crate::filter::Filter;
use crate::layout::Layout;
use crate::names::PackageRepos;
use crate::options::{Options, PackageSummary, Summary};
use crate::packages::{channel_versions, planned_channels};
use crate::ports::{Host, ImageRef, Progress};
use crate::puller::{self, Image, Placement};
use crate::workdir::{self, WORK_DIR};

pub const ARCHIVE: &str = "package-versions.tar";

pub fn pull_package_versions(host: &Host, opts: &Options) -> Result<Summary> {
    let mut summary = Summary {
        dry_run: opts.dry_run,
        ..Summary::default()
    };
    // The include list only matters as the name source of a proxy; a
    // malformed one was already reported by pull-packages.
    let filter = if opts.proxy_registry {
        discovery::parse_filter(host, opts)?
    } else {
        Filter::All
    };
    let names = match discovery::package_names(host, opts, &filter) {
        Ok(Discovery::Names(names)) => names,
        Ok(Discovery::NoRepository) => return Ok(summary),
        Err(Error::Cancelled) => return Err(Error::Cancelled),
        Err(e) => {
            host.warn(format!("package versions skipped: {e}"));
            return Ok(summary);
        }
    };
    if opts.dry_run {
        for (i, name) in names.iter().enumerate() {
            discovery::start_package(host, &names, i)?;
            summary.packages.push(plan_one(host, opts, name)?);
        }
        return Ok(summary);
    }
    if names.is_empty() {
        return Ok(summary);
    }
    workdir::scoped(host, || pull_all(host, opts, &names, &mut summary))?;
    Ok(summary)
}

fn pull_all(host: &Host, opts: &Options, names: &[String], summary: &mut Summary) -> Result<()> {
    let mut members: Vec<Member> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        discovery::start_package(host, names, i)?;
        let dir = format!("packages/{name}/version");
        match pull_one(host, opts, name, &format!("{WORK_DIR}/{dir}")) {
            Ok(package) if package.images > 0 => {
                members.extend(archive::collect_members(host, WORK_DIR, &dir)?);
                summary.packages.push(package);
            }
            Ok(_) => {}
            Err(Error::Cancelled) => return Err(Error::Cancelled),
            Err(e) => {
                host.warn(format!("package versions of {name} skipped: {e}"));
                let full = format!("{WORK_DIR}/{dir}");
                host.fs.remove(&full).ctx(&full)?;
            }
        }
    }
    if members.is_empty() {
        return Ok(());
    }
    members.sort_by(|a, b| a.path.cmp(&b.path));
    let written = archive::write(host, ARCHIVE, &members, opts.bundle_chunk_size)?;
    host.events.progress(Progress::ArchiveWritten {
        name: ARCHIVE.to_string(),
        size: written.size,
    });
    summary.archives.push(written);
    Ok(())
}

/// Channels, the versions they name, and every tag of the version
/// repository, into one layout.
fn pull_one(host: &Host, opts: &Options, name: &str, dir: &str) -> Result<PackageSummary> {
    let repos = PackageRepos::new(&opts.source_root, name);
    let repo = repos.version();
    let mut layout = Layout::new(dir);

    let channel_refs: Vec<ImageRef> = planned_channels()
        .into_iter()
        .map(|c| ImageRef::new(&repo, c))
        .collect();
    let channels = puller::resolve_and_fetch(host, &channel_refs, |_| {})?;
    store(host, &repos, &mut layout, &channels)?;

    let versions = channel_versions(host, &channels, Some(&layout))?;
    let mut tags = versions.clone();
    tags.extend(listed_tags(host, &repo)?);
    let mut rest: Vec<ImageRef> = Vec::new();
    for tag in tags {
        let r = ImageRef::new(&repo, tag);
        if !layout.has_short_tag(&r.reference) && !rest.contains(&r) {
            rest.push(r);
        }
    }
    let images = puller::resolve_and_fetch(host, &rest, |_| {})?;
    store(host, &repos, &mut layout, &images)?;
    layout.write(host.fs)?;
    for image in channels.iter().chain(&images) {
        if !layout.has_short_tag(&image.source.reference) {
            return Err(Error::Incomplete(format!(
                "{} is missing from its layout",
                image.source
            )));
        }
    }
    Ok(PackageSummary {
        name: name.to_string(),
        versions,
        images: layout.entries().len() as u32,
        vex_images: layout.vex_count() as u32,
    })
}

/// The dry-run plan of one package's release images: the channels the
/// registry has and every listed tag, printed and counted, nothing fetched.
fn plan_one(host: &Host, opts: &Options, name: &str) -> Result<PackageSummary> {
    let repos = PackageRepos::new(&opts.source_root, name);
    let repo = repos.version();
    let channel_refs: Vec<ImageRef> = planned_channels()
        .into_iter()
        .map(|c| ImageRef::new(&repo, c))
        .collect();
    let channels = puller::resolve_and_fetch(host, &channel_refs, |_| {})?;
    let versions = channel_versions(host, &channels, None)?;
    let mut planned: Vec<String> = channels
        .iter()
        .map(|c| c.source.reference.clone())
        .collect();
    for tag in listed_tags(host, &repo)? {
        if !planned.contains(&tag) {
            planned.push(tag);
        }
    }
    if planned.is_empty() {
        host.info(format!("dry run: package {name}: no release images"));
    } else {
        host.info(format!(
            "dry run: package {name}: would pull {} release image(s) into {ARCHIVE}: {}",
            planned.len(),
            planned.join(", ")
        ));
    }
    Ok(PackageSummary {
        name: name.to_string(),
        versions,
        images: planned.len() as u32,
        vex_images: 0,
    })
}

/// The valid tags of a version repository; a registry that cannot list
/// them leaves the channels alone to name the versions.
fn listed_tags(host: &Host, repo: &str) -> Result<Vec<String>> {
    match host.registry.list_tags(repo, None) {
        Ok(listed) => Ok(listed
            .into_iter()
            .filter(|t| crate::names::is_tag(t))
            .collect()),
        Err(crate::ports::RegistryError::Cancelled) => Err(Error::Cancelled),
        Err(e) => {
            host.debug(format!("tags of {repo} not listed: {e}"));
            Ok(Vec::new())
        }
    }
}

fn store(host: &Host, repos: &PackageRepos, layout: &mut Layout, images: &[Image]) -> Result<()> {
    puller::store(host, layout, &Placement::for_images(repos, images))
}
