//! The SA database: inbound SAs by SPI, outbound SAs by inner destination prefix (longest match
//! over each pair's remote traffic selectors), many peers, one outer endpoint per peer.
//!
//! The data threads read a [`Snapshot`] without a lock (an `ArcSwap` that the control path
//! replaces). A new snapshot shares all of the old one's tables but the shards a change touched
//! ([`shards`]), and the control path finds what a change touches through its own indexes
//! ([`announced`]): an install or delete costs the same with one pair installed or a pair per
//! home. The state an SA pair changes per packet (sequence number, replay window, lifetimes,
//! counters) lives in the shared [`SaPair`], so a new snapshot carries it over.
//!
//! Make-before-break: when two pairs announce the same prefix, the newest wins for outbound
//! traffic at once; the older keeps receiving until it is deleted, and takes the outbound traffic
//! back if the newer one is deleted first.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::net::Ipv6Addr;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, Guard};
use hometun_control::{
    AeadAlg, ChildSa, ControlError, CounterReport, Direction, DropReason, Encapsulation, Endpoint,
    EndpointError, Event, KeyError, LimitKind, PeerId, SaCounters, Spi,
};
use ipnet::Ipv6Net;

use crate::aead::AeadBackend;
use crate::clock::Now;
use crate::counters::DropCounters;
use crate::esp::{EspOpener, EspSealer, NEXT_HEADER_IPV6, NEXT_HEADER_NONE};
use crate::events::EventSender;
use crate::lifetime::{Charge, Lifetime, TimeCheck};
use crate::peer_names::{PeerLabel, PeerNames};
use crate::replay::{MAX_WINDOW, ReplayError, ReplayWindow};
use announced::Announced;
use shards::Shards;

mod announced;
pub mod key_hash;
mod shards;

/// Per-pair traffic counters (accepted packets; drops are in [`DropCounters`]).
#[derive(Debug, Default)]
struct TrafficCounters {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
}

/// One installed CHILD SA pair with the state its packets change.
pub struct SaPair {
    peer: PeerId,
    spi_in: Spi,
    spi_out: Spi,
    alg: AeadAlg,
    local_ts: Vec<Ipv6Net>,
    remote_ts: Vec<Ipv6Net>,
    esn: bool,
    nat_keepalive_seconds: Option<u32>,
    /// Order of installation: the newest pair wins a prefix.
    generation: u64,
    installed_at: u64,
    sealer: EspSealer,
    opener: EspOpener,
    /// The next outbound sequence number (starts at 1, RFC 4303 3.3.3).
    next_seq: AtomicU64,
    seq_exhausted_reported: AtomicBool,
    /// Held from check to insert, so one sequence number can never pass twice.
    replay: Mutex<ReplayWindow>,
    inbound: Lifetime,
    outbound: Lifetime,
    traffic: TrafficCounters,
    drops: DropCounters,
    /// Second on the forwarder's clock of the last accepted inbound packet, plus one (0: never).
    last_rx: AtomicU64,
    events: EventSender,
}

impl std::fmt::Debug for SaPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaPair")
            .field("peer", &self.peer)
            .field("spi_in", &self.spi_in)
            .field("spi_out", &self.spi_out)
            .field("remote_ts", &self.remote_ts)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// A packet that passed every inbound check: the inner IPv6 packet's place in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The inner packet, within the buffer given to [`SaPair::open`].
    pub inner: Range<usize>,
    /// Its authenticated sequence number (the override NA check needs it).
    pub seq: u64,
}

impl SaPair {
    /// The pair's peer.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// The inbound SPI (names the pair).
    pub fn spi_in(&self) -> Spi {
        self.spi_in
    }

    /// The outbound SPI.
    pub fn spi_out(&self) -> Spi {
        self.spi_out
    }

    /// Our inner prefixes.
    pub fn local_ts(&self) -> &[Ipv6Net] {
        &self.local_ts
    }

    /// The peer's inner prefixes.
    pub fn remote_ts(&self) -> &[Ipv6Net] {
        &self.remote_ts
    }

    /// NAT keepalive interval, when one was asked for.
    pub fn nat_keepalive_seconds(&self) -> Option<u32> {
        self.nat_keepalive_seconds
    }

