//! `hometun-roamtool`: helpers the roaming tests run inside namespaces.
//!
//! - `ping DEST INTERVAL_MS DURATION_MS`: ICMPv6 Echo Requests every INTERVAL_MS for
//!   DURATION_MS (then one more second for late replies); prints `ready`, then at the end
//!   `sent N` and one `reply SEQ SENT_NS RECEIVED_NS` line per reply (CLOCK_MONOTONIC ns).
//! - `tcp-send ADDR PORT BYTES MBIT`: like `hometun-nettool tcp-send`, paced to MBIT Mbit/s;
//!   prints `BYTES SHA256`.
//! - `forge-na raw|udp SRC DEST SPI SEQ KEYMAT_HEX [key=value...]`: an override NA sealed with
//!   the given key, sent from SRC (any address: the IPv4 header is ours, so it can be spoofed;
//!   with udp from port 4500 to 4500). Options: `hop=N`, `flags=0xNN`, `target=IPV6`,
//!   `lladdr=IPV4`, `tlla=0` (no option), `checksum=bad`, `count=N` (N NAs with SEQ, SEQ+1 ...).
//! - `capture-na IFACE SPI KEYMAT_HEX TIMEOUT_MS`: on IFACE (a router's port), the first ESP
//!   packet of SPI coming in that holds an NA (the key only recognises it; the copy sent later
//!   is the captured bytes, untouched); prints `captured SRC SEQ ESP_HEX`.
//! - `send-esp raw|udp SRC DEST ESP_HEX`: sends those ESP bytes from SRC (spoofed if need be).
//! - `relay-esp SPI TO SRC raw|udp TIMEOUT_MS GO_FILE`: receives the first ESP packet of SPI
//!   sent to this namespace (prints `received SEQ`) and, once GO_FILE exists, sends the same
//!   bytes on to TO from SRC; prints `relayed SEQ`.
//! - `monotonic`: prints CLOCK_MONOTONIC in ns (the clock of `ping`'s lines).

#![allow(clippy::disallowed_methods)] // a test tool: wall-clock pacing and timeouts are its job

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hometun_control::{AeadAlg, AeadKey, Spi};
use hometun_forwarder::aead::AeadBackend;
use hometun_forwarder::esp::{EspOpener, EspSealer, NEXT_HEADER_IPV6};
use hometun_forwarder::roaming::override_na::{ALL_NODES, emit_override_na};
use sha2::{Digest, Sha256};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["ping", dest, interval, duration] => ping(
            dest.parse()?,
            Duration::from_millis(interval.parse()?),
            Duration::from_millis(duration.parse()?),
        ),
        ["tcp-send", addr, port, bytes, mbit] => {
            tcp_send(addr.parse()?, port.parse()?, bytes.parse()?, mbit.parse()?)
        }
        ["forge-na", encap, src, dest, spi, seq, key, options @ ..] => forge_na(
            encap,
            src.parse()?,
            dest.parse()?,
            parse_u32(spi)?,
            seq.parse()?,
            key,
            options,
        ),
        ["capture-na", iface, spi, key, timeout] => capture_na(
            iface,
            parse_u32(spi)?,
            key,
            Duration::from_millis(timeout.parse()?),
        ),
        ["send-esp", encap, src, dest, esp] => {
            send_outer(
                encap == &"udp",
                src.parse()?,
                dest.parse()?,
                &hex::decode(esp)?,
            )?;
            println!("sent");
            Ok(())
        }
        ["relay-esp", spi, to, src, encap, timeout, go] => relay_esp(
            parse_u32(spi)?,
            to.parse()?,
            src.parse()?,
            encap == &"udp",
            Duration::from_millis(timeout.parse()?),
            std::path::Path::new(go),
        ),
        ["monotonic"] => {
            println!("{}", monotonic_ns());
            Ok(())
        }
        _ => bail!("usage: see the module documentation of hometun-roamtool"),
    }
}

fn parse_u32(text: &str) -> anyhow::Result<u32> {
    Ok(match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16)?,
        None => text.parse()?,
    })
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every namespace (no time namespaces here),
/// so the test can compare its own readings with these.
fn monotonic_ns() -> u64 {
    // SAFETY: timespec is plain data; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn check(ret: libc::c_int, what: &str) -> anyhow::Result<libc::c_int> {
    if ret < 0 {
        return Err(std::io::Error::last_os_error()).context(what.to_string());
    }
    Ok(ret)
}

