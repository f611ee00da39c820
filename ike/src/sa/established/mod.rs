//! An established IKE SA: its CHILD SAs, the message-ID windows, and the exchanges after
//! IKE_AUTH. One file per exchange: [`informational`] (DELETE, liveness), [`mobike`] (RFC 4555
//! address updates and the forwarder's moves), [`child_rekey`] and [`ike_rekey`]
//! (CREATE_CHILD_SA in both roles, with the collision rules of RFC 7296 2.8.1 and 2.8.2),
//! [`requests`] (our side of the window: queued work, one request in flight), and [`trust`]
//! (what a reload still allows the peer).
//!
//! Where an SA stands in its life is one [`Lifecycle`] value; each request in flight is a
//! [`requests::Pending`] consumed when its answer arrives.

mod child_rekey;
mod ike_rekey;
mod informational;
mod mobike;
mod requests;
pub(crate) mod restart_hints;
mod trust;

pub(crate) use requests::Task;
pub use trust::Distrust;

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use hometun_control::{SaCounters, Spi};
use ipnet::Ipv6Net;

use crate::io::{Now, Output};
use crate::notice::Notice;
use crate::sa::child::{Child, ChildState};
use crate::sa::{IkeCore, IkeError, Io, PeerInfo, hex_spi};
use crate::status::PeerStatus;
use crate::window::{RequestClass, ResponseWindow, RetransmitAction, total_patience};
use crate::wire::{Delete, ExchangeType, Header, NotifyType, Payload, PayloadList, ProtocolId};
use child_rekey::DELETED_INBOUND_LINGER;
use ike_rekey::IkeCollision;
use mobike::PendingMove;
use requests::{Outstanding, Pending};

/// What the endpoint must do after an event on an IKE SA.
pub(crate) enum Effect {
    /// A new IKE SA (from a rekey), to insert under its SPI and start.
    Insert(Box<Established>),
    /// Move this SA's CHILD SAs and their queued work to the IKE SA with our SPI `to`.
    MoveChildren { to: u64 },
    /// This SA is gone (children deleted or moved, outputs emitted): remove it.
    Remove,
    /// The peer lost this IKE SA (a restart hint went unanswered): the client connects again
    /// at once, without waiting out its reconnection backoff.
    ReconnectNow,
    /// The peer stopped answering (a request went unanswered through every retransmission): a
    /// client with other servers moves to the next one.
    PeerDead,
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

/// Where an established IKE SA stands in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// It speaks for the peer.
    Current,
    /// It no longer speaks for the peer (its CHILD SAs moved to a rekeyed IKE SA, it lost a
    /// rekey collision, or it was killed): it waits silently for its DELETE, at most a while.
    Superseded {
        /// Since when.
        since: Instant,
    },
    /// We are deleting it (shutdown): its pairs are gone and only its DELETE is still to be
    /// sent or answered, at most a while.
    Leaving {
        /// Since when.
        since: Instant,
    },
    /// The peer deleted it: it is kept until `until` only to answer a retransmitted DELETE
    /// with the cached response.
    Closing {
        /// When it goes.
        until: Instant,
    },
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
    /// Where the SA stands in its life.
    lifecycle: Lifecycle,
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
    /// When this IKE SA's keys were made (by IKE_AUTH or a rekey).
    keyed_at: Instant,
    /// CHILD SA rekeys completed since then.
    child_rekeys: u32,
    /// Bytes of CHILD SAs that are gone, and what the adopted ones had carried before these
    /// keys (the IKE SA's own byte count is their difference plus what its CHILD SAs carry).
    bytes_gone: u64,
    bytes_before: u64,
    /// The peer's CHILD SA rekeys, limited: each costs a Diffie-Hellman exchange here.
    peer_rekeys: TokenBucket,
    /// The client asks the endpoint for a new IKE SA in place of this one (no working CHILD SA
    /// is left, or the certificate changed).
    reestablish: bool,
    /// When the peer's certificate chain stops being valid (its earliest notAfter), on the
    /// wall clock and as our monotonic clock then reads: the IKE SA ends at that moment.
    peer_valid_until: Option<(std::time::SystemTime, Instant)>,
    /// A liveness check that a restart hint started: unless the peer authenticates a message
    /// by then, it lost this IKE SA ([`restart_hints`]).
    hint_check: Option<restart_hints::HintCheck>,
    /// When the last such check began (they are spaced out: hints are cheap to forge).
    last_hint_check: Option<Instant>,
}

