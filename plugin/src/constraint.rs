//! The version-constraint dialect of `--include-package name@constraint`:
//! the Masterminds/semver dialect Go tools speak (not Cargo's), parsed here on
//! top of `semver::Version`, plus `d8`'s exact pins and bare-version rule.

use semver::Version;

use crate::names;

/// A parsed constraint as the package selection uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Constraint {
    /// `=vX.Y.Z` pins (OR-combined): exactly these tags, optionally aliased to
    /// a channel; no channels and no tag listing.
    Exact(Vec<Pin>),
    /// Any other constraint: OR of AND-groups.
    Range(Range),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// The tag to pull, always with a leading `v`.
    pub tag: String,
    /// The channel written after `+`, if any.
    pub channel: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    /// The text as the user wrote it.
    source: String,
    groups: Vec<Vec<Comparator>>,
    /// Versions written after an inclusive bound (`>=`, `=>`, `<=`, `=<`, the
    /// ends of a hyphen range): restored after the latest-patch reduction.
    anchors: Vec<Version>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// No operator: `>= v` within the same major (for 0.x: the whole 0.x line).
    Bare,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Tilde,
    Caret,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Comparator {
    op: Op,
    version: Version,
    /// `*`/`x` as the major: matches anything.
    any: bool,
    /// Minor (and so patch) missing or a wildcard.
    minor_dirty: bool,
    /// Patch missing or a wildcard.
    patch_dirty: bool,
}

/// Parses the text after `@`. `text` is already trimmed and non-empty.
pub fn parse(text: &str) -> Result<Constraint, String> {
    if let Some(pins) = parse_exact(text)? {
        return Ok(Constraint::Exact(pins));
    }
    parse_range(text).map(Constraint::Range)
}

/// `=vX.Y.Z` or `=vX.Y.Z+channel`, possibly several joined by `||`.
fn parse_exact(text: &str) -> Result<Option<Vec<Pin>>, String> {
    let mut pins = Vec::new();
    for part in text.split("||") {
        let part = part.trim();
        let Some(rest) = part.strip_prefix('=') else {
            return Ok(None);
        };
        if rest.starts_with('<') || rest.starts_with('>') {
            return Ok(None);
        }
        let rest = rest.trim();
        let (version, channel) = match rest.split_once('+') {
            Some((v, c)) => (v, Some(c)),
            None => (rest, None),
        };
        let bare = version.strip_prefix('v').unwrap_or(version);
        // Only a full X.Y.Z is a pin; `=1.2` is a range over 1.2.x.
        if bare.split('.').count() != 3 || bare.split('.').any(is_wildcard) {
            return Ok(None);
        }
        let parsed =
            Version::parse(bare).map_err(|e| format!("{version:?} is not a version: {e}"))?;
        if let Some(c) = channel.filter(|c| !names::is_channel(c)) {
            return Err(format!(
                "unknown channel {c:?} after '+' (channels: alpha, beta, early-access, stable, rock-solid, lts)"
            ));
        }
        let tag = format!("v{parsed}");
        if !names::is_tag(&tag) {
            return Err(format!("{version:?} cannot be a tag"));
        }
        pins.push(Pin {
            tag,
            channel: channel.map(str::to_string),
        });
    }
    Ok(Some(pins))
}

fn parse_range(text: &str) -> Result<Range, String> {
    let mut groups = Vec::new();
    let mut anchors = Vec::new();
    for group in text.split("||") {
        let group = group.trim();
        if group.is_empty() {
            return Err("empty alternative around '||'".into());
        }
        groups.push(parse_group(group, &mut anchors)?);
    }
    Ok(Range {
        source: text.to_string(),
        groups,
        anchors,
    })
}

