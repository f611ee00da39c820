//! Two-peer simulation: how a home gets back to its server. The reconnection backoff stops at
//! `reconnect_max` (tens of seconds, not minutes); an ICMP port unreachable means "the server is
//! not up yet", not a lost request; a reload, a new local address and the operator's
//! `initiate` start the backoff again; the operator's `terminate` drops a peer that then comes
//! back by itself; a refused home says so once and then retries quietly.

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::net::Ipv4Addr;
use std::time::Duration;

use hometun_ike::endpoint::{Initiated, Output};
use hometun_ike::wire::ExchangeType;
use sim_support::*;

/// The initiator SPI of an IKE datagram.
fn spi_i(d: &Datagram) -> [u8; 8] {
    d.data[..8].try_into().unwrap()
}

/// When each of the client's connection attempts began (its first IKE_SA_INIT of a new SPI).
fn attempts(pair: &Pair) -> Vec<Duration> {
    let mut seen = Vec::new();
    let mut starts = Vec::new();
    for (d, _) in &pair.trace {
        if d.from_client && d.is(ExchangeType::IKE_SA_INIT, false) && !seen.contains(&spi_i(d)) {
            seen.push(spi_i(d));
            // Sent one latency before it is due.
            starts.push(d.deliver_at - pair.latency);
        }
    }
    starts
}

fn gaps(starts: &[Duration]) -> Vec<Duration> {
    starts.windows(2).map(|w| w[1] - w[0]).collect()
}

