//! Static SAs (manual keying, like `setkey` or `ip xfrm state`), read by `hometun forwarder
//! --static FILE`: a TOML file with an `[interface]` table and `[[sa]]` entries, turned into the
//! same [`Request`]s the IKE daemon would send. Every error is one [`ConfigError`] line naming
//! the file, the entry and the field. `examples/static-sa/` documents the format.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use hometun_control::{
    AeadAlg, AeadKey, ChildSa, ControlError, Encapsulation, Endpoint, InterfaceConfig, Limits,
    MAX_REPLAY_WINDOW, PeerId, Request, RoamingConfig, Spi,
};
use ipnet::Ipv6Net;
use serde::Deserialize;

use crate::{ConfigError, parse_file, parse_str};

/// The `[interface]` table: the [`InterfaceConfig`] fields, with defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceSection {
    /// TUN device name.
    #[serde(default = "default_tun_name")]
    pub tun_name: String,
    /// MTU of the TUN device (default 1400: room for outer IPv4 + UDP + ESP).
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    /// IPv6 addresses on the device; at least one link-local (fe80::/10).
    pub addresses: Vec<Ipv6Net>,
    /// Outer IPv4 address the sockets bind to (default: any).
    #[serde(default)]
    pub bind_ipv4: Option<Ipv4Addr>,
    /// UDP port for ESP in UDP (default 4500; 0: none).
    #[serde(default = "default_udp_port")]
    pub udp_port: u16,
    /// Open the raw socket for IP protocol 50 (default true).
    #[serde(default = "yes")]
    pub raw_esp: bool,
    /// Route each SA's remote_ts into the device (default true).
    #[serde(default = "yes")]
    pub manage_routes: bool,
    /// Metric of those routes (default 1024).
    #[serde(default = "default_metric")]
    pub route_metric: u32,
}

fn default_tun_name() -> String {
    "hometun0".into()
}
fn default_mtu() -> u32 {
    1400
}
fn default_udp_port() -> u16 {
    4500
}
fn default_metric() -> u32 {
    1024
}
fn yes() -> bool {
    true
}
fn default_window() -> u32 {
    1024
}

/// Outer encapsulation as the file names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncapName {
    /// IP protocol 50.
    Raw,
    /// ESP in UDP (RFC 3948).
    Udp,
}

/// One `[[sa]]` entry: a CHILD SA pair.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaSection {
    /// Peer number; pairs of one peer share its endpoint.
    pub peer: u64,
    /// Inbound SPI (ours), not 0.
    pub spi_in: u32,
    /// Outbound SPI (the peer's), not 0.
    pub spi_out: u32,
    /// `aes128gcm16` or `aes256gcm16`.
    pub alg: String,
    /// Inbound KEYMAT in hex: key followed by the 4-byte salt (20 or 36 bytes).
    pub key_in: String,
    /// Outbound KEYMAT in hex.
    pub key_out: String,
    /// Our inner prefixes.
    pub local_ts: Vec<Ipv6Net>,
    /// The peer's inner prefixes (routed to it; sources accepted from it).
    pub remote_ts: Vec<Ipv6Net>,
    /// Our outer IPv4 address.
    pub local: Ipv4Addr,
    /// The peer's outer IPv4 address.
    pub remote: Ipv4Addr,
    /// `raw` (default) or `udp`.
    #[serde(default = "default_encap")]
    pub encap: EncapName,
    /// Our UDP port (with `encap = "udp"`; default: the interface's udp_port).
    #[serde(default)]
    pub local_port: Option<u16>,
    /// The peer's UDP port (with `encap = "udp"`; default 4500).
    #[serde(default)]
    pub remote_port: Option<u16>,
    /// Lifetimes (all optional).
    #[serde(default)]
    pub limits: LimitsSection,
    /// 64-bit extended sequence numbers.
    #[serde(default)]
    pub esn: bool,
    /// Anti-replay window in packets (default and minimum 1024).
    #[serde(default = "default_window")]
    pub replay_window: u32,
    /// NAT keepalive interval in seconds (UDP only).
    #[serde(default)]
    pub nat_keepalive_seconds: Option<u32>,
}

fn default_encap() -> EncapName {
    EncapName::Raw
}

