//! The forwarder's receive path ([`hometun_forwarder::inbound::Receiver`]) driven by a harness
//! that plays the peers: it installs SA pairs with keys it knows, seals the fuzzer's inner
//! packets (traffic, override NAs, probes, answers to the server's probes, dummies, any
//! plaintext) with a real sealer at sequence numbers the fuzzer picks, and delivers them over
//! UDP 4500 or raw ESP from addresses the fuzzer picks, among corrupted packets and any bytes,
//! against one stateful [`Roaming`] on a clock the fuzzer moves.
//!
//! Each pair has a model beside it: a replay window and a lifetime of its own and an opener of
//! the other AES-GCM backend. Before each packet the model says what must become of it; the
//! pair's counters must show exactly that (so the window never moves on a packet that failed
//! the ICV, and every datagram is counted once). A peer's endpoint may move only on an
//! authentic answer, from the probed address, carrying the nonce of a probe the server sent
//! there.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::sync::Mutex;

use hometun_control::{
    AeadAlg, AeadKey, ChildSa, DropReason, Encapsulation, Endpoint, Event, Limits, PeerId,
    RoamingConfig, Spi,
};
use hometun_forwarder::aead::{AeadBackend, new_aead};
use hometun_forwarder::clock::Now;
use hometun_forwarder::counters::ALL_REASONS;
use hometun_forwarder::esp::{EspOpener, EspSealer, HEADROOM, NEXT_HEADER_IPV6, NEXT_HEADER_NONE};
use hometun_forwarder::events::{self, EventReceiver, EventSender};
use hometun_forwarder::inbound::{NAT_KEEPALIVE, NON_ESP_MARKER, Received, Receiver};
use hometun_forwarder::lifetime::{Charge, Lifetime};
use hometun_forwarder::replay::ReplayWindow;
use hometun_forwarder::roaming::return_routability::{
    Nonce, Observed, answer_nonce, answer_probe, emit_probe,
};
use hometun_forwarder::roaming::{OuterSockets, Roaming, override_na};
use hometun_forwarder::sad::{Sad, link_scoped, link_scoped_permitted};
use ipnet::Ipv6Net;

use crate::choices::Choices;

/// The server's outer address.
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The peers' link-local address in the tunnel.
const PEER_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);

/// Sockets that record what the roaming code sends.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<(Observed, Vec<u8>)>>,
}

impl OuterSockets for Recorder {
    fn send_esp(&self, to: Observed, esp: &[u8]) -> io::Result<()> {
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((to, esp.to_vec()));
        Ok(())
    }

    fn rebind(&self, _old: Ipv4Addr, _new: Ipv4Addr) -> io::Result<bool> {
        Ok(false)
    }

    fn udp_port(&self) -> u16 {
        4500
    }
}

/// The peer's side of one pair, and the model of ours.
struct Pair {
    peer: PeerId,
    spi_in: Spi,
    esn: bool,
    remote_ts: Vec<Ipv6Net>,
    /// Seals as the peer does, for our inbound SA.
    sealer: EspSealer,
    /// The same key, raw, for packets with any trailer.
    key_in: AeadKey,
    /// Opens what we send to the peer.
    peer_opener: EspOpener,
    /// The model: our opener with the other backend, our window, our lifetime.
    model_opener: EspOpener,
    window: ReplayWindow,
    lifetime: Lifetime,
    /// The peer's next sequence number.
    next_seq: u64,
    installed: bool,
}

/// Per pair (by inbound SPI) packets received and drops by reason; the global drops.
type Counters = (BTreeMap<u32, (u64, Vec<u64>)>, Vec<u64>);

/// What the model says becomes of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Accepted and counted (delivered or consumed by roaming).
    Accept,
    /// Accepted, an empty (dummy) packet: nothing is counted.
    Dummy,
    /// Dropped and counted on the pair.
    Drop(DropReason),
}

/// The forwarder's receive side and the peers the harness plays.
pub struct Lab {
    sad: Sad,
    roaming: Roaming,
    sockets: Recorder,
    /// What the receive path reports (unknown SPIs), as the data threads' sender.
    sender: EventSender,
    events: EventReceiver,
    pairs: Vec<Pair>,
    backend: AeadBackend,
    limits: Limits,
    /// The forwarder's clock.
    now: Now,
    /// Probes the server sent: (peer, where to, nonce).
    probes: Vec<(PeerId, Observed, Nonce)>,
    /// The last probe each peer received (its inner packet), to answer.
    last_probe: BTreeMap<u64, Vec<u8>>,
    next_spi: u32,
    /// The plaintext inner packet of the last packet the model accepted.
    last_inner: Option<Vec<u8>>,
    trace: bool,
}

