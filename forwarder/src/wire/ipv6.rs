//! A minimal IPv6 header view (RFC 8200 3): what the data plane needs to route, filter and
//! answer inner packets. Extension headers are not walked; jumbograms are not supported.

use std::net::Ipv6Addr;

use super::WireError;

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;
/// The minimum link MTU every IPv6 link must carry (RFC 8200 5).
pub const MIN_MTU: usize = 1280;
/// Next Header value for ICMPv6.
pub const NEXT_HEADER_ICMPV6: u8 = 58;
/// Next Header value for an IPv6 packet inside another (and ESP's next header for IPv6).
pub const NEXT_HEADER_IPV6: u8 = 41;

/// A read/write view of an IPv6 packet.
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

    /// Wraps a buffer after checking it holds the fixed header with version 6 and at least the
    /// payload its Payload Length announces (bytes beyond it are allowed and ignored).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// The checks of [`Self::new_checked`].
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 6 {
            return Err(WireError::BadVersion(self.version()));
        }
        if len < self.total_len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The IP version field.
    pub fn version(&self) -> u8 {
        self.bytes()[0] >> 4
    }

    /// The Traffic Class.
    pub fn traffic_class(&self) -> u8 {
        (self.bytes()[0] << 4) | (self.bytes()[1] >> 4)
    }

    /// The 20-bit Flow Label.
    pub fn flow_label(&self) -> u32 {
        let b = self.bytes();
        (u32::from(b[1] & 0x0f) << 16) | (u32::from(b[2]) << 8) | u32::from(b[3])
    }

    /// The Payload Length field.
    pub fn payload_len(&self) -> u16 {
        u16::from_be_bytes([self.bytes()[4], self.bytes()[5]])
    }

    /// Header plus payload, as the Payload Length field says.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// The Next Header field.
    pub fn next_header(&self) -> u8 {
        self.bytes()[6]
    }

    /// The Hop Limit.
    pub fn hop_limit(&self) -> u8 {
        self.bytes()[7]
    }

    /// The source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        read_addr(self.bytes(), 8)
    }

    /// The destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        read_addr(self.bytes(), 24)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload, exactly Payload Length bytes.
    pub fn payload(&self) -> &'a [u8] {
        let total = self.total_len();
        &self.buffer.as_ref()[HEADER_LEN..total]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the Hop Limit.
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[7] = hop_limit;
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let total = self.total_len();
        &mut self.buffer.as_mut()[HEADER_LEN..total]
    }
}

fn read_addr(buf: &[u8], at: usize) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&buf[at..at + 16]);
    Ipv6Addr::from(octets)
}

/// The fields of an IPv6 header the data plane reads and writes. Traffic Class and Flow Label
/// are emitted as zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next Header (the upper-layer protocol, or the first extension header).
    pub next_header: u8,
    /// Length of the payload that follows the header.
    pub payload_len: usize,
    /// Hop Limit.
    pub hop_limit: u8,
}

impl Repr {
    /// Reads the header of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, WireError> {
        packet.check_len()?;
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
        })
    }

    /// Bytes the header occupies.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header at the start of `buffer` (the payload goes after it).
    pub fn emit(&self, buffer: &mut [u8]) -> Result<(), WireError> {
        let payload_len = u16::try_from(self.payload_len).map_err(|_| WireError::PayloadTooLong)?;
        let header = buffer
            .get_mut(..HEADER_LEN)
            .ok_or(WireError::BufferTooSmall)?;
        header[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
        header[4..6].copy_from_slice(&payload_len.to_be_bytes());
        header[6] = self.next_header;
        header[7] = self.hop_limit;
        header[8..24].copy_from_slice(&self.src_addr.octets());
        header[24..40].copy_from_slice(&self.dst_addr.octets());
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An ICMPv6 echo request from 2001:db8:1::2 to 2001:db8:ffff::1, hop limit 64, built by
    /// Scapy 2.5 (`IPv6(...)/ICMPv6EchoRequest(id=0x1234, seq=7, data=b"hometun!")`).
    pub(crate) const ECHO_REQUEST: [u8; 56] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x10, 0x3a, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x80, 0x00, 0x59, 0x98, 0x12,
        0x34, 0x00, 0x07, 0x68, 0x6f, 0x6d, 0x65, 0x74, 0x75, 0x6e, 0x21,
    ];

    #[test]
    fn parse_fields() {
        let packet = Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(packet.version(), 6);
        assert_eq!(packet.traffic_class(), 0);
        assert_eq!(packet.flow_label(), 0);
        assert_eq!(packet.payload_len(), 16);
        assert_eq!(packet.total_len(), 56);
        assert_eq!(packet.next_header(), NEXT_HEADER_ICMPV6);
        assert_eq!(packet.hop_limit(), 64);
        assert_eq!(
            packet.src_addr(),
            "2001:db8:1::2".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            packet.dst_addr(),
            "2001:db8:ffff::1".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(packet.payload(), &ECHO_REQUEST[40..]);
    }

    #[test]
    fn round_trip() {
        let packet = Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        let repr = Repr::parse(&packet).unwrap();
        let mut out = [0u8; 56];
        repr.emit(&mut out).unwrap();
        out[40..].copy_from_slice(packet.payload());
        assert_eq!(out, ECHO_REQUEST);
        assert_eq!(repr.buffer_len(), HEADER_LEN);
    }

    #[test]
    fn traffic_class_and_flow_label() {
        let mut buf = ECHO_REQUEST;
        buf[0..4].copy_from_slice(&[0x6a, 0xbc, 0xde, 0xf1]);
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(packet.traffic_class(), 0xab);
        assert_eq!(packet.flow_label(), 0xc_def1);
    }

    #[test]
    fn trailing_bytes_are_not_payload() {
        let mut buf = ECHO_REQUEST.to_vec();
        buf.extend_from_slice(&[1, 2, 3, 4]);
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(packet.payload(), &ECHO_REQUEST[40..]);
    }

    #[test]
    fn malformed_headers_are_refused() {
        for len in 0..56 {
            assert_eq!(
                Packet::new_checked(&ECHO_REQUEST[..len]),
                Err(WireError::Truncated),
                "len {len}"
            );
        }
        let mut v4 = ECHO_REQUEST;
        v4[0] = 0x45;
        assert_eq!(Packet::new_checked(&v4[..]), Err(WireError::BadVersion(4)));
    }

    #[test]
    fn emit_checks_sizes() {
        let packet = Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        let mut repr = Repr::parse(&packet).unwrap();
        assert_eq!(repr.emit(&mut [0u8; 39]), Err(WireError::BufferTooSmall));
        repr.payload_len = 65536;
        assert_eq!(repr.emit(&mut [0u8; 40]), Err(WireError::PayloadTooLong));
    }

    #[test]
    fn setters() {
        let mut buf = ECHO_REQUEST;
        let mut packet = Packet::new_checked(&mut buf[..]).unwrap();
        packet.set_hop_limit(1);
        packet.payload_mut()[0] = 0x81;
        assert_eq!(buf[7], 1);
        assert_eq!(buf[40], 0x81);
    }
}