    /// Packets received and accepted so far (the client's announcer watches it: ESP from the
    /// server again means the server follows our new address).
    pub fn rx_packets(&self) -> u64 {
        self.traffic.rx_packets.load(Ordering::Relaxed)
    }

    /// Counts a drop charged to this pair.
    pub fn count_drop(&self, reason: DropReason) {
        self.drops.add(reason);
    }

    /// Drops of one reason so far.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops.get(reason)
    }

    /// Sets the next outbound sequence number, for the tests of exhaustion. Only there: reusing
    /// a sequence number reuses a GCM nonce.
    #[cfg(test)]
    pub(crate) fn set_next_seq_for_test(&self, seq: u64) {
        self.next_seq.store(seq, Ordering::Relaxed);
    }

    /// Seals an inner IPv6 packet into `out` (which starts at the SPI) and returns the length of
    /// the ESP packet. Checks the outbound lifetime and the sequence space first; every refusal
    /// is counted here.
    pub fn seal(&self, inner: &[u8], out: &mut [u8]) -> Result<usize, DropReason> {
        let seq = self.take_seq(inner.len())?;
        let sealed = self.sealer.seal(seq, inner, NEXT_HEADER_IPV6, out);
        self.count_sealed(inner.len(), sealed)
    }

    /// Like [`SaPair::seal`] for an inner packet of `inner_len` bytes already in
    /// `buf[esp::HEADROOM..]` (read there, to save a copy); the ESP packet is written from
    /// `buf[0]`.
    pub fn seal_in_place(&self, buf: &mut [u8], inner_len: usize) -> Result<usize, DropReason> {
        let seq = self.take_seq(inner_len)?;
        let sealed = self
            .sealer
            .seal_in_place(seq, buf, inner_len, NEXT_HEADER_IPV6);
        self.count_sealed(inner_len, sealed)
    }

    /// The next outbound sequence number, once the lifetime and the sequence space allow an
    /// inner packet of `inner_len` bytes (every refusal counted).
    fn take_seq(&self, inner_len: usize) -> Result<u64, DropReason> {
        if self.outbound.is_dead() {
            self.drops.add(DropReason::HardLimit);
            return Err(DropReason::HardLimit);
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let last = if self.esn {
            u64::MAX - 1
        } else {
            u64::from(u32::MAX)
        };
        if seq > last {
            // Never wrap: the next number would repeat a GCM nonce. Stop and ask for a rekey.
            self.next_seq.store(last + 1, Ordering::Relaxed);
            if !self.seq_exhausted_reported.swap(true, Ordering::Relaxed) {
                self.emit(Event::SeqExhausted {
                    peer: self.peer,
                    spi_in: self.spi_in,
                });
            }
            self.drops.add(DropReason::SeqExhausted);
            return Err(DropReason::SeqExhausted);
        }
        match self.outbound.charge(inner_len as u64) {
            Charge::Carry => {}
            Charge::CarrySoft(kind) => self.limit_event(false, Direction::Outbound, kind),
            Charge::CarryHard(kind) => self.limit_event(true, Direction::Outbound, kind),
            Charge::DropHard(kind) => {
                self.limit_event(true, Direction::Outbound, kind);
                self.drops.add(DropReason::HardLimit);
                return Err(DropReason::HardLimit);
            }
            Charge::Dead => {
                self.drops.add(DropReason::HardLimit);
                return Err(DropReason::HardLimit);
            }
        }
        Ok(seq)
    }

    fn count_sealed(
        &self,
        inner_len: usize,
        sealed: Result<usize, crate::esp::SealError>,
    ) -> Result<usize, DropReason> {
        match sealed {
            Ok(len) => {
                self.traffic.tx_packets.fetch_add(1, Ordering::Relaxed);
                self.traffic
                    .tx_bytes
                    .fetch_add(inner_len as u64, Ordering::Relaxed);
                Ok(len)
            }
            Err(_) => {
                // Only a too-small output buffer makes sealing fail: a bug of the caller.
                self.drops.add(DropReason::Malformed);
                Err(DropReason::Malformed)
            }
        }
    }

    /// Opens an ESP packet (starting at the SPI, decrypted in place) for this pair: replay check,
    /// AEAD open, replay insert, lifetime, ingress filter, at `now` (the data thread reads its
    /// clock once per batch). Every refusal is counted here.
    pub fn open(&self, wire_seq: u32, packet: &mut [u8], now: Now) -> Result<Accepted, DropReason> {
        if self.inbound.is_dead() {
            self.drops.add(DropReason::HardLimit);
            return Err(DropReason::HardLimit);
        }
        let (seq, opened) = {
            let mut window = self.replay.lock().unwrap_or_else(|e| e.into_inner());
            let seq = window.infer_seq(wire_seq);
            if let Err(error) = window.check(seq) {
                let reason = match error {
                    ReplayError::Duplicate => DropReason::Replay,
                    ReplayError::TooOld => DropReason::TooOld,
                };
                self.drops.add(reason);
                return Err(reason);
            }
            let opened = match self.opener.open(seq, packet) {
                Ok(opened) => opened,
                Err(_) => {
                    self.drops.add(DropReason::AuthFailed);
                    return Err(DropReason::AuthFailed);
                }
            };
            window.insert(seq);
            (seq, opened)
        };
        let inner = opened.inner.clone();
        match self.inbound.charge(inner.len() as u64) {
            Charge::Carry => {}
            Charge::CarrySoft(kind) => self.limit_event(false, Direction::Inbound, kind),
            Charge::CarryHard(kind) => self.limit_event(true, Direction::Inbound, kind),
            Charge::DropHard(kind) => {
                self.limit_event(true, Direction::Inbound, kind);
                self.drops.add(DropReason::HardLimit);
                return Err(DropReason::HardLimit);
            }
            Charge::Dead => {
                self.drops.add(DropReason::HardLimit);
                return Err(DropReason::HardLimit);
            }
        }
        self.last_rx.store(now.secs() + 1, Ordering::Relaxed);
        if opened.next_header == NEXT_HEADER_NONE {
            // A dummy packet: authenticated, so the peer is alive; nothing to deliver.
            return Ok(Accepted {
                inner: inner.start..inner.start,
                seq,
            });
        }
        let Some((source, destination)) = packet.get(inner.clone()).and_then(inner_addresses)
        else {
            self.drops.add(DropReason::Malformed);
            return Err(DropReason::Malformed);
        };
        if opened.next_header != NEXT_HEADER_IPV6 {
            self.drops.add(DropReason::Malformed);
            return Err(DropReason::Malformed);
        }
        if link_scoped(source, destination) {
            if !link_scoped_permitted(&packet[inner.clone()]) {
                self.drops.add(DropReason::LinkScoped);
                return Err(DropReason::LinkScoped);
            }
        } else if !self.remote_ts.iter().any(|net| net.contains(&source)) {
            // RFC 4891: the inner source must be one the peer may use.
            self.drops.add(DropReason::IngressFilter);
            return Err(DropReason::IngressFilter);
        }
        self.traffic.rx_packets.fetch_add(1, Ordering::Relaxed);
        self.traffic
            .rx_bytes
            .fetch_add(inner.len() as u64, Ordering::Relaxed);
        Ok(Accepted { inner, seq })
    }

    /// Checks the time limits (called about once a second by the driver).
    pub fn check_time(&self, now: Now) {
        let now = now.secs();
        for (lifetime, direction) in [
            (&self.inbound, Direction::Inbound),
            (&self.outbound, Direction::Outbound),
        ] {
            match lifetime.check_time(now) {
                TimeCheck::Quiet => {}
                TimeCheck::Soft => self.limit_event(false, direction, LimitKind::Time),
                TimeCheck::Hard => self.limit_event(true, direction, LimitKind::Time),
            }
        }
    }

    fn limit_event(&self, hard: bool, direction: Direction, kind: LimitKind) {
        let (peer, spi_in) = (self.peer, self.spi_in);
        self.emit(if hard {
            Event::HardLimit {
                peer,
                spi_in,
                direction,
                kind,
            }
        } else {
            Event::SoftLimit {
                peer,
                spi_in,
                direction,
                kind,
            }
        });
    }

    fn emit(&self, event: Event) {
        // Never blocks; limit events are never dropped (see crate::events).
        self.events.send(event);
    }

    fn report(&self, endpoint: Endpoint, now: Now) -> SaCounters {
        let now = now.secs();
        let last_rx = self.last_rx.load(Ordering::Relaxed);
        SaCounters {
            peer: self.peer,
            spi_in: self.spi_in,
            spi_out: self.spi_out,
            endpoint,
            alg: self.alg.name().to_string(),
            rx_packets: self.traffic.rx_packets.load(Ordering::Relaxed),
            rx_bytes: self.traffic.rx_bytes.load(Ordering::Relaxed),
            tx_packets: self.traffic.tx_packets.load(Ordering::Relaxed),
            tx_bytes: self.traffic.tx_bytes.load(Ordering::Relaxed),
            drops: self.drops.nonzero(),
            // Both directions are installed with the same limits.
            limits: self.inbound.limits(),
            last_rx_seconds_ago: (last_rx > 0).then(|| now.saturating_sub(last_rx - 1)),
            age_seconds: now.saturating_sub(self.installed_at),
        }
    }
}

