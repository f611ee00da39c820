//! Two-peer simulation: CHILD SA rekeys from either side with make-before-break, rekey
//! collisions (RFC 7296 2.8.1), IKE SA rekeys and their collisions, PFS, lost and duplicated
//! CREATE_CHILD_SA / INFORMATIONAL messages.

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::time::Duration;

use hometun_control::{Encapsulation, Event, Spi};
use hometun_ike::endpoint::Output;
use hometun_ike::wire::ExchangeType;
use sim_support::*;

/// The daemon's defaults but no IKE SA rekey after a CHILD SA rekey: these tests count the
/// CHILD SA exchanges alone (sim_forward_secrecy.rs covers the IKE rekeys that follow).
fn child_only() -> Setup {
    Setup {
        ike_rekey: hometun_ike::settings::IkeRekeyPolicy {
            after_child_rekeys: 0,
            ..Default::default()
        },
        ..Setup::default()
    }
}

fn connected(setup: Setup) -> Pair {
    let mut pair = Pair::new(setup);
    pair.connect();
    pair.assert_matching_pairs();
    pair
}

fn only_spi(node: &Node) -> u32 {
    assert_eq!(
        node.forwarder.installed.len(),
        1,
        "{:?}",
        node.forwarder.installed.keys()
    );
    *node.forwarder.installed.keys().next().unwrap()
}

fn rekeyed(node: &Node) -> Vec<(u32, u32)> {
    node.outputs
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Rekeyed {
                old_spi_in,
                new_spi_in,
                ..
            } => Some((old_spi_in.0, new_spi_in.0)),
            _ => None,
        })
        .collect()
}

/// Make-before-break on one side: the successor was installed before the old pair was deleted.
fn assert_install_before_delete(node: &Node, old: u32, new: u32) {
    let installed = node
        .forwarder
        .install_index(new)
        .expect("new pair installed");
    let deleted = node.forwarder.delete_index(old).expect("old pair deleted");
    assert!(
        installed < deleted,
        "install {installed} before delete {deleted}"
    );
}

/// The notices a node's endpoint gave, as the driver prints them.
fn notices(node: &Node) -> Vec<String> {
    node.outputs
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Notice(notice) => Some(notice.to_string()),
            _ => None,
        })
        .collect()
}

/// A CHILD SA rekey leaves the state machine as outputs, in the words the log had: the rekey
/// line at info on the side that starts it, the old pair's deletion on both.
#[test]
fn a_child_rekey_is_announced_through_outputs() {
    let mut pair = connected(child_only());
    let old_c = only_spi(&pair.client);
    let old_s = only_spi(&pair.server);
    pair.soft_limit(true, old_c);
    pair.settle();
    // No traffic here: the old pairs go after the grace period.
    pair.advance(Duration::from_secs(15));
    let client = notices(&pair.client);
    let started = format!("rekeying CHILD SA {old_c:08x} with vps.example (no PFS)");
    assert!(client.contains(&started), "{client:?}");
    assert!(
        client.iter().any(
            |l| l.starts_with(&format!("CHILD SA {old_c:08x}_i ")) && l.ends_with("_o deleted")
        ),
        "{client:?}"
    );
    let server = notices(&pair.server);
    assert!(
        server.iter().any(
            |l| l.starts_with(&format!("CHILD SA {old_s:08x}_i ")) && l.ends_with("_o deleted")
        ),
        "{server:?}"
    );
    assert!(pair.client.outputs.iter().any(|(_, o)| matches!(
        o,
        Output::Notice(n) if n.level() == hometun_ike::notice::Level::Info
    )));
}

