//! A map the data threads read without a lock and the control path changes by copy on write,
//! one shard at a time: a new snapshot shares every shard but the one that changed, so an
//! install costs a shard's worth of copying, not the whole SAD's (a server holds a pair per
//! home; docs/ARCHITECTURE.md, "The SA database").

use std::hash::{BuildHasher, BuildHasherDefault, Hash};
use std::sync::Arc;

use super::key_hash::{KeyHasher, KeyMap};

/// Shards per map: a change copies about 1/64 of the entries.
const SHARDS: usize = 64;

/// A map from `K` to `V` in [`SHARDS`] shards, each shared between snapshots until changed.
#[derive(Debug)]
pub struct Shards<K, V> {
    shards: Vec<Arc<KeyMap<K, V>>>,
}

impl<K, V> Default for Shards<K, V> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Arc::new(KeyMap::default())).collect(),
        }
    }
}

impl<K, V> Clone for Shards<K, V> {
    /// Shares every shard (a reference count each).
    fn clone(&self) -> Self {
        Self {
            shards: self.shards.clone(),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Shards<K, V> {
    /// The shard of `key`: bits of its hash that the shard's own table does not use for its
    /// buckets (the low bits) or its tags (the top seven).
    fn shard(key: &K) -> usize {
        let hash = BuildHasherDefault::<KeyHasher>::default().hash_one(key);
        (hash >> 40) as usize % SHARDS
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.shards[Self::shard(key)].get(key)
    }

    /// Puts `value` under `key`; the shard is copied first if a snapshot shares it.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        Arc::make_mut(&mut self.shards[Self::shard(&key)]).insert(key, value)
    }

    /// Takes `key` out; the shard is copied first if a snapshot shares it.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let shard = &mut self.shards[Self::shard(key)];
        if !shard.contains_key(key) {
            return None;
        }
        Arc::make_mut(shard).remove(key)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.shards.iter().flat_map(|shard| shard.values())
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|shard| shard.is_empty())
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
        // Every shard the three changes did not touch is still the snapshot's.
        let shared = map
            .shards
            .iter()
            .zip(&snapshot.shards)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert!(shared >= SHARDS - 3, "{shared} of {SHARDS} shards shared");
    }

    #[test]
    fn keys_spread_over_the_shards() {
        let mut map: Shards<u32, ()> = Shards::default();
        for key in 0..6400u32 {
            // SPIs are random; prefixes differ in their high bits: both kinds spread.
            map.insert(key.wrapping_mul(0x9e37_79b9), ());
        }
        let largest = map.shards.iter().map(|s| s.len()).max().unwrap();
        assert!(largest < 200, "the largest shard holds {largest} of 6400");
        assert!(map.remove(&12345).is_none() && !map.is_empty());
        // The /64s of one pool, masked as the outbound table keys them.
        let mut prefixes: Shards<u128, ()> = Shards::default();
        for i in 0..6400u128 {
            prefixes.insert((0x2001_0db8_0100u128 << 80) | (i << 64), ());
        }
        let largest = prefixes.shards.iter().map(|s| s.len()).max().unwrap();
        assert!(
            largest < 200,
            "the largest shard holds {largest} of 6400 prefixes"
        );
    }
}
