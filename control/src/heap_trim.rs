//! Giving the heap's free memory back to the system once a burst of SA changes is over, in
//! the IKE daemon and in the forwarder, the two ends of the SA channel.
//!
//! A burst of handshakes leaves free memory inside the heap: the transient allocations of each
//! handshake and install, scattered between the long-lived ones, are freed but glibc keeps
//! the pages. With a thousand homes brought up at once that was up to a few KiB per home
//! (`bench/memory.sh 1000 35`, bench/README.md "memory.sh"). `malloc_trim(0)` returns the free
//! pages; it walks the whole heap, so it runs only once the SA channel has been quiet for a
//! while after changes, and at most once per interval: never per packet or per handshake.

use std::time::Duration;

/// How long the SA channel must be quiet after a change before the heap is trimmed.
pub const QUIET: Duration = Duration::from_secs(5);
/// The shortest time between two trims.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);

/// Decides when to trim. Times are readings of a monotonic clock (the time since any fixed
/// point), given by the caller.
#[derive(Debug, Clone, Default)]
pub struct QuietTrim {
    /// The last change not yet followed by a trim.
    pending_since: Option<Duration>,
    last_trim: Option<Duration>,
    trims: u64,
}

impl QuietTrim {
    /// A trimmer with nothing to trim yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// An SA was installed or deleted (or another change that allocates for a peer) at `now`.
    pub fn changed(&mut self, now: Duration) {
        self.pending_since = Some(now);
    }

    /// Whether to trim at `now`: changes happened, none for [`QUIET`], and the last trim was
    /// [`MIN_INTERVAL`] ago. Once it says yes, it says no until the next change.
    pub fn due(&mut self, now: Duration) -> bool {
        let Some(changed) = self.pending_since else {
            return false;
        };
        let quiet = now.saturating_sub(changed) >= QUIET;
        let spaced = self
            .last_trim
            .is_none_or(|last| now.saturating_sub(last) >= MIN_INTERVAL);
        if !(quiet && spaced) {
            return false;
        }
        self.pending_since = None;
        self.last_trim = Some(now);
        self.trims += 1;
        true
    }

    /// How often [`QuietTrim::due`] said yes.
    pub fn trims(&self) -> u64 {
        self.trims
    }

    /// [`QuietTrim::due`], and the trim itself when it is.
    pub fn trim_if_due(&mut self, now: Duration) {
        if self.due(now) {
            trim();
        }
    }
}

/// The size from which a block gets a mapping of its own, returned to the system when freed.
pub const MAP_FROM: usize = 128 * 1024;

/// Gives every block of [`MAP_FROM`] bytes or more a mapping of its own, always. glibc starts
/// there too but raises the limit to the largest such block freed: the counter report, a
/// quarter of a megabyte with a thousand pairs, asked for every second, would then stay in the
/// heap and keep its pages. Call before the first thread starts; elsewhere (musl) a no-op.
pub fn map_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; no thread is allocating yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MAP_FROM as libc::c_int);
    }
}

/// Returns the heap's free pages to the system (glibc's `malloc_trim`; elsewhere a no-op).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the allocator's own locks; it frees no block in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    #[test]
    fn nothing_changed_nothing_to_trim() {
        let mut trim = QuietTrim::new();
        assert!(!trim.due(s(0)));
        assert!(!trim.due(s(1000)));
    }

    #[test]
    fn a_burst_is_trimmed_once_it_has_been_quiet() {
        let mut trim = QuietTrim::new();
        for t in 100..110 {
            trim.changed(s(t));
            assert!(!trim.due(s(t)), "not during the burst");
        }
        assert!(!trim.due(s(113)), "4 s after the last change");
        assert!(trim.due(s(114)), "5 s after it");
        assert!(!trim.due(s(115)), "once");
        assert!(!trim.due(s(1000)), "nothing changed since");
    }

    #[test]
    fn trims_are_a_minimum_interval_apart() {
        let mut trim = QuietTrim::new();
        trim.changed(s(0));
        assert!(trim.due(s(5)));
        trim.changed(s(10));
        assert!(!trim.due(s(20)), "quiet, but 15 s after the last trim");
        assert!(!trim.due(s(64)));
        assert!(trim.due(s(65)), "60 s after the last trim");
    }
}
