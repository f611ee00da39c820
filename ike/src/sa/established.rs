//! An established IKE SA: its CHILD SAs, the message-ID windows, and the exchanges after
//! IKE_AUTH (CREATE_CHILD_SA rekeys of CHILD and IKE SAs with the collision rules of RFC 7296
//! 2.8.1, INFORMATIONAL deletes and liveness checks).
//!
//! Our requests are [`Task`]s in a queue; one at a time goes out (window size 1) as a
//! [`Pending`] exchange, which is consumed when its response arrives.

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use hometun_control::{CounterReport, Spi};
use ipnet::Ipv6Net;

use super::child::{Child, ChildState, ExchangeRole, RekeyRecord};
use super::{
    Addresses, IkeCore, IkeError, Io, PeerInfo, error_notify, has_notify, hex_spi, lowest_nonce_in,
    natd_payloads,
};
use crate::crypto::{DhGroup, KeyExchange};
use crate::endpoint::{Output, PeerStatus};
use crate::proposal::{EspGroups, EspProposal, IkeProposal};
use crate::selectors::{narrow, prefixes_of, to_payload};
use crate::window::{
    RequestClass, ResponseWindow, Retransmission, RetransmitAction, total_patience,
};
use crate::wire::{self, Delete, ExchangeType, Header, Notify, NotifyType, Payload, ProtocolId};

/// How long the old pair of a rekey we made lives at most when the forwarder's counters show
/// no traffic on its successor (an idle tunnel: make-before-break's grace period). With
/// traffic, the DELETE leaves at the first counter report that shows the successor carried
/// some, in either direction: our outbound moves to it when it is installed, so that is
/// normally the first report after the CREATE_CHILD_SA response.
pub(crate) const REKEY_DELETE_GRACE: Duration = Duration::from_secs(10);

/// How long the inbound SA of a pair whose DELETE exchange we completed stays installed, for
/// packets the peer sent on it before it processed the DELETE (strongSwan's
/// `delete_rekeyed_delay` on its initiator side).
pub(crate) const DELETED_INBOUND_LINGER: Duration = Duration::from_secs(2);

/// Length of our COOKIE2 (RFC 4555 5.2 asks for 8 to 64 octets).
const COOKIE2_LEN: usize = 16;

/// Work for our side of the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Task {
    /// Rekey the CHILD SA with this inbound SPI (with this PFS group, if the peer asked for it).
    RekeyChild { spi_in: u32, group: Option<DhGroup> },
    /// Rekey the IKE SA (with this group, if the peer asked for it).
    RekeyIke { group: Option<DhGroup> },
    /// Delete the CHILD SA with this inbound SPI.
    DeleteChild(u32),
    /// Delete the IKE SA.
    DeleteIke,
    /// An empty INFORMATIONAL (liveness check).
    Liveness,
    /// MOBIKE return-routability check of the peer's current address (RFC 4555 5.2): an
    /// INFORMATIONAL with COOKIE2; the CHILD SAs move there on the authenticated answer.
    ReturnRoutability,
}

impl Task {
    /// Whether the task belongs to the CHILD SAs (and moves with them to a rekeyed IKE SA).
    fn is_child_task(&self) -> bool {
        matches!(
            self,
            Task::RekeyChild { .. } | Task::DeleteChild(_) | Task::ReturnRoutability
        )
    }
}

/// A CHILD SA rekey request in flight.
struct ChildRekeyRequested {
    old_spi_in: u32,
    new_spi_in: u32,
    ni: Vec<u8>,
    ke: Option<KeyExchange>,
}

/// An IKE SA rekey request in flight.
struct IkeRekeyRequested {
    new_spi: u64,
    ni: Vec<u8>,
    ke: KeyExchange,
}

/// The exchange our outstanding request belongs to.
enum Pending {
    ChildRekey(ChildRekeyRequested),
    IkeRekey(IkeRekeyRequested),
    DeleteChild(u32),
    DeleteIke,
    Liveness,
    /// Our COOKIE2, sent to `target`.
    ReturnRoutability {
        cookie2: Vec<u8>,
        target: SocketAddrV4,
    },
}

struct Outstanding {
    message_id: u32,
    retransmission: Retransmission,
    pending: Pending,
}

/// A peer's IKE SA rekey that arrived while ours was in flight (RFC 7296 2.8.2).
struct IkeCollision {
    /// Our SPI of the IKE SA the peer's exchange created.
    new_spi: u64,
    ni: Vec<u8>,
    nr: Vec<u8>,
}

/// A MOBIKE address update whose return-routability check has not answered yet: the IKE SA
/// talks to the new address, the CHILD SAs still use `from`.
#[derive(Debug, Clone, Copy)]
struct PendingMove {
    /// When the UPDATE_SA_ADDRESSES request came.
    since: Instant,
    /// The peer's address before it.
    from: SocketAddrV4,
}

/// What the endpoint must do after an event on an IKE SA.
pub(crate) enum Effect {
    /// A new IKE SA (from a rekey), to insert under its SPI and start.
    Insert(Box<Established>),
    /// Move this SA's CHILD SAs and their queued work to the IKE SA with our SPI `to`.
    MoveChildren { to: u64 },
    /// This SA is gone (children deleted or moved, outputs emitted): remove it.
    Remove,
}

/// What [`Established::new`] takes.
pub(crate) struct EstablishedParams {
    pub core: IkeCore,
    pub peer: PeerInfo,
    /// Inner prefixes our side may use (TSr of a client's request on the server).
    pub local_allowed: Vec<Ipv6Net>,
    /// Inner prefixes the peer may use.
    pub peer_allowed: Vec<Ipv6Net>,
    pub children: Vec<Child>,
    pub next_request_id: u32,
    pub expected_request_id: u32,
    pub cached_response: Option<Vec<u8>>,
    pub mobike: bool,
    /// We are the client (the tunnel's home side).
    pub client: bool,
}

/// An established IKE SA.
pub(crate) struct Established {
    pub core: IkeCore,
    pub peer: PeerInfo,
    local_allowed: Vec<Ipv6Net>,
    peer_allowed: Vec<Ipv6Net>,
    pub children: Vec<Child>,
    next_request_id: u32,
    outstanding: Option<Outstanding>,
    queue: VecDeque<Task>,
    deferred: Vec<(Instant, Task)>,
    responses: ResponseWindow,
    /// Last sign of life from the peer (IKE message or ESP packet).
    last_rx: Instant,
    established_at: Instant,
    last_moved: Option<Instant>,
    mobike: bool,
    client: bool,
    collision: Option<IkeCollision>,
    /// Set when this SA no longer speaks for the peer (its children moved to a rekeyed IKE SA,
    /// or it lost a rekey collision): it only waits to be deleted, silently.
    superseded_at: Option<Instant>,
    /// The peer deleted this SA: it is kept until then only to answer a retransmitted
    /// DELETE with the cached response.
    closing_until: Option<Instant>,
    /// Pairs whose DELETE exchange completed: uninstalled at the instant given, until then
    /// their inbound SA catches packets still in flight.
    retired: Vec<(Child, Instant)>,
    /// Where the CHILD SAs send (the forwarder's endpoint for this peer, as we last set or
    /// learned it).
    child_endpoint: hometun_control::Endpoint,
    /// Times the CHILD SAs moved to another peer address (MOBIKE, or the forwarder's move).
    moves: u64,
    /// A MOBIKE update waiting for its return-routability answer.
    pending_move: Option<PendingMove>,
}

impl Established {
    /// A newly established IKE SA (after IKE_AUTH or a rekey).
    pub fn new(io: &mut Io<'_>, p: EstablishedParams) -> Self {
        let child_endpoint = p.core.esp_endpoint(io.cfg);
        Self {
            core: p.core,
            peer: p.peer,
            local_allowed: p.local_allowed,
            peer_allowed: p.peer_allowed,
            children: p.children,
            next_request_id: p.next_request_id,
            outstanding: None,
            queue: VecDeque::new(),
            deferred: Vec::new(),
            responses: ResponseWindow::new(p.expected_request_id, p.cached_response),
            last_rx: io.now.mono,
            established_at: io.now.mono,
            last_moved: None,
            mobike: p.mobike,
            client: p.client,
            collision: None,
            superseded_at: None,
            closing_until: None,
            retired: Vec::new(),
            child_endpoint,
            moves: 0,
            pending_move: None,
        }
    }

    /// Whether the SA still speaks for its peer.
    pub fn is_current(&self) -> bool {
        self.superseded_at.is_none()
    }

