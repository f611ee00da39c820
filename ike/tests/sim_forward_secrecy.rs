//! Two-peer simulation: forward secrecy. CHILD SA rekeys carry a KE payload by default (RFC 7296
//! 1.3.1), a peer without PFS is accepted only when the proposals allow it (`modpnone`), and the
//! IKE SA itself is rekeyed after CHILD SA rekeys, after a byte count, and (only if configured)
//! after a time, so that SK_d gets a fresh Diffie-Hellman secret too.

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hometun_control::PeerId;
use hometun_ike::settings::IkeRekeyPolicy;
use hometun_ike::wire::{ExchangeType, Payload};
use sim_support::*;

/// The daemon's default ESP proposals (config: `ike.esp_proposals`).
const DEFAULT_ESP: [&str; 2] = ["aes128gcm16-x25519-ecp256", "aes256gcm16-x25519-ecp256"];

fn defaults() -> Setup {
    Setup {
        client_esp: DEFAULT_ESP.to_vec(),
        server_esp: DEFAULT_ESP.to_vec(),
        ..Setup::default()
    }
}

fn connected(setup: Setup) -> Pair {
    let mut pair = Pair::new(setup);
    pair.connect();
    pair.assert_matching_pairs();
    pair
}

fn newest(node: &Node) -> u32 {
    *node.forwarder.order.last().unwrap()
}

/// For each CREATE_CHILD_SA message a node sends: (is a response, carries a KE payload).
type Seen = Arc<Mutex<Vec<(bool, bool)>>>;

fn watch_ke(node: &mut Node) -> Seen {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    node.tamper(move |header, payloads| {
        if header.exchange_type == ExchangeType::CREATE_CHILD_SA {
            let ke = payloads.iter().any(|p| matches!(p, Payload::Ke(_)));
            log.lock().unwrap().push((header.flags.response(), ke));
        }
    });
    seen
}

fn child_only(setup: Setup) -> Setup {
    Setup {
        ike_rekey: IkeRekeyPolicy {
            after_child_rekeys: 0,
            ..IkeRekeyPolicy::default()
        },
        ..setup
    }
}

#[test]
fn child_rekeys_carry_a_key_exchange_both_ways_by_default() {
    let mut pair = connected(child_only(defaults()));
    let client = watch_ke(&mut pair.client);
    let server = watch_ke(&mut pair.server);
    let c = newest(&pair.client);
    pair.soft_limit(true, c);
    pair.settle();
    let s = newest(&pair.server);
    pair.soft_limit(false, s);
    pair.settle();
    assert_eq!(*client.lock().unwrap(), vec![(false, true), (true, true)]);
    assert_eq!(*server.lock().unwrap(), vec![(true, true), (false, true)]);
    pair.advance(Duration::from_secs(15));
    pair.assert_matching_pairs();
    let status = pair.client.endpoint.status(pair.now());
    assert!(
        status[0]
            .children
            .iter()
            .all(|c| c.proposal == "aes128gcm16-x25519"),
        "{:?}",
        status[0].children
    );
}

#[test]
fn the_ike_sa_is_rekeyed_after_a_child_rekey_and_sk_d_changes() {
    let mut pair = connected(defaults());
    let peer = PeerId(1);
    let before = pair.client.endpoint.sk_d_digest(peer).unwrap();
    assert_eq!(pair.server.endpoint.sk_d_digest(peer), Some(before));
    let spis_before = pair.client.endpoint.status(pair.now())[0].ike_spis.clone();
    let c = newest(&pair.client);
    pair.soft_limit(true, c);
    pair.settle();
    assert!(pair.esp(true) && pair.esp(false));
    pair.advance(Duration::from_secs(15));
    let after = pair.client.endpoint.sk_d_digest(peer).unwrap();
    assert_ne!(after, before, "SK_d unchanged");
    assert_eq!(pair.server.endpoint.sk_d_digest(peer), Some(after));
    assert_ne!(
        pair.client.endpoint.status(pair.now())[0].ike_spis,
        spis_before
    );
    for node in [&pair.client, &pair.server] {
        let counters = node.endpoint.counters();
        assert_eq!(counters.child_rekeys, 1);
        assert!(counters.ike_rekeys >= 1);
        assert_eq!(counters.ike_sas, 1, "the old IKE SA is gone");
    }
    // The CHILD SA moved to the new IKE SA and still works.
    pair.assert_matching_pairs();
    assert!(pair.esp(true) && pair.esp(false));
    assert!(pair.client.peer_downs().is_empty() && pair.server.peer_downs().is_empty());
}

