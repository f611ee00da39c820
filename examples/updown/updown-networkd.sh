#!/bin/sh
# client.updown for systemd-networkd ([[lan]] with advertise = false). For each LAN writes a
# drop-in to its .network file (see hometun-lan.network) with the prefix to advertise, and has
# networkd apply it. On "down" the drop-in goes: networkd stops advertising the prefix.
set -eu
for lan in $HOMETUN_LANS; do
  interface=${lan%%=*}
  subnet=${lan#*=}
  dir=/run/systemd/network/hometun-lan-$interface.network.d
  if [ "$HOMETUN_STATE" = up ]; then
    mkdir -p "$dir"
    cat >"$dir/prefix.conf" <<CONF
[IPv6SendRA]
RouterLifetimeSec=1800

[IPv6Prefix]
Prefix=$subnet
PreferredLifetimeSec=2700
ValidLifetimeSec=5400
CONF
  else
    rm -rf "$dir"
  fi
done
networkctl reload
