//! The AUTH payload: the signed octets (RFC 7296 2.15) and digital signature authentication
//! (method 14, RFC 7427) with Ed25519 (RFC 8420) and ECDSA P-256, plus the
//! SIGNATURE_HASH_ALGORITHMS notify data (RFC 7427 4).

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::signature::{SignatureEncoding, Signer};
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::CryptoError;
use super::credentials::{PeerPublicKey, PrivateKey};
use super::keys::{IkeSaKeys, prf};
use crate::wire::{AuthMethod, Authentication, HashAlgorithm};

/// The only AUTH method we use and accept: digital signature (RFC 7427 3).
pub const AUTH_METHOD: AuthMethod = AuthMethod::DIGITAL_SIGNATURE;

/// DER AlgorithmIdentifier of Ed25519, id-Ed25519 without parameters (RFC 8420 2).
const ALG_ED25519: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
/// ecdsa-with-SHA256 (RFC 7427 A.3.1).
const ALG_ECDSA_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
/// ecdsa-with-SHA384 (RFC 7427 A.3.2).
const ALG_ECDSA_SHA384: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
];
/// ecdsa-with-SHA512 (RFC 7427 A.3.3).
const ALG_ECDSA_SHA512: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04,
];

/// Which side made an AUTH payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthRole {
    /// The IKE SA initiator (signs with SK_pi in the octets).
    Initiator,
    /// The IKE SA responder (SK_pr).
    Responder,
}

/// The octets an AUTH payload signs (RFC 7296 2.15): the signer's IKE_SA_INIT message as sent,
/// the other side's nonce data, and prf(SK_px, IDx') where IDx' is the signer's ID payload body
/// (ID type, 3 reserved bytes, identification data).
///
/// Initiator: RealMessage1 | NonceRData | prf(SK_pi, IDi').
/// Responder: RealMessage2 | NonceIData | prf(SK_pr, IDr').
pub fn signed_octets(
    signer_sa_init_message: &[u8],
    other_nonce: &[u8],
    sk_p: &[u8],
    signer_id_body: &[u8],
) -> Vec<u8> {
    let mac = prf(sk_p, &[signer_id_body]);
    let mut octets =
        Vec::with_capacity(signer_sa_init_message.len() + other_nonce.len() + mac.len());
    octets.extend_from_slice(signer_sa_init_message);
    octets.extend_from_slice(other_nonce);
    octets.extend_from_slice(&mac);
    octets
}

/// [`signed_octets`] with SK_pi or SK_pr picked by the signer's role.
pub fn auth_octets(
    signer: AuthRole,
    keys: &IkeSaKeys,
    signer_sa_init_message: &[u8],
    other_nonce: &[u8],
    signer_id_body: &[u8],
) -> Vec<u8> {
    let sk_p = match signer {
        AuthRole::Initiator => keys.sk_pi(),
        AuthRole::Responder => keys.sk_pr(),
    };
    signed_octets(signer_sa_init_message, other_nonce, sk_p, signer_id_body)
}

/// The hash algorithms we verify signatures with, in the order we announce them.
pub const ACCEPTED_HASH_ALGORITHMS: [HashAlgorithm; 4] = [
    HashAlgorithm::SHA2_256,
    HashAlgorithm::SHA2_384,
    HashAlgorithm::SHA2_512,
    HashAlgorithm::IDENTITY,
];

/// Notification data of our SIGNATURE_HASH_ALGORITHMS notify: [`ACCEPTED_HASH_ALGORITHMS`] as
/// 16-bit big-endian values.
pub fn signature_hash_algorithms_data() -> Vec<u8> {
    ACCEPTED_HASH_ALGORITHMS
        .iter()
        .flat_map(|h| h.0.to_be_bytes())
        .collect()
}

/// Parses the peer's SIGNATURE_HASH_ALGORITHMS notification data.
pub fn parse_signature_hash_algorithms(data: &[u8]) -> Result<Vec<HashAlgorithm>, CryptoError> {
    if !data.len().is_multiple_of(2) {
        return Err(CryptoError::MalformedHashAlgorithms(data.len()));
    }
    Ok(data
        .chunks_exact(2)
        .map(|c| HashAlgorithm(u16::from_be_bytes([c[0], c[1]])))
        .collect())
}

