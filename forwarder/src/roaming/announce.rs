//! The client's announcements, sans-IO: after its outer address changed, the override NA goes to
//! each peer at once and then again with backoff (50, 100, 200 ... ms, capped at one a second)
//! until ESP from that peer arrives again (the server switched) or a few seconds passed.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use hometun_control::PeerId;
use ipnet::Ipv6Net;

/// Delays between announcements, in milliseconds; the last one repeats.
pub const BACKOFF_MS: [u64; 6] = [50, 100, 200, 400, 800, 1000];
/// Announcing stops this long after the change even without an answer (the server's NAT
/// rebinding check, driven by our ordinary traffic, still follows us then).
pub const GIVE_UP_MS: u64 = 10_000;

/// One NA to send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announce {
    /// To whom.
    pub peer: PeerId,
    /// The target address (our tunnel address).
    pub target: Ipv6Addr,
    /// Our new outer address (the Target Link-Layer Address option).
    pub lladdr: Ipv4Addr,
    /// 0 for the first NA after the change.
    pub attempt: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Announcement {
    target: Ipv6Addr,
    lladdr: Ipv4Addr,
    started_ms: u64,
    next_ms: u64,
    attempts: u32,
    /// The peer's received-packet count when the change was noticed.
    rx_baseline: u64,
}

/// How an announcement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// ESP from the peer arrived again after this many milliseconds and NAs.
    Answered {
        /// Whose.
        peer: PeerId,
        /// Milliseconds since the change.
        after_ms: u64,
        /// NAs sent.
        attempts: u32,
    },
    /// Nothing came back within [`GIVE_UP_MS`].
    GaveUp {
        /// Whose.
        peer: PeerId,
        /// NAs sent.
        attempts: u32,
    },
}

/// The announcements in flight, one per peer.
#[derive(Debug, Clone, Default)]
pub struct Announcer {
    active: HashMap<PeerId, Announcement>,
}

impl Announcer {
    /// An announcer with nothing to do.
    pub fn new() -> Self {
        Self::default()
    }

    /// Our address towards `peer` changed to `lladdr` at `now_ms`, when `rx_now` packets had
    /// arrived from it. Replaces an announcement still running for it. Returns the first NA,
    /// to send at once.
    pub fn start(
        &mut self,
        peer: PeerId,
        target: Ipv6Addr,
        lladdr: Ipv4Addr,
        now_ms: u64,
        rx_now: u64,
    ) -> Announce {
        self.active.insert(
            peer,
            Announcement {
                target,
                lladdr,
                started_ms: now_ms,
                next_ms: now_ms + BACKOFF_MS[0],
                attempts: 1,
                rx_baseline: rx_now,
            },
        );
        Announce {
            peer,
            target,
            lladdr,
            attempt: 0,
        }
    }

    /// The NAs due at `now_ms`, and the announcements that ended. `rx` gives a peer's
    /// received-packet count now.
    pub fn poll(
        &mut self,
        now_ms: u64,
        rx: impl Fn(PeerId) -> u64,
    ) -> (Vec<Announce>, Vec<Finished>) {
        let mut due = Vec::new();
        let mut finished = Vec::new();
        self.active.retain(|peer, a| {
            if rx(*peer) > a.rx_baseline {
                finished.push(Finished::Answered {
                    peer: *peer,
                    after_ms: now_ms.saturating_sub(a.started_ms),
                    attempts: a.attempts,
                });
                return false;
            }
            if now_ms.saturating_sub(a.started_ms) >= GIVE_UP_MS {
                finished.push(Finished::GaveUp {
                    peer: *peer,
                    attempts: a.attempts,
                });
                return false;
            }
            if now_ms >= a.next_ms {
                due.push(Announce {
                    peer: *peer,
                    target: a.target,
                    lladdr: a.lladdr,
                    attempt: a.attempts,
                });
                let step = BACKOFF_MS[(a.attempts as usize).min(BACKOFF_MS.len() - 1)];
                a.attempts += 1;
                a.next_ms = now_ms + step;
            }
            true
        });
        due.sort_by_key(|a| a.peer);
        (due, finished)
    }

    /// When [`Announcer::poll`] has something to do next.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.active
            .values()
            .map(|a| a.next_ms.min(a.started_ms + GIVE_UP_MS))
            .min()
    }

    /// True while an announcement to `peer` runs.
    pub fn announcing(&self, peer: PeerId) -> bool {
        self.active.contains_key(&peer)
    }
}

