//! Two real IKE endpoints, a home and a server, on a virtual network and a virtual clock, each
//! with a fake forwarder that carries out its SA channel requests (the server's refuses installs
//! outside a peer's grant, as the real one does). One side may be hostile ([`Hostile`]). The
//! fuzz targets decide the order of events; this module carries them out and checks, after
//! each one, what must hold whatever a peer sends (see [`World::check`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use hometun_control::{
    ChildSa, CounterReport, Direction, Encapsulation, Event, LimitKind, Limits, PeerId, Request,
    SaCounters, Spi,
};
use hometun_ike::crypto::{PeerIdentity, VerifiedPeer};
use hometun_ike::endpoint::{
    Authorizer, CommonConfig, Endpoint, InitiatorConfig, Now, Output, Random, ResponderConfig,
    Transmit,
};
use hometun_ike::proposal::{EspProposal, IkeProposal};
use hometun_ike::settings::{IkeRekeyPolicy, PrefixRefusal};
use ipnet::Ipv6Net;

use crate::credentials::{self, HOME_NAME, OTHER_NAME, SERVER_NAME, credentials};
use crate::hostile::{Hostile, remember};

/// The server's address.
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Addresses the home may have (it moves between them).
pub const HOME_ADDRS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(198, 51, 100, 2),
    Ipv4Addr::new(198, 51, 100, 3),
    Ipv4Addr::new(198, 51, 100, 4),
];
/// The NAT's public address (when the home is behind one).
pub const NAT_PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
/// Where forged datagrams claim to come from.
pub const FORGED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);
/// The network's one-way latency.
const LATENCY: Duration = Duration::from_millis(10);
/// At most this many datagrams kept for replays.
const CAPTURED: usize = 64;
/// At most this many steps in one call of [`World::advance`]: more means two endpoints keep
/// each other busy without end.
const MAX_STEPS: usize = 20_000;
/// At most this many CHILD SA pairs per IKE SA (the endpoint's own bound).
pub const MAX_CHILDREN: usize = 4;
/// At most this many established IKE SAs of one identity on the server, plus one being
/// replaced by a rekey.
pub const MAX_IKE_SAS: usize = 3 + 1;
/// At most this many prefixes on either side of an installed pair (each is a route and an
/// outbound table entry in the forwarder).
pub const MAX_SELECTORS: usize = 16;

/// A side of the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client.
    Home,
    /// The server.
    Server,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Home => Side::Server,
            Side::Server => Side::Home,
        }
    }
}

/// SplitMix64: the endpoints' randomness, seeded by the input.
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

