#!/bin/bash
# Resident memory per idle client, in network namespaces: N homes (default 1000), each
# with its own identity, certificate and /64 (made with `hometun pki`), bring up one IKE SA and
# its CHILD SA each against the responder and keep them up, idle (`hometun ike bench --hold`: one
# initiator endpoint per home, answering the responder's liveness checks). Responders, in turn:
#   hometun   `hometun server` (IKE daemon + its forwarder child, which holds each CHILD SA)
#   strongSwan charon 5.9 with kernel-libipsec (userspace ESP, holds each CHILD SA), same
#             certificates and proposals
# For each it prints VmRSS (/proc/PID/status) before any client and with N clients held, and
# the difference per client in KiB (hometun: daemon, forwarder, total), the responder's own
# count of peers (`hometun status`, `swanctl --stats`), the ratio strongSwan/hometun, and the
# CPU each responder used while the homes were held idle (percent of one core).
# The server's liveness checks stay at their default (dpd_seconds = 30): the holding initiator
# answers them, so a run longer than 30 s keeps every SA up.
#
# Usage (as root): bench/memory.sh [CLIENTS=1000] [HOLD_SECONDS=5]
#   HOLD_SECONDS: how long the clients stay idle before the second reading.
#   Env: HOMETUN_BIN (skip the build), SKIP_STRONGSWAN=1.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
CLIENTS=${1:-1000}
HOLD=${2:-5}
CONCURRENCY=16
needs_root bench/memory.sh "namespaces, TUN"

hometun_binary
LAB=$(mktemp -d /tmp/hometun-memory.XXXXXX)
VPS=htmm$$v
HOME_NS=htmm$$h
SERVER_PID=
CHARON_PID=
BENCH_PID=

