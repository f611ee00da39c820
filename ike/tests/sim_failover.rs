//! Two-peer simulation of a home with two servers: one simulated server answers at both
//! addresses, and the network decides which of them is reachable. The home uses the first server
//! that answers, moves to the next when the one it uses stops answering, and does not go back
//! when the first returns (README.md, "Failover and BGP").

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hometun_ike::crypto::PeerIdentity;
use hometun_ike::endpoint::{Endpoint, Output};
use hometun_ike::wire::ExchangeType;
use sim_support::*;

/// The second server's address.
const OTHER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// A pair whose client tries `first`, then `then`, both with the server's name.
fn pair_with_servers(first: Ipv4Addr, then: Ipv4Addr) -> Pair {
    let setup = Setup::default();
    let pki = Pki::new(setup.alg);
    let clock = Clock::new();
    let mut rng = SeededRandom::new(setup.seed);
    let server = Endpoint::responder(server_config(&setup, &pki), clock.now(), &mut rng);
    let mut config = client_config(&setup, &pki);
    config.server = SocketAddrV4::new(first, 500);
    config.fallback_servers = vec![(
        SocketAddrV4::new(then, 500),
        PeerIdentity::Fqdn(SERVER_NAME.into()),
    )];
    let client = Endpoint::initiator(config, clock.now(), &mut rng);
    Pair::from_endpoints(setup, pki, clock, rng, client, server)
}

/// The network drops everything to and from `dead` (a server that is down).
fn down(pair: &mut Pair, dead: Ipv4Addr) {
    pair.filter = Box::new(move |d| {
        if *d.dst.ip() == dead || *d.src.ip() == dead {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
}

/// Where the client's IKE SAs came up, in order.
fn ups(pair: &Pair) -> Vec<Ipv4Addr> {
    pair.client
        .outputs
        .iter()
        .filter_map(|(_, o)| match o {
            Output::PeerUp { remote, .. } => Some(*remote.ip()),
            _ => None,
        })
        .collect()
}

/// Where the client sent IKE_SA_INITs after virtual time `since`.
fn inits_after(pair: &Pair, since: Duration) -> Vec<Ipv4Addr> {
    pair.trace
        .iter()
        .filter(|(d, _)| {
            d.from_client && d.is(ExchangeType::IKE_SA_INIT, false) && d.deliver_at > since
        })
        .map(|(d, _)| *d.dst.ip())
        .collect()
}

#[test]
fn a_home_whose_first_server_is_silent_uses_the_next() {
    let mut pair = pair_with_servers(OTHER_ADDR, SERVER_ADDR);
    down(&mut pair, OTHER_ADDR);
    // One attempt's patience (1 + 2 + 4 + 8 + 16 s) and the backoff before the next.
    pair.advance(Duration::from_secs(40));
    assert_eq!(ups(&pair), [SERVER_ADDR]);
    pair.assert_matching_pairs();
    assert!(pair.esp(true) && pair.esp(false));
}

#[test]
fn a_dead_server_moves_the_home_to_the_next_at_once_and_it_stays_there() {
    let mut pair = pair_with_servers(SERVER_ADDR, OTHER_ADDR);
    pair.connect();
    assert_eq!(ups(&pair), [SERVER_ADDR]);
    let since = pair.clock.offset;
    down(&mut pair, SERVER_ADDR);
    // DPD at 30 s after the last message, then 1 + 2 + 4 + 8 s of retransmissions.
    pair.advance(Duration::from_secs(50));
    let downs: Vec<(Duration, String)> = pair
        .client
        .outputs
        .iter()
        .filter_map(|(at, o)| match o {
            Output::PeerDown { reason, .. } => Some((*at, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(downs.len(), 1);
    assert!(downs[0].1.starts_with("dead peer"), "{downs:?}");
    assert_eq!(
        ups(&pair),
        [SERVER_ADDR, OTHER_ADDR],
        "up on the next server"
    );
    assert_eq!(
        inits_after(&pair, since),
        [OTHER_ADDR],
        "one attempt, towards the next server"
    );
    let first_init = pair
        .trace
        .iter()
        .find(|(d, _)| d.is(ExchangeType::IKE_SA_INIT, false) && d.deliver_at > since)
        .map(|(d, _)| d.deliver_at - pair.latency)
        .unwrap();
    assert_eq!(first_init, downs[0].0, "the next server is tried at once");
    pair.assert_matching_pairs();
    assert!(pair.esp(true) && pair.esp(false));

    // The first server comes back: the home stays where it is.
    let back_at = pair.clock.offset;
    pair.filter = Box::new(|_| Fate::Deliver);
    pair.advance(Duration::from_secs(300));
    assert_eq!(ups(&pair), [SERVER_ADDR, OTHER_ADDR], "no flap back");
    assert!(
        inits_after(&pair, back_at).is_empty(),
        "no attempt towards either server while the one in use works"
    );
}

#[test]
fn a_home_with_one_server_keeps_trying_it() {
    let mut pair = Pair::new(Setup::default());
    pair.connect();
    let since = pair.clock.offset;
    pair.server.up = false;
    pair.advance(Duration::from_secs(120));
    let targets = inits_after(&pair, since);
    assert!(!targets.is_empty());
    assert!(targets.iter().all(|t| *t == SERVER_ADDR), "{targets:?}");
}
