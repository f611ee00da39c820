#!/bin/sh
# client.updown for a home whose radvd advertises the LANs ([[lan]] with advertise = false).
# Writes /etc/radvd.d/hometun.conf (include it from /etc/radvd.conf, or point radvd at it with
# -C) and makes radvd read it again. On "down" the prefixes stay announced for a while with
# preferred lifetime 0 and router lifetime 0: LAN hosts stop using them for new connections.
set -eu
conf=${RADVD_CONF:-/etc/radvd.d/hometun.conf}
mkdir -p "$(dirname "$conf")"
if [ "$HOMETUN_STATE" = up ]; then
  preferred=2700 valid=5400 router=1800
else
  preferred=0 valid=0 router=0
fi
tmp=$conf.tmp
: >"$tmp"
for lan in $HOMETUN_LANS; do
  interface=${lan%%=*}
  subnet=${lan#*=}
  cat >>"$tmp" <<CONF
interface $interface {
  AdvSendAdvert on;
  AdvLinkMTU $HOMETUN_MTU;
  AdvDefaultLifetime $router;
  prefix $subnet {
    AdvOnLink on;
    AdvAutonomous on;
    AdvPreferredLifetime $preferred;
    AdvValidLifetime $valid;
  };
};
CONF
done
mv "$tmp" "$conf"
# radvd reads its configuration again on SIGHUP.
pid=${RADVD_PID:-/run/radvd.pid}
if [ -f "$pid" ]; then
  kill -HUP "$(cat "$pid")"
fi