/// A signature scheme of the AUTH payload, named by its AlgorithmIdentifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureScheme {
    /// Ed25519 over the octets (hash "identity").
    Ed25519,
    /// ECDSA with SHA-256 (what we sign with on a P-256 key).
    EcdsaSha256,
    /// ECDSA with SHA-384 (verified only).
    EcdsaSha384,
    /// ECDSA with SHA-512 (verified only).
    EcdsaSha512,
}

impl SignatureScheme {
    fn algorithm_identifier(self) -> &'static [u8] {
        match self {
            SignatureScheme::Ed25519 => ALG_ED25519,
            SignatureScheme::EcdsaSha256 => ALG_ECDSA_SHA256,
            SignatureScheme::EcdsaSha384 => ALG_ECDSA_SHA384,
            SignatureScheme::EcdsaSha512 => ALG_ECDSA_SHA512,
        }
    }

    fn from_algorithm_identifier(der: &[u8]) -> Option<Self> {
        [
            SignatureScheme::Ed25519,
            SignatureScheme::EcdsaSha256,
            SignatureScheme::EcdsaSha384,
            SignatureScheme::EcdsaSha512,
        ]
        .into_iter()
        .find(|s| s.algorithm_identifier() == der)
    }

    /// The SIGNATURE_HASH_ALGORITHMS value this scheme needs the verifier to accept.
    pub fn hash_algorithm(self) -> HashAlgorithm {
        match self {
            SignatureScheme::Ed25519 => HashAlgorithm::IDENTITY,
            SignatureScheme::EcdsaSha256 => HashAlgorithm::SHA2_256,
            SignatureScheme::EcdsaSha384 => HashAlgorithm::SHA2_384,
            SignatureScheme::EcdsaSha512 => HashAlgorithm::SHA2_512,
        }
    }

    /// Name for log lines.
    pub fn name(self) -> &'static str {
        match self {
            SignatureScheme::Ed25519 => "Ed25519",
            SignatureScheme::EcdsaSha256 => "ECDSA-SHA256",
            SignatureScheme::EcdsaSha384 => "ECDSA-SHA384",
            SignatureScheme::EcdsaSha512 => "ECDSA-SHA512",
        }
    }
}

/// The scheme [`sign`] uses with `key`.
pub fn signing_scheme(key: &PrivateKey) -> SignatureScheme {
    match key {
        PrivateKey::Ed25519(_) => SignatureScheme::Ed25519,
        PrivateKey::P256(_) => SignatureScheme::EcdsaSha256,
    }
}

/// Checks that the peer's SIGNATURE_HASH_ALGORITHMS list (parsed) allows what [`sign`] makes
/// with `key`. RFC 7427 4: without the notify the peer does not support method 14 at all.
pub fn check_peer_accepts(
    key: &PrivateKey,
    peer_hash_algorithms: &[HashAlgorithm],
) -> Result<(), CryptoError> {
    if peer_hash_algorithms.contains(&signing_scheme(key).hash_algorithm()) {
        Ok(())
    } else {
        Err(CryptoError::NoCommonHashAlgorithm {
            key: key.key_type(),
        })
    }
}

/// Makes the Authentication Data of an AUTH payload with method 14: the AlgorithmIdentifier
/// length byte, the AlgorithmIdentifier, the signature over `octets` (Ed25519: 64 bytes over
/// the octets themselves; ECDSA P-256: DER Ecdsa-Sig-Value over SHA-256, deterministic
/// RFC 6979 nonces, so no randomness is needed).
pub fn sign(key: &PrivateKey, octets: &[u8]) -> Vec<u8> {
    let scheme = signing_scheme(key);
    let alg = scheme.algorithm_identifier();
    let signature: Vec<u8> = match key {
        PrivateKey::Ed25519(k) => k.sign(octets),
        PrivateKey::P256(k) => {
            let sig: p256::ecdsa::DerSignature = k.sign(octets);
            sig.to_vec()
        }
    };
    let mut data = Vec::with_capacity(1 + alg.len() + signature.len());
    data.push(alg.len() as u8);
    data.extend_from_slice(alg);
    data.extend_from_slice(&signature);
    data
}