    /// A message for this SA arrived.
    pub fn handle(
        &mut self,
        io: &mut Io<'_>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        header: &Header,
        data: &[u8],
    ) -> Vec<Effect> {
        // The peer's messages carry the other I flag than ours.
        if header.flags.initiator() == self.core.original_initiator {
            tracing::debug!("message from {remote} with our own I flag dropped");
            return Vec::new();
        }
        if header.flags.response() {
            self.handle_response(io, header, data)
        } else {
            self.handle_request(io, local, remote, header, data)
        }
    }

    fn handle_request(
        &mut self,
        io: &mut Io<'_>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        header: &Header,
        data: &[u8],
    ) -> Vec<Effect> {
        match self.responses.classify(header.message_id) {
            RequestClass::Ignore => {
                tracing::debug!(
                    "request {} from {remote} outside the window (expecting {}) ignored",
                    header.message_id,
                    self.responses.expected()
                );
                return Vec::new();
            }
            RequestClass::Retransmitted => {
                // Only an authentic retransmission is answered: it must open.
                if self.core.open(data).is_ok()
                    && let Some(cached) = self.responses.cached()
                {
                    tracing::debug!("retransmitted request {} answered again", header.message_id);
                    io.send(local, remote, cached.to_vec());
                }
                return Vec::new();
            }
            RequestClass::New => {}
        }
        if self.closing_until.is_some() {
            tracing::debug!("request on a deleted IKE SA ignored");
            return Vec::new();
        }
        let (payloads, effects) = match self.core.open(data) {
            Ok(message) => {
                self.last_rx = io.now.mono;
                match header.exchange_type {
                    ExchangeType::INFORMATIONAL => {
                        self.respond_informational(io, local, remote, &message.inner)
                    }
                    ExchangeType::CREATE_CHILD_SA => self.respond_create_child(io, &message.inner),
                    other => {
                        tracing::debug!("{other} request on an established IKE SA refused");
                        (
                            vec![Payload::Notify(
                                IkeError::syntax("unexpected exchange").notify(),
                            )],
                            Vec::new(),
                        )
                    }
                }
            }
            Err(e) => match IkeError::from_sk(&e) {
                Some(error) => {
                    self.last_rx = io.now.mono;
                    tracing::info!("malformed request from {}: {error}", self.peer.name);
                    (vec![Payload::Notify(error.notify())], Vec::new())
                }
                None => {
                    tracing::debug!("request from {remote} dropped: {e}");
                    return Vec::new();
                }
            },
        };
        let response_header = self
            .core
            .header(header.exchange_type, true, header.message_id);
        match self.core.seal(response_header, payloads) {
            Ok(response) => {
                io.send(local, remote, response.clone());
                self.responses.answered(header.message_id, response);
            }
            Err(e) => tracing::warn!("cannot build a response: {e}"),
        }
        if !effects.iter().any(|e| matches!(e, Effect::Remove)) {
            self.pump(io);
        }
        effects
    }

    fn respond_informational(
        &mut self,
        io: &mut Io<'_>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        inner: &[Payload],
    ) -> (Vec<Payload>, Vec<Effect>) {
        let mut response = Vec::new();
        let mut effects = Vec::new();
        for notify in wire::notifies(inner) {
            if notify.notify_type.0 < 16384 {
                tracing::warn!(
                    "{} reports {} in an INFORMATIONAL",
                    self.peer.name,
                    notify.notify_type
                );
            }
        }
        if self.mobike {
            response.extend(self.mobike_informational(io, local, remote, inner));
        } else if has_notify(inner, NotifyType::UPDATE_SA_ADDRESSES) {
            tracing::info!(
                "UPDATE_SA_ADDRESSES from {} without MOBIKE ignored",
                self.peer.name
            );
        }
        let mut deleted_in = Vec::new();
        for payload in inner {
            let Payload::Delete(delete) = payload else {
                continue;
            };
            match delete.protocol {
                ProtocolId::IKE => {
                    tracing::debug!("{} deletes the IKE SA", self.peer.name);
                    if self.superseded_at.is_none()
                        && let Some(collision) = self.collision.take()
                    {
                        // The peer won a rekey collision and deletes the old SA before our
                        // own rekey's answer came: its new SA takes the children.
                        effects.push(Effect::MoveChildren {
                            to: collision.new_spi,
                        });
                        self.superseded_at = Some(io.now.mono);
                    } else {
                        self.kill(io, "deleted by the peer".into());
                    }
                    self.closing_until = Some(
                        io.now.mono
                            + total_patience(io.cfg.retransmit_base, io.cfg.retransmit_tries),
                    );
                    return (response, effects);
                }
                ProtocolId::ESP => {
                    for spi in delete.spis_u32() {
                        if let Some(i) = self.children.iter().position(|c| c.spi_out == spi) {
                            let child = self.children.remove(i);
                            child.uninstall(io);
                            deleted_in.push(child.spi_in);
                            if let Some(theirs) = &child.peer_rekey {
                                // Our colliding rekey of it is moot: the peer's pair stands.
                                io.output(Output::Rekeyed {
                                    peer: self.peer.id,
                                    old_spi_in: Spi(child.spi_in),
                                    new_spi_in: Spi(theirs.successor),
                                });
                            }
                        } else {
                            tracing::debug!("DELETE for unknown ESP SPI {spi:08x} ignored");
                        }
                    }
                }
                other => tracing::debug!("DELETE for protocol {other} ignored"),
            }
        }
        if !deleted_in.is_empty() {
            response.push(Payload::Delete(Delete::esp(&deleted_in)));
            if self.children.is_empty() && self.superseded_at.is_none() {
                // A tunnel without CHILD SA is useless: close the IKE SA (the client
                // reconnects).
                tracing::info!("{} deleted the last CHILD SA", self.peer.name);
                self.queue.push_back(Task::DeleteIke);
            }
        }
        (response, effects)
    }

    /// The MOBIKE part of an INFORMATIONAL request (RFC 4555): UPDATE_SA_ADDRESSES (with
    /// NO_NATS_ALLOWED checked), NAT detection answered with ours, COOKIE2 echoed.
    fn mobike_informational(
        &mut self,
        io: &mut Io<'_>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        inner: &[Payload],
    ) -> Vec<Payload> {
        let mut response = Vec::new();
        let natd = wire::notifies(inner).any(|n| {
            matches!(
                n.notify_type,
                NotifyType::NAT_DETECTION_SOURCE_IP | NotifyType::NAT_DETECTION_DESTINATION_IP
            )
        });
        if has_notify(inner, NotifyType::UPDATE_SA_ADDRESSES) {
            if let Some(no_nats) =
                wire::notifies(inner).find(|n| n.notify_type == NotifyType::NO_NATS_ALLOWED)
                && !no_nats_matches(&no_nats.data, remote, local)
            {
                // RFC 4555 3.9: the peer forbids NATs and the addresses changed on the way.
                tracing::info!(
                    "UPDATE_SA_ADDRESSES from {} at {remote} refused: NO_NATS_ALLOWED names other addresses than the packet came with",
                    self.peer.name
                );
                return vec![Payload::Notify(Notify::new(
                    NotifyType::UNEXPECTED_NAT_DETECTED,
                    Vec::new(),
                ))];
            }
            let nat = natd.then(|| {
                let (nat_remote, nat_local) =
                    super::nat_detected(inner, self.core.spi_i, self.core.spi_r, remote, local);
                (nat_local, nat_remote)
            });
            self.update_addresses(io, local, remote, nat);
        }
        if natd {
            response.extend(natd_payloads(
                self.core.spi_i,
                self.core.spi_r,
                local,
                remote,
            ));
        }
        if let Some(cookie2) = wire::notifies(inner).find(|n| n.notify_type == NotifyType::COOKIE2)
        {
            response.push(Payload::Notify(Notify::new(
                NotifyType::COOKIE2,
                cookie2.data.clone(),
            )));
        }
        response
    }

