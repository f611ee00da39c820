#!/bin/bash
# Runs every cargo-fuzz target for a few seconds (DESIGN.md style 11).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-10}
for target in $(cargo +nightly fuzz list); do
  echo "fuzz smoke: $target (${seconds}s)"
  cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -print_final_stats=0 2>&1 | tail -n 1
done
