//! The server's override-NA checks and return-routability rounds (docs/ARCHITECTURE.md,
//! "Roaming"), stateful: one `MoveChecker` sees a sequence of NAs, packets from new sources,
//! probe answers and timer polls of two peers (three SAs) on a clock the fuzzer moves, so that
//! older NAs, storms, rounds in flight, waiting NAs, retransmissions, timeouts and switches all
//! happen. A model beside it (the last accepted sequence number per SA, the token buckets, the
//! round per peer) says what each verdict must be, and the checker's counters must agree. Each
//! packet also goes through the stateless checks: the data path's cheap test never hides an NA,
//! a probe or an answer the checks accept; an NA that passes, emitted again from its fields,
//! passes again; a probe is answered with its own nonce.
//!
//! Input: a sequence of records, each an opcode byte and its arguments (see `step`).
#![no_main]

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use hometun_control::{Encapsulation, Endpoint, MoveRefusal, PeerId, Spi};
use hometun_forwarder::roaming::may_be_roaming;
use hometun_forwarder::roaming::moves::{
    AnswerVerdict, MoveChecker, MoveLimits, NaVerdict, Probe, Timer,
};
use hometun_forwarder::roaming::override_na::{
    NaRules, TokenBucket, check_newer, check_packet, emit_override_na, is_icmpv6_type,
    is_neighbor_advert,
};
use hometun_forwarder::roaming::return_routability::{
    Nonce, Observed, PROBE_LEN, ProbeTiming, answer_nonce, answer_probe, emit_probe,
};
use hometun_fuzz::choices::Choices;
use ipnet::Ipv6Net;
use libfuzzer_sys::fuzz_target;

/// (peer, SPI, remote traffic selector) of the three SAs.
fn sas() -> [(PeerId, Spi, Ipv6Net); 3] {
    let net = |third: u16| Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, third, 0, 0, 0, 0, 0), 64);
    [
        (PeerId(1), Spi(0x3001), net(1).expect("a /64")),
        (PeerId(1), Spi(0x3002), net(1).expect("a /64")),
        (PeerId(2), Spi(0x4001), net(2).expect("a /64")),
    ]
}

fn first_endpoint(peer: PeerId) -> Endpoint {
    Endpoint {
        local: Ipv4Addr::new(203, 0, 113, 2),
        remote: Ipv4Addr::new(198, 51, 100, peer.0 as u8 + 1),
        encap: Encapsulation::Raw,
    }
}

/// The model of one peer.
struct PeerModel {
    na_bucket: TokenBucket,
    round_bucket: TokenBucket,
    /// (target, nonce, started, probes sent) of the round in flight.
    round: Option<(Observed, Nonce, u64, u16)>,
    nas_accepted: u64,
    moves: u64,
    probes_sent: u64,
}

struct Harness {
    checker: MoveChecker,
    limits: MoveLimits,
    timing: ProbeTiming,
    now: u64,
    endpoints: HashMap<PeerId, Endpoint>,
    last_na: HashMap<Spi, u64>,
    peers: HashMap<PeerId, PeerModel>,
    next_nonce: u8,
    own: Vec<Ipv6Addr>,
}

impl Harness {
    fn new() -> Self {
        let mut endpoints = HashMap::new();
        for peer in [PeerId(1), PeerId(2)] {
            endpoints.insert(peer, first_endpoint(peer));
        }
        Harness {
            checker: MoveChecker::new(MoveLimits::default(), ProbeTiming::default()),
            limits: MoveLimits::default(),
            timing: ProbeTiming::default(),
            now: 1000,
            endpoints,
            last_na: HashMap::new(),
            peers: HashMap::new(),
            next_nonce: 1,
            own: vec![
                "fe80::1".parse().expect("literal"),
                "2001:db8:1::ffff".parse().expect("literal"),
            ],
        }
    }

    fn model(&mut self, peer: PeerId) -> &mut PeerModel {
        let (limits, now) = (self.limits, self.now);
        self.peers.entry(peer).or_insert_with(|| PeerModel {
            na_bucket: TokenBucket::new(limits.na_burst, limits.na_interval_ms, now),
            round_bucket: TokenBucket::new(limits.round_burst, limits.round_interval_ms, now),
            round: None,
            nas_accepted: 0,
            moves: 0,
            probes_sent: 0,
        })
    }

