//! The performance benchmark (`tests/bench.sh`, the `bench` binary): a
//! generated registry, our pull, the same job with skopeo + tar, and the
//! raw-copy limit, measured in one run. Not part of `cargo test`.

pub mod content;
pub mod jobs;
pub mod measure;
pub mod raw;
