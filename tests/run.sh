#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds host + plugin (the
# end-to-end tests run those artifacts), then runs every crate's tests.
# Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/setup.sh
bash tests/build.sh
cargo test --workspace --release --no-fail-fast "$@"
