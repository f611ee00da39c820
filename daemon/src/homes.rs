//! Every peer a daemon knows, up or down, for `hometun status` and the metrics: on a server the
//! homes (configured in `[[clients]]`, enrolled in the registry, or seen since the start), on a
//! client its server. A peer that is down shows when it was last heard from and why it went
//! down, like `wg show`'s latest handshake; each keeps traffic totals that survive rekeys and
//! reconnects, so that the metrics are labelled by the peer's name, not by an SPI that changes
//! with every new pair.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use hometun_control::{CounterReport, DropReason, PeerId, Spi};
use hometun_ike::endpoint::PeerStatus;
use serde::{Deserialize, Serialize};

/// Where the names of the peers a daemon should know come from, besides those it meets.
#[derive(Debug, Clone, Default)]
pub struct KnownPeers {
    /// Names from the configuration (`[[clients]]`, or the client's server).
    pub configured: Vec<String>,
    /// The CA directory whose registry lists the enrolled homes (a server's).
    pub registry_dir: Option<PathBuf>,
}

/// Traffic of one peer over all its pairs, since this daemon started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Packets received and accepted.
    pub rx_packets: u64,
    /// Inner bytes received and accepted.
    pub rx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Inner bytes sent.
    pub tx_bytes: u64,
    /// Drops on its pairs, by reason.
    pub drops: BTreeMap<DropReason, u64>,
}

/// The state of a peer with an IKE SA but no CHILD SA pair that carries traffic: every pair
/// reached a hard limit before a successor (or is being deleted), and the tunnel is being
/// re-made.
pub const NO_WORKING_PAIR: &str = "no-working-pair";

/// Whether a CHILD SA in this state (as the endpoint's status names it) carries traffic: an
/// active pair, or one being rekeyed (it carries on until its successor takes over). An empty
/// state is an older daemon's answer, which named only active pairs.
pub fn carries_traffic(state: &str) -> bool {
    matches!(state, "" | "active" | "rekeying")
}

/// One peer in the status answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HomeStatus {
    /// Its identity.
    pub name: String,
    /// `up` (an IKE SA with a CHILD SA pair that carries traffic), `no-working-pair` (an IKE
    /// SA, but no pair carries anything: [`NO_WORKING_PAIR`]), `down` (it was up since the
    /// start) or `never` (not seen since the start).
    pub state: String,
    /// Unix time of the last change of state, if there was one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub since: Option<u64>,
    /// Unix time it was last heard from (a packet accepted, or its IKE SA coming up).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_seen: Option<u64>,
    /// Why it went down.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub down_reason: Option<String>,
    /// Its certificate's state in the registry (`active`, `revoked`, `expired`, ...).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub certificate: Option<String>,
    /// When its certificate expires (RFC 3339), from the registry.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub certificate_expires: Option<String>,
    /// Its traffic since this daemon started.
    pub totals: Totals,
}

#[derive(Debug, Default)]
struct Home {
    up: bool,
    since: Option<SystemTime>,
    last_seen: Option<SystemTime>,
    down_reason: Option<String>,
    totals: Totals,
}

/// The counters of a pair when they were last read, to add only what is new.
#[derive(Debug, Clone)]
struct PairSeen {
    name: String,
    rx_packets: u64,
    rx_bytes: u64,
    tx_packets: u64,
    tx_bytes: u64,
    drops: BTreeMap<DropReason, u64>,
}

/// The book of peers: fed by the endpoint's up and down events and by each reading of the
/// forwarder's counters.
#[derive(Debug, Default)]
pub struct Homes {
    known: KnownPeers,
    by_name: BTreeMap<String, Home>,
    pairs: HashMap<Spi, PairSeen>,
}

impl Homes {
    /// A book that lists `known` peers even before they are seen.
    pub fn new(known: KnownPeers) -> Self {
        let mut homes = Homes {
            known,
            ..Homes::default()
        };
        for name in homes.known.configured.clone() {
            homes.by_name.entry(name).or_default();
        }
        homes
    }

