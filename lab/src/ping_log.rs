//! A ping that runs through a whole scenario (`ping -D -O`: every reply and every missing one
//! with its wall-clock time), read back afterwards: how long an outage lasted, and whether any
//! reply went missing in a window.

use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Guarded, Netns};

/// A running `ping -6 -D -O -i INTERVAL` in a namespace, its output in a file.
pub struct PingLog {
    log: PathBuf,
    _process: Guarded,
}

/// One line of the ping's output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Probe {
    /// A reply arrived at this time (Unix seconds), for a request sent `rtt` before.
    Reply {
        /// When it arrived.
        at: f64,
        /// Its round-trip time in seconds.
        rtt: f64,
    },
    /// No reply yet for a request (reported when the next one goes, at this time).
    Missing {
        /// When ping said so.
        at: f64,
    },
}

impl PingLog {
    /// Starts pinging `address` from `ns` every `interval`, logging into `log`.
    pub fn start(
        ns: &Netns,
        address: Ipv6Addr,
        interval: Duration,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let mut command = ns.command("ping");
        command.args([
            "-6",
            "-D",
            "-O",
            "-n",
            "-i",
            &format!("{:.3}", interval.as_secs_f64()),
            &address.to_string(),
        ]);
        let process = Guarded::spawn(command, &format!("ping {address} in {}", ns.name()), log)?;
        Ok(PingLog {
            log: log.to_path_buf(),
            _process: process,
        })
    }

    /// What the ping reported so far.
    pub fn probes(&self) -> Vec<Probe> {
        parse(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Its raw output.
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Unix time of `at`, in seconds, as ping's `-D` prints it.
pub fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The lines of `ping -D -O` output: `[TIME] 64 bytes from ...: icmp_seq=N ttl=T time=R ms`
/// and `[TIME] no answer yet for icmp_seq=N`.
pub fn parse(text: &str) -> Vec<Probe> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix('[')?;
            let (at, rest) = rest.split_once(']')?;
            let at: f64 = at.parse().ok()?;
            if rest.contains("no answer yet") {
                return Some(Probe::Missing { at });
            }
            let ms = rest.split("time=").nth(1)?.split_whitespace().next()?;
            let rtt = ms.parse::<f64>().ok()? / 1000.0;
            Some(Probe::Reply { at, rtt })
        })
        .collect()
}

/// How long after `since` (Unix seconds) the first reply to a request sent after `since`
/// arrived: the outage that began then. `None` if none came.
pub fn outage_after(probes: &[Probe], since: f64) -> Option<Duration> {
    probes.iter().find_map(|p| match *p {
        Probe::Reply { at, rtt } if at - rtt > since => Some(Duration::from_secs_f64(at - since)),
        _ => None,
    })
}

/// The replies and missing replies reported between `from` and `to` (Unix seconds).
pub fn between(probes: &[Probe], from: f64, to: f64) -> (usize, usize) {
    probes
        .iter()
        .fold((0, 0), |(replies, missing), p| match *p {
            Probe::Reply { at, .. } if at >= from && at <= to => (replies + 1, missing),
            Probe::Missing { at } if at >= from && at <= to => (replies, missing + 1),
            _ => (replies, missing),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "PING 2001:db8:100:100::5(2001:db8:100:100::5) 56 data bytes\n\
        [1000.000100] 64 bytes from 2001:db8:100:100::5: icmp_seq=1 ttl=62 time=0.100 ms\n\
        [1000.200000] no answer yet for icmp_seq=3\n\
        [1000.300000] no answer yet for icmp_seq=4\n\
        [1003.100200] 64 bytes from 2001:db8:100:100::5: icmp_seq=31 ttl=62 time=0.200 ms\n";

    #[test]
    fn ping_output_is_read_back() {
        let probes = parse(OUTPUT);
        assert_eq!(probes.len(), 4);
        assert_eq!(probes[1], Probe::Missing { at: 1000.2 });
        let outage = outage_after(&probes, 1000.05).unwrap();
        assert!((outage.as_secs_f64() - 3.0502).abs() < 1e-6, "{outage:?}");
        assert_eq!(between(&probes, 1000.0, 1001.0), (1, 2));
        assert_eq!(outage_after(&probes, 1004.0), None);
    }
}
