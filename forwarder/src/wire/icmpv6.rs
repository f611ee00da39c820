//! The ICMPv6 messages the data plane reads or writes (RFC 4443, RFC 4861): Echo Request/Reply
//! (the return-routability probe), Packet Too Big (for inner packets over the tunnel MTU) and
//! Neighbor Advertisement (the client's override NA, whose Target Link-Layer Address option
//! carries an IPv4 address because the tunnel's link layer is IPv4, as in RFC 2529 5).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::WireError;
use super::ipv6::{self, MIN_MTU, NEXT_HEADER_ICMPV6};

/// Type, code, checksum and the 4-byte type-specific field every ICMPv6 message has.
pub const HEADER_LEN: usize = 8;
/// Destination Unreachable, Packet Too Big, Time Exceeded and Parameter Problem are types
/// below this; informational messages are 128 and above.
pub const FIRST_INFORMATIONAL: u8 = 128;
/// Packet Too Big.
pub const TYPE_PACKET_TOO_BIG: u8 = 2;
/// Echo Request.
pub const TYPE_ECHO_REQUEST: u8 = 128;
/// Echo Reply.
pub const TYPE_ECHO_REPLY: u8 = 129;
/// Neighbor Advertisement.
pub const TYPE_NEIGHBOR_ADVERT: u8 = 136;
/// Neighbor Discovery option: Target Link-Layer Address.
pub const OPTION_TARGET_LLADDR: u8 = 2;
/// Fixed part of a Neighbor Advertisement: header, flags and reserved, target address.
pub const NA_LEN: usize = 24;
/// Length of a link-layer address option carrying an IPv4 address: type, length (1, in units
/// of 8 bytes), two zero bytes, the address.
pub const IPV4_LLADDR_OPTION_LEN: usize = 8;
/// As much of the offending packet as a Packet Too Big may carry so that the whole IPv6 packet
/// stays within the minimum MTU (RFC 4443 3.2).
pub const MAX_INVOKING_LEN: usize = MIN_MTU - ipv6::HEADER_LEN - HEADER_LEN;

/// A read/write view of an ICMPv6 message.
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

    /// Wraps a buffer after checking it holds the 8-byte header. Type-specific lengths are
    /// checked by [`Repr::parse`].
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds the 8-byte header.
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

    /// The message type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// The message code.
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        u16::from_be_bytes([self.buffer.as_ref()[2], self.buffer.as_ref()[3]])
    }

    /// Whether the checksum over the pseudo-header (RFC 8200 8.1) and the message is right.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        // Summing the message with its checksum field in place gives all ones when it is right.
        ones_complement_sum(src, dst, self.buffer.as_ref()) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The bytes after the 8-byte header.
    pub fn body(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Computes and writes the checksum for the whole buffer as the message.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        let buf = self.buffer.as_mut();
        buf[2..4].copy_from_slice(&[0, 0]);
        let checksum = !ones_complement_sum(src, dst, buf);
        buf[2..4].copy_from_slice(&checksum.to_be_bytes());
    }
}

/// The 16-bit one's complement sum of the ICMPv6 pseudo-header and `message` (RFC 1071),
/// folded, not inverted.
fn ones_complement_sum(src: &Ipv6Addr, dst: &Ipv6Addr, message: &[u8]) -> u16 {
    // Upper-layer packet length (32 bits), three zero bytes, next header.
    let len = message.len() as u64;
    let mut sum = (len >> 16) + (len & 0xffff) + u64::from(NEXT_HEADER_ICMPV6);
    sum += sum_words(&src.octets());
    sum += sum_words(&dst.octets());
    sum += sum_words(message);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Sum of the big-endian 16-bit words of `bytes`, an odd last byte padded with zero.
fn sum_words(bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(2);
    let mut sum: u64 = chunks
        .by_ref()
        .map(|pair| u64::from(u16::from_be_bytes([pair[0], pair[1]])))
        .sum();
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// The R, S and O flags of a Neighbor Advertisement (RFC 4861 4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NaFlags {
    /// R: the sender is a router.
    pub router: bool,
    /// S: sent in response to a Neighbor Solicitation.
    pub solicited: bool,
    /// O: the advertisement should override a cached link-layer address.
    pub override_flag: bool,
}

impl NaFlags {
    fn from_byte(byte: u8) -> Self {
        NaFlags {
            router: byte & 0x80 != 0,
            solicited: byte & 0x40 != 0,
            override_flag: byte & 0x20 != 0,
        }
    }

    fn to_byte(self) -> u8 {
        (u8::from(self.router) << 7)
            | (u8::from(self.solicited) << 6)
            | (u8::from(self.override_flag) << 5)
    }
}

/// A parsed ICMPv6 message of one of the types the data plane handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr<'a> {
    /// Echo Request (RFC 4443 4.1).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data echoed back.
        data: &'a [u8],
    },
    /// Echo Reply (RFC 4443 4.2).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data of the request.
        data: &'a [u8],
    },
    /// Packet Too Big (RFC 4443 3.2).
    PacketTooBig {
        /// The MTU of the next-hop link.
        mtu: u32,
        /// The start of the packet that did not fit. [`Repr::emit`] writes at most
        /// [`MAX_INVOKING_LEN`] bytes of it.
        invoking: &'a [u8],
    },
    /// Neighbor Advertisement (RFC 4861 4.4).
    NeighborAdvert {
        /// R, S and O.
        flags: NaFlags,
        /// The address whose link-layer address is advertised.
        target: Ipv6Addr,
        /// The Target Link-Layer Address option, read as an IPv4 address.
        target_lladdr: Option<Ipv4Addr>,
    },
}

