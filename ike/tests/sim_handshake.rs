//! Two-peer simulation: full handshakes over the virtual network (X25519 and P-256 groups,
//! AES-GCM 128 and 256, Ed25519 and P-256 certificates), INVALID_KE_PAYLOAD, NAT detection
//! and the float to port 4500, lost and duplicated IKE_SA_INIT / IKE_AUTH messages.

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::time::Duration;

use hometun_control::{AeadAlg, Encapsulation};
use hometun_ike::endpoint::Output;
use hometun_ike::wire::{ExchangeType, Message, NotifyType, Payload};
use sim_support::*;

fn handshake(setup: Setup) -> Pair {
    let mut pair = Pair::new(setup);
    pair.connect();
    pair
}

#[test]
fn full_handshake_across_groups_ciphers_and_key_types() {
    let cases = [
        (
            &rcgen::PKCS_ED25519,
            "aes128gcm16-prfsha256-x25519",
            "aes128gcm16",
            AeadAlg::AesGcm128,
        ),
        (
            &rcgen::PKCS_ED25519,
            "aes256gcm16-prfsha256-ecp256",
            "aes256gcm16",
            AeadAlg::AesGcm256,
        ),
        (
            &rcgen::PKCS_ECDSA_P256_SHA256,
            "aes128gcm16-prfsha256-ecp256",
            "aes256gcm16",
            AeadAlg::AesGcm256,
        ),
        (
            &rcgen::PKCS_ECDSA_P256_SHA256,
            "aes256gcm16-prfsha256-x25519",
            "aes128gcm16",
            AeadAlg::AesGcm128,
        ),
    ];
    for (alg, ike, esp, esp_alg) in cases {
        let mut pair = handshake(Setup {
            alg,
            client_ike: vec![ike],
            server_ike: vec!["aes128gcm16-aes256gcm16-prfsha256-x25519-ecp256"],
            client_esp: vec![esp],
            ..Setup::default()
        });
        let sas = pair.assert_matching_pairs();
        assert_eq!(sas.len(), 1, "{ike}");
        let sa = &sas[0];
        assert_eq!(sa.key_in.alg(), esp_alg, "{ike} {esp}");
        assert_eq!(sa.local_ts, vec![client_prefix()]);
        assert_eq!(sa.remote_ts, vec![net("::/0")]);
        assert_eq!(sa.endpoint.encap, Encapsulation::Raw, "no NAT: raw ESP");
        assert_eq!(sa.endpoint.local, CLIENT_ADDR);
        assert_eq!(sa.endpoint.remote, SERVER_ADDR);
        assert!(!sa.esn);
        assert_eq!(sa.nat_keepalive_seconds, None);
        assert_eq!(sa.replay_window, 1024);
        assert_eq!(sa.limits, limits());
        assert!(pair.esp(true) && pair.esp(false), "ESP flows both ways");

        // Status on both sides names the proposal and the client's prefix.
        let now = pair.now();
        let client = pair.client.endpoint.status(now);
        let server = pair.server.endpoint.status(now);
        assert_eq!(client.len(), 1);
        assert_eq!(server.len(), 1);
        assert_eq!(client[0].ike_proposal, ike);
        assert_eq!(server[0].ike_proposal, client[0].ike_proposal);
        assert_eq!(server[0].name, CLIENT_NAME);
        assert_eq!(client[0].name, SERVER_NAME);
        assert_eq!(server[0].prefixes, vec![client_prefix()]);
        assert_eq!(server[0].ike_spis, client[0].ike_spis);
        assert!(!server[0].nat);
        assert_eq!(server[0].children.len(), 1);
        // The names alone, as the daemon reads them every second, are status's.
        let names: Vec<_> = pair.server.endpoint.peer_names().collect();
        assert_eq!(names, vec![(server[0].peer, CLIENT_NAME)]);
        // Exactly four IKE messages, all on port 500 (no NAT, no float).
        assert_eq!(pair.trace.len(), 4, "{ike}");
        assert!(
            pair.trace
                .iter()
                .all(|(d, _)| d.src.port() == 500 && d.dst.port() == 500)
        );
    }
}

