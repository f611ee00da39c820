//! The home's LANs (`[[lan]]` in client.toml): while the tunnel is up each LAN interface gets
//! `<its /64>::1/64` and Router Advertisements (SLAAC with the tunnel's MTU and the DNS
//! options); when the client stops, or the tunnel stays down longer than the grace period (the
//! liveness timeout: a reconnect after a server restart takes a second or two and must not cost
//! the LAN hosts their default route), a final advertisement deprecates the prefix and
//! withdraws the default router, and what was added goes. IPv6 forwarding is on while the
//! client runs. The `updown` hook runs at each change (README.md, "The home's LAN").

pub mod advertiser;
pub mod updown;

use std::net::Ipv6Addr;
use std::sync::Arc;

use hometun_config::ClientConfig;
use ipnet::Ipv6Net;
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant};

use crate::ndp;
use crate::ndp_socket::NdpSocket;
use crate::netconf::record::{Change, ChangeRecord};
use crate::netconf::{self, Forwarding, Route};
use advertiser::Advertised;
use updown::{Hook, HookRunner};

/// The client's record of its changes to the network set-up, in `client.state_dir`.
pub const RECORD_FILE: &str = "netconf-client.json";

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
    /// Whether the LANs are set up (addresses, advertisements, the source route).
    up: bool,
    /// Since when the tunnel has been down while the LANs stay set up.
    down_since: Option<Instant>,
    /// How long the LANs stay set up with the tunnel down.
    grace: Duration,
    /// What was changed, also on disk for the run after a crash.
    record: ChangeRecord,
}

/// How long the LANs stay set up after the tunnel went down: the client's liveness timeout
/// (every retransmission's wait, `ike.retransmit_ms` doubled per try, `ike.retransmit_tries`
/// tries; 15.5 s with the defaults). A reconnect within it (a server restart, a lost
/// liveness check) changes nothing on the LANs.
pub fn down_grace(ike: &hometun_config::IkeSection) -> Duration {
    let base = Duration::from_millis(ike.retransmit_ms);
    (1..=ike.retransmit_tries.max(1))
        .map(|try_number| base.saturating_mul(1u32 << (try_number - 1).min(16)))
        .fold(Duration::ZERO, Duration::saturating_add)
}

impl HomeLans {
    /// Everything the config asks for that can be done before the tunnel is up: forwarding on
    /// (when there is a `[[lan]]`), the advertising sockets, the hook's task. `None` when the
    /// config has neither `[[lan]]` nor `updown`. Call after the tunnel interface exists. What
    /// fails (a missing interface, no `CAP_NET_ADMIN` or `CAP_NET_RAW`) is one error line
    /// naming the key, and is left out. What a previous run that did not stop cleanly left
    /// in the set-up is set back first.
    pub fn start(config: &ClientConfig) -> Option<Self> {
        let mut record = ChangeRecord::take_over(&config.client.state_dir, RECORD_FILE);
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
            let interfaces: Vec<String> = lans.iter().map(|l| l.interface.clone()).collect();
            match Forwarding::enable(&interfaces, &mut record) {
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
            down_since: None,
            grace: down_grace(&config.ike),
            record,
        })
    }

    /// The tunnel is up: addresses, the source route, advertisements, the hook. Twice is once;
    /// back within the grace period after [`HomeLans::down`], nothing changes.
    pub fn up(&mut self) {
        if let Some(since) = self.down_since.take() {
            tracing::info!(
                "lan: the tunnel is back after {} ms; the LANs stayed set up",
                since.elapsed().as_millis()
            );
        }
        if self.up {
            return;
        }
        self.up = true;
        for lan in &mut self.lans {
            match self.record.add_address(lan.address, &lan.interface) {
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
        if let Some(route) = self.source_route {
            match self.record.add_route(route) {
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
        let Some(old) = self.source_route else {
            return;
        };
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
        // The old route went with the old device.
        self.record.forget(&Change::Route { route: old });
        if let Some(route) = self.source_route {
            match self.record.add_route(route) {
                Ok(_) => tracing::info!("the route {route} is back on the new {}", self.tunnel),
                Err(error) => tracing::warn!("adding the route {route} again: {error}"),
            }
        }
    }

    /// The tunnel is down: the LANs stay set up for the grace period ([`down_grace`]), then
    /// [`HomeLans::tick`] takes them down unless the tunnel is back by then.
    pub async fn down(&mut self) {
        if !self.up || self.down_since.is_some() {
            return;
        }
        if self.grace.is_zero() {
            self.take_down().await;
            return;
        }
        self.down_since = Some(Instant::now());
        tracing::info!(
            "lan: the tunnel is down; the LANs stay set up for {} ms in case it comes back",
            self.grace.as_millis()
        );
    }

    /// Called every second or so: takes the LANs down once the tunnel has been down for the
    /// whole grace period.
    pub async fn tick(&mut self) {
        if self
            .down_since
            .is_some_and(|since| since.elapsed() >= self.grace)
        {
            self.take_down().await;
        }
    }

    /// Final advertisements, then what `up` added goes. Twice is once.
    async fn take_down(&mut self) {
        self.down_since = None;
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
                if let Err(error) = self.record.remove_address(lan.address, &lan.interface) {
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
            if let Some(route) = self.source_route
                && let Err(error) = self.record.remove_route(route)
            {
                tracing::warn!("removing the route {route}: {error}");
            }
        }
        if let Some(hook) = &self.hook {
            hook.run("down");
        }
    }

    /// The client stops: down at once, forwarding set back, the hook's last run awaited.
    pub async fn stop(&mut self) {
        self.take_down().await;
        if let Some(mut forwarding) = self.forwarding.take() {
            forwarding.restore(&mut self.record);
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
    let off = forwarding.accept_ra_off();
    if !off.is_empty() {
        tracing::info!(
            "accept_ra 0 on {} while running: a router takes no Router Advertisements from its LAN",
            off.join(", ")
        );
    }
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
    fn the_lans_outlast_a_tunnel_down_by_the_liveness_timeout() {
        let mut ike = hometun_config::IkeSection::default();
        // 500 ms doubled over 5 tries: 0.5 + 1 + 2 + 4 + 8 s.
        assert_eq!(down_grace(&ike), Duration::from_millis(15_500));
        ike.retransmit_ms = 100;
        ike.retransmit_tries = 2;
        assert_eq!(down_grace(&ike), Duration::from_millis(300));
        ike.retransmit_tries = 0;
        assert_eq!(down_grace(&ike), Duration::from_millis(100));
        ike.retransmit_ms = u64::MAX / 2;
        ike.retransmit_tries = 40;
        assert_eq!(down_grace(&ike), Duration::MAX);
    }

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
