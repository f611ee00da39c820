//! What the daemons change in the host's network set-up besides the tunnel (the forwarder owns
//! that): addresses on LAN interfaces, the server's `unreachable` route for its pool, the
//! home's source-specific default route, IPv6 sysctls. Each change is recorded by the one who
//! makes it so that exactly what was added is removed again. It also reads what the daemons
//! need of the host's set-up: interface indexes, global addresses, the route to a server.
//!
//! rtnetlink requests (`hometun_netlink`) are one message on a fresh `NETLINK_ROUTE` socket,
//! answered by the kernel's ACK or an errno.

pub mod record;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use anyhow::Context;
use ipnet::Ipv6Net;

use record::{Change, ChangeRecord};

pub use hometun_netlink::interface_index;
use hometun_netlink::{
    IFA_ADDRESS, IFA_LOCAL, Message, NLM_F_CREATE, NLM_F_EXCL, RT_SCOPE_UNIVERSE, RT_TABLE_MAIN,
    RTA_DST, RTA_OIF, RTA_PRIORITY, RTA_SRC, RTM_DELADDR, RTM_DELROUTE, RTM_NEWADDR, RTM_NEWROUTE,
    RTN_UNICAST, RTN_UNREACHABLE, RTPROT_STATIC, request_once,
};

/// The Ethernet address of an interface (`None` for one without, such as a TUN device).
pub fn hardware_address(name: &str) -> io::Result<Option<[u8; 6]>> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR fills the ifreq we pass; both live for the call.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFHWADDR, &mut request) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after SIOCGIFHWADDR the union holds ifru_hwaddr.
    let hw = unsafe { request.ifr_ifru.ifru_hwaddr };
    if hw.sa_family != libc::ARPHRD_ETHER {
        return Ok(None);
    }
    let mut mac = [0u8; 6];
    for (slot, byte) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *slot = *byte as u8;
    }
    Ok(Some(mac))
}

fn address_message(kind: u16, flags: u16, address: Ipv6Net, ifindex: u32) -> Message {
    // struct ifaddrmsg: family, prefixlen, flags, scope, index.
    let mut body = vec![
        libc::AF_INET6 as u8,
        address.prefix_len(),
        0,
        RT_SCOPE_UNIVERSE,
    ];
    body.extend_from_slice(&ifindex.to_ne_bytes());
    let octets = address.addr().octets();
    Message::new(kind, flags, &body)
        .attr(IFA_LOCAL, &octets)
        .attr(IFA_ADDRESS, &octets)
}

