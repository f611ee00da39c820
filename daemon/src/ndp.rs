//! The Neighbor Discovery messages (RFC 4861 section 4) the daemons send and read: Router
//! Solicitations and Router Advertisements on a home's LANs, Neighbor Solicitations and Neighbor
//! Advertisements for the server's NDP proxy.
//!
//! Builders and parsers work on the ICMPv6 message alone: on a raw ICMPv6 socket the kernel
//! adds the IPv6 header, fills in the checksum and checks it on what arrives.
//! [`parse_solicitation_packet`] reads a whole IPv6 packet, as a packet socket delivers it,
//! and checks the checksum itself. Every parser returns an [`NdpError`], never panics.

use std::net::Ipv6Addr;

/// ICMPv6 type of a Router Solicitation.
pub const ROUTER_SOLICITATION: u8 = 133;
/// ICMPv6 type of a Router Advertisement.
pub const ROUTER_ADVERTISEMENT: u8 = 134;
/// ICMPv6 type of a Neighbor Solicitation.
pub const NEIGHBOR_SOLICITATION: u8 = 135;
/// ICMPv6 type of a Neighbor Advertisement.
pub const NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// The hop limit every Neighbor Discovery message carries (RFC 4861 6.1, 7.1): anything less
/// was forwarded by a router, so it did not come from the link.
pub const ND_HOP_LIMIT: u8 = 255;

const OPT_SOURCE_LLA: u8 = 1;
const OPT_TARGET_LLA: u8 = 2;
const OPT_PREFIX_INFO: u8 = 3;
const OPT_MTU: u8 = 5;
const OPT_RDNSS: u8 = 25;
const OPT_DNSSL: u8 = 31;
const IPPROTO_ICMPV6: u8 = 58;

/// What is wrong with a Neighbor Discovery message. Displays as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NdpError {
    /// Fewer bytes than the fixed part needs.
    #[error("{what}: {len} bytes, shorter than its {need}-byte fixed part")]
    Truncated {
        /// Which message or header.
        what: &'static str,
        /// Bytes there were.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// Another ICMPv6 type than the one asked for.
    #[error("ICMPv6 type {found}, expected {expected}")]
    WrongType {
        /// The type in the message.
        found: u8,
        /// The type asked for.
        expected: u8,
    },
    /// A non-zero ICMPv6 code (RFC 4861 6.1.1, 6.1.2, 7.1.1).
    #[error("ICMPv6 code {0}, must be 0")]
    Code(u8),
    /// An option whose length field is 0 (RFC 4861 4.6: the message must be discarded).
    #[error("option at byte {at} has length 0")]
    ZeroLengthOption {
        /// Offset of the option in the message.
        at: usize,
    },
    /// An option that runs past the end of the message.
    #[error("option at byte {at} runs past the end of the message")]
    OptionOverrun {
        /// Offset of the option in the message.
        at: usize,
    },
    /// An option of a known type with a wrong length or content.
    #[error("option {kind} at byte {at}: {problem}")]
    BadOption {
        /// The option type.
        kind: u8,
        /// Offset of the option in the message.
        at: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// A source link-layer address option from the unspecified address (RFC 4861 6.1.1, 7.1.1).
    #[error("source link-layer address option from the unspecified address")]
    UnspecifiedWithSourceLla,
    /// A Neighbor Solicitation for a multicast address (RFC 4861 7.1.1).
    #[error("target {0} is a multicast address")]
    MulticastTarget(Ipv6Addr),
    /// Not an IPv6 packet (version field).
    #[error("IP version {0}, not 6")]
    NotIpv6(u8),
    /// An IPv6 packet that does not carry ICMPv6 directly.
    #[error("next header {0}, not ICMPv6")]
    NotIcmpv6(u8),
    /// The IPv6 payload length disagrees with the bytes there are.
    #[error("IPv6 payload length {claimed}, but {actual} bytes follow the header")]
    PayloadLength {
        /// The header's payload length.
        claimed: usize,
        /// Bytes after the header.
        actual: usize,
    },
    /// A hop limit below 255: the message did not come from the link.
    #[error("hop limit {0}, must be 255: not from the link")]
    HopLimit(u8),
    /// The ICMPv6 checksum does not match.
    #[error("ICMPv6 checksum does not match")]
    Checksum,
}

/// A prefix information option (RFC 4861 4.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixInfo {
    /// The prefix (bits beyond `prefix_len` are zero when built from an [`ipnet::Ipv6Net`]).
    pub prefix: Ipv6Addr,
    /// Its length.
    pub prefix_len: u8,
    /// L: the prefix is on-link.
    pub on_link: bool,
    /// A: hosts may form addresses in it (SLAAC, RFC 4862).
    pub autonomous: bool,
    /// Valid lifetime in seconds (`u32::MAX`: infinite).
    pub valid_seconds: u32,
    /// Preferred lifetime in seconds (0: addresses in it are deprecated).
    pub preferred_seconds: u32,
}