impl<'a> Repr<'a> {
    /// Checks the checksum and reads a message sent from `src` to `dst`. Neighbor
    /// Advertisements are validated as RFC 4861 7.1.2 asks of the ICMPv6 part (code 0, length,
    /// target not multicast, S clear for a multicast destination, no zero-length option); the
    /// hop limit of 255 is for the caller to check on the IPv6 header.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        packet: &Packet<&'a T>,
    ) -> Result<Repr<'a>, WireError> {
        packet.check_len()?;
        if !packet.verify_checksum(src, dst) {
            return Err(WireError::BadChecksum);
        }
        let bytes: &'a [u8] = packet.buffer.as_ref();
        let msg_type = packet.msg_type();
        let code = packet.msg_code();
        let require_code_zero = || {
            if code == 0 {
                Ok(())
            } else {
                Err(WireError::BadCode { msg_type, code })
            }
        };
        match msg_type {
            TYPE_ECHO_REQUEST | TYPE_ECHO_REPLY => {
                require_code_zero()?;
                let ident = u16::from_be_bytes([bytes[4], bytes[5]]);
                let seq_no = u16::from_be_bytes([bytes[6], bytes[7]]);
                let data = packet.body();
                Ok(if msg_type == TYPE_ECHO_REQUEST {
                    Repr::EchoRequest {
                        ident,
                        seq_no,
                        data,
                    }
                } else {
                    Repr::EchoReply {
                        ident,
                        seq_no,
                        data,
                    }
                })
            }
            // RFC 4443 3.2: the code is set to 0 by the originator and ignored by the receiver.
            TYPE_PACKET_TOO_BIG => Ok(Repr::PacketTooBig {
                mtu: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
                invoking: packet.body(),
            }),
            TYPE_NEIGHBOR_ADVERT => {
                require_code_zero()?;
                if bytes.len() < NA_LEN {
                    return Err(WireError::Truncated);
                }
                let flags = NaFlags::from_byte(bytes[4]);
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&bytes[8..24]);
                let target = Ipv6Addr::from(octets);
                if target.is_multicast() {
                    return Err(WireError::MulticastTarget);
                }
                if dst.is_multicast() && flags.solicited {
                    return Err(WireError::SolicitedToMulticast);
                }
                let target_lladdr = parse_options(&bytes[NA_LEN..])?;
                Ok(Repr::NeighborAdvert {
                    flags,
                    target,
                    target_lladdr,
                })
            }
            other => Err(WireError::UnknownType(other)),
        }
    }

    /// Bytes the message occupies when emitted.
    pub fn buffer_len(&self) -> usize {
        match self {
            Repr::EchoRequest { data, .. } | Repr::EchoReply { data, .. } => {
                HEADER_LEN + data.len()
            }
            Repr::PacketTooBig { invoking, .. } => {
                HEADER_LEN + invoking.len().min(MAX_INVOKING_LEN)
            }
            Repr::NeighborAdvert { target_lladdr, .. } => {
                NA_LEN
                    + if target_lladdr.is_some() {
                        IPV4_LLADDR_OPTION_LEN
                    } else {
                        0
                    }
            }
        }
    }

    /// Writes the message, checksum included, at the start of `buffer`; returns its length
    /// ([`Self::buffer_len`]).
    pub fn emit(
        &self,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        buffer: &mut [u8],
    ) -> Result<usize, WireError> {
        let len = self.buffer_len();
        let out = buffer.get_mut(..len).ok_or(WireError::BufferTooSmall)?;
        match self {
            Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }
            | Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => {
                out[0] = if matches!(self, Repr::EchoRequest { .. }) {
                    TYPE_ECHO_REQUEST
                } else {
                    TYPE_ECHO_REPLY
                };
                out[1] = 0;
                out[4..6].copy_from_slice(&ident.to_be_bytes());
                out[6..8].copy_from_slice(&seq_no.to_be_bytes());
                out[HEADER_LEN..].copy_from_slice(data);
            }
            Repr::PacketTooBig { mtu, invoking } => {
                out[0] = TYPE_PACKET_TOO_BIG;
                out[1] = 0;
                out[4..8].copy_from_slice(&mtu.to_be_bytes());
                let kept = len - HEADER_LEN;
                out[HEADER_LEN..].copy_from_slice(&invoking[..kept]);
            }
            Repr::NeighborAdvert {
                flags,
                target,
                target_lladdr,
            } => {
                out[0] = TYPE_NEIGHBOR_ADVERT;
                out[1] = 0;
                out[4..8].copy_from_slice(&[flags.to_byte(), 0, 0, 0]);
                out[8..24].copy_from_slice(&target.octets());
                if let Some(addr) = target_lladdr {
                    out[24..28].copy_from_slice(&[OPTION_TARGET_LLADDR, 1, 0, 0]);
                    out[28..32].copy_from_slice(&addr.octets());
                }
            }
        }
        Packet::new_unchecked(out).fill_checksum(src, dst);
        Ok(len)
    }
}

