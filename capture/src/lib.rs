//! IKE messages in packet captures: reads pcap and pcapng files held in memory (Ethernet,
//! Linux cooked v1 and v2, raw IP or BSD loopback; IPv4 and UDP on port 500 or 4500, the
//! non-ESP marker removed, ESP and NAT keepalives skipped). Used by `hometun ike decode` and by
//! the tests that replay the strongSwan trace in testdata/.

use std::net::{Ipv4Addr, SocketAddrV4};

use hometun_ike::wire::{Port4500, classify_port_4500};
use pcap_file::DataLink;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};

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

/// One packet of a capture, as far as IKE is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        problem: String,
    },
}

/// Reads every packet of a pcap or pcapng capture held in memory. Fails only when the file is
/// not a capture at all; a damaged packet or a truncated file ends in a [`CapturedPacket::Bad`].
pub fn read_capture(bytes: &[u8]) -> Result<Vec<CapturedPacket>, String> {
    match bytes.get(..4) {
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => read_pcapng(bytes),
        Some(_) => read_pcap(bytes),
        None => Err("too short for a capture file".into()),
    }
}

fn read_pcap(bytes: &[u8]) -> Result<Vec<CapturedPacket>, String> {
    let mut reader = PcapReader::new(bytes).map_err(|e| format!("not a pcap file: {e}"))?;
    let link = reader.header().datalink;
    let mut packets = Vec::new();
    while let Some(next) = reader.next_packet() {
        let number = packets.len() + 1;
        match next {
            Ok(packet) => packets.push(classify_frame(number, link, &packet.data)),
            Err(e) => {
                packets.push(CapturedPacket::Bad {
                    packet: number,
                    problem: format!("capture file damaged, stopping: {e}"),
                });
                break;
            }
        }
    }
    Ok(packets)
}

fn read_pcapng(bytes: &[u8]) -> Result<Vec<CapturedPacket>, String> {
    let mut reader = PcapNgReader::new(bytes).map_err(|e| format!("not a pcapng file: {e}"))?;
    // Link types of the current section's interfaces, by interface ID.
    let mut links: Vec<DataLink> = reader.interfaces().iter().map(|i| i.linktype).collect();
    let mut packets = Vec::new();
    while let Some(next) = reader.next_block() {
        let number = packets.len() + 1;
        let block = match next {
            Ok(block) => block,
            Err(e) => {
                packets.push(CapturedPacket::Bad {
                    packet: number,
                    problem: format!("capture file damaged, stopping: {e}"),
                });
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
        packets.push(match links.get(interface) {
            Some(&link) => classify_frame(number, link, data),
            None => CapturedPacket::Bad {
                packet: number,
                problem: format!("packet of undescribed interface {interface}"),
            },
        });
    }
    Ok(packets)
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

type IkeInFrame<'a> = Option<(SocketAddrV4, SocketAddrV4, &'a [u8])>;

fn ike_in_frame(link: DataLink, frame: &[u8]) -> Result<IkeInFrame<'_>, String> {
    let ipv4 = match link {
        DataLink::ETHERNET => {
            let mut ethertype = be16(frame, 12).ok_or("truncated Ethernet header")?;
            let mut offset = 14;
            while ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
                ethertype = be16(frame, offset + 2).ok_or("truncated VLAN tag")?;
                offset += 4;
            }
            if ethertype != ETHERTYPE_IPV4 {
                return Ok(None);
            }
            frame.get(offset..).ok_or("truncated Ethernet frame")?
        }
        DataLink::LINUX_SLL => {
            if be16(frame, 14).ok_or("truncated Linux cooked header")? != ETHERTYPE_IPV4 {
                return Ok(None);
            }
            frame.get(16..).ok_or("truncated Linux cooked header")?
        }
        DataLink::LINUX_SLL2 => {
            if be16(frame, 0).ok_or("truncated Linux cooked v2 header")? != ETHERTYPE_IPV4 {
                return Ok(None);
            }
            frame.get(20..).ok_or("truncated Linux cooked v2 header")?
        }
        DataLink::RAW | DataLink::IPV4 => frame,
        DataLink::NULL | DataLink::LOOP => {
            let family = frame.get(..4).ok_or("truncated loopback header")?;
            // AF_INET is 2 on every system, in the capturing host's byte order (NULL) or
            // network order (LOOP).
            if family != [2, 0, 0, 0] && family != [0, 0, 0, 2] {
                return Ok(None);
            }
            frame.get(4..).ok_or("truncated loopback header")?
        }
        other => return Err(format!("link type {other:?} is not supported")),
    };
    udp_ike(ipv4)
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    let pair = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([pair[0], pair[1]]))
}

/// The IKE message in an IPv4 packet, if it is UDP to or from port 500 or 4500.
fn udp_ike(ip: &[u8]) -> Result<IkeInFrame<'_>, String> {
    let first = *ip.first().ok_or("empty IP packet")?;
    if first >> 4 != 4 {
        return Ok(None);
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < 20 || ip.len() < header_len {
        return Err(format!("bad IPv4 header length {header_len}"));
    }
    if ip[9] != IPPROTO_UDP {
        return Ok(None);
    }
    let total_len = usize::from(be16(ip, 2).ok_or("truncated IPv4 header")?);
    if total_len < header_len || total_len > ip.len() {
        return Err(format!(
            "IPv4 total length {total_len}, {} bytes captured",
            ip.len()
        ));
    }
    let fragment = be16(ip, 6).ok_or("truncated IPv4 header")?;
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let udp = &ip[header_len..total_len];
    let (Some(src_port), Some(dst_port), Some(udp_len)) =
        (be16(udp, 0), be16(udp, 2), be16(udp, 4))
    else {
        return Err("truncated UDP header".into());
    };
    let is_ike_port = |p| p == IKE_PORT || p == NAT_T_PORT;
    if !is_ike_port(src_port) && !is_ike_port(dst_port) {
        return Ok(None);
    }
    // More-fragments flag or a fragment offset.
    if fragment & 0x3fff != 0 {
        return Err("fragmented IPv4 packet; reassembly is not supported".into());
    }
    let udp_len = usize::from(udp_len);
    if udp_len < 8 || udp_len > udp.len() {
        return Err(format!(
            "UDP length {udp_len}, {} bytes in the IP packet",
            udp.len()
        ));
    }
    let payload = &udp[8..udp_len];
    let message = if src_port == NAT_T_PORT || dst_port == NAT_T_PORT {
        match classify_port_4500(payload) {
            Ok(Port4500::Ike(message)) => message,
            Ok(Port4500::Esp(_) | Port4500::NatKeepalive) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        }
    } else {
        payload
    };
    Ok(Some((
        SocketAddrV4::new(src, src_port),
        SocketAddrV4::new(dst, dst_port),
        message,
    )))
}
