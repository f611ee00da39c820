//! rtnetlink requests (rtnetlink(7), RFC 3549): a message is built with [`Message`] (the
//! `nlmsghdr`, a fixed body such as `rtmsg` or `ifaddrmsg`, then attributes) and sent on a
//! `NETLINK_ROUTE` socket ([`RouteSocket`]), which waits for the kernel's answer to it: its ACK,
//! or the errno it carries. The daemons' rare changes use a fresh socket each
//! ([`request_once`]); the forwarder, which adds and removes a route for every home that comes
//! and goes, keeps one per thread.
//!
//! A socket belongs to the network namespace of the thread that opened it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `nlmsg_type` of the kernel's answer to a request with `NLM_F_ACK`.
pub const NLMSG_ERROR: u16 = 2;
/// New address.
pub const RTM_NEWADDR: u16 = 20;
/// Delete address.
pub const RTM_DELADDR: u16 = 21;
/// New route.
pub const RTM_NEWROUTE: u16 = 24;
/// Delete route.
pub const RTM_DELROUTE: u16 = 25;
/// A request (set on every message built here).
pub const NLM_F_REQUEST: u16 = 0x01;
/// Ask for an ACK (set on every message built here).
pub const NLM_F_ACK: u16 = 0x04;
/// Replace what exists.
pub const NLM_F_REPLACE: u16 = 0x100;
/// Fail if it exists (`EEXIST`).
pub const NLM_F_EXCL: u16 = 0x200;
/// Create if it does not exist.
pub const NLM_F_CREATE: u16 = 0x400;
/// Route attribute: destination.
pub const RTA_DST: u16 = 1;
/// Route attribute: source prefix.
pub const RTA_SRC: u16 = 2;
/// Route attribute: output interface index.
pub const RTA_OIF: u16 = 4;
/// Route attribute: metric.
pub const RTA_PRIORITY: u16 = 6;
/// Address attribute: the address (the peer's, on a point-to-point link).
pub const IFA_ADDRESS: u16 = 1;
/// Address attribute: the local address.
pub const IFA_LOCAL: u16 = 2;
/// Address attribute: 32-bit flags.
pub const IFA_FLAGS: u16 = 8;
/// Address flag: no duplicate address detection.
pub const IFA_F_NODAD: u32 = 0x02;
/// The main routing table.
pub const RT_TABLE_MAIN: u8 = 254;
/// Route protocol: installed by an administrator (`proto static`).
pub const RTPROT_STATIC: u8 = 4;
/// Scope: global.
pub const RT_SCOPE_UNIVERSE: u8 = 0;
/// Scope: this link only.
pub const RT_SCOPE_LINK: u8 = 253;
/// Route type: a gateway or direct route.
pub const RTN_UNICAST: u8 = 1;
/// Route type: refused with an ICMP error.
pub const RTN_UNREACHABLE: u8 = 7;

/// Length of `struct nlmsghdr`.
const HEADER: usize = 16;

/// One netlink request: header, a fixed body, then attributes (each padded to 4 bytes).
#[derive(Debug, Clone)]
pub struct Message {
    bytes: Vec<u8>,
}

