//! `server.toml` and `client.toml`: what the daemons read at start-up and on SIGHUP.
//!
//! Every key is documented in README.md ("Configuration"). A wrong, missing or contradictory key
//! stops start-up with one line naming the file, the key and the problem ([`ConfigError`]).
//! Relative paths in a file are taken relative to that file's directory.

#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use hometun_control::Limits;
use ipnet::Ipv6Net;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

mod enroll;
mod files;
mod lan;
pub mod minimal;
pub mod names;
pub mod one_line;
mod registry;
mod renew;
mod servers;
pub mod static_sa;
mod tunnel;

pub use enroll::EnrollSection;
pub use files::{check_private_key_mode, file_error, io_problem};
pub use lan::{LanSection, MAX_DNS_ENTRIES, UpstreamMode, UpstreamSection};
pub use registry::RegistrySection;
pub use renew::RenewSection;
pub use servers::{OneOrMore, ServerTarget};
use tunnel::check_tunnel;
pub use tunnel::{DEFAULT_ROUTE_PROTOCOL, TunnelSection};

/// A configuration problem: which file, which key, what is wrong. Displays as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {}{problem}", key_part(key))]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// The key as a dotted path (`tunnel.mtu`), or `-` for the file as a whole.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

/// `key: `, or nothing for the file as a whole.
fn key_part(key: &str) -> String {
    if key == "-" {
        String::new()
    } else {
        format!("{key}: ")
    }
}

impl ConfigError {
    /// An error about `key` in `file`.
    pub fn new(file: &Path, key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// Byte and packet lifetimes of CHILD SAs (docs/ARCHITECTURE.md, "Rekeys"): no time limit by
/// default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Rekey after this many bytes in either direction.
    #[serde(default = "default_rekey_bytes")]
    pub rekey_bytes: u64,
    /// Rekey after this many packets in either direction.
    #[serde(default = "default_rekey_packets")]
    pub rekey_packets: u64,
    /// Stop using the SA after this many bytes.
    #[serde(default = "default_hard_bytes")]
    pub hard_bytes: u64,
    /// Stop using the SA after this many packets.
    #[serde(default = "default_hard_packets")]
    pub hard_packets: u64,
    /// Rekey after this many seconds (off unless set).
    #[serde(default)]
    pub rekey_seconds: Option<u64>,
    /// Stop using the SA after this many seconds (off unless set).
    #[serde(default)]
    pub hard_seconds: Option<u64>,
    /// Rekey the IKE SA after this many CHILD SA rekeys on it (0: not for this reason). Each
    /// IKE SA rekey brings a fresh Diffie-Hellman secret to SK_d (forward secrecy).
    #[serde(default = "default_ike_rekey_child_rekeys")]
    pub ike_rekey_child_rekeys: u32,
    /// Rekey the IKE SA after its CHILD SAs carried this many bytes, both directions together.
    #[serde(default = "default_ike_rekey_bytes")]
    pub ike_rekey_bytes: u64,
    /// Rekey the IKE SA after this many seconds even when idle (off unless set: for a threat
    /// model that wants forward secrecy within a set time).
    #[serde(default)]
    pub ike_rekey_seconds: Option<u64>,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            rekey_bytes: default_rekey_bytes(),
            rekey_packets: default_rekey_packets(),
            hard_bytes: default_hard_bytes(),
            hard_packets: default_hard_packets(),
            rekey_seconds: None,
            hard_seconds: None,
            ike_rekey_child_rekeys: default_ike_rekey_child_rekeys(),
            ike_rekey_bytes: default_ike_rekey_bytes(),
            ike_rekey_seconds: None,
        }
    }
}

impl LimitsSection {
    /// The limits as the forwarder takes them.
    pub fn to_limits(&self) -> Limits {
        Limits {
            soft_bytes: Some(self.rekey_bytes),
            hard_bytes: Some(self.hard_bytes),
            soft_packets: Some(self.rekey_packets),
            hard_packets: Some(self.hard_packets),
            soft_seconds: self.rekey_seconds,
            hard_seconds: self.hard_seconds,
        }
    }

