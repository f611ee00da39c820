//! What the sans-IO protocol code exchanges with its driver: time and randomness in, IKE
//! messages and [`Output`]s out (docs/ARCHITECTURE.md, "The sans-IO contract").

use std::net::SocketAddrV4;
use std::time::{Instant, SystemTime};

/// Randomness for the protocol code: the driver passes the OS generator, tests a seeded one.
pub trait Random {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

/// The time, as the driver read it: monotonic for timers, wall clock for certificate validity.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// Monotonic time, for timers.
    pub mono: Instant,
    /// Wall clock, for certificate validity.
    pub wall: SystemTime,
}

/// An IKE message to send. When `local.port()` is the NAT-T port (4500) the driver sends it
/// through the forwarder (`Request::SendIke`, which adds the non-ESP marker); otherwise from
/// its own UDP socket bound to that port (500).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Our address and port to send from.
    pub local: SocketAddrV4,
    /// The peer's address and port.
    pub remote: SocketAddrV4,
    /// The IKE message, without the non-ESP marker.
    pub data: Vec<u8>,
}

/// What the endpoint asks of the world besides sending IKE messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A request for the forwarder: Install, Delete, UpdateEndpoint.
    Forwarder(hometun_control::Request),
    /// An IKE SA with a peer came up (one log line at info).
    PeerUp {
        /// It replaced a working IKE SA with the same peer (re-authentication) rather than
        /// bringing the peer up.
        reauthenticated: bool,
        /// The peer.
        peer: hometun_control::PeerId,
        /// Its identity.
        name: String,
        /// Its address and port.
        remote: SocketAddrV4,
    },
    /// An IKE SA went away: deleted, dead peer, replaced by INITIAL_CONTACT (one line at info).
    PeerDown {
        /// The peer.
        peer: hometun_control::PeerId,
        /// Its identity.
        name: String,
        /// Why.
        reason: String,
    },
    /// A peer was refused (AUTHENTICATION_FAILED, TS_UNACCEPTABLE, NO_PROPOSAL_CHOSEN...):
    /// one line at warn naming the remote address, the identity if known, and why.
    Refused {
        /// The peer's address and port.
        remote: SocketAddrV4,
        /// Its identity, if it got that far.
        name: Option<String>,
        /// Why, in one line.
        reason: String,
    },
    /// Any other protocol event worth a log line, at its level.
    Notice(crate::notice::Notice),
    /// A CHILD SA was rekeyed (one line at info).
    Rekeyed {
        /// The peer.
        peer: hometun_control::PeerId,
        /// Its identity.
        name: String,
        /// Inbound SPI of the pair that is replaced.
        old_spi_in: hometun_control::Spi,
        /// Inbound SPI of its successor.
        new_spi_in: hometun_control::Spi,
    },
}

/// A hostile peer built from the real state machine (simulation tests, fuzz targets): sees and
/// changes the inner payloads of every protected message before it is sealed.
#[cfg(feature = "test-util")]
pub trait Tamper: Send {
    /// Called with the header and inner payloads of each SK-protected message we send.
    fn outgoing(&mut self, header: &crate::wire::Header, payloads: &mut Vec<crate::wire::Payload>);

    /// Called after [`Tamper::outgoing`] with the same message's header, which it may change
    /// (message ID, flags, exchange type): the message is sealed with the changed header, so
    /// the peer sees an authentic message that our state machine never meant to send.
    fn header(&mut self, _header: &mut crate::wire::Header) {}

    /// Called with the header and inner payloads of each SK-protected message of an
    /// established IKE SA that opened (what the peer sent us), so that a test peer can answer
    /// with what it saw (a COOKIE2 to echo, SPIs to name).
    fn incoming(&mut self, _header: &crate::wire::Header, _payloads: &[crate::wire::Payload]) {}
}