/// Checks the Authentication Data of a method-14 AUTH payload against `octets` with the key
/// from the peer's verified certificate. Returns the scheme the peer used.
pub fn verify(
    key: &PeerPublicKey,
    octets: &[u8],
    auth_data: &[u8],
) -> Result<SignatureScheme, CryptoError> {
    let (&alg_len, rest) = auth_data
        .split_first()
        .ok_or(CryptoError::MalformedAuth("empty authentication data"))?;
    let alg_len = usize::from(alg_len);
    if rest.len() < alg_len {
        return Err(CryptoError::MalformedAuth(
            "AlgorithmIdentifier longer than the payload",
        ));
    }
    let (alg, signature) = rest.split_at(alg_len);
    let scheme = SignatureScheme::from_algorithm_identifier(alg).ok_or_else(|| {
        CryptoError::UnsupportedSignatureAlgorithm(alg.iter().map(|b| format!("{b:02x}")).collect())
    })?;
    match (key, scheme) {
        (PeerPublicKey::Ed25519(k), SignatureScheme::Ed25519) => {
            let sig = ed25519_dalek::Signature::from_slice(signature)
                .map_err(|_| CryptoError::MalformedAuth("Ed25519 signature is not 64 bytes"))?;
            k.verify_strict(octets, &sig)
                .map_err(|_| CryptoError::BadSignature)?;
        }
        (PeerPublicKey::P256(k), _) if scheme != SignatureScheme::Ed25519 => {
            let sig = p256::ecdsa::Signature::from_der(signature)
                .map_err(|_| CryptoError::MalformedAuth("ECDSA signature is not DER"))?;
            let result = match scheme {
                SignatureScheme::EcdsaSha384 => k.verify_prehash(&Sha384::digest(octets), &sig),
                SignatureScheme::EcdsaSha512 => k.verify_prehash(&Sha512::digest(octets), &sig),
                _ => k.verify_prehash(&Sha256::digest(octets), &sig),
            };
            result.map_err(|_| CryptoError::BadSignature)?;
        }
        _ => {
            return Err(CryptoError::SignatureKeyMismatch {
                scheme: scheme.name(),
                key: key.key_type(),
            });
        }
    }
    Ok(scheme)
}

/// The AUTH payload we send: method 14 with [`sign`]'s data.
pub fn sign_payload(key: &PrivateKey, octets: &[u8]) -> Authentication {
    Authentication::new(AUTH_METHOD, sign(key, octets))
}

/// Checks a received AUTH payload: method 14 only, then [`verify`].
pub fn verify_payload(
    key: &PeerPublicKey,
    octets: &[u8],
    payload: &Authentication,
) -> Result<SignatureScheme, CryptoError> {
    if payload.method != AUTH_METHOD {
        return Err(CryptoError::UnsupportedAuthMethod(payload.method.0));
    }
    verify(key, octets, &payload.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_hash_algorithms_notify_data() {
        assert_eq!(signature_hash_algorithms_data(), [0, 2, 0, 3, 0, 4, 0, 5]);
        assert_eq!(
            parse_signature_hash_algorithms(&signature_hash_algorithms_data()).unwrap(),
            ACCEPTED_HASH_ALGORITHMS
        );
        assert_eq!(
            parse_signature_hash_algorithms(&[0, 9]).unwrap(),
            [HashAlgorithm(9)]
        );
        assert!(matches!(
            parse_signature_hash_algorithms(&[0, 2, 0]),
            Err(CryptoError::MalformedHashAlgorithms(3))
        ));
    }

    #[test]
    fn signed_octets_layout() {
        let octets = signed_octets(b"MSG", b"NONCE", b"key", &[2, 0, 0, 0, b'a']);
        assert_eq!(&octets[..8], b"MSGNONCE");
        assert_eq!(octets[8..], prf(b"key", &[&[2, 0, 0, 0, b'a']]));
    }
}