    /// UPDATE_SA_ADDRESSES (RFC 4555 3.5) from an authenticated, fresh request: the IKE SA
    /// takes the addresses the request came with at once (its response goes there anyway); the
    /// CHILD SAs follow once the return-routability check to the new address is answered.
    /// `nat`: (in front of us, in front of the peer) from the request's NAT detection.
    fn update_addresses(
        &mut self,
        io: &mut Io<'_>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        nat: Option<(bool, bool)>,
    ) {
        let (nat_local, nat_remote) = nat.unwrap_or((self.core.nat_local, self.core.nat_remote));
        let from = self.core.remote;
        if (local, remote, nat_local, nat_remote)
            != (
                self.core.local,
                self.core.remote,
                self.core.nat_local,
                self.core.nat_remote,
            )
        {
            tracing::info!(
                "{} moves (MOBIKE): {from} -> {remote}{}; IKE follows now, the CHILD SAs after the return-routability check",
                self.peer.name,
                if nat_local || nat_remote { ", NAT" } else { "" }
            );
            self.core.local = local;
            self.core.remote = remote;
            self.core.nat_local = nat_local;
            self.core.nat_remote = nat_remote;
            self.retarget();
        }
        if self.superseded_at.is_some() || self.children.is_empty() {
            return;
        }
        if self.core.esp_endpoint(io.cfg) == self.child_endpoint {
            // Back where the CHILD SAs are (or never left): nothing to check.
            self.pending_move = None;
            return;
        }
        self.pending_move.get_or_insert(PendingMove {
            since: io.now.mono,
            from,
        });
        let checking = self.queue.contains(&Task::ReturnRoutability)
            || matches!(
                &self.outstanding,
                Some(Outstanding {
                    pending: Pending::ReturnRoutability { target, .. },
                    ..
                }) if *target == self.core.remote
            );
        if !checking {
            // Before anything else queued: the CHILD SAs send to an address the peer left.
            self.queue.push_front(Task::ReturnRoutability);
        }
    }

    /// The return-routability answer came (its COOKIE2 checked): the CHILD SAs move to the
    /// IKE SA's addresses.
    fn complete_move(&mut self, io: &mut Io<'_>) {
        let Some(pending) = self.pending_move.take() else {
            return;
        };
        let endpoint = self.core.esp_endpoint(io.cfg);
        let took = io.now.mono.saturating_duration_since(pending.since);
        if endpoint == self.child_endpoint {
            tracing::debug!(
                "{}: return routability of {} confirmed; the CHILD SAs were there already",
                self.peer.name,
                self.core.remote
            );
            return;
        }
        let old = self.child_endpoint;
        tracing::info!(
            "{} moved (MOBIKE): {} -> {}, CHILD SAs {old} => {endpoint}, switched {} ms after UPDATE_SA_ADDRESSES (return routability checked)",
            self.peer.name,
            pending.from,
            self.core.remote,
            took.as_millis()
        );
        self.set_child_endpoint(io, endpoint);
        io.forwarder(hometun_control::Request::UpdateEndpoint {
            peer: self.peer.id,
            endpoint,
        });
    }

    /// The CHILD SAs' endpoint changed: count the move.
    fn set_child_endpoint(&mut self, io: &mut Io<'_>, endpoint: hometun_control::Endpoint) {
        if endpoint != self.child_endpoint {
            self.child_endpoint = endpoint;
            self.moves += 1;
            self.last_moved = Some(io.now.mono);
        }
    }

    /// Our request in flight follows the IKE SA's addresses (its retransmissions go to where
    /// the peer is now, RFC 4555 3.5).
    fn retarget(&mut self) {
        if let Some(o) = &mut self.outstanding {
            o.retransmission.local = self.core.local;
            o.retransmission.remote = self.core.remote;
        }
    }

    fn respond_create_child(
        &mut self,
        io: &mut Io<'_>,
        inner: &[Payload],
    ) -> (Vec<Payload>, Vec<Effect>) {
        let mut effects = Vec::new();
        let result = (|| {
            if self.superseded_at.is_some() {
                return Err(IkeError::TemporaryFailure("this IKE SA is being replaced"));
            }
            let sa = inner.iter().find_map(|p| match p {
                Payload::Sa(sa) => Some(sa),
                _ => None,
            });
            let Some(sa) = sa else {
                return Err(IkeError::syntax("CREATE_CHILD_SA without SA payload"));
            };
            let rekey = wire::notifies(inner).find(|n| n.notify_type == NotifyType::REKEY_SA);
            let ike = sa
                .proposals
                .first()
                .is_some_and(|p| p.protocol == ProtocolId::IKE);
            if ike {
                self.respond_ike_rekey(io, sa, inner, &mut effects)
            } else if let Some(rekey) = rekey {
                self.respond_child_rekey(io, rekey, sa, inner)
            } else {
                Err(IkeError::NoAdditionalSas)
            }
        })();
        match result {
            Ok(payloads) => (payloads, effects),
            Err(error) => {
                tracing::info!("CREATE_CHILD_SA from {} refused: {error}", self.peer.name);
                (vec![Payload::Notify(error.notify())], effects)
            }
        }
    }

    fn respond_child_rekey(
        &mut self,
        io: &mut Io<'_>,
        rekey: &Notify,
        sa: &wire::SecurityAssociation,
        inner: &[Payload],
    ) -> Result<Vec<Payload>, IkeError> {
        if matches!(
            self.outstanding,
            Some(Outstanding {
                pending: Pending::IkeRekey(_),
                ..
            })
        ) {
            return Err(IkeError::TemporaryFailure("the IKE SA is being rekeyed"));
        }
        let spi = <[u8; 4]>::try_from(rekey.spi.as_slice())
            .map(u32::from_be_bytes)
            .map_err(|_| IkeError::syntax("REKEY_SA without a 4-byte SPI"))?;
        let index = self
            .children
            .iter()
            .position(|c| c.spi_out == spi)
            .ok_or(IkeError::ChildSaNotFound(spi))?;
        if self.children[index].state == ChildState::Deleting {
            return Err(IkeError::TemporaryFailure("the CHILD SA is being deleted"));
        }
        let (ni, ke, tsi, tsr) = child_request_payloads(inner)?;
        if has_notify(inner, NotifyType::USE_TRANSPORT_MODE) {
            return Err(IkeError::NoProposalChosen(
                "transport mode requested; only tunnel mode is offered".into(),
            ));
        }
        let groups = ke.map_or(EspGroups::None, |k| EspGroups::Ke(k.group));
        let (chosen, peer_spi, mut answer) =
            EspProposal::select(&io.cfg.esp_proposals, sa, groups, 0)?;
        if let Some(ke) = ke
            && let Some(group) = chosen.group
            && group.to_wire() != ke.group
        {
            return Err(IkeError::InvalidKe {
                wanted: group,
                got: ke.group.0,
            });
        }
        let their_ts = narrow(tsi, &self.peer_allowed);
        let our_ts = narrow(tsr, &self.local_allowed);
        if their_ts.is_empty() || our_ts.is_empty() {
            return Err(IkeError::TsUnacceptable(format!(
                "{} asks for {} === {}",
                self.peer.name,
                super::child::join(&prefixes_of(tsi)),
                super::child::join(&prefixes_of(tsr))
            )));
        }
        let our_ke = chosen.group.map(|g| io.key_exchange(g));
        let g_ir = match (&our_ke, ke) {
            (Some(ours), Some(theirs)) => Some(ours.shared_secret(&theirs.data)?),
            _ => None,
        };
        let nr = io.nonce();
        let keys = self.core.keys.child_sa_keys(
            chosen.encryption,
            g_ir.as_ref().map(|g| g.as_slice()),
            ni,
            &nr,
        )?;
        let spi_in = io.spis.new_esp(io.rng);
        answer.spi = spi_in.to_be_bytes().to_vec();
        let new = Child::new(spi_in, peer_spi, chosen, our_ts.clone(), their_ts.clone());
        new.install(
            io,
            self.peer.id,
            &self.core,
            keys,
            ExchangeRole::Responder,
            self.child_endpoint,
        );

        let old_spi_in = self.children[index].spi_in;
        let record = RekeyRecord {
            successor: spi_in,
            ni: ni.to_vec(),
            nr: nr.clone(),
        };
        let mut redundant = None;
        {
            let old = &mut self.children[index];
            match old.state.clone() {
                ChildState::Rekeying => {
                    // Collision with our own rekey in flight: decided when its answer comes.
                    tracing::info!("CHILD SA {old_spi_in:08x}: rekey collision");
                    old.peer_rekey = Some(record);
                }
                ChildState::Superseded { successor, .. } if old.our_rekey.is_some() => {
                    // Our rekey of this pair already completed: a late collision.
                    let mine = old.our_rekey.clone().expect("checked by the guard");
                    if lowest_nonce_in((&mine.ni, &mine.nr), (ni, &nr)) {
                        // Our pair is the redundant one: we delete it, the peer deletes the
                        // old one.
                        old.state = ChildState::AwaitingPeerDelete { successor: spi_in };
                        redundant = Some(successor);
                    } else {
                        tracing::info!(
                            "CHILD SA {old_spi_in:08x}: late rekey collision, ours wins"
                        );
                    }
                }
                _ => {
                    old.state = ChildState::AwaitingPeerDelete { successor: spi_in };
                    io.output(Output::Rekeyed {
                        peer: self.peer.id,
                        old_spi_in: Spi(old_spi_in),
                        new_spi_in: Spi(spi_in),
                    });
                }
            }
        }
        if let Some(ours) = redundant {
            tracing::info!("CHILD SA {old_spi_in:08x}: late rekey collision, ours is redundant");
            io.output(Output::Rekeyed {
                peer: self.peer.id,
                old_spi_in: Spi(old_spi_in),
                new_spi_in: Spi(spi_in),
            });
            self.delete_child_soon(ours);
        }
        self.children.push(new);

        let mut payloads = vec![
            Payload::Sa(wire::SecurityAssociation::new(vec![answer])),
            Payload::Nonce(wire::Nonce::new(nr)),
        ];
        if let Some(k) = our_ke {
            payloads.push(Payload::Ke(wire::KeyExchange::new(
                k.group().to_wire(),
                k.public_ke_data().to_vec(),
            )));
        }
        payloads.push(Payload::TsI(to_payload(&their_ts)));
        payloads.push(Payload::TsR(to_payload(&our_ts)));
        Ok(payloads)
    }