/// The server's host drops everything from the client (down, or a firewall in the way).
fn silent_server(pair: &mut Pair) {
    pair.filter = Box::new(|d| {
        if d.from_client {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
}

fn open_path(pair: &mut Pair) {
    pair.filter = Box::new(|_| Fate::Deliver);
}

/// Time from now until the client's IKE SA is up, at most `limit`.
fn time_to_connect(pair: &mut Pair, limit: Duration) -> Option<Duration> {
    let ups = pair.client.peer_ups();
    let step = Duration::from_millis(10);
    let mut waited = Duration::ZERO;
    while waited <= limit {
        if pair.client.peer_ups() > ups {
            return Some(waited);
        }
        pair.advance(step);
        waited += step;
    }
    None
}

/// Advances `d` with the server's daemon not running while its host is up: every datagram the
/// client sends to it is answered with ICMP port unreachable (one latency later, as the
/// client's IKE socket would report it).
fn advance_port_closed(pair: &mut Pair, d: Duration) {
    let step = Duration::from_millis(10);
    let mut reported = pair.trace.len();
    let mut elapsed = Duration::ZERO;
    while elapsed < d {
        pair.advance(step);
        elapsed += step;
        let unreachable: Vec<_> = pair.trace[reported..]
            .iter()
            .filter(|(d, _)| d.from_client)
            .map(|(d, _)| d.dst)
            .collect();
        reported = pair.trace.len();
        for destination in unreachable {
            let now = pair.now();
            pair.client.endpoint.handle_unreachable(now, destination);
        }
        pair.flush();
    }
}

#[test]
fn the_backoff_stops_at_reconnect_max() {
    let mut pair = Pair::new(Setup::default());
    silent_server(&mut pair);
    pair.advance(Duration::from_secs(600));
    let starts = attempts(&pair);
    let gaps = gaps(&starts);
    // Each attempt: 4 transmissions over 1 + 2 + 4 + 8 s, then the backoff (30 s at most).
    let longest = Duration::from_secs(15 + 30) + Duration::from_millis(100);
    assert!(
        gaps.iter().all(|g| *g <= longest),
        "gaps between attempts {gaps:?}"
    );
    assert!(
        *gaps.last().unwrap() >= Duration::from_secs(15 + 30),
        "the backoff did not reach its cap: {gaps:?}"
    );
    assert!(starts.len() >= 13, "{} attempts in 10 min", starts.len());
    // The server is reachable again: the home is back within one attempt's wait.
    open_path(&mut pair);
    let back = time_to_connect(&mut pair, Duration::from_secs(60)).expect("never came back");
    assert!(back <= longest, "back after {back:?}");
}

#[test]
fn the_cap_is_configurable() {
    let setup = Setup {
        reconnect_max: Duration::from_secs(5),
        ..Setup::default()
    };
    let mut pair = Pair::new(setup);
    silent_server(&mut pair);
    pair.advance(Duration::from_secs(300));
    let gaps = gaps(&attempts(&pair));
    let longest = Duration::from_secs(15 + 5) + Duration::from_millis(100);
    assert!(gaps.iter().all(|g| *g <= longest), "{gaps:?}");
}

#[test]
fn port_unreachable_means_the_server_is_not_up_yet() {
    let mut pair = Pair::new(Setup::default());
    // The VPS is up, its daemon is not: two minutes of ICMP port unreachable.
    pair.server.up = false;
    advance_port_closed(&mut pair, Duration::from_secs(120));
    let requests = pair
        .trace
        .iter()
        .filter(|(d, _)| d.from_client && d.is(ExchangeType::IKE_SA_INIT, false))
        .count();
    // About one a second, at the short end, instead of a retransmission schedule and a
    // backoff that grow.
    assert!((100..=125).contains(&requests), "{requests} IKE_SA_INITs");
    let failed: Vec<_> = pair
        .client
        .outputs
        .iter()
        .filter(|(_, o)| matches!(o, Output::Refused { .. }))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    // The daemon starts: the home is up within a second or so.
    pair.restart_server();
    let back = time_to_connect(&mut pair, Duration::from_secs(60)).expect("never came back");
    assert!(back <= Duration::from_millis(1100), "back after {back:?}");
}

#[test]
fn a_forged_port_unreachable_does_not_stop_a_connection() {
    let mut pair = Pair::new(Setup::default());
    // Someone off the path answers every request of the client with a port unreachable before
    // the server's answer arrives: the attempt keeps listening and gets through.
    let up = time_to_connect_with_forgery(&mut pair);
    assert!(up <= Duration::from_secs(2), "up after {up:?}");
}

fn time_to_connect_with_forgery(pair: &mut Pair) -> Duration {
    let step = Duration::from_millis(1);
    let mut reported = 0;
    let mut waited = Duration::ZERO;
    while pair.client.peer_ups() == 0 {
        assert!(
            waited < Duration::from_secs(10),
            "{:?}",
            pair.client.outputs
        );
        let forged: Vec<_> = pair.trace[reported..]
            .iter()
            .filter(|(d, _)| d.from_client)
            .map(|(d, _)| d.dst)
            .collect();
        reported = pair.trace.len();
        for destination in forged {
            let now = pair.now();
            pair.client.endpoint.handle_unreachable(now, destination);
        }
        pair.advance(step);
        waited += step;
    }
    waited
}

/// A client whose server was away long enough for the backoff to reach its cap, and whose
/// path is open again now, just after an attempt gave up.
fn client_at_the_cap() -> Pair {
    let mut pair = Pair::new(Setup::default());
    silent_server(&mut pair);
    pair.advance(Duration::from_secs(300));
    // Wait for an attempt to end: the client then sits in its backoff.
    let before = attempts(&pair).len();
    while attempts(&pair).len() == before {
        pair.advance(Duration::from_millis(100));
    }
    pair.advance(Duration::from_secs(16));
    open_path(&mut pair);
    pair
}

#[test]
fn a_reload_starts_the_backoff_again() {
    let mut pair = client_at_the_cap();
    let now = pair.now();
    pair.client.endpoint.reset_backoff(now, &mut pair.rng);
    pair.flush();
    let back = time_to_connect(&mut pair, Duration::from_secs(60)).unwrap();
    assert!(back <= Duration::from_millis(100), "back after {back:?}");

    // Without it the same client waits out its backoff.
    let mut pair = client_at_the_cap();
    let back = time_to_connect(&mut pair, Duration::from_secs(60)).unwrap();
    assert!(back >= Duration::from_secs(5), "back after {back:?}");
}

#[test]
fn a_new_local_address_connects_at_once_from_there() {
    let mut pair = client_at_the_cap();
    // The home's address changed while it waited (DHCP, another uplink).
    let moved = Ipv4Addr::new(192, 0, 2, 3);
    let now = pair.now();
    pair.client
        .endpoint
        .handle_local_address(now, moved, &mut pair.rng);
    pair.flush();
    let sent = pair.trace.last().unwrap().0.clone();
    assert!(sent.is(ExchangeType::IKE_SA_INIT, false));
    assert_eq!(
        *sent.src.ip(),
        moved,
        "the new attempt comes from the new address"
    );
    let back = time_to_connect(&mut pair, Duration::from_secs(60)).unwrap();
    assert!(back <= Duration::from_millis(100), "back after {back:?}");
}

#[test]
fn initiate_connects_now_and_only_on_a_client() {
    let mut pair = client_at_the_cap();
    let now = pair.now();
    assert_eq!(
        pair.client.endpoint.initiate(now, &mut pair.rng),
        Initiated::Started
    );
    pair.flush();
    let back = time_to_connect(&mut pair, Duration::from_secs(60)).unwrap();
    assert!(back <= Duration::from_millis(100), "back after {back:?}");
    let now = pair.now();
    assert_eq!(
        pair.client.endpoint.initiate(now, &mut pair.rng),
        Initiated::AlreadyUp
    );
    assert_eq!(
        pair.server.endpoint.initiate(now, &mut pair.rng),
        Initiated::NotAClient
    );

    // In the middle of an attempt's long retransmission wait, initiate starts a fresh one.
    let mut pair = Pair::new(Setup::default());
    silent_server(&mut pair);
    pair.advance(Duration::from_secs(4));
    open_path(&mut pair);
    let now = pair.now();
    assert_eq!(
        pair.client.endpoint.initiate(now, &mut pair.rng),
        Initiated::Started
    );
    pair.flush();
    let back = time_to_connect(&mut pair, Duration::from_secs(60)).unwrap();
    assert!(back <= Duration::from_millis(100), "back after {back:?}");
}

#[test]
fn terminate_drops_the_home_and_it_comes_back() {
    let mut pair = Pair::new(Setup::default());
    pair.connect();
    let now = pair.now();
    assert_eq!(
        pair.server
            .endpoint
            .terminate(now, "nobody.example", &mut pair.rng),
        0
    );
    assert_eq!(
        pair.server
            .endpoint
            .terminate(now, CLIENT_NAME, &mut pair.rng),
        1
    );
    pair.flush();
    assert!(
        pair.server.forwarder.installed.is_empty(),
        "the server keeps no pair of the terminated home"
    );
    assert_eq!(pair.server.peer_downs(), vec!["terminated by the operator"]);
    // The DELETE reaches the home, which comes back by itself after its first backoff (the
    // retransmission base: 1 s here).
    let back = time_to_connect(&mut pair, Duration::from_secs(10)).unwrap();
    assert!(back <= Duration::from_secs(2), "back after {back:?}");
    assert_eq!(pair.client.peer_downs().len(), 1);
    assert_eq!(pair.server.peer_ups(), 2);
    pair.assert_matching_pairs();
}

#[test]
fn a_refused_home_says_what_to_do_once_then_retries_quietly() {
    let mut pki = Pki::new(&rcgen::PKCS_ED25519);
    // The server's CRL revokes the home's certificate.
    pki.server_crl = Some(pki.ca.crl(&[100]));
    let mut pair = Pair::with_pki(Setup::default(), pki);
    pair.advance(Duration::from_secs(300));
    let tries = pair.server.refusals().len();
    assert!(tries >= 8, "{tries} attempts in 5 min");
    let said = pair.client.refusals();
    assert_eq!(said.len(), 1, "said more than once: {said:?}");
    assert!(said[0].contains("AUTHENTICATION_FAILED"), "{}", said[0]);
    assert!(
        said[0].contains("re-enroll with `hometun enroll`"),
        "{}",
        said[0]
    );
    // Retrying at most every 30 s (plus an exchange), not every 300 s.
    let gaps = gaps(&attempts(&pair));
    assert!(
        gaps.iter().all(|g| *g <= Duration::from_secs(31)),
        "{gaps:?}"
    );
}

#[test]
fn a_network_change_connects_a_waiting_home_and_leaves_a_working_one_alone() {
    let mut pair = client_at_the_cap();
    let now = pair.now();
    assert!(
        pair.client
            .endpoint
            .handle_network_change(now, CLIENT_ADDR, &mut pair.rng)
    );
    pair.flush();
    let back = time_to_connect(&mut pair, Duration::from_secs(60)).unwrap();
    assert!(back <= Duration::from_millis(100), "back after {back:?}");
    // Up: the forwarder moves the SAs itself; nothing is sent for the change.
    let sent = pair.trace.len();
    let now = pair.now();
    assert!(!pair.client.endpoint.handle_network_change(
        now,
        Ipv4Addr::new(192, 0, 2, 3),
        &mut pair.rng
    ));
    pair.flush();
    assert_eq!(pair.trace.len(), sent);
}
