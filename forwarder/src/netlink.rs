//! The few rtnetlink requests the forwarder makes: IPv6 routes into the TUN device and IPv6
//! addresses on it. Each request is one message on a fresh `NETLINK_ROUTE` socket, answered by
//! the kernel's ACK (or an errno).

use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use ipnet::Ipv6Net;

const NLMSG_ERROR: u16 = 2;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_PRIORITY: u16 = 6;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const IFA_F_NODAD: u32 = 0x02;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;

/// Builds one netlink message: header, a fixed body, then attributes.
struct Message {
    bytes: Vec<u8>,
}

impl Message {
    fn new(kind: u16, flags: u16, body: &[u8]) -> Self {
        let mut bytes = vec![0u8; 16];
        bytes[4..6].copy_from_slice(&kind.to_ne_bytes());
        bytes[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        bytes[8..12].copy_from_slice(&1u32.to_ne_bytes());
        bytes.extend_from_slice(body);
        Message { bytes }
    }

    fn attr(mut self, kind: u16, value: &[u8]) -> Self {
        let len = 4 + value.len();
        self.bytes.extend_from_slice(&(len as u16).to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(value);
        while self.bytes.len() % 4 != 0 {
            self.bytes.push(0);
        }
        self
    }

    fn send(mut self) -> io::Result<()> {
        let len = self.bytes.len() as u32;
        self.bytes[0..4].copy_from_slice(&len.to_ne_bytes());
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh socket we own.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; zero means "the kernel".
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: the buffer and address are valid for the given lengths.
        let sent = unsafe {
            libc::sendto(
                socket.as_raw_fd(),
                self.bytes.as_ptr().cast(),
                self.bytes.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut reply = [0u8; 4096];
        // SAFETY: the buffer is valid for its length.
        let got = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                reply.as_mut_ptr().cast(),
                reply.len(),
                0,
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = got as usize;
        if got >= 20 && u16::from_ne_bytes([reply[4], reply[5]]) == NLMSG_ERROR {
            let errno = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
            if errno == 0 {
                return Ok(());
            }
            return Err(io::Error::from_raw_os_error(-errno));
        }
        Err(io::Error::other("netlink: no ACK from the kernel"))
    }
}

/// The index of a network interface.
pub fn interface_index(name: &str) -> io::Result<u32> {
    let name = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: name is a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(index)
}

fn route_body(net: Ipv6Net) -> [u8; 12] {
    // struct rtmsg
    [
        libc::AF_INET6 as u8,
        net.prefix_len(),
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_STATIC,
        RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
        0,
        0,
        0,
        0,
    ]
}

/// Routes `net` into the interface with this index (replacing a route to the same prefix and
/// metric, so a restart after a crash does not fail on a leftover).
pub fn add_route(net: Ipv6Net, ifindex: u32, metric: u32) -> io::Result<()> {
    let net = net.trunc();
    Message::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &route_body(net))
        .attr(RTA_DST, &net.network().octets())
        .attr(RTA_OIF, &ifindex.to_ne_bytes())
        .attr(RTA_PRIORITY, &metric.to_ne_bytes())
        .send()
}

/// Removes the route for `net` through the interface.
pub fn remove_route(net: Ipv6Net, ifindex: u32, metric: u32) -> io::Result<()> {
    let net = net.trunc();
    Message::new(RTM_DELROUTE, 0, &route_body(net))
        .attr(RTA_DST, &net.network().octets())
        .attr(RTA_OIF, &ifindex.to_ne_bytes())
        .attr(RTA_PRIORITY, &metric.to_ne_bytes())
        .send()
}

/// Puts an IPv6 address on the interface, without duplicate address detection (a point-to-point
/// tunnel has nobody to collide with, and DAD would keep the address unusable for a second).
pub fn add_address(address: Ipv6Net, ifindex: u32) -> io::Result<()> {
    let link_local = address.addr().segments()[0] & 0xffc0 == 0xfe80;
    let scope = if link_local {
        RT_SCOPE_LINK
    } else {
        RT_SCOPE_UNIVERSE
    };
    // struct ifaddrmsg
    let mut body = vec![
        libc::AF_INET6 as u8,
        address.prefix_len(),
        IFA_F_NODAD as u8,
        scope,
    ];
    body.extend_from_slice(&ifindex.to_ne_bytes());
    let octets = address.addr().octets();
    Message::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &body)
        .attr(IFA_LOCAL, &octets)
        .attr(IFA_ADDRESS, &octets)
        .attr(IFA_FLAGS, &IFA_F_NODAD.to_ne_bytes())
        .send()
}

/// Whether an address is link-local (fe80::/10).
pub fn is_link_local(address: Ipv6Addr) -> bool {
    address.segments()[0] & 0xffc0 == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_message_layout() {
        let net: Ipv6Net = "2001:db8:1::/64".parse().unwrap();
        let message = Message::new(RTM_NEWROUTE, NLM_F_CREATE, &route_body(net))
            .attr(RTA_DST, &net.network().octets())
            .attr(RTA_OIF, &7u32.to_ne_bytes());
        // header 16 + rtmsg 12 + RTA_DST (4 + 16) + RTA_OIF (4 + 4)
        assert_eq!(message.bytes.len(), 16 + 12 + 20 + 8);
        assert_eq!(message.bytes[16], libc::AF_INET6 as u8);
        assert_eq!(message.bytes[17], 64);
        assert_eq!(&message.bytes[28..30], &20u16.to_ne_bytes());
        assert_eq!(&message.bytes[32..34], &[0x20, 0x01]);
        assert_eq!(&message.bytes[52..56], &7u32.to_ne_bytes());
    }

    #[test]
    fn link_local_is_fe80_slash_10() {
        assert!(is_link_local("fe80::1".parse().unwrap()));
        assert!(is_link_local("febf::1".parse().unwrap()));
        assert!(!is_link_local("fec0::1".parse().unwrap()));
        assert!(!is_link_local("2001:db8::1".parse().unwrap()));
    }
}
