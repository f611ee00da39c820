//! Address changes (docs/ARCHITECTURE.md, "Roaming"): the switches of
//! the two roles, why a move was refused, and what the forwarder counts per peer.
//!
//! The client's forwarder (`follow_local_address`) learns a change of its outer IPv4 address
//! from netlink, re-binds, updates its peers' endpoints and announces the new address with the
//! override NA through the tunnel. The server's forwarder (`accept_moves`) checks the NA after
//! ESP authentication and the replay window, sends an ESP-protected return-routability probe to
//! the new outer address and moves the peer's endpoint only on the authenticated answer from
//! there. Both report a move as [`crate::Event::EndpointMoved`]: on the server the `remote` side
//! changed, on the client the `local` side (its own address).

use std::fmt;
use std::net::Ipv6Addr;

use serde::{Deserialize, Serialize};

use crate::types::PeerId;

/// The roaming switches of one forwarder. The default is off for both roles: a forwarder that
/// is not told otherwise neither follows nor accepts moves (it still answers return-routability
/// probes, which costs nothing and lets a server that checks moves reach it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RoamingConfig {
    /// Client role: watch the outer IPv4 address (netlink RTM_NEWADDR / RTM_DELADDR and route
    /// changes), re-bind sockets bound to the old address, move every peer's endpoint to the new
    /// local address and send the override NA to each peer until its ESP arrives again.
    pub follow_local_address: bool,
    /// The override NA's target: the client's tunnel address. `None`: the first address of the
    /// TUN device inside the SA's local traffic selector.
    pub announce_target: Option<Ipv6Addr>,
    /// Server role: check override NAs, probe new outer addresses (after an NA, or after
    /// authenticated ESP from a new source: a NAT rebinding) and move a peer's endpoint on the
    /// authenticated answer.
    pub accept_moves: bool,
}

/// Why the server refused an override NA or a move. ESP-level failures are not here: an NA
/// outside ESP, with a bad ICV or replayed never reaches the override checks and is counted as
/// the ESP drop it is (`NoSa`, `AuthFailed`, `Replay`, `TooOld`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MoveRefusal {
    /// The inner hop limit is not 255 (RFC 4861 7.1.2: the NA was forwarded by a router).
    HopLimit,
    /// The ICMPv6 checksum is wrong.
    Checksum,
    /// Not a well-formed NA (length, code, options).
    Malformed,
    /// Not O=1, S=0, R=0.
    Flags,
    /// No Target Link-Layer Address option.
    NoTargetLinkAddress,
    /// The target is outside the SA's remote traffic selector (another client's address).
    ForeignTarget,
    /// The target is multicast, loopback, unspecified or one of the server's own addresses.
    BadTarget,
    /// The NA's ESP sequence number is not newer than the last accepted NA's on that SA.
    OlderNa,
    /// Too many NAs from this peer (rate limit).
    Storm,
    /// The probe's answer (right nonce) came from another outer address than the probed one.
    ProbeWrongAddress,
    /// The probe got no authenticated answer in time.
    ProbeTimeout,
}

impl MoveRefusal {
    /// Every reason, in the order reports list them.
    pub const ALL: [MoveRefusal; 11] = [
        MoveRefusal::HopLimit,
        MoveRefusal::Checksum,
        MoveRefusal::Malformed,
        MoveRefusal::Flags,
        MoveRefusal::NoTargetLinkAddress,
        MoveRefusal::ForeignTarget,
        MoveRefusal::BadTarget,
        MoveRefusal::OlderNa,
        MoveRefusal::Storm,
        MoveRefusal::ProbeWrongAddress,
        MoveRefusal::ProbeTimeout,
    ];

    /// A short name for logs and status output.
    pub fn name(self) -> &'static str {
        match self {
            MoveRefusal::HopLimit => "hop-limit",
            MoveRefusal::Checksum => "checksum",
            MoveRefusal::Malformed => "malformed",
            MoveRefusal::Flags => "flags",
            MoveRefusal::NoTargetLinkAddress => "no-tlla",
            MoveRefusal::ForeignTarget => "foreign-target",
            MoveRefusal::BadTarget => "bad-target",
            MoveRefusal::OlderNa => "older-na",
            MoveRefusal::Storm => "storm",
            MoveRefusal::ProbeWrongAddress => "probe-wrong-address",
            MoveRefusal::ProbeTimeout => "probe-timeout",
        }
    }

    /// Its position in [`MoveRefusal::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for MoveRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the server's forwarder counted for one peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRoaming {
    /// The peer.
    pub peer: PeerId,
    /// Endpoint moves (each after an authenticated probe answer).
    pub moves: u64,
    /// Milliseconds from the trigger (NA or first packet from the new source) to the switch, of
    /// the last move.
    pub last_move_ms: Option<u64>,
    /// Override NAs that passed every check.
    pub nas_accepted: u64,
    /// Probes sent (retransmissions included).
    pub probes_sent: u64,
    /// Probe rounds started by authenticated ESP from a new source without an NA (NAT
    /// rebinding).
    pub rebinding_rounds: u64,
    /// Refusals by reason (only reasons seen).
    pub refusals: Vec<(MoveRefusal, u64)>,
}

impl PeerRoaming {
    /// Refusals of one reason.
    pub fn refused(&self, reason: MoveRefusal) -> u64 {
        self.refusals
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }
}

/// Everything the forwarder counted about address changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoamingReport {
    /// Server role: per peer.
    pub peers: Vec<PeerRoaming>,
    /// Client role: changes of our own outer address that moved our endpoints.
    pub local_address_changes: u64,
    /// Client role: override NAs sent.
    pub announcements_sent: u64,
    /// Return-routability probes answered (either role).
    pub probes_answered: u64,
}

impl RoamingReport {
    /// The entry of one peer, if it has one.
    pub fn peer(&self, peer: PeerId) -> Option<&PeerRoaming> {
        self.peers.iter().find(|p| p.peer == peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_listed_in_index_order_with_distinct_names() {
        for (i, reason) in MoveRefusal::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
        let mut names: Vec<&str> = MoveRefusal::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), MoveRefusal::ALL.len());
    }

    #[test]
    fn report_round_trips_through_the_codec() {
        let report = RoamingReport {
            peers: vec![PeerRoaming {
                peer: PeerId(3),
                moves: 2,
                last_move_ms: Some(4),
                nas_accepted: 5,
                probes_sent: 3,
                rebinding_rounds: 1,
                refusals: vec![(MoveRefusal::Storm, 7)],
            }],
            local_address_changes: 0,
            announcements_sent: 0,
            probes_answered: 1,
        };
        let frame = crate::encode_frame(&report).unwrap();
        let back: RoamingReport = crate::decode_frame(&frame[4..]).unwrap();
        assert_eq!(back, report);
        assert_eq!(back.peer(PeerId(3)).unwrap().refused(MoveRefusal::Storm), 7);
        assert_eq!(back.peer(PeerId(3)).unwrap().refused(MoveRefusal::Flags), 0);
        assert!(back.peer(PeerId(4)).is_none());
    }
}
