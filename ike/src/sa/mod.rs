//! One IKE SA: one type per exchange step, each consumed on its transition (docs/ARCHITECTURE.md,
//! "Conventions"; as rustls `client/tls13.rs`).
//!
//! Initiator: [`initiator::SaInitRequested`] -> [`initiator::AuthRequested`] ->
//! [`established::Established`]. Responder: [`responder::respond_sa_init`] ->
//! ([`deriving::Deriving`] while a job derives the keys) -> [`responder::HalfOpen`] ->
//! [`responder::Authenticated`] -> [`established::Established`].
//! Once established, the sub-exchanges (CHILD SA rekey, IKE SA rekey, DELETE, liveness) are
//! pending-request types consumed when their response arrives.

pub(crate) mod child;
pub mod crypto_job;
pub(crate) mod deriving;
pub(crate) mod established;
pub(crate) mod initiator;
pub(crate) mod key_pool;
pub(crate) mod responder;

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddrV4};

use hometun_control::{Encapsulation, PeerId, Spi};

use crate::crypto::auth::{self, check_peer_accepts};
use crate::crypto::{
    CertificateVerifier, DhGroup, IkeSaKeys, KeyExchange, PeerIdentity, SkGcm, VerifiedPeer,
    natd_hash,
};
use crate::io::{Now, Output, Random, Transmit};
use crate::proposal::ChosenIke;
use crate::settings::CommonConfig;
use crate::wire::{
    AuthMethod, Authentication, CertEncoding, Certificate, CertificateRequest, ExchangeType, Flags,
    HashAlgorithm, Header, Notify, NotifyType, Payload, PayloadList, ProtectedMessage, SkError,
};

/// Kept here for the code that names it from `sa`; it lives in [`crate::error`].
pub use crate::error::IkeError;

/// Length of our nonces.
pub(crate) const NONCE_LEN: usize = 32;

/// What an SA step needs from the endpoint: the time, randomness, configuration, the output
/// queues and the SPI registry.
pub(crate) struct Io<'a> {
    pub now: Now,
    pub rng: &'a mut dyn Random,
    pub cfg: &'a CommonConfig,
    pub transmits: &'a mut VecDeque<Transmit>,
    pub outputs: &'a mut VecDeque<Output>,
    pub spis: &'a mut SpiRegistry,
    /// The endpoint's counters (rekeys, expiries).
    pub counters: &'a mut crate::status::EndpointCounters,
    /// Our key pairs made ahead by the crypto workers.
    pub key_pool: &'a mut key_pool::KeyPairPool,
    /// A test peer's deviations (feature `test-util`).
    #[cfg(feature = "test-util")]
    pub tamper: Option<&'a mut (dyn crate::io::Tamper + 'static)>,
}

impl Io<'_> {
    /// Queues an IKE message.
    pub fn send(&mut self, local: SocketAddrV4, remote: SocketAddrV4, data: Vec<u8>) {
        self.transmits.push_back(Transmit {
            local,
            remote,
            data,
        });
    }

    /// Seals `inner` into a protected message of `core` (a test peer may change it first).
    pub fn seal(
        &mut self,
        core: &mut IkeCore,
        #[allow(unused_mut)] mut header: Header,
        #[allow(unused_mut)] mut inner: Vec<Payload>,
    ) -> Result<Vec<u8>, SkError> {
        #[cfg(feature = "test-util")]
        if let Some(tamper) = self.tamper.as_deref_mut() {
            tamper.outgoing(&header, &mut inner);
            tamper.header(&mut header);
        }
        core.seal(header, inner)
    }

    /// Shows a test peer the inner payloads of a protected message we opened (feature
    /// `test-util`; nothing otherwise).
    #[allow(unused_variables)]
    pub fn observe(&mut self, header: &Header, inner: &[Payload]) {
        #[cfg(feature = "test-util")]
        if let Some(tamper) = self.tamper.as_deref_mut() {
            tamper.incoming(header, inner);
        }
    }

    /// Queues an output.
    pub fn output(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    /// Queues a protocol event for the log.
    pub fn notice(&mut self, notice: crate::notice::Notice) {
        self.outputs.push_back(Output::Notice(notice));
    }

    /// Queues a forwarder request.
    pub fn forwarder(&mut self, request: hometun_control::Request) {
        self.outputs.push_back(Output::Forwarder(request));
    }

    /// A fresh nonce.
    pub fn nonce(&mut self) -> Vec<u8> {
        let mut n = vec![0; NONCE_LEN];
        self.rng.fill(&mut n);
        n
    }

    /// A fresh Diffie-Hellman key pair: one made ahead if the pool has it, else made here.
    pub fn key_exchange(&mut self, group: DhGroup) -> KeyExchange {
        if let Some(ke) = self.key_pool.take(group, self.rng) {
            return ke;
        }
        // P-256 refuses about one draw in 2^32; a generator that fails 64 times is broken.
        for _ in 0..64 {
            let mut random = zeroize::Zeroizing::new([0u8; 32]);
            self.rng.fill(random.as_mut_slice());
            if let Ok(ke) = KeyExchange::new(group, &random) {
                return ke;
            }
        }
        panic!("the random generator gives no valid {group} private key");
    }
}

