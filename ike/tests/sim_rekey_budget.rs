//! Findings of the deep fuzz targets (fuzz/fuzz_targets/ike_established_*.rs), replayed in the
//! simulation with a hostile home built from the real state machine: what an enrolled home can
//! make the server hold and compute by rekeying its IKE SA.

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::time::Duration;

use hometun_control::PeerId;
use hometun_ike::settings::IkeRekeyPolicy;
use hometun_ike::wire::{ExchangeType, Payload, ProtocolId};
use sim_support::*;

/// No IKE SA rekey after a CHILD SA rekey: the tests start every rekey themselves.
fn setup() -> Setup {
    Setup {
        ike_rekey: IkeRekeyPolicy {
            after_child_rekeys: 0,
            ..IkeRekeyPolicy::default()
        },
        ..Setup::default()
    }
}

fn connected() -> Pair {
    let mut pair = Pair::new(setup());
    pair.connect();
    pair.assert_matching_pairs();
    pair
}

/// The client's peer ID for the server.
fn server_peer(pair: &Pair) -> PeerId {
    pair.client
        .endpoint
        .status(pair.now())
        .first()
        .map(|p| p.peer)
        .unwrap()
}

fn rekey_ike(pair: &mut Pair) {
    let (now, peer) = (pair.now(), server_peer(pair));
    pair.client.endpoint.rekey_ike_sa(now, peer, &mut pair.rng);
    pair.flush();
}

/// Finding: a home that rekeys its IKE SA again and again made the server hold an IKE SA for
/// every rekey: the replaced ones wait for their DELETE (30 s) or, once deleted, answer
/// retransmitted DELETEs (15 s). Nothing bounded them but the home's pace (the fuzz target saw 5
/// after 6 rekeys in 6 s; a home on a fast line reaches thousands). At most 3 IKE SAs of one
/// identity are held, with or without the home's DELETEs.
#[test]
fn a_home_rekeying_its_ike_sa_again_and_again_leaves_at_most_three() {
    for deletes in [true, false] {
        let mut pair = connected();
        if !deletes {
            pair.client.tamper(|header, payloads| {
                if header.exchange_type == ExchangeType::INFORMATIONAL && !header.flags.response() {
                    payloads.retain(
                        |p| !matches!(p, Payload::Delete(d) if d.protocol == ProtocolId::IKE),
                    );
                }
            });
        }
        for round in 0..12 {
            rekey_ike(&mut pair);
            pair.advance(Duration::from_millis(300));
            let held = pair.server.endpoint.counters().ike_sas;
            assert!(
                held <= 3,
                "deletes {deletes}, round {round}: the server holds {held} IKE SAs of one home"
            );
        }
        // The tunnel still works.
        assert_eq!(pair.server.forwarder.installed.len(), 1);
        pair.assert_matching_pairs();
    }
}

/// Finding: the token bucket on a home's CHILD SA rekeys (5, then one per 10 s) started full
/// again on every rekeyed IKE SA, and IKE SA rekeys themselves were not limited: a home that
/// alternated the two made the server compute a Diffie-Hellman exchange per request at its own
/// pace. Both now take from one bucket, which the rekeyed IKE SA inherits.
#[test]
fn rekeying_the_ike_sa_does_not_refill_the_homes_rekey_budget() {
    let mut setup = setup();
    setup.client_esp = vec!["aes128gcm16-x25519"];
    setup.server_esp = vec!["aes128gcm16-x25519"];
    let mut pair = Pair::new(setup);
    pair.connect();
    for _ in 0..10 {
        rekey_ike(&mut pair);
        pair.advance(Duration::from_millis(200));
        if let Some(&newest) = pair.client.forwarder.order.last() {
            pair.soft_limit(true, newest);
        }
        pair.advance(Duration::from_millis(200));
    }
    // 4 s: the burst of 5 and nothing refilled.
    let counters = pair.server.endpoint.counters();
    let accepted = counters.ike_rekeys + counters.child_rekeys;
    assert!(
        accepted <= 5,
        "the server did {} IKE and {} CHILD SA rekeys (each a Diffie-Hellman) for the home in 4 s",
        counters.ike_rekeys,
        counters.child_rekeys
    );
    assert!(accepted >= 2, "the test never rekeyed");
}

/// Finding: a pair the forwarder refused keeps its SPI reserved until the peer answered the
/// DELETE for it; when the IKE SA was replaced by a re-authentication before that DELETE went
/// out (the refused pair was the last usable one, which is what starts the re-authentication),
/// the queued DELETE was dropped and the SPI stayed reserved for good. Every SPI is free again
/// once the endpoint closes.
#[test]
fn a_refused_pair_leaves_no_spi_behind_when_the_ike_sa_is_replaced() {
    let mut pair = connected();
    let client_spi = *pair.client.forwarder.installed.keys().next().unwrap();
    let server_spi = *pair.server.forwarder.installed.keys().next().unwrap();
    let peer = pair.client.forwarder.installed[&client_spi].sa.peer;
    // The home's pair used up its sequence numbers (its rekey goes out at once, and its
    // answer is lost) while the server rekeys it too; the home's forwarder refuses the pair of
    // the server's rekey: the DELETE for it waits behind the home's own rekey.
    pair.client.forwarder.refuse_installs = 1;
    pair.filter = Box::new(|d| {
        if !d.from_client && d.is(ExchangeType::CREATE_CHILD_SA, true) {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    pair.event(
        true,
        hometun_control::Event::SeqExhausted {
            peer,
            spi_in: hometun_control::Spi(client_spi),
        },
    );
    pair.soft_limit(false, server_spi);
    pair.advance(Duration::from_secs(60));
    assert_eq!(pair.client.endpoint.counters().installs_refused, 1);
    let now = pair.now();
    pair.client.endpoint.close(now, &mut pair.rng);
    pair.flush();
    pair.client.endpoint.close_now(now, &mut pair.rng);
    pair.flush();
    assert_eq!(pair.client.endpoint.spis_reserved(), (0, 0));
}
