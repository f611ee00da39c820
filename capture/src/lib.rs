//! IKE messages in packet captures: reads pcap and pcapng files held in memory (Ethernet,
//! Linux cooked v1 and v2, raw IP or BSD loopback; IPv4 and UDP on port 500 or 4500, the
//! non-ESP marker removed, ESP and NAT keepalives skipped). Used by `hometun ike decode` and by
//! the tests that replay the strongSwan trace in testdata/ ([`read_datagrams`] gives them the
//! ESP in UDP as well).

use std::net::{Ipv4Addr, SocketAddrV4};

use hometun_ike::wire::{Port4500, WireError, classify_port_4500};
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, PcapError};

/// IKE's UDP port.
pub const IKE_PORT: u16 = 500;
/// IKE's (and ESP-in-UDP's) NAT traversal port.
pub const NAT_T_PORT: u16 = 4500;

/// Where a message came from, for its heading line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Packet number in the capture, from 1 (as tshark counts).
    pub packet: usize,
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Destination address and port.
    pub dst: SocketAddrV4,
}

/// A file that is not a capture at all.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Fewer than four bytes.
    #[error("too short for a capture file")]
    TooShort,
    /// Not a pcap file (and not pcapng either).
    #[error("not a pcap file: {0}")]
    NotPcap(#[source] PcapError),
    /// Starts like pcapng but is not.
    #[error("not a pcapng file: {0}")]
    NotPcapng(#[source] PcapError),
}

/// Why a packet that should have been IKE (UDP on port 500 or 4500) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// The file ends or breaks here; nothing after it is read.
    #[error("capture file damaged, stopping: {0}")]
    Damaged(#[source] PcapError),
    /// A pcapng packet of an interface the file never described.
    #[error("packet of undescribed interface {0}")]
    UndescribedInterface(usize),
    /// A link layer this reader does not know.
    #[error("link type {0:?} is not supported")]
    UnsupportedLink(DataLink),
    /// A header cut short: which one.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// An IP packet of no bytes.
    #[error("empty IP packet")]
    EmptyIpPacket,
    /// The IPv4 header length field is impossible.
    #[error("bad IPv4 header length {0}")]
    BadHeaderLength(usize),
    /// The IPv4 total length disagrees with what was captured.
    #[error("IPv4 total length {total}, {captured} bytes captured")]
    BadTotalLength {
        /// The header's total length.
        total: usize,
        /// Bytes of the packet in the capture.
        captured: usize,
    },
    /// A fragment: this reader does not reassemble.
    #[error("fragmented IPv4 packet; reassembly is not supported")]
    Fragmented,
    /// The UDP length disagrees with the IP packet.
    #[error("UDP length {length}, {available} bytes in the IP packet")]
    BadUdpLength {
        /// The UDP header's length.
        length: usize,
        /// Bytes after the IP header.
        available: usize,
    },
    /// A datagram on port 4500 that is neither IKE nor ESP.
    #[error("{0}")]
    Port4500(WireError),
}

/// One packet of a capture, as far as IKE is concerned.
#[derive(Debug)]
pub enum CapturedPacket {
    /// An IKE message (without the non-ESP marker).
    Ike {
        /// Where it came from.
        origin: Origin,
        /// The message.
        message: Vec<u8>,
    },
    /// Not IKE (other traffic, ESP, NAT keepalives); skipped quietly.
    Other,
    /// A packet that should have been IKE but could not be read.
    Bad {
        /// Packet number.
        packet: usize,
        /// What was wrong.
        problem: PacketError,
    },
}

/// A UDP datagram on port 500 or 4500 (IKE, ESP in UDP, NAT keepalives alike), as captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Where it came from and went.
    pub origin: Origin,
    /// The UDP payload (with the non-ESP marker, if any).
    pub payload: Vec<u8>,
}

/// A packet [`read_datagrams`] could not read.
#[derive(Debug, thiserror::Error)]
#[error("packet {packet}: {problem}")]
pub struct BadPacket {
    /// Its number.
    pub packet: usize,
    /// What was wrong.
    #[source]
    pub problem: PacketError,
}

/// One entry of [`read_datagrams`].
pub type DatagramOrBad = Result<Datagram, BadPacket>;

