//! The SK (RFC 7296 3.14) and SKF (RFC 7383 2.5) payloads as they travel: still encrypted.
//! [`super::sk`] seals and opens them.

use super::codec::{Reader, Writer, impl_emit};
use super::{PayloadType, WireError};

/// SK payload, encrypted: the IV, ciphertext and ICV as one byte string (their split depends
/// on the cipher), and the type of the first payload inside, which travels in the SK payload's
/// Next Payload field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Encrypted {
    /// Type of the first inner payload (NONE for an empty INFORMATIONAL).
    pub first_inner: PayloadType,
    /// IV || ciphertext || ICV.
    pub data: Vec<u8>,
}

impl Encrypted {
    /// Parses an SK payload body; `first_inner` is its generic header's Next Payload.
    pub fn parse(first_inner: PayloadType, body: &[u8]) -> Self {
        Self {
            first_inner,
            data: body.to_vec(),
        }
    }

    /// Length of the emitted body.
    pub fn buffer_len(&self) -> usize {
        self.data.len()
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.bytes(&self.data)
    }
}
impl_emit!(Encrypted);

/// SKF payload (one fragment of an SK payload, RFC 7383), recognised and kept encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EncryptedFragment {
    /// Type of the first inner payload in fragment 1, NONE in the others.
    pub first_inner: PayloadType,
    /// This fragment's number, from 1.
    pub fragment_number: u16,
    /// How many fragments the message has.
    pub total_fragments: u16,
    /// IV || ciphertext || ICV of this fragment.
    pub data: Vec<u8>,
}

impl EncryptedFragment {
    /// Parses an SKF payload body; `first_inner` is its generic header's Next Payload.
    pub fn parse(first_inner: PayloadType, body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "SKF payload");
        let fragment_number = r.u16()?;
        let total_fragments = r.u16()?;
        Ok(Self {
            first_inner,
            fragment_number,
            total_fragments,
            data: r.rest().to_vec(),
        })
    }

    /// Length of the emitted body.
    pub fn buffer_len(&self) -> usize {
        4 + self.data.len()
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u16(self.fragment_number)?;
        w.u16(self.total_fragments)?;
        w.bytes(&self.data)
    }
}
impl_emit!(EncryptedFragment);
