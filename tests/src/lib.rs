//! End-to-end test support for packages-mirror: a real `docker-registry` on
//! 127.0.0.1 ([`registry`]), real OCI images pushed over HTTP ([`oci`]), a
//! realistic package tree with the bundle a correct pull must produce
//! ([`fixture`]), the built host + plugin ([`artifacts`]) and bundle checks
//! ([`bundle`]), and the second, Python host that loads the same plugin
//! ([`second_host`]).

pub mod artifacts;
pub mod bench;
pub mod bundle;
pub mod env;
pub mod fixture;
pub mod oci;
pub mod process;
pub mod pull;
pub mod quirky;
pub mod registry;
pub mod schema;
pub mod second_host;
pub mod slowproxy;
pub mod tls;
pub mod tunnel;

use anyhow::{Context, Result};

/// Start a throwaway registry and push the whole [`fixture::Fixture`] to it.
pub fn seeded_registry() -> Result<(registry::Registry, fixture::Fixture)> {
    seed(registry::Registry::start()?, None, fixture::Fixture::new)
}

/// Like [`seeded_registry`], with the hostile packages of
/// [`fixture::hostile`] next to the normal ones.
pub fn seeded_hostile_registry() -> Result<(registry::Registry, fixture::Fixture)> {
    seed(
        registry::Registry::start()?,
        None,
        fixture::Fixture::with_hostile,
    )
}

/// Like [`seeded_registry`], with basic auth required
/// ([`registry::TEST_USER`] / [`registry::TEST_PASSWORD`]).
pub fn seeded_registry_with_auth() -> Result<(registry::Registry, fixture::Fixture)> {
    seed(
        registry::Registry::start_with_test_auth()?,
        Some((registry::TEST_USER, registry::TEST_PASSWORD)),
        fixture::Fixture::new,
    )
}

/// A registry serving HTTPS with a certificate from a fresh test CA and
/// requiring basic auth, seeded over HTTPS with the test credentials.
pub fn seeded_https_registry_with_auth()
-> Result<(registry::Registry, fixture::Fixture, tls::TestCa)> {
    let ca = tls::TestCa::generate()?;
    let registry = registry::Registry::start_https_with_test_auth(&ca)?;
    let client = oci::Client::with_ca(&registry.base_url(), &ca.ca_pem())?;
    let (registry, fixture) = seed_with(
        registry,
        client,
        Some((registry::TEST_USER, registry::TEST_PASSWORD)),
        fixture::Fixture::new,
    )?;
    Ok((registry, fixture, ca))
}

fn seed(
    registry: registry::Registry,
    auth: Option<(&str, &str)>,
    build: fn(&str) -> fixture::Fixture,
) -> Result<(registry::Registry, fixture::Fixture)> {
    let client = oci::Client::new(&registry.base_url());
    seed_with(registry, client, auth, build)
}

fn seed_with(
    registry: registry::Registry,
    mut client: oci::Client,
    auth: Option<(&str, &str)>,
    build: fn(&str) -> fixture::Fixture,
) -> Result<(registry::Registry, fixture::Fixture)> {
    let fixture = build(&registry.host());
    if let Some((user, password)) = auth {
        client = client.with_basic_auth(user, password);
    }
    fixture
        .seed(&client)
        .with_context(|| format!("seeding the fixture; registry log:\n{}", registry.log()))?;
    Ok((registry, fixture))
}