#[test]
fn a_server_side_child_rekey_leads_to_one_ike_rekey_not_a_collision() {
    let mut pair = connected(defaults());
    let s = newest(&pair.server);
    pair.soft_limit(false, s);
    pair.settle();
    pair.advance(Duration::from_secs(15));
    // The server made the CHILD rekey, so it rekeys the IKE SA; the client, which only
    // answered, waits and finds it done.
    let requests = pair
        .trace
        .iter()
        .filter(|(d, _)| d.is(ExchangeType::CREATE_CHILD_SA, false))
        .count();
    assert_eq!(requests, 2, "one CHILD rekey, one IKE rekey");
    assert_eq!(pair.client.endpoint.counters().ike_rekeys, 1);
    assert_eq!(pair.server.endpoint.counters().ike_rekeys, 1);
}

#[test]
fn after_n_child_rekeys() {
    let mut pair = connected(Setup {
        ike_rekey: IkeRekeyPolicy {
            after_child_rekeys: 3,
            ..IkeRekeyPolicy::default()
        },
        ..defaults()
    });
    for round in 1..=3 {
        let c = newest(&pair.client);
        pair.soft_limit(true, c);
        pair.settle();
        assert!(pair.esp(true));
        pair.advance(Duration::from_secs(12));
        let ike_rekeys = pair.client.endpoint.counters().ike_rekeys;
        assert_eq!(ike_rekeys, u64::from(round == 3), "round {round}");
    }
}

#[test]
fn after_a_byte_count_across_the_child_sas() {
    let mut pair = connected(Setup {
        ike_rekey: IkeRekeyPolicy {
            after_child_rekeys: 0,
            bytes: Some(5_000),
            seconds: None,
        },
        ..defaults()
    });
    // The fake forwarder counts 100 bytes per packet, each direction.
    for _ in 0..20 {
        pair.esp(true);
    }
    pair.advance(Duration::from_secs(2));
    assert_eq!(pair.client.endpoint.counters().ike_rekeys, 0, "2000 bytes");
    for _ in 0..20 {
        pair.esp(true);
        pair.esp(false);
    }
    pair.advance(Duration::from_secs(8));
    assert_eq!(pair.client.endpoint.counters().ike_rekeys, 1, "6000 bytes");
    // Counting starts again with the new keys.
    pair.advance(Duration::from_secs(10));
    assert_eq!(pair.client.endpoint.counters().ike_rekeys, 1);
}

#[test]
fn no_time_bound_by_default_and_one_when_configured() {
    let mut idle = connected(defaults());
    idle.advance(Duration::from_secs(2 * 86_400));
    assert_eq!(idle.client.endpoint.counters().ike_rekeys, 0);
    assert_eq!(idle.client.endpoint.counters().child_rekeys, 0);

    let mut bounded = connected(Setup {
        ike_rekey: IkeRekeyPolicy {
            seconds: Some(3600),
            ..IkeRekeyPolicy::default()
        },
        ..defaults()
    });
    // connect() took 2 s of the hour already.
    bounded.advance(Duration::from_secs(3590));
    assert_eq!(bounded.client.endpoint.counters().ike_rekeys, 0);
    bounded.advance(Duration::from_secs(20));
    assert_eq!(bounded.client.endpoint.counters().ike_rekeys, 1);
    bounded.advance(Duration::from_secs(3600));
    assert_eq!(bounded.client.endpoint.counters().ike_rekeys, 2);
    bounded.assert_matching_pairs();
}

/// A peer without PFS is accepted when our proposals say so (`modpnone`)...
#[test]
fn a_peer_without_pfs_is_accepted_when_the_proposals_allow_it() {
    let mut pair = connected(child_only(Setup {
        client_esp: vec!["aes128gcm16-x25519-modpnone"],
        server_esp: vec!["aes128gcm16"],
        ..Setup::default()
    }));
    let client = watch_ke(&mut pair.client);
    let c = newest(&pair.client);
    pair.soft_limit(true, c);
    pair.settle();
    assert_eq!(*client.lock().unwrap(), vec![(false, true)]);
    assert_eq!(
        pair.client.forwarder.installs().len(),
        2,
        "rekeyed without PFS"
    );
    assert_eq!(pair.client.endpoint.counters().child_rekeys_failed, 0);
}

/// ...and refused when they ask for PFS: the rekey fails and is retried, never done without.
#[test]
fn a_peer_without_pfs_is_refused_when_the_proposals_require_it() {
    let mut pair = connected(child_only(Setup {
        client_esp: vec!["aes128gcm16-x25519"],
        server_esp: vec!["aes128gcm16"],
        ..Setup::default()
    }));
    let c = newest(&pair.client);
    pair.soft_limit(true, c);
    pair.advance(Duration::from_secs(10));
    assert_eq!(
        pair.client.forwarder.installs().len(),
        1,
        "never rekeyed without PFS"
    );
    assert!(pair.client.endpoint.counters().child_rekeys_failed >= 2);
    // The server's own rekey without KE is refused by the client the same way.
    let s = newest(&pair.server);
    pair.soft_limit(false, s);
    pair.settle();
    assert_eq!(pair.server.forwarder.installs().len(), 1);
}
