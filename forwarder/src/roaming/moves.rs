//! The server's roaming state, sans-IO: per SA the sequence number of the last accepted override
//! NA, per peer the rate limits, the probe round in flight and the counters. Inputs come in
//! through `handle_*`, probes and timers come out as values; the caller seals, sends and moves.
//!
//! One probe round at a time per peer: a trigger from another address while a round is in
//! flight starts nothing (the round ends by its answer or its timeout; the next trigger after
//! that probes again). Rounds are rate-limited per peer, so neither a storm of NAs nor a stream
//! of packets from a new source turns into a stream of probes.

use std::collections::HashMap;

use hometun_control::{Endpoint, MoveRefusal, PeerId, PeerRoaming, Spi};

use super::override_na::{self, NaRules, OverrideNa, TokenBucket};
use super::return_routability::{AnswerMatch, Nonce, Observed, ProbeTiming, Round, Trigger};

/// Rate limits of one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoveLimits {
    /// NAs accepted at once ...
    pub na_burst: u32,
    /// ... then one per this many milliseconds; more are refused as a storm.
    pub na_interval_ms: u64,
    /// Probe rounds started at once ...
    pub round_burst: u32,
    /// ... then one per this many milliseconds.
    pub round_interval_ms: u64,
}

impl Default for MoveLimits {
    fn default() -> Self {
        // A client repeats its NA with backoff (0, 50, 100, 200 ms ...) until our traffic
        // reaches it: a dozen in its first seconds at most. Far more is a storm.
        MoveLimits {
            na_burst: 16,
            na_interval_ms: 250,
            round_burst: 4,
            round_interval_ms: 500,
        }
    }
}

/// A probe to send: seal it with the peer's outbound SA and send it to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Whose.
    pub peer: PeerId,
    /// The new address being checked.
    pub to: Observed,
    /// The round's nonce.
    pub nonce: Nonce,
    /// 0 for the first probe of a round, then 1, 2 for retransmissions.
    pub try_no: u16,
}

/// What became of an override NA that was authenticated and not replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NaVerdict {
    /// Refused (counted).
    Refused(MoveRefusal),
    /// Accepted; it came from the current endpoint, so nothing moves.
    AtEndpoint(OverrideNa),
    /// Accepted; a round probing its source started: send this.
    Probe(OverrideNa, Probe),
    /// Accepted; a round is already in flight (to this source or another), or the round rate
    /// limit holds this one back.
    Waiting(OverrideNa),
}

/// What an answer to a probe did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerVerdict {
    /// Confirmed: move the peer to `to`. `elapsed_ms` since the round's trigger.
    Switch {
        /// The confirmed address.
        to: Observed,
        /// Milliseconds from the trigger to now.
        elapsed_ms: u64,
        /// What started the round.
        trigger: Trigger,
    },
    /// The right nonce from another address (refused, counted).
    WrongAddress {
        /// Where the round is waiting for the answer.
        expected: Observed,
    },
    /// Confirmed, but the peer's endpoint is already there (moved meanwhile by a control
    /// request or by an earlier round): the round ends, nothing moves.
    AlreadyThere,
    /// Not the nonce of a round in flight (a late answer; ignored).
    Stale,
}

/// A timer that fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Send this probe again.
    Retransmit(Probe),
    /// The round for `peer` probing `target` got no answer (counted as a refusal).
    Expired {
        /// Whose.
        peer: PeerId,
        /// The address that did not answer.
        target: Observed,
    },
}

#[derive(Debug, Clone)]
struct PeerState {
    na_bucket: TokenBucket,
    round_bucket: TokenBucket,
    round: Option<Round>,
    moves: u64,
    last_move_ms: Option<u64>,
    nas_accepted: u64,
    probes_sent: u64,
    rebinding_rounds: u64,
    refusals: [u64; MoveRefusal::ALL.len()],
}

impl PeerState {
    fn new(limits: &MoveLimits, now_ms: u64) -> Self {
        PeerState {
            na_bucket: TokenBucket::new(limits.na_burst, limits.na_interval_ms, now_ms),
            round_bucket: TokenBucket::new(limits.round_burst, limits.round_interval_ms, now_ms),
            round: None,
            moves: 0,
            last_move_ms: None,
            nas_accepted: 0,
            probes_sent: 0,
            rebinding_rounds: 0,
            refusals: [0; MoveRefusal::ALL.len()],
        }
    }

