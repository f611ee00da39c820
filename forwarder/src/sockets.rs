//! The outer sockets and batched datagram I/O (`recvmmsg` / `sendmmsg`) with buffers allocated
//! once: the raw IPv4 socket for protocol 50 and the UDP socket for ESP in UDP (RFC 3948).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// IP protocol number of ESP.
pub const IPPROTO_ESP: i32 = 50;
/// `UDP_GRO` (linux/udp.h): receive coalesced datagrams with their segment size.
const UDP_GRO: i32 = 104;
/// Room for one control message with a 4-byte value.
const CONTROL_LEN: usize = 32;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn set_int_option(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: value lives for the call; the length matches its type.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    })?;
    Ok(())
}

/// Sets a receive timeout so blocking reads wake up to look at the stop flag.
pub fn set_read_timeout(fd: RawFd, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: tv lives for the call; the length matches its type.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    })?;
    Ok(())
}

/// Large socket buffers: a burst of a TCP window must not be dropped by the kernel before the
/// forwarder's thread gets to it.
pub fn set_buffers(fd: RawFd, bytes: i32) {
    for (name, force) in [
        (libc::SO_RCVBUF, libc::SO_RCVBUFFORCE),
        (libc::SO_SNDBUF, libc::SO_SNDBUFFORCE),
    ] {
        // FORCE needs CAP_NET_ADMIN (which the forwarder has); fall back to the capped option.
        if set_int_option(fd, libc::SOL_SOCKET, force, bytes).is_err() {
            let _ = set_int_option(fd, libc::SOL_SOCKET, name, bytes);
        }
    }
}

/// A raw IPv4 socket for IP protocol 50, bound to `bind` if given. Reads return the IPv4 header
/// followed by the ESP packet; writes take the ESP packet and the kernel adds the IPv4 header.
pub fn raw_esp_socket(bind: Option<Ipv4Addr>) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); checked before use.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            IPPROTO_ESP,
        )
    })?;
    // SAFETY: fd is a fresh socket that we own from here on.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    if let Some(address) = bind {
        let sa = sockaddr(SocketAddrV4::new(address, 0));
        // SAFETY: sa is a valid sockaddr_in for the call.
        check(unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        })?;
    }
    set_buffers(socket.as_raw_fd(), 8 << 20);
    Ok(socket)
}

/// The UDP socket for ESP in UDP and IKE with the non-ESP marker.
pub fn udp_socket(bind: Option<Ipv4Addr>, port: u16) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(SocketAddrV4::new(
        bind.unwrap_or(Ipv4Addr::UNSPECIFIED),
        port,
    ))?;
    set_buffers(socket.as_raw_fd(), 8 << 20);
    Ok(socket)
}

