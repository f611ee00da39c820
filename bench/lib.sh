# The set-up the namespace benchmarks share, sourced from the repository root by
# bench/handshakes.sh, memory.sh, restart.sh and throughput.sh (after `cd "$(dirname "$0")/.."`):
# the root check, the hometun binary, the `hometun pki` server's limits, and the strongSwan
# charon responder they measure hometun against. Defines functions and ROOT and
# STRONGSWAN_PLUGINS; runs nothing else.

ROOT=$PWD
# The charon plugins every strongswan.conf of the tests and benchmarks loads.
STRONGSWAN_PLUGINS=$(cat "$ROOT/testdata/strongswan-plugins")

needs_root() { # script why: stop unless run as root
  [ "$(id -u)" = 0 ] || { echo "$1: needs root ($2)" >&2; exit 1; }
}

hometun_binary() { # sets HOMETUN_BIN: the release binary, built unless HOMETUN_BIN is set
  if [ -z "${HOMETUN_BIN:-}" ]; then
    cargo build --release --bin hometun >&2
    HOMETUN_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/hometun
  fi
}

make_homes() { # binary ca_dir dir first last name: homes dir/home$first..$last named
  # name$first.example..., each its own key, certificate and /64 (keys and CSRs in parallel,
  # signing in turn: one registry; imports in parallel)
  local bin=$1 ca=$2 dir=$3 first=$4 last=$5 name=$6 i
  mkdir -p "$dir"
  seq "$first" "$last" | xargs -P "$(nproc)" -I{} "$bin" pki request --dir $dir/home{} --name $name{}.example >/dev/null
  for i in $(seq "$first" "$last"); do
    "$bin" pki sign --dir $ca --csr $dir/home$i/client.csr --out $dir/home$i.bundle >/dev/null
  done
  seq "$first" "$last" | xargs -P "$(nproc)" -I{} "$bin" pki import --dir $dir/home{} $dir/home{}.bundle >/dev/null
}

lift_source_limits() { # server.toml: every home comes from one address, so no per-source or cookie
                       # limit, and each identity runs many handshakes, so no bound of new IKE SAs
  /usr/bin/python3 - "$1" <<'PY'
import re, sys
p = sys.argv[1]
s = open(p).read()
s = re.sub(r"cookie_threshold = \d+", "cookie_threshold = 100000", s)
s = re.sub(r"half_open_per_source = \d+", "half_open_per_source = 100000", s)
s = re.sub(r"half_open_total = \d+", "half_open_total = 100000", s)
s = re.sub(r"new_ike_sas_per_identity = \d+", "new_ike_sas_per_identity = 0", s)
open(p, "w").write(s)
PY
}

charon_config() { # dir ca_dir local_address esp_proposals: a charon responder in dir with the
  # certificates of `hometun pki init --dir ca_dir`, for the homes of 2001:db8:100::/48
  local S=$1 ca=$2 address=$3 esp=$4
  mkdir -p $S/swanctl/{x509ca,x509,private}
  cp $ca/ca.pem $S/swanctl/x509ca/
  cp $ca/server.pem $S/swanctl/x509/
  cp $ca/server.key $S/swanctl/private/
  cat >$S/strongswan.conf <<C
charon {
  load = $STRONGSWAN_PLUGINS
  install_routes = no
  cookie_threshold = 100000
  block_threshold = 100000
  init_limit_half_open = 0
  filelog { log { path = $S/charon.log
    default = 0
    ike = 0
  } }
  plugins { vici { socket = unix://$S/charon.vici }
            kernel-libipsec { allow_peer_ts = yes } }
}
swanctl { socket = unix://$S/charon.vici }
C
  cat >$S/swanctl/swanctl.conf <<C
connections {
  home {
    version = 2
    local_addrs = $address
    proposals = aes128gcm16-prfsha256-x25519
    unique = never
    local { auth = pubkey
            certs = server.pem
            id = vps.example }
    remote { auth = pubkey
             id = %any }
    children {
      v6 { local_ts = ::/0
           remote_ts = 2001:db8:100::/48
           esp_proposals = $esp
           mode = tunnel }
    }
  }
}
C
}

charon_start() { # namespace dir: starts the charon of charon_config in the background (its pid
  # in CHARON_PID) and loads its connection
  local ns=$1 S=$2
  ip netns exec $ns sh -c "mount -t tmpfs none /run; cd $S; STRONGSWAN_CONF=$S/strongswan.conf exec /usr/lib/ipsec/charon" >>$S/stdout 2>&1 &
  CHARON_PID=$!
  for _ in $(seq 100); do [ -S $S/charon.vici ] && break; sleep 0.1; done
  ip netns exec $ns env STRONGSWAN_CONF=$S/strongswan.conf swanctl --load-all --file $S/swanctl/swanctl.conf --uri unix://$S/charon.vici >/dev/null 2>&1
}

# A copy of server config FILE that an older hometun binary BIN reads (BASELINE_BIN rounds): the
# keys and tables BIN names as unknown are left out, one by one (at most 30), so that both
# binaries run the same settings apart from what the older one does not have.
config_for_binary() { # BIN FILE OUT
  local bin=$1 file=$2 out=$3 error line n
  cp "$file" "$out"
  for n in $(seq 30); do
    error=$("$bin" server --check --config "$out" 2>&1 >/dev/null) && return 0
    line=$(printf '%s\n' "$error" | sed -n 's/.*unknown field .*line \([0-9]*\),.*/\1/p; s/.*line \([0-9]*\), column [0-9]*: unknown field.*/\1/p' | head -1)
    if [ -z "$line" ]; then
      echo "config_for_binary: $bin does not read $out: $error" >&2
      return 1
    fi
    if sed -n "${line}p" "$out" | grep -q '^\['; then
      # A whole table: its header up to the next one.
      awk -v start="$line" 'NR == start {skip = 1; next} skip && /^\[/ {skip = 0} !skip' "$out" >"$out.new"
    else
      sed "${line}d" "$out" >"$out.new"
    fi
    mv "$out.new" "$out"
  done
  echo "config_for_binary: $out still refused after 30 keys left out" >&2
  return 1
}
