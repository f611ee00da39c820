//! Checked views and representations of the packets the data plane reads and writes, in the
//! style of smoltcp's `wire` module (docs/ARCHITECTURE.md, "Conventions"): a `Packet<T>` wraps a
//! buffer and is built
//! with `new_checked`, after which its getters cannot read out of bounds; a `Repr` is the parsed,
//! validated meaning, with `parse`, `buffer_len` and `emit`.
//!
//! Nothing here panics on any input: every length is checked and every failure is a
//! [`WireError`].

pub mod esp;
pub mod icmpv6;
pub mod ipv6;

pub use esp::{Packet as EspPacket, Repr as EspRepr};
pub use icmpv6::{NaFlags, Packet as Icmpv6Packet, Repr as Icmpv6Repr};
pub use ipv6::{Packet as Ipv6Packet, Repr as Ipv6Repr};

/// Why bytes could not be read as, or written into, a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header, or than a length field says.
    #[error("packet truncated")]
    Truncated,
    /// The IP version field is not 6.
    #[error("IP version {0}, expected 6")]
    BadVersion(u8),
    /// The ICMPv6 checksum does not match.
    #[error("bad ICMPv6 checksum")]
    BadChecksum,
    /// An ICMPv6 code that the message type does not allow.
    #[error("ICMPv6 type {msg_type} with code {code}")]
    BadCode {
        /// The message type.
        msg_type: u8,
        /// The code it carried.
        code: u8,
    },
    /// An ICMPv6 message type this module does not parse.
    #[error("ICMPv6 type {0} not handled")]
    UnknownType(u8),
    /// A Neighbor Discovery option with length 0 (RFC 4861 4.6: the packet must be dropped).
    #[error("neighbor discovery option with length 0")]
    ZeroLengthOption,
    /// A Neighbor Discovery option whose contents are not what its type requires.
    #[error("malformed neighbor discovery option type {0}")]
    BadOption(u8),
    /// A Neighbor Discovery option that may appear once appeared again.
    #[error("duplicate neighbor discovery option type {0}")]
    DuplicateOption(u8),
    /// A Neighbor Advertisement for a multicast target (RFC 4861 7.1.2).
    #[error("neighbor advertisement for a multicast target")]
    MulticastTarget,
    /// A solicited Neighbor Advertisement sent to a multicast address (RFC 4861 7.1.2).
    #[error("solicited neighbor advertisement to a multicast destination")]
    SolicitedToMulticast,
    /// The output buffer is too small for what is to be emitted.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// The payload does not fit the 16-bit IPv6 payload length.
    #[error("payload too long for IPv6")]
    PayloadTooLong,
    /// RFC 4443 2.4(e) forbids an ICMPv6 error in reply to this packet (it is an ICMPv6 error
    /// itself, or its source is not a unicast address).
    #[error("no ICMPv6 error may be sent for this packet")]
    ErrorSuppressed,
}