/// `[sa.limits]`: the [`Limits`] fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Soft byte limit.
    pub soft_bytes: Option<u64>,
    /// Hard byte limit.
    pub hard_bytes: Option<u64>,
    /// Soft packet limit.
    pub soft_packets: Option<u64>,
    /// Hard packet limit.
    pub hard_packets: Option<u64>,
    /// Soft time limit in seconds.
    pub soft_seconds: Option<u64>,
    /// Hard time limit in seconds.
    pub hard_seconds: Option<u64>,
}

/// `[roaming]`: address changes (docs/ARCHITECTURE.md, "Roaming"); everything off by default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoamingSection {
    /// Client role: follow our outer IPv4 address (netlink), re-bind, announce with the override
    /// NA.
    #[serde(default)]
    pub follow_local_address: bool,
    /// The override NA's target (default: the TUN address inside the SA's local_ts).
    #[serde(default)]
    pub announce_target: Option<Ipv6Addr>,
    /// Server role: check override NAs and new outer sources, probe, move endpoints.
    #[serde(default)]
    pub accept_moves: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSection {
    interface: InterfaceSection,
    #[serde(default)]
    roaming: RoamingSection,
    #[serde(default)]
    sa: Vec<SaSection>,
}

/// A validated static-SA file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticConfig {
    /// The interface.
    pub interface: InterfaceConfig,
    /// The roaming switches (a process option of the data plane, not part of the SA channel).
    pub roaming: RoamingConfig,
    /// The pairs, in file order.
    pub sas: Vec<ChildSa>,
}

impl StaticConfig {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::check(path, parse_file(path)?)
    }

    /// Validates a file's text (`path` only names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::check(path, parse_str(path, text)?)
    }

    fn check(path: &Path, file: FileSection) -> Result<Self, ConfigError> {
        let interface = interface_config(path, file.interface)?;
        let roaming = RoamingConfig {
            follow_local_address: file.roaming.follow_local_address,
            announce_target: file.roaming.announce_target,
            accept_moves: file.roaming.accept_moves,
        };
        if let Some(target) = roaming.announce_target
            && (target.is_multicast() || target.is_unspecified() || target.is_loopback())
        {
            return Err(error(
                path,
                "roaming.announce_target",
                format!("{target} cannot be a tunnel address"),
            ));
        }
        let mut sas: Vec<ChildSa> = Vec::with_capacity(file.sa.len());
        for (index, entry) in file.sa.into_iter().enumerate() {
            let sa = child_sa(path, index, entry, &interface)?;
            check_against_earlier(path, index, &sa, &sas)?;
            sas.push(sa);
        }
        Ok(StaticConfig {
            interface,
            roaming,
            sas,
        })
    }

    /// The requests that set the forwarder up: Configure, then one Install per pair.
    pub fn requests(&self) -> Vec<Request> {
        std::iter::once(Request::Configure(self.interface.clone()))
            .chain(self.sas.iter().cloned().map(Request::Install))
            .collect()
    }
}

fn error(file: &Path, place: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::new(file, place, message)
}

fn interface_config(
    path: &Path,
    section: InterfaceSection,
) -> Result<InterfaceConfig, ConfigError> {
    if !section
        .addresses
        .iter()
        .any(|a| a.addr().segments()[0] & 0xffc0 == 0xfe80)
    {
        return Err(error(
            path,
            "interface.addresses",
            "needs at least one link-local address (fe80::/10)",
        ));
    }
    let config = InterfaceConfig {
        tun_name: section.tun_name,
        mtu: section.mtu,
        addresses: section.addresses,
        bind_ipv4: section.bind_ipv4,
        udp_port: section.udp_port,
        raw_esp: section.raw_esp,
        manage_routes: section.manage_routes,
        route_metric: section.route_metric,
        // Static SAs are for tests and strongSwan interop, not for routes a BGP daemon exports.
        route_protocol: crate::DEFAULT_ROUTE_PROTOCOL,
        peer_pool: None,
        clamp_mss: false,
        icmp_source: None,
    };
    config.validate().map_err(|e| {
        // Name the field the message is about.
        let field = match e {
            ControlError::BadTunName(_) => "tun_name",
            ControlError::BadMtu { .. } => "mtu",
            ControlError::NoOuterSocket => "udp_port",
            _ => "-",
        };
        error(path, &format!("interface.{field}"), e.to_string())
    })?;
    Ok(config)
}

