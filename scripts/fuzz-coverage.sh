#!/bin/bash
# Line coverage of fuzz targets, per module each target is meant to reach:
#
#   scripts/fuzz-coverage.sh TARGET...
#
# Runs `cargo fuzz coverage` over the committed corpus (fuzz/corpus/TARGET) and, if a campaign
# left one, the scratch corpus ($FUZZ_WORK/corpus/TARGET), then llvm-cov (rustup's
# llvm-tools-preview of the nightly toolchain; scripts/install-deps.sh adds it) and prints for
# each module (a file, or the functions of a type in a file) the lines covered. Reports stay in
# fuzz/coverage/TARGET/ (coverage.profdata, report.txt).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${FUZZ_WORK:-/var/tmp/hometun-fuzz}
if [ $# -eq 0 ]; then
  echo "usage: $0 TARGET..." >&2
  exit 2
fi
sysroot=$(rustc +nightly --print sysroot)
tools="$sysroot/lib/rustlib/x86_64-unknown-linux-gnu/bin"
if [ ! -x "$tools/llvm-cov" ]; then
  rustup component add llvm-tools-preview --toolchain nightly
fi
cd "$root/fuzz"

# What each target claims to reach: "label|file|mangled-name pattern (empty: the whole file)".
claims() {
  local established="
established/mod.rs|ike/src/sa/established/mod.rs|
established/child_rekey.rs|ike/src/sa/established/child_rekey.rs|
established/ike_rekey.rs|ike/src/sa/established/ike_rekey.rs|
established/informational.rs|ike/src/sa/established/informational.rs|
established/mobike.rs|ike/src/sa/established/mobike.rs|
established/requests.rs|ike/src/sa/established/requests.rs|
sa/child.rs|ike/src/sa/child.rs|
endpoint/mod.rs|ike/src/endpoint/mod.rs|
selectors.rs|ike/src/selectors.rs|"
  case "$1" in
    ike_established_responder) echo "$established
responder.rs HalfOpen|ike/src/sa/responder.rs|HalfOpen" ;;
    ike_established_initiator) echo "$established
initiator.rs|ike/src/sa/initiator.rs|" ;;
    ike_initiator) echo "initiator.rs SaInitRequested|ike/src/sa/initiator.rs|SaInitRequested
initiator.rs AuthRequested|ike/src/sa/initiator.rs|AuthRequested
endpoint/mod.rs|ike/src/endpoint/mod.rs|" ;;
    ike_responder) echo "responder.rs HalfOpen|ike/src/sa/responder.rs|HalfOpen
responder.rs respond_sa_init|ike/src/sa/responder.rs|respond_sa_init
endpoint/mod.rs|ike/src/endpoint/mod.rs|" ;;
    forwarder_receive) echo "inbound.rs|forwarder/src/inbound.rs|
SaPair::open|forwarder/src/sad/mod.rs|6SaPair4open
roaming/mod.rs|forwarder/src/roaming/mod.rs|
roaming/moves.rs|forwarder/src/roaming/moves.rs|
replay.rs|forwarder/src/replay.rs|
esp.rs|forwarder/src/esp.rs|" ;;
    override_na) echo "roaming/moves.rs|forwarder/src/roaming/moves.rs|
roaming/override_na.rs|forwarder/src/roaming/override_na.rs|
roaming/return_routability.rs|forwarder/src/roaming/return_routability.rs|" ;;
    esp_decap) echo "esp.rs|forwarder/src/esp.rs|
replay.rs|forwarder/src/replay.rs|
SaPair::open|forwarder/src/sad/mod.rs|6SaPair4open" ;;
    enroll_request) echo "EnrollmentServer::handle|pki/src/enroll/server.rs|EnrollmentServer6handle
EnrollmentServer::answer|pki/src/enroll/server.rs|EnrollmentServer6answer
EnrollmentServer::answer_renewal|pki/src/enroll/server.rs|EnrollmentServer14answer_renewal
refusal_for|pki/src/enroll/server.rs|server11refusal_for
Message::parse|pki/src/enroll/protocol.rs|Message5parse
ServerDir::sign_with_token|pki/src/server_dir.rs|15sign_with_token
ServerDir::renew|pki/src/renewal.rs|ServerDir5renew
enroll/server.rs, all|pki/src/enroll/server.rs|
enroll/protocol.rs, all|pki/src/enroll/protocol.rs|" ;;
    pki_enroll_protocol) echo "enroll/protocol.rs|pki/src/enroll/protocol.rs|" ;;
    forwarder_control | control_message) echo "control.rs|forwarder/src/control.rs|
sad/mod.rs|forwarder/src/sad/mod.rs|" ;;
    ike_message) echo "wire/|ike/src/wire/|
decode.rs|ike/src/decode.rs|" ;;
    ike_sk_chain) echo "wire/sk.rs|ike/src/wire/sk.rs|
wire/payload.rs|ike/src/wire/payload.rs|" ;;
    config_toml) echo "config/|config/src/|" ;;
    pki_bundle) echo "bundle.rs|pki/src/bundle.rs|" ;;
    pki_cert_prefixes) echo "addrblock.rs|pki/src/addrblock.rs|" ;;
    pki_ike_cert) echo "crypto/cert.rs|ike/src/crypto/cert.rs|
addrblock.rs|pki/src/addrblock.rs|" ;;
    *) echo "" ;;
  esac
}

for target in "$@"; do
  corpora=("corpus/$target")
  [ -d "$work/corpus/$target" ] && corpora+=("$work/corpus/$target")
  echo "fuzz coverage: $target (${corpora[*]})"
  cargo +nightly fuzz coverage -s none --target-dir "$work/coverage-target" "$target" \
    "${corpora[@]}" >"$work/coverage-$target.log" 2>&1 ||
    { tail -n 20 "$work/coverage-$target.log"; exit 1; }
  binary="$work/coverage-target/x86_64-unknown-linux-gnu/release/$target"
  profile="coverage/$target/coverage.profdata"
  "$tools/llvm-cov" export -format=text -instr-profile="$profile" "$binary" >"coverage/$target/export.json"
  claims "$target" | python3 "$root/scripts/fuzz-coverage-report.py" "$root" \
    "coverage/$target/export.json" "$target" | tee "coverage/$target/report.txt"
done
