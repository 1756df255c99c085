#!/usr/bin/env bash
# Builds the artifacts the end-to-end tests and the demo run:
#   <target>/wasm32-wasip2/release/plugin.wasm, <target>/release/host and the
#   workspace's tests and demo (<target>/release/demo)
# (<target> = $CARGO_TARGET_DIR or ./target), and for the sandbox tests the
# hostile component in two variants:
#   <target>/wasm32-wasip2/release/hostile_plugin.wasm        (our WIT version)
#   <target>/wasm32-wasip2/release/hostile_plugin_v0_2.wasm   (another version)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target="${CARGO_TARGET_DIR:-target}"
wasm_dir="$target/wasm32-wasip2/release"

cargo build --release --target wasm32-wasip2 -p plugin
cargo build --release --target wasm32-wasip2 -p hostile-plugin --features other-version
cp "$wasm_dir/hostile_plugin.wasm" "$wasm_dir/hostile_plugin_v0_2.wasm"
cargo build --release --target wasm32-wasip2 -p hostile-plugin
# The whole workspace at once, natively: the host binary, the demo and every
# test then share one feature set, so `cargo test --workspace --release`
# (tests/run.sh) and the demo reuse this build instead of compiling wasmtime
# and its dependencies a second time with other features.
cargo build --release --workspace
