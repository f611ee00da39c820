//! The IKEv2 message layer (RFC 7296 section 3): registries, header, payloads, messages and the
//! SK payload framing (RFC 5282). Sans-IO and allocation-light.
//!
//! Untrusted bytes enter only through the `parse` functions; every `parse` has an `emit` that
//! writes the same bytes back, and a `buffer_len` that says how many. Reading a message:
//!
//! ```
//! use hometun_ike::wire::{Message, NullCipher, Payload, ProtectedMessage};
//! # fn f(datagram: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! let message = Message::parse(datagram)?;
//! for payload in &message.payloads {
//!     if let Payload::Notify(n) = payload {
//!         println!("{}", n.notify_type);
//!     }
//! }
//! // With SK: check, decrypt and parse the inner payloads in one go.
//! let opened = ProtectedMessage::open(datagram, &NullCipher)?;
//! # let _ = opened; Ok(()) }
//! ```
//!
//! Building one: fill a [`Header`] with [`Header::new`], then [`Message::to_bytes`] or
//! [`ProtectedMessage::seal`]; both compute the header's Next Payload and Length.

mod codec;
pub mod config;
pub mod encrypted;
pub mod error;
pub mod header;
pub mod identity;
pub mod keying;
pub mod message;
pub mod notify;
pub mod payload;
pub mod registry;
pub mod sa;
pub mod sk;
pub mod ts;

pub use config::{ConfigAttribute, Configuration};
pub use encrypted::{Encrypted, EncryptedFragment};
pub use error::WireError;
pub use header::{
    Flags, HEADER_LEN, Header, NON_ESP_MARKER, Port4500, add_non_esp_marker, classify_port_4500,
    strip_non_esp_marker,
};
pub use identity::{
    Authentication, Certificate, CertificateRequest, DigitalSignature, Identification,
};
pub use keying::{KeyExchange, Nonce};
pub use message::Message;
pub use notify::{Delete, Notify};
pub use payload::{
    Payload, PayloadList, UnknownPayload, VendorId, emit_payloads, first_payload_type,
    parse_payloads, payloads_len,
};
pub use registry::*;
pub use sa::{AttributeValue, Proposal, SecurityAssociation, Transform, TransformAttribute};
pub use sk::{NullCipher, ProtectedMessage, SkCipher, SkError, open_encrypted, parse_decrypted};
pub use ts::{AddressRange, TrafficSelector, TrafficSelectors};