fn raw_socket(family: i32, protocol: i32) -> anyhow::Result<OwnedFd> {
    // SAFETY: plain socket call, checked.
    let fd = check(
        unsafe { libc::socket(family, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) },
        "raw socket",
    )?;
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_timeout(fd: RawFd, timeout: Duration) {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: tv is valid for the call.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
}

fn ping(dest: Ipv6Addr, interval: Duration, duration: Duration) -> anyhow::Result<()> {
    let socket = raw_socket(libc::AF_INET6, libc::IPPROTO_ICMPV6)?;
    let fd = socket.as_raw_fd();
    set_timeout(fd, Duration::from_millis(20));
    let ident = (std::process::id() & 0xffff) as u16;
    let receiver = {
        let stop_at = Instant::now() + duration + Duration::from_secs(1);
        std::thread::spawn(move || {
            let mut replies: Vec<(u16, u64)> = Vec::new();
            let mut buffer = [0u8; 2048];
            while Instant::now() < stop_at {
                // SAFETY: the buffer is valid for its length.
                let n = unsafe { libc::recv(fd, buffer.as_mut_ptr().cast(), buffer.len(), 0) };
                if n < 8 {
                    continue;
                }
                let received = monotonic_ns();
                // Raw ICMPv6 sockets deliver the ICMPv6 message without the IPv6 header.
                if buffer[0] == 129 && u16::from_be_bytes([buffer[4], buffer[5]]) == ident {
                    replies.push((u16::from_be_bytes([buffer[6], buffer[7]]), received));
                }
            }
            replies
        })
    };
    println!("ready");
    std::io::stdout().flush()?;
    let destination = sockaddr_in6(dest);
    let start = Instant::now();
    let mut sent_at: Vec<u64> = Vec::new();
    let mut seq: u16 = 0;
    while start.elapsed() < duration {
        let mut message = [0u8; 64];
        message[0] = 128;
        message[4..6].copy_from_slice(&ident.to_be_bytes());
        message[6..8].copy_from_slice(&seq.to_be_bytes());
        sent_at.push(monotonic_ns());
        // SAFETY: the buffers are valid for the call; the kernel fills the ICMPv6 checksum.
        unsafe {
            libc::sendto(
                fd,
                message.as_ptr().cast(),
                message.len(),
                0,
                (&destination as *const libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>() as u32,
            )
        };
        seq = seq.wrapping_add(1);
        let next = interval * u32::from(seq);
        if let Some(wait) = next.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let replies = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))?;
    println!("sent {}", sent_at.len());
    for (seq, received) in replies {
        if let Some(sent) = sent_at.get(usize::from(seq)) {
            println!("reply {seq} {sent} {received}");
        }
    }
    Ok(())
}

fn sockaddr_in6(address: Ipv6Addr) -> libc::sockaddr_in6 {
    // SAFETY: plain data.
    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    sa.sin6_family = libc::AF_INET6 as u16;
    sa.sin6_addr.s6_addr = address.octets();
    sa
}

fn tcp_send(addr: Ipv6Addr, port: u16, bytes: u64, mbit: u64) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(SocketAddr::from((addr, port)))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 16 * 1024];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut left = bytes;
    let mut done = 0u64;
    let start = Instant::now();
    let bytes_per_second = (mbit.max(1) * 1_000_000 / 8) as f64;
    while left > 0 {
        let n = buffer.len().min(left as usize);
        for chunk in buffer[..n].chunks_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let word = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        stream.write_all(&buffer[..n])?;
        hasher.update(&buffer[..n]);
        left -= n as u64;
        done += n as u64;
        let due = Duration::from_secs_f64(done as f64 / bytes_per_second);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    let _ = stream.read(&mut buffer);
    println!("{bytes} {}", hex::encode(hasher.finalize()));
    Ok(())
}

fn key_of(keymat_hex: &str) -> anyhow::Result<AeadKey> {
    let keymat = hex::decode(keymat_hex)?;
    let alg = if keymat.len() == 36 {
        AeadAlg::AesGcm256
    } else {
        AeadAlg::AesGcm128
    };
    Ok(AeadKey::from_keymat(alg, &keymat)?)
}