/// The virtual clock: a base instant read once, plus an offset the events move.
#[derive(Clone, Copy)]
pub struct Clock {
    base: Instant,
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
            offset: Duration::ZERO,
        }
    }

    /// The time as the endpoints see it.
    pub fn now(&self) -> Now {
        Now {
            mono: self.base + self.offset,
            wall: credentials::wall_start() + self.offset,
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

/// The server's `[[clients]]` policy.
struct Policy;

impl Authorizer for Policy {
    fn prefixes(
        &self,
        identity: &PeerIdentity,
        _: &VerifiedPeer,
    ) -> Result<Vec<Ipv6Net>, PrefixRefusal> {
        match identity {
            PeerIdentity::Fqdn(name) if name == HOME_NAME => Ok(vec![credentials::home_prefix()]),
            PeerIdentity::Fqdn(name) if name == OTHER_NAME => Ok(vec![credentials::other_prefix()]),
            other => Err(PrefixRefusal::NoPrefix(other.clone())),
        }
    }
}

/// What the scenario varies, from one input byte.
#[derive(Debug, Clone)]
pub struct Config {
    /// A NAT in front of the home (UDP encapsulation, port 4500).
    pub nat: bool,
    /// The home's IKE proposals.
    pub home_ike: Vec<&'static str>,
    /// The home's ESP proposals.
    pub home_esp: Vec<&'static str>,
    /// The server's ESP proposals.
    pub server_esp: Vec<&'static str>,
    /// When the IKE SA is rekeyed.
    pub ike_rekey: IkeRekeyPolicy,
    /// Liveness checks on the server too.
    pub server_dpd: bool,
    /// Both sides send a packet on their newest pair every second.
    pub traffic: bool,
    /// The hostile home claims MOBIKE in IKE_AUTH.
    pub claim_mobike: bool,
}

impl Config {
    /// The configuration a byte picks.
    pub fn from_byte(b: u8) -> Self {
        let (home_esp, server_esp) = match (b >> 1) & 3 {
            0 => (vec!["aes128gcm16"], vec!["aes128gcm16", "aes256gcm16"]),
            1 => (
                vec!["aes128gcm16-x25519-ecp256"],
                vec!["aes128gcm16-x25519-ecp256", "aes256gcm16-x25519-ecp256"],
            ),
            2 => (
                vec!["aes256gcm16-esn-x25519-modpnone"],
                vec!["aes256gcm16-esn-noesn", "aes128gcm16"],
            ),
            _ => (
                vec!["aes128gcm16-ecp256"],
                vec!["aes128gcm16-x25519-modpnone", "aes256gcm16-x25519"],
            ),
        };
        let home_ike = match (b >> 3) & 1 {
            0 => vec!["aes128gcm16-prfsha256-x25519"],
            _ => vec!["aes256gcm16-prfsha256-ecp256-x25519"],
        };
        Config {
            nat: b & 1 != 0,
            home_ike,
            home_esp,
            server_esp,
            ike_rekey: IkeRekeyPolicy {
                after_child_rekeys: u32::from((b >> 4) & 1),
                bytes: None,
                seconds: ((b >> 4) & 1 == 0).then_some(600),
            },
            server_dpd: b & 0x20 != 0,
            traffic: b & 0x40 != 0,
            claim_mobike: b & 0x80 != 0,
        }
    }
}

fn limits() -> Limits {
    Limits {
        soft_bytes: Some(1 << 31),
        hard_bytes: Some(3 << 30),
        soft_packets: Some(1 << 30),
        hard_packets: Some(3 << 29),
        soft_seconds: None,
        hard_seconds: None,
    }
}

fn common(config: &Config, side: Side) -> CommonConfig {
    let creds = credentials();
    let (leaf, name, verifier, ike, esp, dpd) = match side {
        Side::Home => (
            &creds.home,
            HOME_NAME,
            creds.home_verifier(),
            config.home_ike.clone(),
            config.home_esp.clone(),
            Some(Duration::from_secs(30)),
        ),
        Side::Server => (
            &creds.server,
            SERVER_NAME,
            creds.server_verifier(),
            vec![
                "aes128gcm16-prfsha256-x25519",
                "aes256gcm16-prfsha256-ecp256",
            ],
            config.server_esp.clone(),
            config.server_dpd.then_some(Duration::from_secs(45)),
        ),
    };
    CommonConfig {
        chain: vec![leaf.der.clone()],
        key: std::sync::Arc::new(leaf.private_key()),
        identity: PeerIdentity::Fqdn(name.into()),
        verifier: std::sync::Arc::new(verifier),
        ike_proposals: ike
            .iter()
            .map(|p| IkeProposal::parse(p).expect("a proposal of the harness"))
            .collect(),
        esp_proposals: esp
            .iter()
            .map(|p| EspProposal::parse(p).expect("a proposal of the harness"))
            .collect(),
        limits: limits(),
        ike_rekey: config.ike_rekey,
        replay_window: 1024,
        nat_keepalive_seconds: 20,
        retransmit_base: Duration::from_secs(1),
        retransmit_tries: 4,
        dpd,
        reconnect_max: Duration::from_secs(30),
        ike_port: 500,
        nat_port: 4500,
    }
}

/// A new server endpoint.
pub fn server_endpoint(config: &Config, now: Now, rng: &mut dyn Random) -> Endpoint {
    Endpoint::responder(
        ResponderConfig {
            common: common(config, Side::Server),
            local_addr: SERVER_ADDR,
            authorizer: Box::new(Policy),
            cookie_threshold: 10,
            half_open_per_source: 5,
            half_open_total: 50,
        },
        now,
        rng,
    )
}

/// A new home endpoint (it starts connecting at once) at `local`.
pub fn home_endpoint(config: &Config, local: Ipv4Addr, now: Now, rng: &mut dyn Random) -> Endpoint {
    Endpoint::initiator(
        InitiatorConfig {
            common: common(config, Side::Home),
            server: SocketAddrV4::new(SERVER_ADDR, 500),
            server_identity: PeerIdentity::Fqdn(SERVER_NAME.into()),
            fallback_servers: Vec::new(),
            local_addr: local,
            local_prefixes: vec![credentials::home_prefix()],
        },
        now,
        rng,
    )
}

/// One installed pair and its traffic.
#[derive(Debug, Clone)]
pub struct Installed {
    /// What was installed.
    pub sa: ChildSa,
    /// Packets received on it.
    pub rx_packets: u64,
    /// Packets sent on it.
    pub tx_packets: u64,
    /// When it last received one.
    pub last_rx: Option<Duration>,
    /// When it was installed.
    pub installed_at: Duration,
}

/// Carries out SA channel requests like the forwarder and reports counters like it.
#[derive(Debug, Default)]
pub struct FakeForwarder {
    /// Installed pairs by inbound SPI.
    pub installed: BTreeMap<u32, Installed>,
    /// Inbound SPIs in install order (the newest carries outbound traffic).
    pub order: Vec<u32>,
    /// Grants by peer (`Request::AllowPeer`).
    pub grants: BTreeMap<u64, Vec<Ipv6Net>>,
    /// Refuse installs outside a grant (a server's forwarder with a peer pool).
    pub require_grants: bool,
    /// Refuse this many of the next installs.
    pub refuse_installs: u32,
    /// Installs asked for since the harness last looked (refused or not).
    pub asked: Vec<ChildSa>,
    /// Installs asked for in all.
    pub installs: u64,
}

impl FakeForwarder {
    /// Carries out one request; `Err` for a refused install.
    pub fn apply(&mut self, request: &Request, now: Duration) -> Result<(), String> {
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
                self.installs += 1;
                assert!(
                    !self.installed.contains_key(&sa.spi_in.0),
                    "install of SPI {:08x}, which an installed pair still uses",
                    sa.spi_in.0
                );
                if self.refuse_installs > 0 {
                    self.refuse_installs -= 1;
                    return Err("refused by the harness".into());
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
                self.order.push(sa.spi_in.0);
                self.installed.insert(
                    sa.spi_in.0,
                    Installed {
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

    /// The pair outbound traffic uses: the newest.
    pub fn outbound(&self) -> Option<&Installed> {
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
                    rx_bytes: i.rx_packets * 1000,
                    tx_packets: i.tx_packets,
                    tx_bytes: i.tx_packets * 1000,
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
}

/// One endpoint and its forwarder.
pub struct Node {
    /// The state machine.
    pub endpoint: Endpoint,
    /// Its forwarder.
    pub forwarder: FakeForwarder,
    /// IKE SAs that came up.
    pub peer_ups: u64,
}

impl Node {
    fn new(endpoint: Endpoint, require_grants: bool) -> Self {
        Self {
            endpoint,
            forwarder: FakeForwarder {
                require_grants,
                ..FakeForwarder::default()
            },
            peer_ups: 0,
        }
    }
}

/// A datagram on the wire, as sent.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// Who it is for.
    pub to: Side,
    /// Its source as sent (before the NAT).
    pub src: SocketAddrV4,
    /// Its destination.
    pub dst: SocketAddrV4,
    /// The IKE message.
    pub data: Vec<u8>,
    /// When the network delivers it.
    pub at: Duration,
}

/// The two endpoints, the network and the clock.
pub struct World {
    /// Virtual time.
    pub clock: Clock,
    /// The endpoints' randomness.
    pub rng: SeededRandom,
    /// The client.
    pub home: Node,
    /// The server.
    pub server: Node,
    /// The side whose peer is hostile.
    pub victim: Side,
    /// The hostile side's tamper hook (shared with the endpoint).
    pub hostile: Hostile,
    /// What the scenario is.
    pub config: Config,
    /// Datagrams on their way.
    pub in_flight: Vec<Datagram>,
    /// The last datagrams sent, for replays.
    pub captured: Vec<Datagram>,
    /// The home's current (private, behind the NAT) address.
    pub home_addr: Ipv4Addr,
    /// The NAT's public port for the home's port p: `nat_base + p`.
    pub nat_base: u16,
    next_counters: Duration,
    /// Print what happens (FUZZ_TRACE set).
    pub trace: bool,
}

/// Whether FUZZ_TRACE is set (read once).
pub fn tracing_on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FUZZ_TRACE").is_some())
}

impl World {
    /// A home and a server; the peer of `victim` follows `script`. The home starts connecting
    /// at once; nothing is delivered yet.
    pub fn new(config: Config, seed: u64, victim: Side, script: &[u8]) -> Self {
        let trace = tracing_on();
        let clock = Clock::new();
        let mut rng = SeededRandom::new(seed);
        let hostile = Hostile::new(script, trace);
        hostile.state().claim_mobike = config.claim_mobike && victim == Side::Server;
        let mut server = Node::new(server_endpoint(&config, clock.now(), &mut rng), true);
        let home_addr = HOME_ADDRS[0];
        let mut home = Node::new(
            home_endpoint(&config, home_addr, clock.now(), &mut rng),
            false,
        );
        match victim {
            Side::Server => home.endpoint.set_tamper(Box::new(hostile.clone())),
            Side::Home => server.endpoint.set_tamper(Box::new(hostile.clone())),
        }
        let mut world = World {
            clock,
            rng,
            home,
            server,
            victim,
            hostile,
            config,
            in_flight: Vec::new(),
            captured: Vec::new(),
            home_addr,
            nat_base: 40000,
            next_counters: Duration::from_secs(1),
            trace,
        };
        world.flush();
        world
    }

    /// The node of a side.
    pub fn node(&mut self, side: Side) -> &mut Node {
        match side {
            Side::Home => &mut self.home,
            Side::Server => &mut self.server,
        }
    }

    /// The node of a side, to look at.
    pub fn node_ref(&self, side: Side) -> &Node {
        match side {
            Side::Home => &self.home,
            Side::Server => &self.server,
        }
    }

    /// Moves both endpoints' outputs into their forwarders (a refused install goes back to
    /// the endpoint) and their datagrams onto the wire; checks each install asked for.
    pub fn flush(&mut self) {
        let now = self.clock.offset;
        let trace = self.trace;
        for side in [Side::Home, Side::Server] {
            let at = self.clock.now();
            let mut sent = Vec::new();
            {
                let rng = &mut self.rng;
                let node = match side {
                    Side::Home => &mut self.home,
                    Side::Server => &mut self.server,
                };
                loop {
                    let mut refused = Vec::new();
                    while let Some(output) = node.endpoint.poll_output() {
                        if trace {
                            eprintln!("  {side:?} at {now:?}: {output:?}");
                        }
                        match &output {
                            Output::Forwarder(request) => {
                                if let Err(reason) = node.forwarder.apply(request, now)
                                    && let Request::Install(sa) = request
                                {
                                    refused.push((sa.spi_in, reason));
                                }
                            }
                            Output::PeerUp { .. } => node.peer_ups += 1,
                            _ => {}
                        }
                    }
                    if refused.is_empty() {
                        break;
                    }
                    for (spi, reason) in refused {
                        node.endpoint.handle_install_refused(at, spi, &reason, rng);
                    }
                }
                while let Some(t) = node.endpoint.poll_transmit() {
                    sent.push(t);
                }
            }
            self.check_installs(side);
            for t in sent {
                self.send(side, t);
            }
        }
        self.share_spis();
    }

    /// Every install asked for stays inside what the home may use: on the server the remote
    /// selectors inside the home's prefix (the only identity its key proves), on the home the
    /// local ones.
    fn check_installs(&mut self, side: Side) {
        let home = credentials::home_prefix();
        let asked = std::mem::take(&mut self.node(side).forwarder.asked);
        for sa in asked {
            let (mine, what) = match side {
                Side::Server => (&sa.remote_ts, "the server installs remote"),
                Side::Home => (&sa.local_ts, "the home installs local"),
            };
            assert!(!mine.is_empty(), "{what} selectors: none");
            for (ts, side) in [(&sa.local_ts, "local"), (&sa.remote_ts, "remote")] {
                assert!(
                    ts.len() <= MAX_SELECTORS,
                    "{side} selectors of {} prefixes installed (pair {:08x}): a peer makes us \
                     install routes by the hundred",
                    ts.len(),
                    sa.spi_in.0
                );
            }
            for ts in mine {
                assert!(
                    home.contains(ts),
                    "{what} selector {ts}, outside the home's {home} (pair {:08x})",
                    sa.spi_in.0
                );
            }
        }
    }

    /// The hostile peer learns the SPIs in use (it may name them in DELETE and REKEY_SA).
    fn share_spis(&mut self) {
        let spis: Vec<u32> = self
            .home
            .forwarder
            .installed
            .values()
            .chain(self.server.forwarder.installed.values())
            .flat_map(|i| [i.sa.spi_in.0, i.sa.spi_out.0])
            .collect();
        let mut state = self.hostile.state();
        for spi in spis {
            remember(&mut state.known.esp_spis, spi);
        }
    }

    fn send(&mut self, from: Side, t: Transmit) {
        let d = Datagram {
            to: from.other(),
            src: t.local,
            dst: t.remote,
            data: t.data,
            at: self.clock.offset + LATENCY,
        };
        if self.captured.len() >= CAPTURED {
            self.captured.remove(0);
        }
        self.captured.push(d.clone());
        self.in_flight.push(d);
    }

    /// The home's source as the server sees it (through the NAT, if there is one).
    pub fn nat_out(&self, a: SocketAddrV4) -> SocketAddrV4 {
        if self.config.nat && *a.ip() == self.home_addr {
            SocketAddrV4::new(NAT_PUBLIC, self.nat_base.wrapping_add(a.port()))
        } else {
            a
        }
    }

    fn nat_in(&self, a: SocketAddrV4) -> Option<SocketAddrV4> {
        if self.config.nat {
            if *a.ip() != NAT_PUBLIC {
                return None;
            }
            let port = a.port().checked_sub(self.nat_base)?;
            Some(SocketAddrV4::new(self.home_addr, port))
        } else if *a.ip() == self.home_addr {
            Some(a)
        } else {
            None
        }
    }

    /// Delivers a datagram now: to the server from the home's (NATed) source unless `forged`
    /// gives another; to the home only if it is addressed where the home is.
    pub fn deliver(&mut self, d: &Datagram, forged: Option<SocketAddrV4>) {
        let now = self.clock.now();
        if self.trace {
            let h = hometun_ike::wire::Header::parse(&d.data).ok();
            eprintln!(
                "  deliver to {:?} at {:?}: {} -> {}{}: {:?}",
                d.to,
                self.clock.offset,
                d.src,
                d.dst,
                forged
                    .map(|f| format!(" (as from {f})"))
                    .unwrap_or_default(),
                h.map(|h| (h.exchange_type, h.flags.response(), h.message_id))
            );
        }
        match d.to {
            Side::Server => {
                if *d.dst.ip() != SERVER_ADDR {
                    return;
                }
                let src = forged.unwrap_or_else(|| self.nat_out(d.src));
                self.server
                    .endpoint
                    .handle_datagram(now, d.dst, src, &d.data, &mut self.rng);
            }
            Side::Home => {
                let Some(dst) = self.nat_in(d.dst) else {
                    return;
                };
                let src = forged.unwrap_or(d.src);
                self.home
                    .endpoint
                    .handle_datagram(now, dst, src, &d.data, &mut self.rng);
            }
        }
        self.flush();
    }

    /// Fires the timers that are due on both sides. After `handle_timeout` nothing may still
    /// be due: a timer that stays in the past would spin the daemon's loop.
    pub fn fire_timers(&mut self) {
        let now = self.clock.now();
        for side in [Side::Home, Side::Server] {
            let node = match side {
                Side::Home => &mut self.home,
                Side::Server => &mut self.server,
            };
            if node.endpoint.poll_timeout().is_some_and(|t| t <= now.mono) {
                node.endpoint.handle_timeout(now, &mut self.rng);
                if let Some(t) = node.endpoint.poll_timeout() {
                    assert!(
                        t > now.mono,
                        "{side:?}: a timer stays due after handle_timeout at {:?} (due {:?})",
                        self.clock.offset,
                        self.clock.at(t)
                    );
                }
            }
        }
        self.flush();
    }

    /// The forwarders' counters reach their endpoints (the driver does it every second).
    pub fn report_counters(&mut self) {
        let now = self.clock.now();
        let offset = self.clock.offset;
        for node in [&mut self.home, &mut self.server] {
            let report = node.forwarder.report(offset);
            node.endpoint.handle_counters(now, &report, &mut self.rng);
        }
        self.flush();
    }

    /// One ESP packet from `from` on its newest pair; the other side's pair with that SPI and
    /// key counts it.
    pub fn esp(&mut self, from: Side) {
        let now = self.clock.offset;
        let Some(out) = self.node_ref(from).forwarder.outbound() else {
            return;
        };
        let (spi_out, key, spi_in) = (out.sa.spi_out.0, out.sa.key_out.clone(), out.sa.spi_in.0);
        if let Some(i) = self.node(from).forwarder.installed.get_mut(&spi_in) {
            i.tx_packets += 1;
        }
        if let Some(i) = self
            .node(from.other())
            .forwarder
            .installed
            .get_mut(&spi_out)
            && i.sa.key_in == key
        {
            i.rx_packets += 1;
            i.last_rx = Some(now);
        }
    }

    /// The earliest thing that happens: a datagram due (if `network`), a timer, the counters.
    fn next_event(&self, network: bool) -> Duration {
        let packets = network
            .then(|| self.in_flight.iter().map(|d| d.at).min())
            .flatten();
        let timers = [&self.home, &self.server]
            .into_iter()
            .filter_map(|n| n.endpoint.poll_timeout())
            .map(|t| self.clock.at(t))
            .min();
        [packets, timers, Some(self.next_counters)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.next_counters)
    }

    /// Lets `d` of virtual time pass: timers fire, counters are reported every second, and
    /// with `network` the datagrams in flight arrive when due (else they wait).
    pub fn advance(&mut self, d: Duration, network: bool) {
        let target = self.clock.offset + d;
        for _ in 0..MAX_STEPS {
            let t = self.next_event(network);
            if t > target {
                self.clock.offset = target;
                return;
            }
            self.clock.offset = self.clock.offset.max(t);
            if network {
                while let Some(i) = self
                    .in_flight
                    .iter()
                    .position(|d| d.at <= self.clock.offset)
                {
                    let d = self.in_flight.remove(i);
                    self.deliver(&d, None);
                }
            }
            self.fire_timers();
            if self.clock.offset >= self.next_counters {
                self.next_counters = self.clock.offset + Duration::from_secs(1);
                if self.config.traffic {
                    self.esp(Side::Home);
                    self.esp(Side::Server);
                }
                self.report_counters();
            }
        }
        panic!(
            "{MAX_STEPS} events within {d:?} at {:?}: the endpoints keep each other busy",
            self.clock.offset
        );
    }

    /// Delivers everything in flight in order, and what it causes, for `d`.
    pub fn run(&mut self, d: Duration) {
        self.advance(d, true);
    }

    /// A forwarder limit event for the pair at `index` (of those installed) on `side`.
    pub fn limit(&mut self, side: Side, index: u8, kind: u8) {
        let pairs: Vec<(u32, PeerId)> = self
            .node_ref(side)
            .forwarder
            .installed
            .values()
            .map(|i| (i.sa.spi_in.0, i.sa.peer))
            .collect();
        let Some(&(spi, peer)) = pairs.get(usize::from(index) % pairs.len().max(1)) else {
            return;
        };
        let (peer, spi_in) = (peer, Spi(spi));
        let event = match kind % 4 {
            0 | 1 => Event::SoftLimit {
                peer,
                spi_in,
                direction: Direction::Outbound,
                kind: LimitKind::Bytes,
            },
            2 => Event::HardLimit {
                peer,
                spi_in,
                direction: Direction::Inbound,
                kind: LimitKind::Packets,
            },
            _ => Event::SeqExhausted { peer, spi_in },
        };
        let now = self.clock.now();
        let rng = &mut self.rng;
        match side {
            Side::Home => self.home.endpoint.handle_forwarder_event(now, &event, rng),
            Side::Server => self
                .server
                .endpoint
                .handle_forwarder_event(now, &event, rng),
        }
        self.flush();
    }

    /// The home's address changes to `HOME_ADDRS[index]` (its forwarder saw it on netlink).
    pub fn home_moves(&mut self, index: u8) {
        let addr = HOME_ADDRS[usize::from(index) % HOME_ADDRS.len()];
        self.home_addr = addr;
        let now = self.clock.now();
        self.home
            .endpoint
            .handle_local_address(now, addr, &mut self.rng);
        self.flush();
    }

    /// The server's forwarder moved the home's pairs to where the home is now (it checked an
    /// override NA and the return routability): it tells IKE.
    pub fn server_forwarder_moves_home(&mut self) {
        let Some(first) = self.server.forwarder.installed.values().next() else {
            return;
        };
        let (peer, old) = (first.sa.peer, first.sa.endpoint);
        let seen = self.nat_out(SocketAddrV4::new(self.home_addr, 4500));
        let new = hometun_control::Endpoint {
            local: old.local,
            remote: *seen.ip(),
            encap: match old.encap {
                Encapsulation::Udp { local_port, .. } => Encapsulation::Udp {
                    local_port,
                    remote_port: seen.port(),
                },
                Encapsulation::Raw => Encapsulation::Raw,
            },
        };
        let now = self.clock.offset;
        let _ = self.server.forwarder.apply(
            &Request::UpdateEndpoint {
                peer,
                endpoint: new,
            },
            now,
        );
        let event = Event::EndpointMoved { peer, old, new };
        let at = self.clock.now();
        self.server
            .endpoint
            .handle_forwarder_event(at, &event, &mut self.rng);
        self.flush();
    }

    /// The hostile side starts over: a new endpoint with the same tamper hook (a home without
    /// INITIAL_CONTACT when `reauthenticate`, which makes it a re-authentication).
    pub fn restart_hostile(&mut self, reauthenticate: bool) {
        let hostile_side = self.victim.other();
        let now = self.clock.now();
        let mut endpoint = match hostile_side {
            Side::Home => {
                self.hostile.state().omit_initial_contact = reauthenticate;
                home_endpoint(&self.config, self.home_addr, now, &mut self.rng)
            }
            Side::Server => server_endpoint(&self.config, now, &mut self.rng),
        };
        endpoint.set_tamper(Box::new(self.hostile.clone()));
        let node = self.node(hostile_side);
        let old = std::mem::replace(&mut node.endpoint, endpoint);
        drop(old);
        node.forwarder = FakeForwarder {
            require_grants: hostile_side == Side::Server,
            ..FakeForwarder::default()
        };
        self.flush();
    }

    /// Checks what must hold after every event:
    /// - no CHILD SA in an endpoint's status without its pair installed in its forwarder;
    /// - every installed pair's SPI is reserved (a released SPI could be handed out again);
    /// - at most [`MAX_CHILDREN`] live pairs per IKE SA (twice as many installed, counting
    ///   the retired ones that linger for packets in flight), and on the server at most
    ///   [`MAX_IKE_SAS`] IKE SAs beyond the half-open ones (one identity can reach it).
    pub fn check(&self) {
        let now = self.clock.now();
        for side in [Side::Home, Side::Server] {
            let node = self.node_ref(side);
            let status = node.endpoint.status(now);
            for peer in &status {
                assert!(
                    peer.children.len() <= MAX_CHILDREN,
                    "{side:?}: {} CHILD SAs on one IKE SA: {:?}",
                    peer.children.len(),
                    peer.children
                );
                for child in &peer.children {
                    let installed = node.forwarder.installed.get(&child.spi_in.0);
                    assert!(
                        installed.is_some_and(|i| i.sa.spi_out == child.spi_out),
                        "{side:?}: CHILD SA {:08x} ({}) in the status but not installed",
                        child.spi_in.0,
                        child.state
                    );
                }
            }
            let (_, esp_reserved) = node.endpoint.spis_reserved();
            assert!(
                esp_reserved >= node.forwarder.installed.len(),
                "{side:?}: {} pairs installed, {esp_reserved} SPIs reserved",
                node.forwarder.installed.len()
            );
        }
        let counters = self.server.endpoint.counters();
        assert!(
            counters.ike_sas - counters.half_open <= MAX_IKE_SAS,
            "the server holds {} IKE SAs of one home ({} half open)",
            counters.ike_sas,
            counters.half_open
        );
        for side in [Side::Home, Side::Server] {
            let node = self.node_ref(side);
            let sas = node.endpoint.counters().ike_sas.max(1);
            // Beyond the live pairs (at most MAX_CHILDREN per IKE SA, checked above), a pair
            // whose DELETE completed keeps its inbound SA for 2 s for packets in flight
            // (`DELETED_INBOUND_LINGER`); `check_settled` sees them go. A hostile peer that makes
            // rekeys collide can retire a few at once, never more than as many again.
            assert!(
                node.forwarder.installed.len() <= 2 * MAX_CHILDREN * sas,
                "{side:?}: {} pairs installed for {sas} IKE SAs",
                node.forwarder.installed.len()
            );
        }
    }

    /// After a quiet time: the status and the forwarder agree both ways, pair for pair.
    pub fn check_settled(&self) {
        let now = self.clock.now();
        for side in [Side::Home, Side::Server] {
            let node = self.node_ref(side);
            let in_status: BTreeSet<u32> = node
                .endpoint
                .status(now)
                .iter()
                .flat_map(|p| p.children.iter().map(|c| c.spi_in.0))
                .collect();
            let installed: BTreeSet<u32> = node.forwarder.installed.keys().copied().collect();
            assert_eq!(
                in_status, installed,
                "{side:?}: CHILD SAs in the status (left) and pairs installed (right) differ after settling"
            );
        }
    }

    /// Shuts both endpoints down: every pair is deleted and every SPI released.
    pub fn close_and_check(&mut self) {
        let now = self.clock.now();
        self.home.endpoint.close(now, &mut self.rng);
        self.server.endpoint.close(now, &mut self.rng);
        self.flush();
        for side in [Side::Home, Side::Server] {
            let node = self.node_ref(side);
            assert!(
                node.forwarder.installed.is_empty(),
                "{side:?}: pairs {:x?} still installed after close",
                node.forwarder.installed.keys().collect::<Vec<_>>()
            );
            assert_eq!(
                node.endpoint.spis_reserved(),
                (0, 0),
                "{side:?}: SPIs (IKE, ESP) still reserved after close"
            );
            assert_eq!(node.endpoint.counters().ike_sas, 0);
        }
    }
}
