//! What one outer packet costs the kernel, by the way it is sent: the CPU time of the sending
//! thread (CLOCK_THREAD_CPUTIME_ID, which includes the receiving namespace's softirq that runs
//! in the sender's context over a veth) per 1438-byte ESP packet, through
//!
//! - an ordinary raw socket for IP protocol 50 (`sendmmsg`, the kernel builds the IPv4 header
//!   and copies with a checksum), while another thread waits to read from it, as the
//!   forwarder's receiving thread does (each sent datagram then takes that socket's wait-queue
//!   lock when it is freed),
//! - a send-only `IPPROTO_RAW` socket with our own IPv4 header (`sendmmsg`; skips the kernel's
//!   checksummed copy and that lock: measured here and through the daemons, not used, since it
//!   costs no less; bench/README.md),
//! - a UDP socket, one datagram per message (`sendmmsg`), and with UDP GSO (64 per `sendmsg`),
//!
//! each to a receiving socket in a second namespace that drops everything (a BPF filter), so
//! the figure is the send path and the peer's IP input, without a reader. Runs interleaved and
//! prints the median and spread of ns/packet: a kernel-side choice measured apart from the
//! noise of a full transfer.
//!
//! `sudo cargo bench -p hometun-forwarder --bench outer_send` (namespaces: needs root; skips
//! with a reason otherwise).
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hometun_forwarder::send_batch::{ESP_AT, SendBatch};
use hometun_forwarder::sockets;
use hometun_lab::{Netns, printed, veth};
use std::os::fd::FromRawFd;

const ESP_LEN: usize = 1438;
const PACKETS: usize = 64 * 1000;
const ROUNDS: usize = 7;
const TO: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// The sending and the receiving namespace, a veth between them, the neighbour known (both go
/// when dropped).
fn setup() -> anyhow::Result<(Netns, Netns)> {
    let send = Netns::new("bsend")?;
    let recv = Netns::new("brecv")?;
    veth(&send, "b0", &recv, "b1")?;
    send.ip(&["addr", "add", "192.0.2.2/24", "dev", "b0"])?;
    recv.ip(&["addr", "add", "192.0.2.1/24", "dev", "b1"])?;
    send.ip(&["link", "set", "b0", "up"])?;
    recv.ip(&["link", "set", "b1", "up"])?;
    // The neighbour is known before the first timed packet.
    let ping = send.output("ping", &["-c", "1", "-W", "1", "192.0.2.1"])?;
    anyhow::ensure!(ping.status.success(), "ping: {}", printed(&ping));
    Ok((send, recv))
}

/// Attaches a filter that drops every packet (the socket only suppresses "protocol
/// unreachable" and takes the packets the way a reader's socket would, without a reader).
fn drop_all(fd: i32) {
    let mut code = [libc::sock_filter {
        code: 0x06, // BPF_RET | BPF_K
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let program = libc::sock_fprog {
        len: 1,
        filter: code.as_mut_ptr(),
    };
    // SAFETY: program points at a valid one-instruction filter for the call.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&program as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as u32,
        )
    };
    assert_eq!(ret, 0);
}

fn thread_cpu_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

#[derive(Clone, Copy, Debug)]
enum Way {
    RawSocket,
    IpprotoRaw,
    UdpEach,
    UdpGso,
}

