//! Why the forwarder refused a request: one variant per refusal, so the IKE daemon (and tests)
//! can tell them apart without reading the text. Each travels over the SA channel (serde) and
//! prints as the one line an operator reads in the logs.

use std::fmt;
use std::net::SocketAddrV4;

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

use crate::message::Direction;
use crate::types::{KeyError, PeerId, Spi};

/// Why a request was refused. The forwarder keeps running and its SAs stay as they were.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ControlError {
    /// A request other than `Configure` came first.
    #[error("not configured yet: send Configure first")]
    NotConfigured,
    /// A second `Configure`.
    #[error("already configured")]
    AlreadyConfigured,
    /// `Shutdown` was handled; nothing more is.
    #[error("the forwarder is shutting down")]
    ShuttingDown,
    /// The interface's TUN device name is empty or longer than IFNAMSIZ - 1.
    #[error("tun_name {0:?} must be 1 to 15 bytes long")]
    BadTunName(String),
    /// The interface's MTU is below IPv6's minimum or above what fits a datagram.
    #[error("mtu {mtu} out of range: IPv6 needs at least 1280, at most {max}")]
    BadMtu {
        /// The MTU asked for.
        mtu: u32,
        /// The largest the forwarder takes.
        max: u32,
    },
    /// Neither raw ESP nor a UDP port: the interface could carry nothing.
    #[error("neither raw_esp nor a udp_port: the forwarder could not carry anything")]
    NoOuterSocket,
    /// An SPI of the pair is 0.
    #[error("spi_{} must not be 0 (reserved, RFC 4303)", half(*.0))]
    ZeroSpi(Direction),
    /// The inbound SPI names an installed pair already.
    #[error("inbound SPI {0} is already installed")]
    SpiInUse(Spi),
    /// A key of the pair does not fit its algorithm.
    #[error("key_{}: {error}", half(*.direction))]
    BadKey {
        /// Which key.
        direction: Direction,
        /// What is wrong with it.
        error: KeyError,
    },
    /// The two keys of the pair use different algorithms.
    #[error("key_in and key_out must use the same algorithm")]
    MixedAlgorithms,
    /// The pair has no remote traffic selector.
    #[error("remote_ts must name at least one prefix")]
    NoRemoteTs,
    /// The replay window asked for is larger than the forwarder keeps.
    #[error("replay_window {window} exceeds the largest window, {max}")]
    ReplayWindowTooLarge {
        /// The window asked for.
        window: u32,
        /// The largest window.
        max: u32,
    },
    /// A remote selector overlaps one of another peer's pairs: one peer would receive the
    /// other's traffic.
    #[error("remote_ts {remote_ts} overlaps {theirs} of {peer} (SPI {spi})")]
    SelectorOverlap {
        /// The selector asked for.
        remote_ts: Ipv6Net,
        /// The installed selector it overlaps.
        theirs: Ipv6Net,
        /// Whose that is.
        peer: PeerId,
        /// Of which pair.
        spi: Spi,
    },
    /// `AllowPeer` granted a prefix outside the interface's peer pool.
    #[error("AllowPeer {peer}: {prefix} lies outside the peer pool {pool}")]
    GrantOutsidePool {
        /// The peer.
        peer: PeerId,
        /// The prefix asked for.
        prefix: Ipv6Net,
        /// The pool.
        pool: Ipv6Net,
    },
    /// An `Install` whose remote selector lies outside the interface's peer pool.
    #[error("remote_ts {remote_ts} of {peer} lies outside the peer pool {pool}")]
    OutsidePool {
        /// The peer.
        peer: PeerId,
        /// The selector asked for.
        remote_ts: Ipv6Net,
        /// The pool.
        pool: Ipv6Net,
    },
    /// An `Install` whose remote selector lies outside what `AllowPeer` granted the peer.
    #[error("remote_ts {remote_ts} of {peer} lies outside its grant")]
    OutsideGrant {
        /// The peer.
        peer: PeerId,
        /// The selector asked for.
        remote_ts: Ipv6Net,
    },
    /// With a peer pool, an `Install` for a peer that was granted nothing.
    #[error("{0} has no grant (AllowPeer must come before its first Install)")]
    NoGrant(PeerId),
    /// `Delete` of an SPI that names no pair.
    #[error("no SA with inbound SPI {0}")]
    UnknownSpi(Spi),
    /// `UpdateEndpoint` for a peer without pairs.
    #[error("no SA installed for {0}")]
    UnknownPeer(PeerId),
    /// An endpoint the interface cannot serve.
    #[error("{0}")]
    BadEndpoint(EndpointError),
    /// `SendIke` from a port that is not the forwarder's UDP port.
    #[error("SendIke from port {port}: the forwarder's UDP port is {udp_port}")]
    SendIkePort {
        /// The source port asked for.
        port: u16,
        /// The forwarder's port (0: none).
        udp_port: u16,
    },
    /// `SendIke` with nothing to send.
    #[error("SendIke with an empty message")]
    EmptyIke,
    /// A frame that could not be read as a request (its id is unknown: the reply's id is 0).
    #[error("{0}")]
    BadFrame(String),
    /// The operating system refused what the request needed (TUN device, route, socket).
    #[error(transparent)]
    Platform(#[from] PlatformError),
}

