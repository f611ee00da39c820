#!/bin/bash
# Runs every cargo-fuzz target for a few seconds (docs/ARCHITECTURE.md, "Fuzzing"), from its
# committed corpus: every stored input runs first, so a corpus input that crashes fails the smoke
# run. New inputs go to a scratch directory, never into fuzz/corpus.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-10}
# cargo-fuzz needs nightly flags (sanitizers): nightly if installed, else the installed
# toolchain told to accept them.
if rustup toolchain list | grep -q nightly; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in $("${fuzz[@]}" list); do
  echo "fuzz smoke: $target (${seconds}s)"
  mkdir -p "$scratch/$target" "corpus/$target"
  "${fuzz[@]}" run "$target" "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -print_final_stats=0 2>&1 | tail -n 1
done
