#!/bin/bash
# Installs what the tests, the benchmarks and the demo need on a fresh Debian 12 machine (as root).
# With --demo only what building hometun and running `hometun demo` need (scripts/demo.sh).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
demo_only=false
[ "${1:-}" = "--demo" ] && demo_only=true
packages=(
  iproute2 iputils-ping nftables iperf3 openssl tcpdump tshark python3-scapy python3-cryptography
  strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins
  wireguard-tools strongswan-pki util-linux systemd
)
if $demo_only; then
  packages=(iproute2 iputils-ping procps gcc libc6-dev)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
$demo_only && exit 0
# cargo-fuzz runs the fuzz smoke tests, on nightly when it can be had; where rustup cannot
# fetch it, scripts/fuzz-smoke.sh runs the installed toolchain with RUSTC_BOOTSTRAP=1.
if ! rustup toolchain list | grep -q nightly; then
  rustup toolchain install nightly --profile minimal ||
    echo "install-deps: no nightly toolchain; the fuzz smoke run uses the installed one with RUSTC_BOOTSTRAP=1" >&2
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