    fn refuse(&mut self, reason: MoveRefusal) {
        self.refusals[reason.index()] += 1;
    }

    /// Starts a round towards `target` if none is in flight and the rate limit allows.
    fn start_round(
        &mut self,
        peer: PeerId,
        target: Observed,
        trigger: Trigger,
        now_ms: u64,
        nonce: impl FnOnce() -> Option<Nonce>,
    ) -> Option<Probe> {
        if self.round.is_some() || !self.round_bucket.take(now_ms) {
            return None;
        }
        // No fresh randomness, no probe: a guessable nonce would let anyone answer it.
        let nonce = nonce()?;
        let mut round = Round::new(target, nonce, trigger, now_ms);
        round.sent = 1;
        self.round = Some(round);
        self.probes_sent += 1;
        if trigger == Trigger::NewSource {
            self.rebinding_rounds += 1;
        }
        Some(Probe {
            peer,
            to: target,
            nonce,
            try_no: 0,
        })
    }
}

/// The server's roaming state for every peer.
#[derive(Debug, Clone, Default)]
pub struct MoveChecker {
    peers: HashMap<PeerId, PeerState>,
    last_na: HashMap<Spi, u64>,
    limits: MoveLimits,
    timing: ProbeTiming,
}

impl MoveChecker {
    /// A checker with these limits and probe timing.
    pub fn new(limits: MoveLimits, timing: ProbeTiming) -> Self {
        MoveChecker {
            peers: HashMap::new(),
            last_na: HashMap::new(),
            limits,
            timing,
        }
    }

    fn peer(&mut self, peer: PeerId, now_ms: u64) -> &mut PeerState {
        let limits = self.limits;
        self.peers
            .entry(peer)
            .or_insert_with(|| PeerState::new(&limits, now_ms))
    }

    /// An override NA arrived in an ESP packet of `spi_in` with sequence number `seq` that
    /// passed the ICV and the replay window, from outer source `from`, while the peer's
    /// endpoint is `current`. `nonce` is asked for only when a round starts (`None`: no
    /// randomness now, no round).
    #[allow(clippy::too_many_arguments)] // one input, described in full
    pub fn handle_na(
        &mut self,
        now_ms: u64,
        peer: PeerId,
        spi_in: Spi,
        seq: u64,
        inner: &[u8],
        rules: &NaRules<'_>,
        from: Observed,
        current: &Endpoint,
        nonce: impl FnOnce() -> Option<Nonce>,
    ) -> NaVerdict {
        let last = self.last_na.get(&spi_in).copied();
        let state = self.peer(peer, now_ms);
        let na = match override_na::check_packet(inner, rules)
            .and_then(|na| override_na::check_newer(seq, last).map(|()| na))
        {
            Ok(na) => na,
            Err(reason) => {
                state.refuse(reason);
                return NaVerdict::Refused(reason);
            }
        };
        if !state.na_bucket.take(now_ms) {
            state.refuse(MoveRefusal::Storm);
            return NaVerdict::Refused(MoveRefusal::Storm);
        }
        state.nas_accepted += 1;
        self.last_na.insert(spi_in, seq);
        let state = self.peer(peer, now_ms);
        if from.is(current) {
            return NaVerdict::AtEndpoint(na);
        }
        match state.start_round(peer, from, Trigger::OverrideNa, now_ms, nonce) {
            Some(probe) => NaVerdict::Probe(na, probe),
            None => NaVerdict::Waiting(na),
        }
    }

    /// Authenticated ESP (not an NA) arrived from `from`, which is not the peer's endpoint
    /// `current`: perhaps a NAT rebinding. Starts a round unless one is in flight or the rate
    /// limit holds it back. Cheap when a round towards `from` is already running.
    pub fn handle_new_source(
        &mut self,
        now_ms: u64,
        peer: PeerId,
        from: Observed,
        current: &Endpoint,
        nonce: impl FnOnce() -> Option<Nonce>,
    ) -> Option<Probe> {
        if from.is(current) {
            return None;
        }
        self.peer(peer, now_ms)
            .start_round(peer, from, Trigger::NewSource, now_ms, nonce)
    }