/// Source and destination of an inner IPv6 packet, if it is one.
fn inner_addresses(inner: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr)> {
    crate::wire::ipv6::Packet::new_checked(inner)
        .ok()
        .map(|p| (p.src_addr(), p.dst_addr()))
}

/// Link-local traffic between the two ends of the tunnel (neighbour discovery, the override NA
/// to ff02::1, pings to fe80::%tun): from a link-local source to a link-local or link-scope
/// multicast destination. It cannot leave the tunnel's link, so the traffic selectors, which
/// name routable prefixes, do not apply to it.
pub fn link_scoped(source: Ipv6Addr, destination: Ipv6Addr) -> bool {
    let link_local = |a: Ipv6Addr| a.segments()[0] & 0xffc0 == 0xfe80;
    let link_multicast = |a: Ipv6Addr| a.segments()[0] & 0xff0f == 0xff02;
    link_local(source) && (link_local(destination) || link_multicast(destination))
}

/// Whether a [`link_scoped`] packet from the tunnel's far end may go into the TUN device: only
/// ICMPv6 (behind any hop-by-hop or destination options headers), and of it no Router
/// Solicitation, Router Advertisement or Redirect. The far end is never our router: a home's
/// RA taken by a server with forwarding on (`accept_ra` 2) would route the server's traffic into
/// the tunnel (RFC 4861 6.1.2, 8.1). Everything else link-scoped (routing protocols to ff02::,
/// DHCPv6) is no part of the tunnel either.
pub fn link_scoped_permitted(packet: &[u8]) -> bool {
    const HOP_BY_HOP: u8 = 0;
    const DESTINATION_OPTIONS: u8 = 60;
    const ICMPV6: u8 = 58;
    const ROUTER_SOLICITATION: u8 = 133;
    const ROUTER_ADVERTISEMENT: u8 = 134;
    const REDIRECT: u8 = 137;
    let Some(&first) = packet.get(6) else {
        return false;
    };
    let (mut next, mut offset) = (first, crate::wire::ipv6::HEADER_LEN);
    loop {
        match next {
            HOP_BY_HOP | DESTINATION_OPTIONS => {
                let (Some(&after), Some(&len)) = (packet.get(offset), packet.get(offset + 1))
                else {
                    return false;
                };
                next = after;
                offset += (usize::from(len) + 1) * 8;
            }
            ICMPV6 => {
                return packet.get(offset).is_some_and(|&kind| {
                    !matches!(kind, ROUTER_SOLICITATION | ROUTER_ADVERTISEMENT | REDIRECT)
                });
            }
            _ => return false,
        }
    }
}