    fn check(&self, file: &Path) -> Result<(), ConfigError> {
        let pairs = [
            (
                "limits.hard_bytes",
                self.rekey_bytes,
                self.hard_bytes,
                "rekey_bytes",
            ),
            (
                "limits.hard_packets",
                self.rekey_packets,
                self.hard_packets,
                "rekey_packets",
            ),
        ];
        for (key, soft, hard, soft_name) in pairs {
            if hard <= soft {
                return Err(ConfigError::new(
                    file,
                    key,
                    format!("{hard} must be above limits.{soft_name} ({soft})"),
                ));
            }
        }
        if self.ike_rekey_bytes == 0 {
            return Err(ConfigError::new(
                file,
                "limits.ike_rekey_bytes",
                "must be above 0".to_string(),
            ));
        }
        if self.ike_rekey_seconds == Some(0) {
            return Err(ConfigError::new(
                file,
                "limits.ike_rekey_seconds",
                "must be above 0 (leave it out for no time bound)".to_string(),
            ));
        }
        if let (Some(soft), Some(hard)) = (self.rekey_seconds, self.hard_seconds)
            && hard <= soft
        {
            return Err(ConfigError::new(
                file,
                "limits.hard_seconds",
                format!("{hard} must be above limits.rekey_seconds ({soft})"),
            ));
        }
        Ok(())
    }
}

/// How often a running server looks whether its CRL file (`server.crl`) changed, in seconds:
/// a revocation applies within this time without a SIGHUP.
pub const CRL_CHECK_SECONDS: u64 = 2;

/// IKE protocol settings, common to both roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IkeSection {
    /// IKE SA proposals in order of preference, strongSwan notation
    /// (`aes128gcm16-prfsha256-x25519`; also `aes256gcm16`, `ecp256`).
    #[serde(default = "default_ike_proposals")]
    pub proposals: Vec<String>,
    /// ESP proposals in order of preference, strongSwan notation: the default
    /// `aes128gcm16-x25519-ecp256` brings a fresh Diffie-Hellman to every CHILD SA rekey;
    /// `-modpnone` also accepts a peer without one, `-esn` asks for ESN.
    #[serde(default = "default_esp_proposals")]
    pub esp_proposals: Vec<String>,
    /// Liveness check after this many seconds without traffic from the peer; 0 = off.
    #[serde(default = "default_dpd_seconds")]
    pub dpd_seconds: u64,
    /// First retransmission timeout in milliseconds; doubles each try.
    #[serde(default = "default_retransmit_ms")]
    pub retransmit_ms: u64,
    /// Retransmissions before the peer is declared dead.
    #[serde(default = "default_retransmit_tries")]
    pub retransmit_tries: u32,
    /// A client's longest wait between two connection attempts, in seconds: the wait doubles
    /// from `retransmit_ms` up to this (a server refusing or silent); a server that answers
    /// with ICMP port unreachable (up, hometun not yet) is tried again within a second.
    #[serde(default = "default_reconnect_max_seconds")]
    pub reconnect_max_seconds: u64,
    /// Anti-replay window of the CHILD SAs, in packets (at least 1024).
    #[serde(default = "default_replay_window")]
    pub replay_window: u32,
    /// NAT keepalive interval in seconds when behind NAT.
    #[serde(default = "default_nat_keepalive")]
    pub nat_keepalive_seconds: u32,
}

impl Default for IkeSection {
    fn default() -> Self {
        IkeSection {
            proposals: default_ike_proposals(),
            esp_proposals: default_esp_proposals(),
            dpd_seconds: default_dpd_seconds(),
            retransmit_ms: default_retransmit_ms(),
            retransmit_tries: default_retransmit_tries(),
            reconnect_max_seconds: default_reconnect_max_seconds(),
            replay_window: default_replay_window(),
            nat_keepalive_seconds: default_nat_keepalive(),
        }
    }
}