fn child_sa(
    path: &Path,
    index: usize,
    entry: SaSection,
    interface: &InterfaceConfig,
) -> Result<ChildSa, ConfigError> {
    let at = |field: &str| format!("sa[{index}].{field}");
    let alg = match entry.alg.as_str() {
        "aes128gcm16" => AeadAlg::AesGcm128,
        "aes256gcm16" => AeadAlg::AesGcm256,
        other => {
            return Err(error(
                path,
                &at("alg"),
                format!("unknown algorithm {other:?} (aes128gcm16 or aes256gcm16)"),
            ));
        }
    };
    if entry.spi_in == 0 {
        return Err(error(path, &at("spi_in"), "SPI 0 is reserved (RFC 4303)"));
    }
    if entry.spi_out == 0 {
        return Err(error(path, &at("spi_out"), "SPI 0 is reserved (RFC 4303)"));
    }
    let key = |field: &str, text: &str| -> Result<AeadKey, ConfigError> {
        let bytes = hex::decode(text.trim().trim_start_matches("0x"))
            .map_err(|e| error(path, &at(field), format!("not hex: {e}")))?;
        AeadKey::from_keymat(alg, &bytes).map_err(|e| error(path, &at(field), e.to_string()))
    };
    let key_in = key("key_in", &entry.key_in)?;
    let key_out = key("key_out", &entry.key_out)?;
    if entry.remote_ts.is_empty() {
        return Err(error(path, &at("remote_ts"), "needs at least one prefix"));
    }
    let encap = match entry.encap {
        EncapName::Raw => {
            if !interface.raw_esp {
                return Err(error(
                    path,
                    &at("encap"),
                    "raw ESP, but interface.raw_esp is false",
                ));
            }
            if entry.local_port.is_some() || entry.remote_port.is_some() {
                return Err(error(
                    path,
                    &at("local_port"),
                    "ports only go with encap = \"udp\"",
                ));
            }
            Encapsulation::Raw
        }
        EncapName::Udp => {
            let local_port = entry.local_port.unwrap_or(interface.udp_port);
            if local_port == 0 || local_port != interface.udp_port {
                return Err(error(
                    path,
                    &at("local_port"),
                    format!("must be the interface's udp_port ({})", interface.udp_port),
                ));
            }
            let remote_port = entry.remote_port.unwrap_or(4500);
            if remote_port == 0 {
                return Err(error(path, &at("remote_port"), "must not be 0"));
            }
            Encapsulation::Udp {
                local_port,
                remote_port,
            }
        }
    };
    if entry.replay_window > MAX_REPLAY_WINDOW {
        return Err(error(
            path,
            &at("replay_window"),
            format!("at most {MAX_REPLAY_WINDOW}"),
        ));
    }
    let l = entry.limits;
    for (name, soft, hard) in [
        ("bytes", l.soft_bytes, l.hard_bytes),
        ("packets", l.soft_packets, l.hard_packets),
        ("seconds", l.soft_seconds, l.hard_seconds),
    ] {
        if let (Some(soft), Some(hard)) = (soft, hard)
            && soft > hard
        {
            return Err(error(
                path,
                &at(&format!("limits.soft_{name}")),
                format!("soft limit {soft} is above the hard limit {hard}"),
            ));
        }
    }
    Ok(ChildSa {
        peer: PeerId(entry.peer),
        spi_in: Spi(entry.spi_in),
        key_in,
        spi_out: Spi(entry.spi_out),
        key_out,
        local_ts: entry.local_ts,
        remote_ts: entry.remote_ts,
        endpoint: Endpoint {
            local: entry.local,
            remote: entry.remote,
            encap,
        },
        limits: Limits {
            soft_bytes: l.soft_bytes,
            hard_bytes: l.hard_bytes,
            soft_packets: l.soft_packets,
            hard_packets: l.hard_packets,
            soft_seconds: l.soft_seconds,
            hard_seconds: l.hard_seconds,
        },
        esn: entry.esn,
        replay_window: entry.replay_window,
        nat_keepalive_seconds: entry.nat_keepalive_seconds,
    })
}