/// Sends `esp` from `src` to `dst` as IP protocol 50, or in UDP from port 4500 to 4500, with an
/// IPv4 header of our own (IPPROTO_RAW implies IP_HDRINCL), so any source can be claimed.
fn send_outer(udp: bool, src: Ipv4Addr, dst: Ipv4Addr, esp: &[u8]) -> anyhow::Result<()> {
    let socket = raw_socket(libc::AF_INET, libc::IPPROTO_RAW)?;
    let payload_len = esp.len() + if udp { 8 } else { 0 };
    let mut packet = vec![0u8; 20 + payload_len];
    packet[0] = 0x45;
    packet[2..4].copy_from_slice(&((20 + payload_len) as u16).to_be_bytes());
    packet[8] = 64;
    packet[9] = if udp { 17 } else { 50 };
    packet[12..16].copy_from_slice(&src.octets());
    packet[16..20].copy_from_slice(&dst.octets());
    if udp {
        packet[20..22].copy_from_slice(&4500u16.to_be_bytes());
        packet[22..24].copy_from_slice(&4500u16.to_be_bytes());
        packet[24..26].copy_from_slice(&(payload_len as u16).to_be_bytes());
        // Checksum 0: none (allowed for UDP over IPv4).
        packet[28..].copy_from_slice(esp);
    } else {
        packet[20..].copy_from_slice(esp);
    }
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(dst).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: the buffers are valid for the call; the kernel fills the IPv4 checksum and id.
    check(
        unsafe {
            libc::sendto(
                socket.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&to as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            ) as libc::c_int
        },
        "sending",
    )?;
    Ok(())
}

fn forge_na(
    encap: &str,
    src: Ipv4Addr,
    dest: Ipv4Addr,
    spi: u32,
    seq: u64,
    key: &str,
    options: &[&str],
) -> anyhow::Result<()> {
    let mut hop: u8 = 255;
    let mut flags: Option<u8> = None;
    let mut target: Ipv6Addr = "2001:db8:1::2".parse()?;
    let mut lladdr = src;
    let mut tlla = true;
    let mut bad_checksum = false;
    let mut count = 1u64;
    for option in options {
        let (name, value) = option
            .split_once('=')
            .with_context(|| format!("option {option}: key=value"))?;
        match name {
            "hop" => hop = value.parse()?,
            "flags" => flags = Some(parse_u32(value)? as u8),
            "target" => target = value.parse()?,
            "lladdr" => lladdr = value.parse()?,
            "tlla" => tlla = value != "0",
            "checksum" => bad_checksum = value == "bad",
            "count" => count = value.parse()?,
            other => bail!("unknown option {other}"),
        }
    }
    let mut na = vec![0u8; 128];
    let len = emit_override_na("fe80::2".parse()?, target, lladdr, &mut na)?;
    na.truncate(len);
    na[7] = hop;
    if let Some(flags) = flags {
        na[44] = flags;
    }
    if !tlla {
        na.truncate(64);
        na[5] = 24;
    }
    // Recompute the checksum after the edits (unless asked to break it).
    na[42] = 0;
    na[43] = 0;
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            sum += u32::from(pair[0]) << 8 | pair.get(1).map_or(0, |&b| u32::from(b));
        }
    };
    add(&na[8..40]);
    add(&((na.len() - 40) as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(&na[40..]);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let mut checksum = !(sum as u16);
    if bad_checksum {
        checksum ^= 0x5555;
    }
    na[42..44].copy_from_slice(&checksum.to_be_bytes());
    debug_assert_eq!(&na[24..40], &ALL_NODES.octets());
    let sealer = EspSealer::new(Spi(spi), &key_of(key)?, false, AeadBackend::Ring)?;
    for i in 0..count {
        let mut esp = vec![0u8; EspSealer::sealed_len(na.len())];
        let n = sealer.seal(seq + i, &na, NEXT_HEADER_IPV6, &mut esp)?;
        send_outer(encap == "udp", src, dest, &esp[..n])?;
    }
    println!("forged {count} NA(s) for {target} from {src} with seq {seq}");
    Ok(())
}

fn packet_socket(iface: &str) -> anyhow::Result<(OwnedFd, libc::sockaddr_ll)> {
    let name = std::ffi::CString::new(iface)?;
    // SAFETY: name is a valid C string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!("no interface {iface}");
    }
    let protocol = (libc::ETH_P_ALL as u16).to_be();
    let socket = raw_socket(libc::AF_PACKET, i32::from(protocol))?;
    // SAFETY: sockaddr_ll is plain data.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = protocol;
    address.sll_ifindex = ifindex as i32;
    // SAFETY: address is valid for its length.
    check(
        unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        },
        "binding the packet socket",
    )?;
    set_timeout(socket.as_raw_fd(), Duration::from_millis(100));
    Ok((socket, address))
}

