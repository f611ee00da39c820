//! The Key Exchange (RFC 7296 3.4) and Nonce (3.9) payloads.

use super::codec::{Reader, Writer, impl_emit};
use super::{DhGroup, WireError};

/// Smallest nonce RFC 7296 3.9 allows.
pub const NONCE_MIN_LEN: usize = 16;
/// Largest nonce RFC 7296 3.9 allows.
pub const NONCE_MAX_LEN: usize = 256;

/// KE payload: a Diffie-Hellman public value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyExchange {
    /// The group the value belongs to.
    pub group: DhGroup,
    /// The public value (32 octets for X25519, 64 for P-256).
    pub data: Vec<u8>,
}

impl KeyExchange {
    /// A KE payload.
    pub fn new(group: DhGroup, data: Vec<u8>) -> Self {
        Self { group, data }
    }

    /// Parses a KE payload body.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "KE payload");
        let group = DhGroup(r.u16()?);
        r.skip(2)?;
        Ok(Self {
            group,
            data: r.rest().to_vec(),
        })
    }

    /// Length of the emitted body.
    pub fn buffer_len(&self) -> usize {
        4 + self.data.len()
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u16(self.group.0)?;
        w.u16(0)?;
        w.bytes(&self.data)
    }
}
impl_emit!(KeyExchange);

/// Nonce payload (Ni or Nr): 16 to 256 random octets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nonce {
    /// The nonce.
    pub data: Vec<u8>,
}

impl Nonce {
    /// A Nonce payload.
    pub fn new(data: Vec<u8>) -> Self {
        Self { data }
    }

    /// Parses a Nonce payload body, checking the length bounds of RFC 7296 3.9.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        check_nonce_len(body.len())?;
        Ok(Self {
            data: body.to_vec(),
        })
    }

    /// Length of the emitted body.
    pub fn buffer_len(&self) -> usize {
        self.data.len()
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        check_nonce_len(self.data.len())?;
        w.bytes(&self.data)
    }
}
impl_emit!(Nonce);

fn check_nonce_len(length: usize) -> Result<(), WireError> {
    if (NONCE_MIN_LEN..=NONCE_MAX_LEN).contains(&length) {
        Ok(())
    } else {
        Err(WireError::InvalidLength {
            what: "nonce",
            length,
        })
    }
}
