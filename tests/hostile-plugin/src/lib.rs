//! A deliberately hostile `deckhouse:packages-mirror` component.
//!
//! The sandbox tests (`host/tests/sandbox.rs`, `tests/tests/e2e_sandbox.rs`)
//! run it through the real host. `include-packages[0]` names the attack, the
//! rest are its arguments. `pull-packages` performs the attack and returns
//! the outcome of every attempt as a `warnings` line (`<what>: <result>`), so
//! a test can assert that each one was refused; attacks the host must stop
//! (`memory`, `spin`, `panic`) never return. `pull-package-versions` does
//! nothing and succeeds: it shows that a trap does not poison the next call.
//!
//! With feature `other-version` it is instead a component of
//! `deckhouse:packages-mirror@0.2.0`, which the host must refuse to load.
//! Natively the crate is empty.

#[cfg(all(target_arch = "wasm32", not(feature = "other-version")))]
mod attacks;

#[cfg(all(target_arch = "wasm32", feature = "other-version"))]
mod other_version;