/// Adds `address` to the interface. `Ok(false)`: it was there already (then it is not ours to
/// remove).
pub fn add_address(address: Ipv6Net, ifindex: u32) -> io::Result<bool> {
    match request_once(address_message(
        RTM_NEWADDR,
        NLM_F_CREATE | NLM_F_EXCL,
        address,
        ifindex,
    )) {
        Ok(()) => Ok(true),
        Err(error) if error.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Removes `address` from the interface (gone already is fine).
pub fn remove_address(address: Ipv6Net, ifindex: u32) -> io::Result<()> {
    match request_once(address_message(RTM_DELADDR, 0, address, ifindex)) {
        Err(error)
            if matches!(
                error.raw_os_error(),
                Some(libc::EADDRNOTAVAIL) | Some(libc::ENODEV)
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// A route this crate installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Route {
    /// `unreachable DST metric M`: packets to it are refused with an ICMPv6 error.
    Unreachable {
        /// The destination.
        destination: Ipv6Net,
        /// Its metric.
        metric: u32,
    },
    /// `DST from SRC dev IFINDEX metric M`: a source-specific route (RFC 8678 style).
    From {
        /// The destination.
        destination: Ipv6Net,
        /// Only packets from here take it.
        source: Ipv6Net,
        /// Out through this interface.
        ifindex: u32,
        /// Its metric.
        metric: u32,
    },
}

impl Route {
    fn message(&self, kind: u16, flags: u16) -> Message {
        let (destination, source, ifindex, metric, route_type) = match *self {
            Route::Unreachable {
                destination,
                metric,
            } => (destination, None, None, metric, RTN_UNREACHABLE),
            Route::From {
                destination,
                source,
                ifindex,
                metric,
            } => (
                destination,
                Some(source),
                Some(ifindex),
                metric,
                RTN_UNICAST,
            ),
        };
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
        let mut body = vec![
            libc::AF_INET6 as u8,
            destination.prefix_len(),
            source.map_or(0, |s| s.prefix_len()),
            0,
            RT_TABLE_MAIN,
            RTPROT_STATIC,
            RT_SCOPE_UNIVERSE,
            route_type,
        ];
        body.extend_from_slice(&0u32.to_ne_bytes());
        let mut message = Message::new(kind, flags, &body)
            .attr(RTA_DST, &destination.network().octets())
            .attr(RTA_PRIORITY, &metric.to_ne_bytes());
        if let Some(source) = source {
            message = message.attr(RTA_SRC, &source.network().octets());
        }
        if let Some(ifindex) = ifindex {
            message = message.attr(RTA_OIF, &ifindex.to_ne_bytes());
        }
        message
    }

    /// Installs the route. `Ok(false)`: the same route was there already (not ours to remove).
    pub fn add(&self) -> io::Result<bool> {
        match request_once(self.message(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL)) {
            Ok(()) => Ok(true),
            Err(error) if error.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Removes the route (gone already is fine).
    pub fn remove(&self) -> io::Result<()> {
        match request_once(self.message(RTM_DELROUTE, 0)) {
            Err(error)
                if matches!(error.raw_os_error(), Some(libc::ESRCH) | Some(libc::ENODEV)) =>
            {
                Ok(())
            }
            other => other,
        }
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Unreachable {
                destination,
                metric,
            } => write!(f, "unreachable {destination} metric {metric}"),
            Route::From {
                destination,
                source,
                metric,
                ..
            } => write!(f, "{destination} from {source} metric {metric}"),
        }
    }
}

/// The source address of the route to `server`: our outer address when none is configured
/// (a connected UDP socket sends nothing but learns it).
pub fn route_source(server: SocketAddrV4) -> anyhow::Result<Ipv4Addr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket
        .connect(server)
        .with_context(|| format!("no route to the server {server}"))?;
    match socket.local_addr()? {
        std::net::SocketAddr::V4(local) if !local.ip().is_unspecified() => Ok(*local.ip()),
        other => anyhow::bail!("no IPv4 source address towards {server} (got {other})"),
    }
}

/// The global unicast IPv6 addresses (2000::/3) of the host, with their interface names.
pub fn global_addresses() -> io::Result<Vec<(String, Ipv6Addr)>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: entry is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*entry };
        entry = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr of at least the family field.
        if i32::from(unsafe { (*ifa.ifa_addr).sa_family }) != libc::AF_INET6 {
            continue;
        }
        // SAFETY: an AF_INET6 ifa_addr is a sockaddr_in6.
        let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
        let address = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
        if address.segments()[0] & 0xe000 != 0x2000 {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        found.push((name, address));
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(found)
}

/// One IPv6 sysctl of one interface (`all`, `default` or a name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    /// `all`, `default` or the interface.
    pub interface: String,
    /// The key under `net/ipv6/conf/INTERFACE/`.
    pub key: &'static str,
}

impl Sysctl {
    /// `net.ipv6.conf.INTERFACE.KEY`.
    pub fn new(interface: &str, key: &'static str) -> Self {
        Sysctl {
            interface: interface.to_string(),
            key,
        }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/proc/sys/net/ipv6/conf")
            .join(&self.interface)
            .join(self.key)
    }

    /// Its value.
    pub fn read(&self) -> io::Result<i64> {
        let text = std::fs::read_to_string(self.path())?;
        text.trim().parse().map_err(|_| {
            io::Error::other(format!("{}: not a number: {text:?}", self.path().display()))
        })
    }

    /// Sets it.
    pub fn write(&self, value: i64) -> io::Result<()> {
        std::fs::write(self.path(), format!("{value}\n"))
    }
}

impl std::fmt::Display for Sysctl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "net.ipv6.conf.{}.{}", self.interface, self.key)
    }
}

/// IPv6 forwarding turned on, and what it changed on the way, to be set back.
#[derive(Debug, Default)]
pub struct Forwarding {
    /// Sysctls changed and their old values, in the order they were changed.
    changed: Vec<(Sysctl, i64)>,
    /// The LAN interfaces whose `accept_ra` went to 0.
    accept_ra_off: Vec<String>,
}

impl Forwarding {
    /// Turns `net.ipv6.conf.all.forwarding` on. Forwarding makes the kernel ignore Router
    /// Advertisements where `accept_ra` is 1, which would take away a native uplink's default
    /// route: every interface (and `default`) with `accept_ra = 1` gets 2 first. The `lans`
    /// (a home's `[[lan]]` interfaces) get `accept_ra = 0` instead, forwarding on or not: a
    /// router takes no Router Advertisement from its LAN, where any host could make itself
    /// its default router. Each change goes into `record` before it is made.
    pub fn enable(lans: &[String], record: &mut ChangeRecord) -> io::Result<Self> {
        let mut forwarding = Forwarding::default();
        for lan in lans {
            let accept_ra = Sysctl::new(lan, "accept_ra");
            match accept_ra.read() {
                Ok(0) => {}
                Ok(was) => match forwarding.change(accept_ra.clone(), was, 0, record) {
                    Ok(()) => forwarding.accept_ra_off.push(lan.clone()),
                    Err(error) => tracing::warn!("{accept_ra}: cannot set it to 0: {error}"),
                },
                Err(error) => tracing::warn!("{accept_ra}: {error}"),
            }
        }
        match forwarding.turn_on(lans, record) {
            Ok(()) => Ok(forwarding),
            Err(error) => {
                // Nothing half done stays: the LANs' accept_ra goes back too.
                forwarding.restore(record);
                Err(error)
            }
        }
    }

