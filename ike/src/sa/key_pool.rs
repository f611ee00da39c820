//! Our Diffie-Hellman key pairs, made ahead by the crypto workers.
//!
//! A responder answers IKE_SA_INIT with its KE payload, so the key pair must exist when the
//! answer is built; made in place, it was the largest piece of crypto left on the driver's
//! task (bench/README.md, "handshakes.sh"). With crypto jobs handed out
//! ([`crate::endpoint::Endpoint::defer_crypto`]), the pool keeps a few key pairs of each group
//! in use, made by a [`CryptoJob`] whenever it runs low, and an exchange takes one. Each key
//! pair serves one exchange and is dropped (its private value wiped) with the SA that used it;
//! the private values come from the endpoint's random generator when the job is made, so the
//! workers need none. With the pool empty (the first exchanges, a job not back yet, a group
//! just asked for), the key pair is made in place as before.

use std::collections::VecDeque;

use super::crypto_job::{CryptoJob, KeyPairsJob, Work};
use crate::crypto::dh::PRIVATE_RANDOM_LEN;
use crate::crypto::{DhGroup, KeyExchange};
use crate::io::Random;

/// A job is made when a group's pool holds this many or fewer.
const LOW: usize = 8;
/// Key pairs per job.
const BATCH: usize = 8;

/// Key pairs made ahead, per group, and the jobs that make more.
#[derive(Default)]
pub(crate) struct KeyPairPool {
    /// Off unless crypto jobs are handed out.
    enabled: bool,
    ready: Vec<(DhGroup, Vec<KeyExchange>)>,
    /// Groups with a job out (one at a time each).
    refilling: Vec<DhGroup>,
    /// Jobs made and not yet handed out.
    jobs: VecDeque<Box<CryptoJob>>,
}

impl std::fmt::Debug for KeyPairPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ready: Vec<_> = self.ready.iter().map(|(g, v)| (*g, v.len())).collect();
        f.debug_struct("KeyPairPool")
            .field("enabled", &self.enabled)
            .field("ready", &ready)
            .field("refilling", &self.refilling)
            .finish_non_exhaustive()
    }
}

impl KeyPairPool {
    /// Turns the pool on or off; off, the key pairs made ahead are dropped.
    pub fn enable(&mut self, on: bool) {
        self.enabled = on;
        if !on {
            self.ready.clear();
            self.jobs.clear();
            self.refilling.clear();
        }
    }

    /// A key pair of `group` made ahead, if one is ready; asks for more when few are left.
    pub fn take(&mut self, group: DhGroup, rng: &mut dyn Random) -> Option<KeyExchange> {
        if !self.enabled {
            return None;
        }
        let ready = self.ready.iter_mut().find(|(g, _)| *g == group);
        let (taken, left) = match ready {
            Some((_, pairs)) => (pairs.pop(), pairs.len()),
            None => (None, 0),
        };
        if left <= LOW && !self.refilling.contains(&group) {
            self.refilling.push(group);
            let privates = (0..BATCH)
                .map(|_| {
                    let mut random = zeroize::Zeroizing::new([0u8; PRIVATE_RANDOM_LEN]);
                    rng.fill(random.as_mut_slice());
                    random
                })
                .collect();
            self.jobs.push_back(Box::new(CryptoJob {
                spi: 0,
                generation: 0,
                work: Work::KeyPairs(KeyPairsJob { group, privates }),
            }));
        }
        taken
    }

    /// The next job to hand out.
    pub fn poll_job(&mut self) -> Option<Box<CryptoJob>> {
        self.jobs.pop_front()
    }

    /// A job came back with its key pairs.
    pub fn refilled(&mut self, group: DhGroup, pairs: Vec<KeyExchange>) {
        self.refilling.retain(|g| *g != group);
        if !self.enabled {
            return;
        }
        match self.ready.iter_mut().find(|(g, _)| *g == group) {
            Some((_, ready)) => ready.extend(pairs),
            None => self.ready.push((group, pairs)),
        }
    }

    /// Key pairs ready, all groups.
    #[cfg(any(test, feature = "test-util"))]
    pub fn ready(&self) -> usize {
        self.ready.iter().map(|(_, pairs)| pairs.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sa::crypto_job::Finished;
    use crate::sim::SeededRandom;

    fn run(job: Box<CryptoJob>) -> (DhGroup, Vec<KeyExchange>) {
        match job.run().result {
            Finished::KeyPairs(group, pairs) => (group, pairs),
            other => panic!("not key pairs: {other:?}"),
        }
    }

    #[test]
    fn an_empty_pool_asks_once_and_serves_each_pair_once() {
        let mut rng = SeededRandom::new(1);
        let mut pool = KeyPairPool::default();
        assert!(pool.take(DhGroup::Curve25519, &mut rng).is_none());
        assert!(pool.poll_job().is_none(), "off: no job");
        pool.enable(true);
        assert!(pool.take(DhGroup::Curve25519, &mut rng).is_none());
        assert!(pool.take(DhGroup::Curve25519, &mut rng).is_none());
        let job = pool.poll_job().expect("a job for the group");
        assert!(pool.poll_job().is_none(), "one job out per group");
        let (group, pairs) = run(job);
        assert_eq!((group, pairs.len()), (DhGroup::Curve25519, BATCH));
        pool.refilled(group, pairs);
        let mut publics = std::collections::HashSet::new();
        for _ in 0..BATCH {
            let pair = pool.take(DhGroup::Curve25519, &mut rng).expect("ready");
            assert!(
                publics.insert(pair.public_ke_data().to_vec()),
                "a key pair served twice"
            );
            // Another group is asked for on its own.
            assert!(pool.take(DhGroup::Ecp256, &mut rng).is_none());
        }
        assert_eq!(pool.ready(), 0);
        // Low again: the next job went out when the pool fell to LOW.
        let mut jobs = 0;
        while let Some(job) = pool.poll_job() {
            jobs += 1;
            let (group, pairs) = run(job);
            pool.refilled(group, pairs);
        }
        assert_eq!(jobs, 2, "one more for X25519, one for P-256");
        assert_eq!(pool.ready(), 2 * BATCH);
        pool.enable(false);
        assert_eq!(pool.ready(), 0);
        assert!(pool.take(DhGroup::Curve25519, &mut rng).is_none());
    }
}