/// The target of our override NA towards an SA: the configured one, else the first address of
/// our TUN device inside the SA's local traffic selector (the client's tunnel address).
pub fn announce_target(
    configured: Option<Ipv6Addr>,
    tun_addresses: &[Ipv6Net],
    local_ts: &[Ipv6Net],
) -> Option<Ipv6Addr> {
    configured.or_else(|| {
        tun_addresses.iter().map(|a| a.addr()).find(|a| {
            local_ts.iter().any(|ts| ts.contains(a)) && !crate::netlink::is_link_local(*a)
        })
    })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    const PEER: PeerId = PeerId(1);

    fn target() -> Ipv6Addr {
        "2001:db8:1::2".parse().unwrap()
    }

    fn new_address() -> Ipv4Addr {
        Ipv4Addr::new(198, 51, 100, 3)
    }

    #[test]
    fn first_na_at_once_then_backoff_until_capped() {
        let mut announcer = Announcer::new();
        let first = announcer.start(PEER, target(), new_address(), 1000, 7);
        assert_eq!(first.attempt, 0);
        assert_eq!(first.lladdr, new_address());
        let mut sent_at = vec![1000];
        let mut now = 1000;
        while now < 1000 + 4000 {
            now += 1;
            let (due, finished) = announcer.poll(now, |_| 7);
            assert!(finished.is_empty());
            sent_at.extend(due.iter().map(|_| now));
        }
        let gaps: Vec<u64> = sent_at.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps[..6], [50, 100, 200, 400, 800, 1000]);
        assert!(gaps[6..].iter().all(|g| *g == 1000), "{gaps:?}");
        assert!(announcer.announcing(PEER));
    }

    #[test]
    fn stops_when_the_peer_is_heard_again() {
        let mut announcer = Announcer::new();
        announcer.start(PEER, target(), new_address(), 0, 7);
        let rx = Cell::new(7);
        assert_eq!(announcer.poll(50, |_| rx.get()).0.len(), 1);
        rx.set(8);
        let (due, finished) = announcer.poll(60, |_| rx.get());
        assert!(due.is_empty());
        assert_eq!(
            finished,
            vec![Finished::Answered {
                peer: PEER,
                after_ms: 60,
                attempts: 2
            }]
        );
        assert!(!announcer.announcing(PEER));
        assert_eq!(announcer.next_deadline_ms(), None);
    }

    #[test]
    fn gives_up_after_a_while() {
        let mut announcer = Announcer::new();
        announcer.start(PEER, target(), new_address(), 0, 0);
        let mut total = 1;
        let end = loop {
            let now = announcer.next_deadline_ms().expect("still announcing");
            let (due, finished) = announcer.poll(now, |_| 0);
            total += due.len() as u32;
            if let Some(end) = finished.first() {
                assert_eq!(
                    *end,
                    Finished::GaveUp {
                        peer: PEER,
                        attempts: total
                    }
                );
                break now;
            }
        };
        assert_eq!(end, GIVE_UP_MS);
        assert!(total < 20, "{total} NAs in {GIVE_UP_MS} ms");
    }

    #[test]
    fn a_second_change_restarts_the_announcement() {
        let mut announcer = Announcer::new();
        announcer.start(PEER, target(), new_address(), 0, 0);
        announcer.poll(50, |_| 0);
        let again = announcer.start(PEER, target(), Ipv4Addr::new(198, 51, 100, 4), 60, 0);
        assert_eq!(again.attempt, 0);
        let (due, _) = announcer.poll(110, |_| 0);
        assert_eq!(due[0].lladdr, Ipv4Addr::new(198, 51, 100, 4));
        assert_eq!(due[0].attempt, 1);
    }

    #[test]
    fn target_is_configured_or_the_tunnel_address_in_the_selector() {
        let tun: Vec<Ipv6Net> = vec![
            "fe80::2/64".parse().unwrap(),
            "2001:db8:1::2/64".parse().unwrap(),
        ];
        let ts: Vec<Ipv6Net> = vec!["2001:db8:1::/64".parse().unwrap()];
        assert_eq!(announce_target(None, &tun, &ts), Some(target()));
        let other: Ipv6Addr = "2001:db8:1::99".parse().unwrap();
        assert_eq!(announce_target(Some(other), &tun, &ts), Some(other));
        let elsewhere: Vec<Ipv6Net> = vec!["2001:db8:7::/64".parse().unwrap()];
        assert_eq!(announce_target(None, &tun, &elsewhere), None);
        // A link-local address is never the target, even inside a ::/0 selector.
        let any: Vec<Ipv6Net> = vec!["::/0".parse().unwrap()];
        assert_eq!(announce_target(None, &tun[..1], &any), None);
    }
}
