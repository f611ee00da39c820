//! The fake forwarder: records the SA channel requests and reports counters like the real one.

use super::*;

/// One installed pair and its counters.
#[derive(Debug, Clone)]
pub struct InstalledSa {
    pub sa: ChildSa,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub last_rx: Option<Duration>,
    pub installed_at: Duration,
}

/// Records the SA channel requests; keeps the installed pairs with counters. Like the real
/// forwarder on a server, it installs a peer's pair only inside what the peer was granted.
#[derive(Debug, Default)]
pub struct FakeForwarder {
    pub installed: BTreeMap<u32, InstalledSa>,
    /// Every request, in order (Install, Delete, UpdateEndpoint...).
    pub log: Vec<Request>,
    /// Inbound SPIs in install order: the newest carries outbound traffic.
    pub order: Vec<u32>,
    /// Each peer's grant (`Request::AllowPeer`).
    pub grants: BTreeMap<u64, Vec<Ipv6Net>>,
    /// Refuse installs without a covering grant (the server's forwarder has a peer pool).
    pub require_grants: bool,
    /// Refuse this many of the next installs (a forwarder that cannot install them).
    pub refuse_installs: u32,
}

impl FakeForwarder {
    /// Carries out one SA channel request (also what a real forwarder did on its own, such
    /// as moving an endpoint after its checks).
    pub fn apply(&mut self, request: Request, now: Duration) -> Result<(), String> {
        self.log.push(request.clone());
        match request {
            Request::AllowPeer { peer, prefixes } => {
                if prefixes.is_empty() {
                    self.grants.remove(&peer.0);
                } else {
                    self.grants.insert(peer.0, prefixes);
                }
            }
            Request::Install(sa) => {
                if self.refuse_installs > 0 {
                    self.refuse_installs -= 1;
                    return Err("refused by the test".into());
                }
                if self.require_grants {
                    let granted = self.grants.get(&sa.peer.0).cloned().unwrap_or_default();
                    if let Some(outside) = sa
                        .remote_ts
                        .iter()
                        .find(|t| !granted.iter().any(|g| g.contains(*t)))
                    {
                        return Err(format!("remote_ts {outside} outside the grant"));
                    }
                }
                let spi = sa.spi_in.0;
                self.order.push(spi);
                self.installed.insert(
                    spi,
                    InstalledSa {
                        sa,
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
                    if i.sa.peer == peer {
                        i.sa.endpoint = endpoint;
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
                    rx_bytes: i.rx_packets * 100,
                    tx_packets: i.tx_packets,
                    tx_bytes: i.tx_packets * 100,
                    drops: Vec::new(),
                    limits: i.sa.limits,
                    last_rx_seconds_ago: i.last_rx.map(|t| now.saturating_sub(t).as_secs()),
                    age_seconds: now.saturating_sub(i.installed_at).as_secs(),
                })
                .collect(),
            global_drops: Vec::new(),
            events_dropped: 0,
        }
    }

    /// Installs in the log, by inbound SPI.
    pub fn installs(&self) -> Vec<&ChildSa> {
        self.log
            .iter()
            .filter_map(|r| match r {
                Request::Install(sa) => Some(sa),
                _ => None,
            })
            .collect()
    }

    /// Position in the log of the install / delete of an inbound SPI.
    pub fn install_index(&self, spi: u32) -> Option<usize> {
        self.log
            .iter()
            .position(|r| matches!(r, Request::Install(sa) if sa.spi_in.0 == spi))
    }

    pub fn delete_index(&self, spi: u32) -> Option<usize> {
        self.log
            .iter()
            .position(|r| matches!(r, Request::Delete { spi_in } if spi_in.0 == spi))
    }
}
