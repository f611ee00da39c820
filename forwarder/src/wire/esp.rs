//! The ESP header (RFC 4303 2): SPI and 32-bit sequence number, then the protected payload
//! (for AES-GCM: the 8-byte IV, the ciphertext with its trailer, and the ICV).
//!
//! This view knows only the cleartext header; `crate::esp` opens and seals the payload.

use hometun_control::Spi;

use super::WireError;

/// Length of the SPI and sequence number.
pub const HEADER_LEN: usize = 8;

/// A read/write view of an ESP packet, starting at the SPI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; getters may then panic. Use [`Self::new_checked`]
    /// for untrusted bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer after checking it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds the SPI and sequence number.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The Security Parameter Index.
    pub fn spi(&self) -> Spi {
        Spi(read_u32(self.buffer.as_ref(), 0))
    }

    /// The low 32 bits of the sequence number, as on the wire.
    pub fn seq(&self) -> u32 {
        read_u32(self.buffer.as_ref(), 4)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// Everything after the header: IV, ciphertext and ICV.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the SPI.
    pub fn set_spi(&mut self, spi: Spi) {
        self.buffer.as_mut()[0..4].copy_from_slice(&spi.0.to_be_bytes());
    }

    /// Sets the low 32 bits of the sequence number.
    pub fn set_seq(&mut self, seq: u32) {
        self.buffer.as_mut()[4..8].copy_from_slice(&seq.to_be_bytes());
    }

    /// Everything after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// The cleartext ESP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Security Parameter Index.
    pub spi: Spi,
    /// Low 32 bits of the sequence number.
    pub seq: u32,
}

impl Repr {
    /// Reads the header of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, WireError> {
        packet.check_len()?;
        Ok(Repr {
            spi: packet.spi(),
            seq: packet.seq(),
        })
    }

    /// Bytes the header occupies.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header at the start of `buffer`.
    pub fn emit(&self, buffer: &mut [u8]) -> Result<(), WireError> {
        let header = buffer
            .get_mut(..HEADER_LEN)
            .ok_or(WireError::BufferTooSmall)?;
        let mut packet = Packet::new_unchecked(header);
        packet.set_spi(self.spi);
        packet.set_seq(self.seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first 16 bytes of the first ESP packet (frame 5) of the strongSwan trace in
    /// `shared/vectors/strongswan-5.9.8-x25519-aesgcm128-ed25519`: SPI 0xd3453a9c, sequence 1,
    /// then the 8-byte IV.
    const TRACE_START: [u8; 16] = [
        0xd3, 0x45, 0x3a, 0x9c, 0x00, 0x00, 0x00, 0x01, 0x93, 0x05, 0x0d, 0xaf, 0xe5, 0x78, 0x7f,
        0xdd,
    ];

    #[test]
    fn parse_and_emit_round_trip() {
        let packet = Packet::new_checked(&TRACE_START[..]).unwrap();
        assert_eq!(packet.spi(), Spi(0xd345_3a9c));
        assert_eq!(packet.seq(), 1);
        assert_eq!(packet.payload(), &TRACE_START[8..]);
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            Repr {
                spi: Spi(0xd345_3a9c),
                seq: 1
            }
        );
        let mut out = TRACE_START;
        out[..8].fill(0);
        repr.emit(&mut out).unwrap();
        assert_eq!(out, TRACE_START);
        assert_eq!(repr.buffer_len(), 8);
    }

    #[test]
    fn short_buffers_are_refused() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&TRACE_START[..len]),
                Err(WireError::Truncated)
            );
        }
        let header_only = Packet::new_checked(&TRACE_START[..8]).unwrap();
        assert!(header_only.payload().is_empty());
        let repr = Repr {
            spi: Spi(1),
            seq: 2,
        };
        assert_eq!(repr.emit(&mut [0u8; 7]), Err(WireError::BufferTooSmall));
    }

    #[test]
    fn setters_write_big_endian() {
        let mut buf = [0u8; 12];
        let mut packet = Packet::new_checked(&mut buf[..]).unwrap();
        packet.set_spi(Spi(0x0102_0304));
        packet.set_seq(0x0a0b_0c0d);
        packet.payload_mut().copy_from_slice(&[9, 9, 9, 9]);
        assert_eq!(buf, [1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d, 9, 9, 9, 9]);
    }
}