fn key(alg: AeadAlg, byte: u8) -> AeadKey {
    AeadKey::from_keymat(alg, &vec![byte; alg.key_len() + 4]).expect("a key of the right length")
}

fn other(backend: AeadBackend) -> AeadBackend {
    match backend {
        AeadBackend::AwsLc => AeadBackend::Ring,
        AeadBackend::Ring | AeadBackend::RustCrypto => AeadBackend::AwsLc,
    }
}

/// A peer's prefix.
fn prefix_of(peer: PeerId) -> Ipv6Net {
    Ipv6Net::new(
        Ipv6Addr::new(0x2001, 0xdb8, peer.0 as u16, 0, 0, 0, 0, 0),
        64,
    )
    .expect("a /64")
}

/// A peer's first endpoint: peer 1 raw ESP, peer 2 ESP in UDP (behind a NAT).
fn first_endpoint(peer: PeerId) -> Endpoint {
    if peer.0 == 1 {
        Endpoint {
            local: SERVER,
            remote: Ipv4Addr::new(198, 51, 100, 2),
            encap: Encapsulation::Raw,
        }
    } else {
        Endpoint {
            local: SERVER,
            remote: Ipv4Addr::new(203, 0, 113, 5),
            encap: Encapsulation::Udp {
                local_port: 4500,
                remote_port: 40_500,
            },
        }
    }
}

impl Lab {
    /// A forwarder with `config`'s pairs (bits 0: backend, 1: server role, 2-3: how many
    /// pairs, 4-5: limits, 6: AES-256, 7: ESN).
    pub fn new(config: u8) -> Self {
        let backend = if config & 1 == 0 {
            AeadBackend::AwsLc
        } else {
            AeadBackend::Ring
        };
        let (tx, events) = events::channel();
        let sad = Sad::new(tx.clone(), backend);
        let sender = tx.clone();
        let roaming = Roaming::new(
            RoamingConfig {
                follow_local_address: false,
                announce_target: None,
                accept_moves: config & 2 == 0,
            },
            &["fe80::1/64".parse().expect("literal")],
            tx,
        );
        let limits = match (config >> 4) & 3 {
            0 => Limits::default(),
            1 => Limits {
                soft_packets: Some(4),
                hard_packets: Some(7),
                ..Limits::default()
            },
            2 => Limits {
                soft_bytes: Some(300),
                hard_bytes: Some(900),
                ..Limits::default()
            },
            _ => Limits {
                soft_seconds: Some(2),
                hard_seconds: Some(4),
                ..Limits::default()
            },
        };
        let mut lab = Lab {
            sad,
            roaming,
            sockets: Recorder::default(),
            sender,
            events,
            pairs: Vec::new(),
            backend,
            limits,
            now: Now::ZERO,
            probes: Vec::new(),
            last_probe: BTreeMap::new(),
            next_spi: 0x1000,
            last_inner: None,
            trace: crate::ike_world::tracing_on(),
        };
        let alg = if config & 0x40 != 0 {
            AeadAlg::AesGcm256
        } else {
            AeadAlg::AesGcm128
        };
        for i in 0..1 + (config >> 2) % 4 {
            let peer = PeerId(1 + u64::from(i % 2));
            let (alg, esn) = if i < 2 {
                (alg, config & 0x80 != 0)
            } else {
                (AeadAlg::AesGcm256, config & 0x80 == 0)
            };
            lab.install(peer, alg, esn);
        }
        lab
    }

    /// Installs a pair for `peer` (the newest of its pairs).
    fn install(&mut self, peer: PeerId, alg: AeadAlg, esn: bool) {
        let spi_in = Spi(self.next_spi);
        let spi_out = Spi(self.next_spi + 0x8000);
        self.next_spi += 1;
        let byte = self.next_spi as u8;
        let (key_in, key_out) = (key(alg, byte), key(alg, byte ^ 0xff));
        let endpoint = self
            .sad
            .load()
            .endpoint(peer)
            .unwrap_or_else(|| first_endpoint(peer));
        let sa = ChildSa {
            peer,
            spi_in,
            key_in: key_in.clone(),
            spi_out,
            key_out: key_out.clone(),
            local_ts: vec!["::/0".parse().expect("literal")],
            remote_ts: vec![prefix_of(peer)],
            endpoint,
            limits: self.limits,
            esn,
            replay_window: 1024,
            nat_keepalive_seconds: None,
        };
        self.sad.install(&sa).expect("a pair the harness made");
        let peer_backend = other(self.backend);
        self.pairs.push(Pair {
            peer,
            spi_in,
            esn,
            remote_ts: sa.remote_ts.clone(),
            sealer: EspSealer::new(spi_in, &key_in, esn, peer_backend).expect("key"),
            key_in: key_in.clone(),
            peer_opener: EspOpener::new(spi_out, &key_out, esn, peer_backend).expect("key"),
            model_opener: EspOpener::new(spi_in, &key_in, esn, peer_backend).expect("key"),
            window: ReplayWindow::new(1024, esn),
            lifetime: Lifetime::new(self.limits, self.now.secs()),
            next_seq: 1,
            installed: true,
        });
    }

