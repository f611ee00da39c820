//! The ESP packets of one TUN read, sealed where they were read and sent together.
//!
//! Each inner packet is read into its send buffer at [`INNER_AT`], behind room for the ESP
//! header and IV, and sealed there: nothing is copied between the TUN read and the send. Raw
//! ESP goes out with one `sendmmsg` (the kernel adds the IPv4 header), ESP in UDP with UDP GSO:
//! each run of equal-size datagrams to one peer in one `sendmsg`.
//!
//! (Sending raw ESP through an `IPPROTO_RAW` socket with our own IPv4 header, which skips the
//! kernel's checksummed copy, was measured with `benches/outer_send.rs`: no cheaper per
//! packet, so the ordinary protocol-50 socket stays.)

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::RawFd;

use crate::esp;
use crate::sockets::{self, sockaddr};

/// Where the ESP packet starts in each buffer.
pub const ESP_AT: usize = 0;
/// Where the inner packet is read into each buffer: behind room for the ESP header and IV.
pub const INNER_AT: usize = ESP_AT + esp::HEADROOM;
/// `UDP_SEGMENT` (linux/udp.h): send one buffer as several datagrams of this size (UDP GSO).
const UDP_SEGMENT: i32 = 103;
/// Largest UDP payload one GSO send may carry (IPv4 length limit, with headroom).
const GSO_MAX_BYTES: usize = 65_000;
/// Most segments one GSO send may carry (UDP_MAX_SEGMENTS of older kernels).
const GSO_MAX_SEGMENTS: usize = 64;

/// One sealed packet waiting to be sent.
#[derive(Debug, Clone, Copy)]
struct Entry {
    buffer: usize,
    /// Length of the ESP packet (from [`ESP_AT`]).
    len: usize,
    to: SocketAddrV4,
    udp: bool,
}

/// Buffers for the packets of one TUN read and the packets sealed in them.
pub struct SendBatch {
    buffers: Vec<Vec<u8>>,
    entries: Vec<Entry>,
    destinations: Vec<libc::sockaddr_in>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in iovecs/headers only point into this batch's own buffers and are
// rebuilt before each use; the batch is used by one thread at a time.
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// `capacity` buffers with room for inner packets of `inner_size` bytes.
    pub fn new(capacity: usize, inner_size: usize) -> Self {
        let size = INNER_AT + inner_size + esp::MAX_OVERHEAD;
        SendBatch {
            buffers: vec![vec![0u8; size]; capacity],
            entries: Vec::with_capacity(capacity),
            // SAFETY: plain data, filled before use.
            destinations: vec![unsafe { std::mem::zeroed() }; capacity],
            iovecs: vec![unsafe { std::mem::zeroed() }; capacity],
            headers: vec![unsafe { std::mem::zeroed() }; capacity],
        }
    }

    /// The buffers, for a TUN read that puts packet `i` at `buffers[i][INNER_AT..]`. Only
    /// valid while the batch is empty (buffers are not handed out twice).
    pub fn buffers_mut(&mut self) -> &mut [Vec<u8>] {
        debug_assert!(self.entries.is_empty());
        &mut self.buffers
    }