cleanup() {
  for pid in $BENCH_PID $SERVER_PID $CHARON_PID; do
    kill "$pid" 2>/dev/null || true
  done
  sleep 0.5
  for pid in $BENCH_PID $SERVER_PID $CHARON_PID; do
    kill -9 "$pid" 2>/dev/null || true
  done
  for n in $VPS $HOME_NS; do
    for p in $(ip netns pids $n 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del $n 2>/dev/null || true
  done
  rm -rf "$LAB"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add $VPS
ip netns add $HOME_NS
ip link add htmm$$a type veth peer name htmm$$b
ip link set htmm$$a netns $VPS
ip link set htmm$$b netns $HOME_NS
ip -n $VPS addr add 192.0.2.1/24 dev htmm$$a
ip -n $HOME_NS addr add 192.0.2.2/24 dev htmm$$b
for n in $VPS $HOME_NS; do ip -n $n link set lo up; done
ip -n $VPS link set htmm$$a up
ip -n $HOME_NS link set htmm$$b up

# --- N homes: keys and CSRs in parallel, signing in turn (one registry), imports in parallel.
began=$(date +%s.%N)
"$HOMETUN_BIN" pki init --dir $LAB/ca --server-ipv4 192.0.2.1 --pool 2001:db8:100::/48 >/dev/null
make_homes "$HOMETUN_BIN" $LAB/ca $LAB 1 "$CLIENTS" home
pki_seconds=$(echo "$(date +%s.%N) - $began" | bc)
CONFIGS=()
for i in $(seq "$CLIENTS"); do CONFIGS+=(--config "$LAB/home$i/client.toml"); done
# Every home comes from one address: lift the per-source and cookie limits.
lift_source_limits "$LAB/ca/server.toml"

rss_kib() { # pid -> VmRSS in KiB
  awk '/^VmRSS:/ {print $2}' /proc/"$1"/status
}
cpu_ticks() { # pid -> user + system CPU time in clock ticks (fields 14 and 15 of its stat)
  awk '{print $14 + $15}' /proc/"$1"/stat
}
HZ=$(getconf CLK_TCK)
idle_percent() { # ticks -> percent of one core over the hold
  echo "scale=2; $1 * 100 / $HZ / $HOLD" | bc
}

# Brings CLIENTS SAs up against 192.0.2.1 and holds them: returns once they are up.
hold_clients() {
  : >$LAB/hold.out
  # One UDP socket per held home.
  ulimit -n $((CLIENTS + 1024))
  ip netns exec $HOME_NS env RUST_LOG=warn "$HOMETUN_BIN" ike bench 192.0.2.1 "${CONFIGS[@]}" \
    --count "$CLIENTS" --concurrency $CONCURRENCY --hold >$LAB/hold.out 2>>$LAB/hold.err &
  BENCH_PID=$!
  for _ in $(seq 1200); do
    grep -q "^holding" $LAB/hold.out && break
    kill -0 $BENCH_PID 2>/dev/null || break
    sleep 0.1
  done
  grep -q "^holding" $LAB/hold.out || { echo "the initiator did not get to hold its SAs:" >&2; cat $LAB/hold.out $LAB/hold.err >&2; exit 1; }
}

release_clients() { # -> HELD: the initiator's last line (each held SA deleted)
  kill -TERM $BENCH_PID
  wait $BENCH_PID || true
  BENCH_PID=
  HELD=$(grep "^held" $LAB/hold.out || echo "held ? (no last line)")
}

# --- hometun responder
ip netns exec $VPS "$HOMETUN_BIN" server --config $LAB/ca/server.toml >$LAB/server.log 2>&1 &
SERVER_PID=$!
for _ in $(seq 300); do grep -q "IKE on" $LAB/server.log 2>/dev/null && break; sleep 0.1; done
grep -q "IKE on" $LAB/server.log || { echo "hometun server did not start:" >&2; cat $LAB/server.log >&2; exit 1; }
FORWARDER_PID=$(pgrep -P $SERVER_PID | head -1)
[ -n "$FORWARDER_PID" ] || { echo "hometun server has no forwarder child" >&2; exit 1; }
sleep 1
d0=$(rss_kib $SERVER_PID); f0=$(rss_kib $FORWARDER_PID)
hold_clients
h_line=$(head -1 $LAB/hold.out)
dt0=$(cpu_ticks $SERVER_PID); ft0=$(cpu_ticks $FORWARDER_PID)
sleep "$HOLD"
dt1=$(cpu_ticks $SERVER_PID); ft1=$(cpu_ticks $FORWARDER_PID)
d1=$(rss_kib $SERVER_PID); f1=$(rss_kib $FORWARDER_PID)
h_idle="$(idle_percent $((dt1 - dt0 + ft1 - ft0))) % (daemon $(idle_percent $((dt1 - dt0))), forwarder $(idle_percent $((ft1 - ft0))))"
ip netns exec $VPS "$HOMETUN_BIN" status --config $LAB/ca/server.toml >$LAB/status.txt
ip netns exec $VPS "$HOMETUN_BIN" status --config $LAB/ca/server.toml --json >$LAB/status.json
h_status=$(head -2 $LAB/status.txt | sed 's/^ *//' | paste -sd ';' | sed 's/;/; /')
h_sas=$(/usr/bin/python3 - $LAB/status.json <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
peers = s.get("peers", [])
sas = (s.get("counters") or {}).get("sas", [])
print(f"{len(peers)} peers, {len(sas)} CHILD SA pairs in the forwarder")
PY
)
release_clients; h_held=$HELD
kill $SERVER_PID; wait $SERVER_PID 2>/dev/null || true
SERVER_PID=

# --- strongSwan responder, same certificates
s_rows=
if [ "${SKIP_STRONGSWAN:-}" != 1 ] && [ -x /usr/lib/ipsec/charon ]; then
  S=$LAB/charon
  charon_config $S $LAB/ca 192.0.2.1 aes128gcm16
  charon_start $VPS $S
  swanctl_() { ip netns exec $VPS env STRONGSWAN_CONF=$S/strongswan.conf swanctl "$@" --uri unix://$S/charon.vici; }
  sleep 1
  c0=$(rss_kib $CHARON_PID)
  hold_clients
  s_line=$(head -1 $LAB/hold.out)
  ct0=$(cpu_ticks $CHARON_PID)
  sleep "$HOLD"
  ct1=$(cpu_ticks $CHARON_PID)
  c1=$(rss_kib $CHARON_PID)
  s_idle="$(idle_percent $((ct1 - ct0))) %"
  s_status=$(swanctl_ --stats | grep -i "IKE_SAs" | sed 's/^ *//')
  s_children=$(swanctl_ --list-sas --raw | grep -o "child-sas {[^}]*v6-[0-9]*" | wc -l || true)
  release_clients; s_held=$HELD
  s_rows=1
fi

per() { # before after -> KiB per client
  echo "scale=1; ($2 - $1) / $CLIENTS" | bc
}
echo "Resident memory per idle client, $CLIENTS homes (own identity, certificate and /64 each), one IKE SA + one CHILD SA each, idle ${HOLD} s, $(nproc) CPUs (shared machine):"
echo "  $CLIENTS identities made with hometun pki (request, sign, import) in ${pki_seconds%.*} s"
printf "  %-26s %11s %13s %14s\n" "process" "RSS before" "with $CLIENTS" "KiB per client"
printf "  %-26s %7s KiB %9s KiB %14s\n" \
  "hometun IKE daemon" "$d0" "$d1" "$(per "$d0" "$d1")" \
  "hometun forwarder" "$f0" "$f1" "$(per "$f0" "$f1")" \
  "hometun total" "$((d0 + f0))" "$((d1 + f1))" "$(per $((d0 + f0)) $((d1 + f1)))"
if [ -n "$s_rows" ]; then
  printf "  %-26s %7s KiB %9s KiB %14s\n" "strongSwan charon" "$c0" "$c1" "$(per "$c0" "$c1")"
fi
echo "  CPU while the $CLIENTS homes are held idle (${HOLD} s; liveness checks every 30 s), percent of one core:"
echo "    hometun:    $h_idle"
if [ -n "$s_rows" ]; then
  echo "    strongSwan: $s_idle"
fi
echo "  hometun:    $h_line"
echo "              status: $h_status; $h_sas; $h_held"
if [ -n "$s_rows" ]; then
  echo "  strongSwan: $s_line"
  echo "              swanctl --stats: $s_status; $s_children CHILD SAs listed; $s_held"
  /usr/bin/python3 - "$d0" "$d1" "$f0" "$f1" "$c0" "$c1" <<'PY'
import sys
d0, d1, f0, f1, c0, c1 = map(int, sys.argv[1:])
h = (d1 + f1) - (d0 + f0)
c = c1 - c0
print(f"  ratio strongSwan/hometun, memory per client: {c / h:.2f}x" if h > 0 else "  ratio: n/a (hometun grew by nothing)")
PY
else
  echo "  strongSwan: skipped (SKIP_STRONGSWAN=1 or charon missing)"
fi
if [ -s $LAB/hold.err ]; then
  echo "initiator warnings (first lines):" >&2
  sort $LAB/hold.err | uniq -c | sort -rn | head -5 >&2
fi