    fn respond_ike_rekey(
        &mut self,
        io: &mut Io<'_>,
        sa: &wire::SecurityAssociation,
        inner: &[Payload],
        effects: &mut Vec<Effect>,
    ) -> Result<Vec<Payload>, IkeError> {
        let ours_in_flight = match &self.outstanding {
            Some(Outstanding {
                pending: Pending::IkeRekey(_),
                ..
            }) => true,
            Some(_) => {
                return Err(IkeError::TemporaryFailure(
                    "another exchange is in progress",
                ));
            }
            None => false,
        };
        if self.collision.is_some() {
            return Err(IkeError::TemporaryFailure("the IKE SA is being rekeyed"));
        }
        let (ni, ke) = ike_rekey_payloads(inner)?;
        let (chosen, their_spi, mut answer) =
            IkeProposal::select(&io.cfg.ike_proposals, sa, Some(ke.group), &[])?;
        if chosen.group.to_wire() != ke.group {
            return Err(IkeError::InvalidKe {
                wanted: chosen.group,
                got: ke.group.0,
            });
        }
        let their_spi = <[u8; 8]>::try_from(their_spi.as_slice())
            .map(u64::from_be_bytes)
            .ok()
            .filter(|&s| s != 0)
            .ok_or_else(|| IkeError::syntax("IKE SA rekey without an 8-byte SPI"))?;
        let our_ke = io.key_exchange(chosen.group);
        let g_ir = our_ke.shared_secret(&ke.data)?;
        let nr = io.nonce();
        let new_spi = io.spis.new_ike(io.rng);
        let keys = match self
            .core
            .keys
            .rekey(chosen.encryption, &g_ir, ni, &nr, their_spi, new_spi)
        {
            Ok(keys) => keys,
            Err(e) => {
                io.spis.release_ike(new_spi);
                return Err(e.into());
            }
        };
        answer.spi = new_spi.to_be_bytes().to_vec();
        let core = match IkeCore::new(
            keys,
            chosen,
            their_spi,
            new_spi,
            false,
            self.core.addresses(),
        ) {
            Ok(core) => core,
            Err(e) => {
                io.spis.release_ike(new_spi);
                return Err(e.into());
            }
        };
        let mut new = self.successor(io, core);
        if ours_in_flight {
            tracing::info!("IKE SA {}: rekey collision", hex_spi(self.core.our_spi()));
            self.collision = Some(IkeCollision {
                new_spi,
                ni: ni.to_vec(),
                nr: nr.clone(),
            });
            new.superseded_at = Some(io.now.mono);
        } else {
            tracing::info!(
                "IKE SA {} rekeyed by {} to {}",
                hex_spi(self.core.our_spi()),
                self.peer.name,
                hex_spi(new_spi)
            );
            let (children, tasks) = self.take_children();
            new.adopt_children(children, tasks);
            self.superseded_at = Some(io.now.mono);
        }
        effects.push(Effect::Insert(Box::new(new)));
        Ok(vec![
            Payload::Sa(wire::SecurityAssociation::new(vec![answer])),
            Payload::Nonce(wire::Nonce::new(nr)),
            Payload::Ke(wire::KeyExchange::new(
                our_ke.group().to_wire(),
                our_ke.public_ke_data().to_vec(),
            )),
        ])
    }

    /// The IKE SA that replaces this one after a rekey: same peer, addresses and policy, new
    /// keys, message IDs from 0, no children yet.
    fn successor(&self, io: &mut Io<'_>, core: IkeCore) -> Established {
        let mut new = Established::new(
            io,
            EstablishedParams {
                core,
                peer: self.peer.clone(),
                local_allowed: self.local_allowed.clone(),
                peer_allowed: self.peer_allowed.clone(),
                children: Vec::new(),
                next_request_id: 0,
                expected_request_id: 0,
                cached_response: None,
                mobike: self.mobike,
                client: self.client,
            },
        );
        new.established_at = self.established_at;
        new.last_moved = self.last_moved;
        new.moves = self.moves;
        new.child_endpoint = self.child_endpoint;
        new.pending_move = self.pending_move;
        new
    }

    /// Gives up the CHILD SAs and their queued work (to a rekeyed IKE SA).
    pub fn take_children(&mut self) -> (Vec<Child>, Vec<Task>) {
        let children = std::mem::take(&mut self.children);
        let mut tasks: Vec<Task> = Vec::new();
        self.queue.retain(|t| {
            if t.is_child_task() {
                tasks.push(t.clone());
                false
            } else {
                true
            }
        });
        self.deferred.retain(|(_, t)| {
            if t.is_child_task() {
                tasks.push(t.clone());
                false
            } else {
                true
            }
        });
        (children, tasks)
    }

    /// Takes over CHILD SAs and their queued work: this SA now speaks for the peer.
    pub fn adopt_children(&mut self, children: Vec<Child>, tasks: Vec<Task>) {
        self.children.extend(children);
        self.queue.extend(tasks);
        self.superseded_at = None;
    }

    fn handle_response(&mut self, io: &mut Io<'_>, header: &Header, data: &[u8]) -> Vec<Effect> {
        if self.closing_until.is_some() {
            return Vec::new();
        }
        let Some(outstanding) = &self.outstanding else {
            tracing::debug!("response {} without a request ignored", header.message_id);
            return Vec::new();
        };
        if outstanding.message_id != header.message_id {
            tracing::debug!("response {} does not match our request", header.message_id);
            return Vec::new();
        }
        let inner = match self.core.open(data) {
            Ok(message) => message.inner,
            Err(e) => {
                tracing::debug!("response {} dropped: {e}", header.message_id);
                return Vec::new();
            }
        };
        self.last_rx = io.now.mono;
        let Some(outstanding) = self.outstanding.take() else {
            return Vec::new();
        };
        let effects = match outstanding.pending {
            Pending::ChildRekey(request) => self.child_rekey_answered(io, request, &inner),
            Pending::IkeRekey(request) => self.ike_rekey_answered(io, request, &inner),
            Pending::DeleteChild(spi_in) => {
                if let Some(i) = self.children.iter().position(|c| c.spi_in == spi_in) {
                    // The peer removed its side; packets it sent before still arrive for a
                    // moment.
                    let child = self.children.remove(i);
                    tracing::debug!(
                        "CHILD SA {spi_in:08x} deleted by both; its inbound SA stays {DELETED_INBOUND_LINGER:?} for packets in flight"
                    );
                    self.retired
                        .push((child, io.now.mono + DELETED_INBOUND_LINGER));
                }
                Vec::new()
            }
            Pending::DeleteIke => {
                if self.superseded_at.is_none() {
                    self.kill(io, "deleted".into());
                }
                vec![Effect::Remove]
            }
            Pending::Liveness => Vec::new(),
            Pending::ReturnRoutability { cookie2, target } => {
                self.return_routability_answered(io, &cookie2, target, &inner);
                Vec::new()
            }
        };
        if !effects.iter().any(|e| matches!(e, Effect::Remove)) {
            self.pump(io);
        }
        effects
    }

    fn return_routability_answered(
        &mut self,
        io: &mut Io<'_>,
        cookie2: &[u8],
        target: SocketAddrV4,
        inner: &[Payload],
    ) {
        let echoed = wire::notifies(inner)
            .find(|n| n.notify_type == NotifyType::COOKIE2)
            .is_some_and(|n| n.data == cookie2);
        if !echoed {
            // RFC 4555 4.6 (COOKIE2): a peer that does not echo it gets its IKE SA closed.
            tracing::warn!(
                "{}: the return-routability answer lacks our COOKIE2; closing the IKE SA",
                self.peer.name
            );
            self.pending_move = None;
            self.queue.push_front(Task::DeleteIke);
            return;
        }
        if target != self.core.remote {
            // The peer moved again while this check ran: check where it is now.
            tracing::debug!(
                "{}: {target} answered, but the peer is at {} now",
                self.peer.name,
                self.core.remote
            );
            if self.pending_move.is_some() && !self.queue.contains(&Task::ReturnRoutability) {
                self.queue.push_front(Task::ReturnRoutability);
            }
            return;
        }
        self.complete_move(io);
    }

