#!/bin/sh
# client.updown for OpenWrt, where netifd and odhcpd own the LANs ([[lan]] tables are then not
# needed: odhcpd assigns the /64s). The tunnel interface is declared once in /etc/config/network
# as an unmanaged interface that carries the prefix:
#
#   config interface 'hometun'
#           option device 'hometun0'
#           option proto 'static'
#           list ip6prefix '2001:db8:100:100::/56'    # written by this script
#
# and each LAN keeps "option ip6assign '64'" (odhcpd then advertises <subnet>::/64 with
# the MTU from "option ra_mtu '1400'" in /etc/config/dhcp). On "down" the prefix is taken away
# and odhcpd deprecates it on the LANs.
set -eu
if [ "$HOMETUN_STATE" = up ]; then
  uci -q delete network.hometun.ip6prefix || true
  uci add_list network.hometun.ip6prefix="$HOMETUN_PREFIX"
else
  uci -q delete network.hometun.ip6prefix || true
fi
uci commit network
# netifd re-reads the interface and hands the prefix (or its absence) to odhcpd.
ubus call network reload