/// Sends one datagram from a socket (raw ESP: the kernel adds the IPv4 header).
pub fn send_to(fd: RawFd, data: &[u8], to: SocketAddrV4) -> io::Result<()> {
    let address = sockaddr(to);
    // SAFETY: the buffer and address are valid for the given lengths.
    let sent = unsafe {
        libc::sendto(
            fd,
            data.as_ptr().cast(),
            data.len(),
            0,
            (&address as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Puts `fresh` in the place of the socket open as `fd`: every thread that uses the number `fd`
/// uses the new socket from its next call on (dup3 is atomic). A thread blocked in a receive on
/// the old socket is woken by shutting the old one down (its receive returns one empty
/// datagram) instead of waiting for its read timeout.
pub fn replace_socket(fd: RawFd, fresh: OwnedFd) -> io::Result<()> {
    // SAFETY: dup of a descriptor we own; checked.
    let old = check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: old is a fresh descriptor we own from here on.
    let old = unsafe { OwnedFd::from_raw_fd(old) };
    // SAFETY: both descriptors are open; dup3 replaces fd atomically.
    check(unsafe { libc::dup3(fresh.as_raw_fd(), fd, libc::O_CLOEXEC) })?;
    // SAFETY: shutdown of a socket we own; its error (ENOTCONN on an unconnected socket) is
    // expected: the wake-up happens anyway.
    unsafe { libc::shutdown(old.as_raw_fd(), libc::SHUT_RD) };
    drop(old);
    drop(fresh);
    Ok(())
}

/// Asks the kernel to coalesce received UDP datagrams of one flow (UDP GRO); true if it will.
pub fn enable_udp_gro(fd: RawFd) -> bool {
    set_int_option(fd, libc::SOL_UDP, UDP_GRO, 1).is_ok()
}

/// A `sockaddr_in` for an address.
pub fn sockaddr(address: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: address.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*address.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn from_sockaddr(sa: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
        u16::from_be(sa.sin_port),
    )
}

/// Up to `capacity` datagrams received with one `recvmmsg`.
pub struct RecvBatch {
    buffers: Vec<Vec<u8>>,
    lengths: Vec<usize>,
    controls: Vec<[u64; CONTROL_LEN / 8]>,
    segments: Vec<usize>,
    truncated: Vec<bool>,
    sources: Vec<libc::sockaddr_in>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    count: usize,
}

// SAFETY: the raw pointers in iovecs/headers only point into this batch's own heap buffers,
// which never move or change size; the batch is used by one thread at a time.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// A batch of `capacity` buffers of `size` bytes each.
    pub fn new(capacity: usize, size: usize) -> Self {
        let mut batch = RecvBatch {
            buffers: vec![vec![0u8; size]; capacity],
            lengths: vec![0; capacity],
            controls: vec![[0u64; CONTROL_LEN / 8]; capacity],
            segments: vec![0; capacity],
            truncated: vec![false; capacity],
            // SAFETY: sockaddr_in is plain data.
            sources: vec![unsafe { std::mem::zeroed() }; capacity],
            // SAFETY: iovec and mmsghdr are plain data, filled below.
            iovecs: vec![unsafe { std::mem::zeroed() }; capacity],
            headers: vec![unsafe { std::mem::zeroed() }; capacity],
            count: 0,
        };
        // The pointers are set once: every vector here keeps its heap storage for the batch's
        // life. Only what the kernel writes back is reset before each receive.
        for i in 0..capacity {
            batch.iovecs[i] = libc::iovec {
                iov_base: batch.buffers[i].as_mut_ptr().cast(),
                iov_len: batch.buffers[i].len(),
            };
            let header = &mut batch.headers[i].msg_hdr;
            header.msg_name = (&mut batch.sources[i] as *mut libc::sockaddr_in).cast();
            header.msg_iov = &mut batch.iovecs[i];
            header.msg_iovlen = 1;
            header.msg_control = batch.controls[i].as_mut_ptr().cast();
        }
        batch.reset(capacity);
        batch
    }

    /// Resets what a receive writes back into the first `n` headers.
    fn reset(&mut self, n: usize) {
        for entry in &mut self.headers[..n] {
            entry.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            entry.msg_hdr.msg_controllen = CONTROL_LEN;
            entry.msg_hdr.msg_flags = 0;
            entry.msg_len = 0;
        }
    }

    /// Receives at least one datagram, blocking until one arrives or the read timeout passes
    /// (then `Ok(0)`).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // Only the headers the last receive filled were written to.
        self.reset(self.count);
        // SAFETY: every header points at live buffers of this batch, sized as declared.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                self.headers.len() as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            let error = io::Error::last_os_error();
            // Nothing was received; put every header back, in case the kernel wrote to one.
            self.reset(self.headers.len());
            self.count = 0;
            return match error.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(error),
            };
        }
        self.count = got as usize;
        for i in 0..self.count {
            self.lengths[i] = self.headers[i].msg_len as usize;
            self.truncated[i] = self.headers[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.segments[i] = gro_segment_size(&self.headers[i].msg_hdr);
        }
        Ok(self.count)
    }

    /// The segment size of datagram `i` when the kernel coalesced several (UDP GRO); 0 if not.
    /// Then the bytes are datagrams of this size back to back, the last one possibly shorter.
    pub fn segment_size(&self, i: usize) -> usize {
        self.segments[i]
    }

    /// Datagram `i` of the last receive: its bytes, its source, and whether it was cut short.
    pub fn get_mut(&mut self, i: usize) -> (&mut [u8], SocketAddrV4, bool) {
        let source = from_sockaddr(&self.sources[i]);
        let length = self.lengths[i];
        (&mut self.buffers[i][..length], source, self.truncated[i])
    }
}

/// The UDP_GRO segment size in a received message's control data, or 0.
fn gro_segment_size(header: &libc::msghdr) -> usize {
    // SAFETY: the control buffer was set up by us and the kernel filled msg_controllen bytes of
    // it; CMSG_FIRSTHDR/CMSG_NXTHDR stay within that length.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == UDP_GRO {
                let data = libc::CMSG_DATA(cmsg).cast::<i32>();
                return usize::try_from(data.read_unaligned()).unwrap_or(0);
            }
            cmsg = libc::CMSG_NXTHDR(header, cmsg);
        }
    }
    0
}

/// Waits (100 ms at most) until `fd` has room to send.
pub fn wait_writable(fd: RawFd) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, 100) };
}

/// Waits until `fd` is readable or `timeout_ms` passed; true if readable.
pub fn wait_readable(fd: RawFd, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    ready > 0 && pfd.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0
}
