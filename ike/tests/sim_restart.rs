//! Two-peer simulation: a server that restarted tells its homes (RFC 7296 2.21.4), and they are
//! back within two seconds instead of after their retransmissions run out; forged hints move
//! nothing (docs/ARCHITECTURE.md, "Restart recovery").

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::net::SocketAddrV4;
use std::time::Duration;

use hometun_control::{Event, Spi};
use hometun_ike::wire::{
    Encrypted, ExchangeType, Flags, Header, Message, Notify, NotifyType, Payload, PayloadType,
};
use sim_support::*;

/// The daemon's retransmission defaults (500 ms, 5 tries: 31.5 s until a peer is dead).
fn daemon_defaults() -> Setup {
    Setup {
        retransmit_base: Duration::from_millis(500),
        retransmit_tries: 5,
        ..Setup::default()
    }
}

fn connected(setup: Setup) -> Pair {
    let mut pair = Pair::new(setup);
    pair.connect();
    pair.assert_matching_pairs();
    pair
}

/// The client's outbound ESP SPI (the server's inbound one).
fn client_spi_out(pair: &Pair) -> Spi {
    pair.client.forwarder.outbound().unwrap().sa.spi_out
}

/// An unprotected INVALID_SPI hint naming `spi`, as a restarted server sends it.
fn invalid_spi_hint(spi: Spi) -> Vec<u8> {
    let header = Header::new(
        ExchangeType::INFORMATIONAL,
        0,
        0,
        Flags::new(false, false),
        0,
    );
    let notify = Notify::new(NotifyType::INVALID_SPI, spi.to_bytes().to_vec());
    Message::new(header, vec![Payload::Notify(notify)])
        .to_bytes()
        .unwrap()
}

/// Delivers `data` to the client as if it came from `from`.
fn to_client(pair: &mut Pair, from: SocketAddrV4, data: &[u8]) {
    let now = pair.now();
    let to = SocketAddrV4::new(CLIENT_ADDR, 500);
    pair.client
        .endpoint
        .handle_datagram(now, to, from, data, &mut pair.rng);
    pair.flush();
}

fn client_requests(pair: &Pair, exchange: ExchangeType) -> usize {
    pair.trace
        .iter()
        .filter(|(d, _)| d.from_client && d.is(exchange, false))
        .count()
}

/// Runs until the client's ESP reaches a server pair again (it sends every 20 ms, as a LAN
/// host's ping would); the time that took.
fn until_esp_flows(pair: &mut Pair, within: Duration) -> Option<Duration> {
    let started = pair.clock.offset;
    while pair.clock.offset < started + within {
        if pair.esp_from_client() {
            return Some(pair.clock.offset - started);
        }
        pair.advance(Duration::from_millis(20));
    }
    None
}

#[test]
fn a_home_that_sends_is_back_within_two_seconds_of_a_server_restart() {
    let mut pair = connected(daemon_defaults());
    pair.advance(Duration::from_secs(5));
    pair.restart_server();
    let back = until_esp_flows(&mut pair, Duration::from_secs(40)).expect("never back");
    // ESP for the lost pair -> INVALID_SPI -> a liveness check that the server answers with
    // INVALID_IKE_SPI -> 1 s without an authenticated answer -> a new IKE SA at once.
    assert!(back < Duration::from_secs(2), "back after {back:?}");
    let downs = pair.client.peer_downs();
    assert_eq!(downs.len(), 1, "{downs:?}");
    assert!(downs[0].contains("lost this IKE SA"), "{downs:?}");
    assert_eq!(pair.client.peer_ups(), 2);
    pair.assert_matching_pairs();
    let client = pair.client.endpoint.counters();
    assert_eq!(client.restart_checks_failed, 1);
    assert!(client.restart_hints_received >= 1);
    // INVALID_SPI for the ESP, INVALID_IKE_SPI for the liveness check (and its retransmission).
    assert!(pair.server.endpoint.counters().restart_hints_sent >= 2);
    eprintln!(
        "ESP flows again {} ms after the server restart",
        back.as_millis()
    );
}

