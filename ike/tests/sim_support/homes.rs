//! Several homes on one server, each with its own certificate, identity, outer address and
//! prefixes, on one virtual network (no loss, no NAT): what one enrolled home can do to another.

use super::*;

use hometun_ike::endpoint::reload::{Reload, ResponderReload};

/// [`HomeSpec::identity`] for a home that states its certificate's subject.
pub const SUBJECT: &str = "(the certificate's subject)";

/// A certificate's subject as a DER SEQUENCE, as ID_DER_ASN1_DN carries it.
fn subject_der(certificate: &[u8]) -> Vec<u8> {
    let der = rustls_pki_types::CertificateDer::from(certificate);
    let cert = webpki::EndEntityCert::try_from(&der).expect("the CA's leaf parses");
    let contents = cert.subject();
    // webpki gives the contents; put the SEQUENCE header back (short or long form).
    let mut out = vec![0x30];
    match contents.len() {
        len @ 0..=0x7f => out.push(len as u8),
        len @ 0x80..=0xff => out.extend([0x81, len as u8]),
        len => out.extend([0x82, (len >> 8) as u8, len as u8]),
    }
    out.extend_from_slice(contents);
    out
}

/// One home of a [`Homes`] setup.
#[derive(Clone, Debug)]
pub struct HomeSpec {
    /// The dNSName (and CN) of its certificate.
    pub certificate_name: &'static str,
    /// The identity it states in IDi: a DNS name, or [`SUBJECT`] for its certificate's
    /// subject (ID_DER_ASN1_DN).
    pub identity: &'static str,
    /// Its outer address.
    pub addr: Ipv4Addr,
    /// The prefixes it asks for (TSi).
    pub prefixes: Vec<Ipv6Net>,
}

impl HomeSpec {
    /// A home whose certificate and IDi both say `name`.
    pub fn new(name: &'static str, addr: Ipv4Addr, prefix: &str) -> Self {
        Self {
            certificate_name: name,
            identity: name,
            addr,
            prefixes: vec![net(prefix)],
        }
    }
}

/// Which node: the server or home N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    Server,
    Home(usize),
}

/// A server and its homes; homes start connecting when added.
pub struct Homes {
    pub setup: Setup,
    pub pki: Pki,
    pub clock: Clock,
    pub rng: SeededRandom,
    pub server: Node,
    pub homes: Vec<Node>,
    pub specs: Vec<HomeSpec>,
    /// Every datagram sent (`from_client`: not from the server).
    pub trace: Vec<Datagram>,
    in_flight: Vec<Datagram>,
    next_counters: Duration,
}

impl Homes {
    /// A server whose `[[clients]]` are `clients` (identity, prefixes), with no home yet.
    pub fn new(setup: Setup, clients: &[(&str, &str)]) -> Self {
        let pki = Pki::new(setup.alg);
        let clock = Clock::new();
        let mut rng = SeededRandom::new(setup.seed);
        let mut config = server_config(&setup, &pki);
        config.authorizer = Box::new(authorizer(clients));
        let server = Node::server(Endpoint::responder(config, clock.now(), &mut rng));
        Self {
            setup,
            pki,
            clock,
            rng,
            server,
            homes: Vec::new(),
            specs: Vec::new(),
            trace: Vec::new(),
            in_flight: Vec::new(),
            next_counters: Duration::from_secs(1),
        }
    }

    /// Adds a home with a certificate of the CA for its `certificate_name`; it starts
    /// connecting at once. Returns its index.
    pub fn add_home(&mut self, spec: HomeSpec) -> usize {
        let index = self.homes.len();
        let leaf = self
            .pki
            .ca
            .leaf(spec.certificate_name, 200 + index as u64, Validity::Good);
        let mut config = client_config(&self.setup, &self.pki);
        config.common.chain = vec![leaf.der.clone()];
        config.common.key = std::sync::Arc::new(leaf.private_key());
        config.common.identity = if spec.identity == SUBJECT {
            PeerIdentity::DerAsn1Dn(subject_der(&leaf.der))
        } else {
            PeerIdentity::Fqdn(spec.identity.into())
        };
        config.local_addr = spec.addr;
        config.local_prefixes = spec.prefixes.clone();
        let endpoint = Endpoint::initiator(config, self.clock.now(), &mut self.rng);
        self.homes.push(Node::new(endpoint));
        self.specs.push(spec);
        self.flush(Who::Home(index));
        index
    }

    pub fn node(&mut self, who: Who) -> &mut Node {
        match who {
            Who::Server => &mut self.server,
            Who::Home(i) => &mut self.homes[i],
        }
    }

    fn all(&self) -> Vec<Who> {
        let mut all = vec![Who::Server];
        all.extend((0..self.homes.len()).map(Who::Home));
        all
    }

