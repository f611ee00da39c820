//! Interoperability: strongSwan 5.9.8's real IKE_SA_INIT request (the trace in
//! shared/vectors) fed to our responder. Our answer must parse, choose the proposal
//! strongSwan's own responder chose, and carry what strongSwan expects (KE of group 31,
//! a 32-byte nonce, NAT detection, CERTREQ for our CA, SIGNATURE_HASH_ALGORITHMS). The rest
//! of that handshake cannot be replayed without strongSwan's private keys.

#![allow(clippy::unwrap_used)]

mod sim_support;
mod wire_common;

use std::net::SocketAddrV4;

use hometun_ike::endpoint::Endpoint;
use hometun_ike::wire::{ExchangeType, HashAlgorithm, Message, NotifyType, Payload, ProtocolId};
use sim_support::*;

fn strongswan_request() -> (SocketAddrV4, SocketAddrV4, Vec<u8>) {
    let (origin, bytes) = wire_common::trace_messages().remove(0);
    (origin.src, origin.dst, bytes)
}

fn strongswan_response() -> Vec<u8> {
    wire_common::trace_messages().remove(1).1
}

fn our_responder(server_ike: Vec<&'static str>) -> (Endpoint, Clock, SeededRandom) {
    let setup = Setup {
        server_ike,
        ..Setup::default()
    };
    let pki = Pki::new(setup.alg);
    let clock = Clock::new();
    let mut rng = SeededRandom::new(11);
    let server = Endpoint::responder(server_config(&setup, &pki), clock.now(), &mut rng);
    (server, clock, rng)
}

#[test]
fn strongswan_ike_sa_init_request_is_answered_with_the_same_proposal() {
    let (src, dst, request) = strongswan_request();
    let request_message = Message::parse(&request).unwrap();
    // Our preferences put AES-256 and P-256 first: the choice must still fall on what
    // strongSwan offers (its proposal 1: AES_GCM_16_128 / PRF_HMAC_SHA2_256 / CURVE_25519).
    let (mut server, clock, mut rng) = our_responder(vec![
        "aes256gcm16-prfsha256-ecp256",
        "aes128gcm16-aes256gcm16-prfsha256-x25519-ecp256",
    ]);
    server.handle_datagram(clock.now(), dst, src, &request, &mut rng);
    let answer = server.poll_transmit().expect("an answer");
    assert!(server.poll_transmit().is_none());
    assert_eq!((answer.local, answer.remote), (dst, src));
    let ours = Message::parse(&answer.data).unwrap();
    let theirs = Message::parse(&strongswan_response()).unwrap();

    assert_eq!(ours.header.exchange_type, ExchangeType::IKE_SA_INIT);
    assert!(ours.header.flags.response() && !ours.header.flags.initiator());
    assert_eq!(ours.header.spi_i, request_message.header.spi_i);
    assert_ne!(ours.header.spi_r, 0);
    assert_eq!(ours.header.message_id, 0);

    let sa = |m: &Message| {
        m.payloads
            .iter()
            .find_map(|p| match p {
                Payload::Sa(sa) => Some(sa.clone()),
                _ => None,
            })
            .unwrap()
    };
    // The very proposal strongSwan's responder sent back, transform for transform.
    assert_eq!(sa(&ours), sa(&theirs));
    assert_eq!(sa(&ours).proposals[0].protocol, ProtocolId::IKE);

    let ke = ours
        .payloads
        .iter()
        .find_map(|p| match p {
            Payload::Ke(k) => Some(k),
            _ => None,
        })
        .unwrap();
    assert_eq!(ke.group.0, 31);
    assert_eq!(ke.data.len(), 32);
    let nonce = ours.payloads.iter().find_map(|p| match p {
        Payload::Nonce(n) => Some(n.data.len()),
        _ => None,
    });
    assert_eq!(nonce, Some(32));
    assert!(ours.notify(NotifyType::NAT_DETECTION_SOURCE_IP).is_some());
    assert!(
        ours.notify(NotifyType::NAT_DETECTION_DESTINATION_IP)
            .is_some()
    );
    let hashes: Vec<HashAlgorithm> = ours
        .notify(NotifyType::SIGNATURE_HASH_ALGORITHMS)
        .unwrap()
        .hash_algorithms()
        .collect();
    // strongSwan signs Ed25519 with "identity" and ECDSA with SHA-256.
    assert!(hashes.contains(&HashAlgorithm::IDENTITY));
    assert!(hashes.contains(&HashAlgorithm::SHA2_256));
    assert!(
        ours.payloads
            .iter()
            .any(|p| matches!(p, Payload::CertReq(c) if c.data.len() == 20))
    );
    // Payload order as strongSwan's responder: SA KE No N(NATD_S) N(NATD_D) CERTREQ ...
    let names: Vec<String> = ours.payloads.iter().map(ToString::to_string).collect();
    assert_eq!(
        &names[..6],
        [
            "SA",
            "KE",
            "No",
            "N(NAT_DETECTION_SOURCE_IP)",
            "N(NAT_DETECTION_DESTINATION_IP)",
            "CERTREQ"
        ]
    );

    // strongSwan (encap = yes) fakes its NAT_DETECTION_SOURCE_IP to force UDP encapsulation;
    // the request's notifies are what they are, and we keep a half-open SA for its IKE_AUTH.
    assert_eq!(server.counters().half_open, 1);
    // A retransmission of strongSwan's request gets our answer again, byte for byte.
    server.handle_datagram(clock.now(), dst, src, &request, &mut rng);
    assert_eq!(server.poll_transmit().unwrap().data, answer.data);
    assert_eq!(server.counters().half_open, 1);
}

#[test]
fn strongswan_request_without_a_common_proposal_is_refused_statelessly() {
    let (src, dst, request) = strongswan_request();
    let (mut server, clock, mut rng) = our_responder(vec!["aes256gcm16-prfsha256-x25519"]);
    server.handle_datagram(clock.now(), dst, src, &request, &mut rng);
    let answer = Message::parse(&server.poll_transmit().unwrap().data).unwrap();
    assert_eq!(answer.header.spi_r, 0);
    assert_eq!(answer.payloads.len(), 1);
    assert!(answer.notify(NotifyType::NO_PROPOSAL_CHOSEN).is_some());
    assert_eq!(server.counters().ike_sas, 0);
}

#[test]
fn strongswan_ke_group_is_honoured_when_we_prefer_another() {
    let (src, dst, request) = strongswan_request();
    // We take P-256 only: INVALID_KE_PAYLOAD would need strongSwan to offer it; it offers
    // only curve25519, so this is NO_PROPOSAL_CHOSEN. With both groups offered by us but
    // P-256 preferred, strongSwan's KE (x25519) is honoured without a round trip.
    let (mut server, clock, mut rng) = our_responder(vec!["aes128gcm16-prfsha256-ecp256-x25519"]);
    server.handle_datagram(clock.now(), dst, src, &request, &mut rng);
    let answer = Message::parse(&server.poll_transmit().unwrap().data).unwrap();
    assert!(answer.notify(NotifyType::INVALID_KE_PAYLOAD).is_none());
    assert_ne!(answer.header.spi_r, 0);
}