    fn child_rekey_answered(
        &mut self,
        io: &mut Io<'_>,
        request: ChildRekeyRequested,
        inner: &[Payload],
    ) -> Vec<Effect> {
        let old_index = self
            .children
            .iter()
            .position(|c| c.spi_in == request.old_spi_in);
        if let Some(error) = error_notify(inner) {
            io.spis.release_esp(request.new_spi_in);
            self.child_rekey_refused(io, &request, old_index, error.clone());
            return Vec::new();
        }
        let accepted = (|| {
            let (sa, nr, ke, tsi, tsr) = child_response_payloads(inner)?;
            let (chosen, spi_out) = EspProposal::accept(
                &io.cfg.esp_proposals,
                sa,
                request.ke.as_ref().map(KeyExchange::group),
            )?;
            let g_ir = match (&request.ke, ke) {
                (Some(ours), Some(theirs)) if theirs.group == ours.group().to_wire() => {
                    Some(ours.shared_secret(&theirs.data)?)
                }
                (None, None) => None,
                _ => return Err(IkeError::syntax("KE payload does not match the request")),
            };
            let local_ts = prefixes_of(tsi);
            let remote_ts = prefixes_of(tsr);
            if local_ts.is_empty() || remote_ts.is_empty() {
                return Err(IkeError::TsUnacceptable("narrowed to nothing".into()));
            }
            let keys = self.core.keys.child_sa_keys(
                chosen.encryption,
                g_ir.as_ref().map(|g| g.as_slice()),
                &request.ni,
                &nr.data,
            )?;
            Ok((
                Child::new(request.new_spi_in, spi_out, chosen, local_ts, remote_ts),
                keys,
                nr.data.clone(),
            ))
        })();
        let (new, keys, nr) = match accepted {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("CHILD SA rekey with {} failed: {e}", self.peer.name);
                io.spis.release_esp(request.new_spi_in);
                if let Some(i) = old_index {
                    self.children[i].state = ChildState::Active;
                }
                return Vec::new();
            }
        };
        new.install(
            io,
            self.peer.id,
            &self.core,
            keys,
            ExchangeRole::Initiator,
            self.child_endpoint,
        );
        let new_spi = new.spi_in;
        self.children.push(new);
        let Some(i) = old_index else {
            // The peer deleted the old pair meanwhile; the new one carries on.
            return Vec::new();
        };
        let record = RekeyRecord {
            successor: new_spi,
            ni: request.ni.clone(),
            nr,
        };
        let delete_at = io.now.mono + REKEY_DELETE_GRACE;
        let old = &mut self.children[i];
        let old_spi = old.spi_in;
        let survivor = match old.peer_rekey.take() {
            Some(theirs) if lowest_nonce_in((&record.ni, &record.nr), (&theirs.ni, &theirs.nr)) => {
                // Collision, and our pair holds the lowest nonce: we delete ours; the peer
                // deletes the old pair.
                tracing::info!("CHILD SA {old_spi:08x}: rekey collision, ours is redundant");
                old.state = ChildState::AwaitingPeerDelete {
                    successor: theirs.successor,
                };
                let winner = theirs.successor;
                self.delete_child_soon(new_spi);
                winner
            }
            theirs => {
                if theirs.is_some() {
                    tracing::info!("CHILD SA {old_spi:08x}: rekey collision, ours wins");
                }
                old.state = ChildState::Superseded {
                    successor: new_spi,
                    delete_at,
                };
                old.our_rekey = Some(record);
                new_spi
            }
        };
        io.output(Output::Rekeyed {
            peer: self.peer.id,
            old_spi_in: Spi(old_spi),
            new_spi_in: Spi(survivor),
        });
        self.check_superseded(io);
        Vec::new()
    }

    fn child_rekey_refused(
        &mut self,
        io: &mut Io<'_>,
        request: &ChildRekeyRequested,
        old_index: Option<usize>,
        error: Notify,
    ) {
        let Some(i) = old_index else {
            return;
        };
        let old = &mut self.children[i];
        if let Some(theirs) = old.peer_rekey.take() {
            // The peer's colliding rekey stands.
            old.state = ChildState::AwaitingPeerDelete {
                successor: theirs.successor,
            };
            io.output(Output::Rekeyed {
                peer: self.peer.id,
                old_spi_in: Spi(old.spi_in),
                new_spi_in: Spi(theirs.successor),
            });
            return;
        }
        let spi_in = old.spi_in;
        match error.notify_type {
            NotifyType::TEMPORARY_FAILURE => {
                tracing::info!("CHILD SA {spi_in:08x} rekey postponed by the peer");
                let group = request.ke.as_ref().map(KeyExchange::group);
                self.deferred.push((
                    io.now.mono + io.cfg.retransmit_base * 2,
                    Task::RekeyChild { spi_in, group },
                ));
            }
            NotifyType::INVALID_KE_PAYLOAD => {
                let wanted = <[u8; 2]>::try_from(error.data.as_slice())
                    .ok()
                    .map(u16::from_be_bytes)
                    .and_then(DhGroup::from_id);
                let tried = request.ke.as_ref().map(KeyExchange::group);
                let ours = io
                    .cfg
                    .esp_proposals
                    .iter()
                    .any(|p| wanted.is_some_and(|w| p.groups.contains(&w)));
                match wanted {
                    Some(g) if ours && Some(g) != tried => {
                        tracing::info!("peer asks for PFS group {g}; rekeying again");
                        self.queue.push_front(Task::RekeyChild {
                            spi_in,
                            group: Some(g),
                        });
                    }
                    _ => {
                        tracing::warn!("CHILD SA rekey: peer wants a group we do not offer");
                        old.state = ChildState::Active;
                    }
                }
            }
            NotifyType::CHILD_SA_NOT_FOUND => {
                tracing::info!("peer does not know CHILD SA {spi_in:08x}; deleting it");
                let child = self.children.remove(i);
                child.uninstall(io);
                if self.children.is_empty() {
                    self.queue.push_back(Task::DeleteIke);
                }
            }
            other => {
                tracing::warn!(
                    "CHILD SA {spi_in:08x} rekey refused by {}: {other}",
                    self.peer.name
                );
                old.state = ChildState::Active;
            }
        }
    }

    fn ike_rekey_answered(
        &mut self,
        io: &mut Io<'_>,
        request: IkeRekeyRequested,
        inner: &[Payload],
    ) -> Vec<Effect> {
        if let Some(error) = error_notify(inner) {
            io.spis.release_ike(request.new_spi);
            if let Some(collision) = self.collision.take() {
                // The peer's colliding rekey stands.
                self.superseded_at = Some(io.now.mono);
                return vec![Effect::MoveChildren {
                    to: collision.new_spi,
                }];
            }
            match error.notify_type {
                NotifyType::TEMPORARY_FAILURE => self.deferred.push((
                    io.now.mono + io.cfg.retransmit_base * 2,
                    Task::RekeyIke {
                        group: Some(request.ke.group()),
                    },
                )),
                NotifyType::INVALID_KE_PAYLOAD => {
                    let wanted = <[u8; 2]>::try_from(error.data.as_slice())
                        .ok()
                        .map(u16::from_be_bytes)
                        .and_then(DhGroup::from_id);
                    match wanted {
                        Some(g)
                            if g != request.ke.group()
                                && IkeProposal::all_groups(&io.cfg.ike_proposals).contains(&g) =>
                        {
                            self.queue.push_front(Task::RekeyIke { group: Some(g) });
                        }
                        _ => tracing::warn!("IKE SA rekey: peer wants a group we do not offer"),
                    }
                }
                other => tracing::warn!("IKE SA rekey refused by {}: {other}", self.peer.name),
            }
            return Vec::new();
        }
        let accepted = (|| {
            let (sa, nr, ke) = ike_rekey_response_payloads(inner)?;
            let (chosen, their_spi) = IkeProposal::accept(&io.cfg.ike_proposals, sa)?;
            if chosen.group != request.ke.group() || ke.group != request.ke.group().to_wire() {
                return Err(IkeError::syntax("IKE SA rekey answered with another group"));
            }
            let their_spi = <[u8; 8]>::try_from(their_spi.as_slice())
                .map(u64::from_be_bytes)
                .ok()
                .filter(|&s| s != 0)
                .ok_or_else(|| IkeError::syntax("IKE SA rekey answer without an 8-byte SPI"))?;
            let g_ir = request.ke.shared_secret(&ke.data)?;
            let keys = self.core.keys.rekey(
                chosen.encryption,
                &g_ir,
                &request.ni,
                &nr.data,
                request.new_spi,
                their_spi,
            )?;
            let core = IkeCore::new(
                keys,
                chosen,
                request.new_spi,
                their_spi,
                true,
                self.core.addresses(),
            )?;
            Ok((core, nr.data.clone()))
        })();
        let (core, nr) = match accepted {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("IKE SA rekey with {} failed: {e}", self.peer.name);
                io.spis.release_ike(request.new_spi);
                return Vec::new();
            }
        };
        let mut new = self.successor(io, core);
        let now = io.now.mono;
        let mut effects = Vec::new();
        match self.collision.take() {
            Some(theirs) if lowest_nonce_in((&request.ni, &nr), (&theirs.ni, &theirs.nr)) => {
                // Ours is redundant: we delete it; the children go to the peer's new SA,
                // and the peer deletes the old one.
                tracing::info!("IKE SA rekey collision: ours is redundant");
                new.superseded_at = Some(now);
                new.queue.push_back(Task::DeleteIke);
                self.superseded_at = Some(now);
                effects.push(Effect::MoveChildren { to: theirs.new_spi });
            }
            theirs => {
                if theirs.is_some() {
                    tracing::info!("IKE SA rekey collision: ours wins");
                }
                tracing::info!(
                    "IKE SA {} rekeyed to {}",
                    hex_spi(self.core.our_spi()),
                    hex_spi(request.new_spi)
                );
                let (children, tasks) = self.take_children();
                new.adopt_children(children, tasks);
                self.superseded_at = Some(now);
                self.queue.push_back(Task::DeleteIke);
            }
        }
        effects.insert(0, Effect::Insert(Box::new(new)));
        effects
    }

    /// Queues a DELETE for one of our pairs, marking it.
    fn delete_child_soon(&mut self, spi_in: u32) {
        if let Some(child) = self.children.iter_mut().find(|c| c.spi_in == spi_in)
            && child.state != ChildState::Deleting
        {
            child.state = ChildState::Deleting;
            self.queue.push_back(Task::DeleteChild(spi_in));
        }
    }

    /// Deletes superseded pairs whose successor carried traffic. A successor that is gone or
    /// no longer active was itself rekeyed (by either side): traffic has moved past it too.
    fn check_superseded(&mut self, io: &mut Io<'_>) {
        let now = io.now.mono;
        let traffic_moved_to =
            |successor: u32| match self.children.iter().find(|s| s.spi_in == successor) {
                None => true,
                Some(s) => s.carried_traffic || s.state != ChildState::Active,
            };
        let ready: Vec<u32> = self
            .children
            .iter()
            .filter(|c| match c.state {
                ChildState::Superseded {
                    successor,
                    delete_at,
                } => now >= delete_at || traffic_moved_to(successor),
                _ => false,
            })
            .map(|c| c.spi_in)
            .collect();
        for spi in ready {
            self.delete_child_soon(spi);
        }
    }

    /// Queues work and sends it if the window is free.
    pub fn queue_task(&mut self, io: &mut Io<'_>, task: Task, urgent: bool) {
        if urgent {
            self.queue.push_front(task);
        } else {
            self.queue.push_back(task);
        }
        self.pump(io);
    }

    /// Sends the next queued request if none is in flight.
    pub fn pump(&mut self, io: &mut Io<'_>) {
        if self.closing_until.is_some() {
            return;
        }
        while self.outstanding.is_none() {
            let Some(task) = self.queue.pop_front() else {
                return;
            };
            let Some((exchange, payloads, pending)) = self.prepare(io, task) else {
                continue;
            };
            let message_id = self.next_request_id;
            let header = self.core.header(exchange, false, message_id);
            match self.core.seal(header, payloads) {
                Ok(request) => {
                    self.next_request_id = self.next_request_id.wrapping_add(1);
                    let retransmission = Retransmission::new(
                        io.now.mono,
                        io.cfg.retransmit_base,
                        request.clone(),
                        self.core.local,
                        self.core.remote,
                    );
                    io.send(self.core.local, self.core.remote, request);
                    self.outstanding = Some(Outstanding {
                        message_id,
                        retransmission,
                        pending,
                    });
                }
                Err(e) => tracing::warn!("cannot build a request: {e}"),
            }
        }
    }

    fn prepare(
        &mut self,
        io: &mut Io<'_>,
        task: Task,
    ) -> Option<(ExchangeType, Vec<Payload>, Pending)> {
        match task {
            Task::RekeyChild { spi_in, group } => {
                let child = self.children.iter_mut().find(|c| c.spi_in == spi_in)?;
                if !matches!(child.state, ChildState::Active | ChildState::Rekeying) {
                    return None;
                }
                child.state = ChildState::Rekeying;
                let group = group.or_else(|| {
                    io.cfg
                        .esp_proposals
                        .first()
                        .and_then(|p| p.groups.first().copied())
                });
                let ke = group.map(|g| io.key_exchange(g));
                let new_spi_in = io.spis.new_esp(io.rng);
                let ni = io.nonce();
                let mut payloads = vec![
                    Payload::Notify(Notify::with_spi(
                        ProtocolId::ESP,
                        spi_in.to_be_bytes().to_vec(),
                        NotifyType::REKEY_SA,
                        Vec::new(),
                    )),
                    Payload::Sa(EspProposal::sa_payload(
                        &io.cfg.esp_proposals,
                        new_spi_in,
                        ke.is_some(),
                    )),
                    Payload::Nonce(wire::Nonce::new(ni.clone())),
                ];
                if let Some(k) = &ke {
                    payloads.push(Payload::Ke(wire::KeyExchange::new(
                        k.group().to_wire(),
                        k.public_ke_data().to_vec(),
                    )));
                }
                payloads.push(Payload::TsI(to_payload(&child.local_ts)));
                payloads.push(Payload::TsR(to_payload(&child.remote_ts)));
                tracing::info!("rekeying CHILD SA {spi_in:08x} with {}", self.peer.name);
                Some((
                    ExchangeType::CREATE_CHILD_SA,
                    payloads,
                    Pending::ChildRekey(ChildRekeyRequested {
                        old_spi_in: spi_in,
                        new_spi_in,
                        ni,
                        ke,
                    }),
                ))
            }
            Task::RekeyIke { group } => {
                if self.superseded_at.is_some() || self.collision.is_some() {
                    return None;
                }
                let group = group.unwrap_or(self.core.chosen.group);
                let ke = io.key_exchange(group);
                let new_spi = io.spis.new_ike(io.rng);
                let ni = io.nonce();
                let mut proposals = io.cfg.ike_proposals.clone();
                // The group of our KE first, so a responder that honours preference takes it.
                for p in &mut proposals {
                    if let Some(pos) = p.groups.iter().position(|g| *g == group) {
                        p.groups.remove(pos);
                        p.groups.insert(0, group);
                    }
                }
                let payloads = vec![
                    Payload::Sa(IkeProposal::sa_payload(&proposals, &new_spi.to_be_bytes())),
                    Payload::Nonce(wire::Nonce::new(ni.clone())),
                    Payload::Ke(wire::KeyExchange::new(
                        ke.group().to_wire(),
                        ke.public_ke_data().to_vec(),
                    )),
                ];
                tracing::info!("rekeying IKE SA with {}", self.peer.name);
                Some((
                    ExchangeType::CREATE_CHILD_SA,
                    payloads,
                    Pending::IkeRekey(IkeRekeyRequested { new_spi, ni, ke }),
                ))
            }
            Task::DeleteChild(spi_in) => {
                let child = self.children.iter_mut().find(|c| c.spi_in == spi_in)?;
                child.state = ChildState::Deleting;
                tracing::info!("deleting CHILD SA {spi_in:08x}");
                Some((
                    ExchangeType::INFORMATIONAL,
                    vec![Payload::Delete(Delete::esp(&[spi_in]))],
                    Pending::DeleteChild(spi_in),
                ))
            }
            Task::DeleteIke => Some((
                ExchangeType::INFORMATIONAL,
                vec![Payload::Delete(Delete::ike())],
                Pending::DeleteIke,
            )),
            Task::Liveness => Some((ExchangeType::INFORMATIONAL, Vec::new(), Pending::Liveness)),
            Task::ReturnRoutability => {
                self.pending_move?;
                let mut cookie2 = vec![0u8; COOKIE2_LEN];
                io.rng.fill(&mut cookie2);
                tracing::debug!(
                    "return-routability check of {} at {}",
                    self.peer.name,
                    self.core.remote
                );
                Some((
                    ExchangeType::INFORMATIONAL,
                    vec![Payload::Notify(Notify::new(
                        NotifyType::COOKIE2,
                        cookie2.clone(),
                    ))],
                    Pending::ReturnRoutability {
                        cookie2,
                        target: self.core.remote,
                    },
                ))
            }
        }
    }

    /// When `on_timeout` must run next.
    pub fn deadline(&self, io_cfg: &crate::endpoint::CommonConfig) -> Option<Instant> {
        if let Some(until) = self.closing_until {
            return Some(until);
        }
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(o) = &self.outstanding {
            consider(o.retransmission.deadline());
        }
        if let Some(since) = self.superseded_at {
            consider(since + self.superseded_patience(io_cfg));
        }
        for (at, _) in &self.deferred {
            consider(*at);
        }
        for c in &self.children {
            if let ChildState::Superseded { delete_at, .. } = c.state {
                consider(delete_at);
            }
        }
        for (_, until) in &self.retired {
            consider(*until);
        }
        if let Some(dpd) = io_cfg.dpd
            && self.outstanding.is_none()
            && self.queue.is_empty()
            && self.superseded_at.is_none()
        {
            consider(self.last_rx + dpd);
        }
        next
    }

    /// How long a superseded SA waits for its DELETE.
    fn superseded_patience(&self, cfg: &crate::endpoint::CommonConfig) -> Duration {
        total_patience(cfg.retransmit_base, cfg.retransmit_tries) * 2
    }

    /// Timers: retransmission, deferred work, make-before-break grace, liveness.
    pub fn on_timeout(&mut self, io: &mut Io<'_>) -> Vec<Effect> {
        let now = io.now.mono;
        if let Some(until) = self.closing_until {
            return if now >= until {
                vec![Effect::Remove]
            } else {
                Vec::new()
            };
        }
        if let Some(o) = &mut self.outstanding
            && now >= o.retransmission.deadline()
        {
            match o
                .retransmission
                .on_timeout(now, io.cfg.retransmit_base, io.cfg.retransmit_tries)
            {
                RetransmitAction::Resend => {
                    tracing::debug!(
                        "retransmitting request {} to {} (try {})",
                        o.message_id,
                        self.peer.name,
                        o.retransmission.tries()
                    );
                    io.transmits.push_back(o.retransmission.transmit());
                }
                RetransmitAction::GiveUp => {
                    let tries = o.retransmission.tries();
                    if self.superseded_at.is_none() {
                        self.kill(
                            io,
                            format!("dead peer: no answer after {tries} retransmissions"),
                        );
                    } else {
                        self.release_pending(io);
                    }
                    return vec![Effect::Remove];
                }
            }
        }
        if let Some(since) = self.superseded_at
            && now >= since + self.superseded_patience(io.cfg)
            && self.children.is_empty()
        {
            tracing::debug!("replaced IKE SA {} expired", hex_spi(self.core.our_spi()));
            self.release_pending(io);
            return vec![Effect::Remove];
        }
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|(_, until)| *until <= now);
        self.retired = kept;
        for (child, _) in gone {
            child.uninstall(io);
        }
        let mut due = Vec::new();
        self.deferred.retain(|(at, task)| {
            if *at <= now {
                due.push(task.clone());
                false
            } else {
                true
            }
        });
        self.queue.extend(due);
        self.check_superseded(io);
        if let Some(dpd) = io.cfg.dpd
            && self.outstanding.is_none()
            && self.queue.is_empty()
            && self.superseded_at.is_none()
            && now >= self.last_rx + dpd
        {
            tracing::debug!("liveness check of {}", self.peer.name);
            self.queue.push_back(Task::Liveness);
        }
        self.pump(io);
        Vec::new()
    }

    /// The forwarder's counters: ESP from the peer counts as life; a successor that carried
    /// traffic lets its predecessor go.
    pub fn counters(&mut self, io: &mut Io<'_>, report: &CounterReport) {
        for sa in &report.sas {
            if sa.peer != self.peer.id {
                continue;
            }
            let Some(child) = self.children.iter_mut().find(|c| c.spi_in == sa.spi_in.0) else {
                continue;
            };
            // Either direction: our outbound moved to the successor when it was installed,
            // so our own packets on it show that the new pair is in use.
            if sa.rx_packets > 0 || sa.tx_packets > 0 {
                child.carried_traffic = true;
            }
            if let Some(ago) = sa.last_rx_seconds_ago
                && let Some(at) = io.now.mono.checked_sub(Duration::from_secs(ago))
                && at > self.last_rx
            {
                self.last_rx = at;
            }
        }
        self.check_superseded(io);
        self.pump(io);
    }

    /// Whether the CHILD SA with this inbound SPI is ours.
    pub fn has_child(&self, spi_in: u32) -> bool {
        self.children.iter().any(|c| c.spi_in == spi_in)
    }

    /// A lifetime of a CHILD SA ran out: rekey it unless that is under way.
    pub fn limit_reached(&mut self, io: &mut Io<'_>, spi_in: u32, urgent: bool) {
        let Some(child) = self.children.iter_mut().find(|c| c.spi_in == spi_in) else {
            return;
        };
        if child.state != ChildState::Active {
            return;
        }
        child.state = ChildState::Rekeying;
        self.queue_task(
            io,
            Task::RekeyChild {
                spi_in,
                group: None,
            },
            urgent,
        );
    }

    /// Starts an IKE SA rekey.
    pub fn rekey(&mut self, io: &mut Io<'_>) {
        if self.superseded_at.is_some()
            || self.collision.is_some()
            || self
                .queue
                .iter()
                .any(|t| matches!(t, Task::RekeyIke { .. }))
            || matches!(
                self.outstanding,
                Some(Outstanding {
                    pending: Pending::IkeRekey(_),
                    ..
                })
            )
        {
            return;
        }
        self.queue_task(io, Task::RekeyIke { group: None }, false);
    }

    /// The forwarder moved this peer's endpoint (DESIGN.md "The override Neighbor
    /// Advertisement": the server checked an override NA or a NAT rebinding and the
    /// return-routability probe; the client followed its own new address): the IKE SA follows,
    /// so that later requests (rekeys, liveness checks, DELETE) reach the peer there.
    pub fn endpoint_moved(&mut self, io: &mut Io<'_>, new: &hometun_control::Endpoint) {
        let port = match new.encap {
            hometun_control::Encapsulation::Udp { remote_port, .. } => remote_port,
            hometun_control::Encapsulation::Raw => self.core.remote.port(),
        };
        let remote = SocketAddrV4::new(new.remote, port);
        let local = SocketAddrV4::new(new.local, self.core.local.port());
        if (local, remote) != (self.core.local, self.core.remote) {
            tracing::info!(
                "{}: the forwarder moved the CHILD SAs ({} => {new}); IKE follows: {} -> {remote}",
                self.peer.name,
                self.child_endpoint,
                self.core.remote
            );
            self.core.local = local;
            self.core.remote = remote;
            self.retarget();
        }
        // Later CHILD SAs (rekeys) must be installed with the same encapsulation.
        match new.encap {
            hometun_control::Encapsulation::Raw => {
                self.core.nat_local = false;
                self.core.nat_remote = false;
            }
            hometun_control::Encapsulation::Udp { .. } if !self.core.nat() => {
                self.core.nat_remote = true;
            }
            hometun_control::Encapsulation::Udp { .. } => {}
        }
        self.set_child_endpoint(io, *new);
        if self.pending_move.is_some() && self.core.esp_endpoint(io.cfg) == *new {
            // The forwarder's own check got there first (a MOBIKE update was checking the same
            // address).
            self.pending_move = None;
        }
    }

    /// Our outer address changed (the client's, learned by the forwarder from netlink): later
    /// requests leave from it, and the CHILD SAs follow.
    pub fn local_address(&mut self, io: &mut Io<'_>, addr: std::net::Ipv4Addr) {
        if *self.core.local.ip() == addr {
            return;
        }
        tracing::debug!(
            "IKE SA with {}: our address {} -> {addr}",
            self.peer.name,
            self.core.local.ip()
        );
        self.core.local = SocketAddrV4::new(addr, self.core.local.port());
        self.retarget();
        if self.superseded_at.is_none() && !self.children.is_empty() {
            let endpoint = self.core.esp_endpoint(io.cfg);
            if endpoint != self.child_endpoint {
                self.set_child_endpoint(io, endpoint);
                io.forwarder(hometun_control::Request::UpdateEndpoint {
                    peer: self.peer.id,
                    endpoint,
                });
            }
        }
    }

    /// Removes every CHILD SA and reports the peer down (unless superseded).
    pub fn kill(&mut self, io: &mut Io<'_>, reason: String) {
        for child in self.children.drain(..) {
            child.uninstall(io);
        }
        self.release_pending(io);
        if self.superseded_at.is_none() {
            // The driver logs the peer-down line at info.
            tracing::debug!("IKE SA with {} down: {reason}", self.peer.name);
            io.output(Output::PeerDown {
                peer: self.peer.id,
                name: self.peer.name.clone(),
                reason,
            });
            self.superseded_at = Some(io.now.mono);
        }
    }

    /// Frees the SPIs our request in flight holds, drops queued work and uninstalls the pairs
    /// kept for packets in flight (on removal).
    pub fn release_pending(&mut self, io: &mut Io<'_>) {
        for (child, _) in self.retired.drain(..) {
            child.uninstall(io);
        }
        if let Some(o) = self.outstanding.take() {
            match o.pending {
                Pending::ChildRekey(r) => io.spis.release_esp(r.new_spi_in),
                Pending::IkeRekey(r) => io.spis.release_ike(r.new_spi),
                _ => {}
            }
        }
        self.queue.clear();
        self.deferred.clear();
    }

    /// Shutdown: one DELETE for the IKE SA, no waiting; everything removed.
    pub fn close(&mut self, io: &mut Io<'_>) {
        self.close_because(io, "closed".into());
    }

    /// One DELETE for the IKE SA, no waiting; everything removed, the peer-down line says
    /// `reason`.
    pub fn close_because(&mut self, io: &mut Io<'_>, reason: String) {
        let header = self
            .core
            .header(ExchangeType::INFORMATIONAL, false, self.next_request_id);
        if let Ok(delete) = self.core.seal(header, vec![Payload::Delete(Delete::ike())]) {
            io.send(self.core.local, self.core.remote, delete);
        }
        self.kill(io, reason);
    }

    /// Whether the peer still passes `verifier` with the certificates of its IKE_AUTH (a reload
    /// may bring a CRL that revokes it, or another CA), and on a server whether `authorizer`
    /// still gives it every prefix its CHILD SAs carry. `Err` says why not.
    pub fn still_trusted(
        &self,
        verifier: &crate::crypto::CertificateVerifier,
        authorizer: Option<&dyn crate::endpoint::Authorizer>,
        now: std::time::SystemTime,
    ) -> Result<(), String> {
        let certificates: Vec<&[u8]> = self.peer.certificates.iter().map(Vec::as_slice).collect();
        let Some((end_entity, intermediates)) = certificates.split_first() else {
            return Ok(());
        };
        let verified = verifier
            .verify(end_entity, intermediates, &self.peer.identity, now)
            .map_err(|e| e.to_string())?;
        if let Some(authorizer) = authorizer {
            let prefixes = authorizer.prefixes(&self.peer.identity, &verified)?;
            if let Some(lost) = self
                .peer_allowed
                .iter()
                .find(|held| !prefixes.iter().any(|p| p.contains(*held)))
            {
                return Err(format!("its prefix {lost} is no longer allowed"));
            }
        }
        Ok(())
    }

    /// For `hometun status`.
    pub fn status(&self, now: Instant) -> PeerStatus {
        PeerStatus {
            peer: self.peer.id,
            name: self.peer.name.clone(),
            local: self.core.local,
            remote: self.core.remote,
            nat: self.core.nat(),
            ike_spis: (hex_spi(self.core.spi_i), hex_spi(self.core.spi_r)),
            ike_proposal: self.core.chosen.to_string(),
            established_seconds: now.saturating_duration_since(self.established_at).as_secs(),
            last_moved_seconds_ago: self
                .last_moved
                .map(|t| now.saturating_duration_since(t).as_secs()),
            moves: self.moves,
            prefixes: self.peer_allowed.clone(),
            children: self.children.iter().map(Child::status).collect(),
        }
    }

    /// The addresses (for a successor built elsewhere).
    #[allow(dead_code)]
    pub fn addresses(&self) -> Addresses {
        self.core.addresses()
    }
}

