#!/usr/bin/env bash
# The README's test command: installs what the tests need that a fresh
# machine lacks (the pinned toolchain's wasm target and lint components,
# and the test peers: tests/peers/install.sh), then runs every test.
#
#   ./test.sh              every test
#   ./test.sh storer::     arguments go to `cargo test` (here: one suite)
set -euo pipefail
cd "$(dirname "$0")"
# rustup does not add rust-toolchain.toml's targets and components to an
# installed toolchain by itself; this does, and is a no-op when they are there.
rustup toolchain install >/dev/null
tests/peers/install.sh
export KIST_PEERS=${KIST_PEERS:-$PWD/target/peers}
exec cargo test --locked "$@"
