//! Bounds-checked cursors over byte slices: every read and write returns an error instead of
//! panicking when the bytes run out.

use super::WireError;

/// Reads big-endian fields from untrusted bytes.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`; `what` names the structure in errors.
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.buf.len() {
            return Err(WireError::Truncated {
                what: self.what,
                needed: n,
                available: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Everything not yet read.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Skips `n` reserved bytes (ignored on receipt, RFC 7296 3).
    pub(crate) fn skip(&mut self, n: usize) -> Result<(), WireError> {
        self.take(n).map(|_| ())
    }
}

/// Writes big-endian fields into a caller's buffer.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes written so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let end = self.pos.saturating_add(bytes.len());
        let available = self.buf.len();
        let dst = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(WireError::BufferTooSmall {
                needed: end,
                available,
            })?;
        dst.copy_from_slice(bytes);
        self.pos += bytes.len();
        Ok(())
    }

    pub(crate) fn u8(&mut self, v: u8) -> Result<(), WireError> {
        self.bytes(&[v])
    }

    pub(crate) fn u16(&mut self, v: u16) -> Result<(), WireError> {
        self.bytes(&v.to_be_bytes())
    }

    pub(crate) fn u32(&mut self, v: u32) -> Result<(), WireError> {
        self.bytes(&v.to_be_bytes())
    }

    pub(crate) fn u64(&mut self, v: u64) -> Result<(), WireError> {
        self.bytes(&v.to_be_bytes())
    }

    /// Writes `n` zero bytes (reserved fields, padding).
    pub(crate) fn zeros(&mut self, n: usize) -> Result<(), WireError> {
        for _ in 0..n {
            self.u8(0)?;
        }
        Ok(())
    }
}

/// Converts a length to the `u16` of a length field, or fails with [`WireError::TooLong`].
pub(crate) fn len_u16(len: usize, what: &'static str) -> Result<u16, WireError> {
    u16::try_from(len).map_err(|_| WireError::TooLong(what))
}

/// Converts a count or size to the `u8` of its field, or fails with [`WireError::TooLong`].
pub(crate) fn len_u8(len: usize, what: &'static str) -> Result<u8, WireError> {
    u8::try_from(len).map_err(|_| WireError::TooLong(what))
}

/// Implements the public `emit` of a payload body on top of its crate-private `write`.
macro_rules! impl_emit {
    ($ty:ty) => {
        impl $ty {
            /// Writes the body (without the generic payload header) into the front of `buf`,
            /// which must hold at least `buffer_len()` bytes; returns the bytes written.
            pub fn emit(&self, buf: &mut [u8]) -> Result<usize, $crate::wire::WireError> {
                let mut w = $crate::wire::codec::Writer::new(buf);
                self.write(&mut w)?;
                Ok(w.position())
            }
        }
    };
}
pub(crate) use impl_emit;