/// The name suffix of one half of a pair: `in` or `out` (as in `spi_in`, `key_out`).
fn half(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => "in",
        Direction::Outbound => "out",
    }
}

/// Why an endpoint does not fit the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum EndpointError {
    /// Raw ESP, but the interface has no raw ESP socket.
    #[error("raw ESP endpoint, but the interface has raw_esp = false")]
    RawEspDisabled,
    /// ESP in UDP from another port than the forwarder's.
    #[error("UDP endpoint with local port {port}, but the forwarder's UDP port is {udp_port}")]
    WrongUdpPort {
        /// The endpoint's local port.
        port: u16,
        /// The forwarder's port.
        udp_port: u16,
    },
    /// ESP in UDP with port 0 on either side.
    #[error("UDP encapsulation needs non-zero ports")]
    ZeroUdpPort,
}

/// What the system refused: the operation and the OS's own words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct PlatformError {
    /// What the forwarder was doing.
    pub operation: PlatformOp,
    /// The error's text (for an OS error, as `io::Error` prints it).
    pub message: String,
    /// The OS error number, when there was one (e.g. `EBUSY` for a TUN device still held).
    pub errno: Option<i32>,
}

impl PlatformError {
    /// An OS error during `operation`.
    pub fn io(operation: PlatformOp, error: &std::io::Error) -> Self {
        let mut message = error.to_string();
        if error.kind() == std::io::ErrorKind::PermissionDenied
            && let Some(capability) = operation.capability()
        {
            message = format!(
                "{message}: this needs {capability} (run as root, or grant it as \
examples/systemd does with AmbientCapabilities)"
            );
        }
        PlatformError {
            operation,
            message,
            errno: error.raw_os_error(),
        }
    }

    /// A refusal that is not an OS error.
    pub fn other(operation: PlatformOp, message: impl Into<String>) -> Self {
        PlatformError {
            operation,
            message: message.into(),
            errno: None,
        }
    }
}

/// What the forwarder asked of the system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlatformOp {
    /// Setting the data plane up (state checks before any system call).
    Configure,
    /// Creating the TUN device with this name.
    CreateTun(String),
    /// Looking up the TUN device's interface index.
    TunIndex(String),
    /// Putting an address on the device.
    AddAddress {
        /// The address.
        address: Ipv6Net,
        /// The device.
        device: String,
    },
    /// Setting the device up.
    BringUp(String),
    /// Opening the UDP socket on this port.
    UdpSocket(u16),
    /// Opening the raw ESP socket.
    RawEspSocket,
    /// Starting a data thread.
    StartThread(String),
    /// Routing a prefix into the device.
    AddRoute(Ipv6Net),
    /// Removing that route.
    RemoveRoute(Ipv6Net),
    /// Sending an IKE message from the UDP socket.
    SendIke(SocketAddrV4),
}

impl PlatformOp {
    /// The capability the operation needs, told when the system refuses it for lack of one.
    pub fn capability(&self) -> Option<&'static str> {
        match self {
            PlatformOp::CreateTun(_)
            | PlatformOp::AddAddress { .. }
            | PlatformOp::BringUp(_)
            | PlatformOp::AddRoute(_)
            | PlatformOp::RemoveRoute(_) => Some("CAP_NET_ADMIN"),
            PlatformOp::RawEspSocket => Some("CAP_NET_RAW"),
            PlatformOp::UdpSocket(port) if *port < 1024 => Some("CAP_NET_BIND_SERVICE"),
            _ => None,
        }
    }
}

