#!/usr/bin/env bash
# Installs what the end-to-end tests and the demo need; safe to run again.
#   - Debian packages: docker-registry (the test registry), skopeo (the
#     independent OCI reader), GNU tar, openssl (test CAs and a TLS server)
#   - the Rust target the plugin is built for: wasm32-wasip2
#   - for the second (Python) host test: python3 with venv, and a virtualenv
#     at <target>/second-host-venv holding tests/second-host/requirements.txt
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if ! tar --version 2>/dev/null | grep -q 'GNU tar'; then missing+=(tar); fi
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then missing+=(python3-venv); fi

if [ "${#missing[@]}" -gt 0 ]; then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
    echo "setup: installing ${missing[*]}"
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"
fi

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "setup: adding the wasm32-wasip2 target"
    rustup target add wasm32-wasip2
fi

# The second host: recreated only when requirements.txt changed (the copy
# kept in the venv is the stamp), so a second run costs nothing.
target="${CARGO_TARGET_DIR:-target}"
venv="$target/second-host-venv"
requirements=tests/second-host/requirements.txt
if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null; then
    echo "setup: creating the second host's Python environment in $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --require-hashes --only-binary=:all: -r "$requirements"
    cp "$requirements" "$venv/requirements.txt"
fi
