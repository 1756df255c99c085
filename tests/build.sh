#!/usr/bin/env bash
# Builds the two artifacts the end-to-end tests and the demo run:
#   <target>/wasm32-wasip2/release/plugin.wasm and <target>/release/host
# (<target> = $CARGO_TARGET_DIR or ./target).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --target wasm32-wasip2 -p plugin
cargo build --release -p host