#[test]
fn ike_sa_init_carries_the_profile_payloads() {
    let pair = handshake(Setup::default());
    let request = Message::parse(&pair.trace[0].0.data).unwrap();
    let names: Vec<String> = request.payloads.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        [
            "SA",
            "KE",
            "No",
            "N(NAT_DETECTION_SOURCE_IP)",
            "N(NAT_DETECTION_DESTINATION_IP)",
            "N(SIGNATURE_HASH_ALGORITHMS)"
        ]
    );
    let response = Message::parse(&pair.trace[1].0.data).unwrap();
    let names: Vec<String> = response.payloads.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        [
            "SA",
            "KE",
            "No",
            "N(NAT_DETECTION_SOURCE_IP)",
            "N(NAT_DETECTION_DESTINATION_IP)",
            "CERTREQ",
            "N(SIGNATURE_HASH_ALGORITHMS)"
        ]
    );
    // CERTREQ names our CA by the SHA-1 of its SubjectPublicKeyInfo.
    let certreq = response
        .payloads
        .iter()
        .find_map(|p| match p {
            Payload::CertReq(c) => Some(c),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        certreq.data,
        pair.pki.ca.verifier().ca_key_hashes().concat()
    );
    let nonce = request.payloads.iter().find_map(|p| match p {
        Payload::Nonce(n) => Some(n.data.len()),
        _ => None,
    });
    assert_eq!(nonce, Some(32));
}

#[test]
fn invalid_ke_payload_makes_the_initiator_retry_with_the_servers_group() {
    // The client guesses P-256 first; the server takes X25519 only.
    let pair = handshake(Setup {
        client_ike: vec!["aes128gcm16-prfsha256-ecp256-x25519"],
        server_ike: vec!["aes128gcm16-prfsha256-x25519"],
        ..Setup::default()
    });
    pair.assert_matching_pairs();
    let answers: Vec<Message> = pair
        .trace
        .iter()
        .filter(|(d, _)| d.is(ExchangeType::IKE_SA_INIT, true))
        .map(|(d, _)| Message::parse(&d.data).unwrap())
        .collect();
    assert_eq!(answers.len(), 2);
    let invalid = answers[0].notify(NotifyType::INVALID_KE_PAYLOAD).unwrap();
    assert_eq!(invalid.data, [0, 31]);
    assert_eq!(answers[0].header.spi_r, 0, "no state on the server");
    assert_eq!(answers[0].payloads.len(), 1);
    let status = pair.client.endpoint.status(pair.now());
    assert_eq!(status[0].ike_proposal, "aes128gcm16-prfsha256-x25519");
    assert!(
        pair.server.refusals().is_empty(),
        "a group retry is no refusal"
    );
}

#[test]
fn a_group_outside_the_initiators_proposals_is_refused() {
    // The server insists on P-256; the client offers X25519 only: NO_PROPOSAL_CHOSEN.
    let mut pair = Pair::new(Setup {
        client_ike: vec!["aes128gcm16-prfsha256-x25519"],
        server_ike: vec!["aes128gcm16-prfsha256-ecp256"],
        ..Setup::default()
    });
    pair.advance(Duration::from_secs(1));
    assert_eq!(pair.client.peer_ups(), 0);
    let refusals = pair.server.refusals();
    assert_eq!(refusals.len(), 1);
    assert!(
        refusals[0].starts_with("NO_PROPOSAL_CHOSEN"),
        "{refusals:?}"
    );
    assert_eq!(pair.server.endpoint.counters().ike_sas, 0);
    // The refusal is unauthenticated: the client reports it once it gave a genuine answer
    // every chance (its retransmissions spent).
    assert!(pair.client.refusals().is_empty());
    pair.advance(Duration::from_secs(20));
    assert!(pair.client.refusals()[0].contains("NO_PROPOSAL_CHOSEN"));
}

