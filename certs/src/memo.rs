//! The results of pure functions of certificate bytes, remembered.
//!
//! A server sees the same certificates again and again: its CRL on every handshake, each home's
//! certificate on each of that home's handshakes, rekeys and reconnections. What a check or a
//! parse of the same bytes gives does not change, so a [`Memo`] keeps each result under the
//! SHA-256 of the inputs ([`digest`]). It is bounded: when full, everything is forgotten at
//! once (a server's working set is its CRLs and the certificates of the homes that connect,
//! and a full memo costs one fresh computation per entry).

use std::collections::HashMap;
use std::sync::Mutex;

use ring::digest::{Context, SHA256};

/// How many results each memo keeps.
pub const CAPACITY: usize = 4096;

/// What identifies one computation: the SHA-256 of its inputs, each length-prefixed so that no
/// two lists of inputs give the same bytes.
pub fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut context = Context::new(&SHA256);
    for part in parts {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(context.finish().as_ref());
    digest
}

/// Results by the [`digest`] of their inputs, shared by every thread.
#[derive(Debug)]
pub struct Memo<V> {
    entries: Mutex<Option<HashMap<[u8; 32], V>>>,
}

impl<V: Clone> Memo<V> {
    /// An empty memo (usable in a `static`).
    pub const fn new() -> Self {
        Memo {
            entries: Mutex::new(None),
        }
    }

    /// The result remembered under `key`.
    pub fn get(&self, key: &[u8; 32]) -> Option<V> {
        self.lock().as_ref()?.get(key).cloned()
    }

    /// Remembers `value` under `key`; a full memo first forgets everything.
    pub fn insert(&self, key: [u8; 32], value: V) {
        let mut entries = self.lock();
        let entries = entries.get_or_insert_with(HashMap::new);
        if entries.len() >= CAPACITY {
            *entries = HashMap::new();
        }
        entries.insert(key, value);
    }

    /// The result remembered under `key`, else what `compute` gives, remembered if it is a
    /// success (a failure is computed again next time).
    pub fn remember<E>(
        &self,
        key: [u8; 32],
        compute: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        if let Some(value) = self.get(&key) {
            return Ok(value);
        }
        let value = compute()?;
        self.insert(key, value.clone());
        Ok(value)
    }

    /// Forgets everything.
    pub fn clear(&self) {
        *self.lock() = None;
    }

    /// How many results are remembered.
    pub fn len(&self) -> usize {
        self.lock().as_ref().map_or(0, HashMap::len)
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A poisoned lock only means another thread panicked while holding it: every entry is
    /// still a result that was computed whole before it was inserted.
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<HashMap<[u8; 32], V>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<V: Clone> Default for Memo<V> {
    fn default() -> Self {
        Memo::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cannot_be_shifted_from_one_input_to_the_next() {
        assert_ne!(
            digest(&[b"key", b"message", b"signature"]),
            digest(&[b"ke", b"message", b"ysignature"])
        );
        assert_ne!(digest(&[b"ab"]), digest(&[b"a", b"b"]));
    }

    #[test]
    fn a_full_memo_forgets_everything_and_stays_bounded() {
        let memo = Memo::<u32>::new();
        assert!(memo.is_empty());
        for i in 0..CAPACITY as u32 {
            memo.insert(digest(&[&i.to_be_bytes()]), i);
        }
        assert_eq!(memo.len(), CAPACITY);
        assert_eq!(memo.get(&digest(&[&7u32.to_be_bytes()])), Some(7));
        memo.insert(digest(&[b"one more"]), 1);
        assert_eq!(memo.len(), 1);
        assert_eq!(memo.get(&digest(&[&7u32.to_be_bytes()])), None);
        assert_eq!(memo.get(&digest(&[b"one more"])), Some(1));
        memo.clear();
        assert!(memo.is_empty());
    }

    #[test]
    fn a_success_is_remembered_and_a_failure_computed_again() {
        let memo = Memo::<u32>::new();
        let key = digest(&[b"input"]);
        assert_eq!(memo.remember(key, || Err::<u32, &str>("bad")), Err("bad"));
        assert!(memo.is_empty());
        assert_eq!(memo.remember(key, || Ok::<u32, &str>(7)), Ok(7));
        // Remembered: the computation is not run again.
        assert_eq!(memo.remember(key, || Err::<u32, &str>("not run")), Ok(7));
    }
}