/// Walks Neighbor Discovery options (RFC 4861 4.6) and returns the IPv4 address of the Target
/// Link-Layer Address option, if there is one. Unknown options are skipped, as RFC 4861 asks.
fn parse_options(mut options: &[u8]) -> Result<Option<Ipv4Addr>, WireError> {
    let mut target_lladdr = None;
    while !options.is_empty() {
        let [kind, units, ..] = *options else {
            return Err(WireError::Truncated);
        };
        if units == 0 {
            return Err(WireError::ZeroLengthOption);
        }
        let len = usize::from(units) * 8;
        let option = options.get(..len).ok_or(WireError::Truncated)?;
        if kind == OPTION_TARGET_LLADDR {
            // An IPv4 link-layer address: two zero bytes, then the address.
            let [_, 1, 0, 0, a, b, c, d] = *option else {
                return Err(WireError::BadOption(kind));
            };
            if target_lladdr.is_some() {
                return Err(WireError::DuplicateOption(kind));
            }
            target_lladdr = Some(Ipv4Addr::new(a, b, c, d));
        }
        options = &options[len..];
    }
    Ok(target_lladdr)
}

/// Writes into `out` an IPv6 packet from `src` to `dst` carrying the ICMPv6 message `repr`;
/// returns its length.
pub fn emit_ipv6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    repr: &Repr<'_>,
    out: &mut [u8],
) -> Result<usize, WireError> {
    let header = ipv6::Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: NEXT_HEADER_ICMPV6,
        payload_len: repr.buffer_len(),
        hop_limit,
    };
    header.emit(out)?;
    let body = out
        .get_mut(ipv6::HEADER_LEN..)
        .ok_or(WireError::BufferTooSmall)?;
    let len = repr.emit(&src, &dst, body)?;
    Ok(ipv6::HEADER_LEN + len)
}

