//! Two-peer simulation: a tunnel never goes dark while it looks up. A refused or failed CHILD SA
//! rekey is tried again with backoff, adjusted to what the peer asked for; a pair that reaches
//! its hard limit before a successor is shown as expired, counted, deleted, and the tunnel is
//! re-established (the client) or closed so that the client re-establishes it (the server).

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hometun_control::{Direction, Event, LimitKind, PeerId, Spi};
use hometun_ike::endpoint::reload::{Reload, ResponderReload};
use hometun_ike::settings::IkeRekeyPolicy;
use hometun_ike::wire::{ExchangeType, NotifyType, Payload, ProtocolId, TransformType};
use sim_support::*;

fn connected(setup: Setup) -> Pair {
    let mut pair = Pair::new(setup);
    pair.connect();
    pair.assert_matching_pairs();
    pair
}

fn newest(node: &Node) -> u32 {
    *node.forwarder.order.last().unwrap()
}

fn hard_limit(pair: &mut Pair, at_client: bool, spi_in: u32) {
    pair.event(
        at_client,
        Event::HardLimit {
            peer: PeerId(1),
            spi_in: Spi(spi_in),
            direction: Direction::Outbound,
            kind: LimitKind::Bytes,
        },
    );
}

/// The client asks for PFS with X25519 only; the server wants P-256 or no PFS: every rekey
/// is refused until the server's configuration changes.
fn mismatched() -> Setup {
    Setup {
        client_esp: vec!["aes128gcm16-x25519"],
        server_esp: vec!["aes128gcm16-ecp256"],
        ike_rekey: IkeRekeyPolicy {
            after_child_rekeys: 0,
            ..IkeRekeyPolicy::default()
        },
        ..Setup::default()
    }
}

fn child_rekey_requests(pair: &Pair, from_client: bool) -> Vec<Duration> {
    pair.trace
        .iter()
        .filter(|(d, _)| d.from_client == from_client && d.is(ExchangeType::CREATE_CHILD_SA, false))
        .map(|(d, _)| d.deliver_at)
        .collect()
}

/// The server's ESP proposals become `esp` (an operator's edit and SIGHUP).
fn reload_server_esp(pair: &mut Pair, esp: &str) {
    let mut config = server_config(&pair.setup, &pair.pki);
    config.common.esp_proposals = vec![hometun_ike::proposal::EspProposal::parse(esp).unwrap()];
    let now = pair.now();
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
}

/// Whether each CHILD SA rekey request a node sent carried a KE payload, in order.
type KeSeen = Arc<Mutex<Vec<bool>>>;

/// Records the KE of the node's CHILD SA rekey requests; with `pfs_only_on_the_wire`, a
/// request with a KE also loses the D-H transform NONE of its proposals, so that it reads
/// as PFS-only: a responder that allows no PFS then refuses it with NO_PROPOSAL_CHOSEN, as
/// a peer does that will not take a KE-carrying rekey (hometun's own responder would accept
/// the NONE alternative and never refuse).
fn watch_rekey_requests(node: &mut Node, pfs_only_on_the_wire: bool) -> KeSeen {
    let seen: KeSeen = Arc::default();
    let log = seen.clone();
    node.tamper(move |header, payloads| {
        let rekey = payloads
            .iter()
            .any(|p| matches!(p, Payload::Notify(n) if n.notify_type == NotifyType::REKEY_SA));
        if header.exchange_type != ExchangeType::CREATE_CHILD_SA
            || header.flags.response()
            || !rekey
        {
            return;
        }
        let ke = payloads.iter().any(|p| matches!(p, Payload::Ke(_)));
        log.lock().unwrap().push(ke);
        if ke && pfs_only_on_the_wire {
            for payload in payloads.iter_mut() {
                if let Payload::Sa(sa) = payload {
                    for proposal in &mut sa.proposals {
                        proposal.transforms.retain(|t| {
                            t.transform_type != TransformType::DH || t.transform_id != 0
                        });
                    }
                }
            }
        }
    });
    seen
}

/// The ESP SPIs of the DELETE payloads a node sends, in order.
fn watch_esp_deletes(node: &mut Node) -> Arc<Mutex<Vec<u32>>> {
    let seen: Arc<Mutex<Vec<u32>>> = Arc::default();
    let log = seen.clone();
    node.tamper(move |_, payloads| {
        for payload in payloads.iter() {
            if let Payload::Delete(d) = payload
                && d.protocol == ProtocolId::ESP
            {
                for spi in &d.spis {
                    let spi = <[u8; 4]>::try_from(spi.as_slice()).unwrap();
                    log.lock().unwrap().push(u32::from_be_bytes(spi));
                }
            }
        }
    });
    seen
}