/// Denial-of-service limits of the responder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DosSection {
    /// Ask for a COOKIE once this many IKE SAs are half open.
    #[serde(default = "default_cookie_threshold")]
    pub cookie_threshold: u32,
    /// Most half-open IKE SAs from one source address.
    #[serde(default = "default_half_open_per_source")]
    pub half_open_per_source: u32,
    /// Most half-open IKE SAs in total.
    #[serde(default = "default_half_open_total")]
    pub half_open_total: u32,
    /// New IKE SAs one home (identity) may make in a burst, then one every 10 s; 0: no bound
    /// (for handshake benchmarks that run thousands per identity).
    #[serde(default = "default_new_ike_sas_per_identity")]
    pub new_ike_sas_per_identity: u32,
}

impl Default for DosSection {
    fn default() -> Self {
        DosSection {
            cookie_threshold: default_cookie_threshold(),
            half_open_per_source: default_half_open_per_source(),
            half_open_total: default_half_open_total(),
            new_ike_sas_per_identity: default_new_ike_sas_per_identity(),
        }
    }
}

/// The `[server]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// The server's IKE identity; a DNS name in its certificate's subjectAltName.
    pub name: String,
    /// The server's static public IPv4 address.
    pub listen: Ipv4Addr,
    /// UDP port for IKE.
    #[serde(default = "default_ike_port")]
    pub ike_port: u16,
    /// UDP port for IKE and ESP in UDP after NAT detection.
    #[serde(default = "default_nat_port")]
    pub nat_port: u16,
    /// The server's certificate (PEM).
    pub certificate: PathBuf,
    /// The server's private key (PEM, mode 0600 or stricter).
    pub private_key: PathBuf,
    /// The CA certificate that client certificates must chain to (PEM).
    pub ca: PathBuf,
    /// A CRL from that CA (PEM), checked in IKE_AUTH; re-read on SIGHUP.
    #[serde(default)]
    pub crl: Option<PathBuf>,
    /// The pool client prefixes come from; a client certificate's prefix must lie inside it.
    pub pool: Ipv6Net,
    /// Directory for runtime state.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The status socket: the Unix socket where `hometun status` asks for the state. Its key
    /// in the file is `control_socket`.
    #[serde(rename = "control_socket", default = "default_status_socket")]
    pub status_socket: PathBuf,
    /// Serve Prometheus metrics on this local address (off unless set).
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// The SA-channel socket of an already running `hometun forwarder --control PATH
    /// --accept-moves` to use (e.g. one systemd started with only CAP_NET_ADMIN and CAP_NET_RAW).
    /// Unset: the daemon starts its own forwarder as a child process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarder_socket: Option<PathBuf>,
}

impl ServerSection {
    /// A `[server]` table with the required keys and the defaults for the rest.
    pub fn new(
        name: String,
        listen: Ipv4Addr,
        certificate: PathBuf,
        private_key: PathBuf,
        ca: PathBuf,
        pool: Ipv6Net,
    ) -> Self {
        ServerSection {
            name,
            listen,
            ike_port: default_ike_port(),
            nat_port: default_nat_port(),
            certificate,
            private_key,
            ca,
            crl: None,
            pool,
            state_dir: default_state_dir(),
            status_socket: default_status_socket(),
            metrics: None,
            forwarder_socket: None,
        }
    }
}

/// A client known by configuration rather than by a prefix in its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticClient {
    /// The client's IKE identity (DNS name in its certificate).
    pub name: String,
    /// The prefix it owns.
    pub prefix: Ipv6Net,
}