/// Writes into `out` the Packet Too Big that answers `offending` (an IPv6 packet that does not
/// fit `mtu`): from `src` (an address of this node) to the offending packet's source, carrying
/// as much of it as fits in 1280 bytes. Refuses when RFC 4443 2.4(e) forbids an answer (the
/// offending packet is an ICMPv6 error, or its source is unspecified or multicast).
pub fn emit_packet_too_big(
    src: Ipv6Addr,
    mtu: u32,
    offending: &[u8],
    out: &mut [u8],
) -> Result<usize, WireError> {
    let packet = ipv6::Packet::new_checked(offending)?;
    let dst = packet.src_addr();
    if dst.is_unspecified() || dst.is_multicast() {
        return Err(WireError::ErrorSuppressed);
    }
    if packet.next_header() == NEXT_HEADER_ICMPV6
        && packet
            .payload()
            .first()
            .is_none_or(|&t| t < FIRST_INFORMATIONAL)
    {
        return Err(WireError::ErrorSuppressed);
    }
    let repr = Repr::PacketTooBig {
        mtu,
        invoking: offending,
    };
    emit_ipv6(src, dst, 64, &repr, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv6::tests::ECHO_REQUEST;

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// The reply to `ECHO_REQUEST`, built by Scapy 2.5.
    const ECHO_REPLY: [u8; 56] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x10, 0x3a, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x81, 0x00, 0x58, 0x98, 0x12,
        0x34, 0x00, 0x07, 0x68, 0x6f, 0x6d, 0x65, 0x74, 0x75, 0x6e, 0x21,
    ];

    /// The override NA (docs/ARCHITECTURE.md, "Roaming"), built by Scapy 2.5: fe80::2 -> ff02::1,
    /// hop limit 255, `ICMPv6ND_NA(R=0, S=0, O=1, tgt="2001:db8:1::2")` and a Target Link-Layer
    /// Address option `02 01 00 00 c6 33 64 07` (IPv4 198.51.100.7).
    const OVERRIDE_NA: [u8; 72] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x88, 0x00, 0x00, 0x26, 0x20,
        0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x02, 0x02, 0x01, 0x00, 0x00, 0xc6, 0x33, 0x64, 0x07,
    ];

    /// A Packet Too Big (MTU 1400) from 2001:db8::1 carrying a 64-byte echo request, built by
    /// Scapy 2.5.
    const PTB: [u8; 112] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x48, 0x3a, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x02, 0x89, 0x00,
        0x00, 0x05, 0x78, 0x60, 0x00, 0x00, 0x00, 0x00, 0x18, 0x3a, 0x40, 0x20, 0x01, 0x0d, 0xb8,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x20, 0x01, 0x0d,
        0xb8, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x80, 0x00,
        0x60, 0x71, 0x00, 0x01, 0x00, 0x01, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
        0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
    ];

    /// Parses an IPv6 packet carrying ICMPv6, and checks that re-emitting the parsed message
    /// (through `emit_ipv6`) gives back the same bytes.
    fn round_trip(bytes: &[u8]) -> Repr<'_> {
        let ip = ipv6::Packet::new_checked(bytes).unwrap();
        assert_eq!(ip.next_header(), NEXT_HEADER_ICMPV6);
        let icmp = Packet::new_checked(ip.payload()).unwrap();
        let repr = Repr::parse(&ip.src_addr(), &ip.dst_addr(), &icmp).unwrap();
        assert_eq!(repr.buffer_len(), ip.payload().len());
        let mut out = vec![0u8; bytes.len()];
        let len = emit_ipv6(
            ip.src_addr(),
            ip.dst_addr(),
            ip.hop_limit(),
            &repr,
            &mut out,
        )
        .unwrap();
        assert_eq!(&out[..len], bytes);
        repr
    }

    #[test]
    fn echo_request_and_reply() {
        assert_eq!(
            round_trip(&ECHO_REQUEST),
            Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 7,
                data: b"hometun!"
            }
        );
        assert_eq!(
            round_trip(&ECHO_REPLY),
            Repr::EchoReply {
                ident: 0x1234,
                seq_no: 7,
                data: b"hometun!"
            }
        );
    }

    #[test]
    fn override_neighbor_advert() {
        assert_eq!(
            round_trip(&OVERRIDE_NA),
            Repr::NeighborAdvert {
                flags: NaFlags {
                    router: false,
                    solicited: false,
                    override_flag: true
                },
                target: addr("2001:db8:1::2"),
                target_lladdr: Some(Ipv4Addr::new(198, 51, 100, 7)),
            }
        );
    }

    #[test]
    fn packet_too_big() {
        let repr = round_trip(&PTB);
        assert_eq!(
            repr,
            Repr::PacketTooBig {
                mtu: 1400,
                invoking: &PTB[48..]
            }
        );
        // The helper builds the same packet from the offending one.
        let mut out = [0u8; 1280];
        let len = emit_packet_too_big(addr("2001:db8::1"), 1400, &PTB[48..], &mut out).unwrap();
        assert_eq!(&out[..len], &PTB[..]);
    }

    #[test]
    fn packet_too_big_is_cut_to_1280_bytes() {
        // A 1500-byte TCP packet (next header 6) from 2001:db8:1::2.
        let mut big = vec![0u8; 1500];
        ipv6::Repr {
            src_addr: addr("2001:db8:1::2"),
            dst_addr: addr("2001:db8:ffff::1"),
            next_header: 6,
            payload_len: 1460,
            hop_limit: 64,
        }
        .emit(&mut big)
        .unwrap();
        for (i, b) in big[40..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let mut out = [0u8; 1500];
        let len = emit_packet_too_big(addr("2001:db8::1"), 1400, &big, &mut out).unwrap();
        assert_eq!(len, 1280);
        let ip = ipv6::Packet::new_checked(&out[..len]).unwrap();
        assert_eq!(ip.dst_addr(), addr("2001:db8:1::2"));
        assert_eq!(usize::from(ip.payload_len()), 1240);
        let icmp = Packet::new_checked(ip.payload()).unwrap();
        let Repr::PacketTooBig { mtu, invoking } =
            Repr::parse(&ip.src_addr(), &ip.dst_addr(), &icmp).unwrap()
        else {
            panic!("not a Packet Too Big");
        };
        assert_eq!(mtu, 1400);
        assert_eq!(invoking, &big[..MAX_INVOKING_LEN]);
        // Too small an output buffer is an error, not a panic.
        assert_eq!(
            emit_packet_too_big(addr("2001:db8::1"), 1400, &big, &mut out[..1279]),
            Err(WireError::BufferTooSmall)
        );
    }

    #[test]
    fn packet_too_big_is_not_sent_for_errors_or_bad_sources() {
        let mut out = [0u8; 1280];
        // An ICMPv6 error (the PTB itself).
        assert_eq!(
            emit_packet_too_big(addr("2001:db8::9"), 1400, &PTB, &mut out),
            Err(WireError::ErrorSuppressed)
        );
        // An unspecified source.
        let mut unspecified = ECHO_REQUEST;
        unspecified[8..24].fill(0);
        assert_eq!(
            emit_packet_too_big(addr("2001:db8::9"), 1400, &unspecified, &mut out),
            Err(WireError::ErrorSuppressed)
        );
        // A multicast source.
        let mut multicast = ECHO_REQUEST;
        multicast[8] = 0xff;
        assert_eq!(
            emit_packet_too_big(addr("2001:db8::9"), 1400, &multicast, &mut out),
            Err(WireError::ErrorSuppressed)
        );
        // Not IPv6 at all.
        assert_eq!(
            emit_packet_too_big(addr("2001:db8::9"), 1400, &[0x45; 60], &mut out),
            Err(WireError::BadVersion(4))
        );
    }

    fn parse_na(icmp: &[u8], dst: &str) -> Result<Repr<'static>, WireError> {
        // Fix the checksum so that only the property under test can fail.
        let mut buf = icmp.to_vec();
        let src = addr("fe80::2");
        let dst = addr(dst);
        Packet::new_unchecked(&mut buf[..]).fill_checksum(&src, &dst);
        let buf: &'static [u8] = Box::leak(buf.into_boxed_slice());
        Repr::parse(&src, &dst, &Packet::new_checked(buf).unwrap())
    }

    #[test]
    fn neighbor_advert_validation() {
        let na = &OVERRIDE_NA[40..];
        assert!(parse_na(na, "ff02::1").is_ok());

        // A zero-length option.
        let mut zero = na.to_vec();
        zero.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse_na(&zero, "ff02::1"), Err(WireError::ZeroLengthOption));
        let mut zero_first = na[..24].to_vec();
        zero_first.extend_from_slice(&[2, 0]);
        assert_eq!(
            parse_na(&zero_first, "ff02::1"),
            Err(WireError::ZeroLengthOption)
        );
        // An option longer than what is left, and a lone option type byte.
        let mut long = na[..24].to_vec();
        long.extend_from_slice(&[5, 2, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse_na(&long, "ff02::1"), Err(WireError::Truncated));
        let mut lone = na[..24].to_vec();
        lone.push(2);
        assert_eq!(parse_na(&lone, "ff02::1"), Err(WireError::Truncated));
        // Unknown options are skipped.
        let mut unknown = na[..24].to_vec();
        unknown.extend_from_slice(&[14, 1, 1, 2, 3, 4, 5, 6]);
        unknown.extend_from_slice(&na[24..]);
        assert_eq!(parse_na(&unknown, "ff02::1"), parse_na(na, "ff02::1"));
        // No option at all.
        assert_eq!(
            parse_na(&na[..24], "ff02::1"),
            Ok(Repr::NeighborAdvert {
                flags: NaFlags {
                    router: false,
                    solicited: false,
                    override_flag: true
                },
                target: addr("2001:db8:1::2"),
                target_lladdr: None,
            })
        );
        // A TLLA option that is not an IPv4 address (an Ethernet address), and a duplicate.
        let mut mac = na[..24].to_vec();
        mac.extend_from_slice(&[2, 1, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
        assert_eq!(parse_na(&mac, "ff02::1"), Err(WireError::BadOption(2)));
        let mut twice = na.to_vec();
        twice.extend_from_slice(&na[24..]);
        assert_eq!(
            parse_na(&twice, "ff02::1"),
            Err(WireError::DuplicateOption(2))
        );
        // Shorter than the fixed part.
        assert_eq!(parse_na(&na[..23], "ff02::1"), Err(WireError::Truncated));
        // A code other than 0.
        let mut code = na.to_vec();
        code[1] = 1;
        assert_eq!(
            parse_na(&code, "ff02::1"),
            Err(WireError::BadCode {
                msg_type: 136,
                code: 1
            })
        );
        // A multicast target.
        let mut target = na.to_vec();
        target[8] = 0xff;
        assert_eq!(
            parse_na(&target, "ff02::1"),
            Err(WireError::MulticastTarget)
        );
        // S set towards a multicast destination, but fine towards a unicast one.
        let mut solicited = na.to_vec();
        solicited[4] |= 0x40;
        assert_eq!(
            parse_na(&solicited, "ff02::1"),
            Err(WireError::SolicitedToMulticast)
        );
        assert!(parse_na(&solicited, "fe80::1").is_ok());
    }

    #[test]
    fn checksum_is_checked() {
        let ip = ipv6::Packet::new_checked(&OVERRIDE_NA[..]).unwrap();
        for i in 0..ip.payload().len() {
            let mut bad = OVERRIDE_NA;
            bad[40 + i] ^= 0x01;
            let ip = ipv6::Packet::new_checked(&bad[..]).unwrap();
            let icmp = Packet::new_checked(ip.payload()).unwrap();
            assert_eq!(
                Repr::parse(&ip.src_addr(), &ip.dst_addr(), &icmp),
                Err(WireError::BadChecksum),
                "byte {i}"
            );
        }
        // The pseudo-header counts: another destination fails.
        let icmp = Packet::new_checked(ip.payload()).unwrap();
        assert!(!icmp.verify_checksum(&ip.src_addr(), &addr("ff02::2")));
    }

    #[test]
    fn odd_length_checksum() {
        // An echo request with 9 data bytes: the last byte is padded with zero for the sum.
        let repr = Repr::EchoRequest {
            ident: 1,
            seq_no: 2,
            data: b"123456789",
        };
        let (src, dst) = (addr("2001:db8::1"), addr("2001:db8::2"));
        let mut buf = [0u8; 17];
        repr.emit(&src, &dst, &mut buf).unwrap();
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert!(packet.verify_checksum(&src, &dst));
        assert_eq!(Repr::parse(&src, &dst, &packet), Ok(repr));
    }

    #[test]
    fn unknown_types_and_short_messages() {
        let (src, dst) = (addr("2001:db8::1"), addr("2001:db8::2"));
        // Router Solicitation (133) with a correct checksum.
        let mut rs = [133u8, 0, 0, 0, 0, 0, 0, 0];
        Packet::new_unchecked(&mut rs[..]).fill_checksum(&src, &dst);
        let packet = Packet::new_checked(&rs[..]).unwrap();
        assert_eq!(
            Repr::parse(&src, &dst, &packet),
            Err(WireError::UnknownType(133))
        );
        for len in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&rs[..len]), Err(WireError::Truncated));
        }
        let repr = Repr::EchoReply {
            ident: 0,
            seq_no: 0,
            data: &[1, 2, 3],
        };
        assert_eq!(
            repr.emit(&src, &dst, &mut [0u8; 10]),
            Err(WireError::BufferTooSmall)
        );
    }
}