/// One AND-group: comparators separated by commas or spaces, where a
/// hyphen range `A - B` means `>=A, <=B`.
fn parse_group(group: &str, anchors: &mut Vec<Version>) -> Result<Vec<Comparator>, String> {
    let tokens = tokenize(group);
    let mut comparators = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens.get(i + 1).map(String::as_str) == Some("-") {
            let (Some(low), Some(high)) = (tokens.get(i), tokens.get(i + 2)) else {
                return Err(format!("incomplete hyphen range in {group:?}"));
            };
            let low = parse_comparator(&format!(">={low}"))?;
            let high = parse_comparator(&format!("<={high}"))?;
            anchors.extend([low.version.clone(), high.version.clone()]);
            comparators.extend([low, high]);
            i += 3;
            continue;
        }
        let token = &tokens[i];
        let comparator = parse_comparator(token)?;
        if matches!(comparator.op, Op::Ge | Op::Le) && !comparator.any {
            anchors.push(comparator.version.clone());
        }
        comparators.push(comparator);
        i += 1;
    }
    if comparators.is_empty() {
        return Err(format!("no version in {group:?}"));
    }
    Ok(comparators)
}

/// Splits on commas and spaces, keeping an operator with the version that
/// follows it (`>= 1.2` is one comparator).
fn tokenize(group: &str) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut pending_op = String::new();
    for raw in group.split([',', ' ', '\t']).filter(|t| !t.is_empty()) {
        if raw != "-" && raw.chars().all(|c| "=<>!~^".contains(c)) {
            pending_op.push_str(raw);
            continue;
        }
        tokens.push(format!("{pending_op}{raw}"));
        pending_op.clear();
    }
    if !pending_op.is_empty() {
        tokens.push(pending_op);
    }
    tokens
}

fn parse_comparator(token: &str) -> Result<Comparator, String> {
    let (op, rest) = split_op(token);
    let literal = rest.strip_prefix('v').unwrap_or(rest);
    if literal.is_empty() {
        return Err(format!("{token:?} has no version"));
    }
    let (core, suffix) = match literal.find(['-', '+']) {
        Some(pos) => literal.split_at(pos),
        None => (literal, ""),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!("{token:?} is not a version"));
    }
    let number = |i: usize| -> Result<Option<u64>, String> {
        match parts.get(i) {
            None => Ok(None),
            Some(p) if is_wildcard(p) => Ok(None),
            Some(p) => p
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("{token:?} is not a version")),
        }
    };
    let (major, minor, patch) = (number(0)?, number(1)?, number(2)?);
    let any = major.is_none();
    let minor_dirty = any || minor.is_none();
    let patch_dirty = minor_dirty || patch.is_none();
    // A wildcard followed by a number (`1.x.3`) is not a version.
    if (minor_dirty && patch.is_some()) || (any && minor.is_some()) {
        return Err(format!("{token:?} is not a version"));
    }
    let text = format!(
        "{}.{}.{}{suffix}",
        major.unwrap_or(0),
        minor.unwrap_or(0),
        patch.unwrap_or(0)
    );
    let version = Version::parse(&text).map_err(|e| format!("{token:?} is not a version: {e}"))?;
    // Wildcards without an operator behave like `~` (the Masterminds rule).
    let op = match op {
        Op::Bare if patch_dirty && parts.iter().any(|p| is_wildcard(p)) => Op::Tilde,
        Op::Eq if patch_dirty => Op::Tilde,
        other => other,
    };
    Ok(Comparator {
        op,
        version,
        any,
        minor_dirty,
        patch_dirty,
    })
}

fn split_op(token: &str) -> (Op, &str) {
    const OPS: [(&str, Op); 12] = [
        (">=", Op::Ge),
        ("=>", Op::Ge),
        ("<=", Op::Le),
        ("=<", Op::Le),
        ("!=", Op::Ne),
        ("~>", Op::Tilde),
        (">", Op::Gt),
        ("<", Op::Lt),
        ("=", Op::Eq),
        ("~", Op::Tilde),
        ("^", Op::Caret),
        ("", Op::Bare),
    ];
    OPS.iter()
        .find_map(|(prefix, op)| token.strip_prefix(prefix).map(|rest| (*op, rest.trim())))
        .expect("the empty prefix always matches")
}

