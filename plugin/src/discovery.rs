//! Which packages a pull covers: the filter, and the names the registry
//! lists (or, in proxy-registry mode, the include list).

use crate::error::{Error, RegistryContext, Result};
use crate::filter::{self, Filter};
use crate::names;
use crate::options::Options;
use crate::ports::{Host, Progress, RegistryError};

/// Where package names are listed: the tags of `<root>/packages`.
pub const PACKAGES_REPO: &str = "packages";

pub enum Discovery {
    /// Selected package names, sorted.
    Names(Vec<String>),
    /// `<root>/packages` does not exist.
    NoRepository,
}

/// Parses and checks the options that select packages; every error here is
/// a usage error, reported before anything is written.
pub fn parse_filter(host: &Host, opts: &Options) -> Result<Filter> {
    let (filter, both) = filter::parse(&opts.include_packages, &opts.exclude_packages)
        .map_err(Error::InvalidOptions)?;
    if both {
        host.warn("both --include-package and --exclude-package were given: the include list wins");
    }
    if opts.proxy_registry && filter.included_names().is_none() {
        return Err(Error::InvalidOptions(
            "--proxy-registry needs --include-package: a proxy cannot list packages".into(),
        ));
    }
    Ok(filter)
}

/// The selected package names. Names the registry lists that are not valid
/// repository components are skipped with a warning.
pub fn package_names(host: &Host, opts: &Options, filter: &Filter) -> Result<Discovery> {
    let listed = if opts.proxy_registry {
        filter.included_names().unwrap_or_default()
    } else {
        let timeout = (opts.access_timeout_ms > 0).then_some(opts.access_timeout_ms);
        match host.registry.list_tags(PACKAGES_REPO, timeout) {
            Ok(tags) => tags,
            Err(RegistryError::NotFound(_)) => return Ok(Discovery::NoRepository),
            Err(e) => return Err(e).ctx(format!("listing packages (tags of {PACKAGES_REPO})")),
        }
    };
    let mut valid = Vec::new();
    for name in listed {
        if names::is_repo_component(&name) {
            valid.push(name);
        } else {
            host.warn(format!(
                "registry lists package {name:?}, which is not a valid repository name; skipped"
            ));
        }
    }
    Ok(Discovery::Names(filter.select_names(&valid)))
}

/// Stops if the call was cancelled, else announces package `i` of `names`.
pub fn start_package(host: &Host, names: &[String], i: usize) -> Result<()> {
    if host.events.cancelled() {
        return Err(Error::Cancelled);
    }
    host.events.progress(Progress::PackageStarted {
        name: names[i].clone(),
        index: i as u32 + 1,
        total: names.len() as u32,
    });
    Ok(())
}
