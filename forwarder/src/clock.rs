//! The forwarder's time, in one unit: [`Now`], the time since the forwarder started, read from
//! one monotonic [`Clock`] by the I/O loops only (once per batch of packets, once per turn of
//! the ticker and roaming threads) and passed down as an argument, as the IKE crate gets its
//! `Now` (docs/ARCHITECTURE.md, "The sans-IO contract"). The SAD counts lifetimes in its
//! whole seconds ([`Now::secs`]), the roaming code its timers in milliseconds
//! ([`Now::millis`]); neither reads a clock.

use std::time::{Duration, Instant};

/// A moment on the forwarder's clock: the time since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Now(Duration);

impl Now {
    /// The start of the clock.
    pub const ZERO: Now = Now(Duration::ZERO);

    /// `millis` milliseconds after the start (tests, and values kept as milliseconds).
    pub const fn from_millis(millis: u64) -> Now {
        Now(Duration::from_millis(millis))
    }

    /// `secs` seconds after the start.
    pub const fn from_secs(secs: u64) -> Now {
        Now(Duration::from_secs(secs))
    }

    /// Whole milliseconds since the start.
    pub fn millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    /// Whole seconds since the start.
    pub fn secs(self) -> u64 {
        self.0.as_secs()
    }

    /// The time from `earlier` to this moment (zero if `earlier` is later).
    pub fn since(self, earlier: Now) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

/// The one place the forwarder reads the time. Copies share the start.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock that starts now.
    pub fn start() -> Clock {
        // The I/O driver owns the clock: everything below it gets `Now` as an argument.
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        Clock { start }
    }

    /// The time now.
    pub fn now(&self) -> Now {
        #[allow(clippy::disallowed_methods)]
        let elapsed = self.start.elapsed();
        Now(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_moment_in_both_units() {
        let t = Now::from_millis(61_250);
        assert_eq!((t.secs(), t.millis()), (61, 61_250));
        assert_eq!(t.since(Now::from_secs(60)), Duration::from_millis(1250));
        assert_eq!(Now::from_secs(1).since(t), Duration::ZERO);
        let clock = Clock::start();
        assert!(clock.now() >= Now::ZERO);
    }
}
