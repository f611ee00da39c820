//! CHILD SA bookkeeping: one ESP pair, its traffic selectors, and where it stands in a rekey.

use std::time::Instant;

use hometun_control::{AeadKey, ChildSa, PeerId, Request, Spi};
use ipnet::Ipv6Net;

use super::{IkeCore, Io};
use crate::crypto::ChildSaKeys;
use crate::notice::Notice;
use crate::proposal::ChosenEsp;
use crate::status::ChildStatus;

/// The nonces of a CHILD SA rekey exchange and the pair it created, kept for the collision
/// rule of RFC 7296 2.8.1.
#[derive(Debug, Clone)]
pub(crate) struct RekeyRecord {
    /// Inbound SPI of the pair the exchange created.
    pub successor: Spi,
    /// The exchange's Ni.
    pub ni: Vec<u8>,
    /// The exchange's Nr.
    pub nr: Vec<u8>,
}

/// Where a CHILD SA stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChildState {
    /// Carrying traffic.
    Active,
    /// Our rekey request for it is queued or in flight.
    Rekeying,
    /// Our rekey replaced it with `successor`: we delete it once the successor carried
    /// traffic, or at `delete_at` (make-before-break).
    Superseded { successor: Spi, delete_at: Instant },
    /// Replaced by `successor` through the peer's rekey: the peer deletes it, or we do at
    /// `delete_at` (a peer that never deletes must not pile pairs up).
    AwaitingPeerDelete { successor: Spi, delete_at: Instant },
    /// Our DELETE for it is queued or in flight.
    Deleting,
}

/// One CHILD SA pair.
#[derive(Debug, Clone)]
pub(crate) struct Child {
    pub spi_in: Spi,
    pub spi_out: Spi,
    pub chosen: ChosenEsp,
    pub local_ts: Vec<Ipv6Net>,
    pub remote_ts: Vec<Ipv6Net>,
    pub state: ChildState,
    /// Our completed rekey of this pair (a late colliding rekey from the peer is judged by it).
    pub our_rekey: Option<RekeyRecord>,
    /// The peer's rekey of this pair that arrived while ours was in flight.
    pub peer_rekey: Option<RekeyRecord>,
    /// Whether its inbound SA carried traffic (from the forwarder's counters).
    pub carried_traffic: bool,
    /// Our rekeys of it that were refused or failed in a row (the retry backs off).
    pub rekey_failures: u32,
    /// Our rekey request for it is on the wire (a peer's rekey meanwhile is a collision).
    pub pending_rekey_in_flight: bool,
    /// It reached a hard limit (or used up its sequence numbers) before a successor took over:
    /// it carries nothing more.
    pub expired: bool,
    /// Bytes it carried in both directions, as the forwarder last counted them.
    pub bytes: u64,
}

/// Which side of the creating exchange we were: decides which key is ours to send with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExchangeRole {
    /// We sent the request.
    Initiator,
    /// We answered it.
    Responder,
}

impl Child {
    /// A new active pair.
    pub fn new(
        spi_in: Spi,
        spi_out: Spi,
        chosen: ChosenEsp,
        local_ts: Vec<Ipv6Net>,
        remote_ts: Vec<Ipv6Net>,
    ) -> Self {
        Self {
            spi_in,
            spi_out,
            chosen,
            local_ts,
            remote_ts,
            state: ChildState::Active,
            our_rekey: None,
            peer_rekey: None,
            carried_traffic: false,
            rekey_failures: 0,
            pending_rekey_in_flight: false,
            expired: false,
            bytes: 0,
        }
    }

    /// Whether it can carry traffic and is nobody's predecessor: the pair a rekey replaces.
    pub fn is_usable(&self) -> bool {
        !self.expired && matches!(self.state, ChildState::Active | ChildState::Rekeying)
    }

    /// One word for status: `active`, `rekeying`, `replaced`, `deleting` or `expired`.
    pub fn state_name(&self) -> &'static str {
        if self.expired {
            return "expired";
        }
        match self.state {
            ChildState::Active => "active",
            ChildState::Rekeying => "rekeying",
            ChildState::Superseded { .. } | ChildState::AwaitingPeerDelete { .. } => "replaced",
            ChildState::Deleting => "deleting",
        }
    }

    /// Asks the forwarder to install the pair with `keys`, sending to `endpoint` (where the
    /// peer's other pairs send: after a move it is no longer what the IKE SA was made with).
    pub fn install(
        &self,
        io: &mut Io<'_>,
        peer: PeerId,
        core: &IkeCore,
        keys: ChildSaKeys,
        role: ExchangeRole,
        endpoint: hometun_control::Endpoint,
    ) {
        let (key_in, key_out): (AeadKey, AeadKey) = match role {
            ExchangeRole::Initiator => (keys.responder_to_initiator, keys.initiator_to_responder),
            ExchangeRole::Responder => (keys.initiator_to_responder, keys.responder_to_initiator),
        };
        let udp = matches!(endpoint.encap, hometun_control::Encapsulation::Udp { .. });
        let sa = ChildSa {
            peer,
            spi_in: self.spi_in,
            key_in,
            spi_out: self.spi_out,
            key_out,
            local_ts: self.local_ts.clone(),
            remote_ts: self.remote_ts.clone(),
            endpoint,
            limits: io.cfg.limits,
            esn: self.chosen.esn,
            replay_window: io.cfg.replay_window,
            nat_keepalive_seconds: (udp && core.nat_local && io.cfg.nat_keepalive_seconds > 0)
                .then_some(io.cfg.nat_keepalive_seconds),
        };
        // The driver logs the "installed" line once the forwarder confirmed it.
        io.forwarder(Request::Install(sa));
    }

    /// Asks the forwarder to remove the pair, and frees its SPI.
    pub fn uninstall(&self, io: &mut Io<'_>) {
        io.notice(Notice::ChildDeleted {
            spi_in: self.spi_in,
            spi_out: self.spi_out,
        });
        io.forwarder(Request::Delete {
            spi_in: self.spi_in,
        });
        io.spis.release_esp(self.spi_in);
    }

    /// For `hometun status`.
    pub fn status(&self) -> ChildStatus {
        ChildStatus {
            spi_in: self.spi_in,
            spi_out: self.spi_out,
            proposal: self.chosen.to_string(),
            local_ts: self.local_ts.clone(),
            remote_ts: self.remote_ts.clone(),
            state: self.state_name().to_string(),
        }
    }
}

/// `a, b` for log lines.
pub(crate) fn join(prefixes: &[Ipv6Net]) -> String {
    prefixes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
