#!/bin/bash
# Outage of a tunnel when the home's IPv4 address changes, in network namespaces:
#   home (198.51.100.0/24) -- isp (routes; NAT with masquerade) -- vps (203.0.113.0/24)
# A ping every 20 ms runs from the home's tunnel address to the VPS's; in each round the address
# changes once (the new one added, the old one deleted, promote_secondaries), and the round
# prints the pings lost and the outage: the ms between the last reply before the lost pings and
# the first after (with nothing lost, around the change: at 20 ms spacing about 20 ms). The
# summary prints every round, the medians and the ratios.
#
#   hometun raw ESP:  the home's own address changes; its forwarder learns it from netlink,
#                     re-binds and sends the override NA; the VPS probes and switches.
#   hometun NAT/UDP:  the NAT's public address changes; the home sees nothing; the VPS follows the
#                     NAT rebinding with the same probe.
#   strongSwan MOBIKE -> hometun server: a stock strongSwan 5.9 client (charon, kernel-libipsec,
#                     ESP in UDP 4500, mobike = yes) against `hometun server` (certificates from
#                     `hometun pki`); the home's own address changes; charon sends
#                     UPDATE_SA_ADDRESSES from the new one, the server moves the IKE SA, checks the
#                     new address (COOKIE2) and moves the CHILD SAs.
#   strongSwan MOBIKE -> strongSwan: the same client against a charon responder (mobike = yes),
#                     same certificates: MOBIKE as strongSwan does it on both ends.
# The hometun rounds use the forwarders alone (`hometun forwarder --static`): the switch is the
# forwarder's; the IKE daemons follow it without touching the data path.
#
# Usage (as root): bench/roaming.sh [ROUNDS=5]
# Env: HOMETUN_BIN, ROAMTOOL_BIN (skip the builds), SKIP_STRONGSWAN=1, KEEP_LAB=1 (keep logs).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# The charon plugins every strongswan.conf of the tests and benchmarks loads.
STRONGSWAN_PLUGINS=$(cat "$ROOT/testdata/strongswan-plugins")
ROUNDS=${1:-5}
LAB=/tmp/hometun-roaming-bench
PY=/usr/bin/python3
[ "$(id -u)" = 0 ] || { echo "bench/roaming.sh: needs root (namespaces, TUN)" >&2; exit 1; }

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -z "${HOMETUN_BIN:-}" ]; then
  cargo build --release --bin hometun >&2
  HOMETUN_BIN=$TARGET/release/hometun
fi
if [ -z "${ROAMTOOL_BIN:-}" ]; then
  cargo build --release -p hometun-integration --bin hometun-roamtool >&2
  ROAMTOOL_BIN=$TARGET/release/hometun-roamtool
fi

