//! The Traffic Selector payloads TSi and TSr (RFC 7296 3.13).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::codec::{Reader, Writer, impl_emit, len_u8, len_u16};
use super::{TsType, WireError};

/// Length of a TS_IPV4_ADDR_RANGE selector.
const IPV4_SELECTOR_LEN: usize = 16;
/// Length of a TS_IPV6_ADDR_RANGE selector.
const IPV6_SELECTOR_LEN: usize = 40;

/// TSi or TSr payload: a set of traffic selectors.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TrafficSelectors {
    /// The selectors; traffic matching any of them is covered.
    pub selectors: Vec<TrafficSelector>,
}

/// One traffic selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TrafficSelector {
    /// TS_IPV4_ADDR_RANGE or TS_IPV6_ADDR_RANGE, by the family of the addresses.
    Address(AddressRange),
    /// A selector of another type, kept as the octets after its length field.
    Unknown {
        /// The selector type.
        ts_type: TsType,
        /// The second octet (the IP Protocol ID in the address range types).
        ip_protocol: u8,
        /// Everything after the Selector Length field.
        data: Vec<u8>,
    },
}

/// An address range selector: a protocol, a port range and an address range of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressRange {
    /// IP protocol number, 0 for any.
    pub ip_protocol: u8,
    /// First port (0 with `end_port` 65535 for any).
    pub start_port: u16,
    /// Last port.
    pub end_port: u16,
    /// First address.
    pub start: IpAddr,
    /// Last address; of the same family as `start`.
    pub end: IpAddr,
}

impl AddressRange {
    /// All protocols and ports between two addresses.
    pub fn new(start: IpAddr, end: IpAddr) -> Self {
        Self {
            ip_protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start,
            end,
        }
    }

    /// All protocols and ports of an IPv6 prefix (`prefix_len` above 128 counts as 128).
    pub fn ipv6_prefix(prefix: Ipv6Addr, prefix_len: u8) -> Self {
        let host_bits = 128 - u32::from(prefix_len.min(128));
        let host_mask = if host_bits == 0 {
            0
        } else {
            u128::MAX >> (128 - host_bits)
        };
        let start = u128::from(prefix) & !host_mask;
        Self::new(
            IpAddr::V6(Ipv6Addr::from(start)),
            IpAddr::V6(Ipv6Addr::from(start | host_mask)),
        )
    }

    /// All protocols and ports of an IPv4 prefix (`prefix_len` above 32 counts as 32).
    pub fn ipv4_prefix(prefix: Ipv4Addr, prefix_len: u8) -> Self {
        let host_bits = 32 - u32::from(prefix_len.min(32));
        let host_mask = if host_bits == 0 {
            0
        } else {
            u32::MAX >> (32 - host_bits)
        };
        let start = u32::from(prefix) & !host_mask;
        Self::new(
            IpAddr::V4(Ipv4Addr::from(start)),
            IpAddr::V4(Ipv4Addr::from(start | host_mask)),
        )
    }

    /// The selector type this range is sent as.
    pub fn ts_type(&self) -> TsType {
        match self.start {
            IpAddr::V4(_) => TsType::TS_IPV4_ADDR_RANGE,
            IpAddr::V6(_) => TsType::TS_IPV6_ADDR_RANGE,
        }
    }
}

impl TrafficSelectors {
    /// A TS payload with the given selectors.
    pub fn new(selectors: Vec<TrafficSelector>) -> Self {
        Self { selectors }
    }

    /// The address range selectors, skipping unknown types.
    pub fn ranges(&self) -> impl Iterator<Item = &AddressRange> {
        self.selectors.iter().filter_map(|s| match s {
            TrafficSelector::Address(range) => Some(range),
            TrafficSelector::Unknown { .. } => None,
        })
    }

