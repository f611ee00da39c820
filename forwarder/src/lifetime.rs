//! Byte and packet lifetimes of one direction of an SA (docs/ARCHITECTURE.md, "Rekeys").
//!
//! Each direction counts on its own. Reaching a soft limit asks for a rekey once; reaching a hard
//! limit stops the direction for good and is reported once. Time limits exist only when
//! configured; the time is an argument (seconds on the forwarder's monotonic clock), never read
//! here. The counters are atomics so the data threads share one `Lifetime` without a lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hometun_control::{LimitKind, Limits};

/// What one packet did to a lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charge {
    /// Carry the packet; no limit was crossed.
    Carry,
    /// Carry the packet; it crossed a soft limit for the first time: ask for a rekey.
    CarrySoft(LimitKind),
    /// Carry the packet; it used up a hard limit exactly: nothing more after it. Report it.
    CarryHard(LimitKind),
    /// Do not carry the packet: it would exceed a hard limit, which is reported now (first time).
    DropHard(LimitKind),
    /// Do not carry the packet: the hard limit was already reported.
    Dead,
}

/// What the clock did to a lifetime (see [`Lifetime::check_time`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeCheck {
    /// Nothing to report.
    Quiet,
    /// The soft time limit was just reached.
    Soft,
    /// The hard time limit was just reached: the direction is dead from now on.
    Hard,
}

/// The lifetime state of one direction of an SA.
#[derive(Debug)]
pub struct Lifetime {
    limits: Bounds,
    installed_at: u64,
    bytes: AtomicU64,
    packets: AtomicU64,
    soft_reported: AtomicBool,
    hard_reported: AtomicBool,
}

impl Lifetime {
    /// A fresh lifetime, installed at `now` (seconds on the forwarder's clock).
    pub fn new(limits: Limits, now: u64) -> Self {
        Lifetime {
            limits: Bounds::from(limits),
            installed_at: now,
            bytes: AtomicU64::new(0),
            packets: AtomicU64::new(0),
            soft_reported: AtomicBool::new(false),
            hard_reported: AtomicBool::new(false),
        }
    }

    /// The configured limits.
    pub fn limits(&self) -> Limits {
        self.limits.to_limits()
    }

    /// Bytes charged so far (carried packets only).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Packets charged so far (carried packets only).
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// True once a hard limit was reached: the direction carries nothing more.
    pub fn is_dead(&self) -> bool {
        self.hard_reported.load(Ordering::Relaxed)
    }

    /// Charges one packet of `len` bytes and says whether it may be carried.
    pub fn charge(&self, len: u64) -> Charge {
        if self.is_dead() {
            return Charge::Dead;
        }
        let packets = self.packets.fetch_add(1, Ordering::Relaxed) + 1;
        let bytes = self.bytes.fetch_add(len, Ordering::Relaxed) + len;
        let over = |limit: u64, used: u64| limit != NONE && used > limit;
        let at = |limit: u64, used: u64| limit != NONE && used >= limit;

        let exceeded = if over(self.limits.hard_packets, packets) {
            Some(LimitKind::Packets)
        } else if over(self.limits.hard_bytes, bytes) {
            Some(LimitKind::Bytes)
        } else {
            None
        };
        if let Some(kind) = exceeded {
            // The packet is not carried: take it back out of the counts.
            self.packets.fetch_sub(1, Ordering::Relaxed);
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            return if self.report_hard() {
                Charge::DropHard(kind)
            } else {
                Charge::Dead
            };
        }

        let used_up = if at(self.limits.hard_packets, packets) {
            Some(LimitKind::Packets)
        } else if at(self.limits.hard_bytes, bytes) {
            Some(LimitKind::Bytes)
        } else {
            None
        };
        if let Some(kind) = used_up {
            if self.report_hard() {
                return Charge::CarryHard(kind);
            }
            return Charge::Carry;
        }

        let soft = if at(self.limits.soft_packets, packets) {
            Some(LimitKind::Packets)
        } else if at(self.limits.soft_bytes, bytes) {
            Some(LimitKind::Bytes)
        } else {
            None
        };
        match soft {
            Some(kind) if self.report_soft() => Charge::CarrySoft(kind),
            _ => Charge::Carry,
        }
    }

    /// Checks the time limits at `now`. Without configured time limits this is always quiet.
    pub fn check_time(&self, now: u64) -> TimeCheck {
        let age = now.saturating_sub(self.installed_at);
        if self.limits.hard_seconds != NONE && age >= self.limits.hard_seconds {
            if self.report_hard() {
                return TimeCheck::Hard;
            }
            return TimeCheck::Quiet;
        }
        let soft_seconds = self.limits.soft_seconds;
        if soft_seconds != NONE && age >= soft_seconds && self.report_soft() {
            return TimeCheck::Soft;
        }
        TimeCheck::Quiet
    }

    /// Marks the direction dead without a limit (e.g. sequence numbers used up). Returns true the
    /// first time.
    pub fn kill(&self) -> bool {
        self.report_hard()
    }

    fn report_soft(&self) -> bool {
        !self.soft_reported.swap(true, Ordering::Relaxed)
    }

    fn report_hard(&self) -> bool {
        !self.hard_reported.swap(true, Ordering::Relaxed)
    }
}

/// "No limit" in [`Bounds`]. A limit of `u64::MAX` bytes, packets or seconds is never reached
/// anyway, so it reads as none too.
const NONE: u64 = u64::MAX;

/// [`Limits`] as a lifetime keeps them: `NONE` instead of `Option`, half the size (every pair
/// holds two, for each home).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bounds {
    soft_bytes: u64,
    hard_bytes: u64,
    soft_packets: u64,
    hard_packets: u64,
    soft_seconds: u64,
    hard_seconds: u64,
}