/// Every UDP datagram on port 500 or 4500 of a capture, or for a packet that cannot be read
/// the problem with its number. Fails only when the file is not a capture at all.
pub fn read_datagrams(bytes: &[u8]) -> Result<Vec<DatagramOrBad>, CaptureError> {
    let mut datagrams = Vec::new();
    for_each_frame(bytes, |number, frame| {
        let found = frame.and_then(|(link, data)| udp_in_frame(link, data));
        match found {
            Ok(Some((src, dst, payload))) => datagrams.push(Ok(Datagram {
                origin: Origin {
                    packet: number,
                    src,
                    dst,
                },
                payload: payload.to_vec(),
            })),
            Ok(None) => {}
            Err(problem) => datagrams.push(Err(BadPacket {
                packet: number,
                problem,
            })),
        }
    })?;
    Ok(datagrams)
}

/// Reads every packet of a pcap or pcapng capture held in memory. Fails only when the file is
/// not a capture at all; a damaged packet or a truncated file ends in a [`CapturedPacket::Bad`].
pub fn read_capture(bytes: &[u8]) -> Result<Vec<CapturedPacket>, CaptureError> {
    let mut packets = Vec::new();
    for_each_frame(bytes, |number, frame| {
        packets.push(match frame {
            Ok((link, data)) => classify_frame(number, link, data),
            Err(problem) => CapturedPacket::Bad {
                packet: number,
                problem,
            },
        })
    })?;
    Ok(packets)
}

/// A frame of a capture with its link type, or why it could not be had.
type Frame<'a> = Result<(DataLink, &'a [u8]), PacketError>;

/// Calls `each` with every frame of a pcap or pcapng capture and its number (from 1). A damaged
/// file gives one last [`PacketError::Damaged`].
fn for_each_frame(bytes: &[u8], each: impl FnMut(usize, Frame<'_>)) -> Result<(), CaptureError> {
    match bytes.get(..4) {
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => pcapng_frames(bytes, each),
        Some(_) => pcap_frames(bytes, each),
        None => Err(CaptureError::TooShort),
    }
}

fn pcap_frames(bytes: &[u8], mut each: impl FnMut(usize, Frame<'_>)) -> Result<(), CaptureError> {
    let mut reader = PcapReader::new(bytes).map_err(CaptureError::NotPcap)?;
    let link = reader.header().datalink;
    let mut number = 0;
    while let Some(next) = reader.next_packet() {
        number += 1;
        match next {
            Ok(packet) => each(number, Ok((link, &packet.data))),
            Err(e) => {
                each(number, Err(PacketError::Damaged(e)));
                break;
            }
        }
    }
    Ok(())
}

fn pcapng_frames(bytes: &[u8], mut each: impl FnMut(usize, Frame<'_>)) -> Result<(), CaptureError> {
    let mut reader = PcapNgReader::new(bytes).map_err(CaptureError::NotPcapng)?;
    // Link types of the current section's interfaces, by interface ID.
    let mut links: Vec<DataLink> = reader.interfaces().iter().map(|i| i.linktype).collect();
    let mut number = 0;
    while let Some(next) = reader.next_block() {
        let block = match next {
            Ok(block) => block,
            Err(e) => {
                each(number + 1, Err(PacketError::Damaged(e)));
                break;
            }
        };
        let (interface, data) = match &block {
            Block::SectionHeader(_) => {
                links.clear();
                continue;
            }
            Block::InterfaceDescription(interface) => {
                links.push(interface.linktype);
                continue;
            }
            Block::EnhancedPacket(packet) => (packet.interface_id as usize, &packet.data),
            Block::SimplePacket(packet) => (0, &packet.data),
            Block::Packet(packet) => (usize::from(packet.interface_id), &packet.data),
            _ => continue,
        };
        number += 1;
        match links.get(interface) {
            Some(&link) => each(number, Ok((link, data))),
            None => each(number, Err(PacketError::UndescribedInterface(interface))),
        }
    }
    Ok(())
}

/// Finds the IKE message in one link-layer frame.
pub fn classify_frame(packet: usize, link: DataLink, frame: &[u8]) -> CapturedPacket {
    match ike_in_frame(link, frame) {
        Ok(Some((src, dst, message))) => CapturedPacket::Ike {
            origin: Origin { packet, src, dst },
            message: message.to_vec(),
        },
        Ok(None) => CapturedPacket::Other,
        Err(problem) => CapturedPacket::Bad { packet, problem },
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const IPPROTO_UDP: u8 = 17;

/// Source, destination and UDP payload of a datagram on port 500 or 4500.
type UdpInFrame<'a> = Option<(SocketAddrV4, SocketAddrV4, &'a [u8])>;

fn ike_in_frame(link: DataLink, frame: &[u8]) -> Result<UdpInFrame<'_>, PacketError> {
    let Some((src, dst, payload)) = udp_in_frame(link, frame)? else {
        return Ok(None);
    };
    let message = if src.port() == NAT_T_PORT || dst.port() == NAT_T_PORT {
        match classify_port_4500(payload) {
            Ok(Port4500::Ike(message)) => message,
            Ok(Port4500::Esp(_) | Port4500::NatKeepalive) => return Ok(None),
            Err(e) => return Err(PacketError::Port4500(e)),
        }
    } else {
        payload
    };
    Ok(Some((src, dst, message)))
}

fn udp_in_frame(link: DataLink, frame: &[u8]) -> Result<UdpInFrame<'_>, PacketError> {
    use PacketError::Truncated;
    let ipv4 = match link {
        DataLink::ETHERNET => {
            let mut ethertype = be16(frame, 12).ok_or(Truncated("Ethernet header"))?;
            let mut offset = 14;
            while ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
                ethertype = be16(frame, offset + 2).ok_or(Truncated("VLAN tag"))?;
                offset += 4;
            }
            if ethertype != ETHERTYPE_IPV4 {
                return Ok(None);
            }
            frame.get(offset..).ok_or(Truncated("Ethernet frame"))?
        }
        DataLink::LINUX_SLL => {
            if be16(frame, 14).ok_or(Truncated("Linux cooked header"))? != ETHERTYPE_IPV4 {
                return Ok(None);
            }
            frame.get(16..).ok_or(Truncated("Linux cooked header"))?
        }
        DataLink::LINUX_SLL2 => {
            if be16(frame, 0).ok_or(Truncated("Linux cooked v2 header"))? != ETHERTYPE_IPV4 {
                return Ok(None);
            }
            frame.get(20..).ok_or(Truncated("Linux cooked v2 header"))?
        }
        DataLink::RAW | DataLink::IPV4 => frame,
        DataLink::NULL | DataLink::LOOP => {
            let family = frame.get(..4).ok_or(Truncated("loopback header"))?;
            // AF_INET is 2 on every system, in the capturing host's byte order (NULL) or
            // network order (LOOP).
            if family != [2, 0, 0, 0] && family != [0, 0, 0, 2] {
                return Ok(None);
            }
            frame.get(4..).ok_or(Truncated("loopback header"))?
        }
        other => return Err(PacketError::UnsupportedLink(other)),
    };
    udp_datagram(ipv4)
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    let pair = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([pair[0], pair[1]]))
}

