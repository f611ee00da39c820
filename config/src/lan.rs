//! The home's LAN (`[[lan]]` in client.toml) and the server's upstream (`[upstream]` in
//! server.toml): which /64 of the home's prefix each LAN interface gets, what its Router
//! Advertisements carry, and how the VPS hands the pool to the Internet (README.md, "The
//! home's LAN" and "The VPS upstream").

use std::net::Ipv6Addr;
use std::path::Path;

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::names::normalize_dns_name;

/// Most RDNSS addresses and DNSSL names one LAN advertises: they must fit one Router
/// Advertisement of at most 1280 bytes beside its other options.
pub const MAX_DNS_ENTRIES: usize = 8;

/// One `[[lan]]` table: a LAN interface that gets one /64 of the home's prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanSection {
    /// The LAN interface (e.g. `eth1`, `br-lan`).
    pub interface: String,
    /// Which /64 of the home's prefix: 0 is the first (a /56 home has 256 of them).
    #[serde(default)]
    pub subnet: u32,
    /// DNS servers advertised as RDNSS (RFC 8106 5.1); none unless set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<Ipv6Addr>,
    /// DNS search domains advertised as DNSSL (RFC 8106 5.2); none unless set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Send Router Advertisements here (default). `false` when another daemon (radvd, odhcpd,
    /// systemd-networkd) advertises the /64, fed by the `updown` hook: hometun then only puts
    /// the address on the interface and turns forwarding on.
    #[serde(default = "crate::default_true")]
    pub advertise: bool,
}

impl LanSection {
    /// The /64 of `prefix` this LAN gets (`None` when `subnet` lies outside `prefix` or the
    /// prefix is longer than /64).
    pub fn subnet_of(&self, prefix: Ipv6Net) -> Option<Ipv6Net> {
        if prefix.prefix_len() > 64 {
            return None;
        }
        let bits = 64 - u32::from(prefix.prefix_len());
        if bits < 32 && u64::from(self.subnet) >> bits != 0 {
            return None;
        }
        let network = u128::from(prefix.trunc().network()) | (u128::from(self.subnet) << 64);
        Ipv6Net::new(Ipv6Addr::from(network), 64).ok()
    }
}

/// Checks every `[[lan]]` against the home's prefix and the tunnel interface; puts search
/// domains in lower case.
pub fn check_lans(
    lans: &mut [LanSection],
    prefix: Ipv6Net,
    tunnel_interface: &str,
    file: &Path,
) -> Result<(), ConfigError> {
    for i in 0..lans.len() {
        let key = |field: &str| format!("lan[{i}].{field}");
        let lan = &lans[i];
        if !is_interface_name(&lan.interface) {
            return Err(ConfigError::new(
                file,
                key("interface"),
                format!(
                    "{:?} is not an interface name (1 to 15 characters, none of '/', ':', '=' or spaces)",
                    lan.interface
                ),
            ));
        }
        if lan.interface == tunnel_interface {
            return Err(ConfigError::new(
                file,
                key("interface"),
                format!(
                    "{} is the tunnel interface (tunnel.interface)",
                    lan.interface
                ),
            ));
        }
        if prefix.prefix_len() > 64 {
            return Err(ConfigError::new(
                file,
                key("subnet"),
                format!(
                    "client.prefix {prefix} is longer than /64: a LAN needs a whole /64 (SLAAC, RFC 4862)"
                ),
            ));
        }
        if lan.subnet_of(prefix).is_none() {
            let count = 1u64 << (64 - u32::from(prefix.prefix_len())).min(32);
            return Err(ConfigError::new(
                file,
                key("subnet"),
                format!(
                    "{} is outside client.prefix {prefix} (it holds /64s 0 to {})",
                    lan.subnet,
                    count - 1
                ),
            ));
        }
        for (j, other) in lans[..i].iter().enumerate() {
            if other.interface == lan.interface {
                return Err(ConfigError::new(
                    file,
                    key("interface"),
                    format!("{} is also lan[{j}].interface", lan.interface),
                ));
            }
            if other.subnet == lan.subnet {
                return Err(ConfigError::new(
                    file,
                    key("subnet"),
                    format!(
                        "{} is also lan[{j}].subnet: two links cannot share one /64",
                        lan.subnet
                    ),
                ));
            }
        }
        if lan.dns.len() > MAX_DNS_ENTRIES {
            return Err(ConfigError::new(
                file,
                key("dns"),
                format!("at most {MAX_DNS_ENTRIES} servers"),
            ));
        }
        if let Some(bad) = lan
            .dns
            .iter()
            .find(|a| a.is_unspecified() || a.is_loopback() || a.is_multicast())
        {
            return Err(ConfigError::new(
                file,
                key("dns"),
                format!("{bad} is not a unicast address a LAN host can reach"),
            ));
        }
        if lan.search.len() > MAX_DNS_ENTRIES {
            return Err(ConfigError::new(
                file,
                key("search"),
                format!("at most {MAX_DNS_ENTRIES} domains"),
            ));
        }
        for (n, name) in lans[i].search.clone().iter().enumerate() {
            let trimmed = name.strip_suffix('.').unwrap_or(name);
            lans[i].search[n] = normalize_dns_name(trimmed).map_err(|e| {
                ConfigError::new(file, format!("lan[{i}].search[{n}]"), e.to_string())
            })?;
        }
    }
    Ok(())
}

