#!/usr/bin/env bash
# The demo: installs what is missing, builds host + plugin, starts a throwaway
# registry on 127.0.0.1, seeds it with a package tree, runs
# `host run plugin.wasm pull` into BUNDLE_DIR and lists the bundle.
# Usage: bash tests/demo.sh [BUNDLE_DIR]   (default: <repo>/demo-bundle)
set -euo pipefail
bundle="${1:-}"
if [ -n "$bundle" ] && [ "${bundle#/}" = "$bundle" ]; then
    bundle="$PWD/$bundle"   # a relative path is relative to where you ran this
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/setup.sh
bash tests/build.sh
# Run the binary build.sh made: `cargo run -p tests` would resolve features
# for that one package and compile the dependencies again.
"${CARGO_TARGET_DIR:-target}/release/demo" "${bundle:-demo-bundle}"
