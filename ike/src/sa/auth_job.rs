//! The expensive part of answering an IKE_AUTH request, as a self-contained job: check the
//! peer's certificate chain, its AUTH signature, and sign our AUTH. Everything the job needs is
//! in it (shared keys behind `Arc`), so a driver may run it on another thread and hand the
//! result back through [`crate::endpoint::Endpoint::handle_auth_done`]; the endpoint stays free
//! of threads. Run inline, it is exactly the checks the responder made before.

use std::sync::Arc;
use std::time::SystemTime;

use super::{IkeError, verify_auth};
use crate::crypto::auth::{self, check_peer_accepts};
use crate::crypto::{CertificateVerifier, PeerIdentity, PrivateKey, VerifiedPeer};
use crate::wire::{AuthMethod, Authentication, HashAlgorithm, Payload};

/// One IKE_AUTH request's signature work.
#[derive(Clone)]
pub struct AuthJob {
    /// Our SPI of the half-open IKE SA it belongs to.
    pub(crate) spi: u64,
    /// The endpoint's configuration generation it was made under (a reload between making and
    /// finishing it makes the endpoint check again with the new configuration).
    pub(crate) generation: u64,
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

impl std::fmt::Debug for AuthJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthJob")
            .field("spi", &crate::sa::hex_spi(self.spi))
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// What the signature work found: the peer's verified certificate and our AUTH payload.
#[derive(Debug)]
pub(crate) struct AuthProof {
    pub peer: VerifiedPeer,
    pub our_auth: Payload,
}

/// A finished [`AuthJob`], to hand to the endpoint.
#[derive(Debug)]
pub struct AuthDone {
    pub(crate) spi: u64,
    pub(crate) generation: u64,
    pub(crate) result: Result<AuthProof, IkeError>,
}

impl AuthJob {
    /// Does the work (Ed25519: one chain check, one verification, one signature).
    pub fn run(self) -> AuthDone {
        AuthDone {
            spi: self.spi,
            generation: self.generation,
            result: self.check(),
        }
    }

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