/// The SPIs in use: IKE SPIs (ours) and inbound ESP SPIs, so that new ones are unique.
#[derive(Debug, Default)]
pub(crate) struct SpiRegistry {
    ike: HashSet<u64>,
    esp: HashSet<Spi>,
}

impl SpiRegistry {
    /// A new, unique, nonzero IKE SPI.
    pub fn new_ike(&mut self, rng: &mut dyn Random) -> u64 {
        loop {
            let mut b = [0u8; 8];
            rng.fill(&mut b);
            let spi = u64::from_be_bytes(b);
            if spi != 0 && self.ike.insert(spi) {
                return spi;
            }
        }
    }

    /// A new, unique inbound ESP SPI (256 and up: 1..=255 are reserved, RFC 4303 2.1).
    pub fn new_esp(&mut self, rng: &mut dyn Random) -> Spi {
        loop {
            let mut b = [0u8; 4];
            rng.fill(&mut b);
            let spi = Spi(u32::from_be_bytes(b));
            if spi.0 >= 256 && self.esp.insert(spi) {
                return spi;
            }
        }
    }

    /// Frees an IKE SPI.
    pub fn release_ike(&mut self, spi: u64) {
        self.ike.remove(&spi);
    }

    /// Frees an ESP SPI.
    pub fn release_esp(&mut self, spi: Spi) {
        self.esp.remove(&spi);
    }

    /// How many IKE and ESP SPIs are reserved (tests look for leaks).
    #[cfg(feature = "test-util")]
    pub fn reserved(&self) -> (usize, usize) {
        (self.ike.len(), self.esp.len())
    }
}

/// Who the peer of an established IKE SA is.
#[derive(Debug, Clone)]
pub(crate) struct PeerInfo {
    pub id: PeerId,
    pub name: String,
    pub identity: PeerIdentity,
    /// The certificates its IKE_AUTH carried (end entity first), checked again when a reload
    /// brings a new CA or CRL.
    pub certificates: Vec<Vec<u8>>,
}

/// The keys, ciphers, SPIs and addresses of one IKE SA.
pub(crate) struct IkeCore {
    pub spi_i: u64,
    pub spi_r: u64,
    /// Whether we are the original initiator of this IKE SA (of the exchange that made it).
    pub original_initiator: bool,
    pub keys: IkeSaKeys,
    pub chosen: ChosenIke,
    /// Counter for the SK payload IVs: unique per key, never reused.
    iv: u64,
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    /// A NAT in front of us.
    pub nat_local: bool,
    /// A NAT in front of the peer (or a peer faking one to force UDP encapsulation).
    pub nat_remote: bool,
    /// `nat_local` only because our configuration forces ESP in UDP: no NAT was seen.
    pub udp_forced: bool,
}

