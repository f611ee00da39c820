//! ICMP errors on the client's IKE socket. A server whose host is up but whose daemon is not
//! (yet) answers an IKE_SA_INIT with ICMP port unreachable: the client should try again soon
//! rather than count the request as lost and back off. Linux reports ICMP errors on an
//! unconnected UDP socket only with `IP_RECVERR`, through the socket's error queue; the queue
//! must be read (`MSG_ERRQUEUE`), or the socket stays readable with nothing to read.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};

/// ICMP destination unreachable, code port unreachable (RFC 792).
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_PORT_UNREACH: u8 = 3;

/// Asks the kernel to report ICMP errors of `socket`'s datagrams in its error queue.
pub fn report_errors(socket: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on an open socket with a live c_int of the right size.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_RECVERR,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads every error the kernel queued on `socket`; returns the destinations of our datagrams
/// that met ICMP port unreachable (other errors are read and dropped).
pub fn port_unreachable(socket: &impl AsRawFd) -> Vec<SocketAddrV4> {
    let mut found = Vec::new();
    // A bound on the work of one call; what is left is read at the next wake-up.
    for _ in 0..64 {
        match read_one(socket.as_raw_fd()) {
            Some(Some(destination)) => found.push(destination),
            Some(None) => {}
            None => break,
        }
    }
    found
}

/// One entry of the error queue: `None` when it is empty, `Some(Some(destination))` for a
/// port unreachable.
fn read_one(fd: RawFd) -> Option<Option<SocketAddrV4>> {
    // SAFETY: plain data, filled by the kernel.
    let mut destination: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut data = [0u8; 512];
    let mut control = [0u64; 64];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: plain data; every pointer set below lives until recvmsg returns.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_name = (&mut destination as *mut libc::sockaddr_in).cast();
    header.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: header points at live buffers of the sizes given.
    let got = unsafe { libc::recvmsg(fd, &mut header, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
    if got < 0 {
        return None;
    }
    // SAFETY: the kernel filled msg_controllen bytes of the control buffer; CMSG_FIRSTHDR and
    // CMSG_NXTHDR stay within them, and an IP_RECVERR message carries a sock_extended_err.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::IPPROTO_IP && (*cmsg).cmsg_type == libc::IP_RECVERR {
                let error = libc::CMSG_DATA(cmsg)
                    .cast::<libc::sock_extended_err>()
                    .read_unaligned();
                if error.ee_origin == libc::SO_EE_ORIGIN_ICMP
                    && error.ee_type == ICMP_DEST_UNREACH
                    && error.ee_code == ICMP_PORT_UNREACH
                {
                    return Some(Some(SocketAddrV4::new(
                        Ipv4Addr::from(u32::from_be(destination.sin_addr.s_addr)),
                        u16::from_be(destination.sin_port),
                    )));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&header, cmsg);
        }
    }
    Some(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_to_a_closed_port_is_reported_with_its_destination() {
        // A port nobody listens on: bind one, note it, close it.
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let std::net::SocketAddr::V4(destination) = closed.local_addr().unwrap() else {
            panic!("bound to IPv4")
        };
        drop(closed);
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        report_errors(&socket).unwrap();
        socket.send_to(b"IKE_SA_INIT", destination).unwrap();
        let mut found = Vec::new();
        for _ in 0..100 {
            found = port_unreachable(&socket);
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(found, vec![destination]);
        assert!(port_unreachable(&socket).is_empty(), "the queue is drained");
    }
}
