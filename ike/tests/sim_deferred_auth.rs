//! Two-peer simulation with the server's key derivation and IKE_AUTH signature work handed out
//! as jobs (`Endpoint::defer_crypto`, what the daemon's worker threads run): the handshake ends
//! as it does in place; an IKE_AUTH request before its keys waits for them; a low-order key
//! share found by the job drops the half-open SA; a retransmitted request while its signature
//! job is out is dropped and answered once the job is back; a job that comes back after its
//! half-open SA expired is dropped; one that comes back after a reload is checked again under
//! the new configuration.

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hometun_ike::endpoint::Endpoint;
use hometun_ike::endpoint::reload::{Reload, ResponderReload};
use hometun_ike::wire::{ExchangeType, Message, Payload};
use sim_support::*;

fn deferred(hold: bool) -> Pair {
    let mut pair = Pair::new(Setup::default());
    pair.server.endpoint.defer_crypto(true);
    pair.server.hold_jobs = hold;
    pair
}

#[test]
fn a_handshake_with_its_signature_work_handed_out_ends_as_one_done_in_place() {
    let mut inline = Pair::new(Setup::default());
    inline.connect();
    let mut pair = deferred(false);
    pair.connect();
    let installs = pair.assert_matching_pairs();
    assert_eq!(installs.len(), inline.assert_matching_pairs().len());
    assert!(pair.esp(true) && pair.esp(false));
    // The same messages, one of each.
    for (exchange, response) in [
        (ExchangeType::IKE_SA_INIT, false),
        (ExchangeType::IKE_SA_INIT, true),
        (ExchangeType::IKE_AUTH, false),
        (ExchangeType::IKE_AUTH, true),
    ] {
        assert_eq!(pair.count(exchange, response), 1, "{exchange} {response}");
    }
}

#[test]
fn a_retransmission_while_the_job_is_out_is_dropped_and_answered_after() {
    let mut pair = deferred(true);
    // Long enough for the client to send IKE_AUTH again (its first retransmission at 1 s).
    pair.advance(Duration::from_millis(1500));
    assert_eq!(
        pair.count(ExchangeType::IKE_AUTH, false),
        2,
        "retransmitted"
    );
    assert_eq!(pair.count(ExchangeType::IKE_AUTH, true), 0, "no answer yet");
    assert_eq!(pair.server.held_jobs.len(), 1, "one job for both copies");
    pair.run_held_jobs(false);
    pair.settle();
    assert_eq!(pair.client.peer_ups(), 1);
    assert_eq!(pair.server.peer_ups(), 1);
    pair.assert_matching_pairs();
}

#[test]
fn a_job_back_after_its_half_open_sa_expired_is_dropped() {
    let mut pair = deferred(true);
    pair.settle();
    assert_eq!(pair.server.held_jobs.len(), 1);
    // The client gives up after its retries; the half-open SA expires on the server.
    pair.client.up = false;
    pair.advance(Duration::from_secs(120));
    assert_eq!(
        pair.server.endpoint.counters().half_open,
        0,
        "{:?}",
        pair.server.endpoint.counters()
    );
    pair.run_held_jobs(false);
    assert_eq!(pair.server.peer_ups(), 0);
    assert!(pair.server.forwarder.installed.is_empty());
}

#[test]
fn a_job_back_after_a_reload_is_checked_again_under_the_new_configuration() {
    let mut pair = deferred(true);
    pair.settle();
    assert_eq!(pair.server.held_jobs.len(), 1);
    // Meanwhile a CRL revokes the client (serial 100, sim_support::Pki::new).
    pair.pki.server_crl = Some(pair.pki.ca.crl(&[100]));
    let config = server_config(&pair.setup, &pair.pki);
    let now = pair.clock.now();
    pair.server
        .endpoint
        .reload(
            now,
            &mut pair.rng,
            Reload {
                common: config.common,
                responder: Some(ResponderReload {
                    authorizer: config.authorizer,
                    cookie_threshold: config.cookie_threshold,
                    half_open_per_source: config.half_open_per_source,
                    half_open_total: config.half_open_total,
                    new_ike_sas_per_identity: config.new_ike_sas_per_identity,
                }),
            },
        )
        .unwrap();
    // The job was made before: run under the old CRL it would pass.
    pair.run_held_jobs(false);
    pair.settle();
    assert_eq!(pair.server.peer_ups(), 0);
    let refusals = pair.server.refusals();
    assert!(
        refusals.iter().any(|r| r.contains("revoked")),
        "{refusals:?}"
    );
}

#[test]
fn an_ike_auth_request_before_its_keys_waits_for_them_and_is_answered_once() {
    let mut pair = deferred(false);
    pair.server.hold_key_jobs = true;
    // The client gets its IKE_SA_INIT answer, sends IKE_AUTH and retransmits it at 1 s.
    pair.advance(Duration::from_millis(1500));
    assert_eq!(pair.count(ExchangeType::IKE_SA_INIT, true), 1);
    assert_eq!(pair.count(ExchangeType::IKE_AUTH, false), 2);
    assert_eq!(
        pair.count(ExchangeType::IKE_AUTH, true),
        0,
        "no keys, no answer"
    );
    assert_eq!(pair.server.held_jobs.len(), 1);
    assert!(pair.server.held_jobs[0].is_key_derivation());
    assert_eq!(pair.server.endpoint.counters().half_open, 1);
    pair.run_held_jobs(false);
    pair.settle();
    assert_eq!(pair.count(ExchangeType::IKE_AUTH, true), 1);
    assert_eq!(pair.client.peer_ups(), 1);
    assert_eq!(pair.server.peer_ups(), 1);
    assert_eq!(pair.server.endpoint.counters().half_open, 0);
    pair.assert_matching_pairs();
}

