//! Two-peer simulation with a hostile peer built from the real state machine (it changes what
//! it sends before sealing, `Endpoint::set_tamper`) or with an attacker on the path: whatever an
//! enrolled home sends, even authenticated, gets it nothing beyond its certificate
//! (SECURITY.md lists each case and this file's test for it).

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hometun_ike::endpoint::Output;
use hometun_ike::notice::Notice;
use hometun_ike::wire::{
    ExchangeType, Flags, Header, Message, Notify, NotifyType, Payload, ProtocolId,
};
use sim_support::*;

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

fn assert_inside_client_prefix(node: &Node) {
    for ts in node.installed_remote_selectors() {
        assert!(
            client_prefix().contains(&ts),
            "the server installed {ts}, outside the home's {}",
            client_prefix()
        );
    }
}

/// Finding: the server's own CHILD SA rekey took the home's TSr as answered. A home that forces
/// the server's soft limit and answers with another home's /64, a prefix outside the pool, or
/// a wider one must get none of it: the server refuses the answer, deletes the pair the home
/// made, keeps its working pair, and tries again later.
#[test]
fn a_home_answering_the_servers_rekey_with_other_prefixes_gets_nothing() {
    for hostile in [
        "2001:db8:2::/64",
        "2001:db8:999::/64",
        "2001:db8::/32",
        "::/0",
    ] {
        let mut pair = connected(Setup::default());
        let old_s = only_spi(&pair.server);
        pair.client.tamper(move |header, payloads| {
            if header.exchange_type == ExchangeType::CREATE_CHILD_SA && header.flags.response() {
                for p in payloads.iter_mut() {
                    if let Payload::TsR(t) = p {
                        *t = ts(&[hostile]);
                    }
                }
            }
        });
        pair.soft_limit(false, old_s);
        pair.settle();
        assert_inside_client_prefix(&pair.server);
        assert_eq!(
            pair.server.forwarder.installs().len(),
            1,
            "{hostile}: nothing new installed on the server"
        );
        assert!(
            pair.server.forwarder.installed.contains_key(&old_s),
            "{hostile}: the working pair stays"
        );
        // The server asked the home to drop the pair its answer made.
        let deletes = pair
            .trace
            .iter()
            .filter(|(d, _)| !d.from_client && d.is(ExchangeType::INFORMATIONAL, false))
            .count();
        assert!(deletes >= 1, "{hostile}: no DELETE for the refused pair");
        // It tries again later (and is refused again: the home keeps answering the same).
        pair.advance(Duration::from_secs(5));
        assert!(
            pair.count(ExchangeType::CREATE_CHILD_SA, false) >= 2,
            "{hostile}: no retry"
        );
        assert_inside_client_prefix(&pair.server);
        assert!(pair.server.endpoint.counters().child_rekeys_failed >= 1);
    }
}

/// The home's own rekey request asking for another prefix is narrowed to its own (as it
/// always was); its answer to IKE_AUTH cannot widen it either.
#[test]
fn a_home_asking_for_another_prefix_in_its_rekey_gets_only_its_own() {
    let mut pair = connected(Setup::default());
    let old_c = only_spi(&pair.client);
    pair.client.tamper(|header, payloads| {
        if header.exchange_type == ExchangeType::CREATE_CHILD_SA && !header.flags.response() {
            for p in payloads.iter_mut() {
                if let Payload::TsI(t) = p {
                    *t = ts(&["2001:db8:1::/64", "2001:db8:2::/64"]);
                }
            }
        }
    });
    pair.soft_limit(true, old_c);
    pair.settle();
    assert_eq!(pair.server.forwarder.installs().len(), 2);
    assert_inside_client_prefix(&pair.server);
}

/// A hostile server (or anyone who got the server's key) answering IKE_AUTH with a TSi outside
/// the home's prefix: the home refuses it instead of installing it.
#[test]
fn a_server_answering_ike_auth_with_a_wider_tsi_is_refused() {
    let mut pair = Pair::new(Setup::default());
    pair.server.tamper(|header, payloads| {
        if header.exchange_type == ExchangeType::IKE_AUTH && header.flags.response() {
            for p in payloads.iter_mut() {
                if let Payload::TsI(t) = p {
                    *t = ts(&["2001:db8::/32"]);
                }
            }
        }
    });
    pair.advance(Duration::from_secs(2));
    assert_eq!(pair.client.peer_ups(), 0);
    assert!(
        pair.client
            .refusals()
            .iter()
            .any(|r| r.contains("not inside our 2001:db8:1::/64")),
        "{:?}",
        pair.client.refusals()
    );
    assert!(pair.client.forwarder.installs().is_empty());
}

