//! The `[tunnel]` table, common to both roles: the TUN device and the routes into it.

use std::path::Path;

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, default_true};

/// The tunnel interface, common to both roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelSection {
    /// TUN device name.
    #[serde(default = "default_interface")]
    pub interface: String,
    /// MTU of the TUN device (inner IPv6 packets); 1280 to 1435 so that the outer packet fits a
    /// 1500-byte link with ESP in UDP.
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    /// Link-local address of this side, with prefix length (e.g. `fe80::1/64`).
    pub link_local: Ipv6Net,
    /// Install routes through the tunnel for the peers' prefixes.
    #[serde(default = "default_true")]
    pub manage_routes: bool,
    /// Metric of those routes. On a home this is the metric of the tunnel's default route
    /// (`::/0`): the kernel's own default for routes, and that of routes learned from Router
    /// Advertisements, is 1024; a larger value leaves a native IPv6 default route in charge.
    #[serde(default = "default_route_metric")]
    pub route_metric: u32,
    /// The routing protocol number those routes carry (`proto` in `ip route`): a BGP daemon
    /// exports a server's routes to the homes by it (README.md, "Failover and BGP"). The
    /// default, 57, is in no table of iproute2 nor taken by a known routing daemon.
    #[serde(default = "default_route_protocol")]
    pub route_protocol: u8,
    /// Clamp the MSS option of TCP SYNs crossing the tunnel to what fits its MTU, both
    /// directions (for hosts whose path MTU discovery a filter breaks).
    #[serde(default = "default_true")]
    pub clamp_mss: bool,
}

impl TunnelSection {
    /// A tunnel section with `link_local` and the defaults for everything else.
    pub fn new(link_local: Ipv6Net) -> Self {
        TunnelSection {
            interface: default_interface(),
            mtu: default_mtu(),
            link_local,
            manage_routes: true,
            route_metric: default_route_metric(),
            route_protocol: default_route_protocol(),
            clamp_mss: true,
        }
    }
}

pub(crate) fn check_tunnel(tunnel: &TunnelSection, file: &Path) -> Result<(), ConfigError> {
    if tunnel.interface.is_empty() || tunnel.interface.len() > 15 {
        return Err(ConfigError::new(
            file,
            "tunnel.interface",
            "must be 1 to 15 characters",
        ));
    }
    if !(1280..=1435).contains(&tunnel.mtu) {
        return Err(ConfigError::new(
            file,
            "tunnel.mtu",
            format!(
                "{} is outside 1280..=1435 (IPv6 minimum; room for outer headers)",
                tunnel.mtu
            ),
        ));
    }
    if tunnel.route_protocol <= 2 {
        // unspec, redirect, kernel: the kernel's own, which it may remove on its own.
        return Err(ConfigError::new(
            file,
            "tunnel.route_protocol",
            format!(
                "{} is the kernel's own (0 to 2); use the default 57 or another unused number",
                tunnel.route_protocol
            ),
        ));
    }
    let ll: Ipv6Net = "fe80::/10".parse().expect("constant prefix parses");
    if !ll.contains(&tunnel.link_local.addr()) {
        return Err(ConfigError::new(
            file,
            "tunnel.link_local",
            format!(
                "{} is not a link-local address (fe80::/10)",
                tunnel.link_local
            ),
        ));
    }
    Ok(())
}

fn default_interface() -> String {
    "hometun0".to_string()
}

fn default_mtu() -> u32 {
    1400
}

fn default_route_metric() -> u32 {
    1024
}

/// See [`TunnelSection::route_protocol`].
pub const DEFAULT_ROUTE_PROTOCOL: u8 = 57;
fn default_route_protocol() -> u8 {
    DEFAULT_ROUTE_PROTOCOL
}
