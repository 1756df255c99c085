//! `pull-packages`: every selected package into its own `package-<name>.tar`.

use std::collections::BTreeMap;

use crate::archive;
use crate::constraint::Constraint;
use crate::discovery::{self, Discovery};
use crate::error::{Error, FsContext, RegistryContext, Result};
use crate::filter::Filter;
use crate::layout::Layout;
use crate::metadata::{self, ExtraImage};
use crate::names::{CHANNELS, LTS, PackageRepos};
use crate::options::{Options, PackageSummary, Summary};
use crate::ports::{Descriptor, Host, ImageRef, Progress, RegistryError};
use crate::probe;
use crate::puller::{self, Image, Placement, ReadFilesError};
use crate::workdir::{self, WORK_DIR};

/// Attempts and the pause between them when `extra_images.json` cannot be
/// read for a transient reason (SPEC: never silently drop extras).
const EXTRA_READ_ATTEMPTS: u32 = 5;
#[cfg(not(test))]
const EXTRA_READ_DELAY: std::time::Duration = std::time::Duration::from_secs(10);
#[cfg(test)]
const EXTRA_READ_DELAY: std::time::Duration = std::time::Duration::from_millis(1);

pub fn pull_packages(host: &Host, opts: &Options) -> Result<Summary> {
    let filter = discovery::parse_filter(host, opts)?;
    let mut summary = Summary {
        dry_run: opts.dry_run,
        ..Summary::default()
    };
    let names = match discovery::package_names(host, opts, &filter)? {
        Discovery::Names(names) => names,
        Discovery::NoRepository => {
            host.warn("no packages in source: the registry has no packages repository");
            return Ok(summary);
        }
    };
    if names.is_empty() {
        host.warn("no packages selected: nothing to pull");
        return Ok(summary);
    }
    if opts.dry_run {
        pull_all(host, opts, &filter, &names, &mut summary)?;
    } else {
        workdir::scoped(host, || pull_all(host, opts, &filter, &names, &mut summary))?;
    }
    Ok(summary)
}

fn pull_all(
    host: &Host,
    opts: &Options,
    filter: &Filter,
    names: &[String],
    summary: &mut Summary,
) -> Result<()> {
    for (i, name) in names.iter().enumerate() {
        discovery::start_package(host, names, i)?;
        let constraint = filter.constraint(name);
        if opts.dry_run {
            summary
                .packages
                .push(plan_package(host, opts, name, constraint)?);
            continue;
        }
        let mut work = PackageWork::new(opts, name);
        work.pull(host, opts, constraint)?;
        if work.image_count() == 0 {
            host.info(format!("package {name}: no images found, no archive"));
            continue;
        }
        host.events.progress(Progress::Phase {
            package: name.clone(),
            phase: "pack",
        });
        let archive_name = format!("package-{name}.tar");
        let members = archive::collect_members(host, WORK_DIR, &format!("packages/{name}"))?;
        let written = archive::write(host, &archive_name, &members, opts.bundle_chunk_size)?;
        host.events.progress(Progress::ArchiveWritten {
            name: archive_name.clone(),
            size: written.size,
        });
        let dir = format!("{WORK_DIR}/packages/{name}");
        host.fs.remove(&dir).ctx(&dir)?;
        summary.packages.push(work.summary());
        summary.archives.push(written);
    }
    Ok(())
}

/// The channels planned for every package: the five defaults and `lts`
/// (which most packages do not have; a missing channel is not an error).
fn channel_tags() -> impl Iterator<Item = &'static str> {
    CHANNELS.into_iter().chain([LTS])
}

