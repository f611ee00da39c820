#!/bin/bash
# A long fuzzing campaign, one target after the other (the machine's cores are shared):
#
#   scripts/fuzz-campaign.sh TARGET... [--minutes N] [--runs N]
#
# Each target runs as one libFuzzer job (-jobs=1) for N minutes (default 30), or until N
# executions when --runs is given too (whichever comes first: "10 M executions or 30 min"),
# from its committed corpus (fuzz/corpus/TARGET, read only) and a scratch corpus that grows
# outside the tree ($FUZZ_WORK/corpus/TARGET; FUZZ_WORK defaults to /var/tmp/hometun-fuzz).
# Campaigns build without AddressSanitizer (FUZZ_SANITIZER=address to keep it), in
# $FUZZ_WORK/target: the fuzzed code is safe Rust, overflow checks and debug assertions stay on,
# the harnesses' assertions are the oracle, and the deep IKE targets run several times as many
# inputs (AddressSanitizer's allocator dominates their allocation-heavy runs). The CI smoke run (scripts/fuzz-smoke.sh) keeps AddressSanitizer.
# Crashes land in fuzz/artifacts/TARGET. At the end it prints per target the executions, the
# time, the rate and the crashes, and keeps each job's log in $FUZZ_WORK/logs/.
# Minimize what a campaign found back into the repository with:
#   cd fuzz && cargo +nightly fuzz cmin TARGET $FUZZ_WORK/corpus/TARGET   (see fuzz/README.md)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${FUZZ_WORK:-/var/tmp/hometun-fuzz}
minutes=30
runs=
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  echo "usage: $0 TARGET... [--minutes N] [--runs N]" >&2
  exit 2
fi
limit=(-max_total_time=$(( minutes * 60 )))
label="$minutes min"
if [ -n "$runs" ]; then
  limit+=(-runs="$runs")
  label="$label or $runs runs"
fi
cd "$root/fuzz"
if rustup toolchain list | grep -q nightly; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
# Inputs of the deep targets are scenarios: let them be long from the start.
deep="ike_established_responder ike_established_initiator ike_initiator forwarder_receive"
mkdir -p "$work/logs"
summary=()
sanitizer=${FUZZ_SANITIZER:-none}
for target in "${targets[@]}"; do
  "${fuzz[@]}" build -s "$sanitizer" --target-dir "$work/target" "$target" >/dev/null
  scratch="$work/corpus/$target"
  mkdir -p "$scratch" "corpus/$target" "artifacts/$target"
  options=(-jobs=1 -workers=1 -print_final_stats=1 -timeout=120 -rss_limit_mb=4096)
  case " $deep " in
    *" $target "*) options+=(-max_len=4096 -len_control=0) ;;
  esac
  run_dir="$work/logs/$target-$(date +%Y%m%d-%H%M%S)"
  mkdir -p "$run_dir"
  before=$(find "artifacts/$target" -type f | wc -l)
  echo "fuzz campaign: $target ($label), log in $run_dir"
  start=$(date +%s)
  # libFuzzer writes the job's output to fuzz-0.log in its working directory.
  (cd "$run_dir" && "$work/target/x86_64-unknown-linux-gnu/release/$target" \
      -artifact_prefix="$root/fuzz/artifacts/$target/" "${options[@]}" "${limit[@]}" \
      "$scratch" "$root/fuzz/corpus/$target" >"$run_dir/driver.log" 2>&1) || true
  seconds=$(( $(date +%s) - start ))
  log="$run_dir/fuzz-0.log"
  runs=$(grep -h '^stat::number_of_executed_units' "$log" 2>/dev/null | tail -1 | awk '{print $2}')
  runs=${runs:-0}
  crashes=$(( $(find "artifacts/$target" -type f | wc -l) - before ))
  corpus=$(find "$scratch" -type f | wc -l)
  line=$(printf '%-28s %12s executions %7s s %8s/s  corpus %6s  new crashes %s' \
    "$target" "$runs" "$seconds" "$(( runs / (seconds > 0 ? seconds : 1) ))" "$corpus" "$crashes")
  echo "$line"
  summary+=("$line")
done
echo
echo "campaign summary ($label per target):"
printf '%s\n' "${summary[@]}"
