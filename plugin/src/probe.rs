//! Proxy-registry mode: a pull-through cache refuses tag listing, so the
//! versions a constraint selects are found by asking for tags one by one.

use semver::Version;

use crate::constraint::Range;
use crate::error::{Error, Result};
use crate::ports::{Host, ImageRef};
use crate::puller;

/// A walk that has not stopped after this many probes is a bug or a
/// hostile registry.
const MAX_PROBES: usize = 10_000;

/// Probes `v<M>.<m>.<p>` tags of `repo` in the walk order of the spec and
/// returns the tags that exist, in walk order. A candidate the constraint
/// rejects counts as missing and is never sent.
pub fn probe_versions(host: &Host, repo: &str, range: &Range) -> Result<Vec<String>> {
    let start = range.lowest_literal().ok_or_else(|| {
        Error::InvalidOptions(format!(
            "--proxy-registry: the constraint {:?} names no version to start probing from; \
             write one, e.g. '>=1.2.0'",
            range.source()
        ))
    })?;
    let mut probes = 0;
    let mut exists = |v: &Version| -> Result<bool> {
        if !range.matches(v) {
            return Ok(false);
        }
        probes += 1;
        if probes > MAX_PROBES {
            return Err(Error::Registry(format!(
                "probing {repo}: more than {MAX_PROBES} versions, giving up"
            )));
        }
        if host.events.cancelled() {
            return Err(Error::Cancelled);
        }
        let r = [ImageRef::new(repo, format!("v{v}"))];
        let resolved = puller::resolve(host, &r).pop().expect("one result per ref");
        Ok(resolved?.is_some())
    };
    let mut found = Vec::new();
    let mut v = Version::new(start.major, start.minor, start.patch);
    let mut present = exists(&v)?;
    loop {
        while present {
            found.push(format!("v{v}"));
            v = Version::new(v.major, v.minor, v.patch + 1);
            present = exists(&v)?;
        }
        let next_minor = Version::new(v.major, v.minor + 1, 0);
        let next_major = Version::new(v.major + 1, 0, 0);
        if exists(&next_minor)? {
            v = next_minor;
        } else if exists(&next_major)? {
            v = next_major;
        } else {
            return Ok(found);
        }
        present = true;
    }
}