/// A name Linux accepts for an interface (`dev_valid_name`), without '=' either: the `updown`
/// hook gets the LANs as `INTERFACE=SUBNET` words separated by spaces.
fn is_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | ':' | '='))
}

/// How the VPS's provider reaches the pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamMode {
    /// The provider routes the pool to the VPS (nothing to do but forward).
    #[default]
    Routed,
    /// The pool lies in the VPS's on-link /64: the server answers Neighbor Solicitations on
    /// `upstream.interface` for the addresses of homes that are up (RFC 4389-style proxy).
    NdpProxy,
}

/// The `[upstream]` table of server.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// Turn IPv6 forwarding on (`net.ipv6.conf.all.forwarding`) while the server runs.
    #[serde(default = "crate::default_true")]
    pub forwarding: bool,
    /// `routed` or `ndp-proxy`.
    #[serde(default)]
    pub mode: UpstreamMode,
    /// The interface towards the provider (needed by `ndp-proxy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

impl Default for UpstreamSection {
    fn default() -> Self {
        UpstreamSection {
            forwarding: true,
            mode: UpstreamMode::Routed,
            interface: None,
        }
    }
}

impl UpstreamSection {
    /// The interface the NDP proxy answers on, in `ndp-proxy` mode.
    pub fn ndp_proxy_interface(&self) -> Option<&str> {
        match self.mode {
            UpstreamMode::NdpProxy => self.interface.as_deref(),
            UpstreamMode::Routed => None,
        }
    }

    /// Checks the table against the tunnel interface.
    pub fn check(&self, tunnel_interface: &str, file: &Path) -> Result<(), ConfigError> {
        match (self.mode, &self.interface) {
            (UpstreamMode::NdpProxy, None) => Err(ConfigError::new(
                file,
                "upstream.interface",
                "mode = \"ndp-proxy\" needs the interface towards the provider (e.g. \"eth0\")",
            )),
            (UpstreamMode::NdpProxy, Some(_)) if !self.forwarding => Err(ConfigError::new(
                file,
                "upstream.forwarding",
                "mode = \"ndp-proxy\" needs forwarding: the proxied packets must reach the tunnel",
            )),
            (UpstreamMode::NdpProxy, Some(name)) if !is_interface_name(name) => {
                Err(ConfigError::new(
                    file,
                    "upstream.interface",
                    format!(
                        "{name:?} is not an interface name (1 to 15 characters, none of '/', ':', '=' or spaces)"
                    ),
                ))
            }
            (UpstreamMode::NdpProxy, Some(name)) if name == tunnel_interface => {
                Err(ConfigError::new(
                    file,
                    "upstream.interface",
                    format!("{name} is the tunnel interface (tunnel.interface)"),
                ))
            }
            (UpstreamMode::Routed, Some(_)) => Err(ConfigError::new(
                file,
                "upstream.interface",
                "only used with mode = \"ndp-proxy\"",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
