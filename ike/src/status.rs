//! What the endpoint reports for `hometun status` and metrics: per peer, per CHILD SA, and its
//! own counters.

use std::net::SocketAddrV4;

/// Per-peer state for `hometun status`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PeerStatus {
    /// The peer.
    pub peer: hometun_control::PeerId,
    /// Its identity.
    pub name: String,
    /// Our IKE address and port.
    pub local: SocketAddrV4,
    /// Its IKE address and port.
    pub remote: SocketAddrV4,
    /// Whether a NAT was detected (either side).
    pub nat: bool,
    /// ESP in UDP without a NAT seen, because our configuration forces it
    /// (`force_udp_encapsulation`; the peer sees a NAT in front of us).
    pub udp_forced: bool,
    /// Hex SPIi, SPIr.
    pub ike_spis: (String, String),
    /// e.g. "aes128gcm16-prfsha256-x25519".
    pub ike_proposal: String,
    /// Seconds since the IKE SA came up.
    pub established_seconds: u64,
    /// Seconds since the peer's endpoint last moved, if it did.
    pub last_moved_seconds_ago: Option<u64>,
    /// How often the CHILD SAs moved to another outer address (the server: the client's
    /// MOBIKE updates and the forwarder's checked moves; the client: our own address changes).
    pub moves: u64,
    /// The peer's side of the tunnel (its traffic selectors as policy allows them): on the
    /// server the client's prefixes, on the client the server's side, `::/0`.
    pub prefixes: Vec<ipnet::Ipv6Net>,
    /// Its CHILD SAs.
    pub children: Vec<ChildStatus>,
}

/// One CHILD SA in [`PeerStatus`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChildStatus {
    /// Our inbound SPI.
    pub spi_in: hometun_control::Spi,
    /// The peer's inbound SPI (our outbound).
    pub spi_out: hometun_control::Spi,
    /// e.g. "aes128gcm16".
    pub proposal: String,
    /// Our traffic selectors.
    pub local_ts: Vec<ipnet::Ipv6Net>,
    /// The peer's traffic selectors.
    pub remote_ts: Vec<ipnet::Ipv6Net>,
    /// `active`, `rekeying`, `replaced` (a successor took over; deleted soon), `deleting`, or
    /// `expired` (a hard limit came before a successor: it carries nothing).
    pub state: String,
}

/// Counts for `hometun status` and tests: the SAs held and what was refused or dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EndpointCounters {
    /// IKE SAs held in any state (half-open, connecting, established, being replaced).
    pub ike_sas: usize,
    /// Half-open IKE SAs (responder: IKE_SA_INIT answered, IKE_AUTH not yet).
    pub half_open: usize,
    /// IKE_SA_INIT requests answered with a COOKIE only.
    pub cookies_sent: u64,
    /// IKE_SA_INIT requests dropped over the half-open bounds.
    pub dropped_half_open_bound: u64,
    /// Datagrams dropped because they did not parse.
    pub dropped_unparsable: u64,
    /// Datagrams dropped because no IKE SA has their SPI.
    pub dropped_unknown_spi: u64,
    /// CHILD SA rekeys completed, in either role.
    pub child_rekeys: u64,
    /// Our CHILD SA rekeys that the peer refused or that failed (each try counts).
    pub child_rekeys_failed: u64,
    /// CHILD SAs that reached a hard limit (or used up their sequence numbers) before a
    /// successor took over: the tunnel carried nothing on them until it was re-made.
    pub child_sas_expired: u64,
    /// IKE SA rekey exchanges completed, in either role (both of a collision count).
    pub ike_rekeys: u64,
    /// CHILD SA pairs the forwarder refused to install (deleted again on both sides).
    pub installs_refused: u64,
    /// Unprotected notifications we sent about SAs we do not have (RFC 7296 2.21.4):
    /// INVALID_SPI for ESP, INVALID_IKE_SPI for IKE requests, and the hints sent after a
    /// restart to the peers that were up before it.
    pub restart_hints_sent: u64,
    /// Unprotected hints received that matched one of our SAs (each may start a check).
    pub restart_hints_received: u64,
    /// Hint checks that the peer did not answer: its IKE SA was given up and made again.
    pub restart_checks_failed: u64,
}
