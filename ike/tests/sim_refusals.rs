//! Two-peer simulation: refusals. Each is answered with the right notify, reported as one
//! `Output::Refused` line naming the reason, and leaves no state on the responder.

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::time::Duration;

use hometun_ike::endpoint::Endpoint;
use hometun_ike::wire::ExchangeType;
use sim_support::*;

/// Runs one connection attempt and checks the server refused it with `notify` and kept
/// nothing; returns the server's refusal line.
fn refused(setup: Setup, pki: Pki, notify: &str) -> (String, Pair) {
    check_refused(Pair::with_pki(setup, pki), notify)
}

fn check_refused(mut pair: Pair, notify: &str) -> (String, Pair) {
    pair.advance(Duration::from_millis(500));
    assert_eq!(pair.client.peer_ups(), 0);
    assert_eq!(pair.server.peer_ups(), 0);
    let server = pair.server.refusals();
    assert_eq!(server.len(), 1, "server outputs: {:?}", pair.server.outputs);
    assert!(server[0].starts_with(notify), "{server:?}");
    let client = pair.client.refusals();
    assert_eq!(client.len(), 1, "client outputs: {:?}", pair.client.outputs);
    assert!(client[0].contains(notify), "{client:?}");
    let counters = pair.server.endpoint.counters();
    assert_eq!(counters.ike_sas, 0, "no state left on the responder");
    assert_eq!(counters.half_open, 0);
    assert!(pair.server.forwarder.log.is_empty(), "nothing installed");
    assert!(pair.client.forwarder.installed.is_empty());
    assert!(pair.server.endpoint.status(pair.now()).is_empty());
    // The answer is one IKE_AUTH response (the notify inside it).
    assert_eq!(pair.count(ExchangeType::IKE_AUTH, true), 1);
    (server[0].to_string(), pair)
}

#[test]
fn certificate_from_another_ca() {
    let mut pki = Pki::new(&rcgen::PKCS_ED25519);
    let other = Ca::new(&rcgen::PKCS_ED25519, "someone else's CA");
    pki.client = other.leaf(CLIENT_NAME, 100, Validity::Good);
    let (reason, _) = refused(Setup::default(), pki, "AUTHENTICATION_FAILED");
    assert!(
        reason.contains("not issued by the configured CA"),
        "{reason}"
    );
}

#[test]
fn expired_certificate() {
    let mut pki = Pki::new(&rcgen::PKCS_ECDSA_P256_SHA256);
    pki.client = pki.ca.leaf(CLIENT_NAME, 100, Validity::Expired);
    let setup = Setup {
        alg: &rcgen::PKCS_ECDSA_P256_SHA256,
        ..Setup::default()
    };
    let (reason, _) = refused(setup, pki, "AUTHENTICATION_FAILED");
    assert!(
        reason.contains("certificate expired at 2025-01-01"),
        "{reason}"
    );
}

#[test]
fn not_yet_valid_certificate() {
    let mut pki = Pki::new(&rcgen::PKCS_ED25519);
    pki.client = pki.ca.leaf(CLIENT_NAME, 100, Validity::NotYetValid);
    let (reason, _) = refused(Setup::default(), pki, "AUTHENTICATION_FAILED");
    assert!(reason.contains("not valid before 2029-01-01"), "{reason}");
}

#[test]
fn identity_not_in_the_certificate() {
    let mut pki = Pki::new(&rcgen::PKCS_ED25519);
    pki.client = pki.ca.leaf("other.example", 100, Validity::Good);
    let (reason, _) = refused(Setup::default(), pki, "AUTHENTICATION_FAILED");
    assert!(
        reason.contains("does not match the peer's identity home.example"),
        "{reason}"
    );
}

#[test]
fn revoked_certificate() {
    let mut pki = Pki::new(&rcgen::PKCS_ED25519);
    pki.server_crl = Some(pki.ca.crl(&[100]));
    let (reason, _) = refused(Setup::default(), pki, "AUTHENTICATION_FAILED");
    assert!(reason.contains("revoked"), "{reason}");

    // The same CRL without the client's serial lets it in.
    let mut pki = Pki::new(&rcgen::PKCS_ED25519);
    pki.server_crl = Some(pki.ca.crl(&[555]));
    let mut pair = Pair::with_pki(Setup::default(), pki);
    pair.connect();
    pair.assert_matching_pairs();
}

