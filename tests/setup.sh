#!/usr/bin/env bash
# Installs what the end-to-end tests and the demo need; safe to run again.
#   - Debian packages: docker-registry (the test registry), skopeo (the
#     independent OCI reader), GNU tar, openssl (test CAs and a TLS server)
#   - the Rust target the plugin is built for: wasm32-wasip2
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if ! tar --version 2>/dev/null | grep -q 'GNU tar'; then missing+=(tar); fi

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
