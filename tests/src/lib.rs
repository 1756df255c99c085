//! End-to-end test support for packages-mirror: a real `docker-registry` on
//! 127.0.0.1 ([`registry`]), real OCI images pushed over HTTP ([`oci`]), a
//! realistic package tree with the bundle a correct pull must produce
//! ([`fixture`]), the built host + plugin ([`artifacts`]) and bundle checks
//! ([`bundle`]).

pub mod artifacts;
pub mod bundle;
pub mod fixture;
pub mod oci;
pub mod process;
pub mod pull;
pub mod registry;
pub mod slowproxy;

use anyhow::{Context, Result};

/// Start a throwaway registry and push the whole [`fixture::Fixture`] to it.
pub fn seeded_registry() -> Result<(registry::Registry, fixture::Fixture)> {
    let registry = registry::Registry::start()?;
    let fixture = fixture::Fixture::new(&registry.host());
    let client = oci::Client::new(&registry.base_url());
    fixture
        .seed(&client)
        .with_context(|| format!("seeding the fixture; registry log:\n{}", registry.log()))?;
    Ok((registry, fixture))
}
