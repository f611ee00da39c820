//! The endpoint's IKE SAs by our SPI, with each SA's next deadline filed in order and each
//! established SA filed under its peer. The driver asks for the earliest deadline after every
//! event, each handshake looks for the other IKE SAs of its peer, and a server holds an SA per
//! home: none of these may visit every SA (docs/ARCHITECTURE.md, "The SA table").
//!
//! An SA's deadline and peer change only when the SA does, or (the deadline) when the
//! configuration does: whatever hands an SA out mutably marks it stale, and
//! [`SaTable::refile`] files the stale ones again before the index is read.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Instant;

use hometun_control::PeerId;

use super::Sa;

/// IKE SAs by our SPI, and their deadlines in order.
#[derive(Default)]
pub(super) struct SaTable {
    sas: HashMap<u64, Filed>,
    /// (deadline, SPI) of every SA with a deadline, as last filed.
    by_deadline: BTreeSet<(Instant, u64)>,
    /// (peer, SPI) of every established SA, as last filed.
    by_peer: BTreeSet<(PeerId, u64)>,
    /// SAs handed out mutably (or new) since they were filed.
    stale: HashSet<u64>,
}

struct Filed {
    sa: Sa,
    /// The deadline this SA has in `by_deadline`.
    deadline: Option<Instant>,
    /// The peer this SA has in `by_peer`.
    peer: Option<PeerId>,
}

impl Filed {
    fn new(sa: Sa) -> Self {
        Self {
            sa,
            deadline: None,
            peer: None,
        }
    }
}

impl SaTable {
    pub(super) fn len(&self) -> usize {
        self.sas.len()
    }

    pub(super) fn get(&self, spi: &u64) -> Option<&Sa> {
        self.sas.get(spi).map(|filed| &filed.sa)
    }

    /// The SA, which may change: its deadline is filed again at the next [`SaTable::refile`].
    pub(super) fn get_mut(&mut self, spi: &u64) -> Option<&mut Sa> {
        let filed = self.sas.get_mut(spi)?;
        self.stale.insert(*spi);
        Some(&mut filed.sa)
    }

    /// Puts `sa` under `spi`, replacing (and returning) what was there.
    pub(super) fn insert(&mut self, spi: u64, sa: Sa) -> Option<Sa> {
        self.stale.insert(spi);
        match self.sas.entry(spi) {
            Entry::Occupied(mut slot) => {
                let old = std::mem::replace(slot.get_mut(), Filed::new(sa));
                unfile(&mut self.by_deadline, &mut self.by_peer, spi, &old);
                Some(old.sa)
            }
            Entry::Vacant(slot) => {
                slot.insert(Filed::new(sa));
                None
            }
        }
    }

    pub(super) fn remove(&mut self, spi: &u64) -> Option<Sa> {
        let filed = self.sas.remove(spi)?;
        unfile(&mut self.by_deadline, &mut self.by_peer, *spi, &filed);
        self.stale.remove(spi);
        Some(filed.sa)
    }

    /// Every SA with its SPI (a visit of all: for operator commands and reloads).
    pub(super) fn iter(&self) -> impl Iterator<Item = (&u64, &Sa)> {
        self.sas.iter().map(|(spi, filed)| (spi, &filed.sa))
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Sa> {
        self.sas.values().map(|filed| &filed.sa)
    }

    /// Every SA, each of which may change (all are stale afterwards: rare events only, such
    /// as the counters each second, a reload or a local address change).
    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut Sa> {
        self.stale.extend(self.sas.keys().copied());
        self.sas.values_mut().map(|filed| &mut filed.sa)
    }

    /// Every deadline must be computed again (the configuration they depend on changed).
    pub(super) fn all_stale(&mut self) {
        self.stale.extend(self.sas.keys().copied());
    }

    /// Takes every SA out.
    pub(super) fn drain(&mut self) -> Vec<(u64, Sa)> {
        self.by_deadline.clear();
        self.by_peer.clear();
        self.stale.clear();
        self.sas
            .drain()
            .map(|(spi, filed)| (spi, filed.sa))
            .collect()
    }

    /// Files the SAs that may have changed again: their deadline by `deadline_of`, their peer.
    pub(super) fn refile(&mut self, deadline_of: impl Fn(&Sa) -> Option<Instant>) {
        for spi in self.stale.drain() {
            let Some(filed) = self.sas.get_mut(&spi) else {
                continue;
            };
            let deadline = deadline_of(&filed.sa);
            refile_under(&mut self.by_deadline, &mut filed.deadline, deadline, spi);
            let peer = filed.sa.peer();
            refile_under(&mut self.by_peer, &mut filed.peer, peer, spi);
        }
    }

    /// Our SPIs of the established SAs with `peer`, in order. Only after [`SaTable::refile`].
    pub(super) fn of_peer(&self, peer: PeerId) -> Vec<u64> {
        debug_assert!(self.stale.is_empty(), "peers read before refile");
        self.by_peer
            .range((peer, 0)..=(peer, u64::MAX))
            .map(|(_, spi)| *spi)
            .collect()
    }

    /// The earliest deadline of any SA. Only after [`SaTable::refile`].
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        debug_assert!(self.stale.is_empty(), "deadlines read before refile");
        self.by_deadline.first().map(|(at, _)| *at)
    }

    /// The SAs whose deadline is `now` or earlier, by SPI. Only after [`SaTable::refile`].
    pub(super) fn due(&self, now: Instant) -> Vec<u64> {
        debug_assert!(self.stale.is_empty(), "deadlines read before refile");
        let mut due: Vec<u64> = self
            .by_deadline
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, spi)| *spi)
            .collect();
        // By SPI, as before the deadlines were filed: the order a simulation replays.
        due.sort_unstable();
        due
    }
}

/// Takes a leaving SA's entries out of the indexes.
fn unfile(
    by_deadline: &mut BTreeSet<(Instant, u64)>,
    by_peer: &mut BTreeSet<(PeerId, u64)>,
    spi: u64,
    filed: &Filed,
) {
    if let Some(at) = filed.deadline {
        by_deadline.remove(&(at, spi));
    }
    if let Some(peer) = filed.peer {
        by_peer.remove(&(peer, spi));
    }
}

/// Moves `spi` in `index` from under `filed` to under `now`.
fn refile_under<K: Ord + Copy>(
    index: &mut BTreeSet<(K, u64)>,
    filed: &mut Option<K>,
    now: Option<K>,
    spi: u64,
) {
    if *filed == now {
        return;
    }
    if let Some(old) = filed.take() {
        index.remove(&(old, spi));
    }
    if let Some(new) = now {
        index.insert((new, spi));
    }
    *filed = now;
}