/// A Router Advertisement (RFC 4861 4.2) with the options hometun sends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouterAdvertisement {
    /// Cur Hop Limit for hosts (0: unspecified).
    pub hop_limit: u8,
    /// M: addresses from DHCPv6.
    pub managed: bool,
    /// O: other configuration from DHCPv6.
    pub other: bool,
    /// Seconds hosts may use this router as a default router (0: not a default router).
    pub router_lifetime: u16,
    /// Reachable Time in milliseconds (0: unspecified).
    pub reachable_ms: u32,
    /// Retrans Timer in milliseconds (0: unspecified).
    pub retrans_ms: u32,
    /// The router's link-layer address on this link.
    pub source_lla: Option<[u8; 6]>,
    /// The MTU option (RFC 4861 4.6.4).
    pub mtu: Option<u32>,
    /// Prefix information options.
    pub prefixes: Vec<PrefixInfo>,
    /// Recursive DNS servers (RFC 8106 5.1) and their lifetime in seconds; empty: no option.
    pub dns_servers: Vec<Ipv6Addr>,
    /// DNS search list (RFC 8106 5.2), names without the final dot; empty: no option.
    pub search_domains: Vec<String>,
    /// Lifetime of both DNS options in seconds (0: stop using them).
    pub dns_lifetime: u32,
}

/// A Router Solicitation (RFC 4861 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterSolicitation {
    /// The host's link-layer address, if it gave one.
    pub source_lla: Option<[u8; 6]>,
}

/// A Neighbor Solicitation (RFC 4861 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborSolicitation {
    /// The address asked about.
    pub target: Ipv6Addr,
    /// The asker's link-layer address, if it gave one.
    pub source_lla: Option<[u8; 6]>,
}

/// A Neighbor Advertisement (RFC 4861 4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborAdvertisement {
    /// R: the sender is a router.
    pub router: bool,
    /// S: an answer to a solicitation.
    pub solicited: bool,
    /// O: replace a cached link-layer address (a proxy leaves it clear, RFC 4861 7.2.8).
    pub override_flag: bool,
    /// The address advertised.
    pub target: Ipv6Addr,
    /// The link-layer address it has.
    pub target_lla: Option<[u8; 6]>,
}

/// A Neighbor Solicitation read from a whole IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SolicitationPacket {
    /// The IPv6 source (unspecified for duplicate address detection).
    pub source: Ipv6Addr,
    /// The IPv6 destination.
    pub destination: Ipv6Addr,
    /// The solicitation.
    pub solicitation: NeighborSolicitation,
}