    /// Buffer `i`.
    pub fn buffer_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.buffers[i]
    }

    /// Queues the ESP packet of `len` bytes sealed in buffer `i` (at [`ESP_AT`]) for `to`, by
    /// UDP or as raw ESP.
    pub fn push(&mut self, i: usize, len: usize, to: SocketAddrV4, udp: bool) {
        self.entries.push(Entry {
            buffer: i,
            len,
            to,
            udp,
        });
    }

    /// Packets queued.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sends the raw ESP packets through `fd` (the protocol-50 socket). Returns the number not
    /// sent.
    pub fn flush_raw(&mut self, fd: RawFd) -> usize {
        let raw: Vec<Entry> = self.entries.iter().filter(|e| !e.udp).copied().collect();
        self.send_each(&raw, fd)
    }

    /// Sends the ESP-in-UDP packets through `fd`, with UDP GSO while `gso` holds (cleared, and
    /// the rest sent one by one, when the kernel refuses it). Returns the number not sent.
    pub fn flush_udp(&mut self, fd: RawFd, gso: &mut bool) -> usize {
        let udp: Vec<Entry> = self.entries.iter().filter(|e| e.udp).copied().collect();
        if udp.is_empty() {
            return 0;
        }
        if *gso {
            match self.send_gso(&udp, fd) {
                Ok(failed) => return failed,
                Err(sent) => {
                    tracing::info!("forwarder: no UDP GSO here, sending datagram by datagram");
                    *gso = false;
                    return self.send_each(&udp[sent..], fd);
                }
            }
        }
        self.send_each(&udp, fd)
    }

    /// Forgets every queued packet (after the flushes).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Sends `entries` with `sendmmsg`. A datagram that fails (e.g. EHOSTUNREACH) is skipped
    /// and the rest sent. Returns the number not sent.
    fn send_each(&mut self, entries: &[Entry], fd: RawFd) -> usize {
        let mut failed = 0;
        let mut start = 0;
        if fd < 0 {
            return entries.len();
        }
        while start < entries.len() {
            let n = entries.len() - start;
            for (j, entry) in entries[start..].iter().enumerate() {
                self.destinations[j] = sockaddr(entry.to);
                self.iovecs[j] = libc::iovec {
                    iov_base: self.buffers[entry.buffer][ESP_AT..].as_mut_ptr().cast(),
                    iov_len: entry.len,
                };
                let header = &mut self.headers[j].msg_hdr;
                header.msg_name = (&mut self.destinations[j] as *mut libc::sockaddr_in).cast();
                header.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                header.msg_iov = &mut self.iovecs[j];
                header.msg_iovlen = 1;
                header.msg_control = std::ptr::null_mut();
                header.msg_controllen = 0;
                header.msg_flags = 0;
            }
            // SAFETY: headers 0..n point at live buffers of this batch.
            let sent = unsafe { libc::sendmmsg(fd, self.headers.as_mut_ptr(), n as u32, 0) };
            if sent < 0 {
                let error = io::Error::last_os_error();
                match error.kind() {
                    io::ErrorKind::Interrupted => continue,
                    // Socket buffer full: wait for room rather than drop a whole batch.
                    io::ErrorKind::WouldBlock => {
                        sockets::wait_writable(fd);
                        continue;
                    }
                    // The first datagram failed: skip it, send the rest.
                    _ => {
                        failed += 1;
                        start += 1;
                    }
                }
            } else {
                start += sent as usize;
            }
        }
        failed
    }

    /// Sends `entries` (ESP in UDP) as runs of equal-size datagrams to one address, each run
    /// one `sendmsg` with `UDP_SEGMENT`. Returns the number not sent, or `Err(n)` when the
    /// kernel refused GSO at entry `n` (nothing from there on was sent).
    fn send_gso(&mut self, entries: &[Entry], fd: RawFd) -> Result<usize, usize> {
        let mut failed = 0;
        let mut start = 0;
        let mut control = [0u64; 4];
        while start < entries.len() {
            let size = entries[start].len;
            let to = entries[start].to;
            let most = (GSO_MAX_BYTES / size.max(1)).clamp(1, GSO_MAX_SEGMENTS);
            let mut end = start + 1;
            while end < entries.len()
                && end - start < most
                && entries[end].len <= size
                && entries[end].to == to
            {
                end += 1;
                if entries[end - 1].len < size {
                    break;
                }
            }
            for (j, entry) in entries[start..end].iter().enumerate() {
                self.iovecs[j] = libc::iovec {
                    iov_base: self.buffers[entry.buffer][ESP_AT..].as_mut_ptr().cast(),
                    iov_len: entry.len,
                };
            }
            // SAFETY: msghdr is plain data; every pointer set below lives until sendmsg returns.
            let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
            let mut destination = sockaddr(to);
            header.msg_name = (&mut destination as *mut libc::sockaddr_in).cast();
            header.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            header.msg_iov = self.iovecs.as_mut_ptr();
            header.msg_iovlen = end - start;
            if end - start > 1 {
                header.msg_control = control.as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE is a pure computation.
                header.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as usize;
                // SAFETY: the control buffer holds CMSG_SPACE(2) bytes, aligned for cmsghdr.
                unsafe {
                    let cmsg = libc::CMSG_FIRSTHDR(&header);
                    (*cmsg).cmsg_level = libc::SOL_UDP;
                    (*cmsg).cmsg_type = UDP_SEGMENT;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(2) as usize;
                    libc::CMSG_DATA(cmsg)
                        .cast::<u16>()
                        .write_unaligned(size as u16);
                }
            }
            // SAFETY: header points at live buffers of this batch and at locals above.
            let sent = unsafe { libc::sendmsg(fd, &header, 0) };
            if sent < 0 {
                let error = io::Error::last_os_error();
                match error.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => {
                        sockets::wait_writable(fd);
                        continue;
                    }
                    _ if end - start > 1
                        && matches!(error.raw_os_error(), Some(libc::EIO | libc::EINVAL)) =>
                    {
                        return Err(start);
                    }
                    _ => failed += end - start,
                }
            }
            start = end;
        }
        Ok(failed)
    }
}

#[cfg(test)]
mod tests;
