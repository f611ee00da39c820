//! A deterministic two-peer simulation of the sans-IO IKE endpoint (quinn's `tests/util.rs`
//! `Pair`, smoltcp's `netsim`): a virtual clock, seeded randomness, a virtual network that can
//! drop, duplicate, delay and NAT datagrams, and a fake forwarder per side that records the SA
//! channel requests and reports counters like the real one.
//!
//! Certificates are made here with rcgen: a CA, a client leaf (`home.example`) and a server
//! leaf (`vps.example`), Ed25519 or P-256.

#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hometun_control::{
    ChildSa, CounterReport, Encapsulation, Event, Limits, PeerId, Request, SaCounters, Spi,
};
use hometun_ike::crypto::{CertificateVerifier, PeerIdentity, PrivateKey, VerifiedPeer};
use hometun_ike::endpoint::{
    Authorizer, CommonConfig, Endpoint, InitiatorConfig, Now, Output, Random, ResponderConfig,
    Transmit,
};
use hometun_ike::proposal::{EspProposal, IkeProposal};
use hometun_ike::settings::IkeRekeyPolicy;
use ipnet::Ipv6Net;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SanType,
    SerialNumber, SignatureAlgorithm, date_time_ymd,
};

pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The client's address behind the NAT.
pub const CLIENT_PRIVATE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The NAT's public address.
pub const NAT_PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
pub const CLIENT_NAME: &str = "home.example";
pub const SERVER_NAME: &str = "vps.example";

pub fn net(s: &str) -> Ipv6Net {
    s.parse().unwrap()
}

/// The client's prefix in the server's policy.
pub fn client_prefix() -> Ipv6Net {
    net("2001:db8:1::/64")
}

// ---------------------------------------------------------------------------------------------
// Randomness and time

/// SplitMix64: seeded, reproducible.
pub struct SeededRandom(u64);

impl SeededRandom {
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

/// The virtual clock: a fixed base Instant plus an offset; wall time 2028-01-01 plus the same.
#[derive(Clone, Copy)]
pub struct Clock {
    base: Instant,
    wall: SystemTime,
    pub offset: Duration,
}

impl Clock {
    pub fn new() -> Self {
        // The base is read once; every later time is base + offset (no clock inside).
        #[allow(clippy::disallowed_methods)]
        let base = Instant::now();
        Self {
            base,
            wall: wall_2028(),
            offset: Duration::ZERO,
        }
    }

    pub fn now(&self) -> Now {
        Now {
            mono: self.base + self.offset,
            wall: self.wall + self.offset,
        }
    }

    pub fn at(&self, mono: Instant) -> Duration {
        mono.saturating_duration_since(self.base)
    }
}

pub fn wall_2028() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(date_time_ymd(2028, 1, 1).unix_timestamp() as u64)
}

// ---------------------------------------------------------------------------------------------
// Certificates

pub struct Ca {
    pub params: CertificateParams,
    pub key: KeyPair,
    pub der: Vec<u8>,
    pub alg: &'static SignatureAlgorithm,
}

pub struct Leaf {
    pub der: Vec<u8>,
    pub key_der: Vec<u8>,
}

impl Leaf {
    pub fn private_key(&self) -> PrivateKey {
        PrivateKey::from_der(&self.key_der).unwrap()
    }
}

/// Validity of a leaf.
#[derive(Clone, Copy, Debug)]
pub enum Validity {
    /// 2026..2031 (valid in 2028).
    Good,
    /// 2020..2025.
    Expired,
    /// 2029..2031.
    NotYetValid,
    /// 2020..2035 (valid for real-clock tests too).
    Wide,
    /// 2026 until this day of 2028 (the simulation's wall clock starts at 2028-01-01).
    Until2028 { month: u8, day: u8 },
}

impl Ca {
    pub fn new(alg: &'static SignatureAlgorithm, cn: &str) -> Self {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2035, 1, 1);
        let der = params.self_signed(&key).unwrap().der().to_vec();
        Self {
            params,
            key,
            der,
            alg,
        }
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    pub fn leaf(&self, dns: &str, serial: u64, validity: Validity) -> Leaf {
        let key = KeyPair::generate_for(self.alg).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::DnsName(dns.try_into().unwrap())];
        params.distinguished_name.push(DnType::CommonName, dns);
        params.serial_number = Some(SerialNumber::from(serial));
        let (nb, na) = match validity {
            Validity::Good => ((2026, 1, 1), (2031, 1, 1)),
            Validity::Expired => ((2020, 1, 1), (2025, 1, 1)),
            Validity::NotYetValid => ((2029, 1, 1), (2031, 1, 1)),
            Validity::Wide => ((2020, 1, 1), (2035, 1, 1)),
            Validity::Until2028 { month, day } => ((2026, 1, 1), (2028, month, day)),
        };
        params.not_before = date_time_ymd(nb.0, nb.1, nb.2);
        params.not_after = date_time_ymd(na.0, na.1, na.2);
        let der = params
            .signed_by(&key, &self.issuer())
            .unwrap()
            .der()
            .to_vec();
        Leaf {
            der,
            key_der: key.serialize_der(),
        }
    }