impl RouterAdvertisement {
    /// The message as it goes on a raw ICMPv6 socket (checksum left 0 for the kernel).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![ROUTER_ADVERTISEMENT, 0, 0, 0, self.hop_limit, 0];
        out[5] = (u8::from(self.managed) << 7) | (u8::from(self.other) << 6);
        out.extend_from_slice(&self.router_lifetime.to_be_bytes());
        out.extend_from_slice(&self.reachable_ms.to_be_bytes());
        out.extend_from_slice(&self.retrans_ms.to_be_bytes());
        if let Some(lla) = self.source_lla {
            push_lla(&mut out, OPT_SOURCE_LLA, lla);
        }
        if let Some(mtu) = self.mtu {
            out.extend_from_slice(&[OPT_MTU, 1, 0, 0]);
            out.extend_from_slice(&mtu.to_be_bytes());
        }
        for p in &self.prefixes {
            out.extend_from_slice(&[OPT_PREFIX_INFO, 4, p.prefix_len]);
            out.push((u8::from(p.on_link) << 7) | (u8::from(p.autonomous) << 6));
            out.extend_from_slice(&p.valid_seconds.to_be_bytes());
            out.extend_from_slice(&p.preferred_seconds.to_be_bytes());
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&p.prefix.octets());
        }
        if !self.dns_servers.is_empty() {
            let units = 1 + 2 * self.dns_servers.len();
            out.extend_from_slice(&[OPT_RDNSS, units as u8, 0, 0]);
            out.extend_from_slice(&self.dns_lifetime.to_be_bytes());
            for server in &self.dns_servers {
                out.extend_from_slice(&server.octets());
            }
        }
        if !self.search_domains.is_empty() {
            let mut names = Vec::new();
            for name in &self.search_domains {
                for label in name.split('.').filter(|l| !l.is_empty()) {
                    names.push(label.len() as u8);
                    names.extend_from_slice(label.as_bytes());
                }
                names.push(0);
            }
            while (8 + names.len()) % 8 != 0 {
                names.push(0);
            }
            let units = (8 + names.len()) / 8;
            out.extend_from_slice(&[OPT_DNSSL, units as u8, 0, 0]);
            out.extend_from_slice(&self.dns_lifetime.to_be_bytes());
            out.extend_from_slice(&names);
        }
        out
    }

    /// Reads a Router Advertisement (type, code, length and options as RFC 4861 6.1.2 asks;
    /// the caller checks the hop limit and the link-local source). Options hometun does not
    /// know are skipped; of RDNSS and DNSSL the last one counts.
    pub fn parse(message: &[u8]) -> Result<Self, NdpError> {
        let body = fixed(message, ROUTER_ADVERTISEMENT, 16, "Router Advertisement")?;
        let mut ra = RouterAdvertisement {
            hop_limit: body[4],
            managed: body[5] & 0x80 != 0,
            other: body[5] & 0x40 != 0,
            router_lifetime: u16::from_be_bytes([body[6], body[7]]),
            reachable_ms: be32(&body[8..12]),
            retrans_ms: be32(&body[12..16]),
            ..RouterAdvertisement::default()
        };
        for option in Options::new(message, 16) {
            let (kind, at, data) = option?;
            let bad = |problem| NdpError::BadOption { kind, at, problem };
            match kind {
                OPT_SOURCE_LLA => ra.source_lla = lla(data),
                OPT_MTU => {
                    if data.len() != 8 {
                        return Err(bad("an MTU option is 8 bytes"));
                    }
                    ra.mtu = Some(be32(&data[4..8]));
                }
                OPT_PREFIX_INFO => {
                    if data.len() != 32 {
                        return Err(bad("a prefix information option is 32 bytes"));
                    }
                    if data[2] > 128 {
                        return Err(bad("prefix length above 128"));
                    }
                    ra.prefixes.push(PrefixInfo {
                        prefix_len: data[2],
                        on_link: data[3] & 0x80 != 0,
                        autonomous: data[3] & 0x40 != 0,
                        valid_seconds: be32(&data[4..8]),
                        preferred_seconds: be32(&data[8..12]),
                        prefix: addr(&data[16..32]),
                    });
                }
                OPT_RDNSS => {
                    if data.len() < 24 || (data.len() - 8) % 16 != 0 {
                        return Err(bad("an RDNSS option holds one or more addresses"));
                    }
                    ra.dns_lifetime = be32(&data[4..8]);
                    ra.dns_servers = data[8..].chunks_exact(16).map(addr).collect();
                }
                OPT_DNSSL => {
                    ra.dns_lifetime = be32(&data[4..8]);
                    ra.search_domains = parse_dns_names(&data[8..]).map_err(bad)?;
                }
                _ => {}
            }
        }
        Ok(ra)
    }
}

impl NeighborAdvertisement {
    /// The message as it goes on a raw ICMPv6 socket (checksum left 0 for the kernel).
    pub fn to_bytes(&self) -> Vec<u8> {
        let flags = (u8::from(self.router) << 7)
            | (u8::from(self.solicited) << 6)
            | (u8::from(self.override_flag) << 5);
        let mut out = vec![NEIGHBOR_ADVERTISEMENT, 0, 0, 0, flags, 0, 0, 0];
        out.extend_from_slice(&self.target.octets());
        if let Some(lla) = self.target_lla {
            push_lla(&mut out, OPT_TARGET_LLA, lla);
        }
        out
    }

