//! The IKEv2 message layer (RFC 7296 section 3): registries, header, payloads, messages and the
//! SK payload framing. Untrusted bytes enter only through the `parse` functions here; every
//! `parse` has an `emit` that gives the same bytes back.

pub mod error;
pub mod registry;
pub mod sk;

pub use error::WireError;
pub use registry::*;
pub use sk::{NullCipher, SkCipher, SkError};