    /// The peer's IKE SA came up.
    pub fn up(&mut self, name: &str, at: SystemTime) {
        let home = self.by_name.entry(name.to_string()).or_default();
        home.up = true;
        home.since = Some(at);
        home.last_seen = Some(at);
        home.down_reason = None;
    }

    /// The peer's IKE SA went away, for `reason`.
    pub fn down(&mut self, name: &str, reason: &str, at: SystemTime) {
        let home = self.by_name.entry(name.to_string()).or_default();
        home.up = false;
        home.since = Some(at);
        home.down_reason = Some(reason.to_string());
    }

    /// A fresh reading of the forwarder's counters; `names` maps the peers that have an IKE SA
    /// to their identity. Adds what each pair carried since the last reading to its peer's
    /// totals (what a pair carried after the last reading before it was deleted is not
    /// counted: at most one counter interval per pair).
    pub fn observe(
        &mut self,
        report: &CounterReport,
        names: &HashMap<PeerId, impl AsRef<str>>,
        at: SystemTime,
    ) {
        let mut pairs = HashMap::with_capacity(report.sas.len());
        for sa in &report.sas {
            let Some(name) = names.get(&sa.peer).map(AsRef::as_ref) else {
                continue;
            };
            let drops: BTreeMap<DropReason, u64> = sa.drops.iter().copied().collect();
            let now = PairSeen {
                name: name.to_string(),
                rx_packets: sa.rx_packets,
                rx_bytes: sa.rx_bytes,
                tx_packets: sa.tx_packets,
                tx_bytes: sa.tx_bytes,
                drops,
            };
            let before = self.pairs.get(&sa.spi_in).filter(|b| b.name == name);
            let home = self.by_name.entry(name.to_string()).or_default();
            let new = |now: u64, before: Option<u64>| now.saturating_sub(before.unwrap_or(0));
            let t = &mut home.totals;
            let rx = new(now.rx_packets, before.map(|b| b.rx_packets));
            t.rx_packets += rx;
            t.rx_bytes += new(now.rx_bytes, before.map(|b| b.rx_bytes));
            t.tx_packets += new(now.tx_packets, before.map(|b| b.tx_packets));
            t.tx_bytes += new(now.tx_bytes, before.map(|b| b.tx_bytes));
            for (reason, count) in &now.drops {
                let earlier = before.and_then(|b| b.drops.get(reason).copied());
                *t.drops.entry(*reason).or_default() += new(*count, earlier);
            }
            if rx > 0 {
                home.last_seen = Some(at);
            }
            pairs.insert(sa.spi_in, now);
        }
        self.pairs = pairs;
    }

    /// Every peer, by name: those known from the configuration and the registry, and those
    /// met since the start. `peers`: the endpoint's IKE SAs with their CHILD SAs.
    pub fn status(&self, peers: &[PeerStatus]) -> Vec<HomeStatus> {
        let registry = self.registry();
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        for entry in &registry {
            if !self.by_name.contains_key(&entry.name) {
                names.push(&entry.name);
            }
        }
        names.sort_unstable();
        names
            .into_iter()
            .map(|name| {
                let home = self.by_name.get(name);
                let enrolled = registry.iter().find(|e| e.name == name);
                // Up means traffic can cross: an IKE SA whose pairs all expired (or that
                // has none left) is shown as such, never as up.
                let working = peers
                    .iter()
                    .filter(|p| p.name == name)
                    .flat_map(|p| &p.children)
                    .any(|c| carries_traffic(&c.state));
                let state = match home {
                    Some(h) if h.up && working => "up",
                    Some(h) if h.up => NO_WORKING_PAIR,
                    Some(h) if h.since.is_some() => "down",
                    _ => "never",
                };
                HomeStatus {
                    name: name.to_string(),
                    state: state.into(),
                    since: home.and_then(|h| h.since).map(unix),
                    last_seen: home.and_then(|h| h.last_seen).map(unix),
                    down_reason: home.and_then(|h| h.down_reason.clone()),
                    certificate: enrolled.map(|e| e.status.clone()),
                    certificate_expires: enrolled.map(|e| e.expires.clone()),
                    totals: home.map(|h| h.totals.clone()).unwrap_or_default(),
                }
            })
            .collect()
    }

