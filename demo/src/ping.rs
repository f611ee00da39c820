//! The outage measurement: `ping -D` at a fixed interval in a namespace, its replies read back
//! with their timestamps.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::lab::{Daemon, Namespace, spawn_daemon};

/// A ping running until stopped.
pub struct Pinger {
    daemon: Daemon,
    log: PathBuf,
    /// The interval between echo requests.
    pub interval: Duration,
}

/// One answered echo request: its sequence number and when the reply came (seconds, Unix time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reply {
    /// icmp_seq.
    pub seq: u64,
    /// The reply's arrival, from `ping -D`.
    pub at: f64,
}

/// What a stopped ping saw.
#[derive(Debug, Clone, PartialEq)]
pub struct PingReport {
    /// Replies in order.
    pub replies: Vec<Reply>,
    /// Echo requests sent (from ping's summary; else the highest sequence number answered).
    pub sent: u64,
}

impl PingReport {
    /// Echo requests between the first and the last answered one that got no answer.
    pub fn lost(&self) -> u64 {
        match (self.replies.first(), self.replies.last()) {
            (Some(first), Some(last)) => {
                (last.seq - first.seq + 1).saturating_sub(self.replies.len() as u64)
            }
            _ => 0,
        }
    }

    /// The longest time without a reply, between two consecutive replies (at the ping interval
    /// when nothing was lost).
    pub fn longest_gap(&self) -> Duration {
        self.replies
            .windows(2)
            // `ping -D` stamps in microseconds; rounding there undoes the f64 error of
            // subtracting two Unix times.
            .map(|w| Duration::from_micros(((w[1].at - w[0].at) * 1e6).round().max(0.0) as u64))
            .max()
            .unwrap_or_default()
    }

    /// Whether replies came after `since` (Unix time).
    pub fn answered_after(&self, since: f64) -> usize {
        self.replies.iter().filter(|r| r.at > since).count()
    }
}

impl Pinger {
    /// Starts `ping -6 -D -i INTERVAL -W 1 TO` in `ns`, output into `log`.
    pub fn start(
        ns: &Namespace,
        to: std::net::Ipv6Addr,
        interval: Duration,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let mut command = ns.command("ping");
        command.args([
            "-6",
            "-D",
            "-n",
            "-i",
            &format!("{:.3}", interval.as_secs_f64()),
            "-W",
            "1",
            &to.to_string(),
        ]);
        Ok(Pinger {
            daemon: spawn_daemon(command, "ping", log)?,
            log: log.to_path_buf(),
            interval,
        })
    }

    /// What it saw so far.
    pub fn report(&self) -> PingReport {
        parse(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Stops it (SIGINT: ping prints its summary) and reads everything it saw.
    pub fn stop(mut self) -> PingReport {
        self.daemon.signal_if_running(libc::SIGINT);
        let _ = crate::lab::wait_until(Duration::from_secs(3), "ping stops", || {
            !self.daemon.running()
        });
        self.report()
    }
}

/// Reads `ping -D` output: `[1700000000.123456] 104 bytes from ...: icmp_seq=5 ...` lines and
/// the `N packets transmitted` summary.
pub fn parse(text: &str) -> PingReport {
    let mut replies = Vec::new();
    let mut sent = None;
    for line in text.lines() {
        if line.contains(" bytes from ") {
            let at = line
                .strip_prefix('[')
                .and_then(|rest| rest.split(']').next())
                .and_then(|t| t.parse::<f64>().ok());
            let seq = line
                .split("icmp_seq=")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse::<u64>().ok());
            if let (Some(at), Some(seq)) = (at, seq) {
                replies.push(Reply { seq, at });
            }
        } else if let Some(n) = line
            .split(" packets transmitted")
            .next()
            .filter(|_| line.contains(" packets transmitted"))
            .and_then(|n| n.trim().parse::<u64>().ok())
        {
            sent = Some(n);
        }
    }
    let highest = replies.iter().map(|r| r.seq).max().unwrap_or(0);
    PingReport {
        sent: sent.unwrap_or(highest),
        replies,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_and_losses() {
        let text = "\
PING 2001:db8:100:1::1(2001:db8:100:1::1) 56 data bytes
[1700000000.000000] 64 bytes from 2001:db8:100:1::1: icmp_seq=1 ttl=64 time=0.1 ms
[1700000000.020000] 64 bytes from 2001:db8:100:1::1: icmp_seq=2 ttl=64 time=0.1 ms
[1700000000.120000] 64 bytes from 2001:db8:100:1::1: icmp_seq=7 ttl=64 time=0.1 ms
[1700000000.140000] 64 bytes from 2001:db8:100:1::1: icmp_seq=8 ttl=64 time=0.1 ms

--- 2001:db8:100:1::1 ping statistics ---
9 packets transmitted, 4 received, 55.5556% packet loss, time 160ms
";
        let report = parse(text);
        assert_eq!(report.replies.len(), 4);
        assert_eq!(report.sent, 9);
        assert_eq!(report.lost(), 4);
        assert_eq!(report.longest_gap().as_millis(), 100);
        assert_eq!(report.answered_after(1_700_000_000.1), 2);
    }
}
