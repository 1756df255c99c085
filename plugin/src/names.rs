//! Names that come from the registry become repository paths, tags and file
//! names. They are checked here, before anything is named after them, so a
//! hostile registry cannot steer a path (`../x`, `a/b`) or a request.

/// The release channels every package may publish, in the order `d8` plans them.
pub const CHANNELS: [&str; 5] = ["alpha", "beta", "early-access", "stable", "rock-solid"];
/// The optional long-term-support channel.
pub const LTS: &str = "lts";

/// True for a valid channel name after `+` in an exact pin.
pub fn is_channel(name: &str) -> bool {
    CHANNELS.contains(&name) || name == LTS
}

/// One path component of an OCI repository name:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, at most 128 characters.
pub fn is_repo_component(name: &str) -> bool {
    if name.is_empty() || name.len() > 128 {
        return false;
    }
    let bytes = name.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &name[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// An OCI tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn is_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `sha256:` followed by 64 lowercase hex digits.
pub fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(is_sha256_hex)
}

pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Repositories and ref names of one package, relative to the source root.
#[derive(Clone, Debug)]
pub struct PackageRepos {
    pub name: String,
    source_root: String,
}

impl PackageRepos {
    pub fn new(source_root: &str, name: &str) -> Self {
        Self {
            name: name.to_string(),
            source_root: source_root.to_string(),
        }
    }

    /// `packages/<name>`: main images, internal images and their VEX.
    pub fn main(&self) -> String {
        format!("packages/{}", self.name)
    }

    /// `packages/<name>/version`: release-channel and per-version metadata.
    pub fn version(&self) -> String {
        format!("packages/{}/version", self.name)
    }

    /// `packages/<name>/extra/<extra>`.
    pub fn extra(&self, extra: &str) -> String {
        format!("packages/{}/extra/{extra}", self.name)
    }

    /// The full reference written into `org.opencontainers.image.ref.name`.
    pub fn ref_name(&self, repo: &str, reference: &str) -> String {
        full_ref_name(&self.source_root, repo, reference)
    }
}

/// `<root>/<repo>:<tag>` or `<root>/<repo>@sha256:<hex>`.
pub fn full_ref_name(source_root: &str, repo: &str, reference: &str) -> String {
    let sep = if reference.starts_with("sha256:") {
        '@'
    } else {
        ':'
    };
    format!("{source_root}/{repo}{sep}{reference}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_components() {
        for ok in [
            "a", "console", "my-pkg", "a.b", "a_b", "a__b", "a---b", "x1",
        ] {
            assert!(is_repo_component(ok), "{ok}");
        }
        for bad in [
            "", "..", "../x", "a/b", "/abs", "A", "Upper", "a..b", "-a", "a-", "a___b", "a\0b",
            "a b",
        ] {
            assert!(!is_repo_component(bad), "{bad:?}");
        }
        assert!(!is_repo_component(&"a".repeat(129)));
    }

    #[test]
    fn tags() {
        for ok in ["v1.2.3", "14", "stable", "sha256-abc.att", "_x", "V1"] {
            assert!(is_tag(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "../x", "a:b", "a@b", "a\0"] {
            assert!(!is_tag(bad), "{bad:?}");
        }
        assert!(!is_tag(&"a".repeat(129)));
    }

    #[test]
    fn ref_names() {
        let p = PackageRepos::new("reg.example/d8/ee", "console");
        assert_eq!(
            p.ref_name(&p.version(), "stable"),
            "reg.example/d8/ee/packages/console/version:stable"
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            p.ref_name(&p.main(), &digest),
            format!("reg.example/d8/ee/packages/console@{digest}")
        );
    }
}
