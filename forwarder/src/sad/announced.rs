//! Which installed pairs announce which prefix (their remote traffic selectors), oldest first.
//! A prefix's outbound route is its newest announcer, a prefix is routed while any pair
//! announces it, and a new pair may not overlap another peer's prefixes: each of these is
//! answered here without a visit of every pair (a server holds a pair per home).

use std::collections::BTreeMap;
use std::sync::Arc;

use hometun_control::PeerId;
use ipnet::Ipv6Net;

use super::{SaPair, mask};

/// The pairs announcing each prefix.
#[derive(Debug, Default)]
pub(super) struct Announced {
    /// (masked network, length) -> the pairs announcing exactly that prefix, oldest first.
    by_prefix: BTreeMap<(u128, u8), Vec<Arc<SaPair>>>,
    /// How many announced prefixes there are of each length: where to look for one that
    /// contains another.
    lengths: BTreeMap<u8, usize>,
}

fn key(net: &Ipv6Net) -> (u128, u8) {
    let len = net.prefix_len();
    (mask(u128::from(net.network()), len), len)
}

fn prefix((network, len): (u128, u8)) -> Ipv6Net {
    Ipv6Net::new(network.into(), len).expect("an announced prefix has a valid length")
}

impl Announced {
    /// Files `pair` under each of its prefixes, as the newest announcer.
    pub(super) fn add(&mut self, pair: &Arc<SaPair>) {
        for net in pair.remote_ts() {
            let announcers = self.by_prefix.entry(key(net)).or_default();
            if announcers.is_empty() {
                *self.lengths.entry(net.prefix_len()).or_default() += 1;
            }
            if !announcers.iter().any(|p| Arc::ptr_eq(p, pair)) {
                announcers.push(pair.clone());
            }
        }
    }

    /// Takes `pair` out from under each of its prefixes.
    pub(super) fn remove(&mut self, pair: &Arc<SaPair>) {
        for net in pair.remote_ts() {
            let key = key(net);
            let Some(announcers) = self.by_prefix.get_mut(&key) else {
                continue;
            };
            announcers.retain(|p| !Arc::ptr_eq(p, pair));
            if announcers.is_empty() {
                self.by_prefix.remove(&key);
                if let Some(count) = self.lengths.get_mut(&key.1) {
                    *count -= 1;
                    if *count == 0 {
                        self.lengths.remove(&key.1);
                    }
                }
            }
        }
    }

    /// The newest pair announcing exactly `net`.
    pub(super) fn newest(&self, net: &Ipv6Net) -> Option<&Arc<SaPair>> {
        self.by_prefix.get(&key(net)).and_then(|pairs| pairs.last())
    }

    /// Whether some pair announces exactly `net`.
    pub(super) fn contains(&self, net: &Ipv6Net) -> bool {
        self.by_prefix.contains_key(&key(net))
    }

    /// Every announced prefix.
    pub(super) fn prefixes(&self) -> impl Iterator<Item = Ipv6Net> + '_ {
        self.by_prefix.keys().map(|key| prefix(*key))
    }

    /// A prefix of another peer than `peer` that overlaps `mine` (contains it or lies in it),
    /// with a pair that announces it.
    pub(super) fn overlap(&self, mine: &Ipv6Net, peer: PeerId) -> Option<(Ipv6Net, &Arc<SaPair>)> {
        let (network, len) = key(mine);
        // The prefixes within `mine` (itself included) are the keys from (its network, its
        // length) to (its last address, 128): a shorter prefix whose network lies in `mine`
        // can only start where `mine` does.
        let last = network | !mask(u128::MAX, len);
        for (key, pairs) in self.by_prefix.range((network, len)..=(last, 128)) {
            if let Some(pair) = other_peers(pairs, peer) {
                return Some((prefix(*key), pair));
            }
        }
        // The prefixes that contain `mine`: one per shorter length that is announced.
        for &shorter in self.lengths.range(..len).map(|(l, _)| l) {
            let key = (mask(network, shorter), shorter);
            if let Some(pair) = self.by_prefix.get(&key).and_then(|p| other_peers(p, peer)) {
                return Some((prefix(key), pair));
            }
        }
        None
    }
}

/// The first of `pairs` that is not `peer`'s.
fn other_peers(pairs: &[Arc<SaPair>], peer: PeerId) -> Option<&Arc<SaPair>> {
    pairs.iter().find(|p| p.peer() != peer)
}
