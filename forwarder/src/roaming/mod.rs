//! Address changes (docs/ARCHITECTURE.md, "Roaming"): the data-plane half. The protocol parts are sans-IO and tested alone:
//!
//! - [`override_na`]: the server's checks of an override NA, and the NA the client sends;
//! - [`return_routability`]: the probe, its answer, and the matching of one probe round;
//! - [`moves`]: the server's per-SA and per-peer state (last NA, rate limits, rounds, counters);
//! - [`announce`]: the client's NA repetition with backoff;
//! - [`local_address`]: the netlink watcher and the source address towards a peer.
//!
//! [`Roaming`] joins them to the data plane: the inbound threads hand it the few inner packets
//! that pass one cheap test (ICMPv6 NA, Echo Request or Echo Reply) and the authenticated
//! packets whose outer source is not the peer's endpoint; the roaming thread ([`run`]) watches
//! netlink, sends the client's NAs and the server's retransmitted probes. Time comes in as
//! [`Now`] from the threads' clock ([`crate::clock`]); the protocol parts get its milliseconds.

pub mod announce;
pub mod local_address;
pub mod moves;
pub mod override_na;
pub mod return_routability;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hometun_control::{
    DropReason, Endpoint, Event, MoveRefusal, PeerId, RoamingConfig, RoamingReport,
};
use ipnet::Ipv6Net;
use ring::rand::{SecureRandom, SystemRandom};

use crate::clock::{Clock, Now};
use crate::events::EventSender;
use crate::sad::{SaPair, Sad, Snapshot};
use crate::wire::icmpv6::{TYPE_ECHO_REPLY, TYPE_ECHO_REQUEST, TYPE_NEIGHBOR_ADVERT};
use announce::{Announce, Announcer, Finished};
use local_address::{AddressWatcher, LinkEvent};
use moves::{AnswerVerdict, MoveChecker, MoveLimits, NaVerdict, Probe, Timer};
use override_na::NaRules;
use return_routability::{Nonce, Observed, ProbeTiming, Trigger};

/// Room for the ESP packets the roaming code builds (NA, probe, answer: under 200 bytes).
const SCRATCH: usize = 512;
/// Outbound packets for a peer are held at most this long while its probe round runs (on a
/// home line the probe's round trip is tens of ms; an attacker's round must not stall the
/// peer's traffic for the whole probe timeout) ...
const HOLD_MS: u64 = 100;
/// ... and at most this many (beyond them packets go to the current endpoint at once).
const HOLD_PACKETS: usize = 256;
/// How often the roaming thread looks at the stop flag, the report and gone SAs.
const TICK: Duration = Duration::from_millis(200);

/// The one cheap test of the inbound path: true for an inner packet that may be for the roaming
/// code (ICMPv6 without extension headers, type NA, Echo Request or Echo Reply). Every other
/// packet (TCP, UDP, other ICMPv6) costs two byte compares.
#[inline]
pub fn may_be_roaming(inner: &[u8]) -> bool {
    inner.len() > crate::wire::ipv6::HEADER_LEN
        && inner[6] == crate::wire::ipv6::NEXT_HEADER_ICMPV6
        && matches!(
            inner[crate::wire::ipv6::HEADER_LEN],
            TYPE_NEIGHBOR_ADVERT | TYPE_ECHO_REQUEST | TYPE_ECHO_REPLY
        )
}

/// What the outbound path does with a packet for a peer while holds are active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldOutcome {
    /// Held: it goes out when the round ends (to the new endpoint after a switch).
    Held,
    /// Not held: send it now, to this endpoint (the current one, fresher than a batch's
    /// snapshot).
    Send(Option<Endpoint>),
}

/// Outbound packets held for one peer while its probe round runs.
#[derive(Debug)]
struct Held {
    since_ms: u64,
    packets: Vec<Vec<u8>>,
}

/// What the roaming code needs of the outer sockets.
pub trait OuterSockets: Send + Sync {
    /// Sends one ESP packet (starting at the SPI) to `to`: raw ESP when `to.port` is `None`,
    /// else ESP in UDP from our UDP port.
    fn send_esp(&self, to: Observed, esp: &[u8]) -> io::Result<()>;
    /// Re-binds the sockets bound to `old` to `new`; `Ok(false)` when they are not bound to
    /// `old` (bound to any address, nothing to do).
    fn rebind(&self, old: Ipv4Addr, new: Ipv4Addr) -> io::Result<bool>;
    /// Our UDP port for ESP in UDP (0: none).
    fn udp_port(&self) -> u16;
}