/// Where an outbound packet goes: the pair that seals it and the peer's endpoint.
#[derive(Clone, Debug)]
pub struct Outbound {
    /// The pair (the newest for the longest matching prefix).
    pub pair: Arc<SaPair>,
    /// The peer's current endpoint.
    pub endpoint: Endpoint,
}

/// A consistent, read-only view of the SAD for the data threads.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    inbound: Shards<Spi, Arc<SaPair>>,
    /// By prefix length, longest first: masked network address -> route.
    outbound: Vec<(u8, Shards<u128, Outbound>)>,
    endpoints: Shards<PeerId, Endpoint>,
}

impl Snapshot {
    /// The pair whose inbound SPI this is.
    pub fn inbound(&self, spi: Spi) -> Option<&Arc<SaPair>> {
        self.inbound.get(&spi)
    }

    /// The route for an inner destination: longest prefix, newest pair.
    pub fn outbound(&self, destination: Ipv6Addr) -> Option<&Outbound> {
        let address = u128::from(destination);
        self.outbound
            .iter()
            .find_map(|(len, table)| table.get(&mask(address, *len)))
    }

    /// A peer's endpoint.
    pub fn endpoint(&self, peer: PeerId) -> Option<Endpoint> {
        self.endpoints.get(&peer).copied()
    }