fn is_wildcard(part: &str) -> bool {
    matches!(part, "x" | "X" | "*")
}

impl Range {
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, v: &Version) -> bool {
        self.groups
            .iter()
            .any(|group| group.iter().all(|c| c.matches(v)))
    }

    /// The smallest version literal of the constraint, where a probe walk
    /// starts (proxy-registry mode). `None` when it names no version.
    pub fn lowest_literal(&self) -> Option<&Version> {
        self.groups
            .iter()
            .flatten()
            .filter(|c| !c.any)
            .map(|c| &c.version)
            .min()
    }

    /// The versions to pull from a tag list: the matching tags reduced to
    /// the highest patch of each (major, minor), plus the anchors the
    /// registry has and the constraint accepts. Returns tags as listed,
    /// sorted by version.
    pub fn select(&self, tags: &[String]) -> Vec<String> {
        let mut matching: Vec<(Version, &String)> = tags
            .iter()
            .filter_map(|t| parse_tag(t).map(|v| (v, t)))
            .filter(|(v, _)| self.matches(v))
            .collect();
        matching.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        matching.dedup_by(|a, b| a.0 == b.0);
        let mut chosen: Vec<(Version, &String)> = Vec::new();
        for (v, t) in &matching {
            match chosen.last_mut() {
                Some(last) if last.0.major == v.major && last.0.minor == v.minor => {
                    *last = (v.clone(), t)
                }
                _ => chosen.push((v.clone(), t)),
            }
        }
        for anchor in &self.anchors {
            if let Some((v, t)) = matching.iter().find(|(v, _)| v == anchor)
                && !chosen.iter().any(|(c, _)| c == v)
            {
                chosen.push((v.clone(), t));
            }
        }
        chosen.sort_by(|a, b| a.0.cmp(&b.0));
        chosen.into_iter().map(|(_, t)| t.clone()).collect()
    }
}

