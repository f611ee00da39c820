//! Admission to the enrollment listener, which anyone on the Internet can reach: at most
//! [`ListenerLimits::max_connections`] connections at once, and token buckets per source (an
//! IPv4 address, or an IPv6 /64, which one host usually holds whole) and for all sources
//! together. A connection over a limit is closed at once, before TLS, and counted; the log gets
//! one line when the count of closed connections reaches a power of two (1, 2, 4, ...), so a
//! flood cannot flood the log.
//!
//! Time is an argument ([`Admission::admit`] takes `now`); the listener reads the clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A token bucket's size and refill.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Connections that may come at once.
    pub burst: u32,
    /// Connections per second in the long run.
    pub per_second: f64,
}

/// The listener's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerLimits {
    /// Connections open at once (TLS handshake to answer).
    pub max_connections: usize,
    /// New connections from one source.
    pub per_source: Rate,
    /// New connections from all sources together.
    pub global: Rate,
    /// Time for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time for the request to arrive once TLS is up.
    pub request_timeout: Duration,
    /// Sources remembered at most (older, refilled ones are forgotten first).
    pub max_sources: usize,
}

impl Default for ListenerLimits {
    /// Enrollment and renewal are rare (a home renews every year or so): 64 connections at
    /// once, 8 in a burst and one every 10 s per source, 64 in a burst and 10/s in total.
    fn default() -> Self {
        ListenerLimits {
            max_connections: 64,
            per_source: Rate {
                burst: 8,
                per_second: 0.1,
            },
            global: Rate {
                burst: 64,
                per_second: 10.0,
            },
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            max_sources: 4096,
        }
    }
}

/// Why a connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// [`ListenerLimits::max_connections`] are open.
    Busy,
    /// Its source used up its bucket.
    SourceRate,
    /// All sources together used up the global bucket.
    GlobalRate,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Busy => "too many open connections",
            Refused::SourceRate => "too many connections from its source",
            Refused::GlobalRate => "too many connections in total",
        })
    }
}

/// Connections admitted and closed at once, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdmissionStats {
    /// Admitted.
    pub admitted: u64,
    /// Closed: too many open.
    pub busy: u64,
    /// Closed: their source's rate.
    pub source_rate: u64,
    /// Closed: the global rate.
    pub global_rate: u64,
}