#[test]
fn a_refused_rekey_is_tried_again_with_backoff_until_the_peer_agrees() {
    let mut pair = connected(mismatched());
    let c = newest(&pair.client);
    pair.soft_limit(true, c);
    pair.advance(Duration::from_secs(20));
    let tries = child_rekey_requests(&pair, true);
    assert!(tries.len() >= 4, "{tries:?}");
    // Each wait at least as long as the one before (backoff), none shorter than a second.
    let gaps: Vec<Duration> = tries.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "{gaps:?}");
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(900)),
        "{gaps:?}"
    );
    assert_eq!(pair.client.forwarder.installs().len(), 1);
    let failed = pair.client.endpoint.counters().child_rekeys_failed;
    assert_eq!(failed as usize, tries.len());
    // The old pair still carries traffic meanwhile, and status says it is being rekeyed.
    assert!(pair.esp(true) && pair.esp(false));
    let status = pair.client.endpoint.status(pair.now());
    assert_eq!(status[0].children[0].state, "rekeying");

    // The server's operator fixes its proposals: the next try succeeds.
    reload_server_esp(&mut pair, "aes128gcm16-x25519");
    pair.advance(Duration::from_secs(40));
    assert_eq!(pair.client.forwarder.installs().len(), 2);
    assert!(pair.esp(true));
    pair.advance(Duration::from_secs(15));
    pair.assert_matching_pairs();
    assert_eq!(pair.client.endpoint.counters().child_rekeys, 1);
}

#[test]
fn a_peer_asking_for_another_group_gets_it_at_once() {
    let mut pair = connected(Setup {
        client_esp: vec!["aes128gcm16-x25519-ecp256"],
        server_esp: vec!["aes128gcm16-ecp256"],
        ..mismatched()
    });
    let c = newest(&pair.client);
    pair.soft_limit(true, c);
    pair.settle();
    assert_eq!(
        child_rekey_requests(&pair, true).len(),
        2,
        "x25519, then ecp256"
    );
    assert_eq!(pair.client.forwarder.installs().len(), 2);
    assert_eq!(pair.client.endpoint.counters().child_rekeys_failed, 0);
}

#[test]
fn a_peer_refusing_pfs_gets_a_rekey_without_when_our_proposals_allow_it() {
    let mut pair = connected(Setup {
        client_esp: vec!["aes128gcm16-x25519-modpnone"],
        server_esp: vec!["aes128gcm16"],
        ..mismatched()
    });
    // The server's own rekey (no KE) is taken by the client...
    let s = newest(&pair.server);
    pair.soft_limit(false, s);
    pair.settle();
    assert_eq!(pair.server.forwarder.installs().len(), 2);
}

/// The client offers X25519 or no PFS; the server allows no PFS only and refuses a rekey that
/// carries a KE (NO_PROPOSAL_CHOSEN): the client asks again at once without a KE, and that
/// rekey makes a new pair on both sides. The next rekey asks for PFS again.
#[test]
fn a_rekey_refused_for_its_ke_is_asked_again_at_once_without_pfs() {
    let mut pair = connected(Setup {
        client_esp: vec!["aes128gcm16-x25519-modpnone"],
        server_esp: vec!["aes128gcm16"],
        ..mismatched()
    });
    let requests = watch_rekey_requests(&mut pair.client, true);
    let c = newest(&pair.client);
    pair.soft_limit(true, c);
    pair.settle();
    assert_eq!(
        *requests.lock().unwrap(),
        vec![true, false],
        "with KE, then without"
    );
    let tries = child_rekey_requests(&pair, true);
    assert!(
        tries[1] - tries[0] < Duration::from_millis(100),
        "{tries:?}"
    );
    assert_eq!(pair.client.forwarder.installs().len(), 2);
    assert_eq!(pair.client.endpoint.counters().child_rekeys, 1);
    assert_eq!(pair.client.endpoint.counters().child_rekeys_failed, 0);
    let fresh = newest(&pair.client);
    pair.advance(Duration::from_secs(15));
    pair.assert_matching_pairs();
    assert!(!pair.client.forwarder.installed.contains_key(&c));
    assert!(pair.esp(true) && pair.esp(false));
    let status = pair.client.endpoint.status(pair.now());
    assert_eq!(status[0].children.len(), 1);
    assert_eq!(status[0].children[0].proposal, "aes128gcm16");
    // The fallback held for one rekey: the next one asks for PFS first again.
    pair.soft_limit(true, fresh);
    pair.settle();
    assert_eq!(
        *requests.lock().unwrap(),
        vec![true, false, true, false],
        "the next rekey starts from the configured proposals"
    );
}

