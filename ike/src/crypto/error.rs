//! The errors of the crypto layer and the Notify each one answers on the wire.

use super::cert::CertError;
use crate::wire::NotifyType;

/// Everything that can go wrong in `crypto`. Peer-caused variants map to a Notify error type
/// ([`CryptoError::notify_type`]); local faults (bad key files, bad randomness) do not.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A transform (encryption, PRF) we do not implement.
    #[error("transform {0} is not supported")]
    UnsupportedTransform(String),
    /// A Diffie-Hellman group we do not implement.
    #[error("Diffie-Hellman group {0} is not supported (only 19 and 31)")]
    UnsupportedGroup(u16),
    /// The peer's KE data has the wrong length for its group.
    #[error("key exchange data for group {group} must be {expected} bytes, got {got}")]
    KeLength {
        /// Transform ID of the group.
        group: u16,
        /// Length the group defines.
        expected: usize,
        /// Length received.
        got: usize,
    },
    /// The peer's P-256 public value is not a point on the curve (RFC 6989 2.3).
    #[error("peer's P-256 public value is not a point on the curve")]
    PointNotOnCurve,
    /// X25519 gave the all-zero result: the peer sent a low-order point (RFC 8031 2).
    #[error("X25519 shared secret is all zero: the peer sent a low-order point")]
    AllZeroSharedSecret,
    /// The caller's random bytes are not a valid private scalar (P-256 only, probability
    /// about 2^-32): draw new bytes and try again.
    #[error("random bytes give no valid P-256 private key; draw new ones")]
    BadRandom,
    /// A nonce outside 16..=256 bytes (RFC 7296 3.9; 16 = half the PRF key size).
    #[error("nonce must be 16 to 256 bytes, got {0}")]
    NonceLength(usize),
    /// More prf+ output than 255 PRF blocks (RFC 7296 2.13).
    #[error("prf+ cannot produce {0} bytes (at most 8160 with PRF_HMAC_SHA2_256)")]
    PrfPlusTooLong(usize),
    /// A cipher key of the wrong size.
    #[error("{what} needs {expected} bytes of key material, got {got}")]
    KeyMaterialLength {
        /// What the key is for.
        what: &'static str,
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// Input beyond what AES-GCM can protect under one nonce (about 64 GiB).
    #[error("input too long for AES-GCM")]
    InputTooLong,
    /// An SK payload IV that is not 8 bytes.
    #[error("SK payload IV must be 8 bytes, got {0}")]
    IvLength(usize),
    /// An SK payload ICV that is not 16 bytes.
    #[error("SK payload ICV must be 16 bytes, got {0}")]
    IcvLength(usize),
    /// The SK payload failed its integrity check (the message is dropped, RFC 7296 2.21).
    #[error("SK payload integrity check failed")]
    IntegrityCheckFailed,
    /// The AUTH payload uses an authentication method other than 14 (digital signature).
    #[error("authentication method {0} is not supported (only 14, digital signature)")]
    UnsupportedAuthMethod(u8),
    /// The AUTH data is not `len | AlgorithmIdentifier | signature` (RFC 7427 3).
    #[error("malformed signature AUTH data: {0}")]
    MalformedAuth(&'static str),
    /// The AUTH data names a signature algorithm we do not accept.
    #[error("signature algorithm {0} is not supported")]
    UnsupportedSignatureAlgorithm(String),
    /// The signature algorithm does not fit the certificate's key type.
    #[error("signature algorithm {scheme} does not fit the peer's {key} key")]
    SignatureKeyMismatch {
        /// Algorithm named in the AUTH payload.
        scheme: &'static str,
        /// Key type of the certificate.
        key: &'static str,
    },
    /// The AUTH signature does not verify.
    #[error("AUTH signature does not verify with the peer's certificate")]
    BadSignature,
    /// The peer's SIGNATURE_HASH_ALGORITHMS list allows no signature our key can make.
    #[error("peer accepts no hash algorithm our {key} key can sign with")]
    NoCommonHashAlgorithm {
        /// Our key type.
        key: &'static str,
    },
    /// A malformed SIGNATURE_HASH_ALGORITHMS notify (odd length).
    #[error("SIGNATURE_HASH_ALGORITHMS data has odd length {0}")]
    MalformedHashAlgorithms(usize),
    /// An ID payload we cannot compare with a certificate.
    #[error(
        "ID type {0} is not supported (only ID_IPV4_ADDR, ID_FQDN, ID_IPV6_ADDR, ID_DER_ASN1_DN)"
    )]
    UnsupportedIdType(u8),
    /// An ID payload whose data does not fit its type.
    #[error("malformed ID payload: {0}")]
    MalformedId(&'static str),
    /// The peer's certificate was refused.
    #[error(transparent)]
    Certificate(#[from] CertError),
    /// A local key, certificate or CRL file could not be read.
    #[error("{0}")]
    Credentials(String),
}

impl CryptoError {
    /// The Notify error type to answer with, or `None` when the error is local (nothing to
    /// tell the peer) or the message must be dropped silently (failed integrity check).
    pub fn notify_type(&self) -> Option<NotifyType> {
        use CryptoError as E;
        match self {
            E::UnsupportedTransform(_) => Some(NotifyType::NO_PROPOSAL_CHOSEN),
            E::UnsupportedGroup(_) => Some(NotifyType::INVALID_KE_PAYLOAD),
            E::KeLength { .. }
            | E::PointNotOnCurve
            | E::AllZeroSharedSecret
            | E::NonceLength(_)
            | E::IvLength(_)
            | E::IcvLength(_)
            | E::MalformedHashAlgorithms(_)
            | E::MalformedId(_) => Some(NotifyType::INVALID_SYNTAX),
            E::UnsupportedAuthMethod(_)
            | E::MalformedAuth(_)
            | E::UnsupportedSignatureAlgorithm(_)
            | E::SignatureKeyMismatch { .. }
            | E::BadSignature
            | E::NoCommonHashAlgorithm { .. }
            | E::UnsupportedIdType(_)
            | E::Certificate(_) => Some(NotifyType::AUTHENTICATION_FAILED),
            E::IntegrityCheckFailed
            | E::BadRandom
            | E::PrfPlusTooLong(_)
            | E::KeyMaterialLength { .. }
            | E::InputTooLong
            | E::Credentials(_) => None,
        }
    }
}
