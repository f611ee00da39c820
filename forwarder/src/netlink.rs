//! The few rtnetlink requests the forwarder makes: IPv6 routes into the TUN device and IPv6
//! addresses on it. Each request is one message, answered by the kernel's ACK (or an errno), on
//! a `NETLINK_ROUTE` socket each thread keeps (a server adds and removes a route for every home
//! that comes and goes; opening a socket for each cost two more system calls). Per thread, not
//! per process: a socket belongs to the network namespace of the thread that opened it.

use std::cell::RefCell;
use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

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
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        self.bytes[8..12].copy_from_slice(&seq.to_ne_bytes());
        ROUTE_SOCKET.with(|socket| {
            let mut socket = socket.borrow_mut();
            if socket.is_none() {
                *socket = Some(open_socket()?);
            }
            let result = match socket.as_ref() {
                Some(fd) => exchange(fd, &self.bytes, seq),
                None => Err(io::Error::other("netlink: no socket")),
            };
            if result.as_ref().is_err_and(|e| e.raw_os_error().is_none()) {
                // Lost track of the socket's replies: start afresh next time.
                *socket = None;
            }
            result
        })
    }
}

thread_local! {
    /// This thread's route socket, opened on first use.
    static ROUTE_SOCKET: RefCell<Option<OwnedFd>> = const { RefCell::new(None) };
}
/// Sequence numbers of the requests (answers are matched to them).
static SEQUENCE: AtomicU32 = AtomicU32::new(1);

fn open_socket() -> io::Result<OwnedFd> {
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
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends one request and reads until the kernel's answer to it (sequence `seq`): Ok on an ACK,
/// the errno it carries otherwise. Answers to earlier requests still queued are skipped.
fn exchange(socket: &OwnedFd, message: &[u8], seq: u32) -> io::Result<()> {
    // SAFETY: sockaddr_nl is plain data; zero means "the kernel".
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: the buffer and address are valid for the given lengths.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut reply = [0u8; 4096];
    for _ in 0..16 {
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
        if got < 20 || u16::from_ne_bytes([reply[4], reply[5]]) != NLMSG_ERROR {
            break;
        }
        if u32::from_ne_bytes([reply[8], reply[9], reply[10], reply[11]]) != seq {
            continue;
        }
        let errno = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
        if errno == 0 {
            return Ok(());
        }
        return Err(io::Error::from_raw_os_error(-errno));
    }
    Err(io::Error::other("netlink: no ACK from the kernel"))
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

/// What tells our routes apart from others to the same prefix: the metric, and the routing
/// protocol number by which a BGP daemon finds them to export (README.md, "Failover and BGP").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteAttributes {
    /// The route's metric (`RTA_PRIORITY`).
    pub metric: u32,
    /// The route's protocol (`rtm_protocol`); a removal must name the same.
    pub protocol: u8,
}

fn route_body(net: Ipv6Net, protocol: u8) -> [u8; 12] {
    // struct rtmsg
    [
        libc::AF_INET6 as u8,
        net.prefix_len(),
        0,
        0,
        RT_TABLE_MAIN,
        protocol,
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
pub fn add_route(net: Ipv6Net, ifindex: u32, route: RouteAttributes) -> io::Result<()> {
    let net = net.trunc();
    Message::new(
        RTM_NEWROUTE,
        NLM_F_CREATE | NLM_F_REPLACE,
        &route_body(net, route.protocol),
    )
    .attr(RTA_DST, &net.network().octets())
    .attr(RTA_OIF, &ifindex.to_ne_bytes())
    .attr(RTA_PRIORITY, &route.metric.to_ne_bytes())
    .send()
}

/// Removes the route for `net` through the interface.
pub fn remove_route(net: Ipv6Net, ifindex: u32, route: RouteAttributes) -> io::Result<()> {
    let net = net.trunc();
    Message::new(RTM_DELROUTE, 0, &route_body(net, route.protocol))
        .attr(RTA_DST, &net.network().octets())
        .attr(RTA_OIF, &ifindex.to_ne_bytes())
        .attr(RTA_PRIORITY, &route.metric.to_ne_bytes())
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
        let message = Message::new(RTM_NEWROUTE, NLM_F_CREATE, &route_body(net, 57))
            .attr(RTA_DST, &net.network().octets())
            .attr(RTA_OIF, &7u32.to_ne_bytes());
        // header 16 + rtmsg 12 + RTA_DST (4 + 16) + RTA_OIF (4 + 4)
        assert_eq!(message.bytes.len(), 16 + 12 + 20 + 8);
        assert_eq!(message.bytes[16], libc::AF_INET6 as u8);
        assert_eq!(message.bytes[17], 64);
        assert_eq!(message.bytes[16 + 5], 57, "rtm_protocol");
        assert_eq!(&message.bytes[28..30], &20u16.to_ne_bytes());
        assert_eq!(&message.bytes[32..34], &[0x20, 0x01]);
        assert_eq!(&message.bytes[52..56], &7u32.to_ne_bytes());
    }

    #[test]
    fn one_socket_serves_many_requests_and_their_errors() {
        // In a network namespace of this thread's own (needs root): routes through its
        // loopback, added, replaced, removed, removed again (an errno), added again.
        let outcome = std::thread::spawn(|| {
            // SAFETY: unshare affects only this thread, which ends here.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(format!("unshare: {}", io::Error::last_os_error()));
            }
            let status = std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .map_err(|e| format!("ip: {e}"))?;
            if !status.success() {
                return Err(format!("ip link set lo up: {status}"));
            }
            let lo = interface_index("lo").map_err(|e| e.to_string())?;
            let net: Ipv6Net = "2001:db8:5::/64".parse().unwrap();
            let ours = RouteAttributes {
                metric: 1024,
                protocol: 57,
            };
            let results = [
                add_route(net, lo, ours).map_err(|e| e.raw_os_error()),
                add_route(net, lo, ours).map_err(|e| e.raw_os_error()),
                remove_route(net, lo, ours).map_err(|e| e.raw_os_error()),
                remove_route(net, lo, ours).map_err(|e| e.raw_os_error()),
                add_route(net, lo, ours).map_err(|e| e.raw_os_error()),
            ];
            // What a BGP daemon sees: the route carries our protocol number.
            let shown = std::process::Command::new("ip")
                .args(["-6", "route", "show", "2001:db8:5::/64"])
                .output()
                .map_err(|e| format!("ip: {e}"))?;
            Ok((results, String::from_utf8_lossy(&shown.stdout).into_owned()))
        })
        .join()
        .unwrap();
        let (results, shown) = match outcome {
            Ok(outcome) => outcome,
            Err(why) => {
                assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
                eprintln!("skipped: {why} (needs root)");
                return;
            }
        };
        assert_eq!(
            results,
            [Ok(()), Ok(()), Ok(()), Err(Some(libc::ESRCH)), Ok(())]
        );
        assert!(shown.contains("proto 57 metric 1024"), "{shown}");
    }

    #[test]
    fn link_local_is_fe80_slash_10() {
        assert!(is_link_local("fe80::1".parse().unwrap()));
        assert!(is_link_local("febf::1".parse().unwrap()));
        assert!(!is_link_local("fec0::1".parse().unwrap()));
        assert!(!is_link_local("2001:db8::1".parse().unwrap()));
    }
}
