#!/usr/bin/env bash
# The performance benchmark: installs what is missing, builds, then runs the
# `bench` binary, which generates a registry on 127.0.0.1 (about 1.2 GiB of
# blobs), measures our pull, the same job with skopeo + GNU tar and the
# raw-copy limit, and prints one table. About 2–5 minutes once built; needs
# about 4 GiB free under the target directory and 1.3 GiB in /dev/shm.
# Usage: bash tests/bench.sh [--packages N] [--versions N] [--concurrency N] [--shrink N] [--keep]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/setup.sh
bash tests/build.sh
"${CARGO_TARGET_DIR:-target}/release/bench" "$@"
