#!/usr/bin/env bash
# The demo: installs what is missing, builds host + plugin, starts a throwaway
# registry on 127.0.0.1, seeds it with a package tree, runs
# `host run plugin.wasm pull` into BUNDLE_DIR and lists the bundle.
# Usage: bash tests/demo.sh [--serve] [BUNDLE_DIR]   (default: <repo>/demo-bundle)
#   --serve: keep the registry up afterwards for your own commands (Enter stops it)
set -euo pipefail
args=()
for arg in "$@"; do
    case "$arg" in
        -*|/*) args+=("$arg") ;;
        *) args+=("$PWD/$arg") ;;   # a relative path is relative to where you ran this
    esac
done
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/setup.sh
bash tests/build.sh
# Run the binary build.sh made: `cargo run -p tests` would resolve features
# for that one package and compile the dependencies again.
"${CARGO_TARGET_DIR:-target}/release/demo" "${args[@]}"
