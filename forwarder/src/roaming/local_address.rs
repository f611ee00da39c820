//! The client's view of its own outer address: an rtnetlink socket subscribed to IPv4 address
//! and route changes (RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE; the kernel pushes
//! them, nothing is polled), and the source address the kernel would choose towards a peer
//! (the route's preferred source). Parsing is separate from the socket and tested on fixed
//! bytes.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const NLMSG_HDR_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFADDRMSG_LEN: usize = 8;
/// Multicast groups (linux/rtnetlink.h, the legacy bit masks).
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const AF_INET: u8 = 2;

/// A change the kernel announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// An IPv4 address appeared (or changed, e.g. a secondary promoted to primary).
    AddressAdded {
        /// The interface.
        ifindex: u32,
        /// The address.
        address: Ipv4Addr,
    },
    /// An IPv4 address went away.
    AddressRemoved {
        /// The interface.
        ifindex: u32,
        /// The address.
        address: Ipv4Addr,
    },
    /// An IPv4 route was added or removed.
    RouteChanged,
    /// The kernel dropped notifications (the socket buffer overran): anything may have changed.
    Overrun,
}

impl LinkEvent {
    /// A name for the log.
    pub fn describe(&self) -> String {
        match self {
            LinkEvent::AddressAdded { ifindex, address } => {
                format!("RTM_NEWADDR {address} on ifindex {ifindex}")
            }
            LinkEvent::AddressRemoved { ifindex, address } => {
                format!("RTM_DELADDR {address} on ifindex {ifindex}")
            }
            LinkEvent::RouteChanged => "route change".into(),
            LinkEvent::Overrun => "netlink overrun".into(),
        }
    }
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The IPv4 address of an address message's body (ifaddrmsg + attributes): IFA_LOCAL, else
/// IFA_ADDRESS.
fn address_of(body: &[u8]) -> Option<(u32, Ipv4Addr)> {
    if *body.first()? != AF_INET {
        return None;
    }
    let ifindex = u32_at(body, 4)?;
    let mut attributes = body.get(IFADDRMSG_LEN..)?;
    let (mut local, mut address) = (None, None);
    while attributes.len() >= 4 {
        let len = usize::from(u16_at(attributes, 0)?);
        let kind = u16_at(attributes, 2)?;
        if len < 4 || len > attributes.len() {
            break;
        }
        let value = &attributes[4..len];
        if let Ok(octets) = <[u8; 4]>::try_from(value) {
            match kind {
                IFA_LOCAL => local = Some(Ipv4Addr::from(octets)),
                IFA_ADDRESS => address = Some(Ipv4Addr::from(octets)),
                _ => {}
            }
        }
        attributes = attributes.get(align4(len)..).unwrap_or(&[]);
    }
    Some((ifindex, local.or(address)?))
}

/// Reads the messages of one netlink datagram. Unknown or foreign-family messages are skipped;
/// a malformed tail ends the walk.
pub fn parse_events(mut datagram: &[u8]) -> Vec<LinkEvent> {
    let mut events = Vec::new();
    while datagram.len() >= NLMSG_HDR_LEN {
        let (Some(len), Some(kind)) = (u32_at(datagram, 0), u16_at(datagram, 4)) else {
            break;
        };
        let len = len as usize;
        if len < NLMSG_HDR_LEN || len > datagram.len() {
            break;
        }
        let body = &datagram[NLMSG_HDR_LEN..len];
        match kind {
            RTM_NEWADDR | RTM_DELADDR => {
                if let Some((ifindex, address)) = address_of(body) {
                    events.push(if kind == RTM_NEWADDR {
                        LinkEvent::AddressAdded { ifindex, address }
                    } else {
                        LinkEvent::AddressRemoved { ifindex, address }
                    });
                }
            }
            RTM_NEWROUTE | RTM_DELROUTE if body.first() == Some(&AF_INET) => {
                events.push(LinkEvent::RouteChanged);
            }
            NLMSG_OVERRUN => events.push(LinkEvent::Overrun),
            NLMSG_DONE | NLMSG_ERROR => {}
            _ => {}
        }
        datagram = datagram.get(align4(len)..).unwrap_or(&[]);
    }
    events
}

/// An rtnetlink socket subscribed to IPv4 address and route changes, non-blocking.
#[derive(Debug)]
pub struct AddressWatcher {
    socket: OwnedFd,
    buffer: Vec<u8>,
}

impl AddressWatcher {
    /// Opens the socket and joins the groups.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh socket we own from here on.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data.
        let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        address.nl_family = libc::AF_NETLINK as u16;
        address.nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE;
        // SAFETY: address is valid for its length.
        let bound = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&address as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if bound < 0 {
            return Err(io::Error::last_os_error());
        }
        // A burst of route changes (a link going down) must not overrun us.
        crate::sockets::set_buffers(socket.as_raw_fd(), 1 << 20);
        Ok(AddressWatcher {
            socket,
            buffer: vec![0u8; 64 * 1024],
        })
    }

