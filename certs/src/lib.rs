//! Certificates as hometun checks them, for both the IKE daemon and the PKI:
//!
//! - [`verify`]: [`verify::ChainVerifier`], the one place hometun calls rustls-webpki's path
//!   validation (trust anchors, CRLs, Ed25519 and ECDSA P-256), and [`verify::TrustStore`],
//!   the CA's own checks of home and server certificates;
//! - [`addrblock`]: the RFC 3779 IP address block extension that says which prefix a home
//!   owns;
//! - [`der`]: the minimal DER reader the address blocks are read with;
//! - [`signature_memo`]: the signature checks that succeeded, remembered, so that a CRL or a
//!   home certificate is not verified again on every handshake;
//! - [`memo`]: the bounded memo it and the parsers of certificate bytes keep their results in.
//!
//! No I/O: certificates, keys and CRLs come in as bytes (docs/ARCHITECTURE.md, "Crates").

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod addrblock;
pub mod der;
pub mod memo;
pub mod signature_memo;
pub mod verify;

pub use der::DerError;
