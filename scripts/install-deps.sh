#!/bin/bash
# Installs what the tests, the benchmarks and the demo need on a fresh Debian 12 machine (as root).
# With --demo only what building hometun and running `hometun demo` need (scripts/demo.sh).
#
# Every package is named here: apt-get runs with --no-install-recommends, so a package that only
# comes as a recommendation is missing on a fresh machine (libstrongswan-standard-plugins was:
# charon then had no gcm plugin and refused AES-GCM). integration/tests/packaging_install_deps.rs
# checks that each charon plugin the tests load and each program they start comes from a
# package named below.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
demo_only=false
[ "${1:-}" = "--demo" ] && demo_only=true
packages=(
  # programs the tests and benchmarks start
  iproute2 # ip: namespaces, veth, addresses, routes
  iputils-ping # ping
  nftables # nft: NAT and loss in the labs
  procps # sysctl, pgrep
  mount # mount: charon's private /run
  util-linux # setpriv: the forwarder with two capabilities
  coreutils # env
  curl # ops_status scrapes the metrics endpoint
  dash # sh
  systemd # systemd-analyze verify of the units
  iperf3 # bench/throughput.sh
  bc # bench/memory.sh
  tcpdump # roaming_ike_daemons capture
  tshark # ike/tests/wire_trace.rs
  openssl # certificates read back (openssl x509 -text)
  python3 # Scapy's interpreter; scripts/test.sh
  python3-minimal # /usr/bin/python3
  python3-scapy # independent ESP check (forwarder/tests/kat_scapy.rs)
  python3-cryptography # Scapy's AES-GCM
  wireguard-tools # wg: bench/reference/boringtun-pair.sh
  bird2 # bird, birdc: the BGP routers of integration/tests/multi_failover.rs
  radvd # examples/updown/updown-radvd.sh against a real radvd (integration/tests/lan_radvd.rs)
  # PostgreSQL 15 for the shared registry's tests and bench/registry.sh (lab/src/postgres_lab.rs
  # runs initdb and pg_ctl from /usr/lib/postgresql/15/bin, as the postgres user the package
  # creates), and its client (createdb, psql)
  postgresql-15
  postgresql-client-15
  # strongSwan 5.9 (charon with kernel-libipsec) and the package of every plugin in
  # testdata/strongswan-plugins
  strongswan-charon # /usr/lib/ipsec/charon
  strongswan-libcharon # socket-default, updown
  strongswan-swanctl # swanctl, vici
  strongswan-pki # pki --print
  libstrongswan # random nonce kdf aes sha1 sha2 hmac pem pkcs1 pkcs8 x509 revocation
  #               constraints pubkey kernel-netlink
  libstrongswan-standard-plugins # gcm openssl
  libstrongswan-extra-plugins # curve25519
  libcharon-extra-plugins # kernel-libipsec addrblock
  # compilers: ring's and aws-lc's C and, for the fuzz smoke run, libFuzzer's C++
  gcc
  g++
  libc6-dev
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
# The Rust toolchain comes from rustup, not from Debian (whose rustc is too old for the
# workspace): without it, say so in one line rather than fail on the first cargo command.
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v rustup >/dev/null 2>&1 || ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: needs a Rust toolchain from rustup (cargo, rustup): install it from https://rustup.rs, then run this again" >&2
  exit 1
fi
# scripts/test.sh checks the format and the lints: rustup's minimal profile (README's command)
# has neither rustfmt nor clippy.
rustup component add rustfmt clippy
# cargo-fuzz runs the fuzz smoke tests, on nightly when it can be had; where rustup cannot
# fetch it, scripts/fuzz-smoke.sh runs the installed toolchain with RUSTC_BOOTSTRAP=1.
if ! rustup toolchain list | grep -q nightly; then
  rustup toolchain install nightly --profile minimal ||
    echo "install-deps: no nightly toolchain; the fuzz smoke run uses the installed one with RUSTC_BOOTSTRAP=1" >&2
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
# llvm-cov and llvm-profdata for scripts/fuzz-coverage.sh: those of the nightly toolchain, which
# read its coverage profiles (Debian's llvm 14 cannot read them).
if rustup toolchain list | grep -q nightly; then
  rustup component add llvm-tools-preview --toolchain nightly ||
    echo "install-deps: no llvm-tools for nightly; scripts/fuzz-coverage.sh cannot run" >&2
fi