/// Whether a NO_NATS_ALLOWED notify (RFC 4555 4.?: source and destination IPv4 address, then
/// source and destination port) names the addresses a request arrived with.
fn no_nats_matches(data: &[u8], source: SocketAddrV4, destination: SocketAddrV4) -> bool {
    let mut expected = Vec::with_capacity(12);
    expected.extend_from_slice(&source.ip().octets());
    expected.extend_from_slice(&destination.ip().octets());
    expected.extend_from_slice(&source.port().to_be_bytes());
    expected.extend_from_slice(&destination.port().to_be_bytes());
    data == expected.as_slice()
}

type ChildRequest<'a> = (
    &'a [u8],
    Option<&'a wire::KeyExchange>,
    &'a wire::TrafficSelectors,
    &'a wire::TrafficSelectors,
);

/// Ni, KE, TSi and TSr of a CHILD SA rekey request.
fn child_request_payloads(inner: &[Payload]) -> Result<ChildRequest<'_>, IkeError> {
    let mut ni = None;
    let mut ke = None;
    let mut tsi = None;
    let mut tsr = None;
    for p in inner {
        match p {
            Payload::Nonce(n) => ni = Some(n.data.as_slice()),
            Payload::Ke(k) => ke = Some(k),
            Payload::TsI(t) => tsi = Some(t),
            Payload::TsR(t) => tsr = Some(t),
            _ => {}
        }
    }
    match (ni, tsi, tsr) {
        (Some(ni), Some(tsi), Some(tsr)) => Ok((ni, ke, tsi, tsr)),
        _ => Err(IkeError::syntax(
            "CREATE_CHILD_SA request lacks Ni, TSi or TSr",
        )),
    }
}