/// The address facts of an IKE SA.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Addresses {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub nat_local: bool,
    pub nat_remote: bool,
    pub udp_forced: bool,
}

impl IkeCore {
    /// The state of an IKE SA with these keys.
    pub fn new(
        keys: IkeSaKeys,
        chosen: ChosenIke,
        spi_i: u64,
        spi_r: u64,
        original_initiator: bool,
        addresses: Addresses,
    ) -> Result<Self, crate::crypto::CryptoError> {
        // The ciphers are made for each message (a microsecond) rather than kept: an idle IKE
        // SA is a server's common case, and two kept AES-GCM contexts cost about 1.7 KiB.
        // Made once here, so that a key of the wrong length is refused now.
        keys.initiator_cipher()?;
        keys.responder_cipher()?;
        Ok(Self {
            spi_i,
            spi_r,
            original_initiator,
            keys,
            chosen,
            iv: 0,
            local: addresses.local,
            remote: addresses.remote,
            nat_local: addresses.nat_local,
            nat_remote: addresses.nat_remote,
            udp_forced: addresses.udp_forced,
        })
    }

    /// Our SPI of this IKE SA (the endpoint's key for it).
    pub fn our_spi(&self) -> u64 {
        if self.original_initiator {
            self.spi_i
        } else {
            self.spi_r
        }
    }

    /// The address facts.
    pub fn addresses(&self) -> Addresses {
        Addresses {
            local: self.local,
            remote: self.remote,
            nat_local: self.nat_local,
            nat_remote: self.nat_remote,
            udp_forced: self.udp_forced,
        }
    }

    /// A header of a message we send.
    pub fn header(&self, exchange: ExchangeType, response: bool, message_id: u32) -> Header {
        Header::new(
            exchange,
            self.spi_i,
            self.spi_r,
            Flags::new(self.original_initiator, response),
            message_id,
        )
    }

    /// Seals payloads into a message with an SK payload.
    pub fn seal(&mut self, header: Header, inner: Vec<Payload>) -> Result<Vec<u8>, SkError> {
        self.iv = self.iv.wrapping_add(1);
        let tx = self.cipher(self.original_initiator);
        ProtectedMessage::new(header, inner).seal(&tx, &self.iv.to_be_bytes(), 0)
    }

    /// Checks and opens a message the peer sent.
    pub fn open(&self, data: &[u8]) -> Result<ProtectedMessage, SkError> {
        ProtectedMessage::open(data, &self.cipher(!self.original_initiator))
    }

    /// The SK cipher of messages the original initiator (`initiator`) or responder sends.
    fn cipher(&self, initiator: bool) -> SkGcm {
        let cipher = if initiator {
            self.keys.initiator_cipher()
        } else {
            self.keys.responder_cipher()
        };
        // IkeCore::new made both from these keys: their lengths are right.
        cipher.expect("SK keys checked when the IKE SA was made")
    }

    /// Whether a NAT was seen on either side, or ESP in UDP is forced: UDP encapsulation.
    pub fn nat(&self) -> bool {
        self.nat_local || self.nat_remote
    }

    /// Whether a NAT was seen on either side (not only ESP in UDP forced).
    pub fn nat_seen(&self) -> bool {
        self.nat() && !self.udp_forced
    }

    /// The outer endpoint of this peer's ESP SAs.
    pub fn esp_endpoint(&self, cfg: &CommonConfig) -> hometun_control::Endpoint {
        let encap = if self.nat() {
            // A peer that has not floated still gets ESP in UDP on the NAT-T port.
            let remote_port = if self.remote.port() == cfg.ike_port {
                cfg.nat_port
            } else {
                self.remote.port()
            };
            Encapsulation::Udp {
                local_port: cfg.nat_port,
                remote_port,
            }
        } else {
            Encapsulation::Raw
        };
        hometun_control::Endpoint {
            local: *self.local.ip(),
            remote: *self.remote.ip(),
            encap,
        }
    }
}