NS="hrbh hrbi hrbv"
down() {
  for f in $LAB/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f"); kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  for n in $NS; do
    for p in $(ip netns pids $n 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del $n 2>/dev/null || true
  done
  rm -f $LAB/*.pid $LAB/*.sock
}
# The logs and certificates stay only when asked for (KEEP_LAB=1).
trap 'down; [ -n "${KEEP_LAB:-}" ] || rm -rf "$LAB"' EXIT
trap 'exit 130' INT TERM

KEY_A=101112131415161718191a1b1c1d1e1f3a3b3c3d
KEY_B=e0e1e2e3e4e5e6e7e8e9eaebecedeeef4a4b4c4d

net() { # mode: raw | nat | the strongSwan modes (routed)
  local mode=$1
  down
  mkdir -p $LAB
  for n in $NS; do ip netns add $n; ip -n $n link set lo up; done
  ip link add h0 netns hrbh type veth peer name ih netns hrbi
  ip link add v0 netns hrbv type veth peer name iv netns hrbi
  ip -n hrbh addr add 198.51.100.2/24 dev h0; ip -n hrbh link set h0 up
  ip -n hrbi addr add 198.51.100.1/24 dev ih; ip -n hrbi link set ih up
  ip -n hrbi addr add 203.0.113.1/24 dev iv; ip -n hrbi link set iv up
  ip -n hrbv addr add 203.0.113.2/24 dev v0; ip -n hrbv link set v0 up
  ip netns exec hrbh sysctl -qw net.ipv4.conf.h0.promote_secondaries=1
  ip netns exec hrbi sysctl -qw net.ipv4.conf.iv.promote_secondaries=1
  ip netns exec hrbi sysctl -qw net.ipv4.ip_forward=1
  ip -n hrbh route add default via 198.51.100.1
  ip -n hrbv route add default via 203.0.113.1
  if [ "$mode" = nat ]; then
    printf 'table ip nat {\n chain postrouting {\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname "iv" ip saddr 198.51.100.0/24 masquerade\n }\n}\n' | ip netns exec hrbi nft -f -
  fi
}

up() { # mode: raw | nat
  local mode=$1
  net "$mode"
  local encap=raw remote=198.51.100.2 extra=""
  if [ "$mode" = nat ]; then
    encap=udp; remote=203.0.113.1; extra="nat_keepalive_seconds = 1"
  fi
  cat > $LAB/home.toml <<EOF
[interface]
addresses = ["fe80::2/64", "2001:db8:1::2/64"]
bind_ipv4 = "198.51.100.2"
[roaming]
follow_local_address = true
[[sa]]
peer = 1
spi_in = 0x3002
spi_out = 0x3001
alg = "aes128gcm16"
key_in = "$KEY_B"
key_out = "$KEY_A"
local_ts = ["2001:db8:1::/64"]
remote_ts = ["::/0"]
local = "198.51.100.2"
remote = "203.0.113.2"
encap = "$encap"
$extra
EOF
  cat > $LAB/vps.toml <<EOF
[interface]
addresses = ["fe80::1/64", "2001:db8:ffff::1/128"]
[roaming]
accept_moves = true
[[sa]]
peer = 1
spi_in = 0x3001
spi_out = 0x3002
alg = "aes128gcm16"
key_in = "$KEY_A"
key_out = "$KEY_B"
local_ts = ["::/0"]
remote_ts = ["2001:db8:1::/64"]
local = "203.0.113.2"
remote = "$remote"
encap = "$encap"
EOF
  ip netns exec hrbv "$HOMETUN_BIN" forwarder --control $LAB/vps.sock --static $LAB/vps.toml >$LAB/vps.log 2>&1 &
  echo $! > $LAB/hrbv.pid
  ip netns exec hrbh "$HOMETUN_BIN" forwarder --control $LAB/home.sock --static $LAB/home.toml >$LAB/home.log 2>&1 &
  echo $! > $LAB/hrbh.pid
  for _ in $(seq 50); do [ -S $LAB/home.sock ] && [ -S $LAB/vps.sock ] && break; sleep 0.1; done
  ip netns exec hrbh ping -6 -c 2 -i 0.2 -W 2 2001:db8:ffff::1 >/dev/null || { echo "hometun pair ($mode) does not carry ping" >&2; cat $LAB/*.log >&2; exit 1; }
  TARGET6=2001:db8:ffff::1
}

# --- strongSwan: a charon (kernel-libipsec) in a namespace, after lab/src/strongswan.rs
charon_start() { # ns dir local_addrs remote_addrs local_id remote_id cert key local_ts remote_ts
  local ns=$1 d=$2
  mkdir -p $d/swanctl/{x509ca,x509,private}
  cp $LAB/ca/ca.pem $d/swanctl/x509ca/
  cp $7 $d/swanctl/x509/own.pem
  cp $8 $d/swanctl/private/own.key
  cat >$d/strongswan.conf <<C
charon {
  load = $STRONGSWAN_PLUGINS
  install_routes = yes
  retransmit_tries = 3
  filelog { log { path = $d/charon.log
    flush_line = yes
    time_format = %H:%M:%S
    default = 1
    ike = 1
  } }
  plugins { vici { socket = unix://$d/charon.vici }
            kernel-libipsec { allow_peer_ts = yes } }
}
swanctl { socket = unix://$d/charon.vici }
C
  cat >$d/swanctl/swanctl.conf <<C
connections {
  home {
    version = 2
    local_addrs = $3
    remote_addrs = $4
    proposals = aes128gcm16-prfsha256-x25519
    encap = yes
    mobike = yes
    local { auth = pubkey
            certs = own.pem
            id = $5 }
    remote { auth = pubkey
             id = $6 }
    children {
      v6 { local_ts = $9
           remote_ts = ${10}
           esp_proposals = aes128gcm16
           mode = tunnel
           life_time = 0
           rekey_time = 0
           start_action = none }
    }
  }
}
C
  ip netns exec $ns sh -c "mount -t tmpfs none /run && cd $d && STRONGSWAN_CONF=$d/strongswan.conf exec /usr/lib/ipsec/charon" >$d/stdout 2>&1 &
  echo $! > $LAB/charon-$ns.pid
  for _ in $(seq 150); do [ -S $d/charon.vici ] && break; sleep 0.1; done
  swanctl_ $ns $d --load-all --file $d/swanctl/swanctl.conf >$d/load.out 2>&1 || { cat $d/load.out >&2; exit 1; }
}

swanctl_() { # ns dir args...
  local ns=$1 d=$2; shift 2
  ip netns exec $ns env STRONGSWAN_CONF=$d/strongswan.conf swanctl "$@" --uri unix://$d/charon.vici
}

# A strongSwan client (MOBIKE) at home against a responder at the VPS (hometun | strongswan),
# certificates from hometun pki; the home's tunnel address on its loopback (strongSwan takes its
# inner source from a local address inside its traffic selector).
up_strongswan() { # responder: hometun | strongswan
  local responder=$1
  net routed
  rm -rf $LAB/ca $LAB/home $LAB/charon-*
  "$HOMETUN_BIN" pki init --dir $LAB/ca --server-ipv4 203.0.113.2 --pool 2001:db8:100::/48 >/dev/null
  "$HOMETUN_BIN" pki request --dir $LAB/home --name home.example >/dev/null
  "$HOMETUN_BIN" pki sign --dir $LAB/ca --csr $LAB/home/client.csr --out $LAB/home.bundle >/dev/null
  "$HOMETUN_BIN" pki import --dir $LAB/home $LAB/home.bundle >/dev/null
  ip -n hrbv -6 addr add 2001:db8:100::1/128 dev lo
  ip -n hrbh -6 addr add 2001:db8:100:1::1/128 dev lo
  if [ "$responder" = hometun ]; then
    ip netns exec hrbv "$HOMETUN_BIN" server --config $LAB/ca/server.toml >$LAB/server.log 2>&1 &
    echo $! > $LAB/server.pid
    for _ in $(seq 100); do grep -q "IKE on" $LAB/server.log 2>/dev/null && break; sleep 0.1; done
    grep -q "IKE on" $LAB/server.log || { echo "hometun server did not start:" >&2; cat $LAB/server.log >&2; exit 1; }
  else
    charon_start hrbv $LAB/charon-vps 203.0.113.2 %any vps.example home.example \
      $LAB/ca/server.pem $LAB/ca/server.key ::/0 2001:db8:100:1::/64
  fi
  charon_start hrbh $LAB/charon-home %any 203.0.113.2 home.example vps.example \
    $LAB/home/client.pem $LAB/home/client.key 2001:db8:100:1::/64 ::/0
  swanctl_ hrbh $LAB/charon-home --initiate --child v6 --timeout 20 >/dev/null || {
    echo "strongSwan client could not connect to the $responder responder:" >&2
    cat $LAB/charon-home/charon.log $LAB/server.log $LAB/charon-vps/charon.log 2>/dev/null | tail -n 40 >&2; exit 1; }
  TARGET6=2001:db8:100::1
  for _ in $(seq 20); do ip netns exec hrbh ping -6 -c 1 -W 1 $TARGET6 >/dev/null 2>&1 && return; sleep 0.5; done
  echo "strongSwan client -> $responder: no ping through the tunnel" >&2
  cat $LAB/charon-home/charon.log | tail -n 20 >&2; exit 1
}

# One address change under a 20 ms ping; prints "LOST GAP_MS SENT".
round() { # ns dev old new
  local ns=$1 dev=$2 old=$3 new=$4
  ip netns exec hrbh "$ROAMTOOL_BIN" ping $TARGET6 20 3000 > $LAB/ping.txt &
  local pinger=$!
  sleep 1.2
  ip -n "$ns" addr add "$new/24" dev "$dev"
  local at; at=$("$ROAMTOOL_BIN" monotonic)
  ip -n "$ns" addr del "$old/24" dev "$dev"
  wait $pinger
  $PY - "$at" $LAB/ping.txt <<'EOF'
import sys
# Lines: "reply SEQ SENT_NS RECEIVED_NS" (CLOCK_MONOTONIC). The outage is the time between the
# last reply before the lost pings and the first after (the longest such gap, wherever it is:
# strongSwan may move on the new address's arrival, before the old one goes); with nothing lost,
# the gap around the deletion (at 20 ms spacing about 20 ms). Prints
# "LOST GAP_MS SENT GAP_START_MS" (the gap's start relative to the deletion).
at = int(sys.argv[1]); sent = 0; replies = {}
for line in open(sys.argv[2]):
    w = line.split()
    if w[:1] == ["sent"]: sent = int(w[1])
    if w[:1] == ["reply"]: replies[int(w[1])] = int(w[3])
seqs = sorted(replies)
holes = [(replies[b] - replies[a], replies[a]) for a, b in zip(seqs, seqs[1:]) if b > a + 1]
if holes:
    gap, start = max(holes)
else:
    before = max((t for t in replies.values() if t <= at), default=None)
    after = min((t for t in replies.values() if t > at), default=None)
    gap, start = ((after - before), before) if before and after else (float("nan"), at)
print(sent - len(replies), f"{gap / 1e6:.1f}", sent, f"{(start - at) / 1e6:+.0f}")
EOF
}

declare -A lost gaps
MODES="raw nat"
if [ "${SKIP_STRONGSWAN:-}" != 1 ] && [ -x /usr/lib/ipsec/charon ]; then
  MODES="$MODES mobike-hometun mobike-strongswan"
fi
for mode in $MODES; do
  case $mode in
    raw|nat) up $mode ;;
    mobike-hometun) up_strongswan hometun ;;
    mobike-strongswan) up_strongswan strongswan ;;
  esac
  a=198.51.100.2; b=198.51.100.3
  [ $mode = nat ] && { a=203.0.113.1; b=203.0.113.11; }
  for r in $(seq "$ROUNDS"); do
    if [ $mode = nat ]; then out=$(round hrbi iv $a $b); else out=$(round hrbh h0 $a $b); fi
    read -r l g s w <<<"$out"
    echo "round $r: $mode: $l lost of $s pings, $g ms between the last reply before and the first after (starting ${w} ms from the deletion)" >&2
    lost[$mode]="${lost[$mode]:-} $l"; gaps[$mode]="${gaps[$mode]:-} $g"
    t=$a; a=$b; b=$t
  done
  case $mode in
    raw|nat) grep -h "moved\|changed" $LAB/vps.log $LAB/home.log | sed 's/\x1b\[[0-9;]*m//g' | tail -n 4 >&2 || true ;;
    mobike-hometun) grep -h "MOBIKE" $LAB/server.log | sed 's/\x1b\[[0-9;]*m//g' | tail -n 2 >&2 || true ;;
    mobike-strongswan) grep -h "MOBIKE\|UPDATE_SA" $LAB/charon-vps/charon.log | tail -n 2 >&2 || true ;;
  esac
  down
done

label() {
  case $1 in
    raw) echo "hometun, raw ESP (home address)" ;;
    nat) echo "hometun, UDP behind NAT (NAT address)" ;;
    mobike-hometun) echo "strongSwan MOBIKE -> hometun server" ;;
    mobike-strongswan) echo "strongSwan MOBIKE -> strongSwan" ;;
  esac
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
echo "Outage at an address change, ping every 20 ms, $ROUNDS rounds each, $(nproc) CPUs (lost pings; ms between the last reply before and the first after, median):"
for mode in $MODES; do
  printf '  %-38s lost: %-16s gap ms: %-40s median %s\n' "$(label $mode)" "${lost[$mode]}" "${gaps[$mode]}" "$(median <<<"${gaps[$mode]}")"
done
if [[ " $MODES " == *" mobike-strongswan "* ]]; then
  $PY - "$(median <<<"${gaps[raw]}")" "$(median <<<"${gaps[nat]}")" "$(median <<<"${gaps[mobike-hometun]}")" "$(median <<<"${gaps[mobike-strongswan]}")" <<'EOF'
import sys
raw, nat, mh, ms = map(float, sys.argv[1:])
print(f"  ratio strongSwan MOBIKE (strongSwan both ends) / hometun switch, median gap: {ms / raw:.1f}x (raw ESP), {ms / nat:.1f}x (NAT)")
print(f"  ratio strongSwan MOBIKE client: hometun server / strongSwan server, median gap: {mh / ms:.2f}x")
EOF
else
  echo "  strongSwan: skipped (SKIP_STRONGSWAN=1 or charon missing)"
fi
