#!/bin/bash
# TCP throughput and CPU cost per GB through IPv6-in-IPv4 tunnel pairs in network namespaces, all
# in the same run, round after round:
#   hometun, static SAs  two `hometun forwarder --static` processes (examples/static-sa/), raw ESP
#                        and ESP in UDP 4500
#   hometun, daemons     `hometun server` and `hometun client` with certificates from
#                        `hometun pki init/request/sign/import`: raw ESP (no NAT between them),
#                        ESP in UDP (the home behind an nftables masquerade router), and ESP in
#                        UDP without a NAT (`[client] force_udp_encapsulation = true`)
#   boringtun            userspace WireGuard, Rust -- bench/reference/boringtun-pair.sh
#   strongSwan           charon with kernel-libipsec (userspace ESP) -- bench/reference/strongswan-pair.sh
# For each: receiver Mbit/s of iperf3 (home -> VPS), and the user + system CPU seconds of the
# tunnel processes on both ends (/proc/PID/stat before and after; hometun: forwarder and IKE
# daemon; boringtun: boringtun-cli; strongSwan: charon) per GB carried. Prints the median and the
# spread of the rounds and the ratios against the best peer of the same run.
#
# Usage (as root): bench/throughput.sh [SECONDS] [ROUNDS]
#   SECONDS: iperf3 duration per measurement (default 8); ROUNDS: repetitions (default 3).
#   Env: HOMETUN_BIN (skip the build), BT (boringtun-cli), REF (reference scripts),
#   HOMETUN_ARGS (extra flags for the static forwarders, e.g. --no-offload or --aead rustcrypto),
#   PAIRS (which pairs, default "static_raw static_udp daemons_raw daemons_nat daemons_udp boringtun
#   strongswan"),
#   PERF_DIR (record a `perf` profile of both hometun ends of each hometun pair into this
#   directory; with SYSCALLS=1 count their system calls and context switches instead),
#   BASELINE_BIN (a second hometun binary, e.g. an older commit's: each hometun pair is measured
#   with it too, in the same rounds, for before/after figures), KEEP_LAB=1 (keep logs),
#   RATE (iperf3's target rate, e.g. 100M: every pair carries the same load, as on a home's link,
#   instead of as much as it can), PING_UNDER_LOAD=1 (a ping every 10 ms beside each transfer:
#   its round-trip times, printed per round; the CPU figures then include the pings),
#   INNER_MTU (the tunnel MTU of the hometun pairs and of boringtun, e.g. 1420: every pair then
#   carries packets of the same size, so the same number of them per GB; by default hometun uses
#   its 1400, boringtun 1420 as wg-quick does; strongSwan keeps its own).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SECONDS_PER_RUN=${1:-8}
ROUNDS=${2:-3}
REF=${REF:-$ROOT/bench/reference}
PAIRS=${PAIRS:-static_raw static_udp daemons_raw daemons_nat daemons_udp boringtun strongswan}
export BT=${BT:-/tmp/bt/bin/boringtun-cli}
LAB=/tmp/hometun-bench
PY=/usr/bin/python3
HZ=$(getconf CLK_TCK)
needs_root bench/throughput.sh "namespaces, TUN"

hometun_binary
if [[ " $PAIRS " == *" boringtun "* ]] && [ ! -x "$BT" ]; then
  echo "installing boringtun-cli into /tmp/bt ..." >&2
  cargo install --quiet boringtun-cli --root /tmp/bt >&2
fi

# --- measuring

cpu_ticks() { # pids... -> utime + stime of them (all threads), in clock ticks
  local total=0 t
  for pid in "$@"; do
    [ -r /proc/$pid/stat ] || continue
    # fields 14 and 15; the command name in parentheses may hold spaces
    t=$(sed -e 's/^.*) //' /proc/$pid/stat | awk '{print $12 + $13}')
    total=$((total + t))
  done
  echo $total
}

