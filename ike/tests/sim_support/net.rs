//! The virtual network and the two peers on it.

use super::*;

/// A datagram on the virtual wire, as sent (before any NAT).
#[derive(Debug, Clone)]
pub struct Datagram {
    pub from_client: bool,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub data: Vec<u8>,
    pub deliver_at: Duration,
}

impl Datagram {
    /// The IKE header's exchange type, response flag and message ID, for filters.
    pub fn ike(&self) -> Option<(u8, bool, u32)> {
        let h = hometun_ike::wire::Header::parse(&self.data).ok()?;
        Some((h.exchange_type.0, h.flags.response(), h.message_id))
    }

    pub fn is(&self, exchange: hometun_ike::wire::ExchangeType, response: bool) -> bool {
        self.ike()
            .is_some_and(|(e, r, _)| e == exchange.0 && r == response)
    }
}

/// What the network does with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    Drop,
    Duplicate,
    Delay(Duration),
}

pub type Filter = Box<dyn FnMut(&Datagram) -> Fate>;

pub struct Node {
    pub endpoint: Endpoint,
    pub forwarder: FakeForwarder,
    pub outputs: Vec<(Duration, Output)>,
    /// Whether the node is up (a crashed node loses its datagrams).
    pub up: bool,
    /// With `Endpoint::defer_crypto`: signature jobs handed out are kept here instead of being
    /// run at once (`Pair::run_held_jobs` runs them).
    pub hold_jobs: bool,
    /// The same for the key derivation jobs after IKE_SA_INIT.
    pub hold_key_jobs: bool,
    pub held_jobs: Vec<hometun_ike::sa::crypto_job::CryptoJob>,
}