#[test]
fn child_rekey_from_the_client_is_make_before_break() {
    let mut pair = connected(child_only());
    let old_c = only_spi(&pair.client);
    let old_s = only_spi(&pair.server);
    pair.soft_limit(true, old_c);
    pair.settle();
    // Both sides run old and new side by side until the new one carried traffic.
    assert_eq!(pair.client.forwarder.installed.len(), 2);
    assert_eq!(pair.server.forwarder.installed.len(), 2);
    pair.assert_matching_pairs();
    pair.advance(Duration::from_secs(3));
    assert_eq!(
        pair.client.forwarder.installed.len(),
        2,
        "no traffic yet: old kept"
    );
    // The client's own packets go out on the successor (the forwarder sends on the newest
    // pair); the next counter report shows it, and the DELETE of the old pair leaves.
    assert!(pair.esp(true));
    pair.advance(Duration::from_millis(1500));
    assert_eq!(
        pair.count(ExchangeType::INFORMATIONAL, false),
        1,
        "DELETE sent"
    );
    assert_eq!(
        pair.server.forwarder.installed.len(),
        1,
        "the peer's side is gone"
    );
    assert_eq!(
        pair.client.forwarder.installed.len(),
        2,
        "the old inbound SA stays a moment for packets in flight"
    );
    pair.advance(Duration::from_secs(2));
    let new_c = only_spi(&pair.client);
    let new_s = only_spi(&pair.server);
    assert_ne!(new_c, old_c);
    assert_ne!(new_s, old_s);
    pair.assert_matching_pairs();
    assert_install_before_delete(&pair.client, old_c, new_c);
    assert_install_before_delete(&pair.server, old_s, new_s);
    assert_eq!(rekeyed(&pair.client), [(old_c, new_c)]);
    assert_eq!(rekeyed(&pair.server), [(old_s, new_s)]);
    assert!(pair.esp(true) && pair.esp(false));
    // Exactly one CREATE_CHILD_SA and one INFORMATIONAL (the DELETE), both from the client.
    assert_eq!(pair.count(ExchangeType::CREATE_CHILD_SA, false), 1);
    assert_eq!(pair.count(ExchangeType::INFORMATIONAL, false), 1);
    assert!(
        pair.trace
            .iter()
            .all(|(d, _)| !d.is(ExchangeType::CREATE_CHILD_SA, false) || d.from_client)
    );
}

#[test]
fn the_peers_traffic_on_the_successor_lets_the_old_pair_go_too() {
    let mut pair = connected(child_only());
    let old_c = only_spi(&pair.client);
    pair.soft_limit(true, old_c);
    pair.settle();
    pair.advance(Duration::from_secs(2));
    assert_eq!(pair.client.forwarder.installed.len(), 2);
    // The server sends on the newest pair; the client's new inbound SA counts it.
    assert!(pair.esp(false));
    pair.advance(Duration::from_secs(4));
    let new_c = only_spi(&pair.client);
    assert_ne!(new_c, old_c);
    pair.assert_matching_pairs();
    assert_install_before_delete(&pair.client, old_c, new_c);
}

#[test]
fn child_rekey_from_the_server_deletes_after_a_grace_period_without_traffic() {
    let mut pair = connected(child_only());
    let old_c = only_spi(&pair.client);
    let old_s = only_spi(&pair.server);
    pair.soft_limit(false, old_s);
    pair.settle();
    assert_eq!(pair.server.forwarder.installed.len(), 2);
    pair.advance(Duration::from_secs(5));
    assert_eq!(
        pair.server.forwarder.installed.len(),
        2,
        "grace period not over"
    );
    // 10 s of grace, then the DELETE and 2 s more for packets in flight.
    pair.advance(Duration::from_secs(8));
    let new_c = only_spi(&pair.client);
    let new_s = only_spi(&pair.server);
    pair.assert_matching_pairs();
    assert_install_before_delete(&pair.client, old_c, new_c);
    assert_install_before_delete(&pair.server, old_s, new_s);
    // Server-initiated requests on the IKE SA start at message ID 0 (the server is the
    // original responder).
    let request = pair
        .trace
        .iter()
        .find(|(d, _)| d.is(ExchangeType::CREATE_CHILD_SA, false))
        .unwrap();
    assert!(!request.0.from_client);
    assert_eq!(request.0.ike().unwrap().2, 0);
}

/// Found under load in CI: the client rekeys A -> B, and before any counter report shows
/// traffic on B the server rekeys B -> C and deletes B. A must go with B, not wait out the
/// 10 s grace for a successor that no longer exists.
#[test]
fn a_pair_whose_successor_was_rekeyed_away_goes_without_the_grace_period() {
    let mut pair = connected(child_only());
    let a_c = only_spi(&pair.client);
    pair.soft_limit(true, a_c);
    pair.settle();
    let (_, b_s) = rekeyed(&pair.server)[0];
    pair.soft_limit(false, b_s);
    pair.settle();
    assert!(pair.esp(false) && pair.esp(true));
    pair.advance(Duration::from_secs(5));
    let c_c = only_spi(&pair.client);
    let c_s = only_spi(&pair.server);
    assert!(c_c != a_c, "A still installed on the client");
    assert_eq!(rekeyed(&pair.server).len(), 2);
    assert_ne!(c_s, b_s);
    pair.assert_matching_pairs();
}

