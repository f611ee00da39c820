//! What a data thread does when reads on its descriptor keep failing: say so once, wait longer
//! each time (never a busy loop on a dead descriptor), and now and then make the socket again.
//! A run of failures ends with the next good read.

use std::io;
use std::time::Duration;

/// The first wait after a failed read.
const FIRST_WAIT: Duration = Duration::from_millis(10);
/// The longest wait between two reads of a failing descriptor.
const LONGEST_WAIT: Duration = Duration::from_secs(1);
/// After this many failures in a row a socket is made again even if the error does not say it
/// is broken.
const REOPEN_EVERY: u32 = 8;

/// What to do after a failed read: wait, make the socket again if told (a failure of that stops
/// the forwarder), then read again. There is always a wait, so that a descriptor that fails
/// again at once, reopened or not, is never read in a busy loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    /// How long to wait.
    pub wait: Duration,
    /// Whether to make the socket again.
    pub reopen: bool,
}

/// The current run of failed reads on one descriptor.
#[derive(Debug)]
pub struct FailureRun {
    what: &'static str,
    failures: u32,
}

impl FailureRun {
    /// A run for the descriptor named `what` in the log ("UDP socket", "TUN device").
    pub fn new(what: &'static str) -> Self {
        FailureRun { what, failures: 0 }
    }

    /// A read succeeded: the run is over.
    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                "forwarder: {} reads again after {} failed",
                self.what,
                self.failures
            );
            self.failures = 0;
        }
    }

    /// A read failed with `error`: logs the first failure of a run (the rest at debug level)
    /// and says what to do.
    pub fn failed(&mut self, error: &io::Error) -> Next {
        self.failures = self.failures.saturating_add(1);
        if self.failures == 1 {
            tracing::warn!(
                "forwarder: reading the {}: {error}; retrying with backoff",
                self.what
            );
        } else {
            tracing::debug!("forwarder: reading the {}: {error}", self.what);
        }
        Next {
            wait: self.wait(),
            reopen: is_broken(error) || self.failures.is_multiple_of(REOPEN_EVERY),
        }
    }

    /// The wait before the next read: 10 ms doubling, at most a second.
    pub fn wait(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(16);
        FIRST_WAIT.saturating_mul(1 << doublings).min(LONGEST_WAIT)
    }

    /// Failures in the current run.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Errors that say the descriptor itself is unusable (closed, replaced by something that is not
/// a socket, shut down): reading it again cannot help.
pub fn is_broken(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EBADF | libc::ENOTSOCK | libc::EINVAL | libc::EFAULT | libc::ENOTCONN)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_failures_waits_longer_each_time_and_reopens_now_and_then() {
        let mut run = FailureRun::new("UDP socket");
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let mut waits = Vec::new();
        let mut reopens = 0;
        for _ in 0..40 {
            let next = run.failed(&refused);
            waits.push(next.wait);
            reopens += u32::from(next.reopen);
        }
        assert_eq!(reopens, 5, "every 8th failure makes the socket again");
        assert_eq!(waits[0], Duration::from_millis(10));
        assert_eq!(waits[1], Duration::from_millis(20));
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert_eq!(*waits.last().unwrap(), LONGEST_WAIT);
        // At most about one read a second once the run is long: never a busy loop.
        let reads_in_the_last_ten: Duration = waits.iter().rev().take(10).sum();
        assert!(reads_in_the_last_ten >= Duration::from_secs(10));
        run.succeeded();
        assert_eq!(run.failures(), 0);
        assert_eq!(
            run.failed(&refused),
            Next {
                wait: Duration::from_millis(10),
                reopen: false
            }
        );
    }

    #[test]
    fn a_broken_descriptor_is_made_again_at_once() {
        let mut run = FailureRun::new("raw ESP socket");
        let first = run.failed(&io::Error::from_raw_os_error(libc::ENOTSOCK));
        assert!(first.reopen);
        // Reopening did not help: the waits still grow between the attempts.
        let second = run.failed(&io::Error::from_raw_os_error(libc::EBADF));
        assert!(second.reopen);
        assert!(second.wait > first.wait, "{first:?} {second:?}");
    }
}
