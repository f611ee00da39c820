//! A raw ICMPv6 socket for Neighbor Discovery on one interface: bound to the device, hop limit
//! 255 on what it sends (RFC 4861 6.1, 7.1), the hop limit of what it receives reported so that
//! messages from off the link are dropped, and an ICMPv6 filter that lets through only the
//! types asked for. The kernel fills in and checks the ICMPv6 checksum.

use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

/// `ICMP6_FILTER` (level `IPPROTO_ICMPV6`): which ICMPv6 types the socket receives.
const ICMP6_FILTER: libc::c_int = 1;

/// One message received: its bytes, IPv6 source and hop limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The ICMPv6 message.
    pub message: Vec<u8>,
    /// The IPv6 source address.
    pub source: Ipv6Addr,
    /// The hop limit it arrived with (255 when it came from the link).
    pub hop_limit: u8,
}

/// A raw ICMPv6 socket on one interface.
pub struct NdpSocket {
    fd: AsyncFd<OwnedFd>,
    ifindex: u32,
    interface: String,
}

impl NdpSocket {
    /// Opens the socket on `interface`, receiving only the ICMPv6 `types` (none: a socket that
    /// only sends) and joined to the multicast `group` if given (`ff02::2` to hear Router
    /// Solicitations).
    pub fn open(interface: &str, types: &[u8], group: Option<Ipv6Addr>) -> io::Result<Self> {
        let ifindex = crate::netconf::interface_index(interface)?;
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_INET6,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::IPPROTO_ICMPV6,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh socket we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        // SAFETY: the name buffer is valid for its length.
        let bound = unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                interface.as_ptr().cast(),
                interface.len() as libc::socklen_t,
            )
        };
        if bound < 0 {
            return Err(io::Error::last_os_error());
        }
        // Linux's filter: a set bit blocks the type.
        let mut filter = [u32::MAX; 8];
        for &kind in types {
            filter[usize::from(kind >> 5)] &= !(1u32 << (kind & 31));
        }
        set_option(raw, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &filter)?;
        set_option(raw, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, &255i32)?;
        set_option(raw, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &255i32)?;
        set_option(
            raw,
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_IF,
            &(ifindex as i32),
        )?;
        set_option(raw, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, &0i32)?;
        set_option(raw, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, &1i32)?;
        if let Some(group) = group {
            let request = libc::ipv6_mreq {
                ipv6mr_multiaddr: libc::in6_addr {
                    s6_addr: group.octets(),
                },
                ipv6mr_interface: ifindex,
            };
            match set_option(raw, libc::IPPROTO_IPV6, libc::IPV6_ADD_MEMBERSHIP, &request) {
                // A router already is a member of ff02::2 on every interface.
                Err(error) if error.raw_os_error() == Some(libc::EADDRINUSE) => {}
                other => other?,
            }
        }
        Ok(NdpSocket {
            fd: register(fd)?,
            ifindex,
            interface: interface.to_string(),
        })
    }

    /// The interface's name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Sends `message` to `destination` on the interface (link-local and multicast
    /// destinations get the interface as their scope). The kernel picks the source: a
    /// link-local address for a link-local destination.
    pub fn send(&self, message: &[u8], destination: Ipv6Addr) -> io::Result<()> {
        // SAFETY: sockaddr_in6 is plain data.
        let mut to: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        to.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        to.sin6_addr.s6_addr = destination.octets();
        to.sin6_scope_id = self.ifindex;
        // SAFETY: the buffer and address are valid for the given lengths.
        let sent = unsafe {
            libc::sendto(
                self.fd.get_ref().as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                0,
                (&to as *const libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next message of the types the socket was opened for.
    pub async fn recv(&self) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| receive(fd.get_ref().as_raw_fd())) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

fn set_option<T>(fd: i32, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: value is a live T of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One recvmsg(2): the message, its source and the hop limit from the control data.
fn receive(fd: i32) -> io::Result<Received> {
    let mut buffer = vec![0u8; 1500];
    // SAFETY: sockaddr_in6 is plain data.
    let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: msghdr is plain data; the pointers set below outlive the call.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_name = (&mut from as *mut libc::sockaddr_in6).cast();
    header.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every buffer the header points to is valid for its length.
    let got = unsafe { libc::recvmsg(fd, &mut header, 0) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    buffer.truncate(got as usize);
    let mut hop_limit = 0u8;
    // SAFETY: walking the control data the kernel wrote into `control`, with the CMSG macros.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::IPPROTO_IPV6 && (*cmsg).cmsg_type == libc::IPV6_HOPLIMIT
            {
                let value = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                hop_limit = u8::try_from(value).unwrap_or(0);
            }
            cmsg = libc::CMSG_NXTHDR(&header, cmsg);
        }
    }
    Ok(Received {
        message: buffer,
        source: Ipv6Addr::from(from.sin6_addr.s6_addr),
        hop_limit,
    })
}

/// Registers `fd` with the runtime for readability.
pub(crate) fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the OwnedFd is open and stays open, the same descriptor, for as long as the
    // AsyncFd owns it.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|error| error.into_parts().1)
}