/// A peer refuses the rekey with a KE and the one without: each round of the backoff starts
/// again from the configured proposals (PFS first, then at once without), so a peer whose
/// operator then allows PFS gets it; a client that stayed without PFS for good would never
/// rekey with such a peer again.
#[test]
fn after_a_refused_rekey_without_pfs_the_next_try_asks_for_pfs_again() {
    let mut pair = connected(Setup {
        client_esp: vec!["aes128gcm16-x25519-modpnone"],
        server_esp: vec!["aes128gcm16-ecp256"],
        ..mismatched()
    });
    let requests = watch_rekey_requests(&mut pair.client, false);
    let c = newest(&pair.client);
    pair.soft_limit(true, c);
    pair.advance(Duration::from_secs(20));
    let seen = requests.lock().unwrap().clone();
    // Each round starts with a KE; only a refusal of that is followed at once by a try
    // without (a TEMPORARY_FAILURE, which the server answers to a peer rekeying this often,
    // is not a refusal of PFS). Never two tries without PFS in a row.
    assert!(seen[0], "{seen:?}");
    assert!(!seen.windows(2).any(|w| w == [false, false]), "{seen:?}");
    assert!(seen.iter().filter(|ke| !**ke).count() >= 2, "{seen:?}");
    assert!(seen.iter().filter(|ke| **ke).count() >= 3, "{seen:?}");
    // The rounds back off.
    let tries = child_rekey_requests(&pair, true);
    assert_eq!(tries.len(), seen.len());
    let starts: Vec<Duration> = tries
        .iter()
        .zip(&seen)
        .filter(|(_, ke)| **ke)
        .map(|(t, _)| *t)
        .collect();
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "{gaps:?}");
    assert_eq!(pair.client.forwarder.installs().len(), 1);
    assert_eq!(
        pair.client.endpoint.status(pair.now())[0].children[0].state,
        "rekeying"
    );

    // The server's operator moves to X25519 with PFS only: the next round's first try works.
    reload_server_esp(&mut pair, "aes128gcm16-x25519");
    pair.advance(Duration::from_secs(40));
    assert_eq!(
        pair.client.forwarder.installs().len(),
        2,
        "{:?}",
        requests.lock().unwrap()
    );
    assert_eq!(pair.client.endpoint.counters().child_rekeys, 1);
    let status = pair.client.endpoint.status(pair.now());
    assert!(
        status[0]
            .children
            .iter()
            .any(|c| c.proposal == "aes128gcm16-x25519" && c.state == "active"),
        "{:?}",
        status[0].children
    );
    pair.advance(Duration::from_secs(15));
    pair.assert_matching_pairs();
}

/// The client's pair reaches its hard limit while its rekeys are refused: status shows it
/// expired at once (never an up peer with no working pair), the counters count it, and the
/// client re-establishes the IKE SA (IKE_AUTH needs no PFS), which gives a new working pair.
#[test]
fn a_hard_limit_before_a_rekey_expires_the_pair_and_the_client_reestablishes() {
    let mut pair = connected(mismatched());
    let deletes = watch_esp_deletes(&mut pair.client);
    let c = newest(&pair.client);
    pair.soft_limit(true, c);
    pair.advance(Duration::from_secs(5));
    hard_limit(&mut pair, true, c);
    // Before any answer: the pair is shown as expired.
    let status = pair.client.endpoint.status(pair.now());
    assert_eq!(status[0].children[0].state, "expired");
    assert_eq!(pair.client.endpoint.counters().child_sas_expired, 1);
    pair.advance(Duration::from_secs(3));
    // A new IKE SA with a new pair on both sides; the old ones are gone.
    assert_eq!(pair.client.peer_ups(), 2, "{:?}", pair.client.outputs);
    pair.advance(Duration::from_secs(20));
    pair.assert_matching_pairs();
    assert_eq!(pair.client.forwarder.installed.len(), 1);
    assert!(!pair.client.forwarder.installed.contains_key(&c));
    // The peer was told: a DELETE named the expired pair (the server dropped its side).
    assert_eq!(*deletes.lock().unwrap(), vec![c]);
    assert!(pair.esp(true) && pair.esp(false));
    assert_eq!(pair.client.endpoint.counters().ike_sas, 1);
    assert_eq!(pair.server.endpoint.counters().ike_sas, 1);
    let status = pair.client.endpoint.status(pair.now());
    assert_eq!(status[0].children[0].state, "active");
}