    /// Every installed pair, oldest first.
    pub fn pairs(&self) -> impl Iterator<Item = &Arc<SaPair>> {
        let mut pairs: Vec<&Arc<SaPair>> = self.inbound.values().collect();
        pairs.sort_by_key(|p| p.generation);
        pairs.into_iter()
    }
}

fn mask(address: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        address & (u128::MAX << (128 - u32::from(len)))
    }
}

/// The control path's own record, from which snapshots are built.
#[derive(Debug, Default)]
struct Master {
    /// Every installed pair, by inbound SPI.
    pairs: HashMap<Spi, Arc<SaPair>>,
    /// Each peer's pairs, by inbound SPI.
    pairs_of_peer: HashMap<PeerId, Vec<Spi>>,
    endpoints: HashMap<PeerId, Endpoint>,
    announced: Announced,
    next_generation: u64,
    /// The next snapshot, changed in place; each published copy shares its shards.
    next: Snapshot,
}

impl Master {
    /// Points the outbound route of `net` at its newest announcer (with that peer's endpoint),
    /// or takes it out when no pair announces it.
    fn route(&mut self, net: &Ipv6Net) {
        let len = net.prefix_len();
        let key = mask(u128::from(net.network()), len);
        let route = self.announced.newest(net).map(|pair| Outbound {
            pair: pair.clone(),
            endpoint: self.endpoints[&pair.peer],
        });
        let tables = &mut self.next.outbound;
        let at = tables.iter().position(|(l, _)| *l == len);
        match (route, at) {
            (Some(route), Some(at)) => {
                tables[at].1.insert(key, route);
            }
            (Some(route), None) => {
                let mut table = Shards::default();
                table.insert(key, route);
                // Longest first.
                let at = tables.partition_point(|(l, _)| *l > len);
                tables.insert(at, (len, table));
            }
            (None, Some(at)) => {
                tables[at].1.remove(&key);
                if tables[at].1.is_empty() {
                    tables.remove(at);
                }
            }
            (None, None) => {}
        }
    }

    /// Routes every prefix of `peer`'s pairs again (its endpoint changed).
    fn route_peer(&mut self, peer: PeerId) {
        let nets: Vec<Ipv6Net> = self
            .pairs_of_peer
            .get(&peer)
            .into_iter()
            .flatten()
            .filter_map(|spi| self.pairs.get(spi))
            .flat_map(|pair| pair.remote_ts.iter().copied())
            .collect();
        for net in &nets {
            self.route(net);
        }
    }
}

/// The SA database. The data threads call [`Sad::load`]; the control path changes it.
#[derive(Debug)]
pub struct Sad {
    snapshot: ArcSwap<Snapshot>,
    master: Mutex<Master>,
    global_drops: DropCounters,
    events: EventSender,
    backend: AeadBackend,
    /// Milliseconds of the ticker's last [`Now`].
    clock: AtomicU64,
    /// The peers' identities, for log lines.
    names: PeerNames,
}

impl Sad {
    /// An empty database whose SAs report their events into `events` and use `backend` for AES-GCM.
    pub fn new(events: EventSender, backend: AeadBackend) -> Self {
        Sad {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            master: Mutex::new(Master::default()),
            global_drops: DropCounters::default(),
            events,
            backend,
            clock: AtomicU64::new(0),
            names: PeerNames::default(),
        }
    }

    /// Names `peer` for log lines, or forgets its name (`Request::NamePeer`).
    pub fn name_peer(&self, peer: PeerId, name: Option<String>) {
        self.names.set(peer, name);
    }

    /// How a log line names `peer`: its identity once the controller named it, else `peerN`.
    pub fn peer_label(&self, peer: PeerId) -> PeerLabel {
        self.names.label(peer)
    }

