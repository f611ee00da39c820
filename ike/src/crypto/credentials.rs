//! Our private key and the peer's public key, and loading PEM files (certificates, private keys,
//! CRLs). Ed25519 and ECDSA P-256 only.

use std::fmt;

// One `pkcs8` crate serves both ed25519-dalek and p256.
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use zeroize::Zeroize;

use super::CryptoError;

/// Our signing key (the one that belongs to our certificate). Wiped on drop.
pub enum PrivateKey {
    /// An Ed25519 key (RFC 8410 PKCS#8).
    Ed25519(Ed25519Key),
    /// An ECDSA P-256 key (PKCS#8 or SEC1 "EC PRIVATE KEY").
    P256(p256::ecdsa::SigningKey),
}

impl PrivateKey {
    /// Reads the first private key in a PEM file: PKCS#8 Ed25519 or P-256, or SEC1 P-256.
    pub fn from_pem(pem_bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut der = PrivateKeyDer::from_pem_slice(pem_bytes)
            .map_err(|e| CryptoError::Credentials(format!("no private key in PEM: {e}")))?;
        let key = Self::from_key_der(&der);
        der.zeroize();
        key
    }

    /// Reads a DER private key: PKCS#8 (Ed25519 or P-256) or SEC1 (P-256).
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_der(der) {
            return Ed25519Key::from_seed(key.as_bytes()).map(PrivateKey::Ed25519);
        }
        if let Ok(key) = p256::SecretKey::from_pkcs8_der(der) {
            return Ok(PrivateKey::P256(key.into()));
        }
        if let Ok(key) = p256::SecretKey::from_sec1_der(der) {
            return Ok(PrivateKey::P256(key.into()));
        }
        Err(CryptoError::Credentials(
            "private key is neither Ed25519 nor P-256 (PKCS#8 or SEC1)".into(),
        ))
    }

    /// An Ed25519 key from its 32-byte seed (RFC 8032 5.1.5).
    pub fn ed25519_from_seed(seed: &[u8; 32]) -> Result<Self, CryptoError> {
        Ed25519Key::from_seed(seed).map(PrivateKey::Ed25519)
    }

    fn from_key_der(der: &PrivateKeyDer<'_>) -> Result<Self, CryptoError> {
        match der {
            PrivateKeyDer::Pkcs8(k) => Self::from_der(k.secret_pkcs8_der()),
            PrivateKeyDer::Sec1(k) => p256::SecretKey::from_sec1_der(k.secret_sec1_der())
                .map(|k| PrivateKey::P256(k.into()))
                .map_err(|_| CryptoError::Credentials("SEC1 key is not a P-256 key".into())),
            _ => Err(CryptoError::Credentials(
                "private key type not supported (only Ed25519 and P-256)".into(),
            )),
        }
    }

    /// The matching public key (compare with the certificate's to catch a mismatched pair).
    pub fn public_key(&self) -> PeerPublicKey {
        match self {
            PrivateKey::Ed25519(k) => PeerPublicKey::Ed25519(k.public),
            PrivateKey::P256(k) => PeerPublicKey::P256(*k.verifying_key()),
        }
    }

    /// "Ed25519" or "ECDSA P-256".
    pub fn key_type(&self) -> &'static str {
        self.public_key().key_type()
    }

    /// Checks that `certificate` (DER) carries this key's public key, so a daemon refuses to
    /// start with a key and certificate that do not belong together.
    pub fn check_matches_certificate(&self, certificate: &[u8]) -> Result<(), CryptoError> {
        if certificate_public_key(certificate)? == self.public_key() {
            Ok(())
        } else {
            Err(CryptoError::Credentials(
                "private key does not match the certificate".into(),
            ))
        }
    }
}

/// An Ed25519 signing key. aws-lc signs: its assembly takes about half of ed25519-dalek's time
/// per signature, and a responder signs once per handshake (README, "Crates chosen, and why").
/// aws-lc wipes the key when it frees it.
pub struct Ed25519Key {
    signer: aws_lc_rs::signature::Ed25519KeyPair,
    public: ed25519_dalek::VerifyingKey,
}

