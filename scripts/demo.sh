#!/bin/bash
# The demo command (README.md): on a fresh Debian machine, as root, installs what `hometun demo`
# needs, builds hometun in release and runs `hometun demo` with this script's arguments
# (e.g. --keep-files, --ping-interval-ms 10).
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/demo.sh: run it as root (sudo $0): the demo makes network namespaces and TUN devices" >&2
  exit 1
fi
cd "$(dirname "$0")/.."
scripts/install-deps.sh --demo
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/demo.sh: needs a Rust toolchain (cargo): install it from https://rustup.rs, then run this again" >&2
  exit 1
fi
exec cargo run --release --bin hometun -- demo "$@"
