//! When NAT keepalives are due (RFC 3948 section 2.3): one 0xFF byte to a peer's outer endpoint
//! behind a NAT once per interval while a pair uses that endpoint. An endpoint no pair uses is
//! forgotten at once, so a server whose homes' addresses change over months keeps nothing of
//! the old ones.

use std::collections::HashMap;
use std::net::SocketAddrV4;

/// When each endpoint last had its keepalive.
#[derive(Debug, Default)]
pub(crate) struct KeepaliveSchedule {
    /// Per endpoint: the second (of the forwarder's clock) its last keepalive went, or it was
    /// first seen.
    last: HashMap<SocketAddrV4, u64>,
}

impl KeepaliveSchedule {
    /// The endpoints due a keepalive at `now` (seconds), from every endpoint a pair wants one
    /// for and its interval in seconds (one entry per pair: an endpoint with several pairs
    /// gets one keepalive, at the shortest interval). A new endpoint has its first one after an
    /// interval.
    pub(crate) fn due(
        &mut self,
        now: u64,
        wanted: impl IntoIterator<Item = (SocketAddrV4, u32)>,
    ) -> Vec<SocketAddrV4> {
        let mut interval: HashMap<SocketAddrV4, u32> = HashMap::new();
        for (to, seconds) in wanted {
            let seconds = seconds.max(1);
            interval
                .entry(to)
                .and_modify(|s| *s = (*s).min(seconds))
                .or_insert(seconds);
        }
        let mut last = HashMap::with_capacity(interval.len());
        let mut due = Vec::new();
        for (to, seconds) in interval {
            let sent = self.last.get(&to).copied().unwrap_or(now);
            if now.saturating_sub(sent) >= u64::from(seconds) {
                due.push(to);
                last.insert(to, now);
            } else {
                last.insert(to, sent);
            }
        }
        self.last = last;
        due.sort_unstable();
        due
    }

    /// How many endpoints it remembers.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.last.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(std::net::Ipv4Addr::new(198, 51, 100, 7), port)
    }

    #[test]
    fn an_endpoint_has_one_keepalive_per_interval_the_first_after_one_interval() {
        let mut schedule = KeepaliveSchedule::default();
        let due: Vec<Vec<SocketAddrV4>> = (100..=141)
            .map(|now| schedule.due(now, [(at(4500), 20)]))
            .collect();
        let sent_at: Vec<u64> = (100..=141)
            .zip(&due)
            .filter(|(_, d)| !d.is_empty())
            .map(|(now, _)| now)
            .collect();
        assert_eq!(sent_at, [120, 140]);
    }

    #[test]
    fn several_pairs_to_one_endpoint_make_one_keepalive_at_the_shortest_interval() {
        let mut schedule = KeepaliveSchedule::default();
        schedule.due(0, [(at(4500), 20), (at(4500), 5)]);
        assert!(schedule.due(4, [(at(4500), 20), (at(4500), 5)]).is_empty());
        assert_eq!(schedule.due(5, [(at(4500), 20), (at(4500), 5)]), [at(4500)]);
    }

    #[test]
    fn an_endpoint_no_pair_uses_is_forgotten() {
        let mut schedule = KeepaliveSchedule::default();
        // A home behind a NAT whose public port changes every few seconds, for a long time.
        for step in 0..1000u16 {
            schedule.due(
                u64::from(step),
                [(at(40000 + step / 3), 20), (at(4500), 20)],
            );
        }
        assert_eq!(schedule.remembered(), 2);
        // One that comes back starts afresh: its first keepalive after an interval.
        assert!(schedule.due(2000, [(at(40000), 20)]).is_empty());
        assert_eq!(schedule.due(2020, [(at(40000), 20)]), [at(40000)]);
        assert_eq!(schedule.remembered(), 1);
    }

    #[test]
    fn a_zero_interval_counts_as_one_second() {
        let mut schedule = KeepaliveSchedule::default();
        schedule.due(10, [(at(4500), 0)]);
        assert_eq!(schedule.due(11, [(at(4500), 0)]), [at(4500)]);
    }
}
