#!/bin/bash
# The test command (README.md): installs what the tests need, then runs every test, the lints and
# a short smoke run of each fuzz target. Run as root so that the network-namespace tests run
# (under CI=true they must run: a test that would skip fails instead).
set -euo pipefail
cd "$(dirname "$0")/.."
phase() { echo "== $(date +%T) $*"; }

phase "install dependencies"
scripts/install-deps.sh

phase "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

phase "build"
cargo build --release --bin hometun
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export HOMETUN_BIN="$target_dir/release/hometun"

phase "tests"
cargo test --workspace --release --no-fail-fast

phase "fuzz harness tests"
# The harnesses check themselves (fuzz/tests: an honest run comes up, the invariants fire, every
# target has a committed corpus); fuzz/ is outside the workspace.
(cd fuzz && cargo test --release)

phase "fuzz smoke"
scripts/fuzz-smoke.sh "${FUZZ_SECONDS:-10}"
phase "done"
