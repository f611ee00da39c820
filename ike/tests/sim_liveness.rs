//! Two-peer simulation: liveness checks (DPD), dead peers, the client reconnecting with
//! INITIAL_CONTACT, the server dropping stale SAs, restarts of either side, shutdown.

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::time::Duration;

use hometun_control::Request;
use hometun_ike::wire::ExchangeType;
use sim_support::*;

fn connected(setup: Setup) -> Pair {
    let mut pair = Pair::new(setup);
    pair.connect();
    pair.assert_matching_pairs();
    pair
}

fn informational_requests(pair: &Pair, from_client: bool) -> usize {
    pair.trace
        .iter()
        .filter(|(d, _)| d.from_client == from_client && d.is(ExchangeType::INFORMATIONAL, false))
        .count()
}

#[test]
fn an_idle_peer_is_checked_and_answers() {
    // connect() ran 2 s; the last message was at 40 ms.
    let mut pair = connected(Setup::default());
    pair.advance(Duration::from_secs(27));
    assert_eq!(informational_requests(&pair, true), 0);
    pair.advance(Duration::from_secs(2));
    assert_eq!(
        informational_requests(&pair, true),
        1,
        "one liveness check after 30 s"
    );
    assert_eq!(pair.count(ExchangeType::INFORMATIONAL, true), 1, "answered");
    pair.advance(Duration::from_secs(120));
    assert_eq!(informational_requests(&pair, true), 5);
    assert!(pair.client.peer_downs().is_empty());
    assert_eq!(
        informational_requests(&pair, false),
        0,
        "the server has no DPD configured"
    );
}

#[test]
fn esp_from_the_peer_counts_as_life() {
    let mut pair = connected(Setup::default());
    for _ in 0..24 {
        assert!(pair.esp(false));
        pair.advance(Duration::from_secs(5));
    }
    assert_eq!(
        informational_requests(&pair, true),
        0,
        "two minutes of ESP, no DPD"
    );
    pair.advance(Duration::from_secs(35));
    assert_eq!(informational_requests(&pair, true), 1);
}

#[test]
fn a_dead_server_is_detected_and_the_client_reconnects_after_its_restart() {
    let mut pair = connected(Setup::default());
    let old_spi = *pair.client.forwarder.installed.keys().next().unwrap();
    pair.server.up = false;
    // DPD at 30 s after the last message (at 40 ms), then 1 + 2 + 4 + 8 s of
    // retransmissions: dead at 45 s; connect() ran the first 2 s.
    pair.advance(Duration::from_secs(42));
    assert!(pair.client.peer_downs().is_empty());
    pair.advance(Duration::from_secs(2));
    let downs = pair.client.peer_downs();
    assert_eq!(downs.len(), 1);
    assert!(downs[0].starts_with("dead peer"), "{downs:?}");
    assert!(
        pair.client.forwarder.installed.is_empty(),
        "children deleted"
    );
    assert!(
        pair.client
            .forwarder
            .log
            .iter()
            .any(|r| matches!(r, Request::Delete { spi_in } if spi_in.0 == old_spi))
    );
    assert_eq!(informational_requests(&pair, true), 4, "4 tries");
    // The client keeps trying with backoff while the server is down.
    pair.advance(Duration::from_secs(30));
    let attempts = pair.count(ExchangeType::IKE_SA_INIT, false);
    assert!(attempts >= 2, "{attempts}");
    // The server comes back (a new process: no state).
    pair.restart_server();
    pair.advance(Duration::from_secs(60));
    assert_eq!(pair.client.peer_ups(), 2);
    assert_eq!(pair.server.peer_ups(), 1);
    pair.assert_matching_pairs();
    assert!(pair.esp(true) && pair.esp(false));
}