type ChildResponse<'a> = (
    &'a wire::SecurityAssociation,
    &'a wire::Nonce,
    Option<&'a wire::KeyExchange>,
    &'a wire::TrafficSelectors,
    &'a wire::TrafficSelectors,
);

/// SA, Nr, KE, TSi and TSr of a CHILD SA rekey response.
fn child_response_payloads(inner: &[Payload]) -> Result<ChildResponse<'_>, IkeError> {
    let mut sa = None;
    let mut nr = None;
    let mut ke = None;
    let mut tsi = None;
    let mut tsr = None;
    for p in inner {
        match p {
            Payload::Sa(s) => sa = Some(s),
            Payload::Nonce(n) => nr = Some(n),
            Payload::Ke(k) => ke = Some(k),
            Payload::TsI(t) => tsi = Some(t),
            Payload::TsR(t) => tsr = Some(t),
            _ => {}
        }
    }
    match (sa, nr, tsi, tsr) {
        (Some(sa), Some(nr), Some(tsi), Some(tsr)) => Ok((sa, nr, ke, tsi, tsr)),
        _ => Err(IkeError::syntax(
            "CREATE_CHILD_SA response lacks SA, Nr, TSi or TSr",
        )),
    }
}

/// Ni and KE of an IKE SA rekey request.
fn ike_rekey_payloads(inner: &[Payload]) -> Result<(&[u8], &wire::KeyExchange), IkeError> {
    let ni = inner.iter().find_map(|p| match p {
        Payload::Nonce(n) => Some(n.data.as_slice()),
        _ => None,
    });
    let ke = inner.iter().find_map(|p| match p {
        Payload::Ke(k) => Some(k),
        _ => None,
    });
    match (ni, ke) {
        (Some(ni), Some(ke)) => Ok((ni, ke)),
        _ => Err(IkeError::syntax("IKE SA rekey request lacks Ni or KE")),
    }
}

type IkeRekeyResponse<'a> = (
    &'a wire::SecurityAssociation,
    &'a wire::Nonce,
    &'a wire::KeyExchange,
);

/// SA, Nr and KE of an IKE SA rekey response.
fn ike_rekey_response_payloads(inner: &[Payload]) -> Result<IkeRekeyResponse<'_>, IkeError> {
    let mut sa = None;
    let mut nr = None;
    let mut ke = None;
    for p in inner {
        match p {
            Payload::Sa(s) => sa = Some(s),
            Payload::Nonce(n) => nr = Some(n),
            Payload::Ke(k) => ke = Some(k),
            _ => {}
        }
    }
    match (sa, nr, ke) {
        (Some(sa), Some(nr), Some(ke)) => Ok((sa, nr, ke)),
        _ => Err(IkeError::syntax("IKE SA rekey response lacks SA, Nr or KE")),
    }
}