/// `server.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `[server]`.
    pub server: ServerSection,
    /// `[tunnel]`.
    pub tunnel: TunnelSection,
    /// `[limits]`.
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[ike]`.
    #[serde(default)]
    pub ike: IkeSection,
    /// `[dos]`.
    #[serde(default)]
    pub dos: DosSection,
    /// `[[clients]]`: clients whose prefix is configured here instead of in their certificate.
    #[serde(default)]
    pub clients: Vec<StaticClient>,
    /// `[enroll]`: online enrollment (off unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enroll: Option<EnrollSection>,
    /// `[registry]`: a registry shared by several servers (else the PKI directory's file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistrySection>,
    /// `[upstream]`: forwarding and how the provider reaches the pool.
    #[serde(default)]
    pub upstream: UpstreamSection,
}

/// The `[client]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    /// The client's IKE identity; a DNS name in its certificate's subjectAltName.
    pub name: String,
    /// The server's IPv4 address, or the addresses of the servers the home fails over between
    /// (tried in order: README.md, "Failover and BGP").
    pub server: OneOrMore<Ipv4Addr>,
    /// The server's IKE identity, checked against its certificate: one name for every server,
    /// or one per server in the order of `server`.
    pub server_name: OneOrMore<String>,
    /// The server's IKE port.
    #[serde(default = "default_ike_port")]
    pub server_port: u16,
    /// The local IPv4 address to use; learned from the routing table (and followed as it
    /// changes) when not set.
    #[serde(default)]
    pub local: Option<Ipv4Addr>,
    /// The local UDP port for IKE after NAT detection and ESP in UDP.
    #[serde(default = "default_nat_port")]
    pub nat_port: u16,
    /// Use ESP in UDP even where no NAT is in the way (strongSwan's `encap = yes`): Linux
    /// batches UDP (GSO/GRO) but not raw ESP, so this costs about half the CPU per GB.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_udp_encapsulation: bool,
    /// The client's certificate (PEM).
    pub certificate: PathBuf,
    /// The client's private key (PEM, mode 0600 or stricter).
    pub private_key: PathBuf,
    /// The CA certificate the server's certificate must chain to (PEM).
    pub ca: PathBuf,
    /// The IPv6 prefix this home owns (from its certificate).
    pub prefix: Ipv6Net,
    /// The address of the prefix put on the tunnel interface (defaults to the prefix's `::1`;
    /// for a /128, the address itself).
    #[serde(default)]
    pub address: Option<Ipv6Addr>,
    /// Directory for runtime state.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The status socket: the Unix socket where `hometun status` asks for the state. Its key
    /// in the file is `control_socket`.
    #[serde(rename = "control_socket", default = "default_status_socket")]
    pub status_socket: PathBuf,
    /// Serve Prometheus metrics on this local address (off unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
    /// The SA-channel socket of an already running `hometun forwarder --control PATH` to use
    /// (started with `--follow-local-address` unless `client.local` is set). Unset: the daemon
    /// starts its own forwarder as a child process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarder_socket: Option<PathBuf>,
    /// A program run when the tunnel comes up, and when it goes down for longer than the
    /// liveness timeout or the client stops, with the prefix, the LAN /64s,
    /// the tunnel interface and the state in its environment (README.md, "The updown hook").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updown: Option<PathBuf>,
}

impl ClientSection {
    /// A `[client]` table with the required keys and the defaults for the rest.
    pub fn new(
        name: String,
        server: Ipv4Addr,
        server_name: String,
        certificate: PathBuf,
        private_key: PathBuf,
        ca: PathBuf,
        prefix: Ipv6Net,
    ) -> Self {
        ClientSection {
            name,
            server: OneOrMore::one(server),
            server_name: OneOrMore::one(server_name),
            server_port: default_ike_port(),
            local: None,
            nat_port: default_nat_port(),
            force_udp_encapsulation: false,
            certificate,
            private_key,
            ca,
            prefix,
            address: None,
            state_dir: default_state_dir(),
            status_socket: default_status_socket(),
            metrics: None,
            forwarder_socket: None,
            updown: None,
        }
    }
}

