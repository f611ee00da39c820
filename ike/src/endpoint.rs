//! The sans-IO IKE endpoint: every IKE SA of one daemon, the SPI demultiplexer, half-open
//! tracking and the cookie secret. Inputs go in through `handle_*`, outputs come out of
//! `poll_*` (DESIGN.md style 2); time and randomness are arguments (style 1).
//!
//! The contract with the driver is /work/notes/ike-api.md.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant, SystemTime};

/// Randomness for the protocol code: the driver passes the OS generator, tests a seeded one.
pub trait Random {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

/// The time, as the driver read it: monotonic for timers, wall clock for certificate validity.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// Monotonic time, for timers.
    pub mono: Instant,
    /// Wall clock, for certificate validity.
    pub wall: SystemTime,
}

/// An IKE message to send. When `local.port()` is the NAT-T port (4500) the driver sends it
/// through the forwarder (`Request::SendIke`, which adds the non-ESP marker); otherwise from
/// its own UDP socket bound to that port (500).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Our address and port to send from.
    pub local: SocketAddrV4,
    /// The peer's address and port.
    pub remote: SocketAddrV4,
    /// The IKE message, without the non-ESP marker.
    pub data: Vec<u8>,
}

/// What the endpoint asks of the world besides sending IKE messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A request for the forwarder: Install, Delete, UpdateEndpoint.
    Forwarder(hometun_control::Request),
    /// An IKE SA with a peer came up (one log line at info).
    PeerUp {
        /// The peer.
        peer: hometun_control::PeerId,
        /// Its identity.
        name: String,
        /// Its address and port.
        remote: SocketAddrV4,
    },
    /// An IKE SA went away: deleted, dead peer, replaced by INITIAL_CONTACT (one line at info).
    PeerDown {
        /// The peer.
        peer: hometun_control::PeerId,
        /// Its identity.
        name: String,
        /// Why.
        reason: String,
    },
    /// A peer was refused (AUTHENTICATION_FAILED, TS_UNACCEPTABLE, NO_PROPOSAL_CHOSEN...):
    /// one line at warn naming the remote address, the identity if known, and why.
    Refused {
        /// The peer's address and port.
        remote: SocketAddrV4,
        /// Its identity, if it got that far.
        name: Option<String>,
        /// Why, in one line.
        reason: String,
    },
    /// A CHILD SA was rekeyed (one line at info).
    Rekeyed {
        /// The peer.
        peer: hometun_control::PeerId,
        /// Inbound SPI of the pair that is replaced.
        old_spi_in: hometun_control::Spi,
        /// Inbound SPI of its successor.
        new_spi_in: hometun_control::Spi,
    },
}

/// Settings both roles share.
pub struct CommonConfig {
    /// Our certificate chain (DER, end-entity first).
    pub chain: Vec<Vec<u8>>,
    /// Our private key (the end-entity certificate's).
    pub key: crate::crypto::PrivateKey,
    /// Our IKE identity (ID_FQDN normally), which must be in our certificate.
    pub identity: crate::crypto::PeerIdentity,
    /// Checks the peer's certificate chain, dates, CRL and identity.
    pub verifier: crate::crypto::CertificateVerifier,
    /// IKE proposals in preference order (parsed from the config's strongSwan-style strings by
    /// [`crate::proposal::IkeProposal::parse`]).
    pub ike_proposals: Vec<crate::proposal::IkeProposal>,
    /// ESP proposals in preference order ([`crate::proposal::EspProposal::parse`]).
    pub esp_proposals: Vec<crate::proposal::EspProposal>,
    /// CHILD SA lifetimes (bytes/packets; time only if configured).
    pub limits: hometun_control::Limits,
    /// Anti-replay window of our inbound SAs, in packets.
    pub replay_window: u32,
    /// NAT keepalive interval when we are behind a NAT.
    pub nat_keepalive_seconds: u32,
    /// Retransmission: first timeout, doubled per try.
    pub retransmit_base: Duration,
    /// Retransmission: tries before the peer is dead.
    pub retransmit_tries: u32,
    /// Liveness check after this long without anything from the peer (IKE or ESP).
    pub dpd: Option<Duration>,
    /// IKE port (500).
    pub ike_port: u16,
    /// NAT-T port (4500).
    pub nat_port: u16,
}

/// Decides which prefixes a verified client may use (server side): from the static
/// `[[clients]]` of server.toml or from the certificate's RFC 3779 extension (pki crate).
pub trait Authorizer: Send {
    /// `Err(reason)` refuses the client (AUTHENTICATION_FAILED, logged with the reason).
    fn prefixes(
        &self,
        identity: &crate::crypto::PeerIdentity,
        peer: &crate::crypto::VerifiedPeer,
    ) -> Result<Vec<ipnet::Ipv6Net>, String>;
}

/// The responder's (server's) settings.
pub struct ResponderConfig {
    /// Settings both roles share.
    pub common: CommonConfig,
    /// The server's static address (the draft: only the client's address may change).
    pub local_addr: Ipv4Addr,
    /// Which prefixes each client may use.
    pub authorizer: Box<dyn Authorizer>,
    /// COOKIE once this many IKE SAs are half open.
    pub cookie_threshold: u32,
    /// At most this many half-open IKE SAs per source address.
    pub half_open_per_source: u32,
    /// At most this many half-open IKE SAs in total.
    pub half_open_total: u32,
}