/// Finding: CHILD SAs piled up. A home that rekeys and never deletes the old pair (its DELETEs
/// are stripped) keeps at most a few pairs: the server deletes replaced pairs itself after a
/// while, refuses to rekey a pair that was already replaced, and refuses rekeys beyond its cap
/// and rate.
#[test]
fn a_home_that_never_deletes_cannot_pile_up_pairs() {
    let mut pair = connected(Setup::default());
    pair.client.tamper(|header, payloads| {
        if header.exchange_type == ExchangeType::INFORMATIONAL && !header.flags.response() {
            payloads.retain(|p| !matches!(p, Payload::Delete(d) if d.protocol == ProtocolId::ESP));
        }
    });
    let mut most = 0;
    for round in 0..40 {
        // The home rekeys its newest pair as fast as it likes.
        if let Some(&newest) = pair.client.forwarder.order.last() {
            pair.soft_limit(true, newest);
        }
        pair.advance(Duration::from_millis(500));
        most = most.max(pair.server.forwarder.installed.len());
        assert!(
            pair.server.forwarder.installed.len() <= 4,
            "round {round}: the server holds {} pairs of one home",
            pair.server.forwarder.installed.len()
        );
    }
    assert!(
        most >= 2,
        "the test never made the server hold a second pair"
    );
    // Rate: far fewer than 40 rekeys were accepted in 20 s.
    let accepted = pair.server.forwarder.installs().len();
    assert!(accepted <= 12, "{accepted} pairs installed in 20 s");
    // Once it stops, the replaced pairs go within the patience even without its DELETEs.
    pair.advance(Duration::from_secs(45));
    assert!(
        pair.server.forwarder.installed.len() <= 2,
        "{:?}",
        pair.server.forwarder.installed.keys()
    );
}

/// A home that rekeys a pair it already replaced (REKEY_SA naming the old SPI) is answered
/// CHILD_SA_NOT_FOUND; nothing is installed for it.
#[test]
fn rekeying_an_already_replaced_pair_is_refused() {
    let mut pair = connected(Setup::default());
    let first_c = only_spi(&pair.client);
    pair.soft_limit(true, first_c);
    pair.settle();
    assert_eq!(pair.server.forwarder.installs().len(), 2);
    // From now on every REKEY_SA names the first pair again.
    pair.client.tamper(move |header, payloads| {
        if header.exchange_type == ExchangeType::CREATE_CHILD_SA && !header.flags.response() {
            for p in payloads.iter_mut() {
                if let Payload::Notify(n) = p
                    && n.notify_type == NotifyType::REKEY_SA
                {
                    n.spi = first_c.to_be_bytes().to_vec();
                }
            }
        }
    });
    let newest = *pair.client.forwarder.order.last().unwrap();
    pair.soft_limit(true, newest);
    pair.settle();
    let rekeys = pair
        .server
        .outputs
        .iter()
        .filter(|(_, o)| matches!(o, hometun_ike::endpoint::Output::Rekeyed { .. }))
        .count();
    assert_eq!(rekeys, 1, "a replaced pair was rekeyed again");
    // The home lost the pair it tried to replace (the server says it knows no such pair) and
    // re-established its tunnel; the server never installed anything outside its prefix.
    assert_inside_client_prefix(&pair.server);
}

/// Finding: reflection. An authentic request replayed from a forged source is answered where
/// the peer is, not to the forged address.
#[test]
fn a_replayed_request_is_answered_to_the_peer_not_to_the_forged_source() {
    let mut pair = connected(Setup::default());
    let victim = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 66), 500);
    // Capture the client's next request (a liveness check) as it leaves.
    pair.advance(Duration::from_secs(31));
    let request = pair
        .trace
        .iter()
        .rev()
        .find(|(d, _)| d.from_client && d.is(ExchangeType::INFORMATIONAL, false))
        .map(|(d, _)| d.clone())
        .expect("a liveness request");
    let now = pair.now();
    pair.server
        .endpoint
        .handle_datagram(now, request.dst, victim, &request.data, &mut pair.rng);
    let mut sent = Vec::new();
    while let Some(t) = pair.server.endpoint.poll_transmit() {
        sent.push(t);
    }
    assert_eq!(sent.len(), 1, "the retransmission is answered once");
    assert_eq!(sent[0].remote, SocketAddrV4::new(CLIENT_ADDR, 500));
    assert!(sent.iter().all(|t| t.remote != victim));
}

