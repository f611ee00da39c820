//! Two-peer simulation on the virtual clock: an IKE SA ends when the certificate it was
//! authenticated with expires, and a home whose certificate was renewed re-authenticates with it
//! make-before-break (RFC 7296 2.8.3) without a moment without a working CHILD SA.

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::time::Duration;

use hometun_ike::endpoint::Output;
use sim_support::*;

fn pki_with_client(validity: Validity) -> Pki {
    let mut pki = Pki::new(&rcgen::PKCS_ED25519);
    pki.client = pki.ca.leaf(CLIENT_NAME, 200, validity);
    pki
}

/// Finding: an expired certificate kept its tunnel forever (rekeys do not check it again). The
/// server cuts the home at the moment its certificate expires, with a DELETE and one line that
/// says why; the home cannot come back with it.
#[test]
fn the_server_cuts_a_home_when_its_certificate_expires() {
    // The simulation's wall clock starts at 2028-01-01 00:00 UTC; the home's certificate
    // ends a day later.
    let pki = pki_with_client(Validity::Until2028 { month: 1, day: 2 });
    let mut pair = Pair::with_pki(Setup::default(), pki);
    pair.connect();
    pair.advance(Duration::from_secs(86_400 - 60));
    assert!(
        pair.server.peer_downs().is_empty(),
        "still valid: {:?}",
        pair.server.peer_downs()
    );
    assert_eq!(pair.server.forwarder.installed.len(), 1);
    pair.advance(Duration::from_secs(61));
    let downs = pair.server.peer_downs();
    assert_eq!(downs.len(), 1, "{downs:?}");
    assert!(
        downs[0].contains("its certificate expired (2028-01-02 00:00:00 UTC)"),
        "{downs:?}"
    );
    assert!(pair.server.forwarder.installed.is_empty());
    // The home saw the DELETE and tries again, and is refused for its expired certificate.
    pair.advance(Duration::from_secs(30));
    assert!(
        pair.client
            .peer_downs()
            .iter()
            .any(|d| d.contains("deleted by the peer"))
    );
    assert!(
        pair.server.refusals().iter().any(|r| r.contains("expired")),
        "{:?}",
        pair.server.refusals()
    );
    assert_eq!(pair.server.peer_ups(), 1);
}

/// The home checks the server's certificate the same way.
#[test]
fn the_home_closes_its_tunnel_when_the_servers_certificate_expires() {
    let mut pki = Pki::new(&rcgen::PKCS_ED25519);
    pki.server = pki
        .ca
        .server_leaf(SERVER_NAME, 201, Validity::Until2028 { month: 1, day: 2 });
    let mut pair = Pair::with_pki(Setup::default(), pki);
    pair.connect();
    pair.advance(Duration::from_secs(86_401));
    assert!(
        pair.client
            .peer_downs()
            .iter()
            .any(|d| d.contains("its certificate expired")),
        "{:?}",
        pair.client.peer_downs()
    );
}

/// A renewed certificate (a reload with a new chain and key): the home makes a new IKE SA with
/// it before the old one goes. The server takes it as a re-authentication: one peer up, no
/// peer down, the old IKE SA deleted by the home, and a working pair installed on both sides
/// at every moment.
#[test]
fn a_renewed_certificate_reauthenticates_make_before_break() {
    let mut pair = Pair::new(Setup::default());
    pair.connect();
    let old_spis: Vec<u32> = pair.server.forwarder.installed.keys().copied().collect();
    // Renewal: same name, new key and certificate (serial 300).
    pair.renew_client_certificate(300);
    for _ in 0..40 {
        pair.advance(Duration::from_millis(50));
        assert!(
            !pair.client.forwarder.installed.is_empty()
                && !pair.server.forwarder.installed.is_empty(),
            "a moment without a CHILD SA"
        );
    }
    pair.advance(Duration::from_secs(5));
    assert!(
        pair.server.peer_downs().is_empty(),
        "{:?}",
        pair.server.peer_downs()
    );
    assert!(
        pair.client.peer_downs().is_empty(),
        "{:?}",
        pair.client.peer_downs()
    );
    let reauth = pair
        .server
        .outputs
        .iter()
        .filter(|(_, o)| {
            matches!(
                o,
                Output::PeerUp {
                    reauthenticated: true,
                    ..
                }
            )
        })
        .count();
    assert_eq!(reauth, 1);
    // Only the new pair remains, on both sides, and the server holds one IKE SA again.
    pair.assert_matching_pairs();
    assert_eq!(pair.server.forwarder.installed.len(), 1);
    assert!(
        !old_spis
            .iter()
            .any(|s| pair.server.forwarder.installed.contains_key(s))
    );
    // The old IKE SA lingers on the server only to answer a retransmitted DELETE.
    pair.advance(Duration::from_secs(20));
    assert_eq!(pair.server.endpoint.counters().ike_sas, 1);
    assert_eq!(pair.client.endpoint.counters().ike_sas, 1);
    // The new IKE SA was authenticated with the new certificate.
    let status = pair.server.endpoint.status(pair.now());
    assert_eq!(status.len(), 1);
    assert!(pair.esp(true) && pair.esp(false));
}

/// Finding I9, at expiry: a replaced IKE SA (the home re-authenticated with a renewed
/// certificate but never deleted the old one) kept its pairs past the old certificate's
/// notAfter, until its wait for the DELETE ran out. Now they go at the notAfter.
#[test]
fn a_replaced_ike_sa_the_home_never_deleted_loses_its_pairs_when_its_certificate_expires() {
    let pki = pki_with_client(Validity::Until2028 { month: 1, day: 2 });
    let mut pair = Pair::with_pki(Setup::default(), pki);
    pair.connect();
    pair.advance(Duration::from_secs(86_400 - 20));
    pair.home_never_deletes();
    pair.renew_client_certificate(300);
    pair.advance(Duration::from_secs(2));
    assert_eq!(pair.server.endpoint.counters().ike_sas, 2);
    assert_eq!(pair.server.forwarder.installed.len(), 2);
    // 5 s past the old certificate's notAfter, well within the wait for a DELETE.
    pair.advance(Duration::from_secs(23));
    assert_eq!(
        pair.server.forwarder.installed.len(),
        1,
        "the replaced IKE SA's pair outlived its certificate"
    );
    assert_eq!(pair.server.endpoint.counters().ike_sas, 1);
    assert!(
        pair.server.peer_downs().is_empty(),
        "{:?}",
        pair.server.peer_downs()
    );
    assert!(pair.esp(true) && pair.esp(false));
}
