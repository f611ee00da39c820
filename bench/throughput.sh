#!/bin/bash
# TCP throughput through three IPv6-in-IPv4 tunnel pairs in network namespaces, in the same run:
#   hometun  (two `hometun forwarder --static` processes; raw ESP and ESP in UDP 4500)
#   boringtun (userspace WireGuard, Rust)         -- bench/reference/boringtun-pair.sh
#   strongSwan (charon with kernel-libipsec, userspace ESP) -- bench/reference/strongswan-pair.sh
# and prints Mbit/s for each and the ratios hometun/boringtun and hometun/strongSwan.
#
# Usage (as root): bench/throughput.sh [SECONDS] [ROUNDS]
#   SECONDS: iperf3 duration per measurement (default 8); ROUNDS: repetitions (default 3);
#   the best round of each pair is reported (the machine is shared, so the best is the least
#   disturbed). Env: HOMETUN_BIN (skip the build), BT (boringtun-cli), REF (reference scripts),
#   HOMETUN_ARGS (extra forwarder flags, e.g. --no-offload or --aead rustcrypto).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_PER_RUN=${1:-8}
ROUNDS=${2:-3}
REF=${REF:-$ROOT/bench/reference}
export BT=${BT:-/tmp/bt/bin/boringtun-cli}
LAB=/tmp/hometun-bench
[ "$(id -u)" = 0 ] || { echo "bench/throughput.sh: needs root (namespaces, TUN)" >&2; exit 1; }

if [ -z "${HOMETUN_BIN:-}" ]; then
  cargo build --release --bin hometun >&2
  HOMETUN_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/hometun
fi
if [ ! -x "$BT" ]; then
  echo "installing boringtun-cli into /tmp/bt ..." >&2
  cargo install --quiet boringtun-cli --root /tmp/bt >&2
fi

tput() { # client_ns server_ns server_addr -> receiver Mbit/s
  local c=$1 s=$2 a=$3
  ip netns exec "$s" iperf3 -s -1 -B "$a" >/dev/null 2>&1 &
  local sp=$!
  sleep 0.7
  ip netns exec "$c" iperf3 -c "$a" -t "$SECONDS_PER_RUN" -f m -J 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["end"]["sum_received"]["bits_per_second"]/1e6))' 2>/dev/null || echo 0
  wait $sp 2>/dev/null || true
}

hometun_down() {
  for n in hta htb; do
    if [ -f $LAB/$n.pid ]; then
      pid=$(cat $LAB/$n.pid)
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    ip netns del $n 2>/dev/null || true
  done
  rm -f $LAB/*.pid $LAB/*.sock
}

hometun_up() { # encap: raw|udp
  local encap=$1
  hometun_down
  mkdir -p $LAB
  ip netns add hta; ip netns add htb
  ip link add ha0 type veth peer name hb0
  ip link set ha0 netns hta; ip link set hb0 netns htb
  ip -n hta addr add 192.0.2.2/24 dev ha0; ip -n htb addr add 192.0.2.1/24 dev hb0
  for n in hta htb; do ip -n $n link set lo up; done
  ip -n hta link set ha0 up; ip -n htb link set hb0 up
  for side in home vps; do
    sed -e "s/^encap = \"raw\"/encap = \"$encap\"/" examples/static-sa/$side.toml > $LAB/$side.toml
  done
  ip netns exec htb "$HOMETUN_BIN" forwarder --control $LAB/vps.sock --static $LAB/vps.toml ${HOMETUN_ARGS:-} >$LAB/vps.log 2>&1 &
  echo $! > $LAB/htb.pid
  ip netns exec hta "$HOMETUN_BIN" forwarder --control $LAB/home.sock --static $LAB/home.toml ${HOMETUN_ARGS:-} >$LAB/home.log 2>&1 &
  echo $! > $LAB/hta.pid
  for _ in $(seq 50); do [ -S $LAB/home.sock ] && [ -S $LAB/vps.sock ] && break; sleep 0.1; done
  ip netns exec hta ping -6 -c 1 -W 2 2001:db8:ffff::1 >/dev/null || { echo "hometun pair ($encap) does not carry ping" >&2; cat $LAB/*.log >&2; }
}

strongswan_up() {
  bash "$REF/strongswan-pair.sh" up >/dev/null
  ip netns exec swa env STRONGSWAN_CONF=/tmp/swlab/swa/strongswan.conf \
    swanctl --initiate --child v6 --uri unix:///tmp/swlab/swa/charon.vici >/dev/null 2>&1 || true
  ip netns exec swa ping -6 -c 1 -W 3 2001:db8:ffff::1 >/dev/null 2>&1 || true
}

cleanup() {
  hometun_down
  bash "$REF/boringtun-pair.sh" down >/dev/null 2>&1 || true
  bash "$REF/strongswan-pair.sh" down >/dev/null 2>&1 || true
  # The forwarders' logs stay only when asked for (KEEP_LAB=1).
  [ -n "${KEEP_LAB:-}" ] || rm -rf "$LAB"
}
trap cleanup EXIT

declare -A best
for name in hometun_raw hometun_udp boringtun strongswan; do best[$name]=0; done
record() { local name=$1 value=$2; echo "round $round: $name $value Mbit/s" >&2; [ "$value" -gt "${best[$name]}" ] && best[$name]=$value || true; }

for round in $(seq "$ROUNDS"); do
  hometun_up raw
  record hometun_raw "$(tput hta htb 2001:db8:ffff::1)"
  hometun_up udp
  record hometun_udp "$(tput hta htb 2001:db8:ffff::1)"
  hometun_down
  bash "$REF/boringtun-pair.sh" up >/dev/null
  record boringtun "$(tput bta btb 2001:db8:ffff::1)"
  bash "$REF/boringtun-pair.sh" down >/dev/null
  strongswan_up
  record strongswan "$(tput swa swb 2001:db8:ffff::1)"
  bash "$REF/strongswan-pair.sh" down >/dev/null
done

ratio() { /usr/bin/python3 -c "import sys; a,b=int(sys.argv[1]),int(sys.argv[2]); print(f'{a/b:.2f}' if b else 'n/a')" "$1" "$2"; }
echo "TCP throughput, best of $ROUNDS rounds of ${SECONDS_PER_RUN}s (iperf3, Mbit/s):"
printf '  %-22s %6s\n' "hometun (raw ESP)" "${best[hometun_raw]}" "hometun (ESP in UDP)" "${best[hometun_udp]}" \
  "boringtun" "${best[boringtun]}" "strongSwan" "${best[strongswan]}"
echo "  hometun/boringtun:  raw $(ratio "${best[hometun_raw]}" "${best[boringtun]}"), udp $(ratio "${best[hometun_udp]}" "${best[boringtun]}")"
echo "  hometun/strongSwan: raw $(ratio "${best[hometun_raw]}" "${best[strongswan]}"), udp $(ratio "${best[hometun_udp]}" "${best[strongswan]}")"
