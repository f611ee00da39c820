//! The home's LANs (`[[lan]]` in client.toml): while the tunnel is up each LAN interface gets
//! `<its /64>::1/64` and Router Advertisements (SLAAC with the tunnel's MTU and the DNS
//! options); when the tunnel goes down or the client stops, a final advertisement deprecates
//! the prefix and withdraws the default router, and what was added goes. IPv6 forwarding is on
//! while the client runs. The `updown` hook runs at each change (README.md, "The home's LAN").

pub mod advertiser;
pub mod updown;

use std::net::Ipv6Addr;
use std::sync::Arc;

use hometun_config::ClientConfig;
use ipnet::Ipv6Net;
use tokio::task::JoinHandle;

use crate::ndp;
use crate::ndp_socket::NdpSocket;
use crate::netconf::{self, Forwarding, Route};
use advertiser::Advertised;
use updown::{Hook, HookRunner};

/// One `[[lan]]`, ready to advertise.
struct Lan {
    interface: String,
    /// `<subnet>::1/64`.
    address: Ipv6Net,
    /// `None` when another daemon advertises (`advertise = false`).
    socket: Option<Arc<NdpSocket>>,
    advertised: Advertised,
    /// Whether we put `address` there (and so take it away).
    added: bool,
    advertiser: Option<JoinHandle<()>>,
}

/// The home's LANs and the hook, following the tunnel's state.
pub struct HomeLans {
    lans: Vec<Lan>,
    forwarding: Option<Forwarding>,
    /// The default route for the home's prefix as source, through the tunnel.
    source_route: Option<Route>,
    source_route_added: bool,
    /// The tunnel interface (`tunnel.interface`): its index changes if it is made again.
    tunnel: String,
    hook: Option<HookRunner>,
    up: bool,
}

impl HomeLans {
    /// Everything the config asks for that can be done before the tunnel is up: forwarding on
    /// (when there is a `[[lan]]`), the advertising sockets, the hook's task. `None` when the
    /// config has neither `[[lan]]` nor `updown`. Call after the tunnel interface exists. What
    /// fails (a missing interface, no `CAP_NET_ADMIN` or `CAP_NET_RAW`) is one error line
    /// naming the key, and is left out.
    pub fn start(config: &ClientConfig) -> Option<Self> {
        if config.lan.is_empty() && config.client.updown.is_none() {
            return None;
        }
        let mut lans = Vec::new();
        for (i, (section, subnet)) in config.lan.iter().zip(config.lan_subnets()).enumerate() {
            let key = format!("lan[{i}].interface {}", section.interface);
            let socket = if section.advertise {
                match NdpSocket::open(
                    &section.interface,
                    &[ndp::ROUTER_SOLICITATION],
                    Some(advertiser::ALL_ROUTERS),
                ) {
                    Ok(socket) => Some(Arc::new(socket)),
                    Err(error) => {
                        tracing::error!(
                            "{key}: cannot open the ICMPv6 socket for Router Advertisements: {error}; no advertisements on it"
                        );
                        None
                    }
                }
            } else {
                None
            };
            let source_lla =
                netconf::hardware_address(&section.interface).unwrap_or_else(|error| {
                    tracing::error!("{key}: cannot read its hardware address: {error}");
                    None
                });
            lans.push(Lan {
                interface: section.interface.clone(),
                address: router_address(subnet),
                socket,
                advertised: Advertised {
                    subnet,
                    mtu: config.tunnel.mtu,
                    dns: section.dns.clone(),
                    search: section.search.clone(),
                    source_lla,
                },
                added: false,
                advertiser: None,
            });
        }
        let forwarding = if lans.is_empty() {
            None
        } else {
            match Forwarding::enable() {
                Ok(forwarding) => {
                    log_forwarding(&forwarding, "the home's LANs");
                    Some(forwarding)
                }
                Err(error) => {
                    tracing::error!(
                        "lan: cannot turn on IPv6 forwarding (net.ipv6.conf.all.forwarding): {error}; the LANs reach nothing beyond this router until it is on"
                    );
                    None
                }
            }
        };
        let source_route = if config.tunnel.manage_routes && !lans.is_empty() {
            match netconf::interface_index(&config.tunnel.interface) {
                Ok(ifindex) => Some(Route::From {
                    destination: Ipv6Net::default(),
                    source: config.client.prefix.trunc(),
                    ifindex,
                    metric: config.tunnel.route_metric,
                }),
                Err(error) => {
                    tracing::error!("tunnel.interface {}: {error}", config.tunnel.interface);
                    None
                }
            }
        } else {
            None
        };
        let hook = config.client.updown.as_ref().map(|program| {
            HookRunner::start(Hook {
                program: program.clone(),
                environment: hook_environment(config),
            })
        });
        Some(HomeLans {
            lans,
            forwarding,
            source_route,
            source_route_added: false,
            tunnel: config.tunnel.interface.clone(),
            hook,
            up: false,
        })
    }

    /// The tunnel is up: addresses, the source route, advertisements, the hook. Twice is once.
    pub fn up(&mut self) {
        if self.up {
            return;
        }
        self.up = true;
        for lan in &mut self.lans {
            match netconf::interface_index(&lan.interface)
                .and_then(|index| netconf::add_address(lan.address, index))
            {
                Ok(added) => lan.added = added,
                Err(error) => {
                    tracing::warn!("lan {}: adding {}: {error}", lan.interface, lan.address)
                }
            }
            if let Some(socket) = &lan.socket {
                lan.advertiser = Some(tokio::spawn(advertiser::run(
                    socket.clone(),
                    lan.advertised.clone(),
                )));
            }
            tracing::info!(
                "lan {}: {} up{}",
                lan.interface,
                lan.advertised.subnet,
                if lan.socket.is_some() {
                    ", sending Router Advertisements"
                } else {
                    ""
                }
            );
        }
        if let Some(route) = &self.source_route {
            match route.add() {
                Ok(added) => self.source_route_added = added,
                Err(error) => tracing::warn!("adding the route {route}: {error}"),
            }
        }
        if let Some(hook) = &self.hook {
            hook.run("up");
        }
    }