#[test]
fn a_restarted_client_replaces_its_stale_sas_with_initial_contact() {
    let mut pair = connected(Setup::default());
    let stale = *pair.server.forwarder.installed.keys().next().unwrap();
    pair.restart_client();
    pair.advance(Duration::from_secs(2));
    assert_eq!(pair.client.peer_ups(), 1);
    // The server dropped the old SA and its CHILD SA, and reported the replacement.
    let downs = pair.server.peer_downs();
    assert_eq!(downs.len(), 1);
    assert_eq!(downs[0], "replaced: INITIAL_CONTACT from home.example");
    assert!(!pair.server.forwarder.installed.contains_key(&stale));
    pair.assert_matching_pairs();
    assert_eq!(pair.server.endpoint.counters().ike_sas, 1);
    assert_eq!(pair.server.endpoint.status(pair.now()).len(), 1);
    // Same peer ID for the same identity.
    let ids: Vec<_> = pair
        .server
        .forwarder
        .installs()
        .iter()
        .map(|sa| sa.peer)
        .collect();
    assert_eq!(ids[0], ids[1]);
}

#[test]
fn a_partition_ends_with_one_ike_sa_on_each_side() {
    let mut pair = connected(Setup::default());
    pair.filter = Box::new(|_| Fate::Drop);
    pair.advance(Duration::from_secs(90));
    assert_eq!(pair.client.peer_downs().len(), 1);
    // The server (no DPD) still holds the stale SA.
    assert_eq!(pair.server.endpoint.status(pair.now()).len(), 1);
    pair.filter = Box::new(|_| Fate::Deliver);
    pair.advance(Duration::from_secs(120));
    assert_eq!(pair.client.peer_ups(), 2);
    assert_eq!(
        pair.server.peer_downs(),
        ["replaced: INITIAL_CONTACT from home.example"]
    );
    pair.assert_matching_pairs();
    assert_eq!(pair.server.endpoint.counters().ike_sas, 1);
    assert_eq!(pair.client.endpoint.counters().ike_sas, 1);
}

#[test]
fn the_server_detects_a_vanished_client_with_its_own_dpd() {
    let mut pair = connected(Setup {
        server_dpd: Some(Duration::from_secs(20)),
        dpd: None,
        ..Setup::default()
    });
    pair.client.up = false;
    pair.advance(Duration::from_secs(40));
    assert_eq!(pair.server.peer_downs().len(), 1);
    assert!(pair.server.forwarder.installed.is_empty());
    assert_eq!(pair.server.endpoint.counters().ike_sas, 0);
    // The responder retransmitted its own request only: 4 INFORMATIONAL requests.
    assert_eq!(informational_requests(&pair, false), 4);
}

#[test]
fn the_responder_never_retransmits_responses_on_its_own() {
    let mut pair = Pair::new(Setup::default());
    // Every response to the client is lost, for ever.
    pair.filter = Box::new(|d| {
        if d.from_client {
            Fate::Deliver
        } else {
            Fate::Drop
        }
    });
    pair.advance(Duration::from_secs(60));
    let server_sent = pair.trace.iter().filter(|(d, _)| !d.from_client).count();
    let client_sent = pair.trace.iter().filter(|(d, _)| d.from_client).count();
    // Each server datagram answers one client datagram.
    assert_eq!(server_sent, client_sent);
    assert_eq!(pair.client.peer_ups(), 0);
}

#[test]
fn close_deletes_the_ike_sa_at_the_peer_and_stops_reconnecting() {
    let mut pair = connected(Setup::default());
    let now = pair.now();
    pair.client.endpoint.close(now, &mut pair.rng);
    pair.flush();
    assert_eq!(pair.client.peer_downs(), ["closed"]);
    assert!(pair.client.forwarder.installed.is_empty());
    assert!(
        !pair.client.endpoint.is_closed(),
        "the DELETE is not answered yet"
    );
    pair.advance(Duration::from_secs(60));
    assert!(pair.client.endpoint.is_closed());
    assert_eq!(pair.client.endpoint.counters().ike_sas, 0, "answered: gone");
    assert_eq!(pair.server.peer_downs(), ["deleted by the peer"]);
    assert!(pair.server.forwarder.installed.is_empty());
    assert_eq!(pair.server.endpoint.counters().ike_sas, 0);
    assert_eq!(
        pair.count(ExchangeType::IKE_SA_INIT, false),
        1,
        "no reconnection"
    );
    assert_eq!(pair.client.endpoint.poll_timeout(), None);
}