    /// An authenticated answer to a probe, carrying `nonce`, arrived for `peer` from `from`,
    /// while the peer's endpoint is `current`.
    pub fn handle_answer(
        &mut self,
        now_ms: u64,
        peer: PeerId,
        from: Observed,
        nonce: &Nonce,
        current: &Endpoint,
    ) -> AnswerVerdict {
        let Some(state) = self.peers.get_mut(&peer) else {
            return AnswerVerdict::Stale;
        };
        let Some(round) = &state.round else {
            return AnswerVerdict::Stale;
        };
        match round.check_answer(from, nonce) {
            AnswerMatch::Stale => AnswerVerdict::Stale,
            AnswerMatch::WrongAddress => {
                let expected = round.target;
                state.refuse(MoveRefusal::ProbeWrongAddress);
                AnswerVerdict::WrongAddress { expected }
            }
            AnswerMatch::Confirmed if from.is(current) => {
                state.round = None;
                AnswerVerdict::AlreadyThere
            }
            AnswerMatch::Confirmed => {
                let elapsed_ms = now_ms.saturating_sub(round.started_ms);
                let trigger = round.trigger;
                state.round = None;
                state.moves += 1;
                state.last_move_ms = Some(elapsed_ms);
                AnswerVerdict::Switch {
                    to: from,
                    elapsed_ms,
                    trigger,
                }
            }
        }
    }

    /// Retransmissions due and rounds that gave up, at `now_ms`.
    pub fn poll(&mut self, now_ms: u64) -> Vec<Timer> {
        let mut fired = Vec::new();
        for (peer, state) in &mut self.peers {
            let Some(round) = &mut state.round else {
                continue;
            };
            if now_ms >= round.deadline_ms(&self.timing) {
                fired.push(Timer::Expired {
                    peer: *peer,
                    target: round.target,
                });
                state.round = None;
                state.refuse(MoveRefusal::ProbeTimeout);
                continue;
            }
            if round
                .next_send_ms(&self.timing)
                .is_some_and(|due| now_ms >= due)
            {
                fired.push(Timer::Retransmit(Probe {
                    peer: *peer,
                    to: round.target,
                    nonce: round.nonce,
                    try_no: round.sent,
                }));
                round.sent += 1;
                state.probes_sent += 1;
            }
        }
        fired
    }