/// A package's layouts while they are being filled.
struct PackageWork {
    repos: PackageRepos,
    main: Layout,
    version: Layout,
    extras: BTreeMap<String, Layout>,
    versions: Vec<String>,
    /// Images stored in the main and extra layouts (by tag or digest), the
    /// ones whose VEX attestations are looked up.
    attestable: Vec<(LayoutKey, Image)>,
    /// Short tags each layout must hold once written.
    expected: Vec<(LayoutKey, String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum LayoutKey {
    Main,
    Version,
    Extra(String),
}

impl PackageWork {
    fn new(opts: &Options, name: &str) -> Self {
        let base = format!("{WORK_DIR}/packages/{name}");
        Self {
            repos: PackageRepos::new(&opts.source_root, name),
            main: Layout::new(base.clone()),
            version: Layout::new(format!("{base}/version")),
            extras: BTreeMap::new(),
            versions: Vec::new(),
            attestable: Vec::new(),
            expected: Vec::new(),
        }
    }

    fn layout(&mut self, key: &LayoutKey) -> &mut Layout {
        match key {
            LayoutKey::Main => &mut self.main,
            LayoutKey::Version => &mut self.version,
            LayoutKey::Extra(x) => {
                let dir = format!("{}/extra/{x}", self.main.dir());
                self.extras
                    .entry(x.clone())
                    .or_insert_with(|| Layout::new(dir))
            }
        }
    }

    fn layouts(&self) -> impl Iterator<Item = &Layout> {
        [&self.main, &self.version]
            .into_iter()
            .chain(self.extras.values())
    }

    fn image_count(&self) -> usize {
        self.layouts().map(|l| l.entries().len()).sum()
    }

    fn summary(&self) -> PackageSummary {
        PackageSummary {
            name: self.repos.name.clone(),
            versions: self.versions.clone(),
            images: self.image_count() as u32,
            vex_images: self.layouts().map(Layout::vex_count).sum::<usize>() as u32,
        }
    }

    fn pull(&mut self, host: &Host, opts: &Options, constraint: Option<&Constraint>) -> Result<()> {
        let name = self.repos.name.clone();
        let phase = |phase| {
            host.events.progress(Progress::Phase {
                package: name.clone(),
                phase,
            })
        };

        phase("channels");
        let pins = match constraint {
            Some(Constraint::Exact(pins)) => Some(pins.clone()),
            _ => None,
        };
        if pins.is_none() {
            let channel_versions = self.pull_channels(host, opts)?;
            extend_unique(&mut self.versions, channel_versions);
        }
        match constraint {
            Some(Constraint::Range(range)) => {
                let tags = if opts.proxy_registry {
                    probe::probe_versions(host, &self.repos.main(), range)?
                } else {
                    list_package_tags(host, &self.repos)?
                };
                extend_unique(&mut self.versions, range.select(&tags));
            }
            Some(Constraint::Exact(pins)) => {
                extend_unique(
                    &mut self.versions,
                    pins.iter().map(|p| p.tag.clone()).collect(),
                );
            }
            None => {}
        }
        host.debug(format!("package {name}: versions {:?}", self.versions));

        let main_images = if opts.only_extra_images {
            Vec::new()
        } else {
            phase("images");
            let main_images = self.pull_versions(host)?;
            self.pull_internal_images(host, &main_images)?;
            main_images
        };

        phase("extra");
        self.pull_extras(host, opts, &main_images)?;

        if !opts.skip_vex_images {
            phase("vex");
            self.pull_vex(host)?;
        }

        if let (Some(pins), false) = (&pins, opts.only_extra_images) {
            self.add_channel_aliases(pins);
        }
        self.write_and_check(host)
    }

    /// Resolves the channels, pulls their images into `version/` (unless
    /// only extra images are wanted) and returns the versions they name.
    fn pull_channels(&mut self, host: &Host, opts: &Options) -> Result<Vec<String>> {
        let repo = self.repos.version();
        let refs: Vec<ImageRef> = channel_tags().map(|c| ImageRef::new(&repo, c)).collect();
        let images = puller::resolve_and_fetch(host, &refs, |r| {
            host.debug(format!("channel {r} does not exist"));
        })?;
        if !opts.only_extra_images {
            self.store(host, &LayoutKey::Version, &images)?;
        }
        let mut versions = Vec::new();
        for image in &images {
            let layout = (!opts.only_extra_images).then_some(&self.version);
            let files = puller::read_image_files(host, image, layout, &[metadata::VERSION_JSON])
                .map_err(|e| e.into_error(format!("reading version.json of {}", image.source)))?;
            match files.get(metadata::VERSION_JSON) {
                None => host.warn(format!("{}: no version.json in the image", image.source)),
                Some(content) => match metadata::parse_version_json(content) {
                    Ok(v) => versions.push(v),
                    Err(e) => host.warn(format!("{}: {e}", image.source)),
                },
            }
        }
        Ok(versions)
    }

    /// Pulls `<name>:<version>` into the main layout and `version:<version>`
    /// into `version/`, returning the main images.
    fn pull_versions(&mut self, host: &Host) -> Result<Vec<Image>> {
        let main_repo = self.repos.main();
        let refs: Vec<ImageRef> = self
            .versions
            .iter()
            .map(|v| ImageRef::new(&main_repo, v))
            .collect();
        let main_images = puller::resolve_and_fetch(host, &refs, |r| {
            host.warn(format!("{r}: the package image does not exist, skipped"));
        })?;
        self.store(host, &LayoutKey::Main, &main_images)?;

        let version_repo = self.repos.version();
        let refs: Vec<ImageRef> = self
            .versions
            .iter()
            .filter(|v| !self.version.has_short_tag(v))
            .map(|v| ImageRef::new(&version_repo, v))
            .collect();
        let version_images = puller::resolve_and_fetch(host, &refs, |r| {
            host.debug(format!("{r} does not exist"));
        })?;
        self.store(host, &LayoutKey::Version, &version_images)?;
        Ok(main_images)
    }

    /// Internal images listed by digest in each version's
    /// `images_digests.json`. Failures are logged, not fatal (as in `d8`).
    fn pull_internal_images(&mut self, host: &Host, main_images: &[Image]) -> Result<()> {
        let mut digests: Vec<String> = Vec::new();
        for image in main_images {
            let files = puller::read_image_files(
                host,
                image,
                Some(&self.main),
                &[metadata::IMAGES_DIGESTS_JSON],
            );
            let content = match files {
                Ok(mut f) => f.remove(metadata::IMAGES_DIGESTS_JSON),
                Err(ReadFilesError::Registry(RegistryError::Cancelled)) => {
                    return Err(Error::Cancelled);
                }
                Err(e) => {
                    let e =
                        e.into_error(format!("reading images_digests.json of {}", image.source));
                    if e == Error::Cancelled {
                        return Err(e);
                    }
                    host.warn(e.to_string());
                    None
                }
            };
            let Some(content) = content else { continue };
            match metadata::parse_images_digests(&content) {
                Ok(found) => extend_unique(&mut digests, found),
                Err(e) => host.warn(format!("{}: {e}", image.source)),
            }
        }
        if digests.is_empty() {
            return Ok(());
        }
        let repo = self.repos.main();
        let refs: Vec<ImageRef> = digests.iter().map(|d| ImageRef::new(&repo, d)).collect();
        let mut images = Vec::new();
        for (r, resolved) in refs.iter().zip(puller::resolve(host, &refs)) {
            match resolved {
                Ok(Some(d)) => images.push((r.clone(), d)),
                Ok(None) => host.warn(format!("internal image {r} does not exist, skipped")),
                Err(Error::Cancelled) => return Err(Error::Cancelled),
                Err(e) => host.warn(format!("internal image skipped: {e}")),
            }
        }
        let mut fetched = Vec::new();
        for result in puller::fetch_images(host, &images) {
            match result {
                Ok(image) => fetched.push(image),
                Err(Error::Cancelled) => return Err(Error::Cancelled),
                Err(e) => host.warn(format!("internal image skipped: {e}")),
            }
        }
        self.store(host, &LayoutKey::Main, &fetched)
    }

    /// Extra images named by each version's `extra_images.json`.
    fn pull_extras(&mut self, host: &Host, opts: &Options, main_images: &[Image]) -> Result<()> {
        let sources: Vec<Image> = if opts.only_extra_images {
            let repo = self.repos.main();
            let refs: Vec<ImageRef> = self
                .versions
                .iter()
                .map(|v| ImageRef::new(&repo, v))
                .collect();
            puller::resolve_and_fetch(host, &refs, |r| {
                host.warn(format!(
                    "{r}: the package image does not exist, no extra images from it"
                ));
            })?
        } else {
            main_images.to_vec()
        };
        let mut wanted: Vec<ExtraImage> = Vec::new();
        for image in sources.iter().filter(|i| !i.source.is_digest()) {
            let layout = (!opts.only_extra_images).then_some(&self.main);
            let Some(content) = read_extra_images_json(host, image, layout)? else {
                continue;
            };
            let (extras, skipped) = metadata::parse_extra_images(&content)
                .map_err(|e| Error::Registry(format!("{}: {e}", image.source)))?;
            for s in skipped {
                host.warn(format!("{}: extra_images.json: {s}, skipped", image.source));
            }
            for extra in extras {
                if !wanted.contains(&extra) {
                    wanted.push(extra);
                }
            }
        }
        let mut by_name: BTreeMap<String, Vec<ImageRef>> = BTreeMap::new();
        for extra in &wanted {
            by_name
                .entry(extra.name.clone())
                .or_default()
                .push(ImageRef::new(self.repos.extra(&extra.name), &extra.tag));
        }
        for (name, refs) in by_name {
            let images = puller::resolve_and_fetch(host, &refs, |r| {
                host.warn(format!("extra image {r} does not exist, skipped"));
            })?;
            self.store(host, &LayoutKey::Extra(name), &images)?;
        }
        Ok(())
    }

    /// VEX attestations of every image in the main and extra layouts:
    /// `<tag>.att` (what `d8` checks) and `sha256-<hex>.att` (cosign's
    /// convention) for the digest the reference resolved to and, for an
    /// index, for the platform image. Lookup errors are logged, not fatal.
    fn pull_vex(&mut self, host: &Host) -> Result<()> {
        let mut candidates: Vec<(LayoutKey, ImageRef)> = Vec::new();
        for (key, image) in &self.attestable {
            let repo = &image.source.repo;
            let mut tags = Vec::new();
            if !image.source.is_digest() {
                tags.push(format!("{}.att", image.source.reference));
            }
            tags.extend(puller::digest_att_tag(&image.resolved.digest));
            if image.manifest.descriptor.digest != image.resolved.digest {
                tags.extend(puller::digest_att_tag(&image.manifest.descriptor.digest));
            }
            for tag in tags {
                let r = ImageRef::new(repo, tag);
                if !candidates.iter().any(|(k, c)| k == key && *c == r) {
                    candidates.push((key.clone(), r));
                }
            }
        }
        let refs: Vec<ImageRef> = candidates.iter().map(|(_, r)| r.clone()).collect();
        let mut found: Vec<(LayoutKey, ImageRef, Descriptor)> = Vec::new();
        for ((key, r), resolved) in candidates.into_iter().zip(puller::resolve(host, &refs)) {
            match resolved {
                Ok(Some(d)) => found.push((key, r, d)),
                Ok(None) => {}
                Err(Error::Cancelled) => return Err(Error::Cancelled),
                Err(e) => host.warn(format!("VEX lookup failed: {e}")),
            }
        }
        let items: Vec<(ImageRef, Descriptor)> = found
            .iter()
            .map(|(_, r, d)| (r.clone(), d.clone()))
            .collect();
        let images = puller::fetch_images(host, &items);
        let mut per_layout: Vec<(LayoutKey, Vec<Image>)> = Vec::new();
        for ((key, _, _), image) in found.into_iter().zip(images) {
            let image = image?;
            match per_layout.iter_mut().find(|(k, _)| *k == key) {
                Some((_, list)) => list.push(image),
                None => per_layout.push((key, vec![image])),
            }
        }
        for (key, images) in per_layout {
            self.store_images(host, &key, &images, false)?;
        }
        Ok(())
    }

    /// A single pin without a channel is published to every channel; a pin
    /// written `+channel` to that channel; several channel-less pins are left
    /// alone (they would overwrite each other).
    fn add_channel_aliases(&mut self, pins: &[crate::constraint::Pin]) {
        let repo = self.repos.version();
        for pin in pins {
            let channels: Vec<&str> = match &pin.channel {
                Some(c) => vec![c.as_str()],
                None if pins.len() == 1 => channel_tags().collect(),
                None => continue,
            };
            let Some(entry) = self
                .version
                .entries()
                .iter()
                .find(|e| e.short_tag() == pin.tag)
                .cloned()
            else {
                continue;
            };
            let descriptor = Descriptor {
                media_type: entry.media_type.clone(),
                digest: entry.digest.clone(),
                size: entry.size,
            };
            for channel in channels {
                let ref_name = self.repos.ref_name(&repo, channel);
                self.version.add(&descriptor, &ref_name, channel);
                self.expected
                    .push((LayoutKey::Version, channel.to_string(), ref_name));
            }
        }
    }

    fn store(&mut self, host: &Host, key: &LayoutKey, images: &[Image]) -> Result<()> {
        let attestable = !matches!(key, LayoutKey::Version);
        self.store_images(host, key, images, attestable)
    }

    fn store_images(
        &mut self,
        host: &Host,
        key: &LayoutKey,
        images: &[Image],
        attestable: bool,
    ) -> Result<()> {
        let placements = Placement::for_images(&self.repos, images);
        puller::store(host, self.layout(key), &placements)?;
        for p in &placements {
            self.expected
                .push((key.clone(), p.short_tag.clone(), p.ref_name.clone()));
        }
        if attestable {
            self.attestable
                .extend(images.iter().map(|i| (key.clone(), i.clone())));
        }
        Ok(())
    }

    /// Writes every layout and checks, on disk, that each image that was
    /// planned and found is in its `index.json` with its manifest blob.
    fn write_and_check(&mut self, host: &Host) -> Result<()> {
        self.main.write(host.fs)?;
        self.version.write(host.fs)?;
        for layout in self.extras.values_mut() {
            layout.write(host.fs)?;
        }
        let mut missing = Vec::new();
        for key in [LayoutKey::Main, LayoutKey::Version]
            .into_iter()
            .chain(self.extras.keys().cloned().map(LayoutKey::Extra))
            .collect::<Vec<_>>()
        {
            let dir = self.layout(&key).dir().to_string();
            let wanted: Vec<&(LayoutKey, String, String)> =
                self.expected.iter().filter(|(k, _, _)| *k == key).collect();
            if wanted.is_empty() {
                continue;
            }
            let entries = Layout::read_index(host.fs, &dir)?;
            for (_, short_tag, ref_name) in wanted {
                let present = match entries.iter().find(|e| e.short_tag() == short_tag) {
                    Some(e) => {
                        let blob = crate::layout::blob_path(&dir, &e.digest);
                        host.fs.stat(&blob).ctx(&blob)?.is_some()
                    }
                    None => false,
                };
                if !present {
                    missing.push(ref_name.clone());
                }
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::Incomplete(format!(
                "package {}: images missing from the bundle: {}",
                self.repos.name,
                missing.join(", ")
            )))
        }
    }
}

/// Reads `extra_images.json` of a version's main image, retrying transient
/// registry failures; absent image or file → `None`.
fn read_extra_images_json(
    host: &Host,
    image: &Image,
    layout: Option<&Layout>,
) -> Result<Option<Vec<u8>>> {
    let mut attempt = 1;
    loop {
        match puller::read_image_files(host, image, layout, &[metadata::EXTRA_IMAGES_JSON]) {
            Ok(mut files) => return Ok(files.remove(metadata::EXTRA_IMAGES_JSON)),
            Err(ReadFilesError::Registry(RegistryError::NotFound(_))) => return Ok(None),
            Err(ReadFilesError::Registry(RegistryError::Other(cause)))
                if attempt < EXTRA_READ_ATTEMPTS =>
            {
                host.warn(format!(
                    "{}: reading extra_images.json failed (attempt {attempt} of {EXTRA_READ_ATTEMPTS}): {cause}; retrying",
                    image.source
                ));
                attempt += 1;
                if host.events.cancelled() {
                    return Err(Error::Cancelled);
                }
                std::thread::sleep(EXTRA_READ_DELAY);
            }
            Err(e) => {
                return Err(e.into_error(format!(
                    "reading extra_images.json of {} (the pull stops rather than drop extra images)",
                    image.source
                )));
            }
        }
    }
}

/// Tags of `<root>/packages/<name>`; a missing repository is a warning.
fn list_package_tags(host: &Host, repos: &PackageRepos) -> Result<Vec<String>> {
    match host.registry.list_tags(&repos.main(), None) {
        Ok(tags) => Ok(tags),
        Err(RegistryError::NotFound(_)) => {
            host.warn(format!(
                "package {}: its repository has no tags, no versions from the constraint",
                repos.name
            ));
            Ok(Vec::new())
        }
        Err(e) => Err(e).ctx(format!("listing versions of package {}", repos.name)),
    }
}

fn extend_unique(into: &mut Vec<String>, items: Vec<String>) {
    for item in items {
        if !into.contains(&item) {
            into.push(item);
        }
    }
}

/// The dry-run plan of one package: what would be pulled, printed.
fn plan_package(
    host: &Host,
    opts: &Options,
    name: &str,
    constraint: Option<&Constraint>,
) -> Result<PackageSummary> {
    let repos = PackageRepos::new(&opts.source_root, name);
    let mut versions = Vec::new();
    let mut planned: Vec<ImageRef> = Vec::new();
    let exact = matches!(constraint, Some(Constraint::Exact(_)));
    if !exact {
        let refs: Vec<ImageRef> = channel_tags()
            .map(|c| ImageRef::new(repos.version(), c))
            .collect();
        let images = puller::resolve_and_fetch(host, &refs, |_| {})?;
        if !opts.only_extra_images {
            planned.extend(images.iter().map(|i| i.source.clone()));
        }
        versions = channel_versions(host, &images, None)?;
    }
    match constraint {
        Some(Constraint::Range(range)) => {
            let tags = if opts.proxy_registry {
                probe::probe_versions(host, &repos.main(), range)?
            } else {
                list_package_tags(host, &repos)?
            };
            extend_unique(&mut versions, range.select(&tags));
        }
        Some(Constraint::Exact(pins)) => {
            extend_unique(&mut versions, pins.iter().map(|p| p.tag.clone()).collect());
        }
        None => {}
    }
    if !opts.only_extra_images {
        let candidates: Vec<ImageRef> = versions
            .iter()
            .flat_map(|v| {
                [
                    ImageRef::new(repos.main(), v),
                    ImageRef::new(repos.version(), v),
                ]
            })
            .filter(|r| !planned.contains(r))
            .collect();
        for (r, resolved) in candidates.iter().zip(puller::resolve(host, &candidates)) {
            if resolved?.is_some() {
                planned.push(r.clone());
            }
        }
    }
    host.info(format!(
        "dry run: package {name}: versions {}",
        if versions.is_empty() {
            "(none)".to_string()
        } else {
            versions.join(", ")
        }
    ));
    for r in &planned {
        host.info(format!(
            "dry run:   would pull {}",
            repos.ref_name(&r.repo, &r.reference)
        ));
    }
    host.info(format!(
        "dry run:   extra images and VEX attestations of {name} are known only after a real pull"
    ));
    Ok(PackageSummary {
        name: name.to_string(),
        versions,
        images: planned.len() as u32,
        vex_images: 0,
    })
}

/// The versions the channels name (their `version.json`), each once, in
/// channel order. A channel without a usable `version.json` names none:
/// `pull_channels` warns about it. Reads from `layout` when the
/// images are stored there, else from the registry.
pub fn channel_versions(
    host: &Host,
    channels: &[Image],
    layout: Option<&Layout>,
) -> Result<Vec<String>> {
    let mut versions: Vec<String> = Vec::new();
    for image in channels {
        let files = puller::read_image_files(host, image, layout, &[metadata::VERSION_JSON])
            .map_err(|e| e.into_error(format!("reading version.json of {}", image.source)))?;
        if let Some(Ok(v)) = files
            .get(metadata::VERSION_JSON)
            .map(|c| metadata::parse_version_json(c))
            && !versions.contains(&v)
        {
            versions.push(v);
        }
    }
    Ok(versions)
}

/// Names of the five default channels and `lts`, for other modules.
pub fn planned_channels() -> Vec<&'static str> {
    channel_tags().collect()
}