impl Ed25519Key {
    fn from_seed(seed: &[u8; 32]) -> Result<Self, CryptoError> {
        let signer = aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| CryptoError::Credentials(format!("Ed25519 key refused: {e}")))?;
        let public = ed25519_dalek::SigningKey::from_bytes(seed).verifying_key();
        Ok(Ed25519Key { signer, public })
    }

    /// The 64-byte signature of `message` (RFC 8032 5.1.6).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.signer.sign(message).as_ref().to_vec()
    }
}

/// The public key of a DER certificate (Ed25519 or P-256), without verifying anything.
pub fn certificate_public_key(certificate: &[u8]) -> Result<PeerPublicKey, CryptoError> {
    let der = CertificateDer::from(certificate);
    let cert = webpki::EndEntityCert::try_from(&der)
        .map_err(|e| CryptoError::Credentials(format!("malformed certificate: {e:?}")))?;
    PeerPublicKey::from_spki_der(cert.subject_public_key_info().as_ref()).ok_or_else(|| {
        CryptoError::Credentials("certificate key is neither Ed25519 nor P-256".into())
    })
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, <redacted>)", self.key_type())
    }
}

/// A public key to check a peer's AUTH payload with, taken from its verified certificate.
#[derive(Clone, PartialEq, Eq)]
pub enum PeerPublicKey {
    /// An Ed25519 key.
    Ed25519(ed25519_dalek::VerifyingKey),
    /// An ECDSA P-256 key.
    P256(p256::ecdsa::VerifyingKey),
}

impl PeerPublicKey {
    /// Parses a DER SubjectPublicKeyInfo (RFC 5280 4.1.2.7); `None` for other key types.
    pub fn from_spki_der(spki: &[u8]) -> Option<Self> {
        if let Ok(key) = ed25519_dalek::VerifyingKey::from_public_key_der(spki) {
            return Some(PeerPublicKey::Ed25519(key));
        }
        if let Ok(key) = p256::PublicKey::from_public_key_der(spki) {
            return Some(PeerPublicKey::P256(key.into()));
        }
        None
    }

    /// "Ed25519" or "ECDSA P-256".
    pub fn key_type(&self) -> &'static str {
        match self {
            PeerPublicKey::Ed25519(_) => "Ed25519",
            PeerPublicKey::P256(_) => "ECDSA P-256",
        }
    }
}

impl fmt::Debug for PeerPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerPublicKey::Ed25519(k) => {
                write!(f, "PeerPublicKey(Ed25519, ")?;
                for b in k.as_bytes() {
                    write!(f, "{b:02x}")?;
                }
                write!(f, ")")
            }
            PeerPublicKey::P256(k) => {
                write!(f, "PeerPublicKey(P-256, ")?;
                for b in k.to_sec1_bytes().iter() {
                    write!(f, "{b:02x}")?;
                }
                write!(f, ")")
            }
        }
    }
}

/// All certificates in a PEM file, as DER, in file order. An empty file is an error.
pub fn certificates_from_pem(pem_bytes: &[u8]) -> Result<Vec<Vec<u8>>, CryptoError> {
    let certs = CertificateDer::pem_slice_iter(pem_bytes)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| CryptoError::Credentials(format!("bad certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(CryptoError::Credentials("no certificate in PEM".into()));
    }
    Ok(certs)
}

/// All CRLs in `bytes`: one DER CRL, or any number of PEM "X509 CRL" sections.
pub fn crls_from_pem_or_der(bytes: &[u8]) -> Result<Vec<Vec<u8>>, CryptoError> {
    // A DER CRL is a SEQUENCE; PEM text starts with "-----" or whitespace.
    if bytes.first() == Some(&0x30) {
        return Ok(vec![bytes.to_vec()]);
    }
    let crls = CertificateRevocationListDer::pem_slice_iter(bytes)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| CryptoError::Credentials(format!("bad CRL PEM: {e}")))?;
    if crls.is_empty() {
        return Err(CryptoError::Credentials("no CRL in file".into()));
    }
    Ok(crls)
}
