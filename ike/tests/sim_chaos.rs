//! Two-peer simulation on a bad network: a fifth of the datagrams lost, some duplicated,
//! some delayed past later ones (reordered), a NAT in between; the handshake, CHILD SA rekeys
//! from both sides, an IKE SA rekey and liveness checks all complete, and both sides end with
//! the same single pair and one IKE SA. Also lost liveness checks and IKE SA rekey messages.

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::time::Duration;

use hometun_ike::endpoint::Random;
use hometun_ike::wire::ExchangeType;
use sim_support::*;

fn only_spi(node: &Node) -> u32 {
    assert_eq!(node.forwarder.installed.len(), 1);
    *node.forwarder.installed.keys().next().unwrap()
}

#[test]
fn everything_completes_on_a_lossy_reordering_duplicating_network() {
    for seed in 1..=8u64 {
        let mut pair = Pair::new(Setup {
            nat: true,
            retransmit_tries: 8,
            seed,
            ..Setup::default()
        });
        let mut dice = SeededRandom::new(1000 + seed);
        pair.filter = Box::new(move |_| {
            let mut b = [0u8; 1];
            dice.fill(&mut b);
            match b[0] % 10 {
                0 | 1 => Fate::Drop,
                2 => Fate::Duplicate,
                3 => Fate::Delay(Duration::from_millis(300)),
                _ => Fate::Deliver,
            }
        });
        // The first request already left (unfiltered); the filter judges the rest. Backoff
        // doubles from 1 s, so give the handshake a few tries.
        pair.advance(Duration::from_secs(150));
        assert!(pair.client.peer_ups() >= 1, "seed {seed}: no IKE SA");
        for round in 0..6 {
            let at_client = round % 2 == 0;
            let node = if at_client {
                &pair.client
            } else {
                &pair.server
            };
            let spi = *node.forwarder.order.last().unwrap();
            pair.soft_limit(at_client, spi);
            pair.advance(Duration::from_secs(5));
            pair.esp(true);
            pair.esp(false);
            pair.advance(Duration::from_secs(40));
        }
        let now = pair.now();
        let peer = pair.client.endpoint.status(now)[0].peer;
        pair.client.endpoint.rekey_ike_sa(now, peer, &mut pair.rng);
        pair.flush();
        pair.advance(Duration::from_secs(120));
        // Heal the network and let everything settle: a deleted IKE SA is kept as long as
        // its peer might retransmit the DELETE (1 + 2 + ... + 128 s with 8 tries).
        pair.filter = Box::new(|_| Fate::Deliver);
        pair.advance(Duration::from_secs(300));
        let survivors = pair.assert_matching_pairs();
        assert_eq!(survivors.len(), 1, "seed {seed}");
        assert!(pair.esp(true) && pair.esp(false), "seed {seed}");
        let client = pair.client.endpoint.status(pair.now());
        let server = pair.server.endpoint.status(pair.now());
        assert_eq!(client.len(), 1, "seed {seed}");
        assert_eq!(server.len(), 1, "seed {seed}");
        assert_eq!(client[0].ike_spis, server[0].ike_spis, "seed {seed}");
        assert_eq!(pair.client.endpoint.counters().ike_sas, 1, "seed {seed}");
        assert_eq!(pair.server.endpoint.counters().ike_sas, 1, "seed {seed}");
        assert!(
            pair.client.peer_downs().is_empty(),
            "seed {seed}: {:?}",
            pair.client.peer_downs()
        );
        let dropped = pair.trace.iter().filter(|(_, f)| *f == Fate::Drop).count();
        let duplicated = pair
            .trace
            .iter()
            .filter(|(_, f)| *f == Fate::Duplicate)
            .count();
        let delayed = pair
            .trace
            .iter()
            .filter(|(_, f)| matches!(f, Fate::Delay(_)))
            .count();
        eprintln!(
            "seed {seed}: {} datagrams, {dropped} lost, {duplicated} duplicated, {delayed} delayed",
            pair.trace.len()
        );
        assert!(
            dropped > 0 && duplicated > 0 && delayed > 0,
            "seed {seed}: the network misbehaved"
        );
    }
}

#[test]
fn lost_liveness_checks_are_retransmitted_not_fatal() {
    let mut pair = Pair::new(Setup::default());
    pair.connect();
    let mut lost = 0;
    pair.filter = Box::new(move |d| {
        if d.is(ExchangeType::INFORMATIONAL, false) && lost < 2 {
            lost += 1;
            Fate::Drop
        } else if d.is(ExchangeType::INFORMATIONAL, true) {
            Fate::Duplicate
        } else {
            Fate::Deliver
        }
    });
    pair.advance(Duration::from_secs(40));
    assert!(pair.client.peer_downs().is_empty());
    assert_eq!(
        pair.count(ExchangeType::INFORMATIONAL, false),
        3,
        "sent, lost twice, answered"
    );
    pair.assert_matching_pairs();
}

#[test]
fn lost_and_duplicated_ike_sa_rekey_messages() {
    for victim in [
        (ExchangeType::CREATE_CHILD_SA, false),
        (ExchangeType::CREATE_CHILD_SA, true),
        (ExchangeType::INFORMATIONAL, false),
        (ExchangeType::INFORMATIONAL, true),
    ] {
        let mut pair = Pair::new(Setup::default());
        pair.connect();
        let child = only_spi(&pair.client);
        let mut dropped = false;
        pair.filter = Box::new(move |d| {
            if d.is(victim.0, victim.1) && !dropped {
                dropped = true;
                Fate::Drop
            } else {
                Fate::Duplicate
            }
        });
        let now = pair.now();
        let peer = pair.client.endpoint.status(now)[0].peer;
        pair.client.endpoint.rekey_ike_sa(now, peer, &mut pair.rng);
        pair.flush();
        pair.advance(Duration::from_secs(20));
        let client = pair.client.endpoint.status(pair.now());
        let server = pair.server.endpoint.status(pair.now());
        assert_eq!(client[0].ike_spis, server[0].ike_spis, "{victim:?}");
        assert_eq!(pair.client.endpoint.counters().ike_sas, 1, "{victim:?}");
        assert_eq!(pair.server.endpoint.counters().ike_sas, 1, "{victim:?}");
        assert_eq!(only_spi(&pair.client), child);
        pair.assert_matching_pairs();
    }
}