/// The initiator's (client's) settings.
pub struct InitiatorConfig {
    /// Settings both roles share.
    pub common: CommonConfig,
    /// The server's address and port (500).
    pub server: SocketAddrV4,
    /// The server's expected identity.
    pub server_identity: crate::crypto::PeerIdentity,
    /// Our outer address, as the driver learned it from the routing table.
    pub local_addr: Ipv4Addr,
    /// Our prefix(es): TSi; TSr is ::/0.
    pub local_prefixes: Vec<ipnet::Ipv6Net>,
}

/// Per-peer state for `hometun status`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PeerStatus {
    /// The peer.
    pub peer: hometun_control::PeerId,
    /// Its identity.
    pub name: String,
    /// Our IKE address and port.
    pub local: SocketAddrV4,
    /// Its IKE address and port.
    pub remote: SocketAddrV4,
    /// Whether a NAT was detected (either side).
    pub nat: bool,
    /// Hex SPIi, SPIr.
    pub ike_spis: (String, String),
    /// e.g. "aes128gcm16-prfsha256-x25519".
    pub ike_proposal: String,
    /// Seconds since the IKE SA came up.
    pub established_seconds: u64,
    /// Seconds since the peer's endpoint last moved, if it did.
    pub last_moved_seconds_ago: Option<u64>,
    /// The peer's inner prefixes.
    pub prefixes: Vec<ipnet::Ipv6Net>,
    /// Its CHILD SAs.
    pub children: Vec<ChildStatus>,
}

/// One CHILD SA in [`PeerStatus`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChildStatus {
    /// Our inbound SPI.
    pub spi_in: hometun_control::Spi,
    /// The peer's inbound SPI (our outbound).
    pub spi_out: hometun_control::Spi,
    /// e.g. "aes128gcm16".
    pub proposal: String,
    /// Our traffic selectors.
    pub local_ts: Vec<ipnet::Ipv6Net>,
    /// The peer's traffic selectors.
    pub remote_ts: Vec<ipnet::Ipv6Net>,
}

/// All IKE SAs, SPI demux, half-open tracking, cookie secret.
pub struct Endpoint {
    transmits: VecDeque<Transmit>,
    outputs: VecDeque<Output>,
}

impl Endpoint {
    /// A responder (server).
    pub fn responder(config: ResponderConfig, now: Now, rng: &mut dyn Random) -> Self {
        let _ = (config, now, rng);
        Self {
            transmits: VecDeque::new(),
            outputs: VecDeque::new(),
        }
    }

    /// An initiator (client). Starts connecting at once (IKE_SA_INIT with INITIAL_CONTACT in
    /// IKE_AUTH).
    pub fn initiator(config: InitiatorConfig, now: Now, rng: &mut dyn Random) -> Self {
        let _ = (config, now, rng);
        Self {
            transmits: VecDeque::new(),
            outputs: VecDeque::new(),
        }
    }

    /// An IKE message arrived (without the non-ESP marker). `local` is where it arrived
    /// (port 500 from the driver's socket, 4500 via the forwarder's `Event::IkeReceived`).
    pub fn handle_datagram(
        &mut self,
        now: Now,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        data: &[u8],
        rng: &mut dyn Random,
    ) {
        let _ = (now, local, remote, data, rng);
    }

    /// Timers (retransmission, DPD, reconnect backoff, cookie secret rotation, grace periods).
    pub fn handle_timeout(&mut self, now: Now, rng: &mut dyn Random) {
        let _ = (now, rng);
    }

    /// The forwarder's events: SoftLimit -> CHILD SA rekey (make-before-break); HardLimit /
    /// SeqExhausted -> rekey at once; EndpointMoved -> move that peer's IKE SA too.
    pub fn handle_forwarder_event(
        &mut self,
        now: Now,
        event: &hometun_control::Event,
        rng: &mut dyn Random,
    ) {
        let _ = (now, event, rng);
    }

    /// The forwarder's counters, polled by the driver every second: liveness (ESP from the
    /// peer counts as life) and deleting a rekeyed SA only after its successor carried traffic.
    pub fn handle_counters(&mut self, now: Now, report: &hometun_control::CounterReport) {
        let _ = (now, report);
    }

    /// The client's outer IPv4 address changed (issue 4 fills in the rest).
    pub fn handle_local_address(&mut self, now: Now, addr: Ipv4Addr, rng: &mut dyn Random) {
        let _ = (now, addr, rng);
    }

    /// Shutdown: DELETE every IKE SA (best effort, no waiting for answers).
    pub fn close(&mut self, now: Now, rng: &mut dyn Random) {
        let _ = (now, rng);
    }

    /// The next IKE message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next output for the driver.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The earliest time `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Per-peer state for `hometun status`.
    pub fn status(&self, now: Now) -> Vec<PeerStatus> {
        let _ = now;
        Vec::new()
    }
}