    /// A sender into the event channel (the data threads report through it too).
    pub fn events(&self) -> EventSender {
        self.events.clone()
    }

    /// The current snapshot (lock-free; keep it for a batch of packets, not forever).
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// The forwarder's time as the ticker last set it ([`Sad::set_now`]): what installs and
    /// counter reports, which come from the SA channel, go by.
    pub fn now(&self) -> Now {
        Now::from_millis(self.clock.load(Ordering::Relaxed))
    }

    /// Advances the forwarder's time and checks the time limits of every pair.
    pub fn set_now(&self, now: Now) {
        self.clock.store(now.millis(), Ordering::Relaxed);
        for pair in self.load().inbound.values() {
            pair.check_time(now);
        }
    }

    /// Counts a drop that no pair can be charged with.
    pub fn count_global_drop(&self, reason: DropReason) {
        self.global_drops.add(reason);
    }

    /// Global drops of one reason so far.
    pub fn global_drops(&self, reason: DropReason) -> u64 {
        self.global_drops.get(reason)
    }

    /// Installs a pair after checking it against itself and the installed pairs; on error
    /// nothing changes.
    pub fn install(&self, sa: &ChildSa) -> Result<Arc<SaPair>, ControlError> {
        validate_child_sa(sa)?;
        let mut master = self.master.lock().unwrap_or_else(|e| e.into_inner());
        if master.pairs.contains_key(&sa.spi_in) {
            return Err(ControlError::SpiInUse(sa.spi_in));
        }
        for mine in &sa.remote_ts {
            if let Some((theirs, other)) = master.announced.overlap(mine, sa.peer) {
                return Err(ControlError::SelectorOverlap {
                    remote_ts: *mine,
                    theirs,
                    peer: other.peer,
                    spi: other.spi_in,
                });
            }
        }
        let now = self.now().secs();
        let generation = master.next_generation;
        master.next_generation += 1;
        let pair = Arc::new(SaPair {
            peer: sa.peer,
            spi_in: sa.spi_in,
            spi_out: sa.spi_out,
            alg: sa.key_out.alg(),
            local_ts: sa.local_ts.clone(),
            remote_ts: sa.remote_ts.clone(),
            esn: sa.esn,
            nat_keepalive_seconds: sa.nat_keepalive_seconds,
            generation,
            installed_at: now,
            sealer: EspSealer::new(sa.spi_out, &sa.key_out, sa.esn, self.backend)
                .map_err(|error| bad_key(Direction::Outbound, error))?,
            opener: EspOpener::new(sa.spi_in, &sa.key_in, sa.esn, self.backend)
                .map_err(|error| bad_key(Direction::Inbound, error))?,
            next_seq: AtomicU64::new(1),
            seq_exhausted_reported: AtomicBool::new(false),
            replay: Mutex::new(ReplayWindow::new(sa.replay_window, sa.esn)),
            inbound: Lifetime::new(sa.limits, now),
            outbound: Lifetime::new(sa.limits, now),
            traffic: TrafficCounters::default(),
            drops: DropCounters::default(),
            last_rx: AtomicU64::new(0),
            events: self.events.clone(),
        });
        master.pairs.insert(sa.spi_in, pair.clone());
        master
            .pairs_of_peer
            .entry(sa.peer)
            .or_default()
            .push(sa.spi_in);
        master.announced.add(&pair);
        master.next.inbound.insert(sa.spi_in, pair.clone());
        // The newest install names where the peer is now: all of its routes follow.
        master.endpoints.insert(sa.peer, sa.endpoint);
        master.next.endpoints.insert(sa.peer, sa.endpoint);
        master.route_peer(sa.peer);
        self.publish(&master);
        Ok(pair)
    }

