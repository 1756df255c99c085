//! End-to-end test support for packages-mirror: a real `docker-registry` on
//! 127.0.0.1 ([`registry`]), real OCI images pushed over HTTP ([`oci`]), a
//! realistic package tree with the bundle a correct pull must produce
//! ([`fixture`]), the built host + plugin ([`artifacts`]) and bundle checks
//! ([`bundle`]), and the second, Python host that loads the same plugin
//! ([`second_host`]).

pub mod artifacts;
pub mod bench;
pub mod bundle;
pub mod fixture;
pub mod oci;
pub mod process;
pub mod pull;
pub mod quirky;
pub mod registry;
pub mod second_host;
pub mod slowproxy;

use anyhow::{Context, Result};

/// Start a throwaway registry and push the whole [`fixture::Fixture`] to it.
pub fn seeded_registry() -> Result<(registry::Registry, fixture::Fixture)> {
    seed(registry::Registry::start()?, None)
}

/// Like [`seeded_registry`], with basic auth required
/// ([`registry::TEST_USER`] / [`registry::TEST_PASSWORD`]).
pub fn seeded_registry_with_auth() -> Result<(registry::Registry, fixture::Fixture)> {
    seed(
        registry::Registry::start_with_test_auth()?,
        Some((registry::TEST_USER, registry::TEST_PASSWORD)),
    )
}

fn seed(
    registry: registry::Registry,
    auth: Option<(&str, &str)>,
) -> Result<(registry::Registry, fixture::Fixture)> {
    let fixture = fixture::Fixture::new(&registry.host());
    let mut client = oci::Client::new(&registry.base_url());
    if let Some((user, password)) = auth {
        client = client.with_basic_auth(user, password);
    }
    fixture
        .seed(&client)
        .with_context(|| format!("seeding the fixture; registry log:\n{}", registry.log()))?;
    Ok((registry, fixture))
}
