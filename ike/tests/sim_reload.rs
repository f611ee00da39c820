//! Two-peer simulation: a configuration reload (SIGHUP) keeps the SAs of peers the new settings
//! still accept, and deletes those of a peer they refuse (a CRL that revokes it, a client list
//! that no longer gives it its prefix), with a DELETE the peer sees.

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::time::Duration;

use hometun_ike::endpoint::Output;
use hometun_ike::endpoint::reload::{Reload, ResponderReload};
use hometun_ike::wire::ExchangeType;
use sim_support::*;

fn connected() -> Pair {
    let mut pair = Pair::new(Setup::default());
    pair.connect();
    pair.assert_matching_pairs();
    pair
}

/// The server's settings as `server_config` builds them from the pair's setup and PKI.
fn server_reload(pair: &Pair) -> Reload {
    let config = server_config(&pair.setup, &pair.pki);
    Reload {
        common: config.common,
        responder: Some(ResponderReload {
            authorizer: config.authorizer,
            cookie_threshold: config.cookie_threshold,
            half_open_per_source: config.half_open_per_source,
            half_open_total: config.half_open_total,
            new_ike_sas_per_identity: config.new_ike_sas_per_identity,
        }),
    }
}

fn reload_server(pair: &mut Pair, reload: Reload) -> Vec<String> {
    let now = pair.clock.now();
    let refused = pair
        .server
        .endpoint
        .reload(now, &mut pair.rng, reload)
        .unwrap();
    pair.flush();
    pair.settle();
    refused
}

fn peer_downs(node: &Node) -> Vec<String> {
    node.outputs
        .iter()
        .filter_map(|(_, o)| match o {
            Output::PeerDown { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_reload_that_still_accepts_the_peer_keeps_its_sas() {
    let mut pair = connected();
    let installed: Vec<u32> = pair.server.forwarder.installed.keys().copied().collect();
    let reload = server_reload(&pair);
    assert!(reload_server(&mut pair, reload).is_empty());
    let now: Vec<u32> = pair.server.forwarder.installed.keys().copied().collect();
    assert_eq!(now, installed);
    assert!(peer_downs(&pair.server).is_empty());
    assert!(pair.esp(true) && pair.esp(false));
}

#[test]
fn a_crl_that_revokes_the_client_deletes_its_sas_at_the_reload() {
    let mut pair = connected();
    // The client's certificate has serial 100 (sim_support::Pki::new).
    pair.pki.server_crl = Some(pair.pki.ca.crl(&[100]));
    let reload = server_reload(&pair);
    let refused = reload_server(&mut pair, reload);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].contains("revoked"), "{refused:?}");
    assert!(pair.server.forwarder.installed.is_empty());
    let downs = peer_downs(&pair.server);
    assert!(
        downs
            .iter()
            .any(|r| r.contains("no longer allowed (new CA, CRL or settings)")),
        "{downs:?}"
    );
    // The client got the DELETE and dropped its side too.
    assert!(
        pair.trace
            .iter()
            .any(|(d, _)| d.is(ExchangeType::INFORMATIONAL, false) && !d.from_client)
    );
    pair.advance(Duration::from_millis(500));
    assert!(!peer_downs(&pair.client).is_empty());
}

#[test]
fn a_client_list_without_the_clients_prefix_deletes_its_sas_at_the_reload() {
    let mut pair = connected();
    let mut reload = server_reload(&pair);
    reload.responder.as_mut().unwrap().authorizer = Box::new(StaticAuthorizer(vec![(
        CLIENT_NAME.into(),
        vec!["2001:db8:ffff::/48".parse().unwrap()],
    )]));
    let refused = reload_server(&mut pair, reload);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].contains("no longer allowed"), "{refused:?}");
    assert!(pair.server.forwarder.installed.is_empty());
}

/// Finding I9: a reload checked only the IKE SA that speaks for a home. After a
/// re-authentication the replaced IKE SA keeps its pairs until the home deletes it, and a
/// hostile home never does: its pairs carried traffic for about half a minute past the
/// revocation. Now a replaced IKE SA that the new settings touch goes with its pairs at once.
#[test]
fn a_revocation_also_removes_the_pairs_of_a_replaced_ike_sa_the_home_never_deleted() {
    let mut pair = connected();
    // The home re-authenticates with a renewed certificate (serial 300) and never deletes
    // its old IKE SA, nor anything else.
    pair.home_never_deletes();
    pair.renew_client_certificate(300);
    pair.advance(Duration::from_secs(2));
    assert_eq!(pair.server.endpoint.counters().ike_sas, 2);
    let installed = pair.server.forwarder.installed.len();
    assert!(
        installed >= 2,
        "{installed} pairs: both IKE SAs hold theirs"
    );

    // Both certificates revoked: nothing of the home may stay installed.
    pair.pki.server_crl = Some(pair.pki.ca.crl(&[100, 300]));
    let reload = server_reload(&pair);
    let refused = reload_server(&mut pair, reload);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        pair.server.forwarder.installed.is_empty(),
        "still installed after the revocation: {:?}",
        pair.server.forwarder.installed.keys()
    );
    assert_eq!(pair.server.endpoint.counters().ike_sas, 0);
}
