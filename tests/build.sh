#!/usr/bin/env bash
# Builds the artifacts the end-to-end tests and the demo run:
#   <target>/wasm32-wasip2/release/plugin.wasm and <target>/release/host
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
cargo build --release -p host