#[test]
fn nat_detected_moves_ike_to_4500_and_esp_into_udp() {
    let pair = handshake(Setup {
        nat: true,
        ..Setup::default()
    });
    let sas = pair.assert_matching_pairs();
    let client_sa = &sas[0];
    assert_eq!(
        client_sa.endpoint.encap,
        Encapsulation::Udp {
            local_port: 4500,
            remote_port: 4500
        }
    );
    assert_eq!(client_sa.endpoint.local, CLIENT_PRIVATE);
    // The client is behind the NAT: it sends keepalives.
    assert_eq!(client_sa.nat_keepalive_seconds, Some(20));
    let server_sa = &pair.server.forwarder.installed[&client_sa.spi_out.0].sa;
    assert_eq!(server_sa.endpoint.remote, NAT_PUBLIC);
    assert_eq!(
        server_sa.endpoint.encap,
        Encapsulation::Udp {
            local_port: 4500,
            remote_port: 44500
        },
        "the server answers the NAT's mapped port"
    );
    assert_eq!(server_sa.nat_keepalive_seconds, None);
    // IKE_SA_INIT on 500, IKE_AUTH on 4500 both ways.
    for (d, _) in &pair.trace {
        let want =
            if d.is(ExchangeType::IKE_SA_INIT, false) || d.is(ExchangeType::IKE_SA_INIT, true) {
                500
            } else {
                4500
            };
        // Towards the client the NAT's public ports are 40000 + the private ones.
        assert_eq!(d.src.port() % 40000, want);
        assert_eq!(d.dst.port() % 40000, want);
    }
    let server = pair.server.endpoint.status(pair.now());
    assert!(server[0].nat);
    assert_eq!(server[0].remote.port(), 44500);
}

/// `force_udp_encapsulation` without a NAT: the server sees one in front of the client (the
/// client's source hash names no address of its), both move to 4500 and ESP goes in UDP; the
/// client keeps the mapping alive as if it were behind a NAT.
#[test]
fn a_client_forcing_udp_gets_esp_in_udp_without_a_nat() {
    let pair = handshake(Setup {
        force_udp_encapsulation: true,
        ..Setup::default()
    });
    let sas = pair.assert_matching_pairs();
    let client_sa = &sas[0];
    let udp = Encapsulation::Udp {
        local_port: 4500,
        remote_port: 4500,
    };
    assert_eq!(client_sa.endpoint.local, CLIENT_ADDR);
    assert_eq!(client_sa.endpoint.encap, udp);
    assert_eq!(client_sa.nat_keepalive_seconds, Some(20));
    let server_sa = &pair.server.forwarder.installed[&client_sa.spi_out.0].sa;
    assert_eq!(server_sa.endpoint.remote, CLIENT_ADDR);
    assert_eq!(server_sa.endpoint.encap, udp);
    for (d, _) in &pair.trace {
        let init = d.is(ExchangeType::IKE_SA_INIT, false) || d.is(ExchangeType::IKE_SA_INIT, true);
        assert_eq!(d.src.port(), if init { 500 } else { 4500 });
        assert_eq!(d.dst.port(), if init { 500 } else { 4500 });
    }
    let server = pair.server.endpoint.status(pair.now());
    assert!(
        server[0].nat,
        "the server sees a NAT in front of the client"
    );
    assert!(!server[0].udp_forced);
    // The client's status says what is true: no NAT, ESP in UDP because it was told to.
    let client = pair.client.endpoint.status(pair.now());
    assert!(!client[0].nat && client[0].udp_forced, "{client:?}");

    // Behind a real NAT the option changes nothing the status shows.
    let pair = handshake(Setup {
        nat: true,
        force_udp_encapsulation: true,
        ..Setup::default()
    });
    let client = pair.client.endpoint.status(pair.now());
    assert!(client[0].nat && !client[0].udp_forced, "{client:?}");

    // Without the option the same pair stays on raw ESP (the test above is not vacuous).
    let pair = handshake(Setup::default());
    let sas = pair.assert_matching_pairs();
    assert_eq!(sas[0].endpoint.encap, Encapsulation::Raw);
    let client = pair.client.endpoint.status(pair.now());
    assert!(!client[0].nat && !client[0].udp_forced, "{client:?}");
}