    /// The registry's latest certificate of each enrolled home; none when there is no
    /// registry (a server without enrollment, or a client). A registry that cannot be read
    /// leaves status without the enrolled homes rather than without an answer.
    fn registry(&self) -> Vec<hometun_pki::server_dir::ListEntry> {
        let Some(dir) = &self.known.registry_dir else {
            return Vec::new();
        };
        if !dir.join("registry.json").exists() {
            return Vec::new();
        }
        let now = time::OffsetDateTime::now_utc();
        match hometun_pki::server_dir::ServerDir::new(dir).list(now, false) {
            Ok(list) => list,
            Err(error) => {
                tracing::debug!("status without the registry of {}: {error}", dir.display());
                Vec::new()
            }
        }
    }
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hometun_control::{Encapsulation, Endpoint, Limits, SaCounters};
    use std::time::Duration;

    fn pair(peer: u64, spi: u32, rx: u64, tx: u64, auth_failed: u64) -> SaCounters {
        SaCounters {
            peer: PeerId(peer),
            spi_in: Spi(spi),
            spi_out: Spi(spi + 1),
            endpoint: Endpoint {
                local: "192.0.2.1".parse().unwrap(),
                remote: "198.51.100.2".parse().unwrap(),
                encap: Encapsulation::Raw,
            },
            alg: "aes128gcm16".into(),
            rx_packets: rx,
            rx_bytes: rx * 100,
            tx_packets: tx,
            tx_bytes: tx * 100,
            drops: vec![(DropReason::AuthFailed, auth_failed)],
            limits: Limits::default(),
            last_rx_seconds_ago: None,
            age_seconds: 0,
        }
    }

    fn report(sas: Vec<SaCounters>) -> CounterReport {
        CounterReport {
            sas,
            ..CounterReport::default()
        }
    }