/// The UDP payload of an IPv4 packet, if it is UDP to or from port 500 or 4500.
fn udp_datagram(ip: &[u8]) -> Result<UdpInFrame<'_>, PacketError> {
    use PacketError::Truncated;
    let first = *ip.first().ok_or(PacketError::EmptyIpPacket)?;
    if first >> 4 != 4 {
        return Ok(None);
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < 20 || ip.len() < header_len {
        return Err(PacketError::BadHeaderLength(header_len));
    }
    if ip[9] != IPPROTO_UDP {
        return Ok(None);
    }
    let total_len = usize::from(be16(ip, 2).ok_or(Truncated("IPv4 header"))?);
    if total_len < header_len || total_len > ip.len() {
        return Err(PacketError::BadTotalLength {
            total: total_len,
            captured: ip.len(),
        });
    }
    let fragment = be16(ip, 6).ok_or(Truncated("IPv4 header"))?;
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let udp = &ip[header_len..total_len];
    let (Some(src_port), Some(dst_port), Some(udp_len)) =
        (be16(udp, 0), be16(udp, 2), be16(udp, 4))
    else {
        return Err(Truncated("UDP header"));
    };
    let is_ike_port = |p| p == IKE_PORT || p == NAT_T_PORT;
    if !is_ike_port(src_port) && !is_ike_port(dst_port) {
        return Ok(None);
    }
    // More-fragments flag or a fragment offset.
    if fragment & 0x3fff != 0 {
        return Err(PacketError::Fragmented);
    }
    let udp_len = usize::from(udp_len);
    if udp_len < 8 || udp_len > udp.len() {
        return Err(PacketError::BadUdpLength {
            length: udp_len,
            available: udp.len(),
        });
    }
    Ok(Some((
        SocketAddrV4::new(src, src_port),
        SocketAddrV4::new(dst, dst_port),
        &udp[8..udp_len],
    )))
}