fn check_against_earlier(
    path: &Path,
    index: usize,
    sa: &ChildSa,
    earlier: &[ChildSa],
) -> Result<(), ConfigError> {
    if let Some(other) = earlier.iter().position(|o| o.spi_in == sa.spi_in) {
        return Err(error(
            path,
            &format!("sa[{index}].spi_in"),
            format!("SPI {} is already used by sa[{other}]", sa.spi_in),
        ));
    }
    let mut by_peer: HashMap<PeerId, Endpoint> = HashMap::new();
    for (other_index, other) in earlier.iter().enumerate() {
        by_peer.insert(other.peer, other.endpoint);
        if other.peer == sa.peer {
            continue;
        }
        for mine in &sa.remote_ts {
            if let Some(theirs) = other
                .remote_ts
                .iter()
                .find(|t| mine.contains(*t) || t.contains(mine))
            {
                return Err(error(
                    path,
                    &format!("sa[{index}].remote_ts"),
                    format!(
                        "{mine} overlaps {theirs} of sa[{other_index}] (another peer, {})",
                        other.peer
                    ),
                ));
            }
        }
    }
    if let Some(endpoint) = by_peer.get(&sa.peer)
        && *endpoint != sa.endpoint
    {
        return Err(error(
            path,
            &format!("sa[{index}].remote"),
            format!(
                "{} has another endpoint in an earlier entry ({endpoint}); one peer, one endpoint",
                sa.peer
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[interface]
tun_name = "ht0"
addresses = ["fe80::2/64", "2001:db8:1::2/64"]
bind_ipv4 = "192.0.2.2"

[[sa]]
peer = 1
spi_in = 0x1001
spi_out = 0x2001
alg = "aes128gcm16"
key_in = "000102030405060708090a0b0c0d0e0f10111213"
key_out = "101112131415161718191a1b1c1d1e1f20212223"
local_ts = ["2001:db8:1::/64"]
remote_ts = ["::/0"]
local = "192.0.2.2"
remote = "192.0.2.1"
encap = "udp"
limits = { soft_bytes = 1000000, hard_bytes = 2000000 }
nat_keepalive_seconds = 20
"#;

    fn parse(text: &str) -> Result<StaticConfig, String> {
        StaticConfig::parse(Path::new("lab.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn good_file_gives_configure_then_install() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.interface.mtu, 1400);
        assert_eq!(config.interface.udp_port, 4500);
        assert!(config.interface.raw_esp && config.interface.manage_routes);
        let sa = &config.sas[0];
        assert_eq!(sa.spi_in, Spi(0x1001));
        assert_eq!(sa.key_in.key(), &(0u8..16).collect::<Vec<_>>()[..]);
        assert_eq!(sa.key_in.salt(), [16, 17, 18, 19]);
        assert_eq!(
            sa.endpoint.encap,
            Encapsulation::Udp {
                local_port: 4500,
                remote_port: 4500
            }
        );
        assert_eq!(sa.limits.hard_bytes, Some(2_000_000));
        assert_eq!(sa.replay_window, 1024);
        let requests = config.requests();
        assert!(matches!(requests[0], Request::Configure(_)));
        assert!(matches!(&requests[1], Request::Install(s) if s.spi_out == Spi(0x2001)));
    }

    fn with_sa_line(find: &str, replace: &str) -> String {
        assert!(GOOD.contains(find), "{find}");
        GOOD.replacen(find, replace, 1)
    }

    #[test]
    fn short_key_names_file_entry_and_field() {
        let text = with_sa_line(
            "key_in = \"000102030405060708090a0b0c0d0e0f10111213\"",
            "key_in = \"0001\"",
        );
        assert_eq!(
            parse(&text).unwrap_err(),
            "lab.toml: sa[0].key_in: aes128gcm16 needs 20 bytes of key material (key + 4-byte salt), got 2"
        );
    }

    #[test]
    fn spi_zero_is_refused() {
        let text = with_sa_line("spi_out = 0x2001", "spi_out = 0");
        assert_eq!(
            parse(&text).unwrap_err(),
            "lab.toml: sa[0].spi_out: SPI 0 is reserved (RFC 4303)"
        );
    }

    fn second_sa(peer: u64, spi_in: u32, remote_ts: &str) -> String {
        let entry = GOOD.split("[[sa]]").nth(1).unwrap();
        let entry = entry
            .replace("peer = 1", &format!("peer = {peer}"))
            .replace("spi_in = 0x1001", &format!("spi_in = {spi_in}"))
            .replace(
                "remote_ts = [\"::/0\"]",
                &format!("remote_ts = [\"{remote_ts}\"]"),
            );
        format!("{GOOD}\n[[sa]]{entry}")
    }

    #[test]
    fn duplicate_spi_is_refused() {
        let text = second_sa(1, 0x1001, "::/0");
        assert_eq!(
            parse(&text).unwrap_err(),
            "lab.toml: sa[1].spi_in: SPI 00001001 is already used by sa[0]"
        );
    }

    #[test]
    fn overlapping_selectors_of_two_peers_are_refused() {
        let text = second_sa(2, 7, "2001:db8:5::/64");
        assert_eq!(
            parse(&text).unwrap_err(),
            "lab.toml: sa[1].remote_ts: 2001:db8:5::/64 overlaps ::/0 of sa[0] (another peer, peer1)"
        );
        // The same peer may have a second pair for the same prefix (a rekey).
        assert!(parse(&second_sa(1, 7, "::/0")).is_ok());
    }

    #[test]
    fn unknown_field_and_bad_types_name_the_place() {
        let text = GOOD.replace("nat_keepalive_seconds = 20", "natt = 20");
        let e = parse(&text).unwrap_err();
        assert!(e.starts_with("lab.toml: sa[0].natt: "), "{e}");
        assert!(e.contains("unknown field `natt`"), "{e}");
        let text = GOOD.replace("spi_in = 0x1001", "spi_in = \"x\"");
        let e = parse(&text).unwrap_err();
        assert!(e.starts_with("lab.toml: sa[0].spi_in: "), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn interface_needs_a_link_local_address_and_a_sane_mtu() {
        let text = GOOD.replace("\"fe80::2/64\", ", "");
        assert_eq!(
            parse(&text).unwrap_err(),
            "lab.toml: interface.addresses: needs at least one link-local address (fe80::/10)"
        );
        let text = GOOD.replace("tun_name = \"ht0\"", "tun_name = \"ht0\"\nmtu = 900");
        let e = parse(&text).unwrap_err();
        assert!(
            e.starts_with("lab.toml: interface.mtu: mtu 900 out of range"),
            "{e}"
        );
    }

    #[test]
    fn udp_encap_needs_the_interface_port() {
        let text = with_sa_line("encap = \"udp\"", "encap = \"udp\"\nlocal_port = 4501");
        assert_eq!(
            parse(&text).unwrap_err(),
            "lab.toml: sa[0].local_port: must be the interface's udp_port (4500)"
        );
    }

    #[test]
    fn roaming_section_sets_the_switches() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.roaming, RoamingConfig::default());
        let text = GOOD.replace(
            "[[sa]]",
            "[roaming]\nfollow_local_address = true\nannounce_target = \"2001:db8:1::2\"\n\n[[sa]]",
        );
        let config = parse(&text).unwrap();
        assert!(config.roaming.follow_local_address && !config.roaming.accept_moves);
        assert_eq!(
            config.roaming.announce_target,
            Some("2001:db8:1::2".parse().unwrap())
        );
        let text = GOOD.replace("[[sa]]", "[roaming]\naccept_moves = true\n\n[[sa]]");
        assert!(parse(&text).unwrap().roaming.accept_moves);
        let text = GOOD.replace(
            "[[sa]]",
            "[roaming]\nannounce_target = \"ff02::1\"\n\n[[sa]]",
        );
        assert_eq!(
            parse(&text).unwrap_err(),
            "lab.toml: roaming.announce_target: ff02::1 cannot be a tunnel address"
        );
        let text = GOOD.replace("[[sa]]", "[roaming]\nfollow = true\n\n[[sa]]");
        let e = parse(&text).unwrap_err();
        assert!(e.starts_with("lab.toml: roaming.follow: "), "{e}");
    }

    #[test]
    fn soft_above_hard_is_refused() {
        let text = GOOD.replace("soft_bytes = 1000000", "soft_bytes = 3000000");
        assert_eq!(
            parse(&text).unwrap_err(),
            "lab.toml: sa[0].limits.soft_bytes: soft limit 3000000 is above the hard limit 2000000"
        );
    }

    #[test]
    fn shipped_examples_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/static-sa");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                StaticConfig::load(&path).unwrap();
                seen += 1;
            }
        }
        assert!(seen >= 2, "examples/static-sa should hold both sides");
    }
}