# tput CLIENT_NS SERVER_NS SERVER_ADDR PIDS... -> "Mbit/s cpu_seconds_per_GB"
tput() {
  local c=$1 s=$2 a=$3
  shift 3
  local pids=("$@") before after json perf_pid=
  ip netns exec "$s" iperf3 -s -1 -B "$a" >/dev/null 2>&1 &
  local sp=$!
  sleep 0.7
  before=$(cpu_ticks "${pids[@]}")
  if [ -n "${PERF_DIR:-}" ] && [ -n "${PERF_NAME:-}" ] && [ -z "${SYSCALLS:-}" ]; then
    mkdir -p "$PERF_DIR"
    perf record -q -F 1999 ${PERF_ARGS:--g} -e cpu-clock -p "$(IFS=,; echo "${pids[*]}")" \
      -o "$PERF_DIR/$PERF_NAME.data" -- sleep "$SECONDS_PER_RUN" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  if [ -n "${PERF_DIR:-}" ] && [ -n "${PERF_NAME:-}" ] && [ -n "${SYSCALLS:-}" ]; then
    mkdir -p "$PERF_DIR"
    perf stat -x, -e 'syscalls:sys_enter_recvmmsg,syscalls:sys_enter_sendmmsg,syscalls:sys_enter_sendmsg,syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_read,syscalls:sys_enter_readv,syscalls:sys_enter_poll,syscalls:sys_enter_ppoll,syscalls:sys_enter_futex,syscalls:sys_enter_io_uring_enter,sched:sched_switch' \
      --per-thread -p "$(IFS=,; echo "${pids[*]}")" -o "$PERF_DIR/$PERF_NAME.stat" -- sleep "$SECONDS_PER_RUN" >/dev/null 2>&1 &
    perf_pid="$perf_pid $!"
  fi
  local ping_pid=
  if [ -n "${PING_UNDER_LOAD:-}" ]; then
    # A ping every 10 ms beside the transfer, from its second second on, to its end.
    (sleep 1; ip netns exec "$c" ping -6 -q -i 0.01 -w $((SECONDS_PER_RUN - 1)) "$a" 2>&1 |
      sed -n 's/^rtt min\/avg\/max\/mdev = /  ping under load (ms, min\/avg\/max\/mdev): /p' >&2) &
    ping_pid=$!
  fi
  json=$(ip netns exec "$c" iperf3 -c "$a" -t "$SECONDS_PER_RUN" ${RATE:+-b "$RATE"} -f m -J 2>/dev/null || true)
  [ -z "$ping_pid" ] || wait "$ping_pid" 2>/dev/null || true
  after=$(cpu_ticks "${pids[@]}")
  for p in $perf_pid; do wait "$p" 2>/dev/null || true; done
  wait $sp 2>/dev/null || true
  $PY -c '
import json, sys
try:
    d = json.loads(sys.argv[1])["end"]["sum_received"]
except Exception:
    print("0 0 0"); sys.exit()
ticks, hz = int(sys.argv[2]), int(sys.argv[3])
gb = d["bytes"] / 1e9
print(round(d["bits_per_second"] / 1e6), f"{ticks / hz / gb:.2f}" if gb else 0, d["bytes"])
' "$json" $((after - before)) "$HZ"
}

# --- hometun with static SAs

