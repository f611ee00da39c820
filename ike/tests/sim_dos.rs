//! Denial of service: COOKIE once half-open SAs reach the threshold (RFC 7296 2.6), bounds on
//! half-open SAs per source and in total, expiry of half-open SAs, cookie secret rotation,
//! garbage datagrams.

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hometun_ike::crypto::{DhGroup, KeyExchange};
use hometun_ike::endpoint::{Endpoint, Random};
use hometun_ike::wire::{ExchangeType, Message, NotifyType, Payload};
use sim_support::*;

/// An IKE_SA_INIT request as a stock initiator sends it, optionally with a COOKIE first.
fn sa_init(rng: &mut SeededRandom, spi_i: u64, ni: &[u8], cookie: Option<&[u8]>) -> Vec<u8> {
    let mut random = [0u8; 32];
    rng.fill(&mut random);
    let ke = KeyExchange::new(DhGroup::Curve25519, &random).unwrap();
    raw_sa_init(spi_i, ni, cookie, ke.public_ke_data())
}

fn attacker(i: u32) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, (i % 250) as u8 + 1), 500)
}

struct Server {
    endpoint: Endpoint,
    clock: Clock,
    rng: SeededRandom,
}

impl Server {
    fn new(setup: &Setup) -> Self {
        let pki = Pki::new(setup.alg);
        let clock = Clock::new();
        let mut rng = SeededRandom::new(99);
        let endpoint = Endpoint::responder(server_config(setup, &pki), clock.now(), &mut rng);
        Self {
            endpoint,
            clock,
            rng,
        }
    }

    /// Sends one datagram; returns the answers.
    fn send(&mut self, from: SocketAddrV4, data: &[u8]) -> Vec<Message> {
        let local = SocketAddrV4::new(SERVER_ADDR, 500);
        self.endpoint
            .handle_datagram(self.clock.now(), local, from, data, &mut self.rng);
        let mut out = Vec::new();
        while let Some(t) = self.endpoint.poll_transmit() {
            assert_eq!(t.remote, from, "answers go back to the source");
            out.push(Message::parse(&t.data).unwrap());
        }
        out
    }

    fn advance(&mut self, d: Duration) {
        let target = self.clock.offset + d;
        while let Some(t) = self.endpoint.poll_timeout() {
            let at = self.clock.at(t);
            if at > target {
                break;
            }
            self.clock.offset = at;
            self.endpoint
                .handle_timeout(self.clock.now(), &mut self.rng);
        }
        self.clock.offset = target;
    }
}

fn cookie_of(answer: &Message) -> Option<Vec<u8>> {
    match answer.payloads.as_slice() {
        [Payload::Notify(n)] if n.notify_type == NotifyType::COOKIE => Some(n.data.clone()),
        _ => None,
    }
}

#[test]
fn cookies_once_half_open_sas_reach_the_threshold() {
    let setup = Setup {
        cookie_threshold: 10,
        half_open_per_source: 100,
        half_open_total: 1000,
        ..Setup::default()
    };
    let mut server = Server::new(&setup);
    let mut rng = SeededRandom::new(5);
    for i in 0..10u32 {
        let answers = server.send(
            attacker(i),
            &sa_init(&mut rng, 1000 + u64::from(i), &[i as u8; 32], None),
        );
        assert_eq!(answers.len(), 1);
        assert!(
            answers[0].header.spi_r != 0,
            "a real answer below the threshold"
        );
    }
    assert_eq!(server.endpoint.counters().half_open, 10);
    // From now on: N(COOKIE) only, no state.
    for i in 10..60u32 {
        let answers = server.send(
            attacker(i),
            &sa_init(&mut rng, 1000 + u64::from(i), &[i as u8; 32], None),
        );
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].header.spi_r, 0);
        assert!(cookie_of(&answers[0]).is_some(), "{:?}", answers[0]);
    }
    let counters = server.endpoint.counters();
    assert_eq!(counters.half_open, 10, "cookie answers keep no state");
    assert_eq!(counters.ike_sas, 10);
    assert_eq!(counters.cookies_sent, 50);

    // An initiator that returns the cookie (first payload, same SPI and Ni) gets in.
    let from = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 9), 500);
    let ni = [0xab; 32];
    let answers = server.send(from, &sa_init(&mut rng, 77, &ni, None));
    let cookie = cookie_of(&answers[0]).unwrap();
    let answers = server.send(from, &sa_init(&mut rng, 77, &ni, Some(&cookie)));
    assert_ne!(answers[0].header.spi_r, 0);
    assert_eq!(server.endpoint.counters().half_open, 11);
    // A forged or misplaced cookie does not.
    let mut forged = cookie.clone();
    forged[10] ^= 1;
    let answers = server.send(from, &sa_init(&mut rng, 78, &ni, Some(&forged)));
    assert!(cookie_of(&answers[0]).is_some());
    // Another source cannot reuse it.
    let answers = server.send(attacker(3), &sa_init(&mut rng, 77, &ni, Some(&cookie)));
    assert!(cookie_of(&answers[0]).is_some());
    assert_eq!(server.endpoint.counters().half_open, 11);

    // Half-open SAs expire once an initiator would have given up (1+2+4+8 s).
    server.advance(Duration::from_secs(16));
    let counters = server.endpoint.counters();
    assert_eq!((counters.half_open, counters.ike_sas), (0, 0));
}