/// Finding I8: the server took the IKE_AUTH request's source as the home's address, whatever
/// the IKE_SA_INIT's was, and sent the home's ESP there. A home able to forge its IPv4 source
/// made the server send its traffic to an address it chose, with no return-routability check.
/// Now an IKE_AUTH from another address than the IKE_SA_INIT's is ignored; another port (the
/// float to 4500) is fine.
#[test]
fn an_ike_auth_from_another_address_than_its_ike_sa_init_is_ignored() {
    let mut pair = Pair::new(Setup::default());
    pair.filter = Box::new(|d| {
        if d.from_client && d.is(ExchangeType::IKE_AUTH, false) {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    pair.advance(Duration::from_millis(100));
    let request = pair
        .trace
        .iter()
        .find(|(d, _)| d.from_client && d.is(ExchangeType::IKE_AUTH, false))
        .map(|(d, _)| d.clone())
        .expect("the client's IKE_AUTH");
    let victim = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 66), 4500);
    let now = pair.now();
    pair.server
        .endpoint
        .handle_datagram(now, request.dst, victim, &request.data, &mut pair.rng);
    pair.flush();
    assert!(
        pair.server.forwarder.installed.is_empty(),
        "installed for a forged source: {:?}",
        pair.server.forwarder.installed.keys()
    );
    assert!(
        pair.trace.iter().all(|(d, _)| d.dst.ip() != victim.ip()),
        "the server answered the forged source"
    );
    // The same request from the IKE_SA_INIT's address, on another port, is answered there.
    let from = SocketAddrV4::new(*request.src.ip(), request.src.port().wrapping_add(1));
    let now = pair.now();
    pair.server
        .endpoint
        .handle_datagram(now, request.dst, from, &request.data, &mut pair.rng);
    pair.flush();
    assert_eq!(pair.server.forwarder.installed.len(), 1);
    let answer = pair
        .trace
        .iter()
        .rev()
        .find(|(d, _)| !d.from_client && d.is(ExchangeType::IKE_AUTH, true))
        .map(|(d, _)| d.dst)
        .expect("an IKE_AUTH answer");
    assert_eq!(answer, from);
}

/// The name of each home the server saw come up, in order (re-authentications too).
fn peer_up_names(homes: &Homes) -> Vec<&str> {
    homes
        .server
        .outputs
        .iter()
        .filter_map(|(_, o)| match o {
            Output::PeerUp { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect()
}

fn sa_init_from_trace(pair: &Pair) -> Vec<u8> {
    pair.trace
        .iter()
        .find(|(d, _)| d.from_client && d.is(ExchangeType::IKE_SA_INIT, false))
        .map(|(d, _)| d.data.clone())
        .unwrap()
}

/// Finding: IKE_SA_INIT retransmissions were answered without bound and before the COOKIE
/// check. Replayed copies get the cached answer at most as often as an honest initiator
/// retransmits; under cookie pressure they get a COOKIE (small) first.
#[test]
fn replayed_ike_sa_init_is_answered_a_bounded_number_of_times() {
    let mut pair = Pair::new(Setup::default());
    // The server answers the first IKE_SA_INIT; the client's IKE_AUTH never arrives.
    pair.filter = Box::new(|d| {
        if d.from_client && d.is(ExchangeType::IKE_AUTH, false) {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    pair.advance(Duration::from_millis(100));
    let request = sa_init_from_trace(&pair);
    let from = SocketAddrV4::new(CLIENT_ADDR, 500);
    let to = SocketAddrV4::new(SERVER_ADDR, 500);
    let mut answers = 0;
    for _ in 0..50 {
        let now = pair.now();
        pair.server
            .endpoint
            .handle_datagram(now, to, from, &request, &mut pair.rng);
        while let Some(t) = pair.server.endpoint.poll_transmit() {
            if t.remote == from && Message::parse(&t.data).is_ok_and(|m| m.header.spi_r != 0) {
                answers += 1;
            }
        }
    }
    assert!(
        answers <= pair.setup.retransmit_tries as usize,
        "{answers} answers to 50 copies"
    );
    assert!(answers >= 1);
}

#[test]
fn under_cookie_pressure_replays_get_a_cookie_first() {
    let mut pair = Pair::new(Setup {
        cookie_threshold: 0,
        ..Setup::default()
    });
    pair.advance(Duration::from_millis(100));
    // The honest client got a COOKIE and came back with it: connected.
    pair.advance(Duration::from_secs(2));
    assert_eq!(pair.client.peer_ups(), 1);
    let first = sa_init_from_trace(&pair);
    let from = SocketAddrV4::new(CLIENT_ADDR, 500);
    let to = SocketAddrV4::new(SERVER_ADDR, 500);
    let now = pair.now();
    pair.server
        .endpoint
        .handle_datagram(now, to, from, &first, &mut pair.rng);
    let t = pair.server.endpoint.poll_transmit().expect("an answer");
    let m = Message::parse(&t.data).unwrap();
    assert_eq!(m.header.spi_r, 0, "a COOKIE, not a full answer");
    assert!(
        m.payloads
            .iter()
            .any(|p| matches!(p, Payload::Notify(n) if n.notify_type == NotifyType::COOKIE))
    );
}

/// Finding: one forged, unauthenticated IKE_SA_INIT error aborted the home's attempt and added
/// backoff. The home keeps listening and takes the genuine answer.
#[test]
fn a_forged_ike_sa_init_error_does_not_stop_the_home() {
    let mut pair = Pair::new(Setup::default());
    // The genuine answer is slow; the attacker is quick.
    pair.filter = Box::new(|d| {
        if !d.from_client && d.is(ExchangeType::IKE_SA_INIT, true) {
            Fate::Delay(Duration::from_millis(200))
        } else {
            Fate::Deliver
        }
    });
    pair.advance(Duration::from_millis(20));
    let request = Message::parse(&sa_init_from_trace(&pair)).unwrap();
    let forged = Message::new(
        Header::new(
            ExchangeType::IKE_SA_INIT,
            request.header.spi_i,
            0,
            Flags::new(false, true),
            0,
        ),
        vec![Payload::Notify(Notify::new(
            NotifyType::NO_PROPOSAL_CHOSEN,
            Vec::new(),
        ))],
    )
    .to_bytes()
    .unwrap();
    let now = pair.now();
    pair.client.endpoint.handle_datagram(
        now,
        SocketAddrV4::new(CLIENT_ADDR, 500),
        SocketAddrV4::new(SERVER_ADDR, 500),
        &forged,
        &mut pair.rng,
    );
    pair.flush();
    pair.advance(Duration::from_millis(500));
    assert_eq!(pair.client.peer_ups(), 1, "{:?}", pair.client.outputs);
    assert!(pair.client.refusals().is_empty());
}

/// Without a genuine answer, the (possibly forged) refusal is what the home reports, once its
/// retransmissions are spent.
#[test]
fn an_unanswered_attempt_reports_the_refusal_it_saw() {
    let mut pair = Pair::new(Setup::default());
    pair.filter = Box::new(|d| {
        if !d.from_client {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    pair.advance(Duration::from_millis(20));
    let request = Message::parse(&sa_init_from_trace(&pair)).unwrap();
    let forged = Message::new(
        Header::new(
            ExchangeType::IKE_SA_INIT,
            request.header.spi_i,
            0,
            Flags::new(false, true),
            0,
        ),
        vec![Payload::Notify(Notify::new(
            NotifyType::NO_PROPOSAL_CHOSEN,
            Vec::new(),
        ))],
    )
    .to_bytes()
    .unwrap();
    let now = pair.now();
    pair.client.endpoint.handle_datagram(
        now,
        SocketAddrV4::new(CLIENT_ADDR, 500),
        SocketAddrV4::new(SERVER_ADDR, 500),
        &forged,
        &mut pair.rng,
    );
    pair.flush();
    assert!(pair.client.refusals().is_empty(), "not at once");
    pair.advance(Duration::from_secs(20));
    assert!(
        pair.client
            .refusals()
            .iter()
            .any(|r| r.contains("NO_PROPOSAL_CHOSEN")),
        "{:?}",
        pair.client.outputs
    );
}

const OTHER_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);

fn selector_withdrawn(node: &Node) -> Vec<(String, String)> {
    node.outputs
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Notice(n @ Notice::SelectorWithdrawn { peer, selector, .. }) => {
                Some((peer.clone(), format!("{selector} | {n}")))
            }
            _ => None,
        })
        .collect()
}

/// Finding: a reload (SIGHUP, a new CRL) compared only what a home's IKE SA had been granted
/// with the new client list, never the selectors of its installed pairs, and cut a home whole
/// when any of its grant went. Now each installed pair is checked: one whose remote selector
/// the new `[[clients]]` no longer gives its home leaves the forwarder at once (a DELETE to the
/// home, one notice naming it and the selector), and a pair still inside stays.
#[test]
fn a_reload_that_narrows_a_homes_prefix_removes_only_the_pairs_outside_it() {
    let mut homes = Homes::new(
        Setup::default(),
        &[
            ("home.example", "2001:db8:1::/48"),
            ("other.example", "2001:db8:2::/48"),
        ],
    );
    homes.add_home(HomeSpec::new(CLIENT_NAME, CLIENT_ADDR, "2001:db8:1::/64"));
    homes.add_home(HomeSpec::new(
        "other.example",
        OTHER_ADDR,
        "2001:db8:2:5::/64",
    ));
    homes.advance(Duration::from_secs(2));
    let kept = homes.server_pairs_of(CLIENT_NAME);
    let cut = homes.server_pairs_of("other.example");
    assert_eq!(
        (kept.len(), cut.len()),
        (1, 1),
        "{:?}",
        homes.server.outputs
    );

    // Each home is narrowed to a /64 of its /48: home.example to the one its pair uses,
    // other.example to one beside its pair.
    let refused = homes.reload_server(&[
        ("home.example", "2001:db8:1::/64"),
        ("other.example", "2001:db8:2::/64"),
    ]);
    assert!(refused.is_empty(), "{refused:?}");
    assert!(
        cut.iter()
            .all(|spi| !homes.server.forwarder.installed.contains_key(spi)),
        "the pair outside the new prefix is still installed"
    );
    let notices = selector_withdrawn(&homes.server);
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0].0, "other.example");
    assert!(
        notices[0]
            .1
            .starts_with("2001:db8:2:5::/64 | other.example: 2001:db8:2:5::/64"),
        "{notices:?}"
    );
    assert_eq!(
        homes.server_pairs_of(CLIENT_NAME),
        kept,
        "the allowed pair stays"
    );
    let id = homes.server_peer_id(CLIENT_NAME).unwrap();
    assert_eq!(
        homes.server.forwarder.grants.get(&id.0),
        Some(&vec![net("2001:db8:1::/64")]),
        "the grant shrinks to the new prefix"
    );

    // The home whose pair went was told and dropped its side; without a pair its IKE SA went
    // too. The other home carries on.
    homes.advance(Duration::from_secs(1));
    assert!(homes.homes[1].forwarder.installed.is_empty());
    assert_eq!(homes.homes[0].forwarder.installed.len(), 1);
    let downs = homes.server.peer_downs();
    assert_eq!(downs.len(), 1, "{downs:?}");
    assert!(homes.homes[0].peer_downs().is_empty());
    // When it comes back, its old selector is refused.
    homes.advance(Duration::from_secs(30));
    assert!(homes.server_pairs_of("other.example").is_empty());
    for installed in homes.server.forwarder.installed.values() {
        for ts in &installed.sa.remote_ts {
            assert!(
                net("2001:db8:1::/64").contains(ts) || net("2001:db8:2::/64").contains(ts),
                "the server installed {ts} after the reload"
            );
        }
    }
}

/// Finding: names that differ only in case. A home enrolled under its own name that states
/// another home's name in another case (`Home.Example` for `home.example`) with
/// INITIAL_CONTACT is refused (its certificate does not name it): the real home's SAs and
/// grant stay, and the hostile home gets nothing.
#[test]
fn a_home_stating_a_case_variant_of_another_homes_name_gets_nothing() {
    let mut homes = Homes::new(
        Setup::default(),
        &[
            ("home.example", "2001:db8:1::/64"),
            ("evil.example", "2001:db8:66::/64"),
        ],
    );
    homes.add_home(HomeSpec::new(CLIENT_NAME, CLIENT_ADDR, "2001:db8:1::/64"));
    homes.advance(Duration::from_secs(2));
    let before = homes.server_pairs_of(CLIENT_NAME);
    assert_eq!(before.len(), 1);
    let grants = homes.server.forwarder.grants.clone();
    homes.add_home(HomeSpec {
        certificate_name: "evil.example",
        identity: "Home.Example",
        addr: OTHER_ADDR,
        prefixes: vec![net("2001:db8:1::/64")],
    });
    homes.advance(Duration::from_secs(5));
    let refusals = homes.server.refusals();
    assert!(
        refusals
            .iter()
            .any(|r| r.contains("does not match the peer's identity home.example")),
        "{refusals:?}"
    );
    assert_eq!(homes.server_pairs_of(CLIENT_NAME), before);
    assert_eq!(homes.server.forwarder.installed.len(), 1);
    assert_eq!(homes.server.forwarder.grants, grants);
    assert_eq!(homes.server.peer_ups(), 1);
    assert!(homes.server.peer_downs().is_empty());
    assert_eq!(homes.homes[1].peer_ups(), 0);
    assert!(homes.homes[1].forwarder.installed.is_empty());
    assert_eq!(homes.homes[0].forwarder.installed.len(), 1);
}

/// The other half of that finding: IKE compares DNS names without case (RFC 4343), so a
/// certificate whose name is a case variant of a home's is that home, never a second one beside
/// it: the server knows it under the lower-case name, and its INITIAL_CONTACT replaces the
/// home's IKE SA as the home's own restart would. What keeps a hostile home from holding such a
/// certificate is the CA: `hometun pki` lower-cases every name and refuses a case variant of an
/// enrolled one (pki/tests/names.rs).
#[test]
fn a_certificate_for_a_case_variant_is_the_same_home_not_a_second_one() {
    let mut homes = Homes::new(Setup::default(), &[("home.example", "2001:db8:1::/64")]);
    homes.add_home(HomeSpec::new(CLIENT_NAME, CLIENT_ADDR, "2001:db8:1::/64"));
    homes.advance(Duration::from_secs(2));
    homes.add_home(HomeSpec {
        certificate_name: "Home.Example",
        identity: "Home.Example",
        addr: OTHER_ADDR,
        prefixes: vec![net("2001:db8:1::/64")],
    });
    homes.advance(Duration::from_secs(2));
    assert_eq!(peer_up_names(&homes), ["home.example", "home.example"]);
    assert_eq!(
        homes.server.peer_downs(),
        ["replaced: INITIAL_CONTACT from home.example"]
    );
    // One home: one grant, one pair, inside its prefix.
    assert_eq!(homes.server.forwarder.grants.len(), 1);
    assert_eq!(homes.server.forwarder.installed.len(), 1);
    assert_eq!(homes.server.endpoint.status(homes.clock.now()).len(), 1);
}

/// Finding I10: a home authenticating once by its name (ID_FQDN) and once by its
/// certificate's subject (ID_DER_ASN1_DN) was two homes to the server: two identities, each with
/// its own bound of IKE SAs and INITIAL_CONTACT, and a holder record under "DN ...". Now the
/// subject stands for the certificate's DNS name: one home.
#[test]
fn a_home_stating_its_subject_is_the_same_home_as_by_its_name() {
    let mut homes = Homes::new(Setup::default(), &[("home.example", "2001:db8:1::/64")]);
    homes.add_home(HomeSpec::new(CLIENT_NAME, CLIENT_ADDR, "2001:db8:1::/64"));
    homes.advance(Duration::from_secs(2));
    homes.add_home(HomeSpec {
        certificate_name: CLIENT_NAME,
        identity: SUBJECT,
        addr: OTHER_ADDR,
        prefixes: vec![net("2001:db8:1::/64")],
    });
    homes.advance(Duration::from_secs(2));
    assert_eq!(peer_up_names(&homes), ["home.example", "home.example"]);
    assert_eq!(
        homes.server.peer_downs(),
        ["replaced: INITIAL_CONTACT from home.example"]
    );
    assert_eq!(homes.server.forwarder.installed.len(), 1);
    assert_eq!(homes.server.endpoint.status(homes.clock.now()).len(), 1);
}

/// Finding I11: a home could make new IKE SAs as fast as it liked (each a Diffie-Hellman
/// exchange, two signatures, installs, routes and a holder record on the server), since a
/// finished IKE_AUTH leaves the half-open bounds and each new IKE SA came with a full budget of
/// rekeys. Now each identity has a budget of new IKE SAs (`dos.new_ike_sas_per_identity`, 5,
/// then one per 10 s) kept across its SAs, and a new SA carries on the rekey budget of the one
/// it replaces.
#[test]
fn a_home_authenticating_again_and_again_gets_five_then_one_per_ten_seconds() {
    let mut homes = Homes::new(Setup::default(), &[("home.example", "2001:db8:1::/64")]);
    for i in 0..8u8 {
        homes.add_home(HomeSpec::new(
            CLIENT_NAME,
            Ipv4Addr::new(198, 51, 100, 10 + i),
            "2001:db8:1::/64",
        ));
        homes.advance(Duration::from_millis(500));
    }
    let ups = |homes: &Homes| peer_up_names(homes).len();
    assert_eq!(ups(&homes), 5, "{:?}", homes.server.refusals());
    let refused = homes
        .server
        .refusals()
        .iter()
        .filter(|r| r.contains("re-authenticating too often"))
        .count();
    assert!(refused >= 3, "{:?}", homes.server.refusals());
    // The budget comes back at one per 10 s: a refused home that tries again gets in then.
    homes.advance(Duration::from_secs(40));
    let later = ups(&homes);
    assert!(
        (6..=10).contains(&later),
        "{later} IKE SAs after 44 s: {:?}",
        homes.server.refusals()
    );
    // However many came and went, one home holds at most its bound of IKE SAs and one status.
    assert!(homes.server.endpoint.counters().ike_sas <= 3);
    assert_eq!(homes.server.endpoint.status(homes.clock.now()).len(), 1);
}

/// With the bound off (`new_ike_sas_per_identity = 0`, for handshake benchmarks), every new IKE
/// SA of an identity is answered.
#[test]
fn without_the_bound_every_new_ike_sa_of_a_home_is_answered() {
    let setup = Setup {
        new_ike_sas_per_identity: 0,
        ..Setup::default()
    };
    let mut homes = Homes::new(setup, &[("home.example", "2001:db8:1::/64")]);
    for i in 0..8u8 {
        homes.add_home(HomeSpec::new(
            CLIENT_NAME,
            Ipv4Addr::new(198, 51, 100, 10 + i),
            "2001:db8:1::/64",
        ));
        homes.advance(Duration::from_millis(500));
    }
    assert_eq!(
        peer_up_names(&homes).len(),
        8,
        "{:?}",
        homes.server.refusals()
    );
}

/// Finding: server identity. The same CA signs the server's certificate and the homes': a
/// home's certificate (clientAuth only) must not pass as the server's, whatever name it holds.
#[test]
fn a_home_refuses_a_server_that_presents_a_home_certificate() {
    let mut pki = Pki::new(&rcgen::PKCS_ED25519);
    pki.server = pki.ca.leaf(SERVER_NAME, 101, Validity::Good);
    let mut pair = Pair::with_pki(Setup::default(), pki);
    pair.advance(Duration::from_secs(2));
    assert_eq!(pair.client.peer_ups(), 0);
    let refusals = pair.client.refusals();
    assert!(
        refusals
            .iter()
            .any(|r| r.contains("not a server certificate (no serverAuth")),
        "{refusals:?}"
    );
    assert!(pair.client.forwarder.installs().is_empty());
}

/// ...and the server's own certificate (serverAuth only) is no home's.
#[test]
fn the_server_refuses_a_home_that_presents_a_server_certificate() {
    let mut pki = Pki::new(&rcgen::PKCS_ED25519);
    pki.client = pki.ca.server_leaf(CLIENT_NAME, 100, Validity::Good);
    let mut pair = Pair::with_pki(Setup::default(), pki);
    pair.advance(Duration::from_secs(2));
    assert_eq!(pair.server.peer_ups(), 0);
    let refusals = pair.server.refusals();
    assert!(
        refusals
            .iter()
            .any(|r| r.contains("is a server certificate, not a home's")),
        "{refusals:?}"
    );
    assert!(pair.server.forwarder.installs().is_empty());
    assert!(pair.server.forwarder.grants.is_empty());
}