/// NAT_DETECTION_SOURCE_IP and _DESTINATION_IP for a message from `source` to `destination`.
pub(crate) fn natd_payloads(
    spi_i: u64,
    spi_r: u64,
    source: SocketAddrV4,
    destination: SocketAddrV4,
) -> [Payload; 2] {
    let hash = |a: SocketAddrV4| natd_hash(spi_i, spi_r, IpAddr::V4(*a.ip()), a.port()).to_vec();
    [
        Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_SOURCE_IP,
            hash(source),
        )),
        Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            hash(destination),
        )),
    ]
}

/// Reads the peer's NAT detection notifies of a message that travelled from `source` (as we
/// saw it) to `destination` (us): `(nat in front of the peer, nat in front of us)`. Without
/// the notifies no NAT is assumed.
pub(crate) fn nat_detected(
    payloads: &[Payload],
    spi_i: u64,
    spi_r: u64,
    source: SocketAddrV4,
    destination: SocketAddrV4,
) -> (bool, bool) {
    let hash = |a: SocketAddrV4| natd_hash(spi_i, spi_r, IpAddr::V4(*a.ip()), a.port());
    let sources: Vec<&Notify> = payloads
        .notifies()
        .filter(|n| n.notify_type == NotifyType::NAT_DETECTION_SOURCE_IP)
        .collect();
    let destinations: Vec<&Notify> = payloads
        .notifies()
        .filter(|n| n.notify_type == NotifyType::NAT_DETECTION_DESTINATION_IP)
        .collect();
    let source_hash = hash(source);
    let destination_hash = hash(destination);
    let remote_nat =
        !sources.is_empty() && !sources.iter().any(|n| n.data == source_hash.as_slice());
    let local_nat = !destinations.is_empty()
        && !destinations
            .iter()
            .any(|n| n.data == destination_hash.as_slice());
    (remote_nat, local_nat)
}

/// Our SIGNATURE_HASH_ALGORITHMS notify.
pub(crate) fn hash_algorithms_payload() -> Payload {
    Payload::Notify(Notify::new(
        NotifyType::SIGNATURE_HASH_ALGORITHMS,
        auth::signature_hash_algorithms_data(),
    ))
}

/// The peer's SIGNATURE_HASH_ALGORITHMS list (empty when it sent none).
pub(crate) fn peer_hash_algorithms(payloads: &[Payload]) -> Vec<HashAlgorithm> {
    payloads
        .notifies()
        .filter(|n| n.notify_type == NotifyType::SIGNATURE_HASH_ALGORITHMS)
        .flat_map(|n| n.hash_algorithms())
        .collect()
}

/// Our CERTREQ: the configured CAs' key hashes.
pub(crate) fn certreq_payload(verifier: &CertificateVerifier) -> Payload {
    Payload::CertReq(CertificateRequest::x509(&verifier.ca_key_hashes()))
}

/// Our CERT payloads: the chain, end entity first.
pub(crate) fn cert_payloads(cfg: &CommonConfig) -> Vec<Payload> {
    cfg.chain
        .iter()
        .map(|der| Payload::Cert(Certificate::x509(der.clone())))
        .collect()
}

/// Our AUTH payload over `octets`, if the peer accepts what our key signs.
pub(crate) fn sign_auth(
    cfg: &CommonConfig,
    peer_hash_algorithms: &[HashAlgorithm],
    octets: &[u8],
) -> Result<Payload, IkeError> {
    check_peer_accepts(&cfg.key, peer_hash_algorithms).map_err(IkeError::from)?;
    Ok(Payload::Auth(Authentication::new(
        AuthMethod::DIGITAL_SIGNATURE,
        auth::sign(&cfg.key, octets),
    )))
}

/// The X.509 certificates of the peer's CERT payloads, in the order sent (end entity first).
pub(crate) fn peer_certificates(payloads: &[Payload]) -> Vec<Vec<u8>> {
    payloads
        .certificates()
        .filter(|c| c.encoding == CertEncoding::X509_SIGNATURE)
        .map(|c| c.data.clone())
        .collect()
}