#[test]
fn soft_limit_twice_rekeys_once_and_hard_limit_rekeys_at_once() {
    let mut pair = connected(child_only());
    let old = only_spi(&pair.client);
    pair.soft_limit(true, old);
    pair.soft_limit(true, old);
    pair.settle();
    assert_eq!(pair.count(ExchangeType::CREATE_CHILD_SA, false), 1);
    pair.advance(Duration::from_secs(13));
    let current = only_spi(&pair.client);
    let peer = pair.client.forwarder.installed[&current].sa.peer;
    pair.event(
        true,
        Event::HardLimit {
            peer,
            spi_in: Spi(current),
            direction: hometun_control::Direction::Inbound,
            kind: hometun_control::LimitKind::Packets,
        },
    );
    pair.settle();
    assert_eq!(pair.count(ExchangeType::CREATE_CHILD_SA, false), 2);
    pair.advance(Duration::from_secs(13));
    pair.assert_matching_pairs();
    assert_eq!(pair.client.forwarder.installed.len(), 1);
}

#[test]
fn lost_and_duplicated_rekey_messages() {
    for victim in [
        (ExchangeType::CREATE_CHILD_SA, false),
        (ExchangeType::CREATE_CHILD_SA, true),
        (ExchangeType::INFORMATIONAL, false),
        (ExchangeType::INFORMATIONAL, true),
    ] {
        let mut pair = connected(child_only());
        let mut dropped = false;
        pair.filter = Box::new(move |d| {
            if d.is(victim.0, victim.1) && !dropped {
                dropped = true;
                Fate::Drop
            } else {
                Fate::Duplicate
            }
        });
        let old_c = only_spi(&pair.client);
        pair.soft_limit(true, old_c);
        pair.advance(Duration::from_secs(30));
        pair.assert_matching_pairs();
        assert_eq!(pair.client.forwarder.installed.len(), 1, "{victim:?}");
        assert_eq!(pair.server.forwarder.installed.len(), 1, "{victim:?}");
        // One new pair per side, whatever the retransmissions.
        assert_eq!(pair.client.forwarder.installs().len(), 2, "{victim:?}");
        assert_eq!(pair.server.forwarder.installs().len(), 2, "{victim:?}");
        assert!(pair.esp(true) && pair.esp(false));
        assert_eq!(pair.client.peer_downs().len(), 0);
        // Every answer to a retransmitted request is the cached one, byte for byte.
        for exchange in [ExchangeType::CREATE_CHILD_SA, ExchangeType::INFORMATIONAL] {
            let answers: Vec<&Vec<u8>> = pair
                .trace
                .iter()
                .filter(|(d, _)| d.is(exchange, true) && !d.from_client)
                .map(|(d, _)| &d.data)
                .collect();
            assert!(
                answers.iter().all(|a| *a == answers[0]),
                "{victim:?} {exchange}"
            );
        }
    }
}