hometun_down() {
  for f in $LAB/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  for n in hta htb htr; do
    for p in $(ip netns pids $n 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    for _ in $(seq 50); do [ -e /run/netns/$n ] || break; ip netns del $n 2>/dev/null || sleep 0.2; done
  done
  rm -f $LAB/*.pid $LAB/*.sock
}

two_namespaces() { # hta (home, 192.0.2.2) -- htb (vps, 192.0.2.1)
  ip netns add hta; ip netns add htb
  ip -n hta link add ha0 type veth peer name hb0
  ip -n hta link set hb0 netns htb
  ip -n hta addr add 192.0.2.2/24 dev ha0; ip -n htb addr add 192.0.2.1/24 dev hb0
  for n in hta htb; do ip -n $n link set lo up; done
  ip -n hta link set ha0 up; ip -n htb link set hb0 up
}

static_up() { # encap: raw|udp
  local encap=$1
  hometun_down
  mkdir -p $LAB
  two_namespaces
  for side in home vps; do
    sed -e "s/^encap = \"raw\"/encap = \"$encap\"/" \
      -e "${INNER_MTU:+/^mtu = /d}" -e "${INNER_MTU:+s/^\[interface\]$/[interface]\nmtu = $INNER_MTU/}" \
      examples/static-sa/$side.toml > $LAB/$side.toml
  done
  ip netns exec htb ${CALLGRIND_RECEIVER_OUT:+valgrind --tool=callgrind --callgrind-out-file=$CALLGRIND_RECEIVER_OUT} \
    "$HOMETUN_BIN" forwarder --control $LAB/vps.sock --static $LAB/vps.toml ${HOMETUN_ARGS:-} >$LAB/vps.log 2>&1 &
  echo $! > $LAB/vps.pid
  # CALLGRIND_OUT: the sending forwarder runs under callgrind (user-space instruction counts,
  # repeatable whatever else the machine does; the transfer is much slower).
  ip netns exec hta ${CALLGRIND_OUT:+valgrind --tool=callgrind --callgrind-out-file=$CALLGRIND_OUT} \
    "$HOMETUN_BIN" forwarder --control $LAB/home.sock --static $LAB/home.toml ${HOMETUN_ARGS:-} >$LAB/home.log 2>&1 &
  echo $! > $LAB/home.pid
  for _ in $(seq 100); do [ -S $LAB/home.sock ] && [ -S $LAB/vps.sock ] && break; sleep 0.1; done
  ip netns exec hta ping -6 -c 1 -W 2 2001:db8:ffff::1 >/dev/null || { echo "hometun pair ($encap) does not carry ping" >&2; cat $LAB/*.log >&2; }
  PIDS=("$(cat $LAB/home.pid)" "$(cat $LAB/vps.pid)")
}

# --- hometun daemons, PKI from `hometun pki`

# One CA, server and home for every daemon round (made once).
make_pki() {
  [ -f $LAB/pki/home/client.toml ] && return
  mkdir -p $LAB/pki
  "$HOMETUN_BIN" pki init --dir $LAB/pki/ca --server-ipv4 192.0.2.1 --pool 2001:db8:100::/48 >/dev/null
  "$HOMETUN_BIN" pki request --dir $LAB/pki/home --name home.example >/dev/null
  "$HOMETUN_BIN" pki sign --dir $LAB/pki/ca --csr $LAB/pki/home/client.csr --out $LAB/pki/home.bundle >/dev/null
  "$HOMETUN_BIN" pki import --dir $LAB/pki/home $LAB/pki/home.bundle >/dev/null
  if [ -n "${INNER_MTU:-}" ]; then
    sed -i "s/^mtu = 1400$/mtu = $INNER_MTU/" $LAB/pki/ca/server.toml $LAB/pki/home/client.toml
  fi
}

daemons_up() { # mode: raw (no NAT) | nat (home behind a masquerading router: ESP in UDP) |
               # udp (no NAT, the home forces ESP in UDP)
  local mode=$1 client_toml=$LAB/pki/home/client.toml
  hometun_down
  make_pki
  if [ "$mode" = udp ]; then
    # A copy beside the original, so that its relative paths still hold.
    client_toml=$LAB/pki/home/client-udp.toml
    sed 's/^\[client\]$/[client]\nforce_udp_encapsulation = true/' $LAB/pki/home/client.toml >"$client_toml"
  fi
  if [ "$mode" != nat ]; then
    two_namespaces
  else
    # hta (home 198.51.100.2) -- htr (router: 198.51.100.1 | 192.0.2.2, masquerade) -- htb (vps)
    ip netns add hta; ip netns add htr; ip netns add htb
    ip -n hta link add ha0 type veth peer name hr0
    ip -n htr link add hr1 type veth peer name hb0
    ip -n hta link set hr0 netns htr
    ip -n htr link set hb0 netns htb
    ip -n hta addr add 198.51.100.2/24 dev ha0; ip -n htr addr add 198.51.100.1/24 dev hr0
    ip -n htr addr add 192.0.2.2/24 dev hr1; ip -n htb addr add 192.0.2.1/24 dev hb0
    for n in hta htr htb; do ip -n $n link set lo up; done
    ip -n hta link set ha0 up; ip -n htr link set hr0 up; ip -n htr link set hr1 up; ip -n htb link set hb0 up
    ip -n hta route add default via 198.51.100.1
    ip netns exec htr sysctl -qw net.ipv4.ip_forward=1
    printf 'table ip nat {\n chain post {\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname "hr1" masquerade\n }\n}\n' | ip netns exec htr nft -f -
  fi
  ip -n htb -6 addr add 2001:db8:100::1/128 dev lo
  ip netns exec htb "$HOMETUN_BIN" server --config $LAB/pki/ca/server.toml >$LAB/server.log 2>&1 &
  echo $! > $LAB/server.pid
  for _ in $(seq 100); do grep -q "IKE on" $LAB/server.log 2>/dev/null && break; sleep 0.1; done
  ip netns exec hta "$HOMETUN_BIN" client --config "$client_toml" >$LAB/client.log 2>&1 &
  echo $! > $LAB/client.pid
  local up=false
  for _ in $(seq 60); do
    ip netns exec hta ping -6 -c 1 -W 1 2001:db8:100::1 >/dev/null 2>&1 && { up=true; break; }
    sleep 0.2
  done
  $up || { echo "hometun daemons ($mode) do not carry ping" >&2; cat $LAB/server.log $LAB/client.log >&2; }
  local server client
  server=$(cat $LAB/server.pid); client=$(cat $LAB/client.pid)
  # The daemons and their forwarder children.
  PIDS=("$client" $(pgrep -P "$client" || true) "$server" $(pgrep -P "$server" || true))
}

# --- the peers

boringtun_up() {
  bash "$REF/boringtun-pair.sh" up >/dev/null
  PIDS=("$(cat /tmp/btlab/bta.pid)" "$(cat /tmp/btlab/btb.pid)")
}

strongswan_up() {
  bash "$REF/strongswan-pair.sh" up >/dev/null
  ip netns exec swa env STRONGSWAN_CONF=/tmp/swlab/swa/strongswan.conf \
    swanctl --initiate --child v6 --uri unix:///tmp/swlab/swa/charon.vici >/dev/null 2>&1 || true
  ip netns exec swa ping -6 -c 1 -W 3 2001:db8:ffff::1 >/dev/null 2>&1 || true
  PIDS=("$(cat /tmp/swlab/swa/pid)" "$(cat /tmp/swlab/swb/pid)")
}

cleanup() {
  hometun_down
  bash "$REF/boringtun-pair.sh" down >/dev/null 2>&1 || true
  bash "$REF/strongswan-pair.sh" down >/dev/null 2>&1 || true
  # The logs stay only when asked for (KEEP_LAB=1).
  [ -n "${KEEP_LAB:-}" ] || rm -rf "$LAB"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

hometun_down
rm -rf $LAB
mkdir -p $LAB
: >$LAB/results
measure() { # name up-command...
  local name=$1 result
  shift
  "$@"
  case $name in
    static_*|daemons_*) result=$(PERF_NAME=$name-$round tput hta htb "${TARGET}" "${PIDS[@]}") ;;
    boringtun) result=$(tput bta btb 2001:db8:ffff::1 "${PIDS[@]}") ;;
    strongswan) result=$(tput swa swb 2001:db8:ffff::1 "${PIDS[@]}") ;;
  esac
  echo "round $round: $name $result (Mbit/s, CPU s/GB)" >&2
  echo "$name $result" >>$LAB/results
}

hometun_pair() { # name target up-command... (and again with BASELINE_BIN, as NAME_base)
  local name=$1 target=$2
  shift 2
  TARGET=$target measure "$name" "$@"
  hometun_down
  if [ -n "${BASELINE_BIN:-}" ]; then
    local current=$HOMETUN_BIN
    HOMETUN_BIN=$BASELINE_BIN
    rm -rf $LAB/pki
    TARGET=$target measure "${name}_base" "$@"
    rm -rf $LAB/pki
    HOMETUN_BIN=$current
  fi
}

for round in $(seq "$ROUNDS"); do
  for pair in $PAIRS; do
    case $pair in
      static_raw) hometun_pair static_raw 2001:db8:ffff::1 static_up raw ;;
      static_udp) hometun_pair static_udp 2001:db8:ffff::1 static_up udp ;;
      daemons_raw) hometun_pair daemons_raw 2001:db8:100::1 daemons_up raw ;;
      daemons_nat) hometun_pair daemons_nat 2001:db8:100::1 daemons_up nat ;;
      daemons_udp) hometun_pair daemons_udp 2001:db8:100::1 daemons_up udp ;;
      boringtun) measure boringtun boringtun_up; bash "$REF/boringtun-pair.sh" down >/dev/null ;;
      strongswan) measure strongswan strongswan_up; bash "$REF/strongswan-pair.sh" down >/dev/null ;;
      *) echo "unknown pair $pair" >&2; exit 2 ;;
    esac
    hometun_down
  done
done

echo "TCP through each pair, $ROUNDS rounds of ${SECONDS_PER_RUN}s (iperf3), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg):"
$PY - "$LAB/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, mbit, cpu = line.split()[:3]
    rows.setdefault(name, []).append((int(mbit), float(cpu)))
labels = {
    "static_raw": "hometun static, raw ESP",
    "static_raw_base": "  the same, baseline binary",
    "static_udp": "hometun static, ESP in UDP",
    "static_udp_base": "  the same, baseline binary",
    "daemons_raw": "hometun daemons, raw ESP",
    "daemons_raw_base": "  the same, baseline binary",
    "daemons_nat": "hometun daemons, NAT (UDP)",
    "daemons_nat_base": "  the same, baseline binary",
    "daemons_udp": "hometun daemons, forced UDP",
    "daemons_udp_base": "  the same, baseline binary",
    "boringtun": "boringtun",
    "strongswan": "strongSwan (libipsec)",
}
med = {}
print(f"  {'pair':28} {'Mbit/s median (min-max)':>26}   {'CPU s/GB median (min-max)':>27}")
for name, label in labels.items():
    if name not in rows:
        continue
    mbit = [r[0] for r in rows[name]]
    cpu = [r[1] for r in rows[name] if r[0] > 0]
    med[name] = (statistics.median(mbit), statistics.median(cpu) if cpu else 0.0)
    cpu_text = f"{med[name][1]:6.2f} ({min(cpu):.2f}-{max(cpu):.2f})" if cpu else "n/a"
    print(f"  {label:28} {med[name][0]:8.0f} ({min(mbit)}-{max(mbit)})".ljust(58) + f"   {cpu_text}")
peers = [p for p in ("boringtun", "strongswan") if p in med and med[p][0] > 0]
if peers:
    best = max(peers, key=lambda p: med[p][0])
    cheapest = min(peers, key=lambda p: med[p][1])
    print(f"  best peer by throughput: {labels[best]} ({med[best][0]:.0f} Mbit/s); "
          f"by CPU per GB: {labels[cheapest]} ({med[cheapest][1]:.2f} s/GB)")
    for name in [n for n in labels if n in med and not n in peers]:
        if med[name][1] > 0:
            print(f"  {labels[name]:28} {med[name][0] / med[best][0]:5.2f}x the throughput, "
                  f"{med[name][1] / med[cheapest][1]:5.2f}x the CPU per GB of the best peer")
PY