/// Checks the peer's certificate chain (its CERT payloads) for `identity` at `now`.
pub(crate) fn verify_peer_certificate(
    verifier: &CertificateVerifier,
    payloads: &[Payload],
    identity: &PeerIdentity,
    now: std::time::SystemTime,
) -> Result<VerifiedPeer, IkeError> {
    let certs = peer_certificates(payloads);
    let certs: Vec<&[u8]> = certs.iter().map(Vec::as_slice).collect();
    let Some((end_entity, intermediates)) = certs.split_first() else {
        return Err(IkeError::AuthenticationFailed(
            "no X.509 certificate (CERT payload) sent".into(),
        ));
    };
    Ok(verifier.verify(end_entity, intermediates, identity, now)?)
}

/// Checks the peer's AUTH payload over `octets` with its verified key.
pub(crate) fn verify_auth(
    peer: &VerifiedPeer,
    auth: &Authentication,
    octets: &[u8],
) -> Result<(), IkeError> {
    if auth.method != AuthMethod::DIGITAL_SIGNATURE {
        return Err(crate::crypto::CryptoError::UnsupportedAuthMethod(auth.method.0).into());
    }
    auth::verify(peer.public_key(), octets, &auth.data)?;
    Ok(())
}

/// The ID payload body (IDx' of RFC 7296 2.15) of an identity.
pub(crate) fn id_body(id: &crate::wire::Identification) -> Vec<u8> {
    let mut body = vec![id.id_type.0, 0, 0, 0];
    body.extend_from_slice(&id.data);
    body
}

/// The identity of an ID payload.
pub(crate) fn identity_of(id: &crate::wire::Identification) -> Result<PeerIdentity, IkeError> {
    PeerIdentity::from_id(id.id_type.0, &id.data)
        .map_err(|e| IkeError::AuthenticationFailed(e.to_string()))
}

/// The ID payload of our identity.
pub(crate) fn our_id(identity: &PeerIdentity) -> crate::wire::Identification {
    crate::wire::Identification::new(crate::wire::IdType(identity.id_type()), identity.id_data())
}

/// The first error notify among `payloads`, if any.
pub(crate) fn error_notify(payloads: &[Payload]) -> Option<&Notify> {
    payloads.error_notify()
}

/// Whether the notify of `notify_type` is among `payloads`.
pub(crate) fn has_notify(payloads: &[Payload], notify_type: NotifyType) -> bool {
    payloads.notify(notify_type).is_some()
}

/// RFC 7296 2.8.1: whether the exchange with nonces `ours` holds the lowest of the four nonces
/// (byte-wise comparison, as strongSwan's `chunk_compare`). The SA it created is redundant and
/// is deleted by whoever initiated that exchange.
pub(crate) fn lowest_nonce_in(ours: (&[u8], &[u8]), theirs: (&[u8], &[u8])) -> bool {
    ours.0.min(ours.1) < theirs.0.min(theirs.1)
}

/// A short hex string of a SPI for log lines.
pub(crate) fn hex_spi(spi: u64) -> String {
    format!("{spi:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_detection_compares_hashes() {
        let a: SocketAddrV4 = "192.0.2.2:500".parse().unwrap();
        let b: SocketAddrV4 = "192.0.2.1:500".parse().unwrap();
        let nat: SocketAddrV4 = "198.51.100.7:40000".parse().unwrap();
        let sent = natd_payloads(1, 0, a, b);
        assert_eq!(nat_detected(&sent, 1, 0, a, b), (false, false));
        assert_eq!(nat_detected(&sent, 1, 0, nat, b), (true, false));
        assert_eq!(nat_detected(&sent, 1, 0, a, nat), (false, true));
        assert_eq!(nat_detected(&[], 1, 0, nat, nat), (false, false));
    }

    #[test]
    fn lowest_nonce_decides() {
        assert!(lowest_nonce_in((&[1, 9], &[5]), (&[2], &[3])));
        assert!(!lowest_nonce_in((&[4], &[5]), (&[6], &[3])));
    }
}