/// A tag as a version: `v1.2.3` or `1.2.3`; anything else is ignored.
pub fn parse_tag(tag: &str) -> Option<Version> {
    Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

impl Comparator {
    fn matches(&self, v: &Version) -> bool {
        // Pre-releases match only constraints that name a pre-release.
        if !v.pre.is_empty() && self.version.pre.is_empty() {
            return false;
        }
        if self.any {
            return !matches!(self.op, Op::Lt | Op::Gt | Op::Ne);
        }
        let c = &self.version;
        let cmp = cmp_ignoring_build(v, c);
        match self.op {
            Op::Bare => v >= c && v.major == c.major,
            Op::Eq => cmp.is_eq(),
            Op::Ne => !cmp.is_eq(),
            Op::Ge => cmp.is_ge(),
            Op::Lt => cmp.is_lt(),
            Op::Gt => {
                if self.minor_dirty {
                    v.major > c.major
                } else if self.patch_dirty {
                    v.major > c.major || (v.major == c.major && v.minor > c.minor)
                } else {
                    cmp.is_gt()
                }
            }
            Op::Le => {
                if self.minor_dirty {
                    v.major <= c.major
                } else if self.patch_dirty {
                    v.major < c.major || (v.major == c.major && v.minor <= c.minor)
                } else {
                    cmp.is_le()
                }
            }
            Op::Tilde => {
                cmp.is_ge()
                    && (c.major == 0 && c.minor == 0 && c.patch == 0 && !self.minor_dirty
                        || v.major == c.major && (self.minor_dirty || v.minor == c.minor))
            }
            Op::Caret => {
                if !cmp.is_ge() || v.major != c.major {
                    false
                } else if c.major > 0 || self.minor_dirty {
                    true
                } else if c.minor > 0 || self.patch_dirty {
                    v.minor == c.minor
                } else {
                    v.minor == 0 && v.patch == c.patch
                }
            }
        }
    }
}

fn cmp_ignoring_build(a: &Version, b: &Version) -> std::cmp::Ordering {
    (a.major, a.minor, a.patch, &a.pre).cmp(&(b.major, b.minor, b.patch, &b.pre))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> Range {
        match parse(text).unwrap() {
            Constraint::Range(r) => r,
            other => panic!("{text}: expected a range, got {other:?}"),
        }
    }

    fn tags(list: &str) -> Vec<String> {
        list.split_whitespace().map(str::to_string).collect()
    }

    fn select(constraint: &str, list: &str) -> String {
        range(constraint).select(&tags(list)).join(" ")
    }

    #[test]
    fn the_three_cases_of_the_spec() {
        assert_eq!(
            select(
                "^1.3.0",
                "v1.0.0 v1.1.0 v1.2.0 v1.3.0 v1.3.1 v1.3.2 v1.3.3 v1.4.0 v1.4.1"
            ),
            "v1.3.3 v1.4.1"
        );
        assert_eq!(
            select(
                ">=1.6.0 <1.8.0",
                "v1.6.0 v1.6.1 v1.6.2 v1.6.3 v1.6.4 v1.6.5 v1.7.0 v1.7.1 v1.8.0"
            ),
            "v1.6.0 v1.6.5 v1.7.1"
        );
        assert_eq!(
            select("0.4.0", "v0.4.2 v0.4.4 v0.5.1 v0.5.3 v0.6.1 v0.7.2"),
            "v0.4.4 v0.5.3 v0.6.1 v0.7.2"
        );
    }

    #[test]
    fn every_form_matches_as_masterminds_does() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            // (constraint, matching, not matching)
            ("^1.2.0", &["1.2.0", "1.9.9"], &["1.1.9", "2.0.0"]),
            ("^0.2.3", &["0.2.3", "0.2.9"], &["0.3.0", "0.2.2"]),
            ("^0.0.3", &["0.0.3"], &["0.0.4", "0.1.0"]),
            ("^1.2", &["1.2.0", "1.5.0"], &["2.0.0"]),
            ("~1.2.0", &["1.2.0", "1.2.9"], &["1.3.0"]),
            ("~1", &["1.0.0", "1.9.0"], &["2.0.0"]),
            ("~>1.2", &["1.2.5"], &["1.3.0"]),
            (">1.0", &["1.1.0", "2.0.0"], &["1.0.5", "1.0.0"]),
            (">1", &["2.0.0"], &["1.9.9"]),
            (">=1.2.0", &["1.2.0", "3.0.0"], &["1.1.9"]),
            ("=>1.2.0", &["1.2.0"], &["1.1.9"]),
            ("<1.4", &["1.3.9"], &["1.4.0"]),
            ("<=1.5", &["1.5.9", "1.0.0"], &["1.6.0"]),
            ("=<1.5.0", &["1.5.0"], &["1.5.1"]),
            ("=1.2.x", &["1.2.7"], &["1.3.0"]),
            ("1.2.x", &["1.2.0", "1.2.9"], &["1.3.0", "1.1.0"]),
            ("1.x", &["1.0.0", "1.9.0"], &["2.0.0"]),
            ("*", &["0.0.1", "9.0.0"], &[]),
            ("1.2 - 1.4", &["1.2.0", "1.4.9"], &["1.1.9", "1.5.0"]),
            ("v1.2.0 - v1.4.0", &["1.4.0"], &["1.4.1"]),
            (">=1.2.0, <1.4.0", &["1.3.5"], &["1.4.0"]),
            (">= 1.2.0 < 1.4.0", &["1.3.5"], &["1.4.0"]),
            (">=v1.2.0 <v1.4.0", &["1.2.0"], &["1.4.0"]),
            ("^1.0.0 || ^3.0.0", &["1.5.0", "3.1.0"], &["2.0.0"]),
            ("1.2.3", &["1.2.3", "1.9.0"], &["1.2.2", "2.0.0"]),
            ("0.4.0", &["0.4.0", "0.9.9"], &["1.0.0", "0.3.9"]),
            ("1.64", &["1.64.0", "1.99.0"], &["1.63.0", "2.0.0"]),
            ("!=1.2.3", &["1.2.4"], &["1.2.3"]),
            ("=1.2", &["1.2.5"], &["1.3.0"]),
            (">=1.0.0", &["1.5.0"], &["1.6.0-rc.1"]),
            (">=1.0.0-rc.1", &["1.0.0-rc.2", "1.0.0"], &["1.0.0-beta.1"]),
        ];
        for (text, yes, no) in cases {
            let r = range(text);
            for v in *yes {
                assert!(
                    r.matches(&Version::parse(v).unwrap()),
                    "{text} should match {v}"
                );
            }
            for v in *no {
                assert!(
                    !r.matches(&Version::parse(v).unwrap()),
                    "{text} should not match {v}"
                );
            }
        }
    }

    #[test]
    fn anchors_only_when_present_and_inclusive() {
        // `>=` anchor restored; `<=` anchor absent from the registry is not invented.
        assert_eq!(
            select(">=1.1.0 <=1.3.0", "v1.1.0 v1.1.5 v1.2.0"),
            "v1.1.0 v1.1.5 v1.2.0"
        );
        // `>` and `^` create no anchors.
        assert_eq!(select(">1.0.0", "v1.0.1 v1.0.2"), "v1.0.2");
        assert_eq!(select("^1.1.0", "v1.1.0 v1.1.5"), "v1.1.5");
        // Hyphen ends are inclusive bounds, so they are anchors.
        assert_eq!(
            select("1.1.0 - 1.2.0", "v1.1.0 v1.1.5 v1.2.0 v1.2.1"),
            "v1.1.0 v1.1.5 v1.2.0"
        );
        // Non-version tags are ignored; tags keep their spelling.
        assert_eq!(select("^1.0.0", "latest v1.0.0 1.0.1 stable"), "1.0.1");
    }

    #[test]
    fn exact_pins() {
        assert_eq!(
            parse("=v1.2.3").unwrap(),
            Constraint::Exact(vec![Pin {
                tag: "v1.2.3".into(),
                channel: None
            }])
        );
        assert_eq!(
            parse("=1.2.3+stable").unwrap(),
            Constraint::Exact(vec![Pin {
                tag: "v1.2.3".into(),
                channel: Some("stable".into())
            }])
        );
        assert_eq!(
            parse("=v1.2.3 || =v1.3.0+lts").unwrap(),
            Constraint::Exact(vec![
                Pin {
                    tag: "v1.2.3".into(),
                    channel: None
                },
                Pin {
                    tag: "v1.3.0".into(),
                    channel: Some("lts".into())
                }
            ])
        );
        assert!(
            parse("=v1.2.3+nightly")
                .unwrap_err()
                .contains("unknown channel")
        );
        assert!(matches!(parse("=v1.2").unwrap(), Constraint::Range(_)));
        assert!(matches!(
            parse("=v1.2.3 || ^2.0").unwrap(),
            Constraint::Range(_)
        ));
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [
            "invalid",
            "not-a-version",
            ">=",
            "1.x.3",
            "1.2.3.4",
            ">=a.b",
            "^",
            "1.2 -",
            "||",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be an error");
        }
    }

    #[test]
    fn lowest_literal() {
        assert_eq!(
            range(">=1.6.0 <1.8.0")
                .lowest_literal()
                .unwrap()
                .to_string(),
            "1.6.0"
        );
        assert_eq!(
            range("^2.1 || ~1.4").lowest_literal().unwrap().to_string(),
            "1.4.0"
        );
        assert!(range("*").lowest_literal().is_none());
    }
}
