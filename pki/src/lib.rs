//! CA, enrollment and prefix allocation for hometun.
//!
//! The server operator adds a home in one step, and the home's certificate itself says which
//! IPv6 prefix it owns (RFC 3779 address blocks).
//!
//! - [`server_dir::ServerDir`]: the CA directory: `pki init`, `sign`, `token`, `revoke`, `list`.
//! - [`client_dir::ClientDir`]: the home's directory: `pki request`, `pki import`.
//! - [`registry`]: prefix allocation, revocations and tokens, crash-safe and locked.
//! - [`bundle`]: the file `sign` writes and `import` reads.
//! - [`enroll`]: online enrollment over TLS with a one-time [`token`].
//! - [`renew`]: the home renews its certificate before it expires ([`renewal`]: the server's
//!   side), authenticated by the certificate it has.
//! - For the IKE daemon: the enrollment listener [`enroll::server::EnrollmentServer`].
//!
//! Certificate chains and the RFC 3779 extension are checked by `hometun_certs`, which the
//! IKE daemon shares.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bundle;
pub mod ca;
pub mod cli;
pub mod client_dir;
pub mod csr;
pub mod enroll;
mod error;
pub mod files;
pub mod names;
pub mod registry;
pub mod renew;
pub mod renewal;
pub mod server_dir;
pub mod token;

pub use error::PkiError;
pub use hometun_certs::DerError;
