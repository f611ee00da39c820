//! The SK (Encrypted and Authenticated) payload framing of RFC 7296 3.14 with an AEAD cipher
//! (RFC 5282): the cipher interface, a null cipher for tests and fuzzing, and sealing/opening
//! whole messages.
//!
//! Layout of the SK payload body: `IV || ciphertext || ICV`, where the plaintext is
//! `inner payloads || padding || pad length (1 byte)`. The AAD is the message from the first
//! octet of the IKE header through the last octet of the SK payload's generic header, so every
//! length in the header and in the SK generic header is final before sealing.

/// What can go wrong when sealing or opening an SK payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkError {
    /// The message around the SK payload is malformed (not yet authenticated).
    #[error("malformed message: {0}")]
    Malformed(super::WireError),
    /// The decrypted, authenticated content is malformed.
    #[error("malformed encrypted content: {0}")]
    InnerMalformed(super::WireError),
    /// The message has no SK payload.
    #[error("the message has no SK payload")]
    NoEncryptedPayload,
    /// The message carries an SKF fragment (RFC 7383); reassembly is not built.
    #[error("the message is an SKF fragment; reassembly is not supported")]
    Fragment,
    /// The IV given to seal, or the cipher's IV length, is wrong.
    #[error("IV of {actual} bytes, the cipher needs {expected}")]
    IvLength {
        /// The cipher's IV length.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// The ICV a cipher returned or received has the wrong length.
    #[error("ICV of {actual} bytes, the cipher needs {expected}")]
    IcvLength {
        /// The cipher's ICV length.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// The SK payload body cannot hold IV, ICV and the pad length byte.
    #[error("SK payload body of {0} bytes is too short for IV, ICV and pad length")]
    TooShort(usize),
    /// The ICV does not match: wrong key, or the message was altered.
    #[error("integrity check failed")]
    IntegrityCheckFailed,
    /// The pad length byte points before the start of the plaintext.
    #[error("pad length {pad_len} does not fit in {available} decrypted bytes")]
    InvalidPadLength {
        /// The pad length found.
        pad_len: u8,
        /// Plaintext bytes before the pad length byte.
        available: usize,
    },
    /// The cipher failed for a reason of its own (for example a key of the wrong length).
    #[error("cipher failure: {0}")]
    Cipher(&'static str),
}

impl SkError {
    /// The Notify type that reports this error to the peer, or `None` when the message must be
    /// dropped silently (it could not be authenticated, RFC 7296 2.21.2) or the error is local.
    pub const fn notify_type(&self) -> Option<super::NotifyType> {
        match self {
            SkError::InnerMalformed(e) => e.notify_type(),
            SkError::InvalidPadLength { .. } => Some(super::NotifyType::INVALID_SYNTAX),
            _ => None,
        }
    }
}

/// An AEAD cipher protecting SK payloads (RFC 5282). ike-crypto implements it for AES-GCM-16;
/// [`NullCipher`] is the test double.
pub trait SkCipher {
    /// Length of the explicit IV (8 for AES-GCM).
    fn iv_len(&self) -> usize;
    /// Length of the integrity check value (16 for AES-GCM-16).
    fn icv_len(&self) -> usize;
    /// Encrypts `buf` in place (inner payloads || padding || pad-length byte) and returns the ICV.
    fn seal(&self, iv: &[u8], aad: &[u8], buf: &mut [u8]) -> Result<Vec<u8>, SkError>;
    /// Decrypts `buf` in place after checking `icv`.
    fn open(&self, iv: &[u8], aad: &[u8], buf: &mut [u8], icv: &[u8]) -> Result<(), SkError>;
}

/// A cipher that does not encrypt: 8-byte IV, 16-byte ICV of zeros (checked on open). For tests
/// and fuzzing only; it offers no protection.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullCipher;

impl NullCipher {
    const IV_LEN: usize = 8;
    const ICV_LEN: usize = 16;
}

impl SkCipher for NullCipher {
    fn iv_len(&self) -> usize {
        Self::IV_LEN
    }

    fn icv_len(&self) -> usize {
        Self::ICV_LEN
    }

    fn seal(&self, iv: &[u8], _aad: &[u8], _buf: &mut [u8]) -> Result<Vec<u8>, SkError> {
        if iv.len() != Self::IV_LEN {
            return Err(SkError::IvLength {
                expected: Self::IV_LEN,
                actual: iv.len(),
            });
        }
        Ok(vec![0; Self::ICV_LEN])
    }

    fn open(&self, iv: &[u8], _aad: &[u8], _buf: &mut [u8], icv: &[u8]) -> Result<(), SkError> {
        if iv.len() != Self::IV_LEN {
            return Err(SkError::IvLength {
                expected: Self::IV_LEN,
                actual: iv.len(),
            });
        }
        if icv.len() != Self::ICV_LEN {
            return Err(SkError::IcvLength {
                expected: Self::ICV_LEN,
                actual: icv.len(),
            });
        }
        if icv.iter().any(|&b| b != 0) {
            return Err(SkError::IntegrityCheckFailed);
        }
        Ok(())
    }
}
