//! Two real IKE endpoints, a home and a server, on a virtual network and a virtual clock, each
//! with a fake forwarder that carries out its SA channel requests (the server's refuses installs
//! outside a peer's grant, as the real one does). One side may be hostile ([`Hostile`]). The
//! fuzz targets decide the order of events; this module carries them out and checks, after
//! each one, what must hold whatever a peer sends (see [`World::check`]).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hometun_control::{Direction, Encapsulation, Event, LimitKind, PeerId, Request, Spi};
use hometun_ike::endpoint::{Endpoint, Output, Transmit};

use crate::credentials;
pub use crate::endpoints::{Config, SERVER_ADDR, Side, home_endpoint, server_endpoint};
use crate::hostile::{Hostile, remember};
pub use hometun_ike::sim::{Clock, FakeForwarder, InstalledSa, SeededRandom, drain_outputs};

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
/// How long a pair whose DELETE completed keeps its inbound SA (`DELETED_INBOUND_LINGER` in
/// hometun-ike).
const LINGER_AT_MOST: Duration = Duration::from_secs(2);
/// At most this many established IKE SAs of one identity on the server, plus one being
/// replaced by a rekey.
pub const MAX_IKE_SAS: usize = 3 + 1;
/// At most this many prefixes on either side of an installed pair (each is a route and an
/// outbound table entry in the forwarder).
pub const MAX_SELECTORS: usize = 16;

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
                // Packets of a full-size segment: byte-count rekeys come within a scenario.
                packet_bytes: 1000,
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
                let peer_ups = &mut node.peer_ups;
                drain_outputs(
                    &mut node.endpoint,
                    &mut node.forwarder,
                    at,
                    now,
                    rng,
                    |output| {
                        if trace {
                            eprintln!("  {side:?} at {now:?}: {output:?}");
                        }
                        if matches!(output, Output::PeerUp { .. }) {
                            *peer_ups += 1;
                        }
                    },
                );
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
    fn next_event(&mut self, network: bool) -> Duration {
        let packets = network
            .then(|| self.in_flight.iter().map(|d| d.at).min())
            .flatten();
        let timers = [&mut self.home, &mut self.server]
            .into_iter()
            .filter_map(|n| {
                // The SA table's index of deadlines and peers must agree with its SAs.
                n.endpoint.check_sa_index();
                n.endpoint.poll_timeout()
            })
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

    /// After a quiet time: the status and the forwarder agree both ways, pair for pair, but
    /// for the pairs whose DELETE completed in the last 2 s (`DELETED_INBOUND_LINGER`): those
    /// are out of the status and keep their inbound SA for packets in flight until then. The
    /// peer's last rekey may have come just before the end of the quiet time.
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
            let lingering = node.endpoint.lingering_inbound();
            for (spi, until) in &lingering {
                assert!(
                    *until > now.mono && *until <= now.mono + LINGER_AT_MOST,
                    "{side:?}: the deleted pair {spi:08x} lingers until {:?} from now",
                    until.checked_duration_since(now.mono)
                );
                assert!(
                    !in_status.contains(spi),
                    "{side:?}: the deleted pair {spi:08x} is still in the status"
                );
            }
            let expected: BTreeSet<u32> = in_status
                .iter()
                .copied()
                .chain(lingering.iter().map(|(spi, _)| *spi))
                .collect();
            let installed: BTreeSet<u32> = node.forwarder.installed.keys().copied().collect();
            assert_eq!(
                expected, installed,
                "{side:?}: CHILD SAs in the status and deleted ones lingering (left) and pairs installed (right) differ after settling"
            );
        }
    }

    /// Shuts both endpoints down: every pair is deleted and every SPI released.
    pub fn close_and_check(&mut self) {
        let now = self.clock.now();
        self.home.endpoint.close(now, &mut self.rng);
        self.server.endpoint.close(now, &mut self.rng);
        self.flush();
        let now = self.clock.now();
        self.home.endpoint.close_now(now, &mut self.rng);
        self.server.endpoint.close_now(now, &mut self.rng);
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