/// A token bucket: `capacity` tokens, one more every `refill`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenBucket {
    tokens: u32,
    capacity: u32,
    refill: Duration,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(capacity: u32, refill: Duration, now: Instant) -> Self {
        Self {
            tokens: capacity,
            capacity,
            refill,
            last: now,
        }
    }

    /// How many tokens have come back at `now` since the last refill was counted.
    fn earned(&self, now: Instant) -> u128 {
        now.saturating_duration_since(self.last).as_nanos() / self.refill.as_nanos().max(1)
    }

    /// Whether it would be full at `now` (nothing taken that has not come back).
    pub fn is_full(&self, now: Instant) -> bool {
        u128::from(self.tokens) + self.earned(now) >= u128::from(self.capacity)
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let earned = self.earned(now);
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(self.capacity);
            self.last += self.refill * earned.min(self.capacity);
            if self.tokens == self.capacity {
                self.last = now;
            }
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// A peer may rekey CHILD SAs this often at most: a burst of this many...
const PEER_REKEY_BURST: u32 = 5;
/// ...and one more every this long. A byte-count lifetime takes far longer to run out.
const PEER_REKEY_REFILL: Duration = Duration::from_secs(10);

impl Established {
    /// A newly established IKE SA (after IKE_AUTH or a rekey).
    pub fn new(io: &mut Io<'_>, p: EstablishedParams) -> Self {
        let child_endpoint = p.core.esp_endpoint(io.cfg);
        let peer_valid_until = crate::crypto::validity::chain_not_after(&p.peer.certificates)
            .and_then(|wall| {
                let left = wall.duration_since(io.now.wall).unwrap_or_default();
                Some((wall, io.now.mono.checked_add(left)?))
            });
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
            lifecycle: Lifecycle::Current,
            retired: Vec::new(),
            child_endpoint,
            moves: 0,
            pending_move: None,
            keyed_at: io.now.mono,
            child_rekeys: 0,
            bytes_gone: 0,
            bytes_before: 0,
            peer_rekeys: TokenBucket::new(PEER_REKEY_BURST, PEER_REKEY_REFILL, io.now.mono),
            reestablish: false,
            peer_valid_until,
            hint_check: None,
            last_hint_check: None,
        }
    }

    /// Its CHILD SAs deleted by both sides whose inbound half lingers, with when each goes.
    #[cfg(feature = "test-util")]
    pub fn lingering_inbound(&self) -> impl Iterator<Item = (u32, Instant)> + '_ {
        self.retired
            .iter()
            .map(|(child, until)| (child.spi_in.0, *until))
    }

    /// Whether the SA still speaks for its peer.
    pub fn is_current(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Current)
    }

    /// The peer's budget of rekeys, which a new IKE SA of the same peer takes over (a
    /// re-authentication must not refill it: SECURITY.md, I11).
    pub(crate) fn rekey_budget(&self) -> TokenBucket {
        self.peer_rekeys
    }

    /// Takes over the rekey budget of the peer's earlier IKE SA.
    pub(crate) fn inherit_rekey_budget(&mut self, budget: TokenBucket) {
        self.peer_rekeys = budget;
    }

    /// Whether it still has CHILD SAs installed (a replaced SA keeps them until its DELETE,
    /// make-before-break).
    pub fn holds_pairs(&self) -> bool {
        !self.children.is_empty()
    }

    /// Whether the peer deleted it and it only answers retransmitted DELETEs.
    fn is_closing(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Closing { .. })
    }

    /// Whether we are deleting it at shutdown.
    pub(super) fn is_leaving(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Leaving { .. })
    }

    /// Since when it has waited for a DELETE, ours (leaving) or the peer's (superseded).
    fn waiting_since(&self) -> Option<Instant> {
        match self.lifecycle {
            Lifecycle::Superseded { since } | Lifecycle::Leaving { since } => Some(since),
            Lifecycle::Current | Lifecycle::Closing { .. } => None,
        }
    }

    /// Whether nothing of ours is still to be sent or answered on it.
    pub fn is_settled(&self) -> bool {
        !self.is_current() && self.outstanding.is_none() && self.queue.is_empty()
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

    pub(super) fn handle_request(
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
                // Only an authentic retransmission is answered: it must open. The answer goes
                // where the peer is, not to the datagram's source: a copy replayed from a
                // forged address must not send our answer to a victim.
                if self.core.open(data).is_ok()
                    && let Some(cached) = self.responses.cached()
                {
                    tracing::debug!("retransmitted request {} answered again", header.message_id);
                    if remote != self.core.remote {
                        tracing::debug!(
                            "  (it came from {remote}; answered to {} where the peer is)",
                            self.core.remote
                        );
                    }
                    io.send(self.core.local, self.core.remote, cached.to_vec());
                }
                return Vec::new();
            }
            RequestClass::New => {}
        }
        if self.is_closing() {
            tracing::debug!("request on a deleted IKE SA ignored");
            return Vec::new();
        }
        let (payloads, effects) = match self.core.open(data) {
            Ok(message) => {
                self.heard_from_peer(io.now.mono);
                io.observe(header, &message.inner);
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
                    self.heard_from_peer(io.now.mono);
                    io.notice(Notice::MalformedRequest {
                        peer: self.peer.name.clone(),
                        error: error.clone(),
                    });
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
        match io.seal(&mut self.core, response_header, payloads) {
            Ok(response) => {
                io.send(local, remote, response.clone());
                self.responses.answered(header.message_id, response);
            }
            Err(e) => io.notice(Notice::CannotBuildResponse(e.to_string())),
        }
        if !effects.iter().any(|e| matches!(e, Effect::Remove)) {
            self.pump(io);
        }
        effects
    }

    pub(super) fn handle_response(
        &mut self,
        io: &mut Io<'_>,
        header: &Header,
        data: &[u8],
    ) -> Vec<Effect> {
        if self.is_closing() {
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
            Ok(message) => {
                io.observe(header, &message.inner);
                message.inner
            }
            Err(e) => {
                if restart_hints::is_invalid_ike_spi(data) {
                    self.restart_hint(
                        io,
                        format!(
                            "INVALID_IKE_SPI in answer to our request {}",
                            header.message_id
                        ),
                    );
                } else {
                    tracing::debug!("response {} dropped: {e}", header.message_id);
                }
                return Vec::new();
            }
        };
        self.heard_from_peer(io.now.mono);
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
                    self.bytes_gone += child.bytes;
                    tracing::debug!(
                        "CHILD SA {spi_in:08x} deleted by both; its inbound SA stays {DELETED_INBOUND_LINGER:?} for packets in flight"
                    );
                    self.retired
                        .push((child, io.now.mono + DELETED_INBOUND_LINGER));
                }
                Vec::new()
            }
            Pending::DeleteRefusedPair(spi_in) => {
                io.spis.release_esp(spi_in);
                Vec::new()
            }
            Pending::DeleteIke => {
                if self.is_current() {
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

    pub(super) fn respond_create_child(
        &mut self,
        io: &mut Io<'_>,
        inner: &[Payload],
    ) -> (Vec<Payload>, Vec<Effect>) {
        let mut effects = Vec::new();
        let result = (|| {
            if !self.is_current() {
                return Err(IkeError::TemporaryFailure("this IKE SA is being replaced"));
            }
            let Some(sa) = inner.sa() else {
                return Err(IkeError::syntax("CREATE_CHILD_SA without SA payload"));
            };
            let rekey = inner.notify(NotifyType::REKEY_SA);
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
                io.notice(Notice::CreateChildRefused {
                    peer: self.peer.name.clone(),
                    error: error.clone(),
                });
                (vec![Payload::Notify(error.notify())], effects)
            }
        }
    }

    /// When `on_timeout` must run next.
    pub fn deadline(&self, io_cfg: &crate::settings::CommonConfig) -> Option<Instant> {
        if let Lifecycle::Closing { until } = self.lifecycle {
            return Some(until);
        }
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(o) = &self.outstanding {
            consider(o.retransmission.deadline());
        }
        if let Some(since) = self.waiting_since() {
            consider(since + self.superseded_patience(io_cfg));
        }
        for (at, _) in &self.deferred {
            consider(*at);
        }
        for c in &self.children {
            if let ChildState::Superseded { delete_at, .. }
            | ChildState::AwaitingPeerDelete { delete_at, .. } = c.state
            {
                consider(delete_at);
            }
        }
        if let Some(seconds) = io_cfg.ike_rekey.seconds
            && self.is_current()
            && !self.ike_rekey_planned()
        {
            consider(self.keyed_at + Duration::from_secs(seconds));
        }
        if let Some((_, mono)) = self.peer_valid_until
            && (self.is_current() || self.holds_pairs())
        {
            consider(mono);
        }
        for (_, until) in &self.retired {
            consider(*until);
        }
        if let Some(check) = &self.hint_check {
            consider(check.deadline);
        }
        if let Some(dpd) = io_cfg.dpd
            && self.outstanding.is_none()
            && self.queue.is_empty()
            && self.is_current()
        {
            consider(self.last_rx + dpd);
        }
        next
    }

    /// How long a superseded SA waits for its DELETE.
    pub(super) fn superseded_patience(&self, cfg: &crate::settings::CommonConfig) -> Duration {
        total_patience(cfg.retransmit_base, cfg.retransmit_tries) * 2
    }

    /// Timers: retransmission, deferred work, make-before-break grace, liveness.
    pub fn on_timeout(&mut self, io: &mut Io<'_>) -> Vec<Effect> {
        let now = io.now.mono;
        if let Lifecycle::Closing { until } = self.lifecycle {
            return if now >= until {
                vec![Effect::Remove]
            } else {
                Vec::new()
            };
        }
        if let Some((wall, mono)) = self.peer_valid_until
            && (now >= mono || io.now.wall >= wall)
        {
            if self.is_current() {
                let when = humantime_utc(wall);
                io.notice(Notice::CertificateExpired {
                    peer: self.peer.name.clone(),
                    when: when.clone(),
                });
                self.close_because(io, format!("its certificate expired ({when})"));
                return vec![Effect::Remove];
            }
            if self.holds_pairs() {
                // Replaced, and its pairs outlive the certificate they were made with: they go
                // now (its successor, if its certificate is the same, says so itself).
                return vec![Effect::Remove];
            }
        }
        if let Some(effects) = self.hint_check_timeout(io) {
            return effects;
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
                    if self.is_current() {
                        self.kill(
                            io,
                            format!("dead peer: no answer after {tries} retransmissions"),
                        );
                        return vec![Effect::PeerDead, Effect::Remove];
                    }
                    self.release_pending(io);
                    return vec![Effect::Remove];
                }
            }
        }
        if let Some(since) = self.waiting_since()
            && now >= since + self.superseded_patience(io.cfg)
        {
            // Its DELETE never came (or never got answered): what it still holds goes.
            tracing::debug!("replaced IKE SA {} expired", hex_spi(self.core.our_spi()));
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
        self.check_ike_rekey_bounds(io);
        if let Some(dpd) = io.cfg.dpd
            && self.outstanding.is_none()
            && self.queue.is_empty()
            && self.is_current()
            && now >= self.last_rx + dpd
        {
            tracing::debug!("liveness check of {}", self.peer.name);
            self.queue.push_back(Task::Liveness);
        }
        self.pump(io);
        Vec::new()
    }

    /// The forwarder's counters of its peer's pairs: ESP from the peer counts as life; a
    /// successor that carried traffic lets its predecessor go.
    pub fn counters(&mut self, io: &mut Io<'_>, pairs: &[&SaCounters]) {
        for sa in pairs {
            let Some(child) = self.children.iter_mut().find(|c| c.spi_in == sa.spi_in) else {
                continue;
            };
            // Either direction: our outbound moved to the successor when it was installed,
            // so our own packets on it show that the new pair is in use.
            if sa.rx_packets > 0 || sa.tx_packets > 0 {
                child.carried_traffic = true;
            }
            child.bytes = sa.rx_bytes.saturating_add(sa.tx_bytes);
            if let Some(ago) = sa.last_rx_seconds_ago
                && let Some(at) = io.now.mono.checked_sub(Duration::from_secs(ago))
                && at > self.last_rx
            {
                self.last_rx = at;
            }
        }
        self.check_superseded(io);
        self.check_ike_rekey_bounds(io);
        self.pump(io);
    }

    /// Whether the CHILD SA with this inbound SPI is ours.
    pub fn has_child(&self, spi_in: Spi) -> bool {
        self.children.iter().any(|c| c.spi_in == spi_in)
    }

    /// Removes every CHILD SA and reports the peer down (unless superseded).
    pub fn kill(&mut self, io: &mut Io<'_>, reason: String) {
        for child in self.children.drain(..) {
            child.uninstall(io);
        }
        self.release_pending(io);
        if self.is_current() {
            self.report_down(io, reason);
            self.lifecycle = Lifecycle::Superseded { since: io.now.mono };
        }
    }

    /// The peer is down: its grant goes (server) and the driver logs the peer-down line.
    fn report_down(&mut self, io: &mut Io<'_>, reason: String) {
        if !self.client {
            // Its grant goes with it (a re-authenticated IKE SA is not current when the
            // old one goes, and keeps the grant).
            io.forwarder(hometun_control::Request::AllowPeer {
                peer: self.peer.id,
                prefixes: Vec::new(),
            });
        }
        // The driver logs the peer-down line at info.
        io.output(Output::PeerDown {
            peer: self.peer.id,
            name: self.peer.name.clone(),
            reason,
        });
    }

    /// Shutdown: the SA stops speaking for its peer and uninstalls its pairs now; its DELETE
    /// goes as its next request, after the one in flight if any (the peer's window is one
    /// request, RFC 7296 2.3), and is retransmitted until answered.
    pub fn leave(&mut self, io: &mut Io<'_>) {
        if !self.is_current() {
            return;
        }
        for child in self.children.drain(..) {
            child.uninstall(io);
        }
        for (child, _) in self.retired.drain(..) {
            child.uninstall(io);
        }
        self.deferred.clear();
        self.hint_check = None;
        self.report_down(io, "closed".into());
        self.lifecycle = Lifecycle::Leaving { since: io.now.mono };
        // What is queued before it is dropped as `pump` comes to it (a leaving SA sends only
        // its DELETE).
        self.queue.push_back(Task::DeleteIke);
        self.pump(io);
    }

    /// Frees the SPIs our request in flight holds, drops queued work and uninstalls the pairs
    /// kept for packets in flight.
    pub fn release_pending(&mut self, io: &mut Io<'_>) {
        for (child, _) in self.retired.drain(..) {
            child.uninstall(io);
        }
        if let Some(o) = self.outstanding.take() {
            match o.pending {
                Pending::ChildRekey(r) => io.spis.release_esp(r.new_spi_in),
                Pending::IkeRekey(r) => io.spis.release_ike(r.new_spi),
                Pending::DeleteRefusedPair(spi) => io.spis.release_esp(spi),
                _ => {}
            }
        }
        for task in self.queue.drain(..) {
            if let Task::DeleteRefusedPair(spi) = task {
                io.spis.release_esp(spi);
            }
        }
        self.deferred.clear();
    }

    /// On removal: uninstalls whatever CHILD SA it still holds (a replaced SA whose peer never
    /// deleted it) and frees what is pending.
    pub fn dispose(&mut self, io: &mut Io<'_>) {
        for child in self.children.drain(..) {
            child.uninstall(io);
        }
        self.release_pending(io);
    }

    /// When its keys were made (IKE_AUTH or its rekey).
    pub fn keyed_at(&self) -> Instant {
        self.keyed_at
    }

    /// Whether the client should make a new IKE SA in its place.
    pub fn wants_reestablish(&self) -> bool {
        self.reestablish && self.is_current()
    }

    /// Asks the endpoint for a new IKE SA in place of this one (the client: its certificate
    /// changed, or a rekey cannot be made).
    pub fn request_reestablish(&mut self) {
        self.reestablish = true;
    }

    /// A new IKE SA with the same peer took over (re-authentication, RFC 7296 2.8.3): this one
    /// stops speaking for the peer, keeps its CHILD SAs until it is deleted (make-before-break)
    /// and, if `delete`, sends its DELETE.
    pub fn replaced_by_reauthentication(&mut self, io: &mut Io<'_>, delete: bool) {
        if !self.is_current() {
            return;
        }
        self.lifecycle = Lifecycle::Superseded { since: io.now.mono };
        self.reestablish = false;
        // Only its DELETE is still to be sent; a queued DELETE of a refused pair goes with the
        // IKE SA, and so does the SPI it held.
        for task in std::mem::take(&mut self.queue) {
            match task {
                Task::DeleteIke => self.queue.push_back(task),
                Task::DeleteRefusedPair(spi) => io.spis.release_esp(spi),
                _ => {}
            }
        }
        self.deferred.clear();
        if delete && !self.queue.contains(&Task::DeleteIke) {
            self.queue.push_back(Task::DeleteIke);
        }
        self.pump(io);
    }

    /// The end of a shutdown's wait: a DELETE not yet sent (still queued behind a request the
    /// peer never answered, or never queued) goes once, out of turn and unanswered. The
    /// endpoint removes the SA after.
    pub fn close_now(&mut self, io: &mut Io<'_>) {
        if self.is_leaving() && self.queue.contains(&Task::DeleteIke) {
            self.send_delete_once(io);
        } else if self.is_current() {
            self.close_because(io, "closed".into());
        }
    }

    /// One DELETE for the IKE SA, no waiting; everything removed, the peer-down line says
    /// `reason`.
    pub fn close_because(&mut self, io: &mut Io<'_>, reason: String) {
        self.send_delete_once(io);
        self.kill(io, reason);
    }

    /// Our DELETE of the IKE SA, sent once with the next message ID and not waited for.
    fn send_delete_once(&mut self, io: &mut Io<'_>) {
        let header = self
            .core
            .header(ExchangeType::INFORMATIONAL, false, self.next_request_id);
        if let Ok(delete) = io.seal(&mut self.core, header, vec![Payload::Delete(Delete::ike())]) {
            io.send(self.core.local, self.core.remote, delete);
        }
    }

    /// For `hometun status`.
    pub fn status(&self, now: Now) -> PeerStatus {
        let now = now.mono;
        PeerStatus {
            peer: self.peer.id,
            name: self.peer.name.clone(),
            local: self.core.local,
            remote: self.core.remote,
            nat: self.core.nat_seen(),
            udp_forced: self.core.udp_forced,
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
}

/// `YYYY-MM-DD HH:MM:SS UTC` for log lines.
pub(crate) fn humantime_utc(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_for_log_lines() {
        let at = |s| std::time::UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(humantime_utc(at(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(humantime_utc(at(1_835_438_400)), "2028-02-29 12:00:00 UTC");
        assert_eq!(humantime_utc(at(1_924_992_059)), "2031-01-01 00:00:59 UTC");
    }
}
