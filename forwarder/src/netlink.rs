//! The few rtnetlink requests the forwarder makes: IPv6 routes into the TUN device and IPv6
//! addresses on it. Each request is one message, answered by the kernel's ACK (or an errno), on
//! a `NETLINK_ROUTE` socket each thread keeps (a server adds and removes a route for every home
//! that comes and goes; opening a socket for each cost two more system calls). Per thread, not
//! per process: a socket belongs to the network namespace of the thread that opened it.

use std::cell::RefCell;
use std::io;
use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicU32, Ordering};

pub use hometun_netlink::interface_index;
use hometun_netlink::{
    IFA_ADDRESS, IFA_F_NODAD, IFA_FLAGS, IFA_LOCAL, Message, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REPLACE, RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, RT_TABLE_MAIN, RTA_DST, RTA_OIF, RTA_PRIORITY,
    RTM_DELROUTE, RTM_NEWADDR, RTM_NEWROUTE, RTN_UNICAST, RouteSocket,
};
use ipnet::Ipv6Net;

thread_local! {
    /// This thread's route socket, opened on first use.
    static ROUTE_SOCKET: RefCell<Option<RouteSocket>> = const { RefCell::new(None) };
}
/// Sequence numbers of the requests (answers are matched to them).
static SEQUENCE: AtomicU32 = AtomicU32::new(1);

/// Sends one request on this thread's socket.
fn send(message: Message) -> io::Result<()> {
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    ROUTE_SOCKET.with(|socket| {
        let mut socket = socket.borrow_mut();
        if socket.is_none() {
            *socket = Some(RouteSocket::open()?);
        }
        let result = match socket.as_ref() {
            Some(socket) => socket.request(message, seq),
            None => Err(io::Error::other("netlink: no socket")),
        };
        if result.as_ref().is_err_and(|e| e.raw_os_error().is_none()) {
            // Lost track of the socket's replies: start afresh next time.
            *socket = None;
        }
        result
    })
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
    let message = Message::new(
        RTM_NEWROUTE,
        NLM_F_CREATE | NLM_F_REPLACE,
        &route_body(net, route.protocol),
    )
    .attr(RTA_DST, &net.network().octets())
    .attr(RTA_OIF, &ifindex.to_ne_bytes())
    .attr(RTA_PRIORITY, &route.metric.to_ne_bytes());
    send(message)
}

/// Removes the route for `net` through the interface.
pub fn remove_route(net: Ipv6Net, ifindex: u32, route: RouteAttributes) -> io::Result<()> {
    let net = net.trunc();
    let message = Message::new(RTM_DELROUTE, 0, &route_body(net, route.protocol))
        .attr(RTA_DST, &net.network().octets())
        .attr(RTA_OIF, &ifindex.to_ne_bytes())
        .attr(RTA_PRIORITY, &route.metric.to_ne_bytes());
    send(message)
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
    let message = Message::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &body)
        .attr(IFA_LOCAL, &octets)
        .attr(IFA_ADDRESS, &octets)
        .attr(IFA_FLAGS, &IFA_F_NODAD.to_ne_bytes());
    send(message)
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
            .attr(RTA_OIF, &7u32.to_ne_bytes())
            .finish(1);
        // header 16 + rtmsg 12 + RTA_DST (4 + 16) + RTA_OIF (4 + 4)
        assert_eq!(message.len(), 16 + 12 + 20 + 8);
        assert_eq!(message[16], libc::AF_INET6 as u8);
        assert_eq!(message[17], 64);
        assert_eq!(message[16 + 5], 57, "rtm_protocol");
        assert_eq!(&message[28..30], &20u16.to_ne_bytes());
        assert_eq!(&message[32..34], &[0x20, 0x01]);
        assert_eq!(&message[52..56], &7u32.to_ne_bytes());
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