    /// Moves a node's outputs into its forwarder and its transmits onto the network.
    pub fn flush(&mut self, who: Who) {
        let now = self.clock.offset;
        let at = self.clock.now();
        let mut sent = Vec::new();
        {
            let rng = &mut self.rng;
            let node = match who {
                Who::Server => &mut self.server,
                Who::Home(i) => &mut self.homes[i],
            };
            while let Some(job) = node.endpoint.poll_crypto_job() {
                node.endpoint.handle_crypto_done(at, job.run(), rng);
            }
            let outputs = &mut node.outputs;
            drain_outputs(
                &mut node.endpoint,
                &mut node.forwarder,
                at,
                now,
                rng,
                |output| outputs.push((now, output)),
            );
            while let Some(t) = node.endpoint.poll_transmit() {
                sent.push(t);
            }
        }
        for t in sent {
            let d = Datagram {
                from_client: who != Who::Server,
                src: t.local,
                dst: t.remote,
                data: t.data,
                deliver_at: now + Duration::from_millis(10),
            };
            self.trace.push(d.clone());
            self.in_flight.push(d);
        }
    }

    fn deliver(&mut self, d: Datagram) {
        let to = if *d.dst.ip() == SERVER_ADDR {
            Who::Server
        } else {
            match self.specs.iter().position(|s| s.addr == *d.dst.ip()) {
                Some(i) => Who::Home(i),
                None => return,
            }
        };
        let now = self.clock.now();
        let rng = &mut self.rng;
        let node = match to {
            Who::Server => &mut self.server,
            Who::Home(i) => &mut self.homes[i],
        };
        node.endpoint
            .handle_datagram(now, d.dst, d.src, &d.data, rng);
        self.flush(to);
    }

    fn next_event(&mut self) -> Option<Duration> {
        let packets = self.in_flight.iter().map(|d| d.deliver_at).min();
        let timers = std::iter::once(&mut self.server)
            .chain(self.homes.iter_mut())
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

    /// Runs the network for `d` of virtual time: datagrams, timers and counter reports.
    pub fn advance(&mut self, d: Duration) {
        let target = self.clock.offset + d;
        while let Some(t) = self.next_event() {
            if t > target {
                break;
            }
            self.clock.offset = self.clock.offset.max(t);
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
            let counters = self.clock.offset >= self.next_counters;
            if counters {
                self.next_counters = self.clock.offset + Duration::from_secs(1);
            }
            for who in self.all() {
                let offset = self.clock.offset;
                let rng = &mut self.rng;
                let node = match who {
                    Who::Server => &mut self.server,
                    Who::Home(i) => &mut self.homes[i],
                };
                if node.endpoint.poll_timeout().is_some_and(|t| t <= now.mono) {
                    node.endpoint.handle_timeout(now, rng);
                }
                if counters {
                    let report = node.forwarder.report(offset);
                    node.endpoint.handle_counters(now, &report, rng);
                }
                self.flush(who);
            }
        }
        self.clock.offset = target;
    }

    /// The server's inbound SPIs of the pairs installed for a peer named `name`.
    pub fn server_pairs_of(&self, name: &str) -> Vec<u32> {
        let Some(peer) = self.server_peer_id(name) else {
            return Vec::new();
        };
        self.server
            .forwarder
            .installed
            .values()
            .filter(|i| i.sa.peer == peer)
            .map(|i| i.sa.spi_in.0)
            .collect()
    }

    /// The peer ID the server gave the latest IKE SA of `name`.
    pub fn server_peer_id(&self, name: &str) -> Option<PeerId> {
        self.server.outputs.iter().rev().find_map(|(_, o)| match o {
            Output::PeerUp { peer, name: n, .. } if n == name => Some(*peer),
            _ => None,
        })
    }

    /// Reloads the server with new `[[clients]]` (everything else as it was); returns the
    /// peers it cut off, as `Endpoint::reload` does.
    pub fn reload_server(&mut self, clients: &[(&str, &str)]) -> Vec<String> {
        let config = server_config(&self.setup, &self.pki);
        let reload = Reload {
            common: config.common,
            responder: Some(ResponderReload {
                authorizer: Box::new(authorizer(clients)),
                cookie_threshold: config.cookie_threshold,
                half_open_per_source: config.half_open_per_source,
                half_open_total: config.half_open_total,
                new_ike_sas_per_identity: config.new_ike_sas_per_identity,
            }),
        };
        let now = self.clock.now();
        let refused = self
            .server
            .endpoint
            .reload(now, &mut self.rng, reload)
            .unwrap();
        self.flush(Who::Server);
        refused
    }
}

/// `[[clients]]`: each identity with one prefix.
fn authorizer(clients: &[(&str, &str)]) -> StaticAuthorizer {
    StaticAuthorizer(
        clients
            .iter()
            .map(|(name, prefix)| (name.to_string(), vec![net(prefix)]))
            .collect(),
    )
}