    pub fn crl(&self, revoked: &[u64]) -> Vec<u8> {
        CertificateRevocationListParams {
            this_update: date_time_ymd(2027, 12, 1),
            next_update: date_time_ymd(2028, 2, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(*serial),
                    revocation_time: date_time_ymd(2027, 12, 1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer())
        .unwrap()
        .der()
        .to_vec()
    }

    pub fn verifier(&self) -> CertificateVerifier {
        CertificateVerifier::from_ca_der(&[&self.der]).unwrap()
    }
}

/// The static `[[clients]]` policy of a server: identity -> prefixes.
pub struct StaticAuthorizer(pub Vec<(String, Vec<Ipv6Net>)>);

impl Authorizer for StaticAuthorizer {
    fn prefixes(
        &self,
        identity: &PeerIdentity,
        _peer: &VerifiedPeer,
    ) -> Result<Vec<Ipv6Net>, String> {
        let name = identity.to_string();
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| format!("{name} is not a configured client"))
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// What a scenario varies.
#[derive(Clone)]
pub struct Setup {
    pub alg: &'static SignatureAlgorithm,
    pub client_ike: Vec<&'static str>,
    pub server_ike: Vec<&'static str>,
    pub client_esp: Vec<&'static str>,
    pub server_esp: Vec<&'static str>,
    pub client_prefixes: Vec<Ipv6Net>,
    pub server_allows: Vec<Ipv6Net>,
    pub nat: bool,
    pub dpd: Option<Duration>,
    pub server_dpd: Option<Duration>,
    pub cookie_threshold: u32,
    pub half_open_per_source: u32,
    pub half_open_total: u32,
    pub retransmit_base: Duration,
    pub retransmit_tries: u32,
    pub seed: u64,
    /// When each side rekeys its IKE SA (the daemon's default: after every CHILD SA rekey).
    pub ike_rekey: IkeRekeyPolicy,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            alg: &rcgen::PKCS_ED25519,
            client_ike: vec!["aes128gcm16-prfsha256-x25519"],
            server_ike: vec![
                "aes128gcm16-prfsha256-x25519",
                "aes256gcm16-prfsha256-ecp256",
            ],
            client_esp: vec!["aes128gcm16"],
            server_esp: vec!["aes128gcm16", "aes256gcm16"],
            client_prefixes: vec![client_prefix()],
            server_allows: vec![client_prefix()],
            nat: false,
            dpd: Some(Duration::from_secs(30)),
            server_dpd: None,
            cookie_threshold: 10,
            half_open_per_source: 5,
            half_open_total: 50,
            retransmit_base: Duration::from_secs(1),
            retransmit_tries: 4,
            seed: 7,
            ike_rekey: IkeRekeyPolicy::default(),
        }
    }
}

pub struct Pki {
    pub ca: Ca,
    pub client: Leaf,
    pub server: Leaf,
    /// A CRL the server checks client certificates against.
    pub server_crl: Option<Vec<u8>>,
    /// The CA the client trusts, if not `ca` (a server from another CA).
    pub client_trusts: Option<CertificateVerifierSource>,
}

/// Where a verifier's CA comes from.
pub enum CertificateVerifierSource {
    Der(Vec<u8>),
}

impl Pki {
    pub fn new(alg: &'static SignatureAlgorithm) -> Self {
        let ca = Ca::new(alg, "hometun test CA");
        let client = ca.leaf(CLIENT_NAME, 100, Validity::Good);
        let server = ca.leaf(SERVER_NAME, 101, Validity::Good);
        Self {
            ca,
            client,
            server,
            server_crl: None,
            client_trusts: None,
        }
    }
}

pub fn limits() -> Limits {
    Limits {
        soft_bytes: Some(1 << 31),
        hard_bytes: Some(3 << 30),
        soft_packets: Some(1 << 30),
        hard_packets: Some(3 << 29),
        soft_seconds: None,
        hard_seconds: None,
    }
}

#[allow(clippy::too_many_arguments)]
pub fn common(
    setup: &Setup,
    chain: Vec<Vec<u8>>,
    key: PrivateKey,
    name: &str,
    verifier: CertificateVerifier,
    ike: &[&str],
    esp: &[&str],
    dpd: Option<Duration>,
) -> CommonConfig {
    CommonConfig {
        chain,
        key: std::sync::Arc::new(key),
        identity: PeerIdentity::Fqdn(name.into()),
        verifier: std::sync::Arc::new(verifier),
        ike_proposals: ike.iter().map(|p| IkeProposal::parse(p).unwrap()).collect(),
        esp_proposals: esp.iter().map(|p| EspProposal::parse(p).unwrap()).collect(),
        limits: limits(),
        ike_rekey: setup.ike_rekey,
        replay_window: 1024,
        nat_keepalive_seconds: 20,
        retransmit_base: setup.retransmit_base,
        retransmit_tries: setup.retransmit_tries,
        dpd,
        ike_port: 500,
        nat_port: 4500,
    }
}

pub fn server_config(setup: &Setup, pki: &Pki) -> ResponderConfig {
    ResponderConfig {
        common: common(
            setup,
            vec![pki.server.der.clone()],
            pki.server.private_key(),
            SERVER_NAME,
            {
                let mut verifier = pki.ca.verifier();
                if let Some(crl) = &pki.server_crl {
                    verifier.add_crls(crl).unwrap();
                }
                verifier
            },
            &setup.server_ike,
            &setup.server_esp,
            setup.server_dpd,
        ),
        local_addr: SERVER_ADDR,
        authorizer: Box::new(StaticAuthorizer(vec![(
            CLIENT_NAME.into(),
            setup.server_allows.clone(),
        )])),
        cookie_threshold: setup.cookie_threshold,
        half_open_per_source: setup.half_open_per_source,
        half_open_total: setup.half_open_total,
    }
}

pub fn client_config(setup: &Setup, pki: &Pki) -> InitiatorConfig {
    InitiatorConfig {
        common: common(
            setup,
            vec![pki.client.der.clone()],
            pki.client.private_key(),
            CLIENT_NAME,
            match &pki.client_trusts {
                Some(CertificateVerifierSource::Der(der)) => {
                    CertificateVerifier::from_ca_der(&[der]).unwrap()
                }
                None => pki.ca.verifier(),
            },
            &setup.client_ike,
            &setup.client_esp,
            setup.dpd,
        ),
        server: SocketAddrV4::new(SERVER_ADDR, 500),
        server_identity: PeerIdentity::Fqdn(SERVER_NAME.into()),
        local_addr: if setup.nat {
            CLIENT_PRIVATE
        } else {
            CLIENT_ADDR
        },
        local_prefixes: setup.client_prefixes.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// The fake forwarder

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

// ---------------------------------------------------------------------------------------------
// The network

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
    pub held_jobs: Vec<hometun_ike::sa::auth_job::AuthJob>,
}

impl Node {
    /// A server node: its forwarder requires grants, as a server's with a peer pool does.
    fn server(endpoint: Endpoint) -> Self {
        let mut node = Self::new(endpoint);
        node.forwarder.require_grants = true;
        node
    }

    fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            forwarder: FakeForwarder::default(),
            outputs: Vec::new(),
            up: true,
            hold_jobs: false,
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
            while let Some(job) = node.endpoint.poll_auth_job() {
                if node.hold_jobs {
                    node.held_jobs.push(*job);
                } else {
                    let at = self.clock.now();
                    node.endpoint.handle_auth_done(at, job.run(), &mut self.rng);
                }
            }
            // The forwarder answers each request; IKE hears of a refused install.
            loop {
                let mut refused = Vec::new();
                while let Some(output) = node.endpoint.poll_output() {
                    if let Output::Forwarder(request) = &output
                        && let Err(reason) = node.forwarder.apply(request.clone(), now)
                        && let Request::Install(sa) = request
                    {
                        refused.push((sa.spi_in, reason));
                    }
                    node.outputs.push((now, output));
                }
                if refused.is_empty() {
                    break;
                }
                let at = self.clock.now();
                for (spi, reason) in refused {
                    node.endpoint
                        .handle_install_refused(at, spi, &reason, &mut self.rng);
                }
            }
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

    fn next_event(&self) -> Option<Duration> {
        let packets = self.in_flight.iter().map(|d| d.deliver_at).min();
        let timers = [&self.client, &self.server]
            .into_iter()
            .filter(|n| n.up)
            .filter_map(|n| n.endpoint.poll_timeout())
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
                .handle_auth_done(now, job.run(), &mut self.rng);
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

// ---------------------------------------------------------------------------------------------
// Hostile peers

/// A [`Tamper`] from a closure: changes the inner payloads of each protected message a node
/// sends (a misbehaving peer built from the real state machine).
pub struct TamperWith<F>(pub F);

impl<F> hometun_ike::io::Tamper for TamperWith<F>
where
    F: FnMut(&hometun_ike::wire::Header, &mut Vec<hometun_ike::wire::Payload>) + Send,
{
    fn outgoing(
        &mut self,
        header: &hometun_ike::wire::Header,
        payloads: &mut Vec<hometun_ike::wire::Payload>,
    ) {
        (self.0)(header, payloads)
    }
}

impl Node {
    /// Makes this node misbehave: `f` changes the inner payloads of every protected message.
    pub fn tamper<F>(&mut self, f: F)
    where
        F: FnMut(&hometun_ike::wire::Header, &mut Vec<hometun_ike::wire::Payload>) + Send + 'static,
    {
        self.endpoint.set_tamper(Box::new(TamperWith(f)));
    }

    /// The remote selectors of every pair this node's forwarder was asked to install.
    pub fn installed_remote_selectors(&self) -> Vec<Ipv6Net> {
        self.forwarder
            .installs()
            .iter()
            .flat_map(|sa| sa.remote_ts.clone())
            .collect()
    }
}

/// A TS payload of these prefixes.
pub fn ts(prefixes: &[&str]) -> hometun_ike::wire::TrafficSelectors {
    let nets: Vec<Ipv6Net> = prefixes.iter().map(|p| net(p)).collect();
    hometun_ike::selectors::to_payload(&nets)
}