#[test]
fn simultaneous_child_rekeys_leave_the_same_single_pair_on_both_sides() {
    let mut outcomes = Vec::new();
    for seed in 1..=8 {
        let mut pair = connected(Setup {
            seed,
            ..child_only()
        });
        let old_c = only_spi(&pair.client);
        let old_s = only_spi(&pair.server);
        // Both soft limits before any datagram moves: the requests cross on the wire.
        let now = pair.now();
        for (at_client, spi) in [(true, old_c), (false, old_s)] {
            let node = if at_client {
                &mut pair.client
            } else {
                &mut pair.server
            };
            let peer = node.forwarder.installed[&spi].sa.peer;
            node.endpoint.handle_forwarder_event(
                now,
                &Event::SoftLimit {
                    peer,
                    spi_in: Spi(spi),
                    direction: hometun_control::Direction::Outbound,
                    kind: hometun_control::LimitKind::Bytes,
                },
                &mut pair.rng,
            );
        }
        pair.flush();
        assert_eq!(
            pair.count(ExchangeType::CREATE_CHILD_SA, false),
            2,
            "crossed"
        );
        pair.advance(Duration::from_secs(2));
        // Traffic both ways on whatever pair each side sends on, then past the grace period.
        pair.esp(true);
        pair.esp(false);
        pair.advance(Duration::from_secs(15));
        let survivors = pair.assert_matching_pairs();
        assert_eq!(survivors.len(), 1, "seed {seed}: exactly one pair survives");
        let survivor = survivors[0].spi_in.0;
        assert_ne!(survivor, old_c);
        assert!(pair.esp(true) && pair.esp(false));
        // Both sides report the same surviving pair as the successor.
        assert_eq!(
            rekeyed(&pair.client).last().unwrap().1,
            survivor,
            "seed {seed}"
        );
        let server_survivor = only_spi(&pair.server);
        assert_eq!(rekeyed(&pair.server).last().unwrap().1, server_survivor);
        assert_eq!(pair.client.peer_downs().len(), 0);
        // Which exchange won. The requests crossed, so each side answered the other's
        // request before its own answer came: the client installed the server-made pair
        // second and its own third.
        let installs = pair.client.forwarder.installs();
        assert_eq!(installs.len(), 3, "seed {seed}");
        let client_made_it = installs[2].spi_in.0 == survivor;
        assert!(client_made_it || installs[1].spi_in.0 == survivor);
        outcomes.push(client_made_it);
    }
    // The seeds cover both outcomes of the nonce comparison.
    assert!(
        outcomes.contains(&true) && outcomes.contains(&false),
        "{outcomes:?}"
    );
}

#[test]
fn pfs_rekey_carries_a_key_exchange() {
    let mut pair = connected(Setup {
        client_esp: vec!["aes128gcm16-x25519"],
        server_esp: vec!["aes128gcm16-x25519"],
        ..child_only()
    });
    let old = only_spi(&pair.client);
    pair.soft_limit(true, old);
    pair.settle();
    pair.assert_matching_pairs();
    assert_eq!(pair.client.forwarder.installed.len(), 2);
    // The request carries KE (34) inside the SK payload; it is larger than without PFS by
    // the KE payload (4 + 4 + 32 bytes) and the DH transform.
    let request = pair
        .trace
        .iter()
        .find(|(d, _)| d.is(ExchangeType::CREATE_CHILD_SA, false))
        .unwrap();
    let mut plain = connected(child_only());
    let old = only_spi(&plain.client);
    plain.soft_limit(true, old);
    plain.settle();
    let plain_request = plain
        .trace
        .iter()
        .find(|(d, _)| d.is(ExchangeType::CREATE_CHILD_SA, false))
        .unwrap();
    assert_eq!(request.0.data.len(), plain_request.0.data.len() + 40 + 8);
    let status = pair.client.endpoint.status(pair.now());
    assert!(
        status[0]
            .children
            .iter()
            .any(|c| c.proposal == "aes128gcm16-x25519")
    );
}

#[test]
fn pfs_group_mismatch_is_answered_with_invalid_ke_and_retried() {
    let mut pair = connected(Setup {
        client_esp: vec!["aes128gcm16-ecp256-x25519"],
        server_esp: vec!["aes128gcm16-x25519"],
        ..child_only()
    });
    let old = only_spi(&pair.client);
    pair.soft_limit(true, old);
    pair.settle();
    assert_eq!(
        pair.count(ExchangeType::CREATE_CHILD_SA, false),
        2,
        "retried with x25519"
    );
    pair.assert_matching_pairs();
    assert_eq!(pair.client.forwarder.installed.len(), 2);
}