impl AdmissionStats {
    /// All connections closed at once.
    pub fn dropped(&self) -> u64 {
        self.busy + self.source_rate + self.global_rate
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Bucket {
            tokens: f64::from(rate.burst),
            updated: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(f64::from(rate.burst));
        self.updated = now;
    }

    fn take(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct Buckets {
    global: Bucket,
    sources: HashMap<IpAddr, Bucket>,
}

/// The admission state of one listener.
#[derive(Debug)]
pub struct Admission {
    limits: ListenerLimits,
    slots: Arc<Semaphore>,
    buckets: Mutex<Buckets>,
    admitted: AtomicU64,
    busy: AtomicU64,
    source_rate: AtomicU64,
    global_rate: AtomicU64,
}

/// The bucket key of an address: IPv4 as is, IPv6 by its /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// Whether `n` (a count that just went up by one) is a power of two: the counts that log.
pub fn logs_at(n: u64) -> bool {
    n.is_power_of_two()
}

impl Admission {
    /// Admission with these limits, `now` the start of the buckets.
    pub fn new(limits: ListenerLimits, now: Instant) -> Self {
        Admission {
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            buckets: Mutex::new(Buckets {
                global: Bucket::full(limits.global, now),
                sources: HashMap::new(),
            }),
            limits,
            admitted: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            source_rate: AtomicU64::new(0),
            global_rate: AtomicU64::new(0),
        }
    }

    /// The limits.
    pub fn limits(&self) -> &ListenerLimits {
        &self.limits
    }

    /// Admits a connection from `ip` at `now`: a slot held until the permit drops, or why not
    /// (already counted, and logged at powers of two).
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Result<OwnedSemaphorePermit, Refused> {
        let result = self.try_admit(ip, now);
        let counter = match result {
            Ok(_) => &self.admitted,
            Err(Refused::Busy) => &self.busy,
            Err(Refused::SourceRate) => &self.source_rate,
            Err(Refused::GlobalRate) => &self.global_rate,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Err(why) = result {
            let stats = self.stats();
            if logs_at(stats.dropped()) {
                tracing::warn!(
                    "enrollment listener: {} connections closed at once so far ({} busy, {} per-source rate, {} global rate); the latest from {ip}: {why}",
                    stats.dropped(),
                    stats.busy,
                    stats.source_rate,
                    stats.global_rate
                );
            }
        }
        result
    }

    fn try_admit(&self, ip: IpAddr, now: Instant) -> Result<OwnedSemaphorePermit, Refused> {
        let permit = Arc::clone(&self.slots)
            .try_acquire_owned()
            .map_err(|_| Refused::Busy)?;
        // A poisoned lock means a panic elsewhere held it; the buckets are plain numbers.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = source_key(ip);
        let limits = &self.limits;
        if !buckets.sources.contains_key(&key) && buckets.sources.len() >= limits.max_sources {
            // Forget the sources whose buckets have filled up again: they are as new.
            let rate = limits.per_source;
            buckets.sources.retain(|_, b| {
                b.refill(rate, now);
                b.tokens < f64::from(rate.burst)
            });
        }
        let table_full = buckets.sources.len() >= limits.max_sources;
        let source_ok = match buckets.sources.get_mut(&key) {
            Some(bucket) => bucket.take(limits.per_source, now),
            // Still full of recently active sources: this one meets the global bucket only.
            None if table_full => true,
            None => {
                let mut bucket = Bucket::full(limits.per_source, now);
                let ok = bucket.take(limits.per_source, now);
                buckets.sources.insert(key, bucket);
                ok
            }
        };
        if !source_ok {
            return Err(Refused::SourceRate);
        }
        if !buckets.global.take(limits.global, now) {
            return Err(Refused::GlobalRate);
        }
        Ok(permit)
    }

    /// The counts so far.
    pub fn stats(&self) -> AdmissionStats {
        AdmissionStats {
            admitted: self.admitted.load(Ordering::Relaxed),
            busy: self.busy.load(Ordering::Relaxed),
            source_rate: self.source_rate.load(Ordering::Relaxed),
            global_rate: self.global_rate.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
// The tests start their virtual time at the real clock (Instant has no other constructor).
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn limits(max: usize, source: (u32, f64), global: (u32, f64)) -> ListenerLimits {
        ListenerLimits {
            max_connections: max,
            per_source: Rate {
                burst: source.0,
                per_second: source.1,
            },
            global: Rate {
                burst: global.0,
                per_second: global.1,
            },
            max_sources: 3,
            ..ListenerLimits::default()
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn slots_are_held_until_the_permit_drops() {
        let t0 = Instant::now();
        let a = Admission::new(limits(2, (100, 0.0), (100, 0.0)), t0);
        let one = a.admit(ip("192.0.2.1"), t0).unwrap();
        let _two = a.admit(ip("192.0.2.2"), t0).unwrap();
        assert_eq!(a.admit(ip("192.0.2.3"), t0).unwrap_err(), Refused::Busy);
        drop(one);
        assert!(a.admit(ip("192.0.2.3"), t0).is_ok());
        assert_eq!(
            a.stats(),
            AdmissionStats {
                admitted: 3,
                busy: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn buckets_per_source_and_in_total_refill_with_time() {
        let t0 = Instant::now();
        let a = Admission::new(limits(100, (2, 1.0), (3, 1.0)), t0);
        for _ in 0..2 {
            drop(a.admit(ip("192.0.2.1"), t0).unwrap());
        }
        assert_eq!(
            a.admit(ip("192.0.2.1"), t0).unwrap_err(),
            Refused::SourceRate
        );
        // Another source still has its own bucket, until the global one runs dry.
        drop(a.admit(ip("198.51.100.1"), t0).unwrap());
        assert_eq!(
            a.admit(ip("198.51.100.1"), t0).unwrap_err(),
            Refused::GlobalRate
        );
        // One second later, one token more each.
        let t1 = t0 + Duration::from_secs(1);
        drop(a.admit(ip("192.0.2.1"), t1).unwrap());
        assert_eq!(
            a.admit(ip("192.0.2.1"), t1).unwrap_err(),
            Refused::SourceRate
        );
        let s = a.stats();
        assert_eq!((s.admitted, s.source_rate, s.global_rate), (4, 2, 1));
    }

    #[test]
    fn an_ipv6_host_counts_as_its_slash_64() {
        let t0 = Instant::now();
        let a = Admission::new(limits(100, (1, 0.0), (100, 0.0)), t0);
        drop(a.admit(ip("2001:db8:1:2::1"), t0).unwrap());
        assert_eq!(
            a.admit(ip("2001:db8:1:2::ffff"), t0).unwrap_err(),
            Refused::SourceRate
        );
        assert!(a.admit(ip("2001:db8:1:3::1"), t0).is_ok());
    }

    #[test]
    fn the_source_table_stays_bounded() {
        let t0 = Instant::now();
        let a = Admission::new(limits(100, (1, 1.0), (100, 0.0)), t0);
        for i in 1..=5 {
            drop(a.admit(ip(&format!("192.0.2.{i}")), t0).unwrap());
        }
        let buckets = a.buckets.lock().unwrap();
        assert!(buckets.sources.len() <= 3);
        drop(buckets);
        // Once their buckets refilled, old sources are forgotten to make room.
        let later = t0 + Duration::from_secs(2);
        drop(a.admit(ip("198.51.100.9"), later).unwrap());
        assert!(a.buckets.lock().unwrap().sources.len() <= 3);
    }

    #[test]
    fn drops_log_at_powers_of_two() {
        let logged: Vec<u64> = (1..=20).filter(|&n| logs_at(n)).collect();
        assert_eq!(logged, [1, 2, 4, 8, 16]);
    }
}