/// The roaming state of one forwarder, shared by its data threads and its roaming thread.
pub struct Roaming {
    config: RoamingConfig,
    /// Our link-local address on the TUN device: source of probes, answers and NAs.
    link_local: Ipv6Addr,
    tun_addresses: Vec<Ipv6Net>,
    own_addresses: Vec<Ipv6Addr>,
    checker: Mutex<MoveChecker>,
    announcer: Mutex<Announcer>,
    rng: SystemRandom,
    events: EventSender,
    probes_answered: AtomicU64,
    /// Probes answered per peer: they do not show that the peer follows our new address (an
    /// attacker can relay a probe meant for its own address to us).
    probes_answered_from: Mutex<HashMap<PeerId, u64>>,
    announcements_sent: AtomicU64,
    local_address_changes: AtomicU64,
    /// Last time a refusal of each kind was logged, per peer (a storm must not flood the log).
    logged: Mutex<HashMap<(PeerId, MoveRefusal), u64>>,
    /// Server role: the peers whose outbound packets are held during a probe round. The
    /// round's answer comes one round trip later; the replies the server sends meanwhile
    /// would go to the old address, which after a NAT rebinding or an address change is dead.
    held: Mutex<HashMap<PeerId, Held>>,
    /// True while `held` is not empty: all the outbound path looks at otherwise.
    holding: AtomicBool,
    /// When each peer's probe round began (the log gives the time from the trigger to the
    /// switch finer than the protocol code's milliseconds).
    round_began: Mutex<HashMap<PeerId, Now>>,
    /// Bumped whenever an endpoint moves or a hold starts or ends: the outbound path reloads
    /// its snapshot when it changes within a batch.
    generation: AtomicU64,
}