#[test]
fn a_key_job_back_after_its_half_open_sa_expired_is_dropped() {
    let mut pair = deferred(false);
    pair.server.hold_key_jobs = true;
    pair.settle();
    assert_eq!(pair.server.held_jobs.len(), 1);
    pair.client.up = false;
    pair.advance(Duration::from_secs(120));
    let counters = pair.server.endpoint.counters();
    assert_eq!(
        (counters.half_open, counters.ike_sas),
        (0, 0),
        "{counters:?}"
    );
    pair.run_held_jobs(false);
    let counters = pair.server.endpoint.counters();
    assert_eq!(
        (counters.half_open, counters.ike_sas),
        (0, 0),
        "{counters:?}"
    );
    assert_eq!(pair.server.peer_ups(), 0);
}

#[test]
fn a_low_order_key_share_found_by_the_key_job_drops_the_half_open_sa() {
    let setup = Setup::default();
    let pki = Pki::new(setup.alg);
    let clock = Clock::new();
    let mut rng = SeededRandom::new(5);
    let mut server = Endpoint::responder(server_config(&setup, &pki), clock.now(), &mut rng);
    server.defer_crypto(true);
    let local = SocketAddrV4::new(SERVER_ADDR, 500);
    let from = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 500);
    // u = 0: X25519 gives the all-zero secret (RFC 7748 6.1). In place this is refused at
    // once; deferred, the answer goes out before the job finds it.
    let request = raw_sa_init(0x1111, &[5; 32], None, &[0; 32]);
    server.handle_datagram(clock.now(), local, from, &request, &mut rng);
    let answer = Message::parse(&server.poll_transmit().unwrap().data).unwrap();
    assert!(answer.header.flags.response());
    assert!(answer.payloads.iter().any(|p| matches!(p, Payload::Ke(_))));
    assert_eq!(server.counters().half_open, 1);
    let job = server.poll_crypto_job().unwrap();
    assert!(job.is_key_derivation());
    server.handle_crypto_done(clock.now(), job.run(), &mut rng);
    let counters = server.counters();
    assert_eq!(
        (counters.half_open, counters.ike_sas),
        (0, 0),
        "{counters:?}"
    );
    assert!(server.poll_transmit().is_none(), "nothing more is said");
    // The bookkeeping went with it: the same request is a new attempt, answered afresh.
    server.handle_datagram(clock.now(), local, from, &request, &mut rng);
    assert!(server.poll_transmit().is_some());
    assert_eq!(server.counters().half_open, 1);
}

/// Our key pairs are made ahead by jobs while crypto is handed out: the first IKE_SA_INIT
/// answers with one made in place and asks for a batch; later answers take one each from the
/// pool, which asks for more when it runs low; no two answers carry the same KE data. With the
/// jobs held, every answer is still made in place.
#[test]
fn key_pairs_made_ahead_serve_one_exchange_each() {
    // Forty half-open SAs at once: no cookie challenge before them.
    let setup = Setup {
        cookie_threshold: 100,
        ..Setup::default()
    };
    let pki = Pki::new(setup.alg);
    let clock = Clock::new();
    let mut rng = SeededRandom::new(6);
    let local = SocketAddrV4::new(SERVER_ADDR, 500);
    let ke_of = |data: &[u8]| -> Vec<u8> {
        let answer = Message::parse(data).unwrap();
        answer
            .payloads
            .iter()
            .find_map(|p| match p {
                Payload::Ke(ke) => Some(ke.data.clone()),
                _ => None,
            })
            .expect("a KE payload")
    };
    for run_key_jobs in [true, false] {
        let mut server = Endpoint::responder(server_config(&setup, &pki), clock.now(), &mut rng);
        server.defer_crypto(true);
        let mut seen = std::collections::HashSet::new();
        let mut key_jobs = 0;
        for i in 0..40u8 {
            let from = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10 + i), 500);
            let ready_before = server.key_pairs_ready();
            let request = raw_sa_init(0x2000 + u64::from(i), &[i; 32], None, &[0x42; 32]);
            server.handle_datagram(clock.now(), local, from, &request, &mut rng);
            let ke = ke_of(&server.poll_transmit().unwrap().data);
            assert!(seen.insert(ke), "answer {i} repeats a KE");
            if ready_before > 0 {
                assert_eq!(server.key_pairs_ready(), ready_before - 1, "answer {i}");
            }
            while let Some(job) = server.poll_crypto_job() {
                if job.is_key_pairs() {
                    key_jobs += 1;
                    if !run_key_jobs {
                        continue;
                    }
                }
                server.handle_crypto_done(clock.now(), job.run(), &mut rng);
            }
        }
        if run_key_jobs {
            assert!(
                (2..=8).contains(&key_jobs),
                "{key_jobs} key pair jobs for 40 answers"
            );
            assert!(server.key_pairs_ready() > 0);
        } else {
            assert_eq!(server.key_pairs_ready(), 0);
        }
    }
}
