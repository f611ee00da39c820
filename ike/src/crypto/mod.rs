//! The cryptography of the IKE daemon: Diffie-Hellman (X25519, P-256), the key schedule
//! (SKEYSEED, prf+, SK_*, CHILD SA KEYMAT), the SK payload cipher (AES-GCM), AUTH payloads
//! (RFC 7427 signatures with Ed25519 and ECDSA P-256), certificate validation, NAT detection
//! hashes and COOKIEs.
//!
//! No clock and no randomness inside: random bytes and the current time are arguments
//! (docs/ARCHITECTURE.md, "The sans-IO contract"). Secrets are wiped when dropped.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod auth;
pub mod cert;
pub mod cookie;
pub mod credentials;
pub mod dh;
mod error;
pub mod keys;
pub mod natd;
pub mod sk_gcm;
pub mod suite;
pub mod validity;

pub use auth::{AuthRole, SignatureScheme};
pub use cert::{CertError, CertificateVerifier, PeerIdentity, PeerUsage, VerifiedPeer};
pub use cookie::CookieGenerator;
pub use credentials::{Ed25519Key, PeerPublicKey, PrivateKey};
pub use dh::{DhGroup, KeyExchange};
pub use error::CryptoError;
pub use keys::{ChildSaKeys, IkeSaKeys, Skeyseed};
pub use natd::natd_hash;
pub use sk_gcm::SkGcm;