    /// Reads a Neighbor Advertisement (for tests and tools; the daemons only send them).
    pub fn parse(message: &[u8]) -> Result<Self, NdpError> {
        let body = fixed(
            message,
            NEIGHBOR_ADVERTISEMENT,
            24,
            "Neighbor Advertisement",
        )?;
        let target = addr(&body[8..24]);
        if target.is_multicast() {
            return Err(NdpError::MulticastTarget(target));
        }
        let mut na = NeighborAdvertisement {
            router: body[4] & 0x80 != 0,
            solicited: body[4] & 0x40 != 0,
            override_flag: body[4] & 0x20 != 0,
            target,
            target_lla: None,
        };
        for option in Options::new(message, 24) {
            let (kind, _, data) = option?;
            if kind == OPT_TARGET_LLA {
                na.target_lla = lla(data);
            }
        }
        Ok(na)
    }
}

impl RouterSolicitation {
    /// The message as a host sends it (for tests and tools).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0];
        if let Some(lla) = self.source_lla {
            push_lla(&mut out, OPT_SOURCE_LLA, lla);
        }
        out
    }

    /// Reads a Router Solicitation as RFC 4861 6.1.1 asks: type, code, length, options, and
    /// no source link-layer address from `source` when that is the unspecified address (the
    /// caller checks the hop limit).
    pub fn parse(message: &[u8], source: Ipv6Addr) -> Result<Self, NdpError> {
        fixed(message, ROUTER_SOLICITATION, 8, "Router Solicitation")?;
        let mut rs = RouterSolicitation { source_lla: None };
        for option in Options::new(message, 8) {
            let (kind, _, data) = option?;
            if kind == OPT_SOURCE_LLA {
                rs.source_lla = lla(data);
            }
        }
        if rs.source_lla.is_some() && source.is_unspecified() {
            return Err(NdpError::UnspecifiedWithSourceLla);
        }
        Ok(rs)
    }
}

impl NeighborSolicitation {
    /// The message as a host sends it (for tests and tools).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![NEIGHBOR_SOLICITATION, 0, 0, 0, 0, 0, 0, 0];
        out.extend_from_slice(&self.target.octets());
        if let Some(lla) = self.source_lla {
            push_lla(&mut out, OPT_SOURCE_LLA, lla);
        }
        out
    }

    /// Reads a Neighbor Solicitation as RFC 4861 7.1.1 asks (the caller checks the hop limit).
    pub fn parse(message: &[u8], source: Ipv6Addr) -> Result<Self, NdpError> {
        let body = fixed(message, NEIGHBOR_SOLICITATION, 24, "Neighbor Solicitation")?;
        let target = addr(&body[8..24]);
        if target.is_multicast() {
            return Err(NdpError::MulticastTarget(target));
        }
        let mut ns = NeighborSolicitation {
            target,
            source_lla: None,
        };
        for option in Options::new(message, 24) {
            let (kind, _, data) = option?;
            if kind == OPT_SOURCE_LLA {
                ns.source_lla = lla(data);
            }
        }
        if ns.source_lla.is_some() && source.is_unspecified() {
            return Err(NdpError::UnspecifiedWithSourceLla);
        }
        Ok(ns)
    }
}

/// Reads a Neighbor Solicitation from a whole IPv6 packet (as an `AF_PACKET` socket of type
/// `SOCK_DGRAM` delivers it): version, next header (ICMPv6, no extension headers), payload
/// length, hop limit 255 and the ICMPv6 checksum, then the message itself.
pub fn parse_solicitation_packet(packet: &[u8]) -> Result<SolicitationPacket, NdpError> {
    if packet.len() < 40 {
        return Err(NdpError::Truncated {
            what: "IPv6 header",
            len: packet.len(),
            need: 40,
        });
    }
    let version = packet[0] >> 4;
    if version != 6 {
        return Err(NdpError::NotIpv6(version));
    }
    if packet[6] != IPPROTO_ICMPV6 {
        return Err(NdpError::NotIcmpv6(packet[6]));
    }
    let claimed = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
    let actual = packet.len() - 40;
    // A link may pad a short frame: more bytes than claimed are fine, fewer are not.
    if claimed > actual {
        return Err(NdpError::PayloadLength { claimed, actual });
    }
    if packet[7] != ND_HOP_LIMIT {
        return Err(NdpError::HopLimit(packet[7]));
    }
    let source = addr(&packet[8..24]);
    let destination = addr(&packet[24..40]);
    let message = &packet[40..40 + claimed];
    if icmpv6_checksum(source, destination, message) != 0 {
        return Err(NdpError::Checksum);
    }
    Ok(SolicitationPacket {
        source,
        destination,
        solicitation: NeighborSolicitation::parse(message, source)?,
    })
}