#[test]
fn ike_sa_rekey_moves_the_children_and_deletes_the_old_sa() {
    let mut pair = connected(child_only());
    let before = pair.client.endpoint.status(pair.now());
    let child = only_spi(&pair.client);
    let now = pair.now();
    let peer = before[0].peer;
    pair.client.endpoint.rekey_ike_sa(now, peer, &mut pair.rng);
    pair.flush();
    pair.advance(Duration::from_secs(2));
    let client = pair.client.endpoint.status(pair.now());
    let server = pair.server.endpoint.status(pair.now());
    assert_eq!(client.len(), 1);
    assert_eq!(server.len(), 1);
    assert_ne!(client[0].ike_spis, before[0].ike_spis, "new SPIs");
    assert_eq!(client[0].ike_spis, server[0].ike_spis);
    assert_eq!(only_spi(&pair.client), child, "the CHILD SA is untouched");
    assert_eq!(client[0].children.len(), 1);
    assert_eq!(server[0].children.len(), 1);
    // The peer of a DELETE keeps the deleted SA as long as a retransmitted DELETE could come
    // (1 + 2 + 4 + 8 s) to answer it again.
    pair.advance(Duration::from_secs(16));
    assert_eq!(
        pair.client.endpoint.counters().ike_sas,
        1,
        "old IKE SA deleted"
    );
    assert_eq!(pair.server.endpoint.counters().ike_sas, 1);
    assert!(pair.client.peer_downs().is_empty() && pair.server.peer_downs().is_empty());
    assert!(pair.client.forwarder.delete_index(child).is_none());
    // The new IKE SA works: a CHILD SA rekey from the server (message ID 0 on it).
    let old_s = only_spi(&pair.server);
    pair.soft_limit(false, old_s);
    pair.advance(Duration::from_secs(14));
    pair.assert_matching_pairs();
    assert_ne!(only_spi(&pair.server), old_s);
    // And liveness still answered on the new SA.
    pair.advance(Duration::from_secs(60));
    assert!(pair.client.peer_downs().is_empty());
}

/// A home that forces ESP in UDP keeps it, and says so, across an IKE SA rekey and the CHILD
/// SA rekey on the new IKE SA: the new SAs carry the old one's address facts.
#[test]
fn ike_sa_rekey_keeps_forced_udp_encapsulation() {
    let mut pair = connected(Setup {
        force_udp_encapsulation: true,
        ..child_only()
    });
    let udp = Encapsulation::Udp {
        local_port: 4500,
        remote_port: 4500,
    };
    let before = pair.client.endpoint.status(pair.now());
    assert!(before[0].udp_forced && !before[0].nat, "{before:?}");
    let now = pair.now();
    pair.client
        .endpoint
        .rekey_ike_sa(now, before[0].peer, &mut pair.rng);
    pair.flush();
    pair.advance(Duration::from_secs(2));
    let client = pair.client.endpoint.status(pair.now());
    assert_ne!(client[0].ike_spis, before[0].ike_spis, "new SPIs");
    assert!(client[0].udp_forced && !client[0].nat, "{client:?}");
    let server = pair.server.endpoint.status(pair.now());
    assert!(server[0].nat, "{server:?}");
    // A CHILD SA made on the new IKE SA is ESP in UDP at both ends.
    let old = only_spi(&pair.server);
    pair.soft_limit(false, old);
    pair.advance(Duration::from_secs(14));
    let sas = pair.assert_matching_pairs();
    assert_ne!(only_spi(&pair.server), old);
    assert!(sas.iter().all(|sa| sa.endpoint.encap == udp), "{sas:?}");
    let server_sa = &pair.server.forwarder.installed[&sas[0].spi_out.0].sa;
    assert_eq!(server_sa.endpoint.encap, udp);
}

#[test]
fn ike_sa_rekey_from_the_server() {
    let mut pair = connected(child_only());
    let before = pair.server.endpoint.status(pair.now());
    let now = pair.now();
    pair.server
        .endpoint
        .rekey_ike_sa(now, before[0].peer, &mut pair.rng);
    pair.flush();
    pair.advance(Duration::from_secs(2));
    let client = pair.client.endpoint.status(pair.now());
    let server = pair.server.endpoint.status(pair.now());
    assert_ne!(server[0].ike_spis, before[0].ike_spis);
    assert_eq!(client[0].ike_spis, server[0].ike_spis);
    // The peer of a DELETE keeps the deleted SA as long as a retransmitted DELETE could come
    // (1 + 2 + 4 + 8 s) to answer it again.
    pair.advance(Duration::from_secs(16));
    assert_eq!(pair.client.endpoint.counters().ike_sas, 1);
    assert_eq!(pair.server.endpoint.counters().ike_sas, 1);
    pair.assert_matching_pairs();
}