/// `client.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// `[client]`.
    pub client: ClientSection,
    /// `[tunnel]`.
    pub tunnel: TunnelSection,
    /// `[limits]`.
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[ike]`.
    #[serde(default)]
    pub ike: IkeSection,
    /// `[renew]`: certificate renewal.
    #[serde(default)]
    pub renew: RenewSection,
    /// `[[lan]]`: the LAN interfaces that get a /64 of the prefix each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lan: Vec<LanSection>,
}

/// The status socket a server or client config names, found even when the rest of the file is
/// wrong (`hometun status` must still reach a daemon that kept running after a SIGHUP with a
/// broken config). Reads only `control_socket` of `[server]` or `[client]`; a file that is not
/// TOML at all is scanned line by line; without the key, the default. Relative to the file's
/// directory, as [`ServerConfig::load`] makes it.
pub fn status_socket_in(path: &Path, text: &str) -> PathBuf {
    const KEY: &str = "control_socket";
    let from_table = toml::from_str::<toml::Table>(text).ok().and_then(|table| {
        ["server", "client"]
            .iter()
            .find_map(|section| table.get(*section)?.get(KEY)?.as_str().map(PathBuf::from))
    });
    let from_lines = || {
        text.lines().find_map(|line| {
            let value = line
                .trim()
                .strip_prefix(KEY)?
                .trim_start()
                .strip_prefix('=')?;
            let value = value.trim().strip_prefix('"')?;
            Some(PathBuf::from(&value[..value.find('"')?]))
        })
    };
    let named = from_table
        .or_else(from_lines)
        .unwrap_or_else(default_status_socket);
    base_dir(path).join(named)
}

impl ServerConfig {
    /// Reads, parses and checks a server config; relative paths become relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut config: ServerConfig = parse_file(path)?;
        config.check(path)?;
        let base = base_dir(path);
        let s = &mut config.server;
        for p in [
            &mut s.certificate,
            &mut s.private_key,
            &mut s.ca,
            &mut s.state_dir,
        ] {
            *p = base.join(&*p);
        }
        s.status_socket = base.join(&s.status_socket);
        if let Some(socket) = &mut s.forwarder_socket {
            *socket = base.join(&*socket);
        }
        if let Some(crl) = &mut s.crl {
            *crl = base.join(&*crl);
        }
        if let Some(enroll) = &mut config.enroll {
            enroll.pki_dir = base.join(&enroll.pki_dir);
        }
        if let Some(file) = config
            .registry
            .as_mut()
            .and_then(|r| r.password_file.as_mut())
        {
            *file = base.join(&*file);
        }
        Ok(config)
    }

    /// Parses and checks a server config given as text (paths stay as written).
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let mut config: ServerConfig = parse_str(path, text)?;
        config.check(path)?;
        Ok(config)
    }

    /// The config as TOML text.
    pub fn to_toml(&self) -> String {
        // Serialising plain structs of strings, numbers and addresses cannot fail.
        toml::to_string_pretty(self).expect("server config serialises")
    }

    /// Checks the config and puts every name in lower case (IKE compares identities without
    /// case, so two spellings of one name must never count as two homes).
    fn check(&mut self, file: &Path) -> Result<(), ConfigError> {
        check_tunnel(&self.tunnel, file)?;
        self.limits.check(file)?;
        check_ike(&self.ike, file)?;
        self.upstream.check(&self.tunnel.interface, file)?;
        normalise_name(&mut self.server.name, "server.name", file)?;
        if let Some(registry) = &self.registry {
            registry.check(file)?;
        }
        for (i, client) in self.clients.iter_mut().enumerate() {
            normalise_name(&mut client.name, &format!("clients[{i}].name"), file)?;
        }
        if let Some(enroll) = &self.enroll {
            enroll.check(file)?;
        }
        if self.server.ike_port == self.server.nat_port {
            return Err(ConfigError::new(
                file,
                "server.nat_port",
                "must differ from server.ike_port",
            ));
        }
        for (i, client) in self.clients.iter().enumerate() {
            if !self.server.pool.contains(&client.prefix) {
                return Err(ConfigError::new(
                    file,
                    format!("clients[{i}].prefix"),
                    format!(
                        "{} is outside server.pool {}",
                        client.prefix, self.server.pool
                    ),
                ));
            }
            for (j, other) in self.clients.iter().enumerate().take(i) {
                if other.name == client.name {
                    return Err(ConfigError::new(
                        file,
                        format!("clients[{i}].name"),
                        format!("{} is also clients[{j}].name", client.name),
                    ));
                }
                if other.prefix.contains(&client.prefix) || client.prefix.contains(&other.prefix) {
                    return Err(ConfigError::new(
                        file,
                        format!("clients[{i}].prefix"),
                        format!(
                            "{} overlaps clients[{j}].prefix {}",
                            client.prefix, other.prefix
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl ClientConfig {
    /// Reads, parses and checks a client config; relative paths become relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut config: ClientConfig = parse_file(path)?;
        config.check(path)?;
        let base = base_dir(path);
        let c = &mut config.client;
        for p in [
            &mut c.certificate,
            &mut c.private_key,
            &mut c.ca,
            &mut c.state_dir,
        ] {
            *p = base.join(&*p);
        }
        c.status_socket = base.join(&c.status_socket);
        if let Some(socket) = &mut c.forwarder_socket {
            *socket = base.join(&*socket);
        }
        if let Some(updown) = &mut c.updown {
            *updown = base.join(&*updown);
        }
        Ok(config)
    }

    /// Parses and checks a client config given as text (paths stay as written).
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let mut config: ClientConfig = parse_str(path, text)?;
        config.check(path)?;
        Ok(config)
    }

    /// The config as TOML text.
    pub fn to_toml(&self) -> String {
        // Serialising plain structs of strings, numbers and addresses cannot fail.
        toml::to_string_pretty(self).expect("client config serialises")
    }

    /// The address of the home's prefix that goes on the tunnel interface: `client.address`,
    /// else the prefix's `::1`, or the address itself when the home owns one (a /128).
    pub fn tunnel_address(&self) -> Ipv6Addr {
        self.client.address.unwrap_or_else(|| {
            let base = u128::from(self.client.prefix.network());
            if self.client.prefix.prefix_len() == 128 {
                Ipv6Addr::from(base)
            } else {
                Ipv6Addr::from(base | 1)
            }
        })
    }

    /// The servers in the order the home tries them, each with the identity it must prove.
    pub fn servers(&self) -> Vec<ServerTarget> {
        servers::targets(&self.client.server, &self.client.server_name)
    }

    /// The /64 of the prefix each `[[lan]]` gets, in order.
    pub fn lan_subnets(&self) -> Vec<Ipv6Net> {
        self.lan
            .iter()
            .filter_map(|lan| lan.subnet_of(self.client.prefix))
            .collect()
    }

    /// Checks the config and puts both names in lower case.
    fn check(&mut self, file: &Path) -> Result<(), ConfigError> {
        check_tunnel(&self.tunnel, file)?;
        self.limits.check(file)?;
        check_ike(&self.ike, file)?;
        normalise_name(&mut self.client.name, "client.name", file)?;
        servers::check(&self.client.server, &mut self.client.server_name, file)?;
        self.renew.check(file)?;
        lan::check_lans(
            &mut self.lan,
            self.client.prefix,
            &self.tunnel.interface,
            file,
        )?;
        if let Some(address) = self.client.address
            && !self.client.prefix.contains(&address)
        {
            return Err(ConfigError::new(
                file,
                "client.address",
                format!("{address} is outside client.prefix {}", self.client.prefix),
            ));
        }
        Ok(())
    }
}

fn parse_file<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::new(path, "-", io_problem(&e)))?;
    parse_str(path, &text)
}

fn parse_str<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| {
        // The line itself, since toml's message may not name what is wrong ("duplicate key").
        let excerpt = e
            .span()
            .and_then(|span| text.get(..span.start))
            .map(|before| before.rfind('\n').map_or(0, |i| i + 1))
            .and_then(|start| text[start..].lines().next())
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|line| format!(" (`{}`)", line.chars().take(60).collect::<String>()))
            .unwrap_or_default();
        ConfigError::new(
            path,
            "-",
            format!("not valid TOML: {}{excerpt}", one_line(&e.to_string())),
        )
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { "-".to_string() } else { key };
        ConfigError::new(path, key, one_line(&e.inner().to_string()))
    })
}

/// toml's messages span several lines with a source excerpt; keep the gist on one line.
fn one_line(message: &str) -> String {
    let mut lines = message.lines().filter(|l| {
        let t = l.trim_start();
        !t.is_empty()
            && !t.starts_with('|')
            && !t.chars().next().is_some_and(|c| c.is_ascii_digit())
    });
    let first = lines.next().unwrap_or(message).trim().to_string();
    let first = first
        .strip_prefix("TOML parse error at ")
        .unwrap_or(&first)
        .to_string();
    match lines.next_back() {
        Some(last) if last.trim() != first => format!("{first}: {}", last.trim()),
        _ => first,
    }
}

fn base_dir(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn check_ike(ike: &IkeSection, file: &Path) -> Result<(), ConfigError> {
    if ike.proposals.is_empty() {
        return Err(ConfigError::new(
            file,
            "ike.proposals",
            "must list at least one proposal",
        ));
    }
    if ike.esp_proposals.is_empty() {
        return Err(ConfigError::new(
            file,
            "ike.esp_proposals",
            "must list at least one proposal",
        ));
    }
    if ike.replay_window < 1024 {
        return Err(ConfigError::new(
            file,
            "ike.replay_window",
            format!("{} is below the minimum of 1024", ike.replay_window),
        ));
    }
    if ike.retransmit_ms == 0 {
        return Err(ConfigError::new(
            file,
            "ike.retransmit_ms",
            "must be above 0",
        ));
    }
    if ike.reconnect_max_seconds == 0 || ike.reconnect_max_seconds > 3600 {
        return Err(ConfigError::new(
            file,
            "ike.reconnect_max_seconds",
            format!("{} is outside 1 to 3600 seconds", ike.reconnect_max_seconds),
        ));
    }
    Ok(())
}

/// Checks a DNS name and returns it in lower case, the one form every name is compared in.
fn normalise_name(name: &mut String, key: &str, file: &Path) -> Result<(), ConfigError> {
    *name =
        names::normalize_dns_name(name).map_err(|e| ConfigError::new(file, key, e.to_string()))?;
    Ok(())
}

pub(crate) fn default_true() -> bool {
    true
}
fn default_rekey_bytes() -> u64 {
    1 << 31
}
fn default_rekey_packets() -> u64 {
    1 << 30
}
fn default_hard_bytes() -> u64 {
    1 << 32
}
fn default_hard_packets() -> u64 {
    // Below 2^32 so that a 32-bit sequence number never runs out first.
    (1 << 31) + (1 << 30)
}
fn default_ike_proposals() -> Vec<String> {
    vec![
        "aes128gcm16-prfsha256-x25519".to_string(),
        "aes256gcm16-prfsha256-x25519".to_string(),
        "aes128gcm16-prfsha256-ecp256".to_string(),
    ]
}
fn default_ike_rekey_child_rekeys() -> u32 {
    1
}

/// Four CHILD SA soft limits' worth.
fn default_ike_rekey_bytes() -> u64 {
    4 * default_rekey_bytes()
}

/// PFS in every CHILD SA rekey (RFC 7296 1.3.1): X25519 first, P-256 for peers without it.
fn default_esp_proposals() -> Vec<String> {
    vec![
        "aes128gcm16-x25519-ecp256".to_string(),
        "aes256gcm16-x25519-ecp256".to_string(),
    ]
}
fn default_dpd_seconds() -> u64 {
    30
}
fn default_retransmit_ms() -> u64 {
    500
}
fn default_retransmit_tries() -> u32 {
    5
}
/// Tens of seconds: a home back online within half a minute of its server, and at most a few
/// IKE_SA_INITs a minute towards a server that is away.
fn default_reconnect_max_seconds() -> u64 {
    30
}
fn default_replay_window() -> u32 {
    1024
}
fn default_nat_keepalive() -> u32 {
    20
}
fn default_cookie_threshold() -> u32 {
    32
}
fn default_half_open_per_source() -> u32 {
    8
}
fn default_half_open_total() -> u32 {
    1024
}
fn default_new_ike_sas_per_identity() -> u32 {
    5
}
fn default_ike_port() -> u16 {
    500
}
fn default_nat_port() -> u16 {
    4500
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("state")
}
fn default_status_socket() -> PathBuf {
    PathBuf::from("state/control.sock")
}

#[cfg(test)]
mod tests;