    /// Removes the pair with this inbound SPI; returns it (its prefixes may need no route).
    pub fn delete(&self, spi_in: Spi) -> Result<Arc<SaPair>, ControlError> {
        let mut master = self.master.lock().unwrap_or_else(|e| e.into_inner());
        let Some(pair) = master.pairs.remove(&spi_in) else {
            return Err(ControlError::UnknownSpi(spi_in));
        };
        master.announced.remove(&pair);
        master.next.inbound.remove(&spi_in);
        if let Entry::Occupied(mut spis) = master.pairs_of_peer.entry(pair.peer) {
            spis.get_mut().retain(|spi| *spi != spi_in);
            if spis.get().is_empty() {
                spis.remove();
                master.endpoints.remove(&pair.peer);
                master.next.endpoints.remove(&pair.peer);
            }
        }
        // An older pair of the peer takes a prefix back, or its route goes.
        for net in &pair.remote_ts {
            master.route(net);
        }
        self.publish(&master);
        Ok(pair)
    }

    /// Moves every pair of a peer to a new endpoint.
    pub fn update_endpoint(&self, peer: PeerId, endpoint: Endpoint) -> Result<(), ControlError> {
        validate_endpoint(&endpoint)?;
        let mut master = self.master.lock().unwrap_or_else(|e| e.into_inner());
        let Some(current) = master.endpoints.get_mut(&peer) else {
            return Err(ControlError::UnknownPeer(peer));
        };
        *current = endpoint;
        master.next.endpoints.insert(peer, endpoint);
        master.route_peer(peer);
        self.publish(&master);
        Ok(())
    }

    /// Every prefix some pair routes to (the routes the TUN device needs).
    pub fn routed_prefixes(&self) -> BTreeSet<Ipv6Net> {
        let master = self.master.lock().unwrap_or_else(|e| e.into_inner());
        master.announced.prefixes().collect()
    }

    /// Whether some pair routes to `net`.
    pub fn routes(&self, net: &Ipv6Net) -> bool {
        let master = self.master.lock().unwrap_or_else(|e| e.into_inner());
        master.announced.contains(net)
    }

    /// Every counter, at `now` on the forwarder's clock.
    pub fn counters(&self) -> CounterReport {
        let now = self.now();
        let master = self.master.lock().unwrap_or_else(|e| e.into_inner());
        let mut pairs: Vec<&Arc<SaPair>> = master.pairs.values().collect();
        // Oldest first, as installed.
        pairs.sort_by_key(|pair| pair.generation);
        let sas = pairs
            .into_iter()
            .map(|pair| {
                let endpoint = master
                    .endpoints
                    .get(&pair.peer)
                    .copied()
                    .expect("every installed peer has an endpoint");
                pair.report(endpoint, now)
            })
            .collect();
        CounterReport {
            sas,
            global_drops: self.global_drops.nonzero(),
            events_dropped: self.events.dropped(),
            roaming: Vec::new(),
        }
    }

    fn publish(&self, master: &Master) {
        self.snapshot.store(Arc::new(master.next.clone()));
    }
}

fn validate_endpoint(endpoint: &Endpoint) -> Result<(), ControlError> {
    if let Encapsulation::Udp {
        local_port,
        remote_port,
    } = endpoint.encap
        && (local_port == 0 || remote_port == 0)
    {
        return Err(ControlError::BadEndpoint(EndpointError::ZeroUdpPort));
    }
    Ok(())
}

/// Checks a pair on its own (the SAD checks it against the installed ones).
pub fn validate_child_sa(sa: &ChildSa) -> Result<(), ControlError> {
    if sa.spi_in.0 == 0 {
        return Err(ControlError::ZeroSpi(Direction::Inbound));
    }
    if sa.spi_out.0 == 0 {
        return Err(ControlError::ZeroSpi(Direction::Outbound));
    }
    sa.key_in
        .validate()
        .map_err(|error| bad_key(Direction::Inbound, error))?;
    sa.key_out
        .validate()
        .map_err(|error| bad_key(Direction::Outbound, error))?;
    if sa.key_in.alg() != sa.key_out.alg() {
        return Err(ControlError::MixedAlgorithms);
    }
    if sa.remote_ts.is_empty() {
        return Err(ControlError::NoRemoteTs);
    }
    if sa.replay_window > MAX_WINDOW {
        return Err(ControlError::ReplayWindowTooLarge {
            window: sa.replay_window,
            max: MAX_WINDOW,
        });
    }
    validate_endpoint(&sa.endpoint)
}

fn bad_key(direction: Direction, error: KeyError) -> ControlError {
    ControlError::BadKey { direction, error }
}

#[cfg(test)]
mod tests;