impl Node {
    /// A server node: its forwarder requires grants, as a server's with a peer pool does.
    pub fn server(endpoint: Endpoint) -> Self {
        let mut node = Self::new(endpoint);
        node.forwarder.require_grants = true;
        node
    }

    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            forwarder: FakeForwarder::default(),
            outputs: Vec::new(),
            up: true,
            hold_jobs: false,
            hold_key_jobs: false,
            held_jobs: Vec::new(),
        }
    }

    pub fn refusals(&self) -> Vec<&str> {
        self.outputs
            .iter()
            .filter_map(|(_, o)| match o {
                Output::Refused { reason, .. } => Some(reason.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn peer_ups(&self) -> usize {
        self.outputs
            .iter()
            .filter(|(_, o)| matches!(o, Output::PeerUp { .. }))
            .count()
    }

    pub fn peer_downs(&self) -> Vec<&str> {
        self.outputs
            .iter()
            .filter_map(|(_, o)| match o {
                Output::PeerDown { reason, .. } => Some(reason.as_str()),
                _ => None,
            })
            .collect()
    }
}

pub struct Pair {
    pub setup: Setup,
    pub pki: Pki,
    pub clock: Clock,
    pub rng: SeededRandom,
    pub client: Node,
    pub server: Node,
    pub in_flight: Vec<Datagram>,
    pub filter: Filter,
    /// Every datagram sent, with its fate.
    pub trace: Vec<(Datagram, Fate)>,
    /// NAT mappings: client private port -> public port.
    pub latency: Duration,
    next_counters: Duration,
}

impl Pair {
    /// A server and a client (which starts connecting at once).
    pub fn new(setup: Setup) -> Self {
        let pki = Pki::new(setup.alg);
        Self::with_pki(setup, pki)
    }

    pub fn with_pki(setup: Setup, pki: Pki) -> Self {
        let clock = Clock::new();
        let mut rng = SeededRandom::new(setup.seed);
        let server = Endpoint::responder(server_config(&setup, &pki), clock.now(), &mut rng);
        let client = Endpoint::initiator(client_config(&setup, &pki), clock.now(), &mut rng);
        Self::from_endpoints(setup, pki, clock, rng, client, server)
    }

    pub fn from_endpoints(
        setup: Setup,
        pki: Pki,
        clock: Clock,
        rng: SeededRandom,
        client: Endpoint,
        server: Endpoint,
    ) -> Self {
        let mut pair = Self {
            setup,
            pki,
            clock,
            rng,
            client: Node::new(client),
            server: Node::server(server),
            in_flight: Vec::new(),
            filter: Box::new(|_| Fate::Deliver),
            trace: Vec::new(),
            latency: Duration::from_millis(10),
            next_counters: Duration::from_secs(1),
        };
        pair.flush();
        pair
    }

    pub fn now(&self) -> Now {
        self.clock.now()
    }

    /// Replaces the client with a new endpoint (a restart).
    pub fn restart_client(&mut self) {
        let config = client_config(&self.setup, &self.pki);
        let endpoint = Endpoint::initiator(config, self.clock.now(), &mut self.rng);
        self.client = Node::new(endpoint);
        self.flush();
    }

    /// Replaces the server with a new endpoint (a restart).
    pub fn restart_server(&mut self) {
        let config = server_config(&self.setup, &self.pki);
        let endpoint = Endpoint::responder(config, self.clock.now(), &mut self.rng);
        self.server = Node::server(endpoint);
        self.flush();
    }

    /// Moves outputs and transmits of both endpoints into forwarders and the network.
    pub fn flush(&mut self) {
        let now = self.clock.offset;
        for from_client in [true, false] {
            let node = if from_client {
                &mut self.client
            } else {
                &mut self.server
            };
            // Signature jobs handed out (Endpoint::defer_crypto) run at once, or wait.
            while let Some(job) = node.endpoint.poll_crypto_job() {
                // Key pairs made ahead belong to no SA: they are never held.
                let hold = if job.is_key_pairs() {
                    false
                } else if job.is_key_derivation() {
                    node.hold_key_jobs
                } else {
                    node.hold_jobs
                };
                if hold {
                    node.held_jobs.push(*job);
                } else {
                    let at = self.clock.now();
                    node.endpoint
                        .handle_crypto_done(at, job.run(), &mut self.rng);
                }
            }
            // The forwarder answers each request; IKE hears of a refused install.
            let outputs = &mut node.outputs;
            drain_outputs(
                &mut node.endpoint,
                &mut node.forwarder,
                self.clock.now(),
                now,
                &mut self.rng,
                |output| outputs.push((now, output)),
            );
            let mut sent = Vec::new();
            while let Some(t) = node.endpoint.poll_transmit() {
                sent.push(t);
            }
            for t in sent {
                self.send(from_client, t);
            }
        }
    }

    fn send(&mut self, from_client: bool, t: Transmit) {
        let mut d = Datagram {
            from_client,
            src: t.local,
            dst: t.remote,
            data: t.data,
            deliver_at: self.clock.offset + self.latency,
        };
        let fate = (self.filter)(&d);
        self.trace.push((d.clone(), fate));
        match fate {
            Fate::Drop => {}
            Fate::Deliver => self.in_flight.push(d),
            Fate::Duplicate => {
                self.in_flight.push(d.clone());
                d.deliver_at += Duration::from_millis(1);
                self.in_flight.push(d);
            }
            Fate::Delay(extra) => {
                d.deliver_at += extra;
                self.in_flight.push(d);
            }
        }
    }

    /// The NAT: the client's private address and ports map to the public address.
    fn nat_out(&self, a: SocketAddrV4) -> SocketAddrV4 {
        if self.setup.nat && *a.ip() == CLIENT_PRIVATE {
            SocketAddrV4::new(NAT_PUBLIC, 40000 + a.port())
        } else {
            a
        }
    }

    fn nat_in(&self, a: SocketAddrV4) -> Option<SocketAddrV4> {
        if self.setup.nat && *a.ip() == NAT_PUBLIC {
            let port = a.port().checked_sub(40000)?;
            Some(SocketAddrV4::new(CLIENT_PRIVATE, port))
        } else {
            Some(a)
        }
    }

    fn deliver(&mut self, d: Datagram) {
        let now = self.clock.now();
        if d.from_client {
            if !self.server.up {
                return;
            }
            let src = self.nat_out(d.src);
            self.server
                .endpoint
                .handle_datagram(now, d.dst, src, &d.data, &mut self.rng);
        } else {
            if !self.client.up {
                return;
            }
            let Some(dst) = self.nat_in(d.dst) else {
                return;
            };
            self.client
                .endpoint
                .handle_datagram(now, dst, d.src, &d.data, &mut self.rng);
        }
        self.flush();
    }

    fn next_event(&mut self) -> Option<Duration> {
        let packets = self.in_flight.iter().map(|d| d.deliver_at).min();
        let timers = [&mut self.client, &mut self.server]
            .into_iter()
            .filter(|n| n.up)
            .filter_map(|n| {
                n.endpoint.check_sa_index();
                n.endpoint.poll_timeout()
            })
            .map(|t| self.clock.at(t))
            .min();
        [packets, timers, Some(self.next_counters)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs the simulation for `d` of virtual time: datagrams, timers, and the forwarder's
    /// counters every second (as the driver polls them).
    pub fn advance(&mut self, d: Duration) {
        let target = self.clock.offset + d;
        let mut spins = 0u32;
        let mut last = None;
        while let Some(t) = self.next_event() {
            if t > target {
                break;
            }
            // A timer that stays due after it fired would spin a real driver too.
            if last == Some(t) {
                spins += 1;
                assert!(
                    spins < 10_000,
                    "a timer stays due at {t:?}: client {:?}, server {:?}",
                    self.client
                        .endpoint
                        .poll_timeout()
                        .map(|x| self.clock.at(x)),
                    self.server
                        .endpoint
                        .poll_timeout()
                        .map(|x| self.clock.at(x))
                );
            } else {
                spins = 0;
                last = Some(t);
            }
            self.clock.offset = self.clock.offset.max(t);
            // Datagrams due, in order.
            self.in_flight.sort_by_key(|d| d.deliver_at);
            while self
                .in_flight
                .first()
                .is_some_and(|d| d.deliver_at <= self.clock.offset)
            {
                let d = self.in_flight.remove(0);
                self.deliver(d);
            }
            let now = self.clock.now();
            for node in [&mut self.client, &mut self.server] {
                if node.up && node.endpoint.poll_timeout().is_some_and(|t| t <= now.mono) {
                    node.endpoint.handle_timeout(now, &mut self.rng);
                    // What was due is done: a timer left in the past makes the driver turn
                    // again at once (the fuzz targets check the same).
                    let left = node.endpoint.poll_timeout();
                    assert!(
                        left.is_none_or(|t| t > now.mono),
                        "a timer is still due after handle_timeout at {:?}",
                        self.clock.offset
                    );
                }
            }
            if self.clock.offset >= self.next_counters {
                self.next_counters = self.clock.offset + Duration::from_secs(1);
                for node in [&mut self.client, &mut self.server] {
                    if node.up {
                        let report = node.forwarder.report(self.clock.offset);
                        node.endpoint.handle_counters(now, &report, &mut self.rng);
                    }
                }
            }
            self.flush();
        }
        self.clock.offset = target;
    }

    /// Delivers everything in flight (timers fire only as far as the datagrams take).
    pub fn settle(&mut self) {
        self.advance(Duration::from_millis(500));
    }

    /// One ESP packet from one side to the other on the sender's outbound pair: the
    /// receiver's pair with that SPI counts it (as the forwarder would).
    pub fn esp(&mut self, from_client: bool) -> bool {
        let now = self.clock.offset;
        let (tx, rx) = if from_client {
            (&mut self.client, &mut self.server)
        } else {
            (&mut self.server, &mut self.client)
        };
        let Some(out) = tx.forwarder.outbound() else {
            return false;
        };
        let spi = out.sa.spi_out.0;
        let key = out.sa.key_out.clone();
        let spi_in = out.sa.spi_in.0;
        if let Some(i) = tx.forwarder.installed.get_mut(&spi_in) {
            i.tx_packets += 1;
        }
        match rx.forwarder.installed.get_mut(&spi) {
            Some(i) if i.sa.key_in == key => {
                i.rx_packets += 1;
                i.last_rx = Some(now);
                true
            }
            _ => false,
        }
    }

    /// One ESP packet from the client, as [`Pair::esp`]; a server forwarder without that SPI
    /// reports it to its IKE endpoint (`Event::UnknownSpi`, from the client's outer address as
    /// the server sees it), as the real one does.
    pub fn esp_from_client(&mut self) -> bool {
        if self.esp(true) {
            return true;
        }
        let Some(out) = self.client.forwarder.outbound() else {
            return false;
        };
        let (spi, endpoint) = (out.sa.spi_out, out.sa.endpoint);
        let (remote, port) = match endpoint.encap {
            hometun_control::Encapsulation::Raw => (endpoint.local, None),
            hometun_control::Encapsulation::Udp { local_port, .. } => {
                let seen = self.nat_out(SocketAddrV4::new(endpoint.local, local_port));
                (*seen.ip(), Some(seen.port()))
            }
        };
        if self.server.up {
            self.event(false, Event::UnknownSpi { spi, remote, port });
        }
        false
    }

    /// Runs the server's held signature jobs (newest first when `reverse`) and hands each
    /// result back.
    pub fn run_held_jobs(&mut self, reverse: bool) {
        let mut jobs = std::mem::take(&mut self.server.held_jobs);
        if reverse {
            jobs.reverse();
        }
        for job in jobs {
            let now = self.clock.now();
            self.server
                .endpoint
                .handle_crypto_done(now, job.run(), &mut self.rng);
        }
        self.flush();
    }

    /// A forwarder event at one side.
    pub fn event(&mut self, at_client: bool, event: Event) {
        let now = self.clock.now();
        let node = if at_client {
            &mut self.client
        } else {
            &mut self.server
        };
        node.endpoint
            .handle_forwarder_event(now, &event, &mut self.rng);
        self.flush();
    }

    pub fn soft_limit(&mut self, at_client: bool, spi_in: u32) {
        let peer = self.peer_of(at_client, spi_in);
        self.event(
            at_client,
            Event::SoftLimit {
                peer,
                spi_in: Spi(spi_in),
                direction: hometun_control::Direction::Outbound,
                kind: hometun_control::LimitKind::Bytes,
            },
        );
    }

    fn peer_of(&self, at_client: bool, spi_in: u32) -> PeerId {
        let node = if at_client {
            &self.client
        } else {
            &self.server
        };
        node.forwarder
            .installed
            .get(&spi_in)
            .map_or(PeerId(0), |i| i.sa.peer)
    }

    /// The home's certificate renewed (same name, serial `serial`) and its settings reloaded
    /// with it: it re-authenticates, make-before-break.
    pub fn renew_client_certificate(&mut self, serial: u64) {
        self.pki.client = self.pki.ca.leaf(CLIENT_NAME, serial, Validity::Good);
        let config = client_config(&self.setup, &self.pki);
        let now = self.clock.now();
        self.client
            .endpoint
            .reload(
                now,
                &mut self.rng,
                hometun_ike::endpoint::reload::Reload {
                    common: config.common,
                    responder: None,
                },
            )
            .unwrap();
        self.flush();
    }

    /// A home that sends no INFORMATIONAL request from now on: it never deletes an IKE SA or
    /// a CHILD SA (nor checks liveness).
    pub fn home_never_deletes(&mut self) {
        self.filter = Box::new(|d| {
            if d.from_client && d.is(hometun_ike::wire::ExchangeType::INFORMATIONAL, false) {
                Fate::Drop
            } else {
                Fate::Deliver
            }
        });
    }

    /// Asserts that both forwarders hold exactly the same pairs, crossed: each pair of one
    /// side has its mirror on the other (SPIs and keys swapped, selectors swapped). Returns
    /// the client's pairs.
    pub fn assert_matching_pairs(&self) -> Vec<ChildSa> {
        let c = &self.client.forwarder.installed;
        let s = &self.server.forwarder.installed;
        assert_eq!(
            c.len(),
            s.len(),
            "client has {:?}, server has {:?}",
            c.keys().map(|k| format!("{k:08x}")).collect::<Vec<_>>(),
            s.keys().map(|k| format!("{k:08x}")).collect::<Vec<_>>()
        );
        for i in c.values() {
            let sa = &i.sa;
            let mirror = &s
                .get(&sa.spi_out.0)
                .unwrap_or_else(|| panic!("server lacks SA {:08x}", sa.spi_out.0))
                .sa;
            assert_eq!(mirror.spi_out, sa.spi_in);
            assert_eq!(mirror.key_in, sa.key_out, "client key_out == server key_in");
            assert_eq!(mirror.key_out, sa.key_in, "client key_in == server key_out");
            assert_ne!(sa.key_in, sa.key_out);
            assert_eq!(mirror.local_ts, sa.remote_ts);
            assert_eq!(mirror.remote_ts, sa.local_ts);
            assert_eq!(mirror.esn, sa.esn);
            assert_eq!(
                matches!(mirror.endpoint.encap, Encapsulation::Udp { .. }),
                matches!(sa.endpoint.encap, Encapsulation::Udp { .. })
            );
        }
        c.values().map(|i| i.sa.clone()).collect()
    }

    /// Runs until the client's IKE SA is up (or panics after `limit`).
    pub fn connect(&mut self) {
        self.advance(Duration::from_secs(2));
        assert_eq!(
            self.client.peer_ups(),
            1,
            "client outputs: {:?}",
            self.client.outputs
        );
        assert_eq!(
            self.server.peer_ups(),
            1,
            "server outputs: {:?}",
            self.server.outputs
        );
    }

    /// IKE datagrams seen on the wire of one exchange type and direction.
    pub fn count(&self, exchange: hometun_ike::wire::ExchangeType, response: bool) -> usize {
        self.trace
            .iter()
            .filter(|(d, _)| d.is(exchange, response))
            .count()
    }
}