impl fmt::Display for PlatformOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlatformOp::Configure => write!(f, "configuring the data plane"),
            PlatformOp::CreateTun(name) => write!(f, "creating TUN device {name}"),
            PlatformOp::TunIndex(name) => write!(f, "TUN device {name}"),
            PlatformOp::AddAddress { address, device } => {
                write!(f, "address {address} on {device}")
            }
            PlatformOp::BringUp(name) => write!(f, "bringing {name} up"),
            PlatformOp::UdpSocket(port) => write!(f, "UDP port {port}"),
            PlatformOp::RawEspSocket => write!(f, "raw ESP socket"),
            PlatformOp::StartThread(name) => write!(f, "starting thread {name}"),
            PlatformOp::AddRoute(net) => write!(f, "route {net}"),
            PlatformOp::RemoveRoute(net) => write!(f, "removing route {net}"),
            PlatformOp::SendIke(remote) => write!(f, "sending IKE to {remote}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_frame, encode_frame};
    use crate::types::AeadAlg;

    #[test]
    fn a_refusal_for_lack_of_a_capability_names_it() {
        let denied = std::io::Error::from_raw_os_error(EPERM);
        let tun = PlatformError::io(PlatformOp::CreateTun("hometun0".into()), &denied);
        assert!(tun.message.ends_with("this needs CAP_NET_ADMIN (run as root, or grant it as examples/systemd does with AmbientCapabilities)"), "{}", tun.message);
        let raw = PlatformError::io(PlatformOp::RawEspSocket, &denied);
        assert!(
            raw.message.contains("this needs CAP_NET_RAW"),
            "{}",
            raw.message
        );
        let low = PlatformError::io(PlatformOp::UdpSocket(500), &denied);
        assert!(
            low.message.contains("CAP_NET_BIND_SERVICE"),
            "{}",
            low.message
        );
        // Another error, or an operation that needs nothing: no hint.
        let busy = std::io::Error::from_raw_os_error(16);
        let tun = PlatformError::io(PlatformOp::CreateTun("hometun0".into()), &busy);
        assert!(!tun.message.contains("needs"), "{}", tun.message);
        let high = PlatformError::io(PlatformOp::UdpSocket(4500), &denied);
        assert!(!high.message.contains("needs"), "{}", high.message);
    }

    /// EPERM on Linux, as the kernel answers a missing capability.
    const EPERM: i32 = 1;

    #[test]
    fn messages_name_what_was_refused() {
        let cases = [
            (
                ControlError::ZeroSpi(Direction::Outbound),
                "spi_out must not be 0 (reserved, RFC 4303)",
            ),
            (
                ControlError::BadKey {
                    direction: Direction::Inbound,
                    error: KeyError::WrongLength {
                        alg: AeadAlg::AesGcm128,
                        expected: 20,
                        got: 14,
                    },
                },
                "key_in: aes128gcm16 needs 20 bytes of key material (key + 4-byte salt), got 14",
            ),
            (
                ControlError::SelectorOverlap {
                    remote_ts: "2001:db8:1::/48".parse().unwrap(),
                    theirs: "2001:db8:1::/64".parse().unwrap(),
                    peer: PeerId(1),
                    spi: Spi(0x100),
                },
                "remote_ts 2001:db8:1::/48 overlaps 2001:db8:1::/64 of peer1 (SPI 00000100)",
            ),
            (
                ControlError::Platform(PlatformError::io(
                    PlatformOp::CreateTun("hometun0".into()),
                    // EBUSY on Linux.
                    &std::io::Error::from_raw_os_error(16),
                )),
                "creating TUN device hometun0: Device or resource busy (os error 16)",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn every_refusal_travels_over_the_channel() {
        let errors = [
            ControlError::NoGrant(PeerId(3)),
            ControlError::OutsideGrant {
                peer: PeerId(3),
                remote_ts: "2001:db8:100:2::/64".parse().unwrap(),
            },
            ControlError::BadEndpoint(EndpointError::WrongUdpPort {
                port: 4501,
                udp_port: 4500,
            }),
            ControlError::Platform(PlatformError::other(
                PlatformOp::AddAddress {
                    address: "fe80::1/64".parse().unwrap(),
                    device: "t0".into(),
                },
                "refused",
            )),
        ];
        for error in errors {
            let frame = encode_frame(&error).unwrap();
            let back: ControlError = decode_frame(&frame[4..]).unwrap();
            assert_eq!(back, error);
        }
    }
}