    /// The endpoint the SAD holds for `peer`.
    fn endpoint(&self, peer: PeerId) -> Option<Endpoint> {
        self.sad.load().endpoint(peer)
    }

    /// Every counter: per pair (rx, drops by reason), and the global drops.
    fn counters(&self) -> Counters {
        let snapshot = self.sad.load();
        let pairs = snapshot
            .pairs()
            .map(|p| {
                let drops = ALL_REASONS.iter().map(|r| p.drops(*r)).collect();
                (p.spi_in().0, (p.rx_packets(), drops))
            })
            .collect();
        let global = ALL_REASONS
            .iter()
            .map(|r| self.sad.global_drops(*r))
            .collect();
        (pairs, global)
    }

    /// What the model says of an ESP packet for pair `index` (its state moves as the pair's
    /// must).
    fn expect(&mut self, index: usize, esp: &[u8]) -> Expect {
        let pair = &mut self.pairs[index];
        if pair.lifetime.is_dead() {
            return Expect::Drop(DropReason::HardLimit);
        }
        let wire_seq = u32::from_be_bytes([esp[4], esp[5], esp[6], esp[7]]);
        let seq = pair.window.infer_seq(wire_seq);
        if let Err(error) = pair.window.check(seq) {
            return Expect::Drop(match error {
                hometun_forwarder::replay::ReplayError::Duplicate => DropReason::Replay,
                hometun_forwarder::replay::ReplayError::TooOld => DropReason::TooOld,
            });
        }
        let mut copy = esp.to_vec();
        let Ok(opened) = pair.model_opener.open(seq, &mut copy) else {
            return Expect::Drop(DropReason::AuthFailed);
        };
        pair.window.insert(seq);
        let inner = &copy[opened.inner.clone()];
        self.last_inner = Some(inner.to_vec());
        match pair.lifetime.charge(inner.len() as u64) {
            Charge::DropHard(_) | Charge::Dead => return Expect::Drop(DropReason::HardLimit),
            _ => {}
        }
        if opened.next_header == NEXT_HEADER_NONE {
            return Expect::Dummy;
        }
        let Ok(ip) = hometun_forwarder::wire::ipv6::Packet::new_checked(inner) else {
            return Expect::Drop(DropReason::Malformed);
        };
        if opened.next_header != NEXT_HEADER_IPV6 {
            return Expect::Drop(DropReason::Malformed);
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if link_scoped(src, dst) {
            if !link_scoped_permitted(inner) {
                return Expect::Drop(DropReason::LinkScoped);
            }
        } else if !pair.remote_ts.iter().any(|n| n.contains(&src)) {
            return Expect::Drop(DropReason::IngressFilter);
        }
        Expect::Accept
    }

    /// Delivers one datagram (UDP from `from`, or raw ESP with an IPv4 header when `from` has
    /// no port) and checks everything the module promises.
    fn deliver(&mut self, esp: &[u8], from: Observed, ipv4_options: bool) {
        let index = (esp.len() >= 8)
            .then(|| u32::from_be_bytes([esp[0], esp[1], esp[2], esp[3]]))
            .and_then(|spi| {
                self.pairs
                    .iter()
                    .position(|p| p.installed && p.spi_in.0 == spi)
            });
        let udp_special = from.port.is_some()
            && ((esp.len() == 1 && esp[0] == NAT_KEEPALIVE)
                || (esp.len() >= 4 && esp[..4] == NON_ESP_MARKER));
        self.last_inner = None;
        let expect = match index {
            Some(i) if !udp_special => Some(self.expect(i, esp)),
            _ => None,
        };
        let peers: Vec<PeerId> = self.pairs.iter().map(|p| p.peer).collect();
        let endpoints_before: Vec<Option<Endpoint>> =
            peers.iter().map(|p| self.endpoint(*p)).collect();
        let (pairs_before, global_before) = self.counters();

        let mut datagram = Vec::new();
        if from.port.is_none() {
            let header_len = if ipv4_options { 24 } else { 20 };
            datagram.push(0x40 | (header_len / 4) as u8);
            datagram.resize(header_len, 0);
            datagram[9] = 50;
            datagram[12..16].copy_from_slice(&from.addr.octets());
            datagram[16..20].copy_from_slice(&SERVER.octets());
        }
        datagram.extend_from_slice(esp);
        let snapshot = self.sad.load();
        let receiver = Receiver {
            io: &self.sockets,
            sad: &self.sad,
            events: &self.sender,
            roaming: &self.roaming,
            snapshot: &snapshot,
            now: self.now,
        };
        let received = match from.port {
            Some(port) => receiver.udp(&mut datagram, SocketAddrV4::new(from.addr, port)),
            None => receiver.raw(&mut datagram, from.addr),
        };
        drop(snapshot);
        if self.trace {
            eprintln!("datagram from {from}: expected {expect:?}, got {received:?}");
        }
        if let Received::Deliver(inner) = &received {
            assert!(
                inner.end <= datagram.len(),
                "an inner packet beyond the datagram"
            );
            assert_eq!(
                expect,
                Some(Expect::Accept),
                "delivered without the model's consent"
            );
        }
        let inner_plain = match expect {
            Some(Expect::Accept) => self.last_inner.take(),
            _ => None,
        };

        // Counters: exactly what the model said, nothing else.
        let (pairs_after, global_after) = self.counters();
        let refused_index = ALL_REASONS
            .iter()
            .position(|r| *r == DropReason::OverrideNaRefused)
            .expect("a reason");
        let mut pair_delta = BTreeMap::new();
        for (spi, (rx, drops)) in &pairs_after {
            let (rx0, drops0) = pairs_before
                .get(spi)
                .cloned()
                .unwrap_or((0, vec![0; drops.len()]));
            let delta: Vec<u64> = drops.iter().zip(&drops0).map(|(a, b)| a - b).collect();
            if *rx != rx0 || delta.iter().any(|d| *d != 0) {
                pair_delta.insert(*spi, (rx - rx0, delta));
            }
        }
        let global_delta: u64 = global_after
            .iter()
            .zip(&global_before)
            .map(|(a, b)| a - b)
            .sum();
        match (index, expect) {
            (Some(i), Some(expect)) => {
                let spi = self.pairs[i].spi_in.0;
                assert_eq!(global_delta, 0, "a global drop for a packet of a pair");
                assert!(
                    pair_delta.keys().all(|s| *s == spi),
                    "another pair's counters moved: {pair_delta:?}"
                );
                let (rx, drops) = pair_delta
                    .get(&spi)
                    .cloned()
                    .unwrap_or((0, vec![0; ALL_REASONS.len()]));
                let mut counted = drops.clone();
                counted[refused_index] = 0;
                // What the roaming code sends in return (a probe of a new source, an answer) is
                // sealed on the same pair: its outbound refusals count there too. A dummy from
                // a new source is probed like any authenticated packet.
                let replied = inner_plain
                    .as_deref()
                    .is_some_and(hometun_forwarder::roaming::may_be_roaming)
                    || endpoints_before.iter().flatten().all(|e| !from.is(e));
                if replied && !matches!(expect, Expect::Drop(_)) {
                    for reason in [DropReason::HardLimit, DropReason::SeqExhausted] {
                        let at = ALL_REASONS
                            .iter()
                            .position(|r| *r == reason)
                            .expect("reason");
                        counted[at] = 0;
                    }
                }
                match expect {
                    Expect::Accept => {
                        assert_eq!(rx, 1, "an accepted packet counted {rx} times");
                        assert!(
                            counted.iter().all(|d| *d == 0),
                            "accepted and dropped: {drops:?} (reasons {ALL_REASONS:?})"
                        );
                    }
                    Expect::Dummy => {
                        assert_eq!(
                            (rx, counted.iter().sum::<u64>()),
                            (0, 0),
                            "a dummy counted: {drops:?} (reasons {ALL_REASONS:?})"
                        )
                    }
                    Expect::Drop(reason) => {
                        assert_eq!(rx, 0, "{reason:?} expected, accepted instead");
                        let at = ALL_REASONS
                            .iter()
                            .position(|r| *r == reason)
                            .expect("reason");
                        assert_eq!(
                            counted[at], 1,
                            "{reason:?} expected, the pair counted {drops:?} (reasons {ALL_REASONS:?})"
                        );
                        assert_eq!(counted.iter().sum::<u64>(), 1, "one drop, counted once");
                        assert_eq!(drops[refused_index], 0);
                    }
                }
            }
            _ if udp_special => {
                assert!(
                    pair_delta.is_empty() && global_delta == 0,
                    "a keepalive counted"
                );
                assert_eq!(
                    matches!(received, Received::Ike(_)),
                    esp.len() >= 4 && esp[..4] == NON_ESP_MARKER
                );
            }
            _ => {
                assert!(pair_delta.is_empty(), "a pair counted a packet not its own");
                assert_eq!(
                    global_delta, 1,
                    "a packet without a pair counted {global_delta} times"
                );
            }
        }

        // Probes the roaming code sent, and moves.
        self.collect_sent();
        for (k, peer) in peers.iter().enumerate() {
            let after = self.endpoint(*peer);
            if after == endpoints_before[k] {
                continue;
            }
            let nonce = inner_plain.as_deref().and_then(answer_nonce);
            let probed = nonce.is_some_and(|n| {
                self.probes
                    .iter()
                    .any(|(p, to, sent)| p == peer && *to == from && *sent == n)
            });
            assert!(
                probed,
                "{peer}'s endpoint moved {:?} -> {after:?} on a packet from {from} that is no \
                 answer to a probe sent there",
                endpoints_before[k]
            );
            assert!(
                after.is_some_and(|e| from.is(&e)),
                "moved to {after:?}, not where the answer came from ({from})"
            );
        }
        self.check_events();
    }

    /// Reads what the roaming code sent (probes and answers) as the peers do.
    fn collect_sent(&mut self) {
        let sent =
            std::mem::take(&mut *self.sockets.sent.lock().unwrap_or_else(|e| e.into_inner()));
        for (to, esp) in sent {
            assert!(esp.len() >= 8, "a runt ESP packet sent");
            let spi = u32::from_be_bytes([esp[0], esp[1], esp[2], esp[3]]);
            let seq = u32::from_be_bytes([esp[4], esp[5], esp[6], esp[7]]);
            let Some(pair) = self.pairs.iter().find(|p| p.spi_in.0 + 0x8000 == spi) else {
                panic!("the roaming code sent on SPI {spi:08x}, which is no pair's");
            };
            let mut copy = esp.clone();
            let opened = pair
                .peer_opener
                .open(u64::from(seq), &mut copy)
                .expect("what the server sends opens at the peer");
            let inner = copy[opened.inner].to_vec();
            let mut answer = [0u8; 256];
            if answer_probe(&inner, PEER_LINK_LOCAL, &mut answer).is_some() {
                let nonce: Nonce = inner[56..72].try_into().expect("a probe's nonce");
                self.probes.push((pair.peer, to, nonce));
                if self.probes.len() > 64 {
                    self.probes.remove(0);
                }
                self.last_probe.insert(pair.peer.0, inner);
            }
        }
    }

    /// Every EndpointMoved event names a move the SAD made.
    fn check_events(&mut self) {
        while let Some(event) = self.events.try_recv() {
            match event {
                Event::EndpointMoved { peer, new, .. } => assert_eq!(
                    self.endpoint(peer),
                    Some(new),
                    "EndpointMoved for {peer} names another endpoint than the SAD's"
                ),
                Event::UnknownSpi { spi, .. } => assert!(
                    self.sad.load().inbound(spi).is_none(),
                    "UnknownSpi for {spi}, which the SAD holds"
                ),
                _ => {}
            }
        }
    }

    /// An inner packet the fuzzer chooses for `pair`, with its next header.
    fn inner(&mut self, c: &mut Choices<'_>, index: usize) -> Option<(Vec<u8>, u8)> {
        let peer = self.pairs[index].peer;
        let inside = prefix_of(peer).network();
        let source = |host: u16| {
            let mut s = inside.segments();
            s[7] = host;
            Ipv6Addr::from(s)
        };
        let mut out = [0u8; 256];
        Some(match c.byte()? % 10 {
            0 | 1 => (
                ipv6_packet(
                    source(5),
                    "2001:db8:100::1".parse().expect("literal"),
                    c.bytes(64)?,
                ),
                NEXT_HEADER_IPV6,
            ),
            2 => {
                // A source of another peer, or from nowhere.
                let src = Ipv6Addr::from(u128::from(c.u64()?) << 64 | 7);
                (
                    ipv6_packet(
                        src,
                        "2001:db8:100::1".parse().expect("literal"),
                        c.bytes(64)?,
                    ),
                    NEXT_HEADER_IPV6,
                )
            }
            3 | 4 => {
                // An override NA, maybe for another target, maybe changed after the checksum.
                let target = if c.byte()? % 4 == 0 {
                    "2001:db8:7::1".parse().expect("literal")
                } else {
                    source(1)
                };
                let lladdr = Ipv4Addr::new(198, 51, 100, c.byte()?);
                let len = override_na::emit_override_na(PEER_LINK_LOCAL, target, lladdr, &mut out)
                    .ok()?;
                let mut na = out[..len].to_vec();
                if c.byte()? % 4 == 0 {
                    let at = usize::from(c.byte()?) % na.len();
                    na[at] ^= c.byte()?.max(1);
                }
                (na, NEXT_HEADER_IPV6)
            }
            5 | 6 => {
                // The answer to the last probe this peer got (or to none).
                let probe = match self.last_probe.get(&peer.0) {
                    Some(p) if c.byte()? % 4 != 0 => p.clone(),
                    _ => {
                        let mut nonce = [0u8; 16];
                        nonce.copy_from_slice(c.take(16)?);
                        let len =
                            emit_probe("fe80::1".parse().expect("literal"), &nonce, 0, &mut out)
                                .ok()?;
                        out[..len].to_vec()
                    }
                };
                let len = answer_probe(&probe, PEER_LINK_LOCAL, &mut out)?;
                (out[..len].to_vec(), NEXT_HEADER_IPV6)
            }
            7 => {
                // A probe from the peer (the server answers it).
                let mut nonce = [0u8; 16];
                nonce.copy_from_slice(c.take(16)?);
                let len =
                    emit_probe(PEER_LINK_LOCAL, &nonce, u16::from(c.byte()?), &mut out).ok()?;
                (out[..len].to_vec(), NEXT_HEADER_IPV6)
            }
            8 => (Vec::new(), NEXT_HEADER_NONE),
            _ => (c.bytes(120)?.to_vec(), c.byte()?),
        })
    }

    /// A sequence number for pair `index`: the next, one already used, one too old, far
    /// ahead, or any.
    fn seq(&mut self, c: &mut Choices<'_>, index: usize) -> Option<u64> {
        let pair = &mut self.pairs[index];
        let highest = pair.window.highest();
        let seq = match c.byte()? % 8 {
            0..=2 => {
                let s = pair.next_seq;
                pair.next_seq += 1;
                s
            }
            3 => highest.saturating_sub(u64::from(c.byte()?)),
            4 => highest.saturating_sub(1024 + u64::from(c.u16()?)),
            5 => highest + 1 + u64::from(c.u16()?),
            6 => highest + (1 << 31) + u64::from(c.byte()?),
            _ => {
                if pair.esn {
                    c.u64()?
                } else {
                    u64::from(c.u32()?)
                }
            }
        };
        let last = if pair.esn {
            u64::MAX - 1
        } else {
            u64::from(u32::MAX)
        };
        Some(seq.clamp(1, last))
    }

    /// An ESP packet of pair `index`: sealed by the peer's sealer, or (any trailer) sealed by
    /// its AEAD directly.
    fn seal(&mut self, c: &mut Choices<'_>, index: usize) -> Option<Vec<u8>> {
        let seq = self.seq(c, index)?;
        let raw_trailer = c.byte()? % 8 == 0;
        let (inner, next_header) = self.inner(c, index)?;
        let pair = &self.pairs[index];
        if raw_trailer {
            // `inner` as the whole plaintext (padding, pad length, next header its own).
            let mut packet = Vec::with_capacity(HEADROOM + inner.len() + 16);
            packet.extend_from_slice(&pair.spi_in.0.to_be_bytes());
            packet.extend_from_slice(&(seq as u32).to_be_bytes());
            let iv = seq.to_be_bytes();
            packet.extend_from_slice(&iv);
            packet.extend_from_slice(&inner);
            let mut nonce = [0u8; 12];
            nonce[..4].copy_from_slice(&pair.key_in.salt());
            nonce[4..].copy_from_slice(&iv);
            let mut aad = packet[..4].to_vec();
            if pair.esn {
                aad.extend_from_slice(&seq.to_be_bytes());
            } else {
                aad.extend_from_slice(&packet[4..8]);
            }
            let aead = new_aead(&pair.key_in, other(self.backend)).ok()?;
            let tag = aead.seal_in_place(&nonce, &aad, &mut packet[HEADROOM..]);
            packet.extend_from_slice(&tag);
            return Some(packet);
        }
        let mut out = vec![0u8; EspSealer::sealed_len(inner.len())];
        let len = pair.sealer.seal(seq, &inner, next_header, &mut out).ok()?;
        out.truncate(len);
        Some(out)
    }

    /// Where a packet of `peer` comes from: its endpoint, a new address (raw or UDP), another
    /// port of its NAT, or anywhere.
    fn from(&self, c: &mut Choices<'_>, peer: PeerId) -> Option<(Observed, bool)> {
        let current = self
            .endpoint(peer)
            .map_or(Observed::of_endpoint(&first_endpoint(peer)), |e| {
                Observed::of_endpoint(&e)
            });
        let choice = c.byte()?;
        let from = match choice % 8 {
            0..=3 => current,
            4 => Observed {
                addr: Ipv4Addr::new(198, 51, 100, 3),
                port: None,
            },
            5 => Observed {
                addr: Ipv4Addr::new(198, 51, 100, 3),
                port: Some(4500),
            },
            6 => Observed {
                addr: current.addr,
                port: Some(40_000 + u16::from(c.byte()?)),
            },
            _ => Observed {
                addr: Ipv4Addr::new(203, 0, 113, c.byte()?),
                port: (c.byte()? % 2 == 0).then_some(4500),
            },
        };
        Some((from, choice & 0x80 != 0))
    }

    /// Carries out one event; `None` when the input ran out.
    pub fn event(&mut self, op: u8, c: &mut Choices<'_>) -> Option<()> {
        let live: Vec<usize> = (0..self.pairs.len())
            .filter(|i| self.pairs[*i].installed)
            .collect();
        let pick = |c: &mut Choices<'_>| -> Option<Option<usize>> {
            let b = c.byte()?;
            Some((!live.is_empty()).then(|| live[usize::from(b) % live.len()]))
        };
        match op % 10 {
            0..=3 => {
                let Some(i) = pick(c)? else { return Some(()) };
                let esp = self.seal(c, i)?;
                let (from, options) = self.from(c, self.pairs[i].peer)?;
                self.deliver(&esp, from, options);
            }
            4 => {
                // An authentic packet with one byte changed on the way.
                let Some(i) = pick(c)? else { return Some(()) };
                let mut esp = self.seal(c, i)?;
                let at = usize::from(c.u16()?) % esp.len();
                esp[at] ^= c.byte()?.max(1);
                let (from, options) = self.from(c, self.pairs[i].peer)?;
                self.deliver(&esp, from, options);
            }
            5 => {
                // Any bytes, maybe behind a real SPI.
                let mut bytes = c.bytes(200)?.to_vec();
                if let Some(Some(i)) = pick(c).filter(|_| bytes.len() >= 4) {
                    bytes[..4].copy_from_slice(&self.pairs[i].spi_in.0.to_be_bytes());
                }
                let port = c.byte()?;
                let from = Observed {
                    addr: Ipv4Addr::new(198, 51, 100, 2),
                    port: (port % 2 == 0).then_some(4500),
                };
                self.deliver(&bytes, from, port & 2 != 0);
            }
            6 => {
                let esp: &[u8] = if c.byte()? % 2 == 0 {
                    &[NAT_KEEPALIVE]
                } else {
                    &[0, 0, 0, 0, 0x11, 0x22]
                };
                let from = Observed {
                    addr: Ipv4Addr::new(203, 0, 113, 5),
                    port: Some(40_500),
                };
                self.deliver(esp, from, false);
            }
            7 => {
                // Time passes: the roaming timers, the forwarder's clock and time limits.
                let ms = u64::from(c.byte()?) * 20;
                let peers: Vec<PeerId> = self.pairs.iter().map(|p| p.peer).collect();
                let before: Vec<Option<Endpoint>> =
                    peers.iter().map(|p| self.endpoint(*p)).collect();
                let before_secs = self.now.secs();
                self.now = Now::from_millis(self.now.millis() + ms);
                self.roaming.on_timers(&self.sockets, &self.sad, self.now);
                if self.now.secs() != before_secs {
                    self.sad.set_now(self.now);
                    for pair in &self.pairs {
                        let _ = pair.lifetime.check_time(self.now.secs());
                    }
                }
                self.collect_sent();
                let after: Vec<Option<Endpoint>> =
                    peers.iter().map(|p| self.endpoint(*p)).collect();
                assert_eq!(before, after, "an endpoint moved on a timer");
                self.check_events();
            }
            8 => {
                // The control path: a rekey (a new pair for the peer) or a delete.
                let Some(i) = pick(c)? else { return Some(()) };
                let pair = &self.pairs[i];
                let (peer, esn) = (pair.peer, pair.esn);
                if c.byte()? % 2 == 0 && live.len() < 8 {
                    let alg = if c.byte()? % 2 == 0 {
                        AeadAlg::AesGcm128
                    } else {
                        AeadAlg::AesGcm256
                    };
                    self.install(peer, alg, esn);
                } else {
                    self.sad.delete(self.pairs[i].spi_in).expect("installed");
                    self.pairs[i].installed = false;
                }
            }
            _ => {
                // The daemon moves a peer itself (MOBIKE).
                let Some(i) = pick(c)? else { return Some(()) };
                let peer = self.pairs[i].peer;
                let to = Observed {
                    addr: Ipv4Addr::new(198, 51, 100, 9),
                    port: (c.byte()? % 2 == 0).then_some(4500),
                };
                if let Some(current) = self.endpoint(peer) {
                    let _ = self.sad.update_endpoint(peer, to.moved(&current, 4500));
                }
            }
        }
        Some(())
    }
}

