//! Hints that the peer lost this IKE SA, because it restarted (RFC 7296 2.21.4): an unprotected
//! INVALID_SPI about an ESP SPI we send with, or an unprotected INVALID_IKE_SPI in answer to our
//! request. Anybody on the path can forge either, so a hint changes no state by itself: it
//! starts a liveness check at once, with a short deadline. An authenticated message from the
//! peer before the deadline ends the check and nothing moves; silence until then means the peer
//! no longer knows the IKE SA, and the client connects again at once with INITIAL_CONTACT
//! instead of waiting for its retransmissions to run out (docs/ARCHITECTURE.md, "Restart
//! recovery").

use std::time::{Duration, Instant};

use hometun_control::Spi;

use super::requests::Task;
use super::{Effect, Established};
use crate::notice::Notice;
use crate::sa::Io;
use crate::wire::{Message, NotifyType};

/// At most one hint check per IKE SA this often: a flood of forged hints costs the peer one
/// INFORMATIONAL exchange per interval, nothing more.
const HINT_CHECK_GAP: Duration = Duration::from_secs(2);

/// The shortest deadline of a hint check. A live peer answers within a round trip; the first
/// retransmission (after the configured base timeout) still falls inside it.
const HINT_CHECK_MIN: Duration = Duration::from_secs(1);

/// A liveness check a hint started.
#[derive(Debug, Clone)]
pub(crate) struct HintCheck {
    /// The peer must have authenticated a message by then.
    pub(super) deadline: Instant,
    /// What started it, for the log line if it fails.
    what: String,
}

/// Whether `data` is an unprotected message whose payloads carry an INVALID_IKE_SPI notification.
pub(crate) fn is_invalid_ike_spi(data: &[u8]) -> bool {
    Message::parse(data).is_ok_and(|m| {
        m.encrypted().is_none()
            && m.notifies()
                .any(|n| n.notify_type == NotifyType::INVALID_IKE_SPI)
    })
}

/// The ESP SPIs that an unprotected message's INVALID_SPI notifications name (four bytes of
/// notification data each, RFC 7296 3.10.1); empty if it has none or is protected.
pub(crate) fn invalid_spis(message: &Message) -> Vec<Spi> {
    if message.encrypted().is_some() {
        return Vec::new();
    }
    message
        .notifies()
        .filter(|n| n.notify_type == NotifyType::INVALID_SPI)
        .filter_map(|n| Spi::from_bytes(&n.data))
        .collect()
}

/// How long the peer has to answer a hint check.
pub(crate) fn hint_check_timeout(cfg: &crate::settings::CommonConfig) -> Duration {
    (cfg.retransmit_base * 2).max(HINT_CHECK_MIN)
}

impl Established {
    /// Whether one of our CHILD SAs sends with this SPI (the peer's inbound SPI).
    pub fn sends_with(&self, spi_out: Spi) -> bool {
        self.children.iter().any(|c| c.spi_out == spi_out)
    }

    /// A hint that the peer lost this IKE SA: check at once whether it still answers.
    /// Returns whether a check started.
    pub fn restart_hint(&mut self, io: &mut Io<'_>, what: String) -> bool {
        let now = io.now.mono;
        if !self.is_current() || self.hint_check.is_some() {
            return false;
        }
        if self
            .last_hint_check
            .is_some_and(|last| now < last + HINT_CHECK_GAP)
        {
            tracing::debug!(
                "{}: {what}; ignored (a check ran less than {HINT_CHECK_GAP:?} ago)",
                self.peer.name
            );
            return false;
        }
        let timeout = hint_check_timeout(io.cfg);
        io.notice(Notice::RestartHintCheck {
            peer: self.peer.name.clone(),
            what: what.clone(),
            within: timeout,
        });
        self.last_hint_check = Some(now);
        self.hint_check = Some(HintCheck {
            deadline: now + timeout,
            what,
        });
        // The request in flight (if any) serves as the check; otherwise an empty INFORMATIONAL
        // goes ahead of queued work.
        if self.outstanding.is_none() && !self.queue.contains(&Task::Liveness) {
            self.queue.push_front(Task::Liveness);
        }
        self.pump(io);
        true
    }

    /// The peer authenticated a message: it is alive and knows this IKE SA.
    pub(super) fn heard_from_peer(&mut self, now: Instant) {
        self.last_rx = now;
        self.hint_check = None;
    }

    /// A hint check whose deadline passed without an authenticated message: the peer lost this
    /// IKE SA. Its CHILD SAs go; a client connects again at once.
    pub(super) fn hint_check_timeout(&mut self, io: &mut Io<'_>) -> Option<Vec<Effect>> {
        let check = self.hint_check.as_ref()?;
        if io.now.mono < check.deadline {
            return None;
        }
        let what = check.what.clone();
        self.hint_check = None;
        if !self.is_current() {
            return None;
        }
        io.counters.restart_checks_failed += 1;
        let timeout = hint_check_timeout(io.cfg);
        self.kill(
            io,
            format!("no authenticated answer within {timeout:?} after {what}: it lost this IKE SA"),
        );
        Some(vec![Effect::ReconnectNow, Effect::Remove])
    }
}
