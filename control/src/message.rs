//! The messages of the SA channel: requests in, responses and events out.

use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};

use crate::error::ControlError;
use crate::types::{ChildSa, Endpoint, InterfaceConfig, Limits, PeerId, Spi};

/// A request to the forwarder. Every request gets exactly one reply with the same id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Chosen by the sender; echoed in the reply.
    pub id: u64,
    /// What is asked.
    pub request: Request,
}

/// What the IKE daemon (or an operator tool) asks of the forwarder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)] // rare control messages; size does not matter
pub enum Request {
    /// Create the TUN device and open the outer sockets. Must come first, once.
    Configure(InterfaceConfig),
    /// Install a CHILD SA pair. Outbound traffic to its remote traffic selector moves to it at
    /// once (the newest pair wins); older pairs keep receiving until deleted (make-before-break).
    Install(ChildSa),
    /// Which inner prefixes a peer may use, as its certificate (or server.toml's `[[clients]]`)
    /// grants them: sent when the peer's IKE SA comes up, before its first Install, and again
    /// when a reload changes them (an empty list withdraws the grant). The forwarder refuses an
    /// Install whose remote traffic selector lies outside the peer's grant: a second check,
    /// apart from the IKE state machine's own narrowing (docs/ARCHITECTURE.md, "Trust").
    AllowPeer {
        /// The peer.
        peer: PeerId,
        /// Its prefixes; each must lie inside the interface's `peer_pool` when that is set.
        prefixes: Vec<ipnet::Ipv6Net>,
    },
    /// A new `peer_pool` for the interface (a server's `server.pool` changed on reload): later
    /// grants and installs are checked against it, and an installed pair with a remote selector
    /// outside it is removed.
    SetPeerPool {
        /// The new pool; `None` leaves grants optional.
        pool: Option<ipnet::Ipv6Net>,
    },
    /// The peer's identity, for the forwarder's log lines (which otherwise say `peerN`, a number
    /// that changes across restarts): sent when its IKE SA comes up; `None` forgets it once the
    /// peer is down.
    NamePeer {
        /// The peer.
        peer: PeerId,
        /// Its identity (at most 255 bytes are kept).
        name: Option<String>,
    },
    /// Remove the pair whose inbound SPI this is.
    Delete {
        /// Inbound SPI of the pair.
        spi_in: Spi,
    },
    /// Move every SA of a peer to a new endpoint.
    UpdateEndpoint {
        /// Whose SAs.
        peer: PeerId,
        /// The new outer addresses.
        endpoint: Endpoint,
    },
    /// Report the counters of every SA.
    GetCounters,
    /// Send an IKE message from the forwarder's UDP socket (port 4500), which the forwarder owns
    /// because ESP in UDP arrives on the same port. The forwarder adds the non-ESP marker.
    SendIke {
        /// Source address and port (the port must be the forwarder's UDP port).
        local: SocketAddrV4,
        /// Destination.
        remote: SocketAddrV4,
        /// The IKE message, without the non-ESP marker.
        data: Vec<u8>,
    },
    /// Stop: remove the TUN device and routes, close the sockets, exit.
    Shutdown,
}

/// The forwarder's answer to a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Done.
    Ok,
    /// The answer to [`Request::GetCounters`].
    Counters(CounterReport),
}

/// Something the forwarder reports on its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A soft lifetime was reached: time to rekey this pair.
    SoftLimit {
        /// The pair's peer.
        peer: PeerId,
        /// The pair's inbound SPI.
        spi_in: Spi,
        /// Which direction reached it.
        direction: Direction,
        /// Which limit.
        kind: LimitKind,
    },
    /// A hard lifetime was reached: that direction of the pair carries nothing more.
    HardLimit {
        /// The pair's peer.
        peer: PeerId,
        /// The pair's inbound SPI.
        spi_in: Spi,
        /// Which direction reached it.
        direction: Direction,
        /// Which limit.
        kind: LimitKind,
    },
    /// The outbound sequence number space is used up: the pair sends nothing more.
    SeqExhausted {
        /// The pair's peer.
        peer: PeerId,
        /// The pair's inbound SPI.
        spi_in: Spi,
    },
    /// An IKE message arrived on the UDP port (non-ESP marker removed).
    IkeReceived {
        /// Where it arrived.
        local: SocketAddrV4,
        /// Who sent it (as seen, after any NAT).
        remote: SocketAddrV4,
        /// The IKE message.
        data: Vec<u8>,
    },
    /// The forwarder moved a peer's endpoint. On a server (`RoamingConfig::accept_moves`) the
    /// peer's outer address changed: an authenticated override NA (or authenticated ESP from a
    /// new source, a NAT rebinding) and the return-routability check passed; the IKE SA should
    /// follow `new.remote`. On a client (`RoamingConfig::follow_local_address`) our own outer
    /// address changed (`old.local != new.local`, learned from netlink): the IKE SA should move
    /// its local address to `new.local` (MOBIKE for a stock peer).
    EndpointMoved {
        /// Whose SAs.
        peer: PeerId,
        /// Where they were.
        old: Endpoint,
        /// Where they are now.
        new: Endpoint,
    },
    /// ESP arrived for an SPI that no pair has (rate limited, each sender and SPI at most once
    /// a second): after a restart of the server, its homes still send with their old pairs, and
    /// the IKE daemon tells them (RFC 7296 2.21.4).
    UnknownSpi {
        /// The SPI.
        spi: Spi,
        /// The outer source address.
        remote: Ipv4Addr,
        /// The UDP source port of ESP in UDP; `None` for raw ESP.
        port: Option<u16>,
    },
    /// Client (`RoamingConfig::follow_local_address`): the kernel announced IPv4 address or
    /// route changes that moved no peer's endpoint, e.g. while no SA is up (an uplink that came
    /// back, a new address from DHCP). A client waiting to reconnect should try at once, from
    /// whatever its source address is now. Several changes in a row make one event.
    NetworkChanged,
    /// The TUN device was deleted under the forwarder (`ip link del`) and the forwarder made it
    /// again, with its addresses and the routes it installs: what the controller put on it
    /// besides (a client's source route for its LANs) must be put back. The device has a new
    /// interface index.
    TunnelRecreated,
}

