//! The export calls' inputs and outputs as plain Rust values.

/// Mirrors the WIT `pull-options` record.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub source_root: String,
    pub include_packages: Vec<String>,
    pub exclude_packages: Vec<String>,
    pub only_extra_images: bool,
    pub skip_vex_images: bool,
    pub bundle_chunk_size: u64,
    pub access_timeout_ms: u64,
    pub dry_run: bool,
    pub proxy_registry: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackageSummary {
    pub name: String,
    pub versions: Vec<String>,
    pub images: u32,
    pub vex_images: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Archive {
    pub name: String,
    pub files: Vec<String>,
    pub size: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub dry_run: bool,
    pub packages: Vec<PackageSummary>,
    pub archives: Vec<Archive>,
    pub warnings: Vec<String>,
}