impl Message {
    /// A request of `kind` with `flags` (`NLM_F_REQUEST` and `NLM_F_ACK` are added) and the
    /// fixed `body` of that kind.
    pub fn new(kind: u16, flags: u16, body: &[u8]) -> Self {
        let mut bytes = vec![0u8; HEADER];
        bytes[4..6].copy_from_slice(&kind.to_ne_bytes());
        bytes[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        bytes.extend_from_slice(body);
        Message { bytes }
    }

    /// Appends an attribute (`struct rtattr` and its value).
    pub fn attr(mut self, kind: u16, value: &[u8]) -> Self {
        let len = 4 + value.len();
        self.bytes.extend_from_slice(&(len as u16).to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(value);
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
        self
    }

    /// The message as sent with sequence number `seq`: its length and sequence filled in.
    pub fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.bytes.len() as u32;
        self.bytes[0..4].copy_from_slice(&len.to_ne_bytes());
        self.bytes[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.bytes
    }
}

/// A `NETLINK_ROUTE` socket, in the network namespace of the thread that opened it.
#[derive(Debug)]
pub struct RouteSocket(OwnedFd);

impl RouteSocket {
    /// Opens one.
    pub fn open() -> io::Result<Self> {
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
        Ok(RouteSocket(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Sends `message` as request `seq` and reads until the kernel's answer to it: Ok on an
    /// ACK, the errno it carries otherwise. Answers to earlier requests still queued are
    /// skipped. An error without an errno means the socket's answers can no longer be
    /// trusted to line up: open another.
    pub fn request(&self, message: Message, seq: u32) -> io::Result<()> {
        let message = message.finish(seq);
        // SAFETY: sockaddr_nl is plain data; zero means "the kernel".
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: the buffer and address are valid for the given lengths.
        let sent = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
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
                    self.0.as_raw_fd(),
                    reply.as_mut_ptr().cast(),
                    reply.len(),
                    0,
                )
            };
            if got < 0 {
                return Err(io::Error::last_os_error());
            }
            match answer(&reply[..got as usize], seq) {
                Answer::Ack => return Ok(()),
                Answer::Errno(errno) => return Err(io::Error::from_raw_os_error(errno)),
                Answer::Earlier => continue,
                Answer::NotAnAck => break,
            }
        }
        Err(io::Error::other("netlink: no ACK from the kernel"))
    }
}

/// What one datagram from the kernel says about request `seq`.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Ack,
    Errno(i32),
    /// The answer to an earlier request.
    Earlier,
    /// Not an `NLMSG_ERROR` message at all.
    NotAnAck,
}

fn answer(reply: &[u8], seq: u32) -> Answer {
    // nlmsghdr, then struct nlmsgerr's error (a negative errno, or 0 for an ACK).
    let (Some(kind), Some(got_seq), Some(error)) =
        (reply.get(4..6), reply.get(8..12), reply.get(16..20))
    else {
        return Answer::NotAnAck;
    };
    if u16::from_ne_bytes([kind[0], kind[1]]) != NLMSG_ERROR {
        return Answer::NotAnAck;
    }
    if u32::from_ne_bytes([got_seq[0], got_seq[1], got_seq[2], got_seq[3]]) != seq {
        return Answer::Earlier;
    }
    match i32::from_ne_bytes([error[0], error[1], error[2], error[3]]) {
        0 => Answer::Ack,
        errno => Answer::Errno(errno.saturating_neg()),
    }
}

/// Sends one request on a fresh socket (for changes made now and then).
pub fn request_once(message: Message) -> io::Result<()> {
    RouteSocket::open()?.request(message, 1)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_the_header_filled_in_at_the_end() {
        let message = Message::new(RTM_NEWROUTE, NLM_F_CREATE, &[1, 2, 3, 4])
            .attr(RTA_PRIORITY, &[9, 9, 9])
            .attr(RTA_OIF, &7u32.to_ne_bytes());
        let bytes = message.finish(42);
        // header 16 + body 4 + (4 + 3, padded to 8) + (4 + 4)
        assert_eq!(bytes.len(), 16 + 4 + 8 + 8);
        assert_eq!(&bytes[0..4], &(bytes.len() as u32).to_ne_bytes());
        assert_eq!(&bytes[4..6], &RTM_NEWROUTE.to_ne_bytes());
        assert_eq!(
            &bytes[6..8],
            &(NLM_F_CREATE | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes()
        );
        assert_eq!(&bytes[8..12], &42u32.to_ne_bytes());
        assert_eq!(
            &bytes[20..22],
            &7u16.to_ne_bytes(),
            "the first rtattr's length"
        );
        assert_eq!(bytes[27], 0, "padding");
        assert_eq!(&bytes[32..36], &7u32.to_ne_bytes());
    }

    fn nlmsgerr(kind: u16, seq: u32, error: i32) -> Vec<u8> {
        let mut bytes = vec![0u8; 36];
        bytes[4..6].copy_from_slice(&kind.to_ne_bytes());
        bytes[8..12].copy_from_slice(&seq.to_ne_bytes());
        bytes[16..20].copy_from_slice(&error.to_ne_bytes());
        bytes
    }

    #[test]
    fn the_answer_to_our_request_is_told_from_others() {
        assert_eq!(answer(&nlmsgerr(NLMSG_ERROR, 5, 0), 5), Answer::Ack);
        assert_eq!(
            answer(&nlmsgerr(NLMSG_ERROR, 5, -libc::EEXIST), 5),
            Answer::Errno(libc::EEXIST)
        );
        assert_eq!(answer(&nlmsgerr(NLMSG_ERROR, 4, 0), 5), Answer::Earlier);
        assert_eq!(answer(&nlmsgerr(RTM_NEWROUTE, 5, 0), 5), Answer::NotAnAck);
        assert_eq!(answer(&[0u8; 19], 5), Answer::NotAnAck);
        assert_eq!(
            answer(&nlmsgerr(NLMSG_ERROR, 5, i32::MIN), 5),
            Answer::Errno(i32::MAX)
        );
    }
}