impl std::fmt::Debug for Roaming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Roaming")
            .field("config", &self.config)
            .field("link_local", &self.link_local)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Roaming {
    /// The roaming state for a forwarder whose TUN device has `tun_addresses`.
    pub fn new(config: RoamingConfig, tun_addresses: &[Ipv6Net], events: EventSender) -> Self {
        let link_local = tun_addresses
            .iter()
            .map(|a| a.addr())
            .find(|a| crate::netlink::is_link_local(*a))
            .unwrap_or(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
        Roaming {
            config,
            link_local,
            tun_addresses: tun_addresses.to_vec(),
            own_addresses: tun_addresses.iter().map(|a| a.addr()).collect(),
            checker: Mutex::new(MoveChecker::new(
                MoveLimits::default(),
                ProbeTiming::default(),
            )),
            announcer: Mutex::new(Announcer::new()),
            rng: SystemRandom::new(),
            events,
            probes_answered: AtomicU64::new(0),
            probes_answered_from: Mutex::new(HashMap::new()),
            announcements_sent: AtomicU64::new(0),
            local_address_changes: AtomicU64::new(0),
            logged: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            holding: AtomicBool::new(false),
            round_began: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// Changes whenever an endpoint moved or a hold started or ended (see [`HoldOutcome`]).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// True while some peer's outbound packets are held (one atomic load per packet).
    #[inline]
    pub fn holding(&self) -> bool {
        self.holding.load(Ordering::Acquire)
    }

    /// The outbound path, while [`Roaming::holding`]: holds `packet` if `peer` is held.
    pub fn hold_outbound(&self, sad: &Sad, peer: PeerId, packet: &[u8]) -> HoldOutcome {
        let mut held = lock(&self.held);
        match held.get_mut(&peer) {
            Some(hold) if hold.packets.len() < HOLD_PACKETS => {
                hold.packets.push(packet.to_vec());
                HoldOutcome::Held
            }
            _ => HoldOutcome::Send(sad.load().endpoint(peer)),
        }
    }

    /// A probe round for `peer` began at `now`: note when, and hold its outbound packets.
    fn round_began(&self, peer: PeerId, now: Now) {
        lock(&self.round_began).insert(peer, now);
        let mut held = lock(&self.held);
        held.entry(peer).or_insert_with(|| Held {
            since_ms: now.millis(),
            packets: Vec::new(),
        });
        self.holding.store(true, Ordering::Release);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Sends what was held for `peer` to its current endpoint, in order, and ends the hold.
    /// The lock stays taken while sending, so the outbound path, which waits for it, cannot
    /// overtake the held packets.
    fn release(&self, io: &dyn OuterSockets, sad: &Sad, peer: PeerId) {
        let mut held = lock(&self.held);
        let Some(hold) = held.remove(&peer) else {
            return;
        };
        let snapshot = sad.load();
        if let Some(endpoint) = snapshot.endpoint(peer) {
            let to = Observed::of_endpoint(&endpoint);
            for packet in &hold.packets {
                let route = crate::wire::ipv6::Packet::new_checked(&packet[..])
                    .ok()
                    .and_then(|ip| snapshot.outbound(ip.dst_addr()));
                if let Some(route) = route {
                    self.seal_and_send(io, &route.pair, packet, to);
                }
            }
            if !hold.packets.is_empty() {
                tracing::debug!(
                    "roaming: {peer}: {} packet(s) held during the probe sent to {to}",
                    hold.packets.len()
                );
            }
        }
        self.holding.store(!held.is_empty(), Ordering::Release);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The switches.
    pub fn config(&self) -> &RoamingConfig {
        &self.config
    }

    /// True when the server role is on (the inbound path then compares outer sources).
    #[inline]
    pub fn accepts_moves(&self) -> bool {
        self.config.accept_moves
    }

    /// A fresh nonce from the OS generator; `None` (no probe) if it fails.
    fn nonce(&self) -> Option<Nonce> {
        let mut nonce = [0u8; return_routability::NONCE_LEN];
        match self.rng.fill(&mut nonce) {
            Ok(()) => Some(nonce),
            Err(_) => {
                tracing::error!("roaming: no randomness for a probe nonce; not probing");
                None
            }
        }
    }

    /// Everything counted so far.
    pub fn report(&self) -> RoamingReport {
        RoamingReport {
            peers: lock(&self.checker).report(),
            local_address_changes: self.local_address_changes.load(Ordering::Relaxed),
            announcements_sent: self.announcements_sent.load(Ordering::Relaxed),
            probes_answered: self.probes_answered.load(Ordering::Relaxed),
        }
    }

    /// What the inbound path does for roaming with every packet `pair` accepted (sequence
    /// number `seq`, outer source `from`): one cheap test of the inner packet for the override
    /// NA and the probe and its answer, and on a server one comparison of the outer source with
    /// the peer's endpoint, at `now`. Returns true when the packet was consumed (not for the TUN
    /// device).
    #[allow(clippy::too_many_arguments)] // the packet and where it came from, in full
    #[inline]
    pub fn after_open(
        &self,
        io: &dyn OuterSockets,
        sad: &Sad,
        snapshot: &Snapshot,
        pair: &SaPair,
        seq: u64,
        inner: &[u8],
        from: Observed,
        now: Now,
    ) -> bool {
        let consumed =
            may_be_roaming(inner) && self.inbound(io, sad, snapshot, pair, seq, inner, from, now);
        if self.config.accept_moves
            && let Some(endpoint) = snapshot.endpoint(pair.peer())
            && !from.is(&endpoint)
        {
            self.new_source(io, sad, pair, from, now);
        }
        consumed
    }

    /// An inner packet that passed [`may_be_roaming`], accepted on `pair` with ESP sequence
    /// number `seq` from outer source `from`. Returns true when the roaming code consumed it
    /// (an NA the server checks, a probe we answered, an answer to our probe): it must not go
    /// into the TUN device.
    #[allow(clippy::too_many_arguments)] // the packet and where it came from, in full
    pub fn inbound(
        &self,
        io: &dyn OuterSockets,
        sad: &Sad,
        snapshot: &Snapshot,
        pair: &SaPair,
        seq: u64,
        inner: &[u8],
        from: Observed,
        now: Now,
    ) -> bool {
        let Some(endpoint) = snapshot.endpoint(pair.peer()) else {
            return false;
        };
        match inner[crate::wire::ipv6::HEADER_LEN] {
            TYPE_ECHO_REQUEST => self.answer_probe(io, pair, inner, &endpoint),
            TYPE_NEIGHBOR_ADVERT if self.config.accept_moves => {
                self.override_na(io, sad, pair, seq, inner, (from, &endpoint), now);
                true
            }
            TYPE_ECHO_REPLY if self.config.accept_moves => {
                self.probe_answer(io, sad, pair, inner, from, now)
            }
            _ => false,
        }
    }

    /// Authenticated ESP on `pair` came from `from`, which is not the peer's endpoint in the
    /// data thread's snapshot (server role): perhaps a NAT rebinding. Probes `from`
    /// (rate-limited, one round at a time) unless the SAD's current endpoint is there already
    /// (the snapshot of a batch can be a switch behind).
    pub fn new_source(
        &self,
        io: &dyn OuterSockets,
        sad: &Sad,
        pair: &SaPair,
        from: Observed,
        now: Now,
    ) {
        let Some(endpoint) = sad.load().endpoint(pair.peer()) else {
            return;
        };
        if from.is(&endpoint) {
            return;
        }
        let endpoint = &endpoint;
        let probe = lock(&self.checker).handle_new_source(
            now.millis(),
            pair.peer(),
            from,
            endpoint,
            || self.nonce(),
        );
        if let Some(probe) = probe {
            self.round_began(pair.peer(), now);
            self.send_probe(io, pair, &probe);
            tracing::debug!(
                "roaming: {}: authenticated ESP from {from}, not from its endpoint {endpoint}: probing",
                sad.peer_label(pair.peer())
            );
        }
    }

    fn answer_probe(
        &self,
        io: &dyn OuterSockets,
        pair: &SaPair,
        inner: &[u8],
        endpoint: &Endpoint,
    ) -> bool {
        let mut answer = [0u8; SCRATCH];
        let Some(len) = return_routability::answer_probe(inner, self.link_local, &mut answer)
        else {
            return false;
        };
        // The answer goes where we always send: to the peer's endpoint, from whatever source
        // the kernel picks for it now (that source is what the probe checks).
        self.seal_and_send(io, pair, &answer[..len], Observed::of_endpoint(endpoint));
        self.probes_answered.fetch_add(1, Ordering::Relaxed);
        *lock(&self.probes_answered_from)
            .entry(pair.peer())
            .or_insert(0) += 1;
        true
    }

    #[allow(clippy::too_many_arguments)] // the packet and where it came from, in full
    fn override_na(
        &self,
        io: &dyn OuterSockets,
        sad: &Sad,
        pair: &SaPair,
        seq: u64,
        inner: &[u8],
        (from, endpoint): (Observed, &Endpoint),
        now: Now,
    ) {
        let rules = NaRules {
            remote_ts: pair.remote_ts(),
            own_addresses: &self.own_addresses,
        };
        let verdict = lock(&self.checker).handle_na(
            now.millis(),
            pair.peer(),
            pair.spi_in(),
            seq,
            inner,
            &rules,
            from,
            endpoint,
            || self.nonce(),
        );
        match verdict {
            NaVerdict::Refused(reason) => {
                pair.count_drop(DropReason::OverrideNaRefused);
                self.log_refusal(
                    sad,
                    pair.peer(),
                    reason,
                    format_args!("override NA (ESP seq {seq}) from {from}"),
                    now,
                );
            }
            NaVerdict::AtEndpoint(_) => {}
            NaVerdict::Probe(na, probe) => {
                self.round_began(pair.peer(), now);
                self.send_probe(io, pair, &probe);
                tracing::debug!(
                    "roaming: {}: override NA for {} (option {}) from {from}, endpoint {endpoint}: probing",
                    sad.peer_label(pair.peer()),
                    na.target,
                    na.lladdr
                );
            }
            NaVerdict::Waiting(_) => {}
        }
    }

    fn probe_answer(
        &self,
        io: &dyn OuterSockets,
        sad: &Sad,
        pair: &SaPair,
        inner: &[u8],
        from: Observed,
        now: Now,
    ) -> bool {
        let Some(nonce) = return_routability::answer_nonce(inner) else {
            return false;
        };
        let Some(current) = sad.load().endpoint(pair.peer()) else {
            return true;
        };
        let verdict =
            lock(&self.checker).handle_answer(now.millis(), pair.peer(), from, &nonce, &current);
        match verdict {
            AnswerVerdict::Switch {
                to,
                elapsed_ms,
                trigger,
            } => self.switch(io, sad, pair.peer(), to, (elapsed_ms, trigger), now),
            AnswerVerdict::AlreadyThere => {
                lock(&self.round_began).remove(&pair.peer());
                self.release(io, sad, pair.peer())
            }
            AnswerVerdict::WrongAddress { expected } => {
                pair.count_drop(DropReason::OverrideNaRefused);
                self.log_refusal(
                    sad,
                    pair.peer(),
                    MoveRefusal::ProbeWrongAddress,
                    format_args!("probe answer from {from}, but {expected} was probed"),
                    now,
                );
            }
            AnswerVerdict::Stale => {}
        }
        true
    }

    fn switch(
        &self,
        io: &dyn OuterSockets,
        sad: &Sad,
        peer: PeerId,
        to: Observed,
        (elapsed_ms, trigger): (u64, Trigger),
        now: Now,
    ) {
        let began = lock(&self.round_began).remove(&peer);
        let Some(old) = sad.load().endpoint(peer) else {
            self.release(io, sad, peer);
            return;
        };
        if to.is(&old) {
            self.release(io, sad, peer);
            return;
        }
        let new = to.moved(&old, io.udp_port());
        let moved = sad.update_endpoint(peer, new);
        // Whatever was held goes where the peer is now (the new endpoint, unless refused).
        self.release(io, sad, peer);
        if let Err(error) = moved {
            tracing::warn!(
                "roaming: {}: moving to {new}: {error}",
                sad.peer_label(peer)
            );
            return;
        }
        self.events.send(Event::EndpointMoved { peer, old, new });
        let moves = lock(&self.checker)
            .report()
            .iter()
            .find(|p| p.peer == peer)
            .map_or(0, |p| p.moves);
        let why = match trigger {
            Trigger::OverrideNa => "override NA",
            Trigger::NewSource => "first authenticated packet from there",
        };
        // The one line of a move at the default level (the probing before it is detail).
        tracing::info!(
            "roaming: {} moved {} -> {}: {} from the {why} to the switch (moves: {moves})",
            sad.peer_label(peer),
            Observed::of_endpoint(&old),
            to,
            match began {
                Some(began) => format!("{:.2} ms", now.since(began).as_secs_f64() * 1000.0),
                None => format!("{elapsed_ms} ms"),
            }
        );
    }

    fn send_probe(&self, io: &dyn OuterSockets, pair: &SaPair, probe: &Probe) {
        let mut packet = [0u8; SCRATCH];
        match return_routability::emit_probe(
            self.link_local,
            &probe.nonce,
            probe.try_no,
            &mut packet,
        ) {
            Ok(len) => self.seal_and_send(io, pair, &packet[..len], probe.to),
            Err(error) => tracing::warn!("roaming: building a probe: {error}"),
        }
    }

    fn seal_and_send(&self, io: &dyn OuterSockets, pair: &SaPair, inner: &[u8], to: Observed) {
        let mut esp = [0u8; SCRATCH];
        let Ok(len) = pair.seal(inner, &mut esp) else {
            // Counted by the pair (hard limit, sequence exhausted).
            return;
        };
        if let Err(error) = io.send_esp(to, &esp[..len]) {
            tracing::debug!("roaming: sending to {to}: {error}");
        }
    }

    fn log_refusal(
        &self,
        sad: &Sad,
        peer: PeerId,
        reason: MoveRefusal,
        what: std::fmt::Arguments<'_>,
        now: Now,
    ) {
        let now = now.millis();
        {
            let mut logged = lock(&self.logged);
            let last = logged.entry((peer, reason)).or_insert(u64::MAX);
            if *last != u64::MAX && now.saturating_sub(*last) < 1000 {
                return;
            }
            *last = now;
        }
        let total = lock(&self.checker)
            .report()
            .iter()
            .find(|p| p.peer == peer)
            .map_or(0, |p| p.refused(reason));
        tracing::warn!(
            "roaming: {}: refused ({reason}, {total} so far): {what}",
            sad.peer_label(peer)
        );
    }

    /// The newest pair of `peer` in `snapshot` (it seals what we send on our own).
    fn newest_pair(snapshot: &Snapshot, peer: PeerId) -> Option<&Arc<SaPair>> {
        snapshot.pairs().filter(|p| p.peer() == peer).last()
    }

    /// Packets received from `peer` so far, over all its pairs, without the probes we
    /// answered: what tells the client that the server follows its new address.
    fn rx_from(&self, snapshot: &Snapshot, peer: PeerId) -> u64 {
        let received: u64 = snapshot
            .pairs()
            .filter(|p| p.peer() == peer)
            .map(|p| p.rx_packets())
            .sum();
        let probes = lock(&self.probes_answered_from)
            .get(&peer)
            .copied()
            .unwrap_or(0);
        received.saturating_sub(probes)
    }

    /// Client role: the kernel announced address or route changes. Looks at the source towards
    /// every peer; where it changed, re-binds, moves the endpoint and announces at once. The
    /// clock measures how long that took, for the log.
    fn local_address_event(
        &self,
        io: &dyn OuterSockets,
        sad: &Sad,
        events: &[LinkEvent],
        clock: &Clock,
    ) {
        let noticed = clock.now();
        let snapshot = sad.load();
        let mut peers: Vec<PeerId> = snapshot.pairs().map(|p| p.peer()).collect();
        peers.sort_unstable();
        peers.dedup();
        let mut sources: HashMap<Ipv4Addr, Option<Ipv4Addr>> = HashMap::new();
        let mut changes = Vec::new();
        for peer in peers {
            let Some(old) = snapshot.endpoint(peer) else {
                continue;
            };
            let source = *sources
                .entry(old.remote)
                .or_insert_with(|| local_address::source_towards(old.remote).ok());
            match source {
                Some(source) if source != old.local => changes.push((peer, old, source)),
                _ => {}
            }
        }
        if changes.is_empty() {
            // No endpoint moved (perhaps no SA is up): a client waiting to reconnect should
            // try now, from wherever its source address is.
            self.events.send(Event::NetworkChanged);
            return;
        }
        drop(snapshot);
        let mut rebound: Vec<(Ipv4Addr, Ipv4Addr)> = Vec::new();
        for (_, old, source) in &changes {
            if rebound.iter().any(|(o, _)| o == &old.local) {
                continue;
            }
            match io.rebind(old.local, *source) {
                Ok(true) => rebound.push((old.local, *source)),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(
                        "roaming: re-binding from {} to {source}: {error}",
                        old.local
                    )
                }
            }
        }
        let now = clock.now().millis();
        for (peer, old, source) in &changes {
            let new = Endpoint {
                local: *source,
                ..*old
            };
            if let Err(error) = sad.update_endpoint(*peer, new) {
                tracing::warn!("roaming: {}: {error}", sad.peer_label(*peer));
                continue;
            }
            self.local_address_changes.fetch_add(1, Ordering::Relaxed);
            let snapshot = sad.load();
            let target = Self::newest_pair(&snapshot, *peer).and_then(|pair| {
                announce::announce_target(
                    self.config.announce_target,
                    &self.tun_addresses,
                    pair.local_ts(),
                )
            });
            match target {
                Some(target) => {
                    let rx = self.rx_from(&snapshot, *peer);
                    let first = lock(&self.announcer).start(*peer, target, *source, now, rx);
                    self.announce(io, &snapshot, &first);
                }
                None => tracing::warn!(
                    "roaming: {}: no tunnel address to announce (set announce_target)",
                    sad.peer_label(*peer)
                ),
            }
            self.events.send(Event::EndpointMoved {
                peer: *peer,
                old: *old,
                new,
            });
            let sent_after = clock.now().since(noticed).as_secs_f64() * 1000.0;
            // The one line of a move at the default level; what the kernel said is detail.
            tracing::info!(
                "roaming: our address moved {} -> {source}; override NA sent to {} {sent_after:.2} ms after the kernel's notice",
                old.local,
                sad.peer_label(*peer)
            );
            tracing::debug!(
                "roaming: the kernel's notice: {}{}",
                events
                    .iter()
                    .map(LinkEvent::describe)
                    .collect::<Vec<_>>()
                    .join(", "),
                if rebound.is_empty() {
                    String::new()
                } else {
                    format!("; sockets re-bound to {source}")
                }
            );
        }
    }

    fn announce(&self, io: &dyn OuterSockets, snapshot: &Snapshot, announce: &Announce) {
        let (Some(pair), Some(endpoint)) = (
            Self::newest_pair(snapshot, announce.peer),
            snapshot.endpoint(announce.peer),
        ) else {
            return;
        };
        let mut na = [0u8; SCRATCH];
        match override_na::emit_override_na(
            self.link_local,
            announce.target,
            announce.lladdr,
            &mut na,
        ) {
            Ok(len) => {
                self.seal_and_send(io, pair, &na[..len], Observed::of_endpoint(&endpoint));
                self.announcements_sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => tracing::warn!("roaming: building the override NA: {error}"),
        }
    }

    /// The timers of both roles at `clock_now`: the client's NA repetitions, the server's probe
    /// retransmissions and timeouts, holds that lasted long enough (the roaming thread calls
    /// it; so do harnesses that drive time).
    pub fn on_timers(&self, io: &dyn OuterSockets, sad: &Sad, clock_now: Now) {
        let now = clock_now.millis();
        let snapshot = sad.load();
        let (due, finished) = lock(&self.announcer).poll(now, |peer| self.rx_from(&snapshot, peer));
        for announce in &due {
            self.announce(io, &snapshot, announce);
        }
        for end in finished {
            match end {
                Finished::Answered {
                    peer,
                    after_ms,
                    attempts,
                } => tracing::debug!(
                    "roaming: {} reaches us again {after_ms} ms after the change ({attempts} NA(s) sent)",
                    sad.peer_label(peer)
                ),
                Finished::GaveUp { peer, attempts } => tracing::warn!(
                    "roaming: {}: nothing received since the change, {attempts} NA(s) sent; giving up announcing",
                    sad.peer_label(peer)
                ),
            }
        }
        let fired = lock(&self.checker).poll(now);
        for timer in fired {
            match timer {
                Timer::Retransmit(probe) => {
                    if let Some(pair) = Self::newest_pair(&snapshot, probe.peer) {
                        self.send_probe(io, pair, &probe);
                    }
                }
                Timer::Expired { peer, target } => {
                    lock(&self.round_began).remove(&peer);
                    self.release(io, sad, peer);
                    self.log_refusal(
                        sad,
                        peer,
                        MoveRefusal::ProbeTimeout,
                        format_args!("no authenticated answer from {target}"),
                        clock_now,
                    )
                }
            }
        }
        // Holds that lasted long enough: the peer's packets go to its current endpoint.
        let expired: Vec<PeerId> = lock(&self.held)
            .iter()
            .filter(|(_, hold)| now.saturating_sub(hold.since_ms) >= HOLD_MS)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in expired {
            self.release(io, sad, peer);
        }
    }

    fn next_deadline_ms(&self) -> Option<u64> {
        let announcer = lock(&self.announcer).next_deadline_ms();
        let checker = lock(&self.checker).next_deadline_ms();
        let hold = lock(&self.held)
            .values()
            .map(|hold| hold.since_ms + HOLD_MS)
            .min();
        [announcer, checker, hold].into_iter().flatten().min()
    }

    fn forget_gone(&self, sad: &Sad) {
        let snapshot = sad.load();
        lock(&self.checker).retain(
            |spi| snapshot.inbound(spi).is_some(),
            |peer| snapshot.endpoint(peer).is_some(),
        );
    }
}

/// The roaming thread: netlink (client role), the announcement and probe timers, a log line
/// with the counters whenever they changed. It reads `clock` once a turn. Returns when `stop`
/// is set.
pub fn run(roaming: &Roaming, io: &dyn OuterSockets, sad: &Sad, stop: &AtomicBool, clock: &Clock) {
    let mut watcher = if roaming.config.follow_local_address {
        match AddressWatcher::open() {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::error!("roaming: cannot watch address changes (netlink): {error}");
                None
            }
        }
    } else {
        None
    };
    let mut last_report = roaming.report();
    let mut last_tick = clock.now().millis();
    let mut last_logged = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = clock.now().millis();
        let tick_ms = TICK.as_millis() as u64;
        let wait = roaming.next_deadline_ms().map_or(tick_ms, |deadline| {
            deadline.saturating_sub(now).min(tick_ms)
        });
        let readable = match &watcher {
            Some(w) => crate::sockets::wait_readable(w.fd(), wait as i32),
            None => {
                std::thread::sleep(Duration::from_millis(wait));
                false
            }
        };
        if readable && let Some(w) = watcher.as_mut() {
            let events = w.drain();
            if !events.is_empty() {
                roaming.local_address_event(io, sad, &events, clock);
            }
        }
        let turn = clock.now();
        roaming.on_timers(io, sad, turn);
        let now = turn.millis();
        if now.saturating_sub(last_tick) >= tick_ms {
            last_tick = now;
            roaming.forget_gone(sad);
            let report = roaming.report();
            // At most one line a second, so that a storm does not flood the log.
            if report != last_report && now.saturating_sub(last_logged) >= 1000 {
                last_logged = now;
                match serde_json::to_string(&report) {
                    // Machine-read (tests, debugging): not for the default log.
                    Ok(json) => tracing::debug!("roaming: report {json}"),
                    Err(error) => tracing::debug!("roaming report: {error}"),
                }
                last_report = report;
            }
        }
    }
}