/// An IPv6 UDP packet.
fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p.extend_from_slice(&[0x30, 0x39, 0x30, 0x39]);
    p.extend_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// Runs one input: a config byte, then events.
pub fn run(data: &[u8]) {
    let mut c = Choices::new(data);
    let Some(config) = c.byte() else {
        return;
    };
    let mut lab = Lab::new(config);
    while let Some(op) = c.byte() {
        if lab.event(op, &mut c).is_none() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet the harness sealed, as the peer's endpoint sends it.
    fn packet(lab: &mut Lab, seq: u64, inner: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; EspSealer::sealed_len(inner.len())];
        let len = lab.pairs[0]
            .sealer
            .seal(seq, inner, NEXT_HEADER_IPV6, &mut out)
            .unwrap();
        out.truncate(len);
        out
    }

    fn rx(lab: &Lab) -> u64 {
        lab.sad.load().pairs().next().unwrap().rx_packets()
    }

    #[test]
    fn sealed_packets_pass_and_a_flipped_one_leaves_the_window_alone() {
        for config in [0u8, 1, 0x40, 0x81, 0xc0] {
            let mut lab = Lab::new(config);
            let from = Observed::of_endpoint(&first_endpoint(PeerId(1)));
            let inner = ipv6_packet(
                "2001:db8:1::5".parse().unwrap(),
                "2001:db8:100::1".parse().unwrap(),
                b"hello",
            );
            let good = packet(&mut lab, 5, &inner);
            let mut flipped = good.clone();
            *flipped.last_mut().unwrap() ^= 1;
            lab.deliver(&flipped, from, false);
            assert_eq!(rx(&lab), 0);
            lab.deliver(&good, from, false);
            assert_eq!(
                rx(&lab),
                1,
                "config {config:#x}: seq 5 still open after the forgery"
            );
            lab.deliver(&good, from, false);
            assert_eq!(rx(&lab), 1, "a replay is refused");
        }
    }

    #[test]
    fn an_answer_to_a_probe_moves_the_peer_and_nothing_else_does() {
        let mut lab = Lab::new(0);
        let old = first_endpoint(PeerId(1));
        let new = Observed {
            addr: Ipv4Addr::new(198, 51, 100, 3),
            port: None,
        };
        // Authentic traffic from a new address: a probe goes there; nothing moves yet.
        let inner = ipv6_packet(
            "2001:db8:1::5".parse().unwrap(),
            "2001:db8:100::1".parse().unwrap(),
            b"x",
        );
        let p = packet(&mut lab, 1, &inner);
        lab.deliver(&p, new, false);
        assert_eq!(lab.endpoint(PeerId(1)), Some(old));
        assert_eq!(lab.probes.len(), 1);
        // The peer's answer from there moves it.
        let probe = lab.last_probe[&1].clone();
        let mut out = [0u8; 256];
        let len = answer_probe(&probe, PEER_LINK_LOCAL, &mut out).unwrap();
        let p = packet(&mut lab, 2, &out[..len]);
        lab.deliver(&p, new, false);
        assert!(lab.endpoint(PeerId(1)).is_some_and(|e| new.is(&e)));
    }
}
