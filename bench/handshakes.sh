#!/bin/bash
# Full IKEv2 handshakes per second (IKE_SA_INIT + IKE_AUTH with Ed25519 certificates, X25519,
# AES-GCM, one CHILD SA installed, then DELETE of the IKE SA with its answer awaited) of two
# responders in the same run, driven by the same initiator (`hometun ike bench`, a concurrent
# initiator built on the sans-IO Endpoint):
#   hometun   `hometun server` (its forwarder installs each CHILD SA)
#   strongSwan charon 5.9 with kernel-libipsec (userspace ESP, installs each CHILD SA)
# Both use the same certificates (made with `hometun pki`) and proposals. Prints handshakes/s
# of each, the responder's (and the initiator's) CPU time per handshake, and the ratios
# hometun/strongSwan; then the breakdown of hometun's responder CPU: the sans-IO endpoint alone
# per handshake and per CHILD SA rekey with a key exchange, and each primitive (X25519, Ed25519
# sign and verify, the certificate chain check, key derivation, SK payloads).
#
# Usage (as root): bench/handshakes.sh [COUNT] [CONCURRENCY] [ROUNDS]
#   COUNT handshakes per round (default 500), CONCURRENCY in flight (default 16), ROUNDS per
#   responder (default 3; the rounds of the responders alternate, and the median and spread
#   are reported, the machine being shared).
#   Env: HOMETUN_BIN (skip the build), BASELINE_BIN (a second hometun binary measured in the same
#   rounds, e.g. an older commit's), SKIP_BREAKDOWN=1 (no cargo bench), PERF_DIR (record a
#   perf profile of the hometun responder's rounds there; with SYSCALLS=1 count its system
#   calls and context switches instead), HELD (that many other homes, each its own identity,
#   keep an IKE SA and CHILD SA up on every responder during the rounds, as on a server with
#   many homes; default 0), SERVER_CPUS (run the hometun servers on these CPUs only, e.g. 0
#   for a single-core server: `taskset -c`).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
COUNT=${1:-500}
CONCURRENCY=${2:-16}
ROUNDS=${3:-3}
HELD=${HELD:-0}
needs_root bench/handshakes.sh namespaces
[ -x /usr/lib/ipsec/charon ] || { echo "bench/handshakes.sh: strongSwan (charon) is not installed" >&2; exit 1; }

hometun_binary
LAB=$(mktemp -d /tmp/hometun-handshakes.XXXXXX)
# One namespace per responder, all on a bridge in the home's: the rounds of each can alternate.
VPS=hths$$v        # hometun server, 192.0.2.1
VPS_BASE=hths$$b   # the baseline binary's server (BASELINE_BIN), 192.0.2.4
VPS_SW=hths$$s     # charon, 192.0.2.3
HOME_NS=hths$$h    # the initiator, 192.0.2.2
SERVER_PID=
BASE_PID=
CHARON_PID=