    /// Parses a TSi/TSr payload body.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "TS payload");
        let count = usize::from(r.u8()?);
        r.skip(3)?;
        let mut selectors = Vec::with_capacity(count.min(r.remaining() / 4));
        for _ in 0..count {
            let ts_type = TsType(r.u8()?);
            let ip_protocol = r.u8()?;
            let length = usize::from(r.u16()?);
            if length < 4 {
                return Err(WireError::InvalidLength {
                    what: "traffic selector",
                    length,
                });
            }
            let rest = r.take(length - 4)?;
            selectors.push(TrafficSelector::parse_after_length(
                ts_type,
                ip_protocol,
                length,
                rest,
            )?);
        }
        if !r.is_empty() {
            return Err(WireError::TrailingBytes(r.remaining()));
        }
        Ok(Self { selectors })
    }

    /// Length of the emitted body.
    pub fn buffer_len(&self) -> usize {
        4 + self
            .selectors
            .iter()
            .map(TrafficSelector::buffer_len)
            .sum::<usize>()
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u8(len_u8(self.selectors.len(), "TS count")?)?;
        w.zeros(3)?;
        for selector in &self.selectors {
            selector.write(w)?;
        }
        Ok(())
    }
}
impl_emit!(TrafficSelectors);

impl TrafficSelector {
    /// The selector type.
    pub fn ts_type(&self) -> TsType {
        match self {
            TrafficSelector::Address(range) => range.ts_type(),
            TrafficSelector::Unknown { ts_type, .. } => *ts_type,
        }
    }

    fn parse_after_length(
        ts_type: TsType,
        ip_protocol: u8,
        length: usize,
        rest: &[u8],
    ) -> Result<Self, WireError> {
        let expected = match ts_type {
            TsType::TS_IPV4_ADDR_RANGE => IPV4_SELECTOR_LEN,
            TsType::TS_IPV6_ADDR_RANGE => IPV6_SELECTOR_LEN,
            _ => {
                return Ok(TrafficSelector::Unknown {
                    ts_type,
                    ip_protocol,
                    data: rest.to_vec(),
                });
            }
        };
        if length != expected {
            return Err(WireError::InvalidLength {
                what: "address range traffic selector",
                length,
            });
        }
        let mut r = Reader::new(rest, "traffic selector");
        let start_port = r.u16()?;
        let end_port = r.u16()?;
        let (start, end) = if ts_type == TsType::TS_IPV4_ADDR_RANGE {
            (
                IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
                IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
            )
        } else {
            (
                IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
                IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
            )
        };
        Ok(TrafficSelector::Address(AddressRange {
            ip_protocol,
            start_port,
            end_port,
            start,
            end,
        }))
    }

    /// Length of the emitted selector.
    pub fn buffer_len(&self) -> usize {
        match self {
            TrafficSelector::Address(range) => match range.start {
                IpAddr::V4(_) => IPV4_SELECTOR_LEN,
                IpAddr::V6(_) => IPV6_SELECTOR_LEN,
            },
            TrafficSelector::Unknown { data, .. } => 4 + data.len(),
        }
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        match self {
            TrafficSelector::Address(range) => {
                w.u8(range.ts_type().0)?;
                w.u8(range.ip_protocol)?;
                w.u16(len_u16(self.buffer_len(), "traffic selector")?)?;
                w.u16(range.start_port)?;
                w.u16(range.end_port)?;
                match (range.start, range.end) {
                    (IpAddr::V4(start), IpAddr::V4(end)) => {
                        w.bytes(&start.octets())?;
                        w.bytes(&end.octets())
                    }
                    (IpAddr::V6(start), IpAddr::V6(end)) => {
                        w.bytes(&start.octets())?;
                        w.bytes(&end.octets())
                    }
                    _ => Err(WireError::InvalidValue {
                        field: "traffic selector (start and end of different families)",
                        value: 0,
                    }),
                }
            }
            TrafficSelector::Unknown {
                ts_type,
                ip_protocol,
                data,
            } => {
                w.u8(ts_type.0)?;
                w.u8(*ip_protocol)?;
                w.u16(len_u16(self.buffer_len(), "traffic selector")?)?;
                w.bytes(data)
            }
        }
    }
}

impl fmt::Display for AddressRange {
    /// `2001:db8:1::2..2001:db8:1::2 proto 0 ports 0-65535`, shortened for the common cases.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)?;
        } else {
            write!(f, "{}..{}", self.start, self.end)?;
        }
        if self.ip_protocol != 0 {
            write!(f, " proto {}", self.ip_protocol)?;
        }
        if (self.start_port, self.end_port) != (0, u16::MAX) {
            write!(f, " ports {}-{}", self.start_port, self.end_port)?;
        }
        Ok(())
    }
}
