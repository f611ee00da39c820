//! Message IDs and windows of size 1 each way (RFC 7296 2.3): our one outstanding request with
//! its retransmission timer, and the peer's requests with the cached response to the last one.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use crate::io::Transmit;

/// Our request in flight, retransmitted with exponential backoff until it is answered or
/// `tries` transmissions went unanswered (RFC 7296 2.1). Only the requester retransmits.
#[derive(Debug, Clone)]
pub(crate) struct Retransmission {
    /// The message as first sent; every retransmission is these bytes again.
    pub data: Vec<u8>,
    /// Where from.
    pub local: SocketAddrV4,
    /// Where to.
    pub remote: SocketAddrV4,
    /// Transmissions so far (1 after the first send).
    tries: u32,
    /// When the current transmission counts as lost.
    deadline: Instant,
}

/// What to do when a retransmission timer fires.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RetransmitAction {
    /// Send the request again (the timer is already re-armed).
    Resend,
    /// Every try went unanswered: the peer is dead.
    GiveUp,
}

/// The wait after transmission number `tries` (1-based): `base`, doubled per try.
pub(crate) fn backoff(base: Duration, tries: u32) -> Duration {
    base.saturating_mul(1u32 << tries.saturating_sub(1).min(16))
}

/// How long a requester keeps trying: the sum of every wait.
pub(crate) fn total_patience(base: Duration, tries: u32) -> Duration {
    (1..=tries.max(1)).map(|t| backoff(base, t)).sum()
}

impl Retransmission {
    /// The first transmission, sent now.
    pub fn new(
        now: Instant,
        base: Duration,
        data: Vec<u8>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
    ) -> Self {
        Self {
            data,
            local,
            remote,
            tries: 1,
            deadline: now + backoff(base, 1),
        }
    }

    /// When the timer fires next.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Transmissions so far.
    pub fn tries(&self) -> u32 {
        self.tries
    }

    /// The timer fired at `now`.
    pub fn on_timeout(&mut self, now: Instant, base: Duration, max_tries: u32) -> RetransmitAction {
        if self.tries >= max_tries.max(1) {
            return RetransmitAction::GiveUp;
        }
        self.tries += 1;
        self.deadline = now + backoff(base, self.tries);
        RetransmitAction::Resend
    }

    /// The destination said, unauthenticated (ICMP port unreachable), that nothing listens
    /// there yet: the last transmission does not count as a try, and the next one is due after
    /// `wait` (sooner than the backoff would have it). A genuine answer to the request in flight
    /// still counts meanwhile: a forged ICMP error can hasten the retransmissions but not end
    /// the attempt. With `counted` the transmission counts as a try all the same (a client with
    /// other servers to go to must not wait for ever on one whose daemon is down).
    pub fn unreachable(&mut self, now: Instant, wait: Duration, counted: bool) {
        if !counted {
            self.tries = self.tries.saturating_sub(1);
        }
        self.deadline = self.deadline.min(now + wait);
    }

    /// Where the request goes.
    pub fn remote(&self) -> SocketAddrV4 {
        self.remote
    }

    /// The datagram to (re)send.
    pub fn transmit(&self) -> Transmit {
        Transmit {
            local: self.local,
            remote: self.remote,
            data: self.data.clone(),
        }
    }
}

/// How a request's message ID relates to the responder window.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RequestClass {
    /// The next request: process it.
    New,
    /// The request answered last: send the cached response again, byte for byte.
    Retransmitted,
    /// Older, or beyond the window: ignore.
    Ignore,
}

/// The peer's side of the window: the message ID we expect next and our last response.
#[derive(Debug, Clone)]
pub(crate) struct ResponseWindow {
    expected: u32,
    cached: Option<(u32, Vec<u8>)>,
}

impl ResponseWindow {
    /// Expecting `expected` next, with the response to `expected - 1` if there was one.
    pub fn new(expected: u32, cached: Option<Vec<u8>>) -> Self {
        Self {
            expected,
            cached: cached.map(|c| (expected.wrapping_sub(1), c)),
        }
    }

    /// Sorts an incoming request by its message ID.
    pub fn classify(&self, message_id: u32) -> RequestClass {
        if message_id == self.expected {
            RequestClass::New
        } else if self
            .cached
            .as_ref()
            .is_some_and(|(id, _)| *id == message_id)
        {
            RequestClass::Retransmitted
        } else {
            RequestClass::Ignore
        }
    }

    /// The cached response to resend.
    pub fn cached(&self) -> Option<&[u8]> {
        self.cached.as_ref().map(|(_, c)| c.as_slice())
    }

    /// The request `message_id` was answered with `response`: the window moves on.
    pub fn answered(&mut self, message_id: u32, response: Vec<u8>) {
        self.cached = Some((message_id, response));
        self.expected = message_id.wrapping_add(1);
    }

    /// The message ID expected next.
    pub fn expected(&self) -> u32 {
        self.expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles() {
        let base = Duration::from_millis(500);
        assert_eq!(backoff(base, 1), base);
        assert_eq!(backoff(base, 3), Duration::from_secs(2));
        assert_eq!(total_patience(base, 3), Duration::from_millis(3500));
    }

    #[test]
    fn retransmission_gives_up_after_the_last_try() {
        // A test may read the clock once for a base; the code under test never does.
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let a: SocketAddrV4 = "192.0.2.1:500".parse().unwrap();
        let base = Duration::from_secs(1);
        let mut r = Retransmission::new(t0, base, vec![1], a, a);
        assert_eq!(r.deadline(), t0 + base);
        assert_eq!(r.on_timeout(t0 + base, base, 3), RetransmitAction::Resend);
        assert_eq!(r.deadline(), t0 + base * 3);
        assert_eq!(
            r.on_timeout(t0 + base * 3, base, 3),
            RetransmitAction::Resend
        );
        assert_eq!(r.tries(), 3);
        assert_eq!(
            r.on_timeout(t0 + base * 7, base, 3),
            RetransmitAction::GiveUp
        );
    }

    #[test]
    fn window_of_one() {
        let mut w = ResponseWindow::new(2, Some(vec![9]));
        assert_eq!(w.classify(2), RequestClass::New);
        assert_eq!(w.classify(1), RequestClass::Retransmitted);
        assert_eq!(w.cached(), Some(&[9u8][..]));
        assert_eq!(w.classify(0), RequestClass::Ignore);
        assert_eq!(w.classify(3), RequestClass::Ignore);
        w.answered(2, vec![7]);
        assert_eq!(w.classify(2), RequestClass::Retransmitted);
        assert_eq!(w.classify(1), RequestClass::Ignore);
        assert_eq!(w.expected(), 3);
    }
}
