//! The endpoint's settings: what both roles share, and each role's own.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// Settings both roles share. A clone shares the key and the verifier.
#[derive(Clone)]
pub struct CommonConfig {
    /// Our certificate chain (DER, end-entity first).
    pub chain: Vec<Vec<u8>>,
    /// Our private key (the end-entity certificate's); shared with the threads that sign when
    /// the driver moves signatures off its task ([`crate::endpoint::Endpoint::defer_crypto`]).
    pub key: std::sync::Arc<crate::crypto::PrivateKey>,
    /// Our IKE identity (ID_FQDN normally), which must be in our certificate.
    pub identity: crate::crypto::PeerIdentity,
    /// Checks the peer's certificate chain, dates, CRL and identity (shared like `key`).
    pub verifier: std::sync::Arc<crate::crypto::CertificateVerifier>,
    /// IKE proposals in preference order (parsed from the config's strongSwan-style strings by
    /// [`crate::proposal::IkeProposal::parse`]).
    pub ike_proposals: Vec<crate::proposal::IkeProposal>,
    /// ESP proposals in preference order ([`crate::proposal::EspProposal::parse`]).
    pub esp_proposals: Vec<crate::proposal::EspProposal>,
    /// CHILD SA lifetimes (bytes/packets; time only if configured).
    pub limits: hometun_control::Limits,
    /// When the IKE SA itself is rekeyed (a fresh Diffie-Hellman secret for SK_d).
    pub ike_rekey: IkeRekeyPolicy,
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
    /// A client's longest wait between two connection attempts: its backoff doubles up to this
    /// (a home should not wait minutes for a server that is back).
    pub reconnect_max: Duration,
    /// IKE port (500).
    pub ike_port: u16,
    /// NAT-T port (4500).
    pub nat_port: u16,
}

/// Decides which prefixes a verified client may use (server side): from the static
/// `[[clients]]` of server.toml or from the certificate's RFC 3779 extension (pki crate).
pub trait Authorizer: Send {
    /// An `Err` refuses the client (AUTHENTICATION_FAILED, logged with the reason).
    fn prefixes(
        &self,
        identity: &crate::crypto::PeerIdentity,
        peer: &crate::crypto::VerifiedPeer,
    ) -> Result<Vec<ipnet::Ipv6Net>, PrefixRefusal>;
}

/// Why a verified client may use no prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixRefusal {
    /// Its certificate's RFC 3779 extension does not read.
    #[error("cannot read the IPv6 prefix from its certificate: {0}")]
    UnreadableCertificate(#[from] hometun_certs::addrblock::AddrBlockError),
    /// No `[[clients]]` entry and no prefix in the certificate.
    #[error(
        "no [[clients]] entry names {0} and its certificate carries no IPv6 prefix (RFC 3779 ipAddrBlocks)"
    )]
    NoPrefix(crate::crypto::PeerIdentity),
    /// A prefix of the certificate lies outside `server.pool`.
    #[error("its certificate's prefix {prefix} is outside server.pool {pool}")]
    OutsidePool {
        /// The certificate's prefix.
        prefix: ipnet::Ipv6Net,
        /// The pool.
        pool: ipnet::Ipv6Net,
    },
    /// The shared registry revoked the certificate (before a CRL file says so).
    #[error("its certificate (serial {serial}) is revoked in the registry")]
    Revoked {
        /// The certificate's serial, lower-case hex.
        serial: String,
    },
    /// A prefix of the certificate overlaps a `[[clients]]` entry's.
    #[error("its certificate's prefix {prefix} overlaps {theirs} of [[clients]] {name}")]
    OverlapsStaticClient {
        /// The certificate's prefix.
        prefix: ipnet::Ipv6Net,
        /// The entry's prefix.
        theirs: ipnet::Ipv6Net,
        /// The entry's name.
        name: String,
    },
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
    /// New IKE SAs one identity may make in a burst, then one every 10 s; 0: no bound
    /// (SECURITY.md, I11).
    pub new_ike_sas_per_identity: u32,
}

/// The initiator's (client's) settings.
#[derive(Clone)]
pub struct InitiatorConfig {
    /// Settings both roles share.
    pub common: CommonConfig,
    /// The server's address and port (500).
    pub server: SocketAddrV4,
    /// The server's expected identity.
    pub server_identity: crate::crypto::PeerIdentity,
    /// Further servers with their identities, tried in this order after `server` when the
    /// server in use stops answering (no answer to a liveness check, or an attempt that fails);
    /// empty for a home with one server. The client never goes back by itself while the server
    /// it uses works.
    pub fallback_servers: Vec<(SocketAddrV4, crate::crypto::PeerIdentity)>,
    /// Our outer address, as the driver learned it from the routing table.
    pub local_addr: Ipv4Addr,
    /// Our prefix(es): TSi; TSr is ::/0.
    pub local_prefixes: Vec<ipnet::Ipv6Net>,
    /// Act as if a NAT were in front of us, so that both ends use ESP in UDP (RFC 7296 2.23
    /// allows it): our NAT_DETECTION_SOURCE_IP hashes an address we do not have.
    pub force_udp_encapsulation: bool,
}

/// When an IKE SA is rekeyed (RFC 7296 1.3.2). SK_d, from which every CHILD SA key of a rekey
/// without PFS derives, changes only then; see docs/ARCHITECTURE.md, "Keys and forward secrecy".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IkeRekeyPolicy {
    /// After this many CHILD SA rekeys on it (0: never for this reason).
    pub after_child_rekeys: u32,
    /// After its CHILD SAs carried this many bytes, both directions together.
    pub bytes: Option<u64>,
    /// After this long, even when idle (off by default: lifetimes count traffic, not time).
    pub seconds: Option<u64>,
}

impl Default for IkeRekeyPolicy {
    fn default() -> Self {
        Self {
            after_child_rekeys: 1,
            bytes: None,
            seconds: None,
        }
    }
}
