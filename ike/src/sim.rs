//! Test doubles for harnesses that drive endpoints on a virtual clock (the simulation tests in
//! `ike/tests/`, the fuzz targets that play a peer): seeded randomness, the virtual clock and a
//! fake forwarder that carries out SA channel requests and reports counters like the real one.
//! Only with the `test-util` feature; never in the daemon.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hometun_control::{
    ChildSa, ControlError, CounterReport, PlatformError, PlatformOp, Request, SaCounters,
};
use ipnet::Ipv6Net;

use crate::endpoint::{Endpoint, Now, Random};
use crate::io::Output;

/// SplitMix64: seeded and reproducible, so a failing run can be run again.
pub struct SeededRandom(u64);

impl SeededRandom {
    /// A generator with this seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Random for SeededRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_be_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// 2028-01-01T00:00:00Z, the wall time a virtual clock starts at: inside the validity of the
/// harnesses' certificates, whatever today's date.
pub fn wall_2028() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_830_297_600)
}

/// The virtual clock: a base instant read once plus an offset that the harness moves; wall
/// time [`wall_2028`] plus the same offset.
#[derive(Clone, Copy)]
pub struct Clock {
    base: Instant,
    wall: SystemTime,
    /// Virtual time since the start.
    pub offset: Duration,
}

impl Clock {
    /// A clock at zero.
    pub fn new() -> Self {
        // The one read of the real clock; every later time is base + offset.
        #[allow(clippy::disallowed_methods)]
        let base = Instant::now();
        Self {
            base,
            wall: wall_2028(),
            offset: Duration::ZERO,
        }
    }

    /// The time as the endpoints see it.
    pub fn now(&self) -> Now {
        Now {
            mono: self.base + self.offset,
            wall: self.wall + self.offset,
        }
    }

