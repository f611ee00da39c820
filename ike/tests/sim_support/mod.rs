//! A deterministic two-peer simulation of the sans-IO IKE endpoint (quinn's `tests/util.rs`
//! `Pair`, smoltcp's `netsim`): a virtual clock, seeded randomness, a virtual network that can
//! drop, duplicate, delay and NAT datagrams, and a fake forwarder per side that records the SA
//! channel requests and reports counters like the real one.
//!
//! Certificates are made here with rcgen: a CA, a client leaf (`home.example`, clientAuth) and
//! a server leaf (`vps.example`, serverAuth), Ed25519 or P-256. Each side requires the other's
//! role as the daemon does (`PeerUsage::Home` on the server, `PeerUsage::Server` on a home).

// Each simulation test uses a part of this support.
#![allow(dead_code, unused_imports)]
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hometun_control::{
    ChildSa, CounterReport, Encapsulation, Event, Limits, PeerId, Request, SaCounters, Spi,
};
use hometun_ike::crypto::{CertificateVerifier, PeerIdentity, PeerUsage, PrivateKey, VerifiedPeer};
use hometun_ike::endpoint::{
    Authorizer, CommonConfig, Endpoint, InitiatorConfig, Now, Output, PrefixRefusal, Random,
    ResponderConfig, Transmit,
};
use hometun_ike::proposal::{EspProposal, IkeProposal};
use hometun_ike::settings::IkeRekeyPolicy;
use ipnet::Ipv6Net;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber, SignatureAlgorithm, date_time_ymd,
};

pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The client's address behind the NAT.
pub const CLIENT_PRIVATE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The NAT's public address.
pub const NAT_PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
pub const CLIENT_NAME: &str = "home.example";
pub const SERVER_NAME: &str = "vps.example";

pub fn net(s: &str) -> Ipv6Net {
    s.parse().unwrap()
}

/// The client's prefix in the server's policy.
pub fn client_prefix() -> Ipv6Net {
    net("2001:db8:1::/64")
}

mod certs;
mod config;
mod forwarder;
mod homes;
mod hostile;
mod net;
mod time;

pub use certs::*;
pub use config::*;
pub use forwarder::*;
pub use homes::*;
pub use hostile::*;
pub use net::*;
pub use time::*;
