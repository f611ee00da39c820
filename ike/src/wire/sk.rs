//! The SK (Encrypted and Authenticated) payload framing of RFC 7296 3.14 with an AEAD cipher
//! (RFC 5282): the cipher interface, a null cipher for tests and fuzzing, and sealing/opening
//! whole messages.
//!
//! Layout of the SK payload body: `IV || ciphertext || ICV`, where the plaintext is
//! `inner payloads || padding || pad length (1 byte)`. The AAD is the message from the first
//! octet of the IKE header through the last octet of the SK payload's generic header, so every
//! length in the header and in the SK generic header is final before sealing.

use super::codec::{Writer, len_u16};
use super::header::HEADER_LEN;
use super::payload::{
    GENERIC_HEADER_LEN, first_payload_type, parse_chain, payloads_len, write_chain,
};
use super::{Encrypted, Header, Message, Payload, PayloadType, WireError};

/// What can go wrong when sealing or opening an SK payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkError {
    /// The message around the SK payload is malformed (not yet authenticated).
    #[error("malformed message: {0}")]
    Malformed(WireError),
    /// The decrypted, authenticated content is malformed.
    #[error("malformed encrypted content: {0}")]
    InnerMalformed(WireError),
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

/// A message whose payloads travel inside an SK payload, seen in the clear: what the state
/// machine builds before [`seal`](Self::seal) and gets back from [`open`](Self::open).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProtectedMessage {
    /// The header. `seal` fills in its `next_payload` and `length`.
    pub header: Header,
    /// Payloads in the clear before the SK payload (none in the exchanges of RFC 7296).
    pub outer: Vec<Payload>,
    /// The payloads inside the SK payload.
    pub inner: Vec<Payload>,
}

impl ProtectedMessage {
    /// A message whose payloads all go inside the SK payload.
    pub fn new(header: Header, inner: Vec<Payload>) -> Self {
        Self {
            header,
            outer: Vec::new(),
            inner,
        }
    }

    /// Length of the sealed message for a cipher and a padding length.
    pub fn sealed_len<C: SkCipher + ?Sized>(&self, cipher: &C, pad_len: u8) -> usize {
        HEADER_LEN
            + payloads_len(&self.outer)
            + GENERIC_HEADER_LEN
            + cipher.iv_len()
            + payloads_len(&self.inner)
            + usize::from(pad_len)
            + 1
            + cipher.icv_len()
    }

    /// Builds the message with the inner payloads encrypted into an SK payload.
    ///
    /// `iv` is the explicit IV (the caller draws it: for AES-GCM it must never repeat under a
    /// key), `pad_len` the number of padding octets (0 is right for AES-GCM, RFC 5282 3).
    pub fn seal<C: SkCipher + ?Sized>(
        &self,
        cipher: &C,
        iv: &[u8],
        pad_len: u8,
    ) -> Result<Vec<u8>, SkError> {
        let iv_len = cipher.iv_len();
        let icv_len = cipher.icv_len();
        if iv.len() != iv_len {
            return Err(SkError::IvLength {
                expected: iv_len,
                actual: iv.len(),
            });
        }
        if self.outer.iter().any(Payload::is_encrypted) {
            return Err(SkError::Malformed(WireError::EncryptedNotLast(
                PayloadType::SK,
            )));
        }
        let total = self.sealed_len(cipher, pad_len);
        let length =
            u32::try_from(total).map_err(|_| SkError::Malformed(WireError::TooLong("message")))?;
        let plain_len = payloads_len(&self.inner) + usize::from(pad_len) + 1;
        let sk_len = len_u16(
            GENERIC_HEADER_LEN + iv_len + plain_len + icv_len,
            "SK payload",
        )
        .map_err(SkError::Malformed)?;

        let mut buf = vec![0; total];
        let header = Header {
            next_payload: if self.outer.is_empty() {
                PayloadType::SK
            } else {
                first_payload_type(&self.outer)
            },
            length,
            ..self.header.clone()
        };
        let mut w = Writer::new(&mut buf);
        let written: Result<usize, WireError> = (|| {
            header.write(&mut w)?;
            write_chain(&self.outer, PayloadType::SK, &mut w)?;
            w.u8(first_payload_type(&self.inner).0)?;
            w.u8(0)?;
            w.u16(sk_len)?;
            w.bytes(iv)?;
            let aad_len = w.position() - iv_len;
            write_chain(&self.inner, PayloadType::NONE, &mut w)?;
            w.zeros(usize::from(pad_len))?;
            w.u8(pad_len)?;
            Ok(aad_len)
        })();
        let aad_len = written.map_err(SkError::Malformed)?;

        let (aad, body) = buf.split_at_mut(aad_len);
        let (_, rest) = body.split_at_mut(iv_len);
        let (plaintext, icv_slot) = rest.split_at_mut(plain_len);
        let icv = cipher.seal(iv, aad, plaintext)?;
        if icv.len() != icv_len {
            return Err(SkError::IcvLength {
                expected: icv_len,
                actual: icv.len(),
            });
        }
        icv_slot.copy_from_slice(&icv);
        Ok(buf)
    }

    /// Parses a message whose last payload is SK, checks and decrypts it, and parses the
    /// payloads inside.
    pub fn open<C: SkCipher + ?Sized>(bytes: &[u8], cipher: &C) -> Result<Self, SkError> {
        let mut message = Message::parse(bytes).map_err(SkError::Malformed)?;
        let encrypted = match message.payloads.pop() {
            Some(Payload::Encrypted(e)) => e,
            Some(Payload::EncryptedFragment(_)) => return Err(SkError::Fragment),
            _ => return Err(SkError::NoEncryptedPayload),
        };
        // The SK payload is the last one, so its body ends the message: the AAD is the rest.
        let aad_len = bytes.len() - encrypted.data.len();
        let aad = bytes.get(..aad_len).unwrap_or_default();
        let inner = open_encrypted(encrypted, aad, cipher)?;
        Ok(Self {
            header: message.header,
            outer: message.payloads,
            inner,
        })
    }
}

/// Checks and decrypts an SK payload in place and parses the payloads inside. `aad` is the
/// message from the IKE header through the SK payload's generic header.
pub fn open_encrypted<C: SkCipher + ?Sized>(
    encrypted: Encrypted,
    aad: &[u8],
    cipher: &C,
) -> Result<Vec<Payload>, SkError> {
    let iv_len = cipher.iv_len();
    let icv_len = cipher.icv_len();
    let mut data = encrypted.data;
    let body_len = data.len();
    if body_len < iv_len + icv_len + 1 {
        return Err(SkError::TooShort(body_len));
    }
    let (iv, rest) = data.split_at_mut(iv_len);
    let (ciphertext, icv) = rest.split_at_mut(body_len - iv_len - icv_len);
    cipher.open(iv, aad, ciphertext, icv)?;
    parse_decrypted(encrypted.first_inner, ciphertext)
}

/// Parses decrypted SK content (inner payloads || padding || pad length) whose first payload has
/// type `first_inner`. Exposed for fuzzing and tests of the inner chain.
pub fn parse_decrypted(
    first_inner: PayloadType,
    plaintext: &[u8],
) -> Result<Vec<Payload>, SkError> {
    let Some((&pad_len, before)) = plaintext.split_last() else {
        return Err(SkError::TooShort(0));
    };
    let content_len =
        before
            .len()
            .checked_sub(usize::from(pad_len))
            .ok_or(SkError::InvalidPadLength {
                pad_len,
                available: before.len(),
            })?;
    let content = before.get(..content_len).unwrap_or_default();
    parse_chain(first_inner, content, true).map_err(SkError::InnerMalformed)
}
