//! Two-peer simulation of address changes (docs/ARCHITECTURE.md, "Roaming"): the client's forwarder
//! follows its new outer address and the server's forwarder moves the client's endpoint after its
//! checks; both IKE SAs follow, so that later exchanges (CHILD SA rekeys from either side, liveness
//! checks, a request in flight) reach the peer where it is now, and rekeyed pairs are installed
//! there, not at the old address.

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hometun_control::{Encapsulation, Endpoint as EspEndpoint, Event, Request};
use hometun_ike::wire::ExchangeType;
use sim_support::*;

/// The client's new outer address.
const MOVED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

fn connected(setup: Setup) -> Pair {
    let mut pair = Pair::new(setup);
    pair.connect();
    pair.assert_matching_pairs();
    pair
}

/// The old address is gone: nothing reaches it or comes from it any more.
fn old_address_gone(pair: &mut Pair) {
    pair.filter = Box::new(|d| {
        if *d.src.ip() == CLIENT_ADDR || *d.dst.ip() == CLIENT_ADDR {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
}

/// What both forwarders report when the client's address changed and the server checked it:
/// the client's `EndpointMoved` (our local address) and the server's (the peer's remote).
fn move_client(pair: &mut Pair) {
    let now = pair.now();
    let client_old = pair.client.forwarder.outbound().unwrap().sa.endpoint;
    let peer_c = pair.client.forwarder.outbound().unwrap().sa.peer;
    let client_new = EspEndpoint {
        local: MOVED,
        ..client_old
    };
    // The driver tells the endpoint our new address, then passes the event on.
    pair.client
        .endpoint
        .handle_local_address(now, MOVED, &mut pair.rng);
    pair.event(
        true,
        Event::EndpointMoved {
            peer: peer_c,
            old: client_old,
            new: client_new,
        },
    );
    let server_old = pair.server.forwarder.outbound().unwrap().sa.endpoint;
    let peer_s = pair.server.forwarder.outbound().unwrap().sa.peer;
    let server_new = EspEndpoint {
        remote: MOVED,
        ..server_old
    };
    // The real forwarder has moved its SAs already.
    let at = pair.clock.offset;
    pair.server
        .forwarder
        .apply(
            &Request::UpdateEndpoint {
                peer: peer_s,
                endpoint: server_new,
            },
            at,
        )
        .unwrap();
    pair.event(
        false,
        Event::EndpointMoved {
            peer: peer_s,
            old: server_old,
            new: server_new,
        },
    );
}

#[test]
fn rekeys_from_either_side_after_a_move_reach_the_new_address_and_stay_there() {
    let mut pair = connected(Setup::default());
    move_client(&mut pair);
    old_address_gone(&mut pair);
    let status = pair.server.endpoint.status(pair.now());
    assert_eq!(status[0].remote, SocketAddrV4::new(MOVED, 500));
    assert_eq!(status[0].moves, 1);
    let status = pair.client.endpoint.status(pair.now());
    assert_eq!(status[0].local, SocketAddrV4::new(MOVED, 500));
    assert_eq!(status[0].moves, 1);

    for from_client in [false, true] {
        let node = if from_client {
            &pair.client
        } else {
            &pair.server
        };
        let old = node.forwarder.outbound().unwrap().sa.spi_in.0;
        pair.soft_limit(from_client, old);
        pair.advance(Duration::from_secs(1));
        // The successor carries traffic at once; the old pair goes soon after.
        assert!(pair.esp(from_client) && pair.esp(!from_client));
        pair.advance(Duration::from_secs(4));
        let pairs = pair.assert_matching_pairs();
        assert_eq!(pairs.len(), 1, "from_client {from_client}");
        assert_ne!(pairs[0].spi_in.0, old);
        // The new pair is installed where the client is now, on both sides.
        for sa in pair.client.forwarder.installed.values() {
            assert_eq!(sa.sa.endpoint.local, MOVED);
        }
        for sa in pair.server.forwarder.installed.values() {
            assert_eq!(sa.sa.endpoint.remote, MOVED);
        }
    }
    // Nothing went to the old address, and nobody gave up.
    assert!(
        pair.trace
            .iter()
            .filter(|(d, _)| d.ike().is_some())
            .skip_while(|(d, _)| !d.is(ExchangeType::CREATE_CHILD_SA, false))
            .all(|(_, fate)| *fate == Fate::Deliver),
        "an IKE message to or from the old address after the move"
    );
    assert!(pair.client.peer_downs().is_empty() && pair.server.peer_downs().is_empty());
    // Liveness checks keep working both ways.
    pair.advance(Duration::from_secs(90));
    assert!(pair.client.peer_downs().is_empty() && pair.server.peer_downs().is_empty());
}

#[test]
fn a_request_in_flight_follows_the_move() {
    let mut pair = connected(Setup {
        server_dpd: Some(Duration::from_secs(20)),
        dpd: None,
        ..Setup::default()
    });
    // The server's liveness check leaves for the old address and is lost: the client moved.
    old_address_gone(&mut pair);
    pair.advance(Duration::from_secs(21));
    let first = pair
        .trace
        .iter()
        .find(|(d, _)| !d.from_client && d.is(ExchangeType::INFORMATIONAL, false))
        .unwrap();
    assert_eq!(*first.0.dst.ip(), CLIENT_ADDR);
    assert_eq!(first.1, Fate::Drop);
    move_client(&mut pair);
    // Its retransmission goes to the new address and is answered.
    pair.advance(Duration::from_secs(4));
    let answered = pair.trace.iter().any(|(d, fate)| {
        d.from_client && d.is(ExchangeType::INFORMATIONAL, true) && *fate == Fate::Deliver
    });
    assert!(
        answered,
        "{:?}",
        pair.trace
            .iter()
            .map(|(d, f)| (d.src, d.dst, d.ike(), *f))
            .collect::<Vec<_>>()
    );
    pair.advance(Duration::from_secs(30));
    assert!(pair.server.peer_downs().is_empty());
}

#[test]
fn a_nat_rebinding_keeps_esp_in_udp_and_later_pairs_at_the_new_mapping() {
    let mut pair = connected(Setup {
        nat: true,
        ..Setup::default()
    });
    let spi = pair.server.forwarder.outbound().unwrap().sa.spi_in.0;
    let peer = pair.server.forwarder.outbound().unwrap().sa.peer;
    let old = pair.server.forwarder.installed[&spi].sa.endpoint;
    let Encapsulation::Udp { local_port, .. } = old.encap else {
        panic!("{old:?}");
    };
    // The NAT gave the home's port 4500 another public port (a rebinding the server's
    // forwarder checked with its probe).
    let rebound = SocketAddrV4::new(NAT_PUBLIC, 41234);
    let new = EspEndpoint {
        remote: *rebound.ip(),
        encap: Encapsulation::Udp {
            local_port,
            remote_port: rebound.port(),
        },
        ..old
    };
    let at = pair.clock.offset;
    pair.server
        .forwarder
        .apply(
            &Request::UpdateEndpoint {
                peer,
                endpoint: new,
            },
            at,
        )
        .unwrap();
    pair.event(false, Event::EndpointMoved { peer, old, new });
    let status = pair.server.endpoint.status(pair.now());
    assert_eq!(status[0].remote, rebound);
    assert!(status[0].nat);
    assert_eq!(status[0].moves, 1);
    // A rekey from the server reaches the new mapping and installs its pair there.
    pair.soft_limit(false, spi);
    pair.advance(Duration::from_secs(1));
    let request = pair
        .trace
        .iter()
        .find(|(d, _)| !d.from_client && d.is(ExchangeType::CREATE_CHILD_SA, false))
        .unwrap();
    assert_eq!(request.0.dst, rebound);
    assert!(pair.esp(false) && pair.esp(true));
    pair.advance(Duration::from_secs(4));
    let installs = pair.server.forwarder.installs();
    assert_eq!(installs.len(), 2);
    assert_eq!(
        installs[1].endpoint, new,
        "the successor went to the old mapping"
    );
    assert_eq!(pair.server.forwarder.installed.len(), 1);
    assert_eq!(
        pair.server
            .forwarder
            .installed
            .values()
            .next()
            .unwrap()
            .sa
            .endpoint,
        new
    );
}
