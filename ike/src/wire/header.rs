//! The IKE header (RFC 7296 3.1) and the non-ESP marker of UDP port 4500 (RFC 3948 2.2).

use std::fmt;

use super::codec::{Reader, Writer};
use super::{ExchangeType, PayloadType, WireError};

/// Length of the IKE header.
pub const HEADER_LEN: usize = 28;

/// The major version this crate speaks.
pub const MAJOR_VERSION: u8 = 2;

/// The four zero octets that precede an IKE message on UDP port 4500, where they tell it apart
/// from ESP (whose SPI is never zero).
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// The flags octet of the IKE header. Reserved bits are kept as received so that a parsed header
/// emits the same bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// I: the message comes from the original initiator of the IKE SA.
    pub const INITIATOR: u8 = 0x08;
    /// V: the sender can speak a higher major version.
    pub const VERSION: u8 = 0x10;
    /// R: the message is a response.
    pub const RESPONSE: u8 = 0x20;

    /// The flags of a message sent by the original initiator (`initiator`) or responder of the
    /// IKE SA, as a request or as a response.
    pub const fn new(initiator: bool, response: bool) -> Self {
        let mut bits = 0;
        if initiator {
            bits |= Self::INITIATOR;
        }
        if response {
            bits |= Self::RESPONSE;
        }
        Self(bits)
    }

    /// Whether the sender is the original initiator of the IKE SA.
    pub const fn initiator(self) -> bool {
        self.0 & Self::INITIATOR != 0
    }

    /// Whether the message is a response.
    pub const fn response(self) -> bool {
        self.0 & Self::RESPONSE != 0
    }

    /// Whether the sender announces a higher major version.
    pub const fn version(self) -> bool {
        self.0 & Self::VERSION != 0
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags({:#04x} {self})", self.0)
    }
}

impl fmt::Display for Flags {
    /// Prints the set flags as letters, e.g. `I` or `R` or `I R`, and `-` for none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = [
            (self.initiator(), "I"),
            (self.version(), "V"),
            (self.response(), "R"),
        ];
        let mut any = false;
        for (_, letter) in set.iter().filter(|(on, _)| *on) {
            if any {
                f.write_str(" ")?;
            }
            f.write_str(letter)?;
            any = true;
        }
        if !any {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// The IKE header.
///
/// `next_payload` and `length` describe the bytes that follow. [`Message::emit`] computes them
/// from its payloads, so when building a message leave them as [`Header::new`] sets them.
///
/// [`Message::emit`]: super::Message::emit
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    /// IKE SA initiator's SPI.
    pub spi_i: u64,
    /// IKE SA responder's SPI (zero in the first IKE_SA_INIT request).
    pub spi_r: u64,
    /// Type of the first payload.
    pub next_payload: PayloadType,
    /// Major version (2).
    pub major_version: u8,
    /// Minor version (0; ignored on receipt, kept for a faithful round trip).
    pub minor_version: u8,
    /// Exchange type.
    pub exchange_type: ExchangeType,
    /// I, V and R flags.
    pub flags: Flags,
    /// Message ID.
    pub message_id: u32,
    /// Length of the whole message, header included.
    pub length: u32,
}

impl Header {
    /// A version 2.0 header with no payloads yet.
    pub const fn new(
        exchange_type: ExchangeType,
        spi_i: u64,
        spi_r: u64,
        flags: Flags,
        message_id: u32,
    ) -> Self {
        Self {
            spi_i,
            spi_r,
            next_payload: PayloadType::NONE,
            major_version: MAJOR_VERSION,
            minor_version: 0,
            exchange_type,
            flags,
            message_id,
            length: HEADER_LEN as u32,
        }
    }

    /// Parses the first [`HEADER_LEN`] bytes of `bytes`.
    ///
    /// Accepts any version and any length field so that a responder can still read the SPIs
    /// to answer INVALID_MAJOR_VERSION; [`Message::parse`](super::Message::parse) checks both.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes, "IKE header");
        let spi_i = r.u64()?;
        let spi_r = r.u64()?;
        let next_payload = PayloadType(r.u8()?);
        let version = r.u8()?;
        let exchange_type = ExchangeType(r.u8()?);
        let flags = Flags(r.u8()?);
        let message_id = r.u32()?;
        let length = r.u32()?;
        Ok(Self {
            spi_i,
            spi_r,
            next_payload,
            major_version: version >> 4,
            minor_version: version & 0x0f,
            exchange_type,
            flags,
            message_id,
            length,
        })
    }

    /// Length of the emitted header: [`HEADER_LEN`].
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header as it stands into the front of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let mut w = Writer::new(buf);
        self.write(&mut w)?;
        Ok(w.position())
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        if self.major_version > 0x0f || self.minor_version > 0x0f {
            return Err(WireError::InvalidValue {
                field: "IKE version nibble",
                value: u64::from(self.major_version.max(self.minor_version)),
            });
        }
        w.u64(self.spi_i)?;
        w.u64(self.spi_r)?;
        w.u8(self.next_payload.0)?;
        w.u8(self.major_version << 4 | self.minor_version)?;
        w.u8(self.exchange_type.0)?;
        w.u8(self.flags.0)?;
        w.u32(self.message_id)?;
        w.u32(self.length)
    }
}

/// What a UDP datagram on port 4500 carries (RFC 3948 2.2, 2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port4500<'a> {
    /// An IKE message, the non-ESP marker already removed.
    Ike(&'a [u8]),
    /// An ESP packet, starting with its SPI.
    Esp(&'a [u8]),
    /// A NAT keepalive (the single octet 0xFF).
    NatKeepalive,
}

/// Tells apart what a UDP port 4500 datagram carries. Fails only on datagrams too short to be
/// any of them.
pub fn classify_port_4500(datagram: &[u8]) -> Result<Port4500<'_>, WireError> {
    if datagram == [0xff] {
        return Ok(Port4500::NatKeepalive);
    }
    match datagram.split_first_chunk::<4>() {
        Some((marker, rest)) if *marker == NON_ESP_MARKER => Ok(Port4500::Ike(rest)),
        Some(_) => Ok(Port4500::Esp(datagram)),
        None => Err(WireError::Truncated {
            what: "UDP 4500 datagram",
            needed: 4,
            available: datagram.len(),
        }),
    }
}

/// The IKE message inside a port 4500 datagram, or `None` if the datagram lacks the non-ESP
/// marker.
pub fn strip_non_esp_marker(datagram: &[u8]) -> Option<&[u8]> {
    match datagram.split_first_chunk::<4>() {
        Some((marker, rest)) if *marker == NON_ESP_MARKER => Some(rest),
        _ => None,
    }
}

/// The datagram to send on port 4500 for an IKE message: the non-ESP marker, then the message.
pub fn add_non_esp_marker(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(NON_ESP_MARKER.len() + message.len());
    out.extend_from_slice(&NON_ESP_MARKER);
    out.extend_from_slice(message);
    out
}