/// Finding (a strongSwan server kept the IKE SA of a stopped client): the client closed while
/// its CHILD SA rekey was unanswered and sent its DELETE at once with the next message ID,
/// beyond the window of one request the server had (RFC 7296 2.3); the server ignored it.
/// The DELETE now waits for the answer, and the close for the DELETE's.
#[test]
fn a_close_with_a_request_in_flight_sends_its_delete_after_the_answer() {
    let mut pair = connected(Setup::default());
    let spi = *pair.client.forwarder.installed.keys().next().unwrap();
    // The rekey's first try is lost: it is in flight, unseen by the server, at the close.
    let mut lost = false;
    pair.filter = Box::new(move |d| {
        if d.from_client && d.is(ExchangeType::CREATE_CHILD_SA, false) && !lost {
            lost = true;
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    pair.soft_limit(true, spi);
    let now = pair.now();
    pair.client.endpoint.close(now, &mut pair.rng);
    pair.flush();
    assert_eq!(pair.client.peer_downs(), ["closed"]);
    assert!(pair.client.forwarder.installed.is_empty());
    pair.advance(Duration::from_millis(100));
    assert_eq!(
        informational_requests(&pair, true),
        0,
        "the DELETE waits behind the rekey in flight"
    );
    pair.advance(Duration::from_secs(5));
    assert!(pair.client.endpoint.is_closed());
    assert_eq!(pair.server.peer_downs(), ["deleted by the peer"]);
    // It answers a retransmitted DELETE for a while, then goes.
    pair.advance(Duration::from_secs(60));
    assert_eq!(pair.server.endpoint.counters().ike_sas, 0);
    assert!(
        pair.server.forwarder.installed.is_empty(),
        "the pair the rekey made at the server went with the IKE SA"
    );
    assert!(pair.client.endpoint.is_closed());
    assert_eq!(pair.client.endpoint.counters().ike_sas, 0);
    assert_eq!(pair.client.endpoint.spis_reserved(), (0, 0));
}

/// A peer that never answers: the close waits (its DELETE is retransmitted) until the caller
/// gives up with `close_now`, which leaves nothing behind.
#[test]
fn a_close_the_peer_never_answers_ends_with_close_now() {
    let mut pair = connected(Setup::default());
    pair.filter = Box::new(|d| {
        if d.from_client {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    let now = pair.now();
    pair.client.endpoint.close(now, &mut pair.rng);
    pair.flush();
    pair.advance(Duration::from_secs(2));
    assert!(!pair.client.endpoint.is_closed());
    assert!(
        informational_requests(&pair, true) >= 2,
        "the DELETE is retransmitted"
    );
    let now = pair.now();
    pair.client.endpoint.close_now(now, &mut pair.rng);
    pair.flush();
    assert!(pair.client.endpoint.is_closed());
    assert_eq!(pair.client.endpoint.counters().ike_sas, 0);
    assert_eq!(pair.client.endpoint.spis_reserved(), (0, 0));
    assert_eq!(pair.client.endpoint.poll_timeout(), None);
}

/// A stopping server whose DELETE a home never answers names that home as not told (the
/// daemon keeps it in its record of the peers up, for the next run's restart hint); the hints
/// taken before the close name it with its SPIs.
#[test]
fn a_server_names_the_home_that_did_not_answer_its_delete() {
    let mut pair = connected(Setup::default());
    let hints = pair.server.endpoint.restart_hints();
    assert_eq!(hints.len(), 1);
    assert_eq!(hints[0].peer, CLIENT_NAME);
    assert!(!hints[0].spis.is_empty());
    // Nothing gets through either way: the home never hears of the DELETE.
    pair.filter = Box::new(|_| Fate::Drop);
    let now = pair.now();
    pair.server.endpoint.close(now, &mut pair.rng);
    pair.flush();
    pair.advance(Duration::from_secs(2));
    assert!(!pair.server.endpoint.is_closed());
    assert_eq!(pair.server.endpoint.peers_not_told(), [CLIENT_NAME]);
    let now = pair.now();
    pair.server.endpoint.close_now(now, &mut pair.rng);
    pair.flush();
    assert!(pair.server.endpoint.peers_not_told().is_empty());
}

#[test]
fn a_server_shutdown_makes_the_client_reconnect_to_the_next_server() {
    let mut pair = connected(Setup::default());
    let now = pair.now();
    pair.server.endpoint.close(now, &mut pair.rng);
    pair.flush();
    pair.advance(Duration::from_millis(100));
    assert_eq!(pair.client.peer_downs(), ["deleted by the peer"]);
    assert!(pair.server.endpoint.is_closed());
    assert!(pair.server.endpoint.peers_not_told().is_empty());
    // Stopping, the server answers no new IKE SA: the client's tries wait for the next one.
    pair.advance(Duration::from_secs(3));
    assert_eq!(pair.client.peer_ups(), 1);
    assert_eq!(pair.server.endpoint.counters().ike_sas, 0);
    pair.restart_server();
    pair.advance(Duration::from_secs(30));
    assert_eq!(pair.client.peer_ups(), 2);
    pair.assert_matching_pairs();
}

#[test]
fn a_moved_endpoint_moves_the_ike_sa_too() {
    use hometun_control::{Encapsulation, Endpoint as EspEndpoint, Event};
    use std::net::{Ipv4Addr, SocketAddrV4};

    let mut pair = connected(Setup {
        server_dpd: Some(Duration::from_secs(20)),
        ..Setup::default()
    });
    let spi = *pair.server.forwarder.installed.keys().next().unwrap();
    let old = pair.server.forwarder.installed[&spi].sa.endpoint;
    let peer = pair.server.forwarder.installed[&spi].sa.peer;
    let new = EspEndpoint {
        local: SERVER_ADDR,
        remote: Ipv4Addr::new(192, 0, 2, 3),
        encap: Encapsulation::Raw,
    };
    pair.event(false, Event::EndpointMoved { peer, old, new });
    let status = pair.server.endpoint.status(pair.now());
    assert_eq!(
        status[0].remote,
        SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 3), 500)
    );
    assert_eq!(status[0].last_moved_seconds_ago, Some(0));
    // The server's next request (its liveness check) goes to the new address.
    pair.advance(Duration::from_secs(25));
    let request = pair
        .trace
        .iter()
        .find(|(d, _)| !d.from_client && d.is(ExchangeType::INFORMATIONAL, false))
        .unwrap();
    assert_eq!(*request.0.dst.ip(), Ipv4Addr::new(192, 0, 2, 3));
}

#[test]
fn a_new_local_address_updates_the_client_sas() {
    use std::net::Ipv4Addr;

    let mut pair = connected(Setup::default());
    let now = pair.now();
    let moved = Ipv4Addr::new(192, 0, 2, 7);
    pair.client
        .endpoint
        .handle_local_address(now, moved, &mut pair.rng);
    pair.flush();
    let update = pair
        .client
        .forwarder
        .log
        .iter()
        .find_map(|r| match r {
            Request::UpdateEndpoint { endpoint, .. } => Some(*endpoint),
            _ => None,
        })
        .expect("UpdateEndpoint");
    assert_eq!(update.local, moved);
    assert_eq!(update.remote, SERVER_ADDR);
    assert_eq!(
        pair.client.endpoint.status(pair.now())[0].local.ip(),
        &moved
    );
}