    /// The forwarder made the tunnel interface again (someone deleted it): the source route,
    /// which went with the old device, goes through the new one, and back in place if the
    /// tunnel is up.
    pub fn tunnel_recreated(&mut self) {
        let Some(Route::From { ifindex, .. }) = &mut self.source_route else {
            return;
        };
        match netconf::interface_index(&self.tunnel) {
            Ok(index) => *ifindex = index,
            Err(error) => {
                tracing::warn!("tunnel.interface {}: {error}", self.tunnel);
                return;
            }
        }
        if !self.source_route_added {
            return;
        }
        if let Some(route) = &self.source_route {
            match route.add() {
                Ok(_) => tracing::info!("the route {route} is back on the new {}", self.tunnel),
                Err(error) => tracing::warn!("adding the route {route} again: {error}"),
            }
        }
    }

    /// The tunnel is down: final advertisements, then what `up` added goes. Twice is once.
    pub async fn down(&mut self) {
        if !self.up {
            return;
        }
        self.up = false;
        for lan in &mut self.lans {
            if let Some(task) = lan.advertiser.take() {
                task.abort();
            }
            if let Some(socket) = &lan.socket {
                advertiser::withdraw(socket, &lan.advertised).await;
            }
            if lan.added {
                lan.added = false;
                if let Err(error) = netconf::interface_index(&lan.interface)
                    .and_then(|index| netconf::remove_address(lan.address, index))
                {
                    tracing::warn!("lan {}: removing {}: {error}", lan.interface, lan.address);
                }
            }
            tracing::info!(
                "lan {}: {} down{}",
                lan.interface,
                lan.advertised.subnet,
                if lan.socket.is_some() {
                    ", prefix deprecated by a final Router Advertisement"
                } else {
                    ""
                }
            );
        }
        if self.source_route_added {
            self.source_route_added = false;
            if let Some(route) = &self.source_route
                && let Err(error) = route.remove()
            {
                tracing::warn!("removing the route {route}: {error}");
            }
        }
        if let Some(hook) = &self.hook {
            hook.run("down");
        }
    }

    /// The client stops: down, forwarding set back, the hook's last run awaited.
    pub async fn stop(&mut self) {
        self.down().await;
        if let Some(mut forwarding) = self.forwarding.take() {
            forwarding.restore();
        }
        if let Some(hook) = self.hook.as_mut() {
            hook.finish().await;
        }
    }
}

/// `<subnet>::1/64`: the router's address on a LAN.
fn router_address(subnet: Ipv6Net) -> Ipv6Net {
    Ipv6Net::new(Ipv6Addr::from(u128::from(subnet.network()) | 1), 64).unwrap_or(subnet)
}

/// Logs what turning forwarding on changed.
pub fn log_forwarding(forwarding: &Forwarding, why: &str) {
    if !forwarding.turned_on() {
        tracing::info!("IPv6 forwarding was on already ({why})");
        return;
    }
    let raised = forwarding.accept_ra_raised();
    tracing::info!(
        "IPv6 forwarding on for {why} (set back when stopping){}",
        if raised.is_empty() {
            String::new()
        } else {
            format!(
                "; accept_ra 1 -> 2 on {} so that Router Advertisements still count there",
                raised.join(", ")
            )
        }
    );
}

/// The hook's `HOMETUN_*` variables besides the state.
pub fn hook_environment(config: &ClientConfig) -> Vec<(String, String)> {
    let lans = config
        .lan
        .iter()
        .zip(config.lan_subnets())
        .map(|(lan, subnet)| format!("{}={subnet}", lan.interface))
        .collect::<Vec<_>>()
        .join(" ");
    vec![
        ("HOMETUN_PREFIX".into(), config.client.prefix.to_string()),
        (
            "HOMETUN_ADDRESS".into(),
            config.tunnel_address().to_string(),
        ),
        ("HOMETUN_TUNNEL".into(), config.tunnel.interface.clone()),
        ("HOMETUN_MTU".into(), config.tunnel.mtu.to_string()),
        ("HOMETUN_LANS".into(), lans),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_hears_the_prefix_each_lan_s_64_and_the_tunnel() {
        let text = r#"
[client]
name = "home.example"
server = "192.0.2.1"
server_name = "vps.example"
certificate = "client.pem"
private_key = "client.key"
ca = "ca.pem"
prefix = "2001:db8:100:100::/56"

[tunnel]
link_local = "fe80::2/64"

[[lan]]
interface = "eth1"

[[lan]]
interface = "br-guest"
subnet = 16
"#;
        let config = ClientConfig::from_toml(std::path::Path::new("client.toml"), text).unwrap();
        let environment = hook_environment(&config);
        let value = |key: &str| {
            environment
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(value("HOMETUN_PREFIX"), Some("2001:db8:100:100::/56"));
        assert_eq!(value("HOMETUN_ADDRESS"), Some("2001:db8:100:100::1"));
        assert_eq!(value("HOMETUN_TUNNEL"), Some("hometun0"));
        assert_eq!(value("HOMETUN_MTU"), Some("1400"));
        assert_eq!(
            value("HOMETUN_LANS"),
            Some("eth1=2001:db8:100:100::/64 br-guest=2001:db8:100:110::/64")
        );
        assert_eq!(
            router_address("2001:db8:100:110::/64".parse().unwrap()).to_string(),
            "2001:db8:100:110::1/64"
        );
    }
}
