//! The three metadata files packages carry inside their image layers.

use serde_json::Value;

use crate::names;

pub const VERSION_JSON: &str = "version.json";
pub const EXTRA_IMAGES_JSON: &str = "extra_images.json";
pub const IMAGES_DIGESTS_JSON: &str = "images_digests.json";

/// JSON nested deeper than this is refused rather than parsed; serde_json's
/// own recursion limit is 128, this keeps our walkers shallow too.
const MAX_DEPTH: usize = 64;

/// The `version` of a channel's `version.json`, normalised to a leading `v`.
pub fn parse_version_json(content: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct VersionJson {
        version: String,
    }
    let parsed: VersionJson =
        serde_json::from_slice(content).map_err(|e| format!("{VERSION_JSON}: {e}"))?;
    let raw = parsed.version.trim();
    let version = if raw.starts_with('v') {
        raw.to_string()
    } else {
        format!("v{raw}")
    };
    if version.len() < 2 || !names::is_tag(&version) {
        return Err(format!(
            "{VERSION_JSON}: version {:?} is not a valid tag",
            parsed.version
        ));
    }
    Ok(version)
}

/// An extra image named by `extra_images.json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraImage {
    pub name: String,
    pub tag: String,
}

/// Extra images, sorted by name. Strings are tags; whole numbers become tags
/// written as integers (`14`, `14.0` → `14`); other values are skipped with a
/// reason, as are names and tags that are not valid registry components.
pub fn parse_extra_images(content: &[u8]) -> Result<(Vec<ExtraImage>, Vec<String>), String> {
    let value = parse_bounded(content, EXTRA_IMAGES_JSON)?;
    let Value::Object(map) = value else {
        return Err(format!("{EXTRA_IMAGES_JSON}: not a JSON object"));
    };
    let mut images = Vec::new();
    let mut skipped = Vec::new();
    for (name, value) in map {
        let tag = match &value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => number_tag(n),
            _ => None,
        };
        let Some(tag) = tag else {
            skipped.push(format!("{name}: value {value} is not a tag"));
            continue;
        };
        if !names::is_repo_component(&name) {
            skipped.push(format!("{name:?}: not a valid image name"));
            continue;
        }
        if !names::is_tag(&tag) {
            skipped.push(format!("{name}: {tag:?} is not a valid tag"));
            continue;
        }
        images.push(ExtraImage { name, tag });
    }
    Ok((images, skipped))
}

fn number_tag(n: &serde_json::Number) -> Option<String> {
    if let Some(i) = n.as_u64() {
        return Some(i.to_string());
    }
    if let Some(i) = n.as_i64() {
        return Some(i.to_string());
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 1e15).then(|| format!("{}", f as i64))
}

/// Every `sha256:<64 hex>` found in a string of `images_digests.json`,
/// deduplicated, objects walked in key order.
pub fn parse_images_digests(content: &[u8]) -> Result<Vec<String>, String> {
    let value = parse_bounded(content, IMAGES_DIGESTS_JSON)?;
    let mut found = Vec::new();
    collect_digests(&value, &mut found);
    Ok(found)
}

fn collect_digests(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(pos) = rest.find("sha256:") {
                let candidate = rest[pos..].get(..71).unwrap_or("");
                if names::is_sha256_digest(candidate) {
                    if !found.iter().any(|d| d == candidate) {
                        found.push(candidate.to_string());
                    }
                    rest = &rest[pos + 71..];
                } else {
                    rest = &rest[pos + 7..];
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_digests(v, found)),
        Value::Object(map) => map.values().for_each(|v| collect_digests(v, found)),
        _ => {}
    }
}

fn parse_bounded(content: &[u8], file: &str) -> Result<Value, String> {
    if nesting_depth(content) > MAX_DEPTH {
        return Err(format!("{file}: nested deeper than {MAX_DEPTH} levels"));
    }
    serde_json::from_slice(content).map_err(|e| format!("{file}: {e}"))
}

/// Bracket depth, ignoring brackets inside strings.
fn nesting_depth(content: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in content {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_json_gets_a_v() {
        assert_eq!(
            parse_version_json(br#"{"version":"v1.2.3"}"#).unwrap(),
            "v1.2.3"
        );
        assert_eq!(
            parse_version_json(br#"{"version":"0.3.0","x":1}"#).unwrap(),
            "v0.3.0"
        );
        assert!(parse_version_json(br#"{"version":""}"#).is_err());
        assert!(parse_version_json(br#"{"version":"../x"}"#).is_err());
        assert!(parse_version_json(b"not json").is_err());
        assert!(parse_version_json(br#"{"other":"v1"}"#).is_err());
    }

    #[test]
    fn extra_images_strings_numbers_and_junk() {
        let (images, skipped) = parse_extra_images(
            br#"{"scanner":"v0.5.0","db":14,"float":14.0,"half":1.5,"list":[1],"obj":{},"null":null,"../evil":"v1","Bad":"v1","bad-tag":"a/b"}"#,
        )
        .unwrap();
        let got: Vec<_> = images
            .iter()
            .map(|i| (i.name.as_str(), i.tag.as_str()))
            .collect();
        assert_eq!(got, [("db", "14"), ("float", "14"), ("scanner", "v0.5.0")]);
        assert_eq!(skipped.len(), 7, "{skipped:?}");
        assert!(parse_extra_images(b"[1,2]").is_err());
    }

    #[test]
    fn digests_anywhere_in_the_document() {
        let a = "a".repeat(64);
        let b = "0123456789abcdef".repeat(4);
        let doc = format!(
            r#"{{"x":{{"img":"sha256:{a}"}},"list":["repo@sha256:{b}","sha256:{a}","sha256:short","SHA256:{a}"],"n":5}}"#
        );
        assert_eq!(
            parse_images_digests(doc.as_bytes()).unwrap(),
            [format!("sha256:{b}"), format!("sha256:{a}")]
        );
    }

    #[test]
    fn deep_json_is_refused() {
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(
            parse_images_digests(deep.as_bytes())
                .unwrap_err()
                .contains("nested")
        );
        let in_string = format!(r#"{{"a":"{}"}}"#, "[".repeat(100));
        assert!(
            parse_images_digests(in_string.as_bytes())
                .unwrap()
                .is_empty()
        );
    }
}
