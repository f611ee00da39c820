//! The expensive parts of a responder's new IKE SA, as self-contained jobs: our key pairs,
//! made ahead ([`super::key_pool`]), the shared secret and keys after IKE_SA_INIT, and the
//! signature work of IKE_AUTH (the peer's certificate chain, its AUTH signature, our AUTH).
//! Everything a job needs is in it (shared keys behind `Arc`), so a driver may run it on
//! another thread and hand the result back through
//! [`crate::endpoint::Endpoint::handle_crypto_done`]; the endpoint stays free of threads. Run
//! inline, each is exactly the work the responder does in place (docs/ARCHITECTURE.md, "The
//! sans-IO contract").

use std::sync::Arc;
use std::time::SystemTime;

use hometun_control::AeadAlg;

use super::{IkeError, verify_auth};
use crate::crypto::auth::{self, check_peer_accepts};
use crate::crypto::dh::PRIVATE_RANDOM_LEN;
use crate::crypto::{
    CertificateVerifier, CryptoError, DhGroup, IkeSaKeys, KeyExchange, PeerIdentity, PrivateKey,
    VerifiedPeer,
};
use crate::wire::{AuthMethod, Authentication, HashAlgorithm, Payload};

/// One job of a half-open IKE SA.
pub struct CryptoJob {
    /// Our SPI of the half-open IKE SA it belongs to.
    pub(crate) spi: u64,
    /// The endpoint's configuration generation it was made under (a reload between making and
    /// finishing signature work makes the endpoint check again with the new configuration).
    pub(crate) generation: u64,
    pub(crate) work: Work,
}

pub(crate) enum Work {
    Keys(KeysJob),
    Signatures(AuthJob),
    /// Key pairs for later exchanges ([`super::key_pool`]); `spi` and `generation` are unused.
    KeyPairs(KeyPairsJob),
}

impl std::fmt::Debug for CryptoJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("CryptoJob");
        s.field("spi", &crate::sa::hex_spi(self.spi));
        match &self.work {
            Work::Keys(_) => s.field("work", &"keys"),
            Work::Signatures(job) => s.field("identity", &job.identity),
            Work::KeyPairs(job) => s.field("key pairs", &(job.group, job.privates.len())),
        };
        s.finish_non_exhaustive()
    }
}

/// A finished [`CryptoJob`], to hand to the endpoint.
#[derive(Debug)]
pub struct CryptoDone {
    pub(crate) spi: u64,
    pub(crate) generation: u64,
    pub(crate) result: Finished,
}

pub(crate) enum Finished {
    Keys(Result<IkeSaKeys, CryptoError>),
    Signatures(Result<AuthProof, IkeError>),
    KeyPairs(DhGroup, Vec<KeyExchange>),
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finished::Keys(keys) => f.debug_tuple("Keys").field(keys).finish(),
            Finished::Signatures(proof) => f.debug_tuple("Signatures").field(proof).finish(),
            Finished::KeyPairs(group, pairs) => f
                .debug_tuple("KeyPairs")
                .field(group)
                .field(&pairs.len())
                .finish(),
        }
    }
}

impl CryptoJob {
    /// Does the work: X25519 and the key derivation, (Ed25519) one chain check, one
    /// verification and one signature, or a few key pairs.
    pub fn run(self) -> CryptoDone {
        let result = match &self.work {
            Work::Keys(job) => Finished::Keys(job.derive()),
            Work::Signatures(job) => Finished::Signatures(job.check()),
            Work::KeyPairs(job) => Finished::KeyPairs(job.group, job.make()),
        };
        CryptoDone {
            spi: self.spi,
            generation: self.generation,
            result,
        }
    }

    /// Whether this is the shared secret and keys after IKE_SA_INIT (else IKE_AUTH's signature
    /// work).
    pub fn is_key_derivation(&self) -> bool {
        matches!(self.work, Work::Keys(_))
    }

    /// Whether this makes key pairs ahead, for no SA in particular.
    pub fn is_key_pairs(&self) -> bool {
        matches!(self.work, Work::KeyPairs(_))
    }
}

/// Key pairs of one group, from private values the endpoint drew (the workers have no
/// random generator).
pub(crate) struct KeyPairsJob {
    pub group: DhGroup,
    pub privates: Vec<zeroize::Zeroizing<[u8; PRIVATE_RANDOM_LEN]>>,
}

impl KeyPairsJob {
    /// One key pair per private value (a P-256 value the group refuses, about one in 2^32,
    /// is skipped).
    fn make(&self) -> Vec<KeyExchange> {
        self.privates
            .iter()
            .filter_map(|random| KeyExchange::new(self.group, random).ok())
            .collect()
    }
}

/// The shared secret g^ir and the IKE SA's keys (RFC 7296 2.14), from our half of the key
/// exchange and the peer's KE data (its length already checked).
pub(crate) struct KeysJob {
    pub our_ke: KeyExchange,
    pub peer_ke: Vec<u8>,
    pub encryption: AeadAlg,
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
    pub spi_i: u64,
    pub spi_r: u64,
}

impl KeysJob {
    pub(crate) fn derive(&self) -> Result<IkeSaKeys, CryptoError> {
        let g_ir = self.our_ke.shared_secret(&self.peer_ke)?;
        IkeSaKeys::initial(
            self.encryption,
            &self.ni,
            &self.nr,
            &g_ir,
            self.spi_i,
            self.spi_r,
        )
    }
}

/// One IKE_AUTH request's signature work.
#[derive(Clone)]
pub(crate) struct AuthJob {
    pub(crate) verifier: Arc<CertificateVerifier>,
    /// The peer's CERT payloads (X.509), end entity first.
    pub(crate) certificates: Vec<Vec<u8>>,
    pub(crate) identity: PeerIdentity,
    pub(crate) wall: SystemTime,
    pub(crate) peer_auth: Authentication,
    /// What the peer's AUTH signs.
    pub(crate) peer_octets: Vec<u8>,
    pub(crate) key: Arc<PrivateKey>,
    pub(crate) peer_hash_algorithms: Vec<HashAlgorithm>,
    /// What our AUTH signs.
    pub(crate) our_octets: Vec<u8>,
}

/// What the signature work found: the peer's verified certificate and our AUTH payload.
#[derive(Debug)]
pub(crate) struct AuthProof {
    pub peer: VerifiedPeer,
    pub our_auth: Payload,
}

impl AuthJob {
    pub(crate) fn check(&self) -> Result<AuthProof, IkeError> {
        let certificates: Vec<&[u8]> = self.certificates.iter().map(Vec::as_slice).collect();
        let Some((end_entity, intermediates)) = certificates.split_first() else {
            return Err(IkeError::AuthenticationFailed(
                "no X.509 certificate (CERT payload) sent".into(),
            ));
        };
        let peer = self
            .verifier
            .verify(end_entity, intermediates, &self.identity, self.wall)?;
        verify_auth(&peer, &self.peer_auth, &self.peer_octets)?;
        check_peer_accepts(&self.key, &self.peer_hash_algorithms).map_err(IkeError::from)?;
        let our_auth = Payload::Auth(Authentication::new(
            AuthMethod::DIGITAL_SIGNATURE,
            auth::sign(&self.key, &self.our_octets),
        ));
        Ok(AuthProof { peer, our_auth })
    }
}