/// The ICMPv6 checksum over the pseudo-header and `message` (RFC 4443 2.3): 0 when `message`
/// carries a correct checksum; the value to put in it when its checksum field is 0.
pub fn icmpv6_checksum(source: Ipv6Addr, destination: Ipv6Addr, message: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    };
    add(&source.octets());
    add(&destination.octets());
    add(&(message.len() as u32).to_be_bytes());
    add(&[0, 0, 0, IPPROTO_ICMPV6]);
    add(message);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The ICMPv6 type, code and the fixed part of `expected`'s message.
fn fixed<'a>(
    message: &'a [u8],
    expected: u8,
    need: usize,
    what: &'static str,
) -> Result<&'a [u8], NdpError> {
    if message.len() < need {
        return Err(NdpError::Truncated {
            what,
            len: message.len(),
            need,
        });
    }
    if message[0] != expected {
        return Err(NdpError::WrongType {
            found: message[0],
            expected,
        });
    }
    if message[1] != 0 {
        return Err(NdpError::Code(message[1]));
    }
    Ok(&message[..need])
}

/// The options after a message's fixed part: (type, offset, whole option).
struct Options<'a> {
    message: &'a [u8],
    at: usize,
    failed: bool,
}

impl<'a> Options<'a> {
    fn new(message: &'a [u8], at: usize) -> Self {
        Options {
            message,
            at,
            failed: false,
        }
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<(u8, usize, &'a [u8]), NdpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.message.len() {
            return None;
        }
        let at = self.at;
        let rest = &self.message[at..];
        if rest.len() < 2 {
            self.failed = true;
            return Some(Err(NdpError::OptionOverrun { at }));
        }
        let len = usize::from(rest[1]) * 8;
        if len == 0 {
            self.failed = true;
            return Some(Err(NdpError::ZeroLengthOption { at }));
        }
        let Some(option) = rest.get(..len) else {
            self.failed = true;
            return Some(Err(NdpError::OptionOverrun { at }));
        };
        self.at += len;
        Some(Ok((rest[0], at, option)))
    }
}

/// An Ethernet address from a link-layer address option of 8 bytes; other links' are ignored.
fn lla(option: &[u8]) -> Option<[u8; 6]> {
    if option.len() != 8 {
        return None;
    }
    option[2..8].try_into().ok()
}

fn push_lla(out: &mut Vec<u8>, kind: u8, lla: [u8; 6]) {
    out.extend_from_slice(&[kind, 1]);
    out.extend_from_slice(&lla);
}

/// Domain names in DNS wire format (RFC 1035 3.1, no compression) followed by zero padding,
/// as a DNSSL option carries them (RFC 8106 5.2).
fn parse_dns_names(mut data: &[u8]) -> Result<Vec<String>, &'static str> {
    let mut names = Vec::new();
    while let Some((&first, _)) = data.split_first() {
        if first == 0 {
            // Padding: only zeros may follow.
            if data.iter().any(|&b| b != 0) {
                return Err("data after the padding of a DNSSL option");
            }
            break;
        }
        let mut labels = Vec::new();
        loop {
            let Some((&len, rest)) = data.split_first() else {
                return Err("a DNSSL name runs past the end of its option");
            };
            data = rest;
            if len == 0 {
                break;
            }
            if len > 63 {
                return Err("a DNSSL label is longer than 63 bytes");
            }
            let Some((label, rest)) = data.split_at_checked(usize::from(len)) else {
                return Err("a DNSSL label runs past the end of its option");
            };
            if !label
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            {
                return Err("a DNSSL label has a character outside letters, digits, '-', '_'");
            }
            labels.push(String::from_utf8_lossy(label).into_owned());
            data = rest;
        }
        names.push(labels.join("."));
    }
    if names.is_empty() {
        return Err("a DNSSL option holds no name");
    }
    Ok(names)
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn addr(bytes: &[u8]) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&bytes[..16]);
    Ipv6Addr::from(octets)
}

#[cfg(test)]
mod tests;