/// A send-only `IPPROTO_RAW` socket (`IP_HDRINCL`).
fn ipproto_raw_socket() -> OwnedFd {
    // SAFETY: plain socket(2), checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    assert!(fd >= 0, "IPPROTO_RAW: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor we own.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `packets` IPv4+ESP packets of our own making (header: version, TTL, protocol 50, DF,
/// destination; the kernel fills in the rest) through `fd`, 64 per `sendmmsg`.
fn send_hdrincl(fd: &OwnedFd, packets: usize) {
    let mut buffers = vec![vec![0u8; 20 + ESP_LEN]; 64];
    for buffer in &mut buffers {
        buffer[0] = 0x45;
        buffer[6] = 0x40;
        buffer[8] = 64;
        buffer[9] = 50;
        buffer[16..20].copy_from_slice(&TO.octets());
    }
    let address = sockets::sockaddr(SocketAddrV4::new(TO, 0));
    // SAFETY: plain data, filled below.
    let mut iovecs: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; 64];
    let mut headers: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; 64];
    for _ in 0..packets / 64 {
        for i in 0..64 {
            iovecs[i] = libc::iovec {
                iov_base: buffers[i].as_mut_ptr().cast(),
                iov_len: buffers[i].len(),
            };
            headers[i].msg_hdr.msg_name = (&address as *const libc::sockaddr_in).cast_mut().cast();
            headers[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            headers[i].msg_hdr.msg_iov = &mut iovecs[i];
            headers[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: 64 headers pointing at live buffers.
        let sent = unsafe { libc::sendmmsg(fd.as_raw_fd(), headers.as_mut_ptr(), 64, 0) };
        assert_eq!(sent, 64, "{}", std::io::Error::last_os_error());
    }
}

/// ns of sender CPU per packet for `PACKETS` packets sent `way`.
fn run(way: Way, esp: &OwnedFd, hdrincl: &OwnedFd, udp: &UdpSocket) -> f64 {
    let mut batch = SendBatch::new(64, 1500);
    for i in 0..64 {
        batch.buffer_mut(i)[ESP_AT..ESP_AT + ESP_LEN].fill(i as u8);
    }
    let mut gso = matches!(way, Way::UdpGso);
    let start = thread_cpu_ns();
    if matches!(way, Way::IpprotoRaw) {
        send_hdrincl(hdrincl, PACKETS);
        return (thread_cpu_ns() - start) as f64 / PACKETS as f64;
    }
    for _ in 0..PACKETS / 64 {
        for i in 0..64 {
            match way {
                Way::RawSocket | Way::IpprotoRaw => {
                    batch.push(i, ESP_LEN, SocketAddrV4::new(TO, 0), false)
                }
                Way::UdpEach | Way::UdpGso => {
                    batch.push(i, ESP_LEN, SocketAddrV4::new(TO, 4500), true)
                }
            }
        }
        let failed = match way {
            Way::RawSocket | Way::IpprotoRaw => batch.flush_raw(esp.as_raw_fd()),
            Way::UdpEach | Way::UdpGso => batch.flush_udp(udp.as_raw_fd(), &mut gso),
        };
        assert_eq!(failed, 0, "{way:?}");
        batch.clear();
    }
    (thread_cpu_ns() - start) as f64 / PACKETS as f64
}

fn main() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("outer_send: skipped: needs root (network namespaces, raw sockets)");
        return;
    }
    let (ns_send, ns_recv) = match setup() {
        Ok(namespaces) => namespaces,
        Err(error) => {
            eprintln!("outer_send: skipped: could not make the namespaces: {error:#}");
            return;
        }
    };
    let (send_name, recv_name) = (ns_send.name().to_string(), ns_recv.name().to_string());
    let (done, ready) = std::sync::mpsc::channel::<()>();
    let (sockets_ready, wait_sockets) = std::sync::mpsc::channel::<()>();
    // The receiving sockets live in their namespace for the whole run.
    let receiver = std::thread::spawn(move || {
        hometun_lab::enter(&recv_name).unwrap();
        let esp = sockets::raw_esp_socket(None).unwrap();
        drop_all(esp.as_raw_fd());
        let udp = UdpSocket::bind("0.0.0.0:4500").unwrap();
        drop_all(udp.as_raw_fd());
        sockets_ready.send(()).unwrap();
        let _ = ready.recv();
        drop((esp, udp));
    });
    wait_sockets.recv().unwrap();
    let sender = std::thread::spawn(move || {
        hometun_lab::enter(&send_name).unwrap();
        let esp = Arc::new(sockets::raw_esp_socket(None).unwrap());
        drop_all(esp.as_raw_fd());
        // A thread waits to read from the protocol-50 socket, as the forwarder's does.
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (esp, stop) = (esp.clone(), stop.clone());
            std::thread::spawn(move || {
                sockets::set_read_timeout(esp.as_raw_fd(), Duration::from_millis(100)).unwrap();
                let mut batch = sockets::RecvBatch::new(4, 2048);
                while !stop.load(Ordering::Relaxed) {
                    let _ = batch.recv(esp.as_raw_fd());
                }
            })
        };
        let hdrincl = ipproto_raw_socket();
        let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
        let ways = [Way::RawSocket, Way::IpprotoRaw, Way::UdpEach, Way::UdpGso];
        let mut results: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
        for _ in 0..ROUNDS {
            for (i, way) in ways.iter().enumerate() {
                results[i].push(run(*way, &esp, &hdrincl, &udp));
            }
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
        (ways, results)
    });
    let (ways, mut results) = sender.join().unwrap();
    let _ = done.send(());
    receiver.join().unwrap();
    drop((ns_send, ns_recv));
    println!(
        "sender CPU per {ESP_LEN}-byte ESP packet over a veth ({PACKETS} packets, {ROUNDS} rounds interleaved):"
    );
    for (way, r) in ways.iter().zip(&mut results) {
        r.sort_by(f64::total_cmp);
        println!(
            "  {:<50} {:>7.0} ns median ({:.0}-{:.0})",
            match way {
                Way::RawSocket => "protocol-50 socket, a reader waiting (sendmmsg)",
                Way::IpprotoRaw => "IPPROTO_RAW with our IPv4 header (sendmmsg)",
                Way::UdpEach => "UDP, one datagram per message (sendmmsg)",
                Way::UdpGso => "UDP with GSO (64 datagrams per sendmsg)",
            },
            r[r.len() / 2],
            r[0],
            r[r.len() - 1]
        );
    }
}