    /// A fresh nonce (each round's differs).
    fn nonce(&mut self) -> Nonce {
        self.next_nonce = self.next_nonce.wrapping_add(1).max(1);
        [self.next_nonce; 16]
    }

    /// Starts a round in the model if it may; the nonce it would use.
    fn model_round(&mut self, peer: PeerId, target: Observed, nonce: Nonce) -> bool {
        let now = self.now;
        let m = self.model(peer);
        if m.round.is_some() || !m.round_bucket.take(now) {
            return false;
        }
        m.round = Some((target, nonce, now, 1));
        m.probes_sent += 1;
        true
    }

    fn na(&mut self, index: usize, seq: u64, inner: &[u8], from: Observed) {
        let (peer, spi, ts) = sas()[index];
        let nonce = self.nonce();
        let remote_ts = [ts];
        let own = self.own.clone();
        let rules = NaRules {
            remote_ts: &remote_ts,
            own_addresses: &own,
        };
        stateless(inner, &rules);
        let current = self.endpoints[&peer];
        let verdict = self.checker.handle_na(
            self.now,
            peer,
            spi,
            seq,
            inner,
            &rules,
            from,
            &current,
            || Some(nonce),
        );
        // The model.
        let now = self.now;
        let checked = check_packet(inner, &rules);
        let newer = check_newer(seq, self.last_na.get(&spi).copied());
        let m = self.model(peer);
        let expected = match (checked, newer) {
            (Err(reason), _) | (Ok(_), Err(reason)) => Err(reason),
            (Ok(na), Ok(())) if !m.na_bucket.take(now) => {
                let _ = na;
                Err(MoveRefusal::Storm)
            }
            (Ok(na), Ok(())) => Ok(na),
        };
        match (expected, verdict) {
            (Err(want), NaVerdict::Refused(got)) => assert_eq!(want, got),
            (Ok(want), NaVerdict::AtEndpoint(na)) => {
                assert_eq!(want, na);
                assert!(
                    from.is(&current),
                    "AtEndpoint from {from}, endpoint {current:?}"
                );
                self.accepted(peer, spi, seq);
            }
            (Ok(want), NaVerdict::Probe(na, probe)) => {
                assert_eq!(want, na);
                assert!(!from.is(&current), "a probe to the current endpoint");
                assert_eq!(
                    probe,
                    Probe {
                        peer,
                        to: from,
                        nonce,
                        try_no: 0
                    }
                );
                assert!(
                    self.model_round(peer, from, nonce),
                    "a round the model forbids"
                );
                self.accepted(peer, spi, seq);
            }
            (Ok(want), NaVerdict::Waiting(na)) => {
                assert_eq!(want, na);
                assert!(!from.is(&current));
                assert!(
                    !self.model_round(peer, from, nonce),
                    "no round where one may start"
                );
                self.accepted(peer, spi, seq);
            }
            (expected, verdict) => panic!("model {expected:?}, checker {verdict:?}"),
        }
    }

    fn accepted(&mut self, peer: PeerId, spi: Spi, seq: u64) {
        self.last_na.insert(spi, seq);
        self.model(peer).nas_accepted += 1;
    }

    fn new_source(&mut self, peer: PeerId, from: Observed) {
        let current = self.endpoints[&peer];
        let nonce = self.nonce();
        let probe = self
            .checker
            .handle_new_source(self.now, peer, from, &current, || Some(nonce));
        if from.is(&current) {
            assert_eq!(probe, None);
            return;
        }
        let started = self.model_round(peer, from, nonce);
        assert_eq!(
            probe,
            started.then_some(Probe {
                peer,
                to: from,
                nonce,
                try_no: 0
            }),
            "new source {from}"
        );
    }