#[test]
fn half_open_bounds_per_source_and_in_total() {
    let setup = Setup {
        cookie_threshold: 1000,
        half_open_per_source: 3,
        half_open_total: 8,
        ..Setup::default()
    };
    let mut server = Server::new(&setup);
    let mut rng = SeededRandom::new(6);
    let one = attacker(1);
    for i in 0..10u64 {
        server.send(one, &sa_init(&mut rng, 500 + i, &[i as u8; 32], None));
    }
    let counters = server.endpoint.counters();
    assert_eq!(counters.half_open, 3, "per source");
    assert_eq!(counters.dropped_half_open_bound, 7);
    for i in 0..20u32 {
        let answers = server.send(
            attacker(i + 10),
            &sa_init(&mut rng, 900 + u64::from(i), &[i as u8; 32], None),
        );
        assert!(answers.len() <= 1);
    }
    let counters = server.endpoint.counters();
    assert_eq!(counters.half_open, 8, "in total");
    assert_eq!(counters.dropped_half_open_bound, 7 + 15);
}

#[test]
fn a_real_client_gets_through_a_flood_with_its_cookie() {
    let setup = Setup {
        cookie_threshold: 5,
        ..Setup::default()
    };
    let mut pair = Pair::new(setup);
    // Fill the server with half-open SAs before the client's first message arrives.
    let mut rng = SeededRandom::new(8);
    let now = pair.now();
    for i in 0..5u32 {
        let data = sa_init(&mut rng, 3000 + u64::from(i), &[i as u8; 32], None);
        pair.server.endpoint.handle_datagram(
            now,
            SocketAddrV4::new(SERVER_ADDR, 500),
            attacker(i),
            &data,
            &mut pair.rng,
        );
    }
    while pair.server.endpoint.poll_transmit().is_some() {}
    pair.advance(Duration::from_secs(2));
    assert_eq!(pair.client.peer_ups(), 1);
    pair.assert_matching_pairs();
    let requests: Vec<Message> = pair
        .trace
        .iter()
        .filter(|(d, _)| d.is(ExchangeType::IKE_SA_INIT, false))
        .map(|(d, _)| Message::parse(&d.data).unwrap())
        .collect();
    assert_eq!(
        requests.len(),
        2,
        "the request, then the request with the cookie"
    );
    assert!(
        matches!(&requests[1].payloads[0], Payload::Notify(n) if n.notify_type == NotifyType::COOKIE)
    );
    assert_eq!(
        requests[0].payloads,
        requests[1].payloads[1..],
        "all other payloads unchanged"
    );
    assert_eq!(requests[0].header.spi_i, requests[1].header.spi_i);
    assert_eq!(pair.server.endpoint.counters().cookies_sent, 1);
}

#[test]
fn cookies_survive_one_secret_rotation_but_not_two() {
    let setup = Setup {
        cookie_threshold: 0,
        ..Setup::default()
    };
    let mut server = Server::new(&setup);
    let mut rng = SeededRandom::new(9);
    let from = attacker(7);
    let ni = [0x42; 32];
    let cookie = cookie_of(&server.send(from, &sa_init(&mut rng, 5, &ni, None))[0]).unwrap();
    server.advance(Duration::from_secs(130));
    // After one rotation the old cookie still opens the door.
    let answers = server.send(from, &sa_init(&mut rng, 5, &ni, Some(&cookie)));
    assert_ne!(answers[0].header.spi_r, 0);
    let cookie = cookie_of(&server.send(from, &sa_init(&mut rng, 6, &ni, None))[0]).unwrap();
    server.advance(Duration::from_secs(250));
    let answers = server.send(from, &sa_init(&mut rng, 6, &ni, Some(&cookie)));
    assert!(
        cookie_of(&answers[0]).is_some(),
        "two rotations later it is stale"
    );
}

#[test]
fn garbage_is_dropped_and_counted_never_answered() {
    let mut server = Server::new(&Setup::default());
    let mut rng = SeededRandom::new(10);
    let from = attacker(1);
    let mut sent = 0;
    for len in [0usize, 1, 4, 27, 28, 29, 60, 200, 1400] {
        for _ in 0..20 {
            let mut data = vec![0u8; len];
            rng.fill(&mut data);
            assert!(server.send(from, &data).is_empty());
            sent += 1;
        }
    }
    // A valid header with a lying length, and an IKE_SA_INIT without a nonce.
    let mut truncated = sa_init(&mut rng, 1, &[1; 32], None);
    truncated.truncate(100);
    assert!(server.send(from, &truncated).is_empty());
    let no_nonce = sa_init_bytes(2, vec![]);
    let answers = server.send(from, &no_nonce);
    assert_eq!(answers.len(), 1);
    assert!(answers[0].notify(NotifyType::INVALID_SYNTAX).is_some());
    let counters = server.endpoint.counters();
    assert_eq!(counters.ike_sas, 0);
    assert!(counters.dropped_unparsable + counters.dropped_unknown_spi >= sent);
}