/// The same on the server: it deletes the expired pair and closes the IKE SA; the client sees
/// its tunnel gone and connects again at once.
#[test]
fn a_hard_limit_on_the_server_closes_the_ike_sa_and_the_client_reconnects() {
    let mut pair = connected(Setup {
        client_esp: vec!["aes128gcm16-x25519"],
        server_esp: vec!["aes128gcm16"],
        ..mismatched()
    });
    let s = newest(&pair.server);
    pair.soft_limit(false, s);
    pair.advance(Duration::from_secs(3));
    assert_eq!(pair.server.forwarder.installs().len(), 1, "refused: no PFS");
    let cut = pair.clock.offset;
    hard_limit(&mut pair, false, s);
    pair.advance(Duration::from_secs(10));
    assert_eq!(pair.server.endpoint.counters().child_sas_expired, 1);
    assert_eq!(pair.client.peer_ups(), 2, "{:?}", pair.client.outputs);
    let back = pair
        .client
        .outputs
        .iter()
        .filter(|(_, o)| matches!(o, hometun_ike::endpoint::Output::PeerUp { .. }))
        .map(|(t, _)| *t)
        .next_back()
        .unwrap();
    assert!(
        back - cut < Duration::from_secs(3),
        "back {:?} after the hard limit",
        back - cut
    );
    pair.assert_matching_pairs();
    assert!(pair.esp(true) && pair.esp(false));
}

/// A pair that runs out of sequence numbers is treated like a hard limit.
#[test]
fn sequence_exhaustion_is_a_hard_limit() {
    let mut pair = connected(mismatched());
    let c = newest(&pair.client);
    pair.event(
        true,
        Event::SeqExhausted {
            peer: PeerId(1),
            spi_in: Spi(c),
        },
    );
    assert_eq!(pair.client.endpoint.counters().child_sas_expired, 1);
    pair.advance(Duration::from_secs(5));
    assert_eq!(pair.client.peer_ups(), 2);
}

/// The forwarder refuses to install the successor of a rekey (it answers every Install): IKE
/// hears of it, drops the pair on both sides, keeps the working pair and tries again later.
/// IKE and the forwarder never disagree about which pairs exist.
#[test]
fn a_refused_install_is_undone_on_both_sides_and_the_rekey_tried_again() {
    let mut pair = connected(Setup {
        ike_rekey: IkeRekeyPolicy {
            after_child_rekeys: 0,
            ..IkeRekeyPolicy::default()
        },
        ..Setup::default()
    });
    let c = newest(&pair.client);
    pair.client.forwarder.refuse_installs = 1;
    pair.soft_limit(true, c);
    pair.settle();
    assert_eq!(pair.client.endpoint.counters().installs_refused, 1);
    // The server dropped the pair its answer made; the old pair carries on both sides.
    pair.assert_matching_pairs();
    assert!(pair.client.forwarder.installed.contains_key(&c));
    assert!(pair.esp(true) && pair.esp(false));
    // The retry succeeds.
    pair.advance(Duration::from_secs(5));
    assert_eq!(pair.client.endpoint.counters().child_rekeys, 1);
    assert!(pair.esp(true));
    pair.advance(Duration::from_secs(15));
    pair.assert_matching_pairs();
    assert!(!pair.client.forwarder.installed.contains_key(&c));
}

/// The forwarder refuses the first pair of an IKE SA: without a working pair the client
/// re-establishes the tunnel.
#[test]
fn a_refused_first_install_leads_to_a_new_ike_sa() {
    let mut pair = Pair::new(Setup::default());
    pair.client.forwarder.refuse_installs = 1;
    pair.advance(Duration::from_secs(5));
    assert_eq!(pair.client.endpoint.counters().installs_refused, 1);
    assert_eq!(pair.client.peer_ups(), 2);
    pair.advance(Duration::from_secs(20));
    pair.assert_matching_pairs();
    assert_eq!(pair.client.forwarder.installed.len(), 1);
    assert!(pair.esp(true) && pair.esp(false));
}

/// The replaced pair of a completed rekey reaches its hard limit (the peer, a rekey responder,
/// kept sending on it until our DELETE): it is deleted at once. It is not "expired": its
/// successor carries the traffic.
#[test]
fn a_replaced_pair_at_its_hard_limit_is_deleted_at_once_and_not_counted_as_expired() {
    let mut pair = connected(Setup {
        ike_rekey: IkeRekeyPolicy {
            after_child_rekeys: 0,
            ..IkeRekeyPolicy::default()
        },
        ..Setup::default()
    });
    let old = newest(&pair.client);
    pair.soft_limit(true, old);
    pair.settle();
    assert_eq!(pair.client.forwarder.installed.len(), 2, "old and new");
    hard_limit(&mut pair, true, old);
    // Its DELETE exchange at once, its inbound SA kept 2 s for packets in flight; without the
    // hard limit it would wait for the successor's traffic, or 10 s.
    pair.advance(Duration::from_secs(3));
    assert!(
        pair.client.forwarder.delete_index(old).is_some(),
        "the replaced pair was not deleted at its hard limit"
    );
    assert_eq!(pair.client.endpoint.counters().child_sas_expired, 0);
    assert_eq!(pair.client.peer_ups(), 1, "no new IKE SA");
    pair.advance(Duration::from_secs(5));
    pair.assert_matching_pairs();
}
