#!/bin/bash
# The test command (README.md): installs what the tests need, then runs every test, the lints and
# a short smoke run of each fuzz target. Run as root so that the network-namespace tests run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --release --bin hometun
HOMETUN_BIN="$PWD/target/release/hometun" cargo test --workspace --release
scripts/fuzz-smoke.sh "${FUZZ_SECONDS:-10}"