    fn answer(&mut self, peer: PeerId, from: Observed, nonce: Nonce) {
        let current = self.endpoints[&peer];
        let verdict = self
            .checker
            .handle_answer(self.now, peer, from, &nonce, &current);
        let round = self.peers.get(&peer).and_then(|m| m.round);
        match (round, verdict) {
            (Some((target, n, started, _)), AnswerVerdict::Switch { to, elapsed_ms, .. }) => {
                assert!(n == nonce && target == from && to == from && !from.is(&current));
                assert_eq!(elapsed_ms, self.now - started);
                let m = self.model(peer);
                m.round = None;
                m.moves += 1;
                let moved = to.moved(&current, 4500);
                self.endpoints.insert(peer, moved);
            }
            (Some((target, n, _, _)), AnswerVerdict::AlreadyThere) => {
                assert!(n == nonce && target == from && from.is(&current));
                self.model(peer).round = None;
            }
            (Some((target, n, _, _)), AnswerVerdict::WrongAddress { expected }) => {
                assert!(n == nonce && target != from && expected == target);
            }
            (Some((_, n, _, _)), AnswerVerdict::Stale) => assert!(n != nonce),
            (None, AnswerVerdict::Stale) => {}
            (round, verdict) => panic!("round {round:?}, answer from {from}: {verdict:?}"),
        }
    }

    fn poll(&mut self) {
        let fired = self.checker.poll(self.now);
        let now = self.now;
        let (timing, mut expected) = (self.timing, Vec::new());
        for (peer, m) in &mut self.peers {
            let Some((target, nonce, started, sent)) = m.round else {
                continue;
            };
            if now >= started + timing.timeout_ms {
                expected.push(Timer::Expired {
                    peer: *peer,
                    target,
                });
                m.round = None;
            } else if let Some(delay) = timing.retries_ms.get(usize::from(sent) - 1)
                && now >= started + delay
            {
                expected.push(Timer::Retransmit(Probe {
                    peer: *peer,
                    to: target,
                    nonce,
                    try_no: sent,
                }));
                m.round = Some((target, nonce, started, sent + 1));
                m.probes_sent += 1;
            }
        }
        let key = |t: &Timer| match t {
            Timer::Retransmit(p) => p.peer,
            Timer::Expired { peer, .. } => *peer,
        };
        let mut fired = fired;
        fired.sort_by_key(key);
        expected.sort_by_key(key);
        assert_eq!(fired, expected, "timers at {now}");
        // The deadline it reports is when the next of these is due.
        let next = self
            .peers
            .values()
            .filter_map(|m| m.round)
            .map(|(_, _, started, sent)| {
                let deadline = started + timing.timeout_ms;
                timing
                    .retries_ms
                    .get(usize::from(sent) - 1)
                    .map_or(deadline, |d| (started + d).min(deadline))
            })
            .min();
        assert_eq!(self.checker.next_deadline_ms(), next);
    }

    fn check_report(&self) {
        for report in self.checker.report() {
            let m = &self.peers[&report.peer];
            assert_eq!(
                (report.nas_accepted, report.moves, report.probes_sent),
                (m.nas_accepted, m.moves, m.probes_sent),
                "{:?}",
                report.peer
            );
        }
    }
}

/// The checks of one packet on its own.
fn stateless(inner: &[u8], rules: &NaRules<'_>) {
    if let Ok(na) = check_packet(inner, rules) {
        assert!(is_neighbor_advert(inner) && may_be_roaming(inner));
        let source = Ipv6Addr::from(<[u8; 16]>::try_from(&inner[8..24]).expect("IPv6 header"));
        let mut again = [0u8; 128];
        let len = emit_override_na(source, na.target, na.lladdr, &mut again).expect("fits");
        assert_eq!(check_packet(&again[..len], rules), Ok(na));
    }
    let mut answer = [0u8; 256];
    if let Some(len) = answer_probe(inner, "fe80::2".parse().expect("literal"), &mut answer) {
        assert!(is_icmpv6_type(inner, 128) && may_be_roaming(inner));
        assert_eq!(len, PROBE_LEN);
        let nonce = answer_nonce(&answer[..len]).expect("our own answer parses");
        assert_eq!(&inner[56..72], &nonce[..]);
    }
    if answer_nonce(inner).is_some() {
        assert!(is_icmpv6_type(inner, 129) && may_be_roaming(inner));
    }
}

