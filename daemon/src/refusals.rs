//! Refused peers in the log: a home that keeps retrying with a revoked certificate, or a
//! stranger that keeps knocking, would write a warning every attempt for as long as it tries.
//! The first refusal of a kind is a warning; its repeats go to debug level, and the next warning
//! after an hour says how many there were.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// How long repeats of one refusal stay at debug level.
const QUIET: Duration = Duration::from_secs(3600);
/// Kinds remembered at most (each a peer and a reason); the oldest go first.
const MAX_KINDS: usize = 1024;

struct Seen {
    warned_at: Instant,
    repeats: u64,
}

/// What the log said of each kind of refusal lately.
#[derive(Default)]
pub struct RefusalLog {
    seen: HashMap<(String, String), Seen>,
}

/// How one refusal goes into the log.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// At warn.
    Warn(String),
    /// At debug: a repeat within the quiet time.
    Debug(String),
}

impl RefusalLog {
    /// The log line of a refusal of `name` (the identity it claimed, if it got that far) at
    /// `remote` for `reason`, at `now`.
    pub fn line(
        &mut self,
        now: Instant,
        name: Option<&str>,
        remote: SocketAddrV4,
        reason: &str,
    ) -> Line {
        let text = match name {
            Some(name) => format!("refused {name} at {remote}: {reason}"),
            None => format!("refused {remote}: {reason}"),
        };
        // A named peer is one kind wherever it comes from; a nameless one by its address.
        let who = name.map_or_else(|| remote.ip().to_string(), str::to_string);
        let key = (who, reason.to_string());
        if let Some(seen) = self.seen.get_mut(&key) {
            if now.saturating_duration_since(seen.warned_at) < QUIET {
                seen.repeats += 1;
                return Line::Debug(text);
            }
            let repeats = std::mem::take(&mut seen.repeats);
            seen.warned_at = now;
            return Line::Warn(if repeats > 0 {
                format!("{text} ({repeats} more times in the last hour, logged at debug level)")
            } else {
                text
            });
        }
        if self.seen.len() >= MAX_KINDS
            && let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, seen)| seen.warned_at)
                .map(|(key, _)| key.clone())
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(
            key,
            Seen {
                warned_at: now,
                repeats: 0,
            },
        );
        Line::Warn(text)
    }

    /// Writes the line of a refusal (see [`RefusalLog::line`]).
    pub fn log(&mut self, now: Instant, name: Option<&str>, remote: SocketAddrV4, reason: &str) {
        match self.line(now, name, remote, reason) {
            Line::Warn(text) => tracing::warn!("{text}"),
            Line::Debug(text) => tracing::debug!("{text}"),
        }
    }
}

#[cfg(test)]
// A base instant for the virtual times of the tests; nothing depends on its value.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn at(base: Instant, seconds: u64) -> Instant {
        base + Duration::from_secs(seconds)
    }

    #[test]
    fn repeats_go_quiet_for_an_hour_then_are_counted() {
        let mut log = RefusalLog::default();
        let base = Instant::now();
        let home: SocketAddrV4 = "198.51.100.2:500".parse().unwrap();
        let revoked = "AUTHENTICATION_FAILED: certificate is revoked";
        let first = log.line(base, Some("home.example"), home, revoked);
        assert_eq!(
            first,
            Line::Warn(format!("refused home.example at {home}: {revoked}"))
        );
        // Every 30 s for an hour, from wherever the home is: debug only.
        for i in 1..120 {
            let moved: SocketAddrV4 = "198.51.100.3:500".parse().unwrap();
            assert!(matches!(
                log.line(at(base, i * 30), Some("home.example"), moved, revoked),
                Line::Debug(_)
            ));
        }
        // Another reason, or another home, is news.
        assert!(matches!(
            log.line(
                at(base, 60),
                Some("home.example"),
                home,
                "NO_PROPOSAL_CHOSEN"
            ),
            Line::Warn(_)
        ));
        assert!(matches!(
            log.line(at(base, 60), Some("home2.example"), home, revoked),
            Line::Warn(_)
        ));
        // After the hour, one warning with the count.
        match log.line(at(base, 3600), Some("home.example"), home, revoked) {
            Line::Warn(text) => assert!(
                text.ends_with("(119 more times in the last hour, logged at debug level)"),
                "{text}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn strangers_are_kinds_by_address_and_the_memory_is_bounded() {
        let mut log = RefusalLog::default();
        let base = Instant::now();
        for i in 0..(MAX_KINDS as u32 + 10) {
            let remote = SocketAddrV4::new(std::net::Ipv4Addr::from(0xcb00_7100 + i), 500);
            assert!(matches!(
                log.line(at(base, u64::from(i)), None, remote, "no proposal"),
                Line::Warn(_)
            ));
        }
        assert_eq!(log.seen.len(), MAX_KINDS);
    }
}