/// Direction of an SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// Packets we receive.
    Inbound,
    /// Packets we send.
    Outbound,
}

/// Which lifetime counter reached its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LimitKind {
    /// Bytes.
    Bytes,
    /// Packets.
    Packets,
    /// Seconds since install.
    Time,
}

/// Why a packet was dropped. One spelling everywhere an operator reads it (the status table,
/// its JSON, the metrics' `reason` label): [`DropReason::name`], `no-sa`, `auth-failed`, ...
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropReason {
    /// Sequence number already seen.
    Replay,
    /// Sequence number left of the replay window.
    TooOld,
    /// ICV did not verify (forged, corrupted, or a far-ahead sequence number).
    AuthFailed,
    /// Decrypted inner packet's source outside the SA's traffic selector (RFC 4891).
    IngressFilter,
    /// Could not be parsed.
    Malformed,
    /// No SA for the SPI (inbound) or for the destination (outbound).
    NoSa,
    /// The SA reached a hard limit.
    HardLimit,
    /// The outbound sequence number space is used up.
    SeqExhausted,
    /// Inner packet larger than the MTU allows; an ICMPv6 Packet Too Big was sent.
    TooBig,
    /// A Neighbor Advertisement (or a return-routability answer) that failed the override
    /// checks; the forwarder's `RoamingReport` says which check (a [`crate::MoveRefusal`]).
    OverrideNaRefused,
    /// Link-local traffic the peer may not send into the tunnel: anything but ICMPv6, or a
    /// Router Solicitation, Router Advertisement or Redirect (the far end is never our router).
    LinkScoped,
}

impl DropReason {
    /// Every reason.
    pub const ALL: [DropReason; 11] = [
        DropReason::Replay,
        DropReason::TooOld,
        DropReason::AuthFailed,
        DropReason::IngressFilter,
        DropReason::Malformed,
        DropReason::NoSa,
        DropReason::HardLimit,
        DropReason::SeqExhausted,
        DropReason::TooBig,
        DropReason::OverrideNaRefused,
        DropReason::LinkScoped,
    ];

    /// The reason's name, as status, its JSON and the metrics spell it.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Replay => "replay",
            DropReason::TooOld => "too-old",
            DropReason::AuthFailed => "auth-failed",
            DropReason::IngressFilter => "ingress-filter",
            DropReason::Malformed => "malformed",
            DropReason::NoSa => "no-sa",
            DropReason::HardLimit => "hard-limit",
            DropReason::SeqExhausted => "seq-exhausted",
            DropReason::TooBig => "too-big",
            DropReason::OverrideNaRefused => "override-na-refused",
            DropReason::LinkScoped => "link-scoped",
        }
    }
}

/// Counters of one SA pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaCounters {
    /// Whose pair.
    pub peer: PeerId,
    /// Inbound SPI.
    pub spi_in: Spi,
    /// Outbound SPI.
    pub spi_out: Spi,
    /// Current endpoint.
    pub endpoint: Endpoint,
    /// Algorithm name, e.g. `aes128gcm16`.
    pub alg: String,
    /// Packets received and accepted.
    pub rx_packets: u64,
    /// Inner bytes received and accepted.
    pub rx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Inner bytes sent.
    pub tx_bytes: u64,
    /// Drops charged to this pair, by reason.
    pub drops: Vec<(DropReason, u64)>,
    /// The configured limits.
    pub limits: Limits,
    /// Seconds since the last accepted inbound packet, if any.
    pub last_rx_seconds_ago: Option<u64>,
    /// Seconds since install.
    pub age_seconds: u64,
}

/// Every counter of the forwarder.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterReport {
    /// One entry per installed SA pair.
    pub sas: Vec<SaCounters>,
    /// Drops not charged to any pair (unknown SPI, malformed packets, no outbound SA), by reason.
    pub global_drops: Vec<(DropReason, u64)>,
    /// IKE messages from UDP 4500 the forwarder dropped because its event queue was full (the
    /// daemon read them slower than they came; IKE retransmits). No other event is ever dropped.
    #[serde(default)]
    pub events_dropped: u64,
    /// Server role: what the roaming code counted for each peer that had any (moves, override
    /// NAs, probes, refusals by reason).
    #[serde(default)]
    pub roaming: Vec<crate::PeerRoaming>,
}

/// What travels from the forwarder to its controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromForwarder {
    /// The answer to the request with this id.
    Reply {
        /// The request's id.
        id: u64,
        /// Its outcome.
        result: Result<Response, ControlError>,
    },
    /// Something that happened.
    Event(Event),
}
