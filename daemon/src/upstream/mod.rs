//! The server's side towards the Internet (`[upstream]` in server.toml): IPv6 forwarding on
//! while it runs, an `unreachable` route for the whole pool (packets for homes that are not up
//! get an ICMPv6 error instead of looping back to the provider), and in `ndp-proxy` mode the
//! NDP proxy for the prefixes of homes that are up (README.md, "The VPS upstream").

pub mod ndp_proxy;

use std::net::Ipv6Addr;

use hometun_config::ServerConfig;
use hometun_control::PeerId;
use ipnet::Ipv6Net;

use crate::netconf::record::ChangeRecord;
use crate::netconf::{self, Forwarding, Route};
use ndp_proxy::{NdpProxy, UpPrefixes};

/// Metric of the pool's `unreachable` route: every other route to the pool wins over it,
/// also a home whose prefix is the whole pool (one /64 on the provider's link).
pub const UNREACHABLE_METRIC: u32 = u32::MAX;

/// The server's record of its changes to the network set-up, in `server.state_dir`.
pub const RECORD_FILE: &str = "netconf-server.json";

/// What the server set up towards its provider.
pub struct Upstream {
    /// What was changed, also on disk for the run after a crash.
    record: ChangeRecord,
    forwarding: Option<Forwarding>,
    unreachable: Option<Route>,
    proxy: Option<NdpProxy>,
    up: UpPrefixes,
}

impl Upstream {
    /// Forwarding (if `upstream.forwarding`), the unreachable route, the NDP proxy (in
    /// `ndp-proxy` mode). Each part that fails (most often for want of `CAP_NET_ADMIN` or
    /// `CAP_NET_RAW`) is one error line naming its key; the server runs on without it. What a
    /// previous run that did not stop cleanly left in the set-up is set back first.
    pub fn start(config: &ServerConfig) -> Self {
        let mut upstream = Upstream {
            record: ChangeRecord::take_over(&config.server.state_dir, RECORD_FILE),
            forwarding: None,
            unreachable: None,
            proxy: None,
            up: UpPrefixes::default(),
        };
        if config.upstream.forwarding {
            match Forwarding::enable(&[], &mut upstream.record) {
                Ok(forwarding) => {
                    crate::lan::log_forwarding(&forwarding, "the homes (upstream.forwarding)");
                    upstream.forwarding = Some(forwarding);
                }
                Err(error) => tracing::error!(
                    "upstream.forwarding: cannot turn on IPv6 forwarding (net.ipv6.conf.all.forwarding): {error}; homes reach only this VPS until it is on (README.md, \"The VPS upstream\")"
                ),
            }
        } else {
            tracing::info!("upstream.forwarding = false: IPv6 forwarding left as it is");
        }
        let route = Route::Unreachable {
            destination: config.server.pool.trunc(),
            metric: UNREACHABLE_METRIC,
        };
        match upstream.record.add_route(route) {
            Ok(true) => upstream.unreachable = Some(route),
            Ok(false) => tracing::info!("route {route} was there already"),
            Err(error) => tracing::error!(
                "server.pool: cannot add the route {route}: {error}; packets for homes that are not up may loop towards the provider"
            ),
        }
        if let Some(interface) = config.upstream.ndp_proxy_interface() {
            match NdpProxy::start(interface, upstream.up.clone()) {
                Ok(proxy) => {
                    tracing::info!(
                        "ndp-proxy on {interface}: answering Neighbor Solicitations for the prefixes of homes that are up"
                    );
                    upstream.proxy = Some(proxy);
                }
                Err(error) => tracing::error!("{error:#}; the provider cannot reach the homes"),
            }
        }
        upstream
    }

    /// A home's grant changed (`AllowPeer`): its prefixes while it is up, none once it is gone.
    pub fn grant(&mut self, peer: PeerId, prefixes: &[Ipv6Net]) {
        let Ok(mut up) = self.up.lock() else {
            return;
        };
        if prefixes.is_empty() {
            up.remove(&peer);
        } else {
            up.insert(peer, prefixes.to_vec());
        }
    }

    /// Sets back everything `start` did.
    pub fn stop(&mut self) {
        if let Some(proxy) = self.proxy.take() {
            proxy.stop();
        }
        if let Some(route) = self.unreachable.take()
            && let Err(error) = self.record.remove_route(route)
        {
            tracing::warn!("removing the route {route}: {error}");
        }
        if let Some(mut forwarding) = self.forwarding.take() {
            forwarding.restore(&mut self.record);
        }
    }
}

/// A global address of the VPS for the ICMPv6 errors its forwarder sends towards Internet
/// hosts (a link-local source would never leave the VPS): one on `preferred` (the upstream
/// interface) if it has one, else the first outside `pool`, else any.
pub fn icmp_source(preferred: Option<&str>, pool: Ipv6Net) -> Option<Ipv6Addr> {
    let addresses = netconf::global_addresses().ok()?;
    pick_icmp_source(&addresses, preferred, pool)
}

fn pick_icmp_source(
    addresses: &[(String, Ipv6Addr)],
    preferred: Option<&str>,
    pool: Ipv6Net,
) -> Option<Ipv6Addr> {
    let on = |name: &str| addresses.iter().find(|(n, _)| n == name).map(|(_, a)| *a);
    preferred
        .and_then(on)
        .or_else(|| {
            addresses
                .iter()
                .find(|(_, a)| !pool.contains(a))
                .map(|(_, a)| *a)
        })
        .or_else(|| addresses.first().map(|(_, a)| *a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_icmp_source_is_the_upstream_address_else_one_outside_the_pool() {
        let pool: Ipv6Net = "2001:db8:100::/48".parse().unwrap();
        let list = |items: &[(&str, &str)]| {
            items
                .iter()
                .map(|(n, a)| (n.to_string(), a.parse().unwrap()))
                .collect::<Vec<_>>()
        };
        let addresses = list(&[("lo", "2001:db8:100::1"), ("eth0", "2001:db8:ff::2")]);
        assert_eq!(
            pick_icmp_source(&addresses, Some("eth0"), pool),
            Some("2001:db8:ff::2".parse().unwrap())
        );
        assert_eq!(
            pick_icmp_source(&addresses, None, pool),
            Some("2001:db8:ff::2".parse().unwrap())
        );
        let inside = list(&[("lo", "2001:db8:100::1")]);
        assert_eq!(
            pick_icmp_source(&inside, None, pool),
            Some("2001:db8:100::1".parse().unwrap())
        );
        assert_eq!(pick_icmp_source(&[], None, pool), None);
    }
}