/// The IPv4 source, whether UDP, and the ESP bytes of an Ethernet frame carrying ESP.
fn esp_of_frame(frame: &[u8]) -> Option<(Ipv4Addr, bool, &[u8])> {
    if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[14..];
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    let payload = ip.get(header_len..total)?;
    let source = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    match ip[9] {
        50 => Some((source, false, payload)),
        17 if payload.get(2..4)? == 4500u16.to_be_bytes() => {
            let data = payload.get(8..)?;
            (data.len() >= 8 && data[..4] != [0; 4]).then_some((source, true, data))
        }
        _ => None,
    }
}

fn capture_na(iface: &str, spi: u32, key: &str, timeout: Duration) -> anyhow::Result<()> {
    let opener = EspOpener::new(Spi(spi), &key_of(key)?, false, AeadBackend::Ring)?;
    let (socket, _) = packet_socket(iface)?;
    println!("ready");
    std::io::stdout().flush()?;
    let deadline = Instant::now() + timeout;
    let mut frame = vec![0u8; 65_536];
    while Instant::now() < deadline {
        // SAFETY: sockaddr_ll is plain data; buffers are valid for their lengths.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        let n = unsafe {
            libc::recvfrom(
                socket.as_raw_fd(),
                frame.as_mut_ptr().cast(),
                frame.len(),
                0,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut from_len,
            )
        };
        if n <= 0 || from.sll_pkttype == libc::PACKET_OUTGOING {
            continue;
        }
        let Some((source, _, esp)) = esp_of_frame(&frame[..n as usize]) else {
            continue;
        };
        if esp.len() < 8 || u32::from_be_bytes([esp[0], esp[1], esp[2], esp[3]]) != spi {
            continue;
        }
        let seq = u32::from_be_bytes([esp[4], esp[5], esp[6], esp[7]]);
        let mut copy = esp.to_vec();
        let Ok(opened) = opener.open(u64::from(seq), &mut copy) else {
            continue;
        };
        let inner = &copy[opened.inner];
        if inner.len() > 40 && inner[6] == 58 && inner[40] == 136 {
            println!("captured {source} {seq} {}", hex::encode(esp));
            return Ok(());
        }
    }
    bail!("no NA of SPI {spi:#x} came in through {iface} within {timeout:?}")
}

fn relay_esp(
    spi: u32,
    to: Ipv4Addr,
    src: Ipv4Addr,
    udp: bool,
    timeout: Duration,
    go: &std::path::Path,
) -> anyhow::Result<()> {
    let socket = if udp {
        // SAFETY: plain socket call, checked.
        let fd = check(
            unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) },
            "udp socket",
        )?;
        // SAFETY: a fresh descriptor we own.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        let address = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 4500u16.to_be(),
            sin_addr: libc::in_addr { s_addr: 0 },
            sin_zero: [0; 8],
        };
        // SAFETY: address is valid for its length.
        check(
            unsafe {
                libc::bind(
                    socket.as_raw_fd(),
                    (&address as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as u32,
                )
            },
            "binding UDP 4500",
        )?;
        socket
    } else {
        raw_socket(libc::AF_INET, 50)?
    };
    set_timeout(socket.as_raw_fd(), Duration::from_millis(100));
    println!("ready");
    std::io::stdout().flush()?;
    let deadline = Instant::now() + timeout;
    let mut buffer = vec![0u8; 65_536];
    while Instant::now() < deadline {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
            )
        };
        if n <= 0 {
            continue;
        }
        let data = &buffer[..n as usize];
        // A raw socket reads the IPv4 header too.
        let esp = if udp {
            data
        } else {
            data.get(usize::from(data[0] & 0x0f) * 4..).unwrap_or(&[])
        };
        if esp.len() < 8 || u32::from_be_bytes([esp[0], esp[1], esp[2], esp[3]]) != spi {
            continue;
        }
        let seq = u32::from_be_bytes([esp[4], esp[5], esp[6], esp[7]]);
        println!("received {seq}");
        std::io::stdout().flush()?;
        while !go.exists() {
            if Instant::now() > deadline {
                bail!("{} never appeared", go.display());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        send_outer(udp, src, to, esp)?;
        println!("relayed {seq}");
        return Ok(());
    }
    bail!("no ESP of SPI {spi:#x} arrived within {timeout:?}")
}