    /// The socket, to wait on with poll(2).
    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Every event queued now (never blocks).
    pub fn drain(&mut self) -> Vec<LinkEvent> {
        let mut events = Vec::new();
        loop {
            // SAFETY: the buffer is valid for its length.
            let got = unsafe {
                libc::recv(
                    self.socket.as_raw_fd(),
                    self.buffer.as_mut_ptr().cast(),
                    self.buffer.len(),
                    0,
                )
            };
            if got < 0 {
                let error = io::Error::last_os_error();
                match error.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // Notifications were lost: tell the caller to look afresh.
                    Some(libc::ENOBUFS) => {
                        events.push(LinkEvent::Overrun);
                        continue;
                    }
                    _ => return events,
                }
            }
            if got == 0 {
                return events;
            }
            events.extend(parse_events(&self.buffer[..got as usize]));
        }
    }
}

/// The source address the kernel chooses now for packets to `remote` (the route's preferred
/// source, or the primary address of the outgoing interface): a UDP socket's connect(2) does the
/// route lookup without sending anything.
pub fn source_towards(remote: Ipv4Addr) -> io::Result<Ipv4Addr> {
    let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
    socket.connect(SocketAddrV4::new(remote, 4500))?;
    match socket.local_addr()? {
        std::net::SocketAddr::V4(local) if !local.ip().is_unspecified() => Ok(*local.ip()),
        other => Err(io::Error::other(format!(
            "no IPv4 source towards {remote}: {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ip monitor` would print: "Deleted 2: h0 inet 198.51.100.2/24 scope global h0" — the
    /// RTM_DELADDR message the kernel sends for it (native endian, little here), with
    /// IFA_ADDRESS, IFA_LOCAL, IFA_LABEL and IFA_CACHEINFO attributes.
    fn deladdr() -> Vec<u8> {
        let mut m = Vec::new();
        let body_len = 8 + 8 + 8 + 8 + 36;
        m.extend_from_slice(&((16 + body_len) as u32).to_ne_bytes());
        m.extend_from_slice(&RTM_DELADDR.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        // ifaddrmsg: AF_INET, /24, flags 0x80 (permanent), scope 0, ifindex 2
        m.extend_from_slice(&[2, 24, 0x80, 0]);
        m.extend_from_slice(&2u32.to_ne_bytes());
        for (kind, value) in [
            (IFA_ADDRESS, [198, 51, 100, 2]),
            (IFA_LOCAL, [198, 51, 100, 2]),
        ] {
            m.extend_from_slice(&8u16.to_ne_bytes());
            m.extend_from_slice(&kind.to_ne_bytes());
            m.extend_from_slice(&value);
        }
        // IFA_LABEL "h0\0" (7 bytes, padded to 8)
        m.extend_from_slice(&7u16.to_ne_bytes());
        m.extend_from_slice(&3u16.to_ne_bytes());
        m.extend_from_slice(b"h0\0\0");
        // IFA_CACHEINFO, 16 bytes of zeros plus header: 20, padded — keep it 36 total with a
        // 32-byte unknown attribute to exercise skipping.
        m.extend_from_slice(&36u16.to_ne_bytes());
        m.extend_from_slice(&6u16.to_ne_bytes());
        m.extend_from_slice(&[0u8; 32]);
        m
    }

    #[test]
    fn address_messages_name_the_address() {
        let message = deladdr();
        assert_eq!(
            parse_events(&message),
            vec![LinkEvent::AddressRemoved {
                ifindex: 2,
                address: Ipv4Addr::new(198, 51, 100, 2)
            }]
        );
        let mut added = message.clone();
        added[4..6].copy_from_slice(&RTM_NEWADDR.to_ne_bytes());
        // Two messages in one datagram.
        let mut both = added.clone();
        both.extend_from_slice(&message);
        assert_eq!(
            parse_events(&both),
            vec![
                LinkEvent::AddressAdded {
                    ifindex: 2,
                    address: Ipv4Addr::new(198, 51, 100, 2)
                },
                LinkEvent::AddressRemoved {
                    ifindex: 2,
                    address: Ipv4Addr::new(198, 51, 100, 2)
                }
            ]
        );
    }

    #[test]
    fn ipv6_addresses_and_other_messages_are_skipped() {
        let mut v6 = deladdr();
        v6[16] = 10; // AF_INET6
        assert!(parse_events(&v6).is_empty());
        let mut route = vec![0u8; 16 + 12];
        route[0..4].copy_from_slice(&28u32.to_ne_bytes());
        route[4..6].copy_from_slice(&RTM_NEWROUTE.to_ne_bytes());
        route[16] = AF_INET;
        assert_eq!(parse_events(&route), vec![LinkEvent::RouteChanged]);
        route[16] = 10;
        assert!(parse_events(&route).is_empty());
        let mut link = route.clone();
        link[4..6].copy_from_slice(&16u16.to_ne_bytes()); // RTM_NEWLINK
        assert!(parse_events(&link).is_empty());
    }

    #[test]
    fn truncated_or_lying_lengths_end_the_walk_without_panic() {
        let message = deladdr();
        for cut in 0..message.len() {
            let _ = parse_events(&message[..cut]);
        }
        let mut lying = message.clone();
        lying[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(parse_events(&lying).is_empty());
        let mut short_attr = message.clone();
        short_attr[24..26].copy_from_slice(&2u16.to_ne_bytes());
        assert!(parse_events(&short_attr).is_empty(), "no address found");
    }

    #[test]
    fn loopback_has_a_source() {
        assert_eq!(
            source_towards(Ipv4Addr::LOCALHOST).unwrap(),
            Ipv4Addr::LOCALHOST
        );
    }
}