impl From<Limits> for Bounds {
    fn from(limits: Limits) -> Self {
        let bound = |limit: Option<u64>| limit.unwrap_or(NONE);
        Bounds {
            soft_bytes: bound(limits.soft_bytes),
            hard_bytes: bound(limits.hard_bytes),
            soft_packets: bound(limits.soft_packets),
            hard_packets: bound(limits.hard_packets),
            soft_seconds: bound(limits.soft_seconds),
            hard_seconds: bound(limits.hard_seconds),
        }
    }
}

impl Bounds {
    fn to_limits(self) -> Limits {
        let limit = |bound: u64| (bound != NONE).then_some(bound);
        Limits {
            soft_bytes: limit(self.soft_bytes),
            hard_bytes: limit(self.hard_bytes),
            soft_packets: limit(self.soft_packets),
            hard_packets: limit(self.hard_packets),
            soft_seconds: limit(self.soft_seconds),
            hard_seconds: limit(self.hard_seconds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn the_limits_read_back_as_installed() {
        let limits = Limits {
            soft_bytes: Some(1 << 31),
            hard_bytes: Some(1 << 32),
            soft_packets: None,
            hard_packets: Some(0),
            soft_seconds: Some(3600),
            hard_seconds: None,
        };
        assert_eq!(Lifetime::new(limits, 0).limits(), limits);
        assert_eq!(
            Lifetime::new(Limits::default(), 0).limits(),
            Limits::default()
        );
    }

    #[test]
    fn no_limits_carry_forever() {
        let lifetime = Lifetime::new(limits(), 0);
        for _ in 0..1000 {
            assert_eq!(lifetime.charge(1500), Charge::Carry);
        }
        assert_eq!(lifetime.packets(), 1000);
        assert_eq!(lifetime.bytes(), 1_500_000);
        assert_eq!(lifetime.check_time(u64::MAX), TimeCheck::Quiet);
    }

    #[test]
    fn soft_packet_limit_fires_once() {
        let lifetime = Lifetime::new(
            Limits {
                soft_packets: Some(3),
                ..limits()
            },
            0,
        );
        assert_eq!(lifetime.charge(100), Charge::Carry);
        assert_eq!(lifetime.charge(100), Charge::Carry);
        assert_eq!(lifetime.charge(100), Charge::CarrySoft(LimitKind::Packets));
        assert_eq!(lifetime.charge(100), Charge::Carry);
        assert_eq!(lifetime.charge(100), Charge::Carry);
        assert!(!lifetime.is_dead());
    }

    #[test]
    fn soft_byte_limit_fires_on_the_crossing_packet() {
        let lifetime = Lifetime::new(
            Limits {
                soft_bytes: Some(250),
                ..limits()
            },
            0,
        );
        assert_eq!(lifetime.charge(100), Charge::Carry);
        assert_eq!(lifetime.charge(100), Charge::Carry);
        assert_eq!(lifetime.charge(100), Charge::CarrySoft(LimitKind::Bytes));
        assert_eq!(lifetime.charge(100), Charge::Carry);
    }

    #[test]
    fn hard_packet_limit_carries_exactly_that_many() {
        let lifetime = Lifetime::new(
            Limits {
                soft_packets: Some(2),
                hard_packets: Some(4),
                ..limits()
            },
            0,
        );
        assert_eq!(lifetime.charge(10), Charge::Carry);
        assert_eq!(lifetime.charge(10), Charge::CarrySoft(LimitKind::Packets));
        assert_eq!(lifetime.charge(10), Charge::Carry);
        assert_eq!(lifetime.charge(10), Charge::CarryHard(LimitKind::Packets));
        assert!(lifetime.is_dead());
        assert_eq!(lifetime.charge(10), Charge::Dead);
        assert_eq!(lifetime.charge(10), Charge::Dead);
        assert_eq!(lifetime.packets(), 4);
        assert_eq!(lifetime.bytes(), 40);
    }

    #[test]
    fn packet_that_would_exceed_hard_bytes_is_dropped_and_reported_once() {
        let lifetime = Lifetime::new(
            Limits {
                hard_bytes: Some(250),
                ..limits()
            },
            0,
        );
        assert_eq!(lifetime.charge(100), Charge::Carry);
        assert_eq!(lifetime.charge(100), Charge::Carry);
        assert_eq!(lifetime.charge(100), Charge::DropHard(LimitKind::Bytes));
        assert_eq!(lifetime.charge(10), Charge::Dead);
        assert_eq!(lifetime.bytes(), 200, "dropped packets are not counted");
        assert_eq!(lifetime.packets(), 2);
    }

    #[test]
    fn time_limits_only_when_configured() {
        let lifetime = Lifetime::new(
            Limits {
                soft_seconds: Some(10),
                hard_seconds: Some(20),
                ..limits()
            },
            100,
        );
        assert_eq!(lifetime.check_time(105), TimeCheck::Quiet);
        assert_eq!(lifetime.check_time(110), TimeCheck::Soft);
        assert_eq!(lifetime.check_time(111), TimeCheck::Quiet);
        assert_eq!(lifetime.charge(1), Charge::Carry);
        assert_eq!(lifetime.check_time(120), TimeCheck::Hard);
        assert_eq!(lifetime.check_time(121), TimeCheck::Quiet);
        assert_eq!(lifetime.charge(1), Charge::Dead);
    }

    #[test]
    fn kill_stops_the_direction_once() {
        let lifetime = Lifetime::new(limits(), 0);
        assert!(lifetime.kill());
        assert!(!lifetime.kill());
        assert_eq!(lifetime.charge(1), Charge::Dead);
    }
}