    /// When [`MoveChecker::poll`] has something to do next.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.peers
            .values()
            .filter_map(|state| state.round.as_ref())
            .map(|round| {
                let deadline = round.deadline_ms(&self.timing);
                round
                    .next_send_ms(&self.timing)
                    .map_or(deadline, |due| due.min(deadline))
            })
            .min()
    }

    /// True when a round for `peer` is in flight.
    pub fn probing(&self, peer: PeerId) -> bool {
        self.peers.get(&peer).is_some_and(|s| s.round.is_some())
    }

    /// Forgets SAs and peers that are gone (their counters stay while the peer has SAs).
    pub fn retain(&mut self, live_spi: impl Fn(Spi) -> bool, live_peer: impl Fn(PeerId) -> bool) {
        self.last_na.retain(|spi, _| live_spi(*spi));
        self.peers.retain(|peer, _| live_peer(*peer));
    }

    /// The counters, by peer.
    pub fn report(&self) -> Vec<PeerRoaming> {
        let mut peers: Vec<PeerRoaming> = self
            .peers
            .iter()
            .map(|(peer, s)| PeerRoaming {
                peer: *peer,
                moves: s.moves,
                last_move_ms: s.last_move_ms,
                nas_accepted: s.nas_accepted,
                probes_sent: s.probes_sent,
                rebinding_rounds: s.rebinding_rounds,
                refusals: MoveRefusal::ALL
                    .iter()
                    .map(|r| (*r, s.refusals[r.index()]))
                    .filter(|(_, n)| *n > 0)
                    .collect(),
            })
            .collect();
        peers.sort_by_key(|p| p.peer);
        peers
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use hometun_control::Encapsulation;
    use ipnet::Ipv6Net;

    use super::*;
    use crate::roaming::override_na::emit_override_na;
    use crate::roaming::override_na::tests::SCAPY_NA;

    const PEER: PeerId = PeerId(1);
    const SPI: Spi = Spi(0x2001);

    fn observed(a: &str, port: Option<u16>) -> Observed {
        Observed {
            addr: a.parse().unwrap(),
            port,
        }
    }

    fn current() -> Endpoint {
        Endpoint {
            local: "203.0.113.1".parse().unwrap(),
            remote: "198.51.100.2".parse().unwrap(),
            encap: Encapsulation::Raw,
        }
    }

    struct Fixture {
        checker: MoveChecker,
        ts: Vec<Ipv6Net>,
        own: Vec<Ipv6Addr>,
        nonces: u8,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                checker: MoveChecker::default(),
                ts: vec!["2001:db8:1::/64".parse().unwrap()],
                own: vec!["fe80::1".parse().unwrap()],
                nonces: 0,
            }
        }

        fn na(&mut self, now: u64, seq: u64, packet: &[u8], from: Observed) -> NaVerdict {
            self.nonces += 1;
            let n = self.nonces;
            let rules = NaRules {
                remote_ts: &self.ts,
                own_addresses: &self.own,
            };
            self.checker.handle_na(
                now,
                PEER,
                SPI,
                seq,
                packet,
                &rules,
                from,
                &current(),
                || Some([n; 16]),
            )
        }

        fn refusals(&self, reason: MoveRefusal) -> u64 {
            self.checker
                .report()
                .first()
                .map_or(0, |p| p.refused(reason))
        }
    }

    fn na_packet(lladdr: &str) -> Vec<u8> {
        let mut out = vec![0u8; 128];
        let len = emit_override_na(
            "fe80::2".parse().unwrap(),
            "2001:db8:1::2".parse().unwrap(),
            lladdr.parse::<Ipv4Addr>().unwrap(),
            &mut out,
        )
        .unwrap();
        out.truncate(len);
        out
    }

    #[test]
    fn na_from_a_new_address_starts_a_round_and_the_answer_switches() {
        let mut f = Fixture::new();
        let new = observed("198.51.100.3", None);
        let NaVerdict::Probe(na, probe) = f.na(1000, 10, &SCAPY_NA, new) else {
            panic!("no probe");
        };
        assert_eq!(na.target, "2001:db8:1::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(probe.to, new);
        assert_eq!(probe.try_no, 0);
        assert!(f.checker.probing(PEER));
        // Repeats of the NA (newer sequence numbers) while the round runs start nothing.
        assert!(matches!(
            f.na(1010, 11, &SCAPY_NA, new),
            NaVerdict::Waiting(_)
        ));
        let verdict = f
            .checker
            .handle_answer(1003, PEER, new, &probe.nonce, &current());
        assert_eq!(
            verdict,
            AnswerVerdict::Switch {
                to: new,
                elapsed_ms: 3,
                trigger: Trigger::OverrideNa
            }
        );
        assert!(!f.checker.probing(PEER));
        let report = f.checker.report();
        assert_eq!(report[0].moves, 1);
        assert_eq!(report[0].last_move_ms, Some(3));
        assert_eq!(report[0].nas_accepted, 2);
        assert_eq!(report[0].probes_sent, 1);
        assert!(report[0].refusals.is_empty());
        // The answer once more (a retransmission's) is stale.
        assert_eq!(
            f.checker
                .handle_answer(1004, PEER, new, &probe.nonce, &current()),
            AnswerVerdict::Stale
        );
    }

    #[test]
    fn na_from_the_current_endpoint_moves_nothing() {
        let mut f = Fixture::new();
        assert!(matches!(
            f.na(0, 1, &SCAPY_NA, Observed::of_endpoint(&current())),
            NaVerdict::AtEndpoint(_)
        ));
        assert!(!f.checker.probing(PEER));
    }

    #[test]
    fn every_packet_check_is_counted_under_its_reason() {
        let mut f = Fixture::new();
        let from = observed("198.51.100.3", None);
        let mut hop = SCAPY_NA.to_vec();
        hop[7] = 64;
        assert_eq!(
            f.na(0, 1, &hop, from),
            NaVerdict::Refused(MoveRefusal::HopLimit)
        );
        let mut checksum = SCAPY_NA.to_vec();
        checksum[70] ^= 0xff;
        assert_eq!(
            f.na(0, 2, &checksum, from),
            NaVerdict::Refused(MoveRefusal::Checksum)
        );
        assert_eq!(f.refusals(MoveRefusal::HopLimit), 1);
        assert_eq!(f.refusals(MoveRefusal::Checksum), 1);
        assert!(!f.checker.probing(PEER), "refused NAs start no round");
    }

    #[test]
    fn older_na_is_refused_and_does_not_reset_the_newest() {
        let mut f = Fixture::new();
        let from = observed("198.51.100.2", None);
        assert!(matches!(
            f.na(0, 50, &SCAPY_NA, from),
            NaVerdict::AtEndpoint(_)
        ));
        assert_eq!(
            f.na(1, 40, &SCAPY_NA, from),
            NaVerdict::Refused(MoveRefusal::OlderNa)
        );
        assert_eq!(
            f.na(2, 50, &SCAPY_NA, from),
            NaVerdict::Refused(MoveRefusal::OlderNa)
        );
        assert!(matches!(
            f.na(3, 51, &SCAPY_NA, from),
            NaVerdict::AtEndpoint(_)
        ));
        // A refused NA (bad hop limit) with a high sequence number does not raise the mark.
        let mut hop = SCAPY_NA.to_vec();
        hop[7] = 1;
        assert!(matches!(f.na(4, 90, &hop, from), NaVerdict::Refused(_)));
        assert!(matches!(
            f.na(5, 52, &SCAPY_NA, from),
            NaVerdict::AtEndpoint(_)
        ));
        assert_eq!(f.refusals(MoveRefusal::OlderNa), 2);
    }

    #[test]
    fn a_storm_is_refused_and_counted() {
        let mut f = Fixture::new();
        let from = observed("198.51.100.2", None);
        let limits = MoveLimits::default();
        let mut accepted = 0;
        for seq in 1..=100u64 {
            if !matches!(f.na(0, seq, &SCAPY_NA, from), NaVerdict::Refused(_)) {
                accepted += 1;
            }
        }
        assert_eq!(accepted, limits.na_burst);
        assert_eq!(
            f.refusals(MoveRefusal::Storm),
            100 - u64::from(limits.na_burst)
        );
        // The rate recovers with time.
        assert!(matches!(
            f.na(limits.na_interval_ms, 101, &SCAPY_NA, from),
            NaVerdict::AtEndpoint(_)
        ));
    }

    #[test]
    fn answer_from_another_address_does_not_count_and_silence_times_out() {
        let mut f = Fixture::new();
        let spoofed = observed("203.0.113.66", None);
        let real = observed("198.51.100.3", None);
        let NaVerdict::Probe(_, probe) = f.na(1000, 10, &SCAPY_NA, spoofed) else {
            panic!("no probe");
        };
        // The real client answers (the attacker relayed the probe to it), from its address.
        assert_eq!(
            f.checker
                .handle_answer(1001, PEER, real, &probe.nonce, &current()),
            AnswerVerdict::WrongAddress { expected: spoofed }
        );
        // One round at a time: the real client's NA waits.
        assert!(matches!(
            f.na(1002, 11, &SCAPY_NA, real),
            NaVerdict::Waiting(_)
        ));
        assert_eq!(f.checker.next_deadline_ms(), Some(1250));
        assert_eq!(
            f.checker.poll(1250),
            vec![Timer::Retransmit(Probe {
                peer: PEER,
                to: spoofed,
                nonce: probe.nonce,
                try_no: 1
            })]
        );
        assert_eq!(f.checker.poll(1260), vec![]);
        assert!(matches!(f.checker.poll(1750)[..], [Timer::Retransmit(_)]));
        assert_eq!(f.checker.next_deadline_ms(), Some(2500));
        assert_eq!(
            f.checker.poll(2500),
            vec![Timer::Expired {
                peer: PEER,
                target: spoofed
            }]
        );
        assert_eq!(f.refusals(MoveRefusal::ProbeWrongAddress), 1);
        assert_eq!(f.refusals(MoveRefusal::ProbeTimeout), 1);
        assert_eq!(f.checker.report()[0].probes_sent, 3);
        assert_eq!(f.checker.next_deadline_ms(), None);
        // After the failed round the real address gets its own.
        let NaVerdict::Probe(_, probe) = f.na(2600, 12, &SCAPY_NA, real) else {
            panic!("no probe for the real address");
        };
        assert_eq!(probe.to, real);
        assert!(matches!(
            f.checker
                .handle_answer(2601, PEER, real, &probe.nonce, &current()),
            AnswerVerdict::Switch { .. }
        ));
    }

    #[test]
    fn a_new_source_without_na_is_probed_the_same_way_and_rate_limited() {
        let mut f = Fixture::new();
        let nat = observed("198.51.100.77", Some(40000));
        let mut n = 0u8;
        let mut nonce = || {
            n += 1;
            Some([n; 16])
        };
        // Packets from the endpoint itself start nothing.
        assert_eq!(
            f.checker.handle_new_source(
                0,
                PEER,
                Observed::of_endpoint(&current()),
                &current(),
                &mut nonce
            ),
            None
        );
        let probe = f
            .checker
            .handle_new_source(0, PEER, nat, &current(), &mut nonce)
            .unwrap();
        assert_eq!(probe.to, nat);
        // Every further packet from there while the round runs: nothing, cheaply.
        for t in 1..100 {
            assert_eq!(
                f.checker
                    .handle_new_source(t, PEER, nat, &current(), &mut nonce),
                None
            );
        }
        assert!(matches!(
            f.checker
                .handle_answer(100, PEER, nat, &probe.nonce, &current()),
            AnswerVerdict::Switch {
                trigger: Trigger::NewSource,
                ..
            }
        ));
        assert_eq!(f.checker.report()[0].rebinding_rounds, 1);
        // Rounds that time out, one after another: at most the burst, then the rate.
        let limits = MoveLimits::default();
        let mut started = 1; // the round above
        let mut now = 200;
        while now < 200 + 10 * 1500 {
            let from = observed("198.51.100.78", Some(40000 + (now % 7) as u16));
            if f.checker
                .handle_new_source(now, PEER, from, &current(), &mut nonce)
                .is_some()
            {
                started += 1;
            }
            f.checker.poll(now);
            now += 10;
        }
        let bound = u64::from(limits.round_burst) + 10 * 1500 / limits.round_interval_ms + 1;
        assert!(started <= bound, "{started} rounds > {bound}");
        assert!(
            started >= 8,
            "{started} rounds: one after each timeout at least"
        );
    }

    #[test]
    fn an_answer_for_where_the_peer_already_is_moves_nothing() {
        let mut f = Fixture::new();
        let new = observed("198.51.100.3", None);
        let NaVerdict::Probe(_, probe) = f.na(0, 1, &SCAPY_NA, new) else {
            panic!("no probe");
        };
        let mut there = current();
        there.remote = new.addr;
        assert_eq!(
            f.checker.handle_answer(1, PEER, new, &probe.nonce, &there),
            AnswerVerdict::AlreadyThere
        );
        assert!(!f.checker.probing(PEER));
        assert_eq!(f.checker.report()[0].moves, 0);
    }

    #[test]
    fn answers_for_unknown_peers_or_without_a_round_are_stale() {
        let mut f = Fixture::new();
        let from = observed("198.51.100.3", None);
        assert_eq!(
            f.checker.handle_answer(0, PEER, from, &[0; 16], &current()),
            AnswerVerdict::Stale
        );
        assert!(matches!(
            f.na(
                0,
                1,
                &na_packet("198.51.100.3"),
                Observed::of_endpoint(&current())
            ),
            NaVerdict::AtEndpoint(_)
        ));
        assert_eq!(
            f.checker.handle_answer(0, PEER, from, &[0; 16], &current()),
            AnswerVerdict::Stale
        );
    }

    #[test]
    fn no_randomness_no_probe() {
        let mut checker = MoveChecker::default();
        let from = observed("198.51.100.3", None);
        assert_eq!(
            checker.handle_new_source(0, PEER, from, &current(), || None),
            None
        );
        assert!(!checker.probing(PEER));
        // The next trigger with randomness probes.
        assert!(
            checker
                .handle_new_source(1, PEER, from, &current(), || Some([1; 16]))
                .is_some()
        );
    }

    #[test]
    fn retain_forgets_gone_sas_and_peers() {
        let mut f = Fixture::new();
        let from = observed("198.51.100.2", None);
        assert!(matches!(
            f.na(0, 50, &SCAPY_NA, from),
            NaVerdict::AtEndpoint(_)
        ));
        f.checker.retain(|_| false, |_| true);
        // The SA's mark is gone (a new SA with the same SPI starts afresh).
        assert!(matches!(
            f.na(1, 10, &SCAPY_NA, from),
            NaVerdict::AtEndpoint(_)
        ));
        f.checker.retain(|_| true, |_| false);
        assert!(f.checker.report().is_empty());
    }
}