    /// `accept_ra` 1 -> 2 outside the `lans`, then forwarding on (if it was off).
    fn turn_on(&mut self, lans: &[String], record: &mut ChangeRecord) -> io::Result<()> {
        let all = Sysctl::new("all", "forwarding");
        let was = all.read()?;
        if was == 1 {
            return Ok(());
        }
        let names = std::fs::read_dir("/proc/sys/net/ipv6/conf")?
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name != "all" && !lans.contains(name));
        for name in names {
            let accept_ra = Sysctl::new(&name, "accept_ra");
            if accept_ra.read().ok() == Some(1) {
                self.change(accept_ra, 1, 2, record)?;
            }
        }
        self.change(all, was, 1, record)
    }

    /// Sets `sysctl` from `was` to `value`, recorded first.
    fn change(
        &mut self,
        sysctl: Sysctl,
        was: i64,
        value: i64,
        record: &mut ChangeRecord,
    ) -> io::Result<()> {
        let change = Change::sysctl(&sysctl, was);
        record.push(change.clone());
        if let Err(error) = sysctl.write(value) {
            record.forget(&change);
            return Err(error);
        }
        self.changed.push((sysctl, was));
        Ok(())
    }

    /// The interfaces whose `accept_ra` went from 1 to 2.
    pub fn accept_ra_raised(&self) -> Vec<String> {
        self.changed
            .iter()
            .filter(|(s, _)| s.key == "accept_ra" && !self.accept_ra_off.contains(&s.interface))
            .map(|(s, _)| s.interface.clone())
            .collect()
    }

    /// The interfaces (the LANs) whose `accept_ra` went to 0.
    pub fn accept_ra_off(&self) -> &[String] {
        &self.accept_ra_off
    }

    /// Whether forwarding was off and is now on because of us.
    pub fn turned_on(&self) -> bool {
        self.changed.iter().any(|(s, _)| s.key == "forwarding")
    }

    /// Sets back what was changed, last change first (forwarding off before `accept_ra` goes
    /// back to 1), and takes it out of `record`. An interface gone meanwhile is skipped.
    pub fn restore(&mut self, record: &mut ChangeRecord) {
        while let Some((sysctl, value)) = self.changed.pop() {
            if let Err(error) = sysctl.write(value)
                && error.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!("setting {sysctl} back to {value}: {error}");
            }
            record.forget(&Change::sysctl(&sysctl, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_route_message_has_no_interface_and_the_unreachable_type() {
        let route = Route::Unreachable {
            destination: "2001:db8:100::/48".parse().unwrap(),
            metric: u32::MAX,
        };
        let bytes = route.message(RTM_NEWROUTE, NLM_F_CREATE).finish(1);
        // rtmsg after the 16-byte header: family 10, /48, no source, main table, unreachable.
        assert_eq!(&bytes[16..24], &[10, 48, 0, 0, 254, 4, 0, RTN_UNREACHABLE]);
        // RTA_DST then RTA_PRIORITY; no RTA_OIF.
        assert_eq!(u16::from_ne_bytes([bytes[30], bytes[31]]), RTA_DST);
        assert_eq!(u16::from_ne_bytes([bytes[50], bytes[51]]), RTA_PRIORITY);
        assert_eq!(bytes.len(), 56);
        assert_eq!(
            route.to_string(),
            "unreachable 2001:db8:100::/48 metric 4294967295"
        );
    }

    #[test]
    fn a_source_specific_route_carries_its_source_and_interface() {
        let route = Route::From {
            destination: "::/0".parse().unwrap(),
            source: "2001:db8:100:100::/56".parse().unwrap(),
            ifindex: 7,
            metric: 1024,
        };
        let bytes = route.message(RTM_NEWROUTE, NLM_F_CREATE).finish(1);
        assert_eq!(&bytes[16..24], &[10, 0, 56, 0, 254, 4, 0, RTN_UNICAST]);
        // RTA_DST (20), RTA_PRIORITY (8), RTA_SRC (20), RTA_OIF (8).
        assert_eq!(u16::from_ne_bytes([bytes[58], bytes[59]]), RTA_SRC);
        assert_eq!(
            &bytes[60..76],
            &"2001:db8:100:100::".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(u16::from_ne_bytes([bytes[78], bytes[79]]), RTA_OIF);
        assert_eq!(&bytes[80..84], &7u32.to_ne_bytes());
        assert_eq!(
            route.to_string(),
            "::/0 from 2001:db8:100:100::/56 metric 1024"
        );
    }
}
