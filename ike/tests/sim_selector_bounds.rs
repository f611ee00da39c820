//! Finding of the deep fuzz targets: a traffic selector that is an address range, not a prefix,
//! narrows to many prefixes (range [a+1, b-1] inside a /64 is about 120 of them), and each
//! prefix of an installed pair is a route and an outbound table entry in the forwarder. A peer
//! that asked for a few such ranges made us install hundreds of routes per pair, and an answer
//! listing them all no longer fitted in an IKE message (the request then went unanswered). At
//! most 16 prefixes per side are taken; more is TS_UNACCEPTABLE, like none.

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use hometun_ike::wire::{AddressRange, ExchangeType, Payload, TrafficSelector, TrafficSelectors};
use sim_support::*;

/// `count` disjoint ranges inside 2001:db8:1::/64 whose ends are not prefix-aligned: each
/// covers about 2 x 50 prefixes.
fn odd_ranges(count: u16) -> TrafficSelectors {
    let base = u128::from("2001:db8:1::".parse::<Ipv6Addr>().unwrap());
    TrafficSelectors::new(
        (0..count)
            .map(|k| {
                let block = base | (u128::from(k) << 56);
                TrafficSelector::Address(AddressRange::new(
                    IpAddr::V6(Ipv6Addr::from(block + 1)),
                    IpAddr::V6(Ipv6Addr::from(block + (1 << 55) - 2)),
                ))
            })
            .collect(),
    )
}

fn most_prefixes(node: &Node) -> usize {
    node.forwarder
        .installs()
        .iter()
        .map(|sa| sa.local_ts.len().max(sa.remote_ts.len()))
        .max()
        .unwrap_or(0)
}

/// A home whose CHILD SA rekey asks for 8 odd ranges of its prefix: the server installs no pair
/// with hundreds of prefixes, and answers (TS_UNACCEPTABLE) instead of going silent.
#[test]
fn a_home_asking_for_odd_ranges_does_not_make_the_server_install_hundreds_of_routes() {
    let mut pair = Pair::new(Setup::default());
    pair.connect();
    pair.client.tamper(|header, payloads| {
        if header.exchange_type == ExchangeType::CREATE_CHILD_SA && !header.flags.response() {
            for p in payloads.iter_mut() {
                if let Payload::TsI(t) = p {
                    *t = odd_ranges(8);
                }
            }
        }
    });
    let spi = *pair.client.forwarder.installed.keys().next().unwrap();
    pair.soft_limit(true, spi);
    pair.advance(Duration::from_secs(1));
    let most = most_prefixes(&pair.server);
    assert!(
        most <= 16,
        "the server installed a pair with {most} prefixes"
    );
    assert!(
        pair.count(ExchangeType::CREATE_CHILD_SA, true) >= 1,
        "the rekey request went unanswered"
    );
}

/// The same in IKE_AUTH: the server refuses the odd ranges instead of installing them.
#[test]
fn odd_ranges_in_ike_auth_are_refused() {
    let mut pair = Pair::new(Setup::default());
    pair.client.tamper(|header, payloads| {
        if header.exchange_type == ExchangeType::IKE_AUTH && !header.flags.response() {
            for p in payloads.iter_mut() {
                if let Payload::TsI(t) = p {
                    *t = odd_ranges(8);
                }
            }
        }
    });
    pair.advance(Duration::from_secs(2));
    let most = most_prefixes(&pair.server);
    assert!(
        most <= 16,
        "the server installed a pair with {most} prefixes"
    );
}

/// A server answering IKE_AUTH with odd ranges as TSr (inside ::/0, which the home proposed):
/// the home does not install hundreds of routes either.
#[test]
fn a_server_answering_with_odd_ranges_is_refused_by_the_home() {
    let mut pair = Pair::new(Setup::default());
    pair.server.tamper(|header, payloads| {
        if header.exchange_type == ExchangeType::IKE_AUTH && header.flags.response() {
            for p in payloads.iter_mut() {
                if let Payload::TsR(t) = p {
                    *t = odd_ranges(8);
                }
            }
        }
    });
    pair.advance(Duration::from_secs(2));
    let most = most_prefixes(&pair.client);
    assert!(most <= 16, "the home installed a pair with {most} prefixes");
}
