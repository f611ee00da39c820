//! Drop counters by [`DropReason`], as atomics shared by the data threads.

use std::sync::atomic::{AtomicU64, Ordering};

use hometun_control::DropReason;

/// Every drop reason, in the order reports list them.
pub const ALL_REASONS: [DropReason; DropReason::ALL.len()] = DropReason::ALL;

fn index(reason: DropReason) -> usize {
    match reason {
        DropReason::Replay => 0,
        DropReason::TooOld => 1,
        DropReason::AuthFailed => 2,
        DropReason::IngressFilter => 3,
        DropReason::Malformed => 4,
        DropReason::NoSa => 5,
        DropReason::HardLimit => 6,
        DropReason::SeqExhausted => 7,
        DropReason::TooBig => 8,
        DropReason::OverrideNaRefused => 9,
        DropReason::LinkScoped => 10,
    }
}

/// One counter per drop reason.
#[derive(Debug, Default)]
pub struct DropCounters {
    counts: [AtomicU64; ALL_REASONS.len()],
}

impl DropCounters {
    /// Counts one drop.
    pub fn add(&self, reason: DropReason) {
        self.counts[index(reason)].fetch_add(1, Ordering::Relaxed);
    }

    /// Drops of one reason so far.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[index(reason)].load(Ordering::Relaxed)
    }

    /// The reasons with a non-zero count, for a report.
    pub fn nonzero(&self) -> Vec<(DropReason, u64)> {
        ALL_REASONS
            .iter()
            .map(|&r| (r, self.get(r)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_its_own_counter() {
        let counters = DropCounters::default();
        for (i, reason) in ALL_REASONS.iter().enumerate() {
            for _ in 0..=i {
                counters.add(*reason);
            }
        }
        for (i, reason) in ALL_REASONS.iter().enumerate() {
            assert_eq!(counters.get(*reason), i as u64 + 1);
        }
        assert_eq!(counters.nonzero().len(), ALL_REASONS.len());
    }

    #[test]
    fn report_lists_only_reasons_seen() {
        let counters = DropCounters::default();
        counters.add(DropReason::Replay);
        counters.add(DropReason::Replay);
        counters.add(DropReason::TooBig);
        assert_eq!(
            counters.nonzero(),
            vec![(DropReason::Replay, 2), (DropReason::TooBig, 1)]
        );
    }
}
