//! `--include-package` / `--exclude-package`: which packages, and which
//! versions of them, go into the bundle.

use std::collections::BTreeMap;

use crate::constraint::{self, Constraint};
use crate::names;

/// The selection after parsing the user's expressions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    /// No filter: every package, channel versions only.
    All,
    /// Only these packages, each with an optional constraint.
    Include(BTreeMap<String, Option<Constraint>>),
    /// Every package except these.
    Exclude(Vec<String>),
}

/// Parses the filter. Include wins over exclude; the caller is told so it
/// can warn.
pub fn parse(include: &[String], exclude: &[String]) -> Result<(Filter, bool), String> {
    let both = !include.is_empty() && !exclude.is_empty();
    if !include.is_empty() {
        let mut map: BTreeMap<String, Option<Constraint>> = BTreeMap::new();
        for expr in include {
            let (name, constraint) = parse_expression(expr)?;
            let merged = match (map.remove(&name), constraint) {
                (None, c) => c,
                (Some(None), c) | (Some(c), None) => c,
                (Some(Some(a)), Some(b)) => Some(or_combine(expr, a, b)?),
            };
            map.insert(name, merged);
        }
        return Ok((Filter::Include(map), both));
    }
    if !exclude.is_empty() {
        let mut names = Vec::new();
        for expr in exclude {
            let (name, constraint) = parse_expression(expr)?;
            if constraint.is_some() {
                return Err(format!(
                    "--exclude-package {expr:?}: exclusion takes package names only, not versions"
                ));
            }
            if !names.contains(&name) {
                names.push(name);
            }
        }
        return Ok((Filter::Exclude(names), false));
    }
    Ok((Filter::All, false))
}

/// `name` or `name@constraint`.
fn parse_expression(expr: &str) -> Result<(String, Option<Constraint>), String> {
    let trimmed = expr.trim();
    let (name, constraint) = match trimmed.split_once('@') {
        Some((n, c)) => (n.trim(), Some(c.trim())),
        None => (trimmed, None),
    };
    if name.is_empty() {
        return Err(format!("{expr:?}: the package name is empty"));
    }
    if !names::is_repo_component(name) {
        return Err(format!(
            "{expr:?}: {name:?} is not a valid package name (lowercase letters, digits, '.', '_', '-')"
        ));
    }
    let constraint = match constraint {
        None => None,
        Some("") => {
            return Err(format!(
                "{expr:?}: the version constraint after '@' is empty; quote the expression so the \
                 shell keeps operators such as '>=' (e.g. --include-package '{name}@>=1.2.0')"
            ));
        }
        Some(text) => Some(constraint::parse(text).map_err(|e| format!("{expr:?}: {e}"))?),
    };
    Ok((name.to_string(), constraint))
}

/// Two constraints for one name: pins join pins; anything else becomes a
/// range over the `||` of both texts' meanings.
fn or_combine(expr: &str, a: Constraint, b: Constraint) -> Result<Constraint, String> {
    match (a, b) {
        (Constraint::Exact(mut x), Constraint::Exact(y)) => {
            for pin in y {
                if !x.contains(&pin) {
                    x.push(pin);
                }
            }
            Ok(Constraint::Exact(x))
        }
        (a, b) => {
            let text = format!("{} || {}", to_text(&a), to_text(&b));
            constraint::parse(&text).map_err(|e| format!("{expr:?}: {e}"))
        }
    }
}

fn to_text(c: &Constraint) -> String {
    match c {
        Constraint::Exact(pins) => pins
            .iter()
            .map(|p| format!("={}", p.tag))
            .collect::<Vec<_>>()
            .join(" || "),
        Constraint::Range(r) => r.source().to_string(),
    }
}

impl Filter {
    /// The selected names out of the registry's, sorted.
    pub fn select_names(&self, available: &[String]) -> Vec<String> {
        let mut out: Vec<String> = match self {
            Filter::All => available.to_vec(),
            Filter::Include(map) => available
                .iter()
                .filter(|n| map.contains_key(*n))
                .cloned()
                .collect(),
            Filter::Exclude(names) => available
                .iter()
                .filter(|n| !names.contains(n))
                .cloned()
                .collect(),
        };
        out.sort();
        out.dedup();
        out
    }

    /// The constraint of one selected package.
    pub fn constraint(&self, name: &str) -> Option<&Constraint> {
        match self {
            Filter::Include(map) => map.get(name).and_then(Option::as_ref),
            _ => None,
        }
    }

    /// Names of the include list (the proxy-registry mode's package list).
    pub fn included_names(&self) -> Option<Vec<String>> {
        match self {
            Filter::Include(map) => Some(map.keys().cloned().collect()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn include_exclude_and_neither() {
        let all = strings(&["b", "a", "c"]);
        let (f, _) = parse(&[], &[]).unwrap();
        assert_eq!(f.select_names(&all), ["a", "b", "c"]);
        let (f, _) = parse(&strings(&["c", " a "]), &[]).unwrap();
        assert_eq!(f.select_names(&all), ["a", "c"]);
        let (f, _) = parse(&[], &strings(&["b"])).unwrap();
        assert_eq!(f.select_names(&all), ["a", "c"]);
        let (f, both) = parse(&strings(&["a"]), &strings(&["a"])).unwrap();
        assert!(both);
        assert_eq!(f.select_names(&all), ["a"]);
    }

    #[test]
    fn repeated_names_or_combine() {
        let (f, _) = parse(
            &strings(&["a@^1.0.0", "a@^3.0.0", "b", "b", "c@=v1.0.0", "c"]),
            &[],
        )
        .unwrap();
        let Some(Constraint::Range(r)) = f.constraint("a") else {
            panic!("a should have a range")
        };
        assert!(r.matches(&semver::Version::new(3, 1, 0)));
        assert!(r.matches(&semver::Version::new(1, 1, 0)));
        assert!(!r.matches(&semver::Version::new(2, 0, 0)));
        assert_eq!(f.constraint("b"), None);
        assert!(matches!(f.constraint("c"), Some(Constraint::Exact(p)) if p.len() == 1));
        let (f, _) = parse(&strings(&["c@=v1.0.0", "c@=v2.0.0+stable"]), &[]).unwrap();
        assert!(matches!(f.constraint("c"), Some(Constraint::Exact(p)) if p.len() == 2));
        let (f, _) = parse(&strings(&["c@=v1.0.0", "c@^2.0.0"]), &[]).unwrap();
        let Some(Constraint::Range(r)) = f.constraint("c") else {
            panic!("pin || range is a range")
        };
        assert!(r.matches(&semver::Version::new(1, 0, 0)));
        assert!(!r.matches(&semver::Version::new(1, 0, 1)));
    }

    #[test]
    fn malformed_expressions() {
        let err = |e: &str| parse(&strings(&[e]), &[]).unwrap_err();
        assert!(err("name@").contains("quote"), "{}", err("name@"));
        assert!(err("name@").contains("\"name@\""));
        assert!(err("@1.2.3").contains("name is empty"));
        assert!(err("name@not-a-version").contains("not-a-version"));
        assert!(err("name@=v1.2.3+nightly").contains("nightly"));
        assert!(err("../x").contains("not a valid package name"));
        assert!(
            parse(&[], &strings(&["a@1.0"]))
                .unwrap_err()
                .contains("names only")
        );
    }
}