#[test]
fn without_hints_the_home_waits_for_its_retransmissions() {
    // The same restart, with the server's hints lost on the way: only the liveness check's
    // retransmissions find the dead IKE SA (the 30-46 s users saw before).
    let mut pair = connected(daemon_defaults());
    pair.restart_server();
    pair.filter = Box::new(|d| {
        let unprotected = Message::parse(&d.data).is_ok_and(|m| {
            m.encrypted().is_none() && m.header.exchange_type != ExchangeType::IKE_SA_INIT
        });
        if !d.from_client && unprotected {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    let back = until_esp_flows(&mut pair, Duration::from_secs(90)).expect("never back");
    assert!(back > Duration::from_secs(30), "back after {back:?}");
    assert_eq!(pair.client.endpoint.counters().restart_checks_failed, 0);
    eprintln!("without hints: back after {} s", back.as_secs());
}

#[test]
fn an_idle_home_is_told_by_the_restarted_server() {
    let mut pair = connected(daemon_defaults());
    // What the daemon keeps in its state directory.
    let remembered = pair.server.endpoint.restart_hints();
    assert_eq!(remembered.len(), 1);
    assert_eq!(remembered[0].peer, CLIENT_NAME);
    assert_eq!(
        remembered[0].spis,
        vec![client_spi_out(&pair)],
        "the SPI the home sends with"
    );
    pair.restart_server();
    let restarted = pair.clock.offset;
    let now = pair.now();
    pair.server.endpoint.send_restart_hints(now, &remembered);
    pair.flush();
    // The home sends nothing, yet comes back.
    while pair.client.peer_ups() < 2 && pair.clock.offset < restarted + Duration::from_secs(40) {
        pair.advance(Duration::from_millis(20));
    }
    let back = pair.clock.offset - restarted;
    assert_eq!(pair.client.peer_ups(), 2);
    assert!(back < Duration::from_secs(2), "back after {back:?}");
    pair.assert_matching_pairs();
    assert!(pair.esp(true) && pair.esp(false));
}

#[test]
fn a_liveness_check_answered_with_invalid_ike_spi_ends_in_a_second() {
    // An idle home whose server restarted without telling it: its next liveness check (30 s)
    // gets INVALID_IKE_SPI, and a second later it connects again (not after 31.5 s more).
    let mut pair = connected(daemon_defaults());
    pair.restart_server();
    let restarted = pair.clock.offset;
    while pair.client.peer_ups() < 2 && pair.clock.offset < restarted + Duration::from_secs(80) {
        pair.advance(Duration::from_millis(50));
    }
    let back = pair.clock.offset - restarted;
    assert_eq!(pair.client.peer_ups(), 2);
    assert!(
        back > Duration::from_secs(27) && back < Duration::from_secs(33),
        "back after {back:?}"
    );
    let answers: Vec<_> = pair
        .trace
        .iter()
        .filter(|(d, _)| !d.from_client && d.is(ExchangeType::INFORMATIONAL, true))
        .filter_map(|(d, _)| Message::parse(&d.data).ok())
        .filter(|m| m.encrypted().is_none())
        .collect();
    assert!(!answers.is_empty());
    assert!(answers.iter().all(|m| {
        m.notifies()
            .any(|n| n.notify_type == NotifyType::INVALID_IKE_SPI)
    }));
    pair.assert_matching_pairs();
}

#[test]
fn a_forged_hint_costs_one_liveness_check_and_moves_nothing() {
    let mut pair = connected(daemon_defaults());
    let spi = client_spi_out(&pair);
    let pairs = pair.assert_matching_pairs();
    let checks_before = client_requests(&pair, ExchangeType::INFORMATIONAL);
    // From the server's address, with the right SPI: as much as an on-path attacker knows.
    let server = SocketAddrV4::new(SERVER_ADDR, 500);
    to_client(&mut pair, server, &invalid_spi_hint(spi));
    pair.advance(Duration::from_secs(3));
    assert_eq!(
        client_requests(&pair, ExchangeType::INFORMATIONAL),
        checks_before + 1
    );
    assert!(pair.client.peer_downs().is_empty());
    assert_eq!(pair.client.peer_ups(), 1);
    assert_eq!(pair.assert_matching_pairs(), pairs);
    assert!(pair.esp(true) && pair.esp(false));

    // A flood: 200 hints over 10 s start at most one check per 2 s.
    let before = client_requests(&pair, ExchangeType::INFORMATIONAL);
    for _ in 0..200 {
        to_client(&mut pair, server, &invalid_spi_hint(spi));
        pair.advance(Duration::from_millis(50));
    }
    let checks = client_requests(&pair, ExchangeType::INFORMATIONAL) - before;
    assert!((4..=6).contains(&checks), "{checks} checks");
    assert!(pair.client.peer_downs().is_empty());
    assert_eq!(pair.assert_matching_pairs(), pairs);
    assert_eq!(pair.client.endpoint.counters().restart_checks_failed, 0);
}

#[test]
fn hints_from_elsewhere_or_about_other_spis_are_ignored() {
    let mut pair = connected(daemon_defaults());
    let spi = client_spi_out(&pair);
    let before = client_requests(&pair, ExchangeType::INFORMATIONAL);
    // The right SPI from another address; another SPI from the server's address; our own
    // inbound SPI (not one we send with).
    let spi_in = pair.client.forwarder.outbound().unwrap().sa.spi_in;
    let attacker = SocketAddrV4::new(NAT_PUBLIC, 500);
    to_client(&mut pair, attacker, &invalid_spi_hint(spi));
    let server = SocketAddrV4::new(SERVER_ADDR, 500);
    to_client(&mut pair, server, &invalid_spi_hint(Spi(spi.0 ^ 1)));
    to_client(&mut pair, server, &invalid_spi_hint(spi_in));
    // An INVALID_IKE_SPI "answer" to no request of ours.
    let status = pair.client.endpoint.status(pair.now());
    let ike_spi = u64::from_str_radix(&status[0].ike_spis.0, 16).unwrap();
    let header = Header::new(
        ExchangeType::INFORMATIONAL,
        ike_spi,
        0,
        Flags::new(false, true),
        7,
    );
    let forged = Message::new(
        header,
        vec![Payload::Notify(Notify::new(
            NotifyType::INVALID_IKE_SPI,
            Vec::new(),
        ))],
    );
    to_client(&mut pair, server, &forged.to_bytes().unwrap());
    pair.advance(Duration::from_secs(3));
    assert_eq!(client_requests(&pair, ExchangeType::INFORMATIONAL), before);
    assert_eq!(pair.client.endpoint.counters().restart_hints_received, 0);
    assert!(pair.client.peer_downs().is_empty());
}

#[test]
fn nobody_answers_a_hint_or_an_unprotected_answer() {
    let mut pair = connected(daemon_defaults());
    let sent_before = pair.trace.len();
    let now = pair.now();
    let from = SocketAddrV4::new(CLIENT_ADDR, 500);
    let to = SocketAddrV4::new(SERVER_ADDR, 500);
    // A hint sent to a server, and an INVALID_IKE_SPI answer for SPIs it does not have.
    pair.server.endpoint.handle_datagram(
        now,
        to,
        from,
        &invalid_spi_hint(Spi(0x1234)),
        &mut pair.rng,
    );
    let header = Header::new(
        ExchangeType::INFORMATIONAL,
        0x55,
        0x66,
        Flags::new(true, true),
        3,
    );
    let answer = Message::new(
        header,
        vec![Payload::Notify(Notify::new(
            NotifyType::INVALID_IKE_SPI,
            Vec::new(),
        ))],
    );
    pair.server
        .endpoint
        .handle_datagram(now, to, from, &answer.to_bytes().unwrap(), &mut pair.rng);
    // The same at the client.
    to_client(&mut pair, to, &answer.to_bytes().unwrap());
    pair.flush();
    assert_eq!(
        pair.trace.len(),
        sent_before,
        "{:?}",
        &pair.trace[sent_before..]
    );
}

#[test]
fn a_protected_request_for_an_unknown_ike_sa_gets_invalid_ike_spi_with_its_spis() {
    let mut pair = connected(daemon_defaults());
    let now = pair.now();
    let from = SocketAddrV4::new(CLIENT_ADDR, 500);
    let to = SocketAddrV4::new(SERVER_ADDR, 500);
    // A request with an SK payload (its contents do not matter: nobody can open it).
    let request = Header::new(
        ExchangeType::CREATE_CHILD_SA,
        0xaaaa,
        0xbbbb,
        Flags::new(true, false),
        9,
    );
    let sk = Encrypted {
        first_inner: PayloadType::NONE,
        data: vec![0; 40],
    };
    let bytes = Message::new(request, vec![Payload::Encrypted(sk)])
        .to_bytes()
        .unwrap();
    let before = pair.trace.len();
    pair.server
        .endpoint
        .handle_datagram(now, to, from, &bytes, &mut pair.rng);
    pair.flush();
    let sent: Vec<_> = pair.trace[before..]
        .iter()
        .map(|(d, _)| d.clone())
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].dst, from);
    let answer = Message::parse(&sent[0].data).unwrap();
    assert_eq!(
        (
            answer.header.spi_i,
            answer.header.spi_r,
            answer.header.message_id
        ),
        (0xaaaa, 0xbbbb, 9)
    );
    assert!(answer.header.flags.response() && !answer.header.flags.initiator());
    assert_eq!(answer.header.exchange_type, ExchangeType::CREATE_CHILD_SA);
    assert!(
        answer
            .notifies()
            .any(|n| n.notify_type == NotifyType::INVALID_IKE_SPI)
    );
}

#[test]
fn unprotected_answers_are_rate_limited() {
    let mut pair = connected(daemon_defaults());
    let before = pair.trace.len();
    // A flood of ESP with random SPIs from forged sources, all in one instant.
    for n in 0..10_000u32 {
        let remote = std::net::Ipv4Addr::from(0xcb00_7100 + (n & 0xff));
        pair.server.endpoint.handle_forwarder_event(
            pair.clock.now(),
            &Event::UnknownSpi {
                spi: Spi(n),
                remote,
                port: Some(4500),
            },
            &mut pair.rng,
        );
    }
    pair.flush();
    let answered = pair.trace.len() - before;
    assert!((1_000..=2_100).contains(&answered), "{answered} answers");
    // The home still works.
    pair.advance(Duration::from_secs(1));
    assert!(pair.esp(true) && pair.esp(false));
}

#[test]
fn restart_hints_go_out_in_paced_rounds_and_none_is_dropped() {
    let mut pair = connected(daemon_defaults());
    pair.restart_server();
    let remembered: Vec<_> = (0..5000u32)
        .map(|n| hometun_ike::endpoint::RestartHint {
            peer: format!("home{n}.example"),
            local: SocketAddrV4::new(SERVER_ADDR, 4500),
            remote: SocketAddrV4::new(std::net::Ipv4Addr::from(0xc633_6400 + n % 200), 4500),
            spis: vec![Spi(0x1000 + n)],
        })
        .collect();
    let hints_sent = |pair: &Pair| pair.server.endpoint.counters().restart_hints_sent;
    let now = pair.now();
    pair.server.endpoint.send_restart_hints(now, &remembered);
    pair.flush();
    // One round at once, then one per 50 ms: a thousand homes are told within half a second,
    // not all in the same instant.
    assert_eq!(hints_sent(&pair), 100);
    pair.advance(Duration::from_millis(460));
    assert_eq!(hints_sent(&pair), 1000);
    // Past the burst of the rate limit the rounds wait for it: all are told, none dropped.
    pair.advance(Duration::from_secs(10));
    assert_eq!(hints_sent(&pair), 5000);
    // Each once.
    pair.advance(Duration::from_secs(5));
    assert_eq!(hints_sent(&pair), 5000);
}
