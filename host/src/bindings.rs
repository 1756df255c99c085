//! Rust bindings generated from `wit/packages-mirror.wit` (world `packages-mirror`).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "packages-mirror",
    with: {
        // The `output` resource is a host-side open file (see `fs::Output`).
        "deckhouse:packages-mirror/filesystem.output": crate::fs::Output,
    },
    // Resource-table lookups may fail; let those surface as traps.
    imports: { default: trappable },
});