    /// An instant as virtual time.
    pub fn at(&self, mono: Instant) -> Duration {
        mono.saturating_duration_since(self.base)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// One installed pair and its traffic.
#[derive(Debug, Clone)]
pub struct InstalledSa {
    /// What was installed.
    pub sa: ChildSa,
    /// Packets received on it.
    pub rx_packets: u64,
    /// Packets sent on it.
    pub tx_packets: u64,
    /// When it last received one (virtual time).
    pub last_rx: Option<Duration>,
    /// When it was installed (virtual time).
    pub installed_at: Duration,
}

/// Carries out SA channel requests like the forwarder and reports counters like it: installs,
/// deletes, endpoint moves, and on a server (`require_grants`) the grant check of
/// `Request::AllowPeer`.
#[derive(Debug)]
pub struct FakeForwarder {
    /// Installed pairs by inbound SPI.
    pub installed: BTreeMap<u32, InstalledSa>,
    /// Every request, in order.
    pub log: Vec<Request>,
    /// Inbound SPIs in install order: the newest carries outbound traffic.
    pub order: Vec<u32>,
    /// Each peer's grant (`Request::AllowPeer`).
    pub grants: BTreeMap<u64, Vec<Ipv6Net>>,
    /// Refuse installs without a covering grant (a server's forwarder has a peer pool).
    pub require_grants: bool,
    /// Refuse this many of the next installs (a forwarder that cannot install them).
    pub refuse_installs: u32,
    /// Installs asked for since the harness last took them (refused or not).
    pub asked: Vec<ChildSa>,
    /// Bytes each counted packet stands for in the counter reports.
    pub packet_bytes: u64,
}

impl Default for FakeForwarder {
    fn default() -> Self {
        Self {
            installed: BTreeMap::new(),
            log: Vec::new(),
            order: Vec::new(),
            grants: BTreeMap::new(),
            require_grants: false,
            refuse_installs: 0,
            asked: Vec::new(),
            packet_bytes: 100,
        }
    }
}

impl FakeForwarder {
    /// Carries out one SA channel request (also what a real forwarder did on its own, such as
    /// moving an endpoint after its checks); `Err` for a refused install. An install of an
    /// inbound SPI that an installed pair still uses is a bug of the endpoint: it panics.
    pub fn apply(&mut self, request: &Request, now: Duration) -> Result<(), ControlError> {
        self.log.push(request.clone());
        match request {
            Request::AllowPeer { peer, prefixes } => {
                if prefixes.is_empty() {
                    self.grants.remove(&peer.0);
                } else {
                    self.grants.insert(peer.0, prefixes.clone());
                }
            }
            Request::Install(sa) => {
                self.asked.push(sa.clone());
                assert!(
                    !self.installed.contains_key(&sa.spi_in.0),
                    "install of SPI {:08x}, which an installed pair still uses",
                    sa.spi_in.0
                );
                if self.refuse_installs > 0 {
                    self.refuse_installs -= 1;
                    return Err(ControlError::Platform(PlatformError::other(
                        PlatformOp::Configure,
                        "refused by the harness",
                    )));
                }
                if self.require_grants {
                    let granted = self.grants.get(&sa.peer.0).cloned().unwrap_or_default();
                    if let Some(outside) = sa
                        .remote_ts
                        .iter()
                        .find(|t| !granted.iter().any(|g| g.contains(*t)))
                    {
                        return Err(ControlError::OutsideGrant {
                            peer: sa.peer,
                            remote_ts: *outside,
                        });
                    }
                }
                self.order.push(sa.spi_in.0);
                self.installed.insert(
                    sa.spi_in.0,
                    InstalledSa {
                        sa: sa.clone(),
                        rx_packets: 0,
                        tx_packets: 0,
                        last_rx: None,
                        installed_at: now,
                    },
                );
            }
            Request::Delete { spi_in } => {
                self.installed.remove(&spi_in.0);
                self.order.retain(|s| *s != spi_in.0);
            }
            Request::UpdateEndpoint { peer, endpoint } => {
                for i in self.installed.values_mut() {
                    if i.sa.peer == *peer {
                        i.sa.endpoint = *endpoint;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The pair outbound traffic uses: the newest installed.
    pub fn outbound(&self) -> Option<&InstalledSa> {
        self.order.last().and_then(|spi| self.installed.get(spi))
    }

    /// The counters, as the forwarder reports them every second.
    pub fn report(&self, now: Duration) -> CounterReport {
        CounterReport {
            sas: self
                .installed
                .values()
                .map(|i| SaCounters {
                    peer: i.sa.peer,
                    spi_in: i.sa.spi_in,
                    spi_out: i.sa.spi_out,
                    endpoint: i.sa.endpoint,
                    alg: i.sa.key_in.alg().name().into(),
                    rx_packets: i.rx_packets,
                    rx_bytes: i.rx_packets * self.packet_bytes,
                    tx_packets: i.tx_packets,
                    tx_bytes: i.tx_packets * self.packet_bytes,
                    drops: Vec::new(),
                    limits: i.sa.limits,
                    last_rx_seconds_ago: i.last_rx.map(|t| now.saturating_sub(t).as_secs()),
                    age_seconds: now.saturating_sub(i.installed_at).as_secs(),
                })
                .collect(),
            global_drops: Vec::new(),
            events_dropped: 0,
            roaming: Vec::new(),
        }
    }

    /// The installs asked for, in order (refused ones too).
    pub fn installs(&self) -> Vec<&ChildSa> {
        self.log
            .iter()
            .filter_map(|r| match r {
                Request::Install(sa) => Some(sa),
                _ => None,
            })
            .collect()
    }

    /// Position in the log of the install of an inbound SPI.
    pub fn install_index(&self, spi: u32) -> Option<usize> {
        self.log
            .iter()
            .position(|r| matches!(r, Request::Install(sa) if sa.spi_in.0 == spi))
    }

    /// Position in the log of the delete of an inbound SPI.
    pub fn delete_index(&self, spi: u32) -> Option<usize> {
        self.log
            .iter()
            .position(|r| matches!(r, Request::Delete { spi_in } if spi_in.0 == spi))
    }
}

/// Takes `endpoint`'s outputs as the driver does: each SA channel request goes to `forwarder`
/// (at virtual time `now`), a refused install goes back to the endpoint
/// ([`Endpoint::handle_install_refused`], which may bring more outputs), and every output is
/// handed to `each` in order.
pub fn drain_outputs(
    endpoint: &mut Endpoint,
    forwarder: &mut FakeForwarder,
    at: Now,
    now: Duration,
    rng: &mut dyn Random,
    mut each: impl FnMut(Output),
) {
    loop {
        let mut refused = Vec::new();
        while let Some(output) = endpoint.poll_output() {
            if let Output::Forwarder(request) = &output
                && let Err(reason) = forwarder.apply(request, now)
                && let Request::Install(sa) = request
            {
                refused.push((sa.spi_in, reason));
            }
            each(output);
        }
        if refused.is_empty() {
            return;
        }
        for (spi, reason) in refused {
            endpoint.handle_install_refused(at, spi, &reason, rng);
        }
    }
}
