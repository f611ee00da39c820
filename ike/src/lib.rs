//! IKEv2 (RFC 7296) as a sans-IO state machine: the wire format ([`wire`]), the cryptography
//! ([`crypto`]), proposals and traffic selectors, one type per exchange step ([`sa`]) and the
//! [`endpoint`] that holds every IKE SA of a daemon. Inputs go in through `handle_*`, outputs
//! come out of `poll_*`; time and randomness are arguments, so the compiler keeps this crate
//! free of I/O (docs/ARCHITECTURE.md, "The sans-IO contract"). The daemon that drives it is
//! `hometun_daemon`.

pub mod crypto;
pub mod endpoint;
pub mod error;
pub mod io;
pub mod notice;
pub mod proposal;
pub mod sa;
pub mod selectors;
pub mod settings;
#[cfg(feature = "test-util")]
pub mod sim;
pub mod status;
pub mod window;
pub mod wire;
