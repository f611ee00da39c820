//! Typed errors of the IKE message layer, each mapped to the Notify that reports it to the peer
//! (RFC 7296 2.21; docs/ARCHITECTURE.md, "Conventions").

use super::registry::{NotifyType, PayloadType};

/// What went wrong while parsing or emitting an IKE message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The bytes end before the structure does.
    #[error("truncated {what}: needs {needed} bytes, {available} left")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A length field disagrees with the structure it describes.
    #[error("{what} has an invalid length of {length}")]
    InvalidLength {
        /// The structure whose length is wrong.
        what: &'static str,
        /// The length found.
        length: usize,
    },
    /// The IKE header's length differs from the datagram's.
    #[error("IKE header says {declared} bytes, the datagram has {actual}")]
    LengthMismatch {
        /// Length in the IKE header.
        declared: u32,
        /// Bytes received.
        actual: usize,
    },
    /// The major version is not 2.
    #[error("IKE major version {0} is not supported")]
    UnsupportedMajorVersion(u8),
    /// A payload this crate does not understand had its critical bit set (RFC 7296 2.5).
    #[error("unsupported critical payload of type {0}")]
    UnsupportedCriticalPayload(PayloadType),
    /// A field holds a value the format forbids.
    #[error("invalid {field}: {value}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// An SK or SKF payload is followed by further payloads; it must be the last one.
    #[error("{0} payload is not the last payload of the message")]
    EncryptedNotLast(PayloadType),
    /// An SK or SKF payload inside the decrypted content of another one.
    #[error("{0} payload nested inside an encrypted payload")]
    NestedEncrypted(PayloadType),
    /// Bytes follow the payload whose Next Payload is NONE.
    #[error("{0} bytes after the last payload")]
    TrailingBytes(usize),
    /// A structure is too large for its length field (an emit-side error).
    #[error("{0} is too long to encode")]
    TooLong(&'static str),
    /// The output buffer is smaller than `buffer_len()` (an emit-side error).
    #[error("output buffer too small: needs {needed} bytes, has {available}")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
}

impl WireError {
    /// The Notify type that reports this error to the peer, or `None` for errors of our own
    /// making (emit-side) that never go on the wire.
    ///
    /// Whether to answer at all is the state machine's call: RFC 7296 2.21 forbids answering
    /// an unauthenticated or unprotected message with more than a few of these.
    pub const fn notify_type(&self) -> Option<NotifyType> {
        match self {
            WireError::UnsupportedCriticalPayload(_) => {
                Some(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD)
            }
            WireError::UnsupportedMajorVersion(_) => Some(NotifyType::INVALID_MAJOR_VERSION),
            WireError::TooLong(_) | WireError::BufferTooSmall { .. } => None,
            WireError::Truncated { .. }
            | WireError::InvalidLength { .. }
            | WireError::LengthMismatch { .. }
            | WireError::InvalidValue { .. }
            | WireError::EncryptedNotLast(_)
            | WireError::NestedEncrypted(_)
            | WireError::TrailingBytes(_) => Some(NotifyType::INVALID_SYNTAX),
        }
    }

    /// The Notification Data that goes with [`notify_type`](Self::notify_type): the one-octet
    /// payload type for UNSUPPORTED_CRITICAL_PAYLOAD (RFC 7296 3.10.1), empty otherwise.
    pub fn notify_data(&self) -> Vec<u8> {
        match self {
            WireError::UnsupportedCriticalPayload(t) => vec![t.0],
            _ => Vec::new(),
        }
    }
}