cleanup() {
  for pid in $SERVER_PID $BASE_PID $CHARON_PID; do
    kill "$pid" 2>/dev/null || true
  done
  sleep 0.5
  for pid in $SERVER_PID $BASE_PID $CHARON_PID; do
    kill -9 "$pid" 2>/dev/null || true
  done
  for n in $VPS $VPS_BASE $VPS_SW $HOME_NS; do
    for p in $(ip netns pids $n 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del $n 2>/dev/null || true
  done
  rm -rf "$LAB"
}
trap cleanup EXIT

ip netns add $HOME_NS
ip -n $HOME_NS link set lo up
ip -n $HOME_NS link add br0 type bridge
ip -n $HOME_NS addr add 192.0.2.2/24 dev br0
ip -n $HOME_NS link set br0 up
attach() { # namespace address
  ip netns add $1
  ip -n $1 link set lo up
  ip -n $HOME_NS link add p$2 type veth peer name eth0 netns $1
  ip -n $HOME_NS link set p$2 master br0
  ip -n $HOME_NS link set p$2 up
  ip -n $1 addr add 192.0.2.$2/24 dev eth0
  ip -n $1 link set eth0 up
}
attach $VPS 1
attach $VPS_SW 3
[ -z "${BASELINE_BIN:-}" ] || attach $VPS_BASE 4

# One PKI for both responders.
"$HOMETUN_BIN" pki init --dir $LAB/ca --server-ipv4 192.0.2.1 --pool 2001:db8:100::/48 >/dev/null
# One home (identity, certificate, prefix) per handshake in flight: the initiator sends
# INITIAL_CONTACT, which would make concurrent handshakes of one identity replace each other.
make_homes "$HOMETUN_BIN" $LAB/ca $LAB 1 "$CONCURRENCY" home
CONFIGS=()
for i in $(seq "$CONCURRENCY"); do CONFIGS+=(--config "$LAB/home$i/client.toml"); done
# Every handshake comes from one address: lift the per-source and cookie limits on both sides.
lift_source_limits "$LAB/ca/server.toml"
HELD_CONFIGS=()
if [ "$HELD" -gt 0 ]; then
  make_homes "$HOMETUN_BIN" $LAB/ca $LAB/held 1 "$HELD" held
  for i in $(seq "$HELD"); do HELD_CONFIGS+=(--config "$LAB/held/home$i/client.toml"); done
fi

cpu_ticks() { # pids... -> utime+stime of them and their children, in clock ticks
  local total=0
  for pid in "$@"; do
    for p in $pid $(pgrep -P "$pid" || true); do
      [ -r /proc/$p/stat ] || continue
      # fields 14, 15 after the command name in parentheses
      t=$(sed -e 's/^.*) //' /proc/$p/stat | awk '{print $12 + $13}')
      total=$((total + t))
    done
  done
  echo $total
}

thread_ticks() { # pid -> "thread-name ticks" per thread of it and its children; its main
  # thread is "driver", a number at the end of a name is dropped (the crypto workers add up)
  local pid=$1 p t name
  for p in $pid $(pgrep -P "$pid" || true); do
    for t in /proc/$p/task/*; do
      [ -r $t/stat ] || continue
      name=$(sed -e 's/-[0-9]*$//' $t/comm)
      [ "$t" != /proc/$pid/task/$pid ] || name=driver
      echo "$name $(sed -e 's/^.*) //' $t/stat | awk '{print $12 + $13}')"
    done
  done
}

bench_round() { # responder pid, address -> "rate responder_cpu_ms initiator_cpu_ms ok failed"
  local pid=$1 address=$2 before after line initiator perf_pid=
  # Per thread for the hometun responder: where its CPU goes beyond the crypto.
  [ "$pid" != "${SERVER_PID:-}" ] || thread_ticks "$pid" | sed -e 's/^/before /' >>$LAB/threads
  before=$(cpu_ticks "$pid")
  if [ -n "${PERF_DIR:-}" ] && [ "$pid" = "${SERVER_PID:-}" ]; then
    mkdir -p "$PERF_DIR"
    if [ -n "${SYSCALLS:-}" ]; then
      perf stat -x, --per-thread -e 'raw_syscalls:sys_enter,sched:sched_switch,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_write,syscalls:sys_enter_read,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,syscalls:sys_enter_socket,syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvmsg' \
        -p "$(echo "$pid" $(pgrep -P "$pid") | tr ' ' ,)" -o "$PERF_DIR/responder-$(date +%s%N).stat" >/dev/null 2>&1 &
    else
      perf record -q -F 1999 -g -e cpu-clock -p "$(echo "$pid" $(pgrep -P "$pid") | tr ' ' ,)" \
        -o "$PERF_DIR/responder-$(date +%s%N).data" >/dev/null 2>&1 &
    fi
    perf_pid=$!
    sleep 0.5 # perf attaches
  fi
  # bash's `time` gives the initiator's user and system CPU seconds.
  initiator=$( { TIMEFORMAT='%U %S'; time ip netns exec $HOME_NS env RUST_LOG=warn "$HOMETUN_BIN" ike bench $address \
    "${CONFIGS[@]}" --count "$COUNT" --concurrency "$CONCURRENCY" >$LAB/round.out 2>>$LAB/bench.err; } 2>&1 ) || true
  after=$(cpu_ticks "$pid")
  if [ "$pid" = "${SERVER_PID:-}" ]; then
    thread_ticks "$pid" | sed -e 's/^/after /' >>$LAB/threads
    grep -o "ok [0-9]*" $LAB/round.out | sed -e 's/^/handshakes /' >>$LAB/threads
  fi
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
  line=$(cat $LAB/round.out)
  echo "$line" >>$LAB/bench.out
  /usr/bin/python3 - "$line" "$before" "$after" "$(getconf CLK_TCK)" "$initiator" <<'PY'
import re, sys
line, before, after, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
times = [float(x) for x in sys.argv[5].split()[-2:]] if sys.argv[5].strip() else [0, 0]
m = re.search(r"ok (\d+) failed (\d+) seconds ([\d.]+) rate ([\d.]+)/s", line)
if not m:
    print("0 0 0 0 0"); sys.exit()
ok, failed, rate = int(m.group(1)), int(m.group(2)), float(m.group(4))
cpu_ms = (after - before) * 1000.0 / hz / ok if ok else 0
init_ms = sum(times) * 1000.0 / ok if ok else 0
print(f"{rate:.1f} {cpu_ms:.3f} {init_ms:.3f} {ok} {failed}")
PY
}

# --- hometun responder (and the baseline binary's, at 192.0.2.4 with the same PKI)
start_server() { # namespace binary config log -> pid
  ip netns exec $1 ${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} "$2" server --config $3 >$4 2>&1 &
  local pid=$!
  for _ in $(seq 100); do grep -q "IKE on" $4 2>/dev/null && break; sleep 0.1; done
  grep -q "IKE on" $4 || { echo "hometun server did not start:" >&2; cat $4 >&2; exit 1; }
  echo $pid
}
SERVER_PID=$(start_server $VPS "$HOMETUN_BIN" $LAB/ca/server.toml $LAB/server.log)
if [ -n "${BASELINE_BIN:-}" ]; then
  sed -e 's/^listen = "192.0.2.1"/listen = "192.0.2.4"/; s/^listen = "192.0.2.1:8443"/listen = "192.0.2.4:8443"/' \
    -e 's/^state_dir = "state"/state_dir = "state-base"/; s#^control_socket = "state/#control_socket = "state-base/#' \
    $LAB/ca/server.toml >$LAB/ca/server-base-all.toml
  config_for_binary "$BASELINE_BIN" $LAB/ca/server-base-all.toml $LAB/ca/server-base.toml
  BASE_PID=$(start_server $VPS_BASE "$BASELINE_BIN" $LAB/ca/server-base.toml $LAB/server-base.log)
fi

# --- strongSwan responder, same certificates
S=$LAB/charon
charon_config $S $LAB/ca 192.0.2.3 aes128gcm16
charon_start $VPS_SW $S

# --- the held homes, on every responder (one initiator process each; it answers liveness
# checks and holds until the namespaces go). Their handshakes are each home's first of the
# responder's run, as after a restart: nothing about the home's certificate is remembered yet
# (its chain is verified in full). The responder's CPU for them is kept as a figure of its own.
hold_homes() { # address responder-pid name
  [ "$HELD" -gt 0 ] || return 0
  local out=$LAB/hold-$1.out before after
  : >$out
  ulimit -n $((HELD + 1024))
  before=$(cpu_ticks "$2")
  ip netns exec $HOME_NS env RUST_LOG=warn "$HOMETUN_BIN" ike bench $1 "${HELD_CONFIGS[@]}" \
    --count "$HELD" --concurrency 16 --hold >$out 2>>$LAB/hold.err &
  disown # the clean-up kills it with its namespace: no "Killed" line from bash then
  for _ in $(seq 1200); do grep -q "^holding" $out && break; sleep 0.1; done
  grep -q "^holding" $out || { echo "the held homes did not come up on $1:" >&2; cat $out $LAB/hold.err >&2; exit 1; }
  after=$(cpu_ticks "$2")
  echo "$3 $((after - before)) $(grep -o 'ok [0-9]*' $out | head -1 | cut -d' ' -f2)" >>$LAB/first-handshakes
}
: >$LAB/first-handshakes
hold_homes 192.0.2.1 "$SERVER_PID" hometun
[ -z "$BASE_PID" ] || hold_homes 192.0.2.4 "$BASE_PID" baseline
hold_homes 192.0.2.3 "$CHARON_PID" strongSwan

# --- the rounds, alternating between the responders
: >$LAB/hometun.rounds
: >$LAB/threads
: >$LAB/base.rounds
: >$LAB/strongswan.rounds
for _ in $(seq "$ROUNDS"); do
  bench_round $SERVER_PID 192.0.2.1 >>$LAB/hometun.rounds
  [ -z "$BASE_PID" ] || bench_round $BASE_PID 192.0.2.4 >>$LAB/base.rounds
  bench_round $CHARON_PID 192.0.2.3 >>$LAB/strongswan.rounds
done

echo "full handshakes (IKE_SA_INIT + IKE_AUTH with Ed25519 certificates + DELETE), $COUNT per round, $CONCURRENCY in flight ($CONCURRENCY homes), $HELD other homes held up, $ROUNDS rounds alternating, median (min-max), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg):"
/usr/bin/python3 - $LAB/hometun.rounds $LAB/base.rounds $LAB/strongswan.rounds <<'PY'
import statistics, sys
def load(path):
    rows = [list(map(float, line.split())) for line in open(path) if line.strip()]
    return [r for r in rows if r[3] > 0]
def spread(values, fmt):
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"
results = {}
for name, path in (("hometun", sys.argv[1]), ("  baseline", sys.argv[2]), ("strongSwan", sys.argv[3])):
    rows = load(path)
    if not rows:
        continue
    rate, cpu, init = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
    ok, failed = sum(r[3] for r in rows), sum(r[4] for r in rows)
    results[name] = (statistics.median(rate), statistics.median(cpu))
    print(f"  {name:<11} {spread(rate, '{:.0f}'):>22} handshakes/s  {spread(cpu, '{:.3f}'):>20} ms responder CPU"
          f" per handshake  (initiator {statistics.median(init):.3f} ms; {ok:.0f} ok, {failed:.0f} failed)")
if "hometun" in results and "strongSwan" in results:
    (h, hc), (s, sc) = results["hometun"], results["strongSwan"]
    print(f"  ratio hometun/strongSwan: {h / s:.2f}x handshakes/s, {sc / hc:.2f}x less responder CPU per handshake")
PY
if [ -s $LAB/first-handshakes ]; then
  echo "  first handshakes of the $HELD held homes (each home's first in the responder's run, no DELETE):"
  while read -r name ticks ok; do
    awk -v n="$name" -v t="$ticks" -v ok="$ok" -v hz="$(getconf CLK_TCK)" \
      'BEGIN { printf "    %-11s %.3f ms responder CPU per handshake (%d homes, %d ms ticks)\n", n, t * 1000 / hz / ok, ok, 1000 / hz }'
  done <$LAB/first-handshakes
fi
echo "  (initiator and responder share the machine: when responder + initiator CPU per handshake"
echo "   times the rate nears the CPU count, the rate measures the machine, the CPU column the responder)"
# The hometun responder's CPU by thread, over all its rounds: the IKE driver (the daemon's main
# thread: sockets, the endpoint, our X25519 key pair, log lines), the crypto workers (the shared
# secret, key derivation, the peer's chain and AUTH, our signature), the forwarder's SA channel
# (installs, deletes, routes), and the rest.
/usr/bin/python3 - $LAB/threads "$(getconf CLK_TCK)" <<'PY'
import collections, sys
hz = int(sys.argv[2])
ticks, handshakes = collections.Counter(), 0
for line in open(sys.argv[1]):
    kind, name, value = line.split()
    if kind == "handshakes":
        handshakes += int(value)
    else:
        ticks[name] += int(value) if kind == "after" else -int(value)
names = {"driver": "IKE driver (main thread)", "ike-worker": "crypto workers",
         "control-conn": "forwarder SA channel"}
if handshakes:
    total = sum(ticks.values())
    print(f"  hometun responder CPU by thread, all rounds ({handshakes} handshakes, {1000 // hz} ms ticks):")
    rest = 0
    for name, count in ticks.most_common():
        us = count * 1e6 / hz / handshakes
        if name in names:
            print(f"    {names[name]:<28} {us:6.1f} us per handshake ({count / max(total, 1) * 100:.0f} %)")
        else:
            rest += us
    print(f"    {'other threads':<28} {rest:6.1f} us per handshake")
PY
# Where the responder's CPU goes: the sans-IO endpoint in memory (no I/O, no forwarder), a CHILD
# SA rekey with a key exchange, and each cryptographic primitive alone (ike/benches/handshake.rs).
if [ -z "${SKIP_BREAKDOWN:-}" ] && command -v cargo >/dev/null; then
  echo "breakdown (cargo bench -p hometun-ike --bench handshake; CPU time of the bench thread):"
  cargo bench --quiet -p hometun-ike --bench handshake 2>/dev/null | sed -e 's/^/  /'
fi
if [ -s $LAB/bench.err ]; then
  echo "initiator warnings (first lines):" >&2
  sort $LAB/bench.err | uniq -c | sort -rn | head -5 >&2
fi