#[test]
fn simultaneous_ike_sa_rekeys_agree_on_one_sa() {
    let mut outcomes = Vec::new();
    for seed in 1..=8 {
        let mut pair = connected(Setup {
            seed,
            ..child_only()
        });
        let before = pair.client.endpoint.status(pair.now());
        let child = only_spi(&pair.client);
        let now = pair.now();
        let c_peer = before[0].peer;
        let s_peer = pair.server.endpoint.status(now)[0].peer;
        pair.client
            .endpoint
            .rekey_ike_sa(now, c_peer, &mut pair.rng);
        pair.server
            .endpoint
            .rekey_ike_sa(now, s_peer, &mut pair.rng);
        pair.flush();
        assert_eq!(
            pair.count(ExchangeType::CREATE_CHILD_SA, false),
            2,
            "crossed"
        );
        pair.advance(Duration::from_secs(3));
        // The winner's initiator deletes the old SA (a request with its next message ID on
        // it); the loser's initiator deletes its redundant new SA (message ID 0 there).
        let client_deletes: Vec<u32> = pair
            .trace
            .iter()
            .filter(|(d, _)| d.from_client && d.is(ExchangeType::INFORMATIONAL, false))
            .map(|(d, _)| d.ike().unwrap().2)
            .collect();
        assert_eq!(client_deletes.len(), 1, "seed {seed}: {client_deletes:?}");
        let client_won = client_deletes[0] != 0;
        let client = pair.client.endpoint.status(pair.now());
        let server = pair.server.endpoint.status(pair.now());
        assert_eq!(
            client.len(),
            1,
            "seed {seed}: one current IKE SA on the client"
        );
        assert_eq!(
            server.len(),
            1,
            "seed {seed}: one current IKE SA on the server"
        );
        assert_eq!(
            client[0].ike_spis, server[0].ike_spis,
            "seed {seed}: the same one"
        );
        assert_ne!(client[0].ike_spis, before[0].ike_spis);
        assert_eq!(client[0].children.len(), 1, "seed {seed}");
        assert_eq!(server[0].children.len(), 1, "seed {seed}");
        assert_eq!(only_spi(&pair.client), child);
        pair.advance(Duration::from_secs(16));
        assert_eq!(pair.client.endpoint.counters().ike_sas, 1, "seed {seed}");
        assert_eq!(pair.server.endpoint.counters().ike_sas, 1, "seed {seed}");
        assert!(pair.client.peer_downs().is_empty() && pair.server.peer_downs().is_empty());
        // The surviving SA works.
        let old = only_spi(&pair.client);
        pair.soft_limit(true, old);
        pair.advance(Duration::from_secs(14));
        pair.assert_matching_pairs();
        assert_ne!(only_spi(&pair.client), old, "seed {seed}");
        outcomes.push(client_won);
    }
    assert!(
        outcomes.contains(&true) && outcomes.contains(&false),
        "{outcomes:?}"
    );
}

#[test]
fn a_rekey_colliding_with_the_delete_of_its_child() {
    // Both sides rekey the same pair, but the client's requests take 12 s to arrive: the
    // server finishes its own rekey, waits out the grace period and deletes the old pair
    // while the client's rekey of that pair is still on its way (RFC 7296 2.25.1).
    let mut pair = connected(child_only());
    pair.filter = Box::new(|d| {
        if d.from_client && d.is(ExchangeType::CREATE_CHILD_SA, false) {
            Fate::Delay(Duration::from_secs(12))
        } else {
            Fate::Deliver
        }
    });
    let old_c = only_spi(&pair.client);
    let old_s = only_spi(&pair.server);
    let now = pair.now();
    for (at_client, spi) in [(true, old_c), (false, old_s)] {
        let node = if at_client {
            &mut pair.client
        } else {
            &mut pair.server
        };
        let peer = node.forwarder.installed[&spi].sa.peer;
        node.endpoint.handle_forwarder_event(
            now,
            &Event::SoftLimit {
                peer,
                spi_in: Spi(spi),
                direction: hometun_control::Direction::Outbound,
                kind: hometun_control::LimitKind::Bytes,
            },
            &mut pair.rng,
        );
    }
    pair.flush();
    pair.advance(Duration::from_secs(30));
    let survivors = pair.assert_matching_pairs();
    assert_eq!(survivors.len(), 1);
    assert_ne!(survivors[0].spi_in.0, old_c);
    assert!(pair.esp(true) && pair.esp(false));
    assert!(pair.client.peer_downs().is_empty() && pair.server.peer_downs().is_empty());
    // The server deleted the old pair (one DELETE from it) and answered the late rekey with
    // CHILD_SA_NOT_FOUND: no third pair anywhere.
    assert_eq!(pair.server.forwarder.installs().len(), 2);
    assert_eq!(pair.client.forwarder.installs().len(), 2);
    assert_eq!(
        rekeyed(&pair.client).last().unwrap().1,
        survivors[0].spi_in.0
    );
}
