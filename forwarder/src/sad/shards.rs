//! A map the data threads read without a lock and the control path changes by copy on write,
//! one shard at a time: a new snapshot shares every shard but the one that changed, so an
//! install costs a shard's worth of copying, not the whole SAD's (a server holds a pair per
//! home; docs/ARCHITECTURE.md, "The SA database").

use std::hash::{BuildHasher, BuildHasherDefault, Hash};
use std::sync::Arc;

use super::key_hash::{KeyHasher, KeyMap};

/// Shards per group, and groups per map: 64 shards, so a change copies about 1/64 of the
/// entries, held in two levels so that a snapshot copies 8 references per map, not 64, and a
/// change another 8 for the group of its shard (a snapshot is published per install and per
/// delete, and three or more maps change with each; bench/README.md, "handshakes.sh").
const GROUP: usize = 8;
const SHARDS: usize = GROUP * GROUP;

type Group<K, V> = [Arc<KeyMap<K, V>>; GROUP];

/// A map from `K` to `V` in [`SHARDS`] shards, each shared between snapshots until changed.
#[derive(Debug)]
pub struct Shards<K, V> {
    groups: [Arc<Group<K, V>>; GROUP],
}

impl<K, V> Default for Shards<K, V> {
    fn default() -> Self {
        Self {
            groups: std::array::from_fn(|_| {
                Arc::new(std::array::from_fn(|_| Arc::new(KeyMap::default())))
            }),
        }
    }
}

impl<K, V> Clone for Shards<K, V> {
    /// Shares every group (a reference count each).
    fn clone(&self) -> Self {
        Self {
            groups: self.groups.clone(),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Shards<K, V> {
    /// The group and the shard in it of `key`: bits of its hash that the shard's own table
    /// does not use for its buckets (the low bits) or its tags (the top seven).
    fn shard(key: &K) -> (usize, usize) {
        let hash = BuildHasherDefault::<KeyHasher>::default().hash_one(key);
        let shard = (hash >> 40) as usize % SHARDS;
        (shard / GROUP, shard % GROUP)
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        let (group, shard) = Self::shard(key);
        self.groups[group][shard].get(key)
    }

    /// The shard of `key`, to change: it and its group are copied first if a snapshot shares
    /// them.
    fn shard_mut(&mut self, group: usize, shard: usize) -> &mut KeyMap<K, V> {
        Arc::make_mut(&mut Arc::make_mut(&mut self.groups[group])[shard])
    }

    /// Puts `value` under `key`.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let (group, shard) = Self::shard(&key);
        self.shard_mut(group, shard).insert(key, value)
    }

    /// Takes `key` out (nothing is copied when it is not there).
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (group, shard) = Self::shard(key);
        if !self.groups[group][shard].contains_key(key) {
            return None;
        }
        self.shard_mut(group, shard).remove(key)
    }

    fn shards(&self) -> impl Iterator<Item = &Arc<KeyMap<K, V>>> {
        self.groups.iter().flat_map(|group| group.iter())
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.shards().flat_map(|shard| shard.values())
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards().map(|shard| shard.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.shards().all(|shard| shard.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_copies_one_shard_and_leaves_the_snapshot_as_it_was() {
        let mut map: Shards<u32, u32> = Shards::default();
        for key in 0..1000 {
            map.insert(key, key);
        }
        let snapshot = map.clone();
        map.insert(7, 70);
        map.remove(&8);
        map.insert(9, 90);
        assert_eq!((snapshot.get(&7), snapshot.get(&8)), (Some(&7), Some(&8)));
        assert_eq!(snapshot.get(&9), Some(&9));
        assert_eq!(
            (map.get(&7), map.get(&8), map.get(&9)),
            (Some(&70), None, Some(&90))
        );
        assert_eq!((snapshot.len(), map.len()), (1000, 999));
        // Every shard the three changes did not touch is still the snapshot's, and so is
        // every group but theirs.
        let shared = map
            .shards()
            .zip(snapshot.shards())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert!(shared >= SHARDS - 3, "{shared} of {SHARDS} shards shared");
        let groups = map
            .groups
            .iter()
            .zip(&snapshot.groups)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert!(groups >= GROUP - 3, "{groups} of {GROUP} groups shared");
        // A key that is not there copies nothing.
        let before = map.clone();
        assert!(map.remove(&100_000).is_none());
        assert!(
            map.groups
                .iter()
                .zip(&before.groups)
                .all(|(a, b)| Arc::ptr_eq(a, b))
        );
    }

    #[test]
    fn keys_spread_over_the_shards() {
        let mut map: Shards<u32, ()> = Shards::default();
        for key in 0..6400u32 {
            // SPIs are random; prefixes differ in their high bits: both kinds spread.
            map.insert(key.wrapping_mul(0x9e37_79b9), ());
        }
        let largest = map.shards().map(|s| s.len()).max().unwrap();
        assert!(largest < 200, "the largest shard holds {largest} of 6400");
        assert!(map.remove(&12345).is_none() && !map.is_empty());
        // The /64s of one pool, masked as the outbound table keys them.
        let mut prefixes: Shards<u128, ()> = Shards::default();
        for i in 0..6400u128 {
            prefixes.insert((0x2001_0db8_0100u128 << 80) | (i << 64), ());
        }
        let largest = prefixes.shards().map(|s| s.len()).max().unwrap();
        assert!(
            largest < 200,
            "the largest shard holds {largest} of 6400 prefixes"
        );
    }
}