#[test]
fn lost_and_duplicated_handshake_messages() {
    // Drop the first IKE_SA_INIT request, the first IKE_SA_INIT response, the first IKE_AUTH
    // request and the first IKE_AUTH response; duplicate every later one.
    for victim in [
        (ExchangeType::IKE_SA_INIT, false),
        (ExchangeType::IKE_SA_INIT, true),
        (ExchangeType::IKE_AUTH, false),
        (ExchangeType::IKE_AUTH, true),
    ] {
        let mut dropped = false;
        let mut pair = Pair::new(Setup::default());
        pair.filter = Box::new(move |d| {
            if d.is(victim.0, victim.1) && !dropped {
                dropped = true;
                Fate::Drop
            } else {
                Fate::Duplicate
            }
        });
        // The client's first message already left: resend it through the filter.
        let first = pair.in_flight.remove(0);
        pair.trace.clear();
        let fate = (pair.filter)(&first);
        if fate != Fate::Drop {
            pair.in_flight.push(first.clone());
            pair.in_flight.push(first);
        }
        pair.advance(Duration::from_secs(10));
        assert_eq!(pair.client.peer_ups(), 1, "{victim:?}");
        assert_eq!(pair.server.peer_ups(), 1, "{victim:?}");
        pair.assert_matching_pairs();
        assert_eq!(pair.client.forwarder.installs().len(), 1, "{victim:?}");
        assert_eq!(pair.server.forwarder.installs().len(), 1, "{victim:?}");
        // Retransmitted requests got the cached response byte for byte.
        for exchange in [ExchangeType::IKE_SA_INIT, ExchangeType::IKE_AUTH] {
            let responses: Vec<&Vec<u8>> = pair
                .trace
                .iter()
                .filter(|(d, _)| d.is(exchange, true))
                .map(|(d, _)| &d.data)
                .collect();
            assert!(!responses.is_empty());
            assert!(
                responses.iter().all(|r| *r == responses[0]),
                "{victim:?}: {exchange} answered differently"
            );
        }
        assert_eq!(pair.server.endpoint.counters().ike_sas, 1);
    }
}

#[test]
fn initial_contact_is_sent_on_connect() {
    let pair = handshake(Setup::default());
    // The server saw INITIAL_CONTACT: it is in the IKE_AUTH request (encrypted); the server's
    // logic acts on it in the restart tests. Here: the handshake output is complete.
    assert!(
        pair.client
            .outputs
            .iter()
            .any(|(_, o)| matches!(o, Output::PeerUp { name, .. } if name == SERVER_NAME))
    );
    assert!(
        pair.server
            .outputs
            .iter()
            .any(|(_, o)| matches!(o, Output::PeerUp { name, .. } if name == CLIENT_NAME))
    );
}

#[test]
fn a_late_copy_of_ike_sa_init_after_the_handshake_is_dropped() {
    let mut pair = handshake(Setup::default());
    let first = pair.trace[0].0.clone();
    let sent = pair.trace.len();
    let mut late = first;
    late.deliver_at = pair.clock.offset;
    pair.in_flight.push(late);
    pair.settle();
    assert_eq!(pair.trace.len(), sent, "no answer");
    let counters = pair.server.endpoint.counters();
    assert_eq!((counters.ike_sas, counters.half_open), (1, 0));
}
