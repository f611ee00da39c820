//! The two endpoints of the IKE world as the scenario's configuration byte sets them up: the
//! server's `[[clients]]` policy, proposals, rekey policy, limits, and the home's and the
//! server's endpoint configurations (their credentials come from [`crate::credentials`]).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hometun_control::Limits;
use hometun_ike::crypto::{PeerIdentity, VerifiedPeer};
use hometun_ike::endpoint::{
    Authorizer, CommonConfig, Endpoint, InitiatorConfig, Now, Random, ResponderConfig,
};
use hometun_ike::proposal::{EspProposal, IkeProposal};
use hometun_ike::settings::{IkeRekeyPolicy, PrefixRefusal};
use ipnet::Ipv6Net;

use crate::credentials::{self, HOME_NAME, OTHER_NAME, SERVER_NAME, credentials};

/// The server's address.
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// A side of the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client.
    Home,
    /// The server.
    Server,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Home => Side::Server,
            Side::Server => Side::Home,
        }
    }
}

/// The server's `[[clients]]` policy.
struct Policy;

impl Authorizer for Policy {
    fn prefixes(
        &self,
        identity: &PeerIdentity,
        _: &VerifiedPeer,
    ) -> Result<Vec<Ipv6Net>, PrefixRefusal> {
        match identity {
            PeerIdentity::Fqdn(name) if name == HOME_NAME => Ok(vec![credentials::home_prefix()]),
            PeerIdentity::Fqdn(name) if name == OTHER_NAME => Ok(vec![credentials::other_prefix()]),
            other => Err(PrefixRefusal::NoPrefix(other.clone())),
        }
    }
}

/// What the scenario varies, from one input byte.
#[derive(Debug, Clone)]
pub struct Config {
    /// A NAT in front of the home (UDP encapsulation, port 4500).
    pub nat: bool,
    /// The home's IKE proposals.
    pub home_ike: Vec<&'static str>,
    /// The home's ESP proposals.
    pub home_esp: Vec<&'static str>,
    /// The server's ESP proposals.
    pub server_esp: Vec<&'static str>,
    /// When the IKE SA is rekeyed.
    pub ike_rekey: IkeRekeyPolicy,
    /// Liveness checks on the server too.
    pub server_dpd: bool,
    /// Both sides send a packet on their newest pair every second.
    pub traffic: bool,
    /// The hostile home claims MOBIKE in IKE_AUTH.
    pub claim_mobike: bool,
}

impl Config {
    /// The configuration a byte picks.
    pub fn from_byte(b: u8) -> Self {
        let (home_esp, server_esp) = match (b >> 1) & 3 {
            0 => (vec!["aes128gcm16"], vec!["aes128gcm16", "aes256gcm16"]),
            1 => (
                vec!["aes128gcm16-x25519-ecp256"],
                vec!["aes128gcm16-x25519-ecp256", "aes256gcm16-x25519-ecp256"],
            ),
            2 => (
                vec!["aes256gcm16-esn-x25519-modpnone"],
                vec!["aes256gcm16-esn-noesn", "aes128gcm16"],
            ),
            _ => (
                vec!["aes128gcm16-ecp256"],
                vec!["aes128gcm16-x25519-modpnone", "aes256gcm16-x25519"],
            ),
        };
        let home_ike = match (b >> 3) & 1 {
            0 => vec!["aes128gcm16-prfsha256-x25519"],
            _ => vec!["aes256gcm16-prfsha256-ecp256-x25519"],
        };
        Config {
            nat: b & 1 != 0,
            home_ike,
            home_esp,
            server_esp,
            ike_rekey: IkeRekeyPolicy {
                after_child_rekeys: u32::from((b >> 4) & 1),
                bytes: None,
                seconds: ((b >> 4) & 1 == 0).then_some(600),
            },
            server_dpd: b & 0x20 != 0,
            traffic: b & 0x40 != 0,
            claim_mobike: b & 0x80 != 0,
        }
    }
}

fn limits() -> Limits {
    Limits {
        soft_bytes: Some(1 << 31),
        hard_bytes: Some(3 << 30),
        soft_packets: Some(1 << 30),
        hard_packets: Some(3 << 29),
        soft_seconds: None,
        hard_seconds: None,
    }
}

fn common(config: &Config, side: Side) -> CommonConfig {
    let creds = credentials();
    let (leaf, name, verifier, ike, esp, dpd) = match side {
        Side::Home => (
            &creds.home,
            HOME_NAME,
            creds.home_verifier(),
            config.home_ike.clone(),
            config.home_esp.clone(),
            Some(Duration::from_secs(30)),
        ),
        Side::Server => (
            &creds.server,
            SERVER_NAME,
            creds.server_verifier(),
            vec![
                "aes128gcm16-prfsha256-x25519",
                "aes256gcm16-prfsha256-ecp256",
            ],
            config.server_esp.clone(),
            config.server_dpd.then_some(Duration::from_secs(45)),
        ),
    };
    CommonConfig {
        chain: vec![leaf.der.clone()],
        key: std::sync::Arc::new(leaf.private_key()),
        identity: PeerIdentity::Fqdn(name.into()),
        verifier: std::sync::Arc::new(verifier),
        ike_proposals: ike
            .iter()
            .map(|p| IkeProposal::parse(p).expect("a proposal of the harness"))
            .collect(),
        esp_proposals: esp
            .iter()
            .map(|p| EspProposal::parse(p).expect("a proposal of the harness"))
            .collect(),
        limits: limits(),
        ike_rekey: config.ike_rekey,
        replay_window: 1024,
        nat_keepalive_seconds: 20,
        retransmit_base: Duration::from_secs(1),
        retransmit_tries: 4,
        dpd,
        reconnect_max: Duration::from_secs(30),
        ike_port: 500,
        nat_port: 4500,
    }
}

/// A new server endpoint.
pub fn server_endpoint(config: &Config, now: Now, rng: &mut dyn Random) -> Endpoint {
    Endpoint::responder(
        ResponderConfig {
            common: common(config, Side::Server),
            local_addr: SERVER_ADDR,
            authorizer: Box::new(Policy),
            cookie_threshold: 10,
            half_open_per_source: 5,
            half_open_total: 50,
            new_ike_sas_per_identity: 5,
        },
        now,
        rng,
    )
}

/// A new home endpoint (it starts connecting at once) at `local`.
pub fn home_endpoint(config: &Config, local: Ipv4Addr, now: Now, rng: &mut dyn Random) -> Endpoint {
    Endpoint::initiator(
        InitiatorConfig {
            common: common(config, Side::Home),
            server: SocketAddrV4::new(SERVER_ADDR, 500),
            server_identity: PeerIdentity::Fqdn(SERVER_NAME.into()),
            fallback_servers: Vec::new(),
            local_addr: local,
            local_prefixes: vec![credentials::home_prefix()],
            force_udp_encapsulation: false,
        },
        now,
        rng,
    )
}