    #[test]
    fn totals_grow_across_a_rekey_and_a_reconnect() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000);
        let names: HashMap<PeerId, String> = [(PeerId(1), "home.example".to_string())].into();
        let mut homes = Homes::new(KnownPeers::default());
        homes.up("home.example", t0);
        homes.observe(&report(vec![pair(1, 0x10, 5, 3, 1)]), &names, t0);
        homes.observe(&report(vec![pair(1, 0x10, 8, 4, 1)]), &names, t0);
        // Rekeyed: the old pair is gone, the new one starts from zero.
        homes.observe(&report(vec![pair(1, 0x20, 2, 2, 0)]), &names, t0);
        // Down and up again with another PeerId and a pair from zero.
        homes.down("home.example", "deleted by the peer", t0);
        let names: HashMap<PeerId, String> = [(PeerId(7), "home.example".to_string())].into();
        homes.up("home.example", t0);
        homes.observe(&report(vec![pair(7, 0x30, 1, 0, 2)]), &names, t0);
        let status = homes.status(&[]);
        let totals = &status[0].totals;
        assert_eq!((totals.rx_packets, totals.tx_packets), (8 + 2 + 1, 4 + 2));
        assert_eq!(totals.rx_bytes, 1100);
        assert_eq!(totals.drops[&DropReason::AuthFailed], 1 + 2);
    }

    #[test]
    fn a_home_that_went_down_says_when_it_was_last_seen_and_why() {
        let t = |s| UNIX_EPOCH + Duration::from_secs(s);
        let names: HashMap<PeerId, String> = [(PeerId(1), "home.example".to_string())].into();
        let mut homes = Homes::new(KnownPeers {
            configured: vec!["static.example".into()],
            registry_dir: None,
        });
        homes.up("home.example", t(100));
        homes.observe(&report(vec![pair(1, 0x10, 5, 0, 0)]), &names, t(150));
        // No packet received: last seen stays.
        homes.observe(&report(vec![pair(1, 0x10, 5, 9, 0)]), &names, t(170));
        homes.down("home.example", "liveness check failed", t(200));
        let status = homes.status(&[]);
        assert_eq!(status.len(), 2);
        let home = &status[0];
        assert_eq!(
            (home.name.as_str(), home.state.as_str()),
            ("home.example", "down")
        );
        assert_eq!((home.since, home.last_seen), (Some(200), Some(150)));
        assert_eq!(home.down_reason.as_deref(), Some("liveness check failed"));
        let never = &status[1];
        assert_eq!(
            (never.name.as_str(), never.state.as_str()),
            ("static.example", "never")
        );
        assert_eq!(never.last_seen, None);
    }

    /// The endpoint's view of one IKE SA of `name` with CHILD SAs in `states`.
    fn ike_sa(name: &str, states: &[&str]) -> PeerStatus {
        PeerStatus {
            peer: PeerId(1),
            name: name.into(),
            local: "192.0.2.1:4500".parse().unwrap(),
            remote: "198.51.100.2:4500".parse().unwrap(),
            nat: false,
            udp_forced: false,
            ike_spis: ("01".into(), "02".into()),
            ike_proposal: "aes128gcm16-prfsha256-x25519".into(),
            established_seconds: 60,
            last_moved_seconds_ago: None,
            moves: 0,
            prefixes: vec!["2001:db8:1::/64".parse().unwrap()],
            children: states
                .iter()
                .enumerate()
                .map(|(i, state)| hometun_ike::endpoint::ChildStatus {
                    spi_in: Spi(0x10 + i as u32),
                    spi_out: Spi(0x20 + i as u32),
                    proposal: "aes128gcm16".into(),
                    local_ts: vec!["::/0".parse().unwrap()],
                    remote_ts: vec!["2001:db8:1::/64".parse().unwrap()],
                    state: (*state).into(),
                })
                .collect(),
        }
    }

    /// An IKE SA whose only pair reached its hard limit carries nothing: the peer is not up
    /// (status and `hometun_peer_up` say `no-working-pair`) until a pair works again.
    #[test]
    fn a_peer_whose_pairs_all_expired_is_not_up() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000);
        let mut homes = Homes::new(KnownPeers::default());
        homes.up("home.example", t0);
        let state = |homes: &Homes, peers: &[PeerStatus]| homes.status(peers)[0].state.clone();
        assert_eq!(state(&homes, &[ike_sa("home.example", &["active"])]), "up");
        assert_eq!(
            state(&homes, &[ike_sa("home.example", &["rekeying"])]),
            "up",
            "a pair being rekeyed still carries traffic"
        );
        assert_eq!(
            state(&homes, &[ike_sa("home.example", &["expired"])]),
            "no-working-pair"
        );
        assert_eq!(
            state(&homes, &[ike_sa("home.example", &["expired", "deleting"])]),
            "no-working-pair"
        );
        assert_eq!(
            state(&homes, &[ike_sa("home.example", &[])]),
            "no-working-pair"
        );
        // The client re-made its IKE SA: the new one's pair works, the old one's expired.
        let both = [
            ike_sa("home.example", &["expired"]),
            ike_sa("home.example", &["active"]),
        ];
        assert_eq!(state(&homes, &both), "up");
        // Another peer's working pair does not count.
        let other = [
            ike_sa("home.example", &["expired"]),
            ike_sa("other.example", &["active"]),
        ];
        assert_eq!(homes.status(&other)[0].state, "no-working-pair");
    }
}