#[test]
fn client_unknown_to_the_servers_policy() {
    let setup = Setup::default();
    let pki = Pki::new(&rcgen::PKCS_ED25519);
    let clock = Clock::new();
    let mut rng = SeededRandom::new(3);
    let mut config = server_config(&setup, &pki);
    config.authorizer = Box::new(StaticAuthorizer(vec![(
        "someone.example".into(),
        vec![client_prefix()],
    )]));
    let server = Endpoint::responder(config, clock.now(), &mut rng);
    let client = Endpoint::initiator(client_config(&setup, &pki), clock.now(), &mut rng);
    let pair = Pair::from_endpoints(setup, pki, clock, rng, client, server);
    let (reason, _) = check_refused(pair, "AUTHENTICATION_FAILED");
    assert!(
        reason.contains("no [[clients]] entry names home.example"),
        "{reason}"
    );
}

#[test]
fn client_without_any_prefix() {
    let setup = Setup {
        server_allows: vec![],
        ..Setup::default()
    };
    let (reason, _) = refused(setup, Pki::new(&rcgen::PKCS_ED25519), "TS_UNACCEPTABLE");
    assert!(reason.contains("may use"), "{reason}");
}

#[test]
fn traffic_selectors_outside_the_clients_prefix() {
    let setup = Setup {
        client_prefixes: vec![net("2001:db8:2::/64")],
        ..Setup::default()
    };
    let (reason, _) = refused(setup, Pki::new(&rcgen::PKCS_ED25519), "TS_UNACCEPTABLE");
    assert!(
        reason.contains("asks for 2001:db8:2::/64 but may use 2001:db8:1::/64"),
        "{reason}"
    );
}

#[test]
fn no_common_esp_proposal() {
    let setup = Setup {
        client_esp: vec!["aes256gcm16"],
        server_esp: vec!["aes128gcm16"],
        ..Setup::default()
    };
    let (reason, _) = refused(setup, Pki::new(&rcgen::PKCS_ED25519), "NO_PROPOSAL_CHOSEN");
    assert!(reason.contains("ENCR_AES_GCM_16/256"), "{reason}");
}

#[test]
fn no_common_ike_proposal_is_refused_without_state() {
    let setup = Setup {
        client_ike: vec!["aes256gcm16-prfsha256-x25519"],
        server_ike: vec!["aes128gcm16-prfsha256-x25519"],
        ..Setup::default()
    };
    let mut pair = Pair::new(setup);
    pair.advance(Duration::from_millis(500));
    let server = pair.server.refusals();
    assert_eq!(server.len(), 1);
    assert!(server[0].starts_with("NO_PROPOSAL_CHOSEN"), "{server:?}");
    assert_eq!(pair.server.endpoint.counters().ike_sas, 0);
    // The refusal is unauthenticated: the client reports it once its retransmissions are
    // spent without a genuine answer.
    pair.advance(Duration::from_secs(20));
    assert!(pair.client.refusals()[0].contains("NO_PROPOSAL_CHOSEN"));
    assert_eq!(pair.count(ExchangeType::IKE_AUTH, false), 0);
}

#[test]
fn the_client_refuses_a_server_with_a_bad_certificate() {
    // Server certificate expired: the client refuses; nothing is installed on the client.
    let mut pki = Pki::new(&rcgen::PKCS_ED25519);
    pki.server = pki.ca.server_leaf(SERVER_NAME, 101, Validity::Expired);
    let mut pair = Pair::with_pki(Setup::default(), pki);
    pair.advance(Duration::from_millis(500));
    let client = pair.client.refusals();
    assert_eq!(client.len(), 1, "{:?}", pair.client.outputs);
    assert!(client[0].contains("certificate expired"), "{client:?}");
    assert!(pair.client.forwarder.log.is_empty());
    assert_eq!(pair.client.peer_ups(), 0);
    assert!(pair.client.endpoint.status(pair.now()).is_empty());

    // A server whose certificate names another host.
    let mut pki = Pki::new(&rcgen::PKCS_ED25519);
    pki.server = pki.ca.server_leaf("impostor.example", 101, Validity::Good);
    let mut pair = Pair::with_pki(Setup::default(), pki);
    pair.advance(Duration::from_millis(500));
    assert!(pair.client.refusals()[0].contains("does not match the peer's identity vps.example"));
    assert!(pair.client.forwarder.log.is_empty());
}

#[test]
fn a_refused_client_retries_with_backoff() {
    let setup = Setup {
        client_prefixes: vec![net("2001:db8:2::/64")],
        ..Setup::default()
    };
    let mut pair = Pair::new(setup);
    pair.advance(Duration::from_secs(20));
    let attempts = pair.count(ExchangeType::IKE_SA_INIT, false);
    // 1 s, 2 s, 4 s, 8 s between attempts: 5 attempts in 20 s, not one per second.
    assert!((4..=6).contains(&attempts), "{attempts} attempts");
    assert_eq!(pair.server.refusals().len(), attempts);
    assert_eq!(pair.server.endpoint.counters().ike_sas, 0);
}