fn observed(
    c: &mut Choices<'_>,
    peer: PeerId,
    endpoints: &HashMap<PeerId, Endpoint>,
) -> Option<Observed> {
    Some(match c.byte()? % 6 {
        0 | 1 => Observed::of_endpoint(&endpoints[&peer]),
        2 => Observed {
            addr: Ipv4Addr::new(198, 51, 100, 20 + c.byte()? % 3),
            port: None,
        },
        3 => Observed {
            addr: Ipv4Addr::new(198, 51, 100, 20 + c.byte()? % 3),
            port: Some(4500),
        },
        4 => Observed::of_endpoint(&first_endpoint(peer)),
        _ => Observed {
            addr: Ipv4Addr::new(192, 0, 2, c.byte()?),
            port: Some(c.u16()?),
        },
    })
}

/// An inner packet: a valid override NA (maybe for another target, maybe changed), or bytes.
fn packet(c: &mut Choices<'_>, ts: Ipv6Net) -> Option<Vec<u8>> {
    let mut out = [0u8; 128];
    Some(match c.byte()? % 4 {
        0 => c.bytes(100)?.to_vec(),
        kind => {
            let target = match c.byte()? % 5 {
                0 => "2001:db8:7::1".parse().expect("literal"),
                1 => "ff02::1".parse().expect("literal"),
                _ => {
                    let mut s = ts.network().segments();
                    s[7] = 1 + u16::from(c.byte()?);
                    Ipv6Addr::from(s)
                }
            };
            let len = emit_override_na(
                "fe80::2".parse().expect("literal"),
                target,
                Ipv4Addr::new(198, 51, 100, c.byte()?),
                &mut out,
            )
            .ok()?;
            let mut na = out[..len].to_vec();
            if kind == 3 {
                let at = usize::from(c.byte()?) % na.len();
                na[at] ^= c.byte()?.max(1);
            }
            na
        }
    })
}

fn step(h: &mut Harness, c: &mut Choices<'_>) -> Option<()> {
    let op = c.byte()?;
    match op % 6 {
        0 | 1 => {
            let index = usize::from(c.byte()?) % 3;
            let (peer, spi, ts) = sas()[index];
            let last = h.last_na.get(&spi).copied().unwrap_or(0);
            let seq = match c.byte()? % 4 {
                0 | 1 => last.saturating_add(1 + u64::from(c.byte()? % 4)),
                2 => last.saturating_sub(u64::from(c.byte()? % 3)),
                _ => c.u64()?,
            };
            let inner = packet(c, ts)?;
            let from = observed(c, peer, &h.endpoints)?;
            h.na(index, seq, &inner, from);
        }
        2 => {
            let peer = PeerId(1 + u64::from(c.byte()? % 2));
            let from = observed(c, peer, &h.endpoints)?;
            h.new_source(peer, from);
        }
        3 => {
            // An answer: the round's nonce (from where the fuzzer says) or another.
            let peer = PeerId(1 + u64::from(c.byte()? % 2));
            let from = match (c.byte()? % 3, h.peers.get(&peer).and_then(|m| m.round)) {
                (0, Some((target, _, _, _))) => target,
                _ => observed(c, peer, &h.endpoints)?,
            };
            let nonce = match (c.byte()? % 4, h.peers.get(&peer).and_then(|m| m.round)) {
                (0, _) => [c.byte()?; 16],
                (_, Some((_, nonce, _, _))) => nonce,
                _ => [0; 16],
            };
            // The answer as the peer builds it must carry the nonce back.
            let mut probe = [0u8; 128];
            let len = emit_probe("fe80::1".parse().expect("literal"), &nonce, 0, &mut probe)
                .expect("fits");
            let mut answer = [0u8; 128];
            let n = answer_probe(
                &probe[..len],
                "fe80::2".parse().expect("literal"),
                &mut answer,
            )
            .expect("a probe");
            assert_eq!(answer_nonce(&answer[..n]), Some(nonce));
            h.answer(peer, from, nonce);
        }
        4 => {
            h.now += u64::from(c.byte()?) * 10;
            h.poll();
        }
        _ => h.now += u64::from(c.u16()?),
    }
    h.check_report();
    Some(())
}

fuzz_target!(|data: &[u8]| {
    let mut c = Choices::new(data);
    let mut h = Harness::new();
    while step(&mut h, &mut c).is_some() {}
    // Every round ends.
    h.now += 10_000;
    h.poll();
    h.poll();
    assert_eq!(h.checker.next_deadline_ms(), None);
});
