//! The hash of the snapshot's lookup tables (SPI, masked prefix, peer), which the data threads
//! query for every packet.
//!
//! The std `HashMap`'s SipHash is keyed to resist hash flooding, which only matters when an
//! attacker chooses the keys that are stored. Here every stored key is ours (SPIs we picked,
//! prefixes from installed SAs); an attacker only chooses what is looked up, which costs it
//! at most a few extra comparisons. So a multiply-and-fold of the integer key does, at a
//! fraction of SipHash's cost.

use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`KeyHasher`].
pub type KeyMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// Hashes integer keys with one multiplication each.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

/// An odd constant with well-mixed bits (2^64 / golden ratio).
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

impl KeyHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(MIX).rotate_left(26);
    }
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        // The table takes its bucket from the low bits and its tag from the top 7: fold the
        // well-mixed high half into both.
        self.0 ^ (self.0 >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_u128(&mut self, n: u128) {
        self.add(n as u64);
        self.add((n >> 64) as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn nearby_keys_spread_over_the_table() {
        // Consecutive SPIs and /64 prefixes one apart must not pile into few buckets.
        let build = BuildHasherDefault::<KeyHasher>::default();
        for keys in [
            (0..4096u32)
                .map(|i| build.hash_one(0x1000_0000 + i))
                .collect::<Vec<_>>(),
            (0..4096u128)
                .map(|i| build.hash_one(0x2001_0db8_0100_0000u128 << 64 | i << 64))
                .collect(),
        ] {
            let mut buckets = vec![0u32; 1024];
            let mut tags = std::collections::HashSet::new();
            for hash in &keys {
                buckets[(hash & 1023) as usize] += 1;
                tags.insert(hash >> 57);
            }
            assert!(
                buckets.iter().all(|&n| n <= 16),
                "{:?}",
                buckets.iter().max()
            );
            assert_eq!(tags.len(), 128, "every 7-bit tag in use");
        }
    }

    #[test]
    fn the_maps_work_with_it() {
        let mut map: KeyMap<u128, u32> = KeyMap::default();
        for i in 0..1000u32 {
            map.insert(u128::from(i) << 64, i);
        }
        assert!((0..1000u32).all(|i| map[&(u128::from(i) << 64)] == i));
        assert_eq!(map.get(&1), None);
    }
}
