//! `hometun-nettool`: small network helpers the namespace tests run inside namespaces.
//!
//! - `tcp-recv PORT`: accept one TCP connection on [::]:PORT, read to the end, print
//!   `BYTES SHA256`.
//! - `tcp-send ADDR PORT BYTES`: send BYTES pseudo-random bytes, print `BYTES SHA256`.
//! - `replay IFACE TIMEOUT_MS`: on a bridge port, capture the first ESP frame (raw or in UDP
//!   4500) leaving through IFACE and send the very same frame again; prints `ready` once
//!   listening, then `replayed SPI SEQ`.
//! - `ike-peer BIND_IPV4 PORT DEST_IPV4 MESSAGE TIMEOUT_MS`: from BIND_IPV4:PORT send the
//!   non-ESP marker and MESSAGE to DEST_IPV4:4500, then print the hex of the first datagram
//!   that comes back.
//! - `forge raw|udp DEST_IPV4 SPI SEQ KEYMAT_HEX INNER_SRC INNER_DST`: seal an inner IPv6 packet
//!   with the given key and send it to DEST_IPV4 (protocol 50, or UDP port 4500).
//! - `spoof-udp SRC_IPV4:PORT DEST_IPV4:PORT HEX`: send one UDP datagram with a source address
//!   that is not ours (IP_TRANSPARENT, needs CAP_NET_ADMIN): a forged packet of an on-path
//!   attacker.
//! - `send-ra IFACE`: send a Router Advertisement out of IFACE to ff02::1 (hop limit 255,
//!   router lifetime 1800 s), from the interface's link-local address: what a hostile home
//!   would send into its tunnel to make itself the server's default router.

#![allow(clippy::disallowed_methods)] // a test tool: wall-clock timeouts are its business

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hometun_control::{AeadAlg, AeadKey, Spi};
use hometun_forwarder::aead::AeadBackend;
use hometun_forwarder::esp::{EspSealer, NEXT_HEADER_IPV6};
use sha2::{Digest, Sha256};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["tcp-recv", port] => tcp_recv(port.parse()?),
        ["tcp-send", addr, port, bytes] => tcp_send(addr.parse()?, port.parse()?, bytes.parse()?),
        ["replay", iface, timeout] => replay(iface, Duration::from_millis(timeout.parse()?)),
        ["ike-peer", bind, port, dest, message, timeout] => ike_peer(
            bind.parse()?,
            port.parse()?,
            dest.parse()?,
            message,
            Duration::from_millis(timeout.parse()?),
        ),
        ["forge", encap, dest, spi, seq, key, src, dst] => forge(
            encap,
            dest.parse()?,
            parse_u32(spi)?,
            seq.parse()?,
            key,
            src.parse()?,
            dst.parse()?,
        ),
        ["spoof-udp", src, dest, data] => {
            spoof_udp(src.parse()?, dest.parse()?, &hex::decode(data)?)
        }
        ["send-ra", iface] => send_ra(iface),
        _ => bail!("usage: see the module documentation of hometun-nettool"),
    }
}

fn parse_u32(text: &str) -> anyhow::Result<u32> {
    Ok(match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16)?,
        None => text.parse()?,
    })
}

fn tcp_recv(port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))?;
    println!("ready");
    std::io::stdout().flush()?;
    let (mut stream, _) = listener.accept()?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
    println!("{total} {}", hex::encode(hasher.finalize()));
    Ok(())
}

fn tcp_send(addr: Ipv6Addr, port: u16, bytes: u64) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(SocketAddr::from((addr, port)))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut left = bytes;
    while left > 0 {
        let n = buffer.len().min(left as usize);
        for chunk in buffer[..n].chunks_mut(8) {
            // xorshift64*: not random, but not compressible or periodic within 200 MB either.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let word = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        stream.write_all(&buffer[..n])?;
        hasher.update(&buffer[..n]);
        left -= n as u64;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    // Wait for the receiver to close, so every byte is through before we report.
    let _ = stream.read(&mut buffer);
    println!("{bytes} {}", hex::encode(hasher.finalize()));
    Ok(())
}

/// Whether an Ethernet frame carries ESP (raw, or in UDP to port 4500 and not IKE/keepalive);
/// returns its SPI and sequence number.
fn esp_in_frame(frame: &[u8]) -> Option<(u32, u32)> {
    if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[14..];
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let payload = ip.get(header_len..)?;
    let esp = match ip[9] {
        50 => payload,
        17 if payload.get(2..4)? == 4500u16.to_be_bytes() => {
            let data = payload.get(8..)?;
            if data.len() < 8 || data[..4] == [0; 4] {
                return None;
            }
            data
        }
        _ => return None,
    };
    let spi = u32::from_be_bytes(esp.get(..4)?.try_into().ok()?);
    let seq = u32::from_be_bytes(esp.get(4..8)?.try_into().ok()?);
    Some((spi, seq))
}

fn fix_udp_checksum(frame: &mut [u8]) {
    let ip = &mut frame[14..];
    if ip[9] != 17 {
        return;
    }
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    let (header, udp) = ip[..total].split_at_mut(header_len);
    if udp.len() < 8 {
        return;
    }
    udp[6] = 0;
    udp[7] = 0;
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for chunk in bytes.chunks(2) {
            let hi = u32::from(chunk[0]) << 8;
            sum += hi | chunk.get(1).map_or(0, |&b| u32::from(b));
        }
    };
    add(&header[12..20]);
    add(&[0, 17]);
    add(&(udp.len() as u16).to_be_bytes());
    add(udp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let checksum = match !(sum as u16) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&checksum.to_be_bytes());
}

fn replay(iface: &str, timeout: Duration) -> anyhow::Result<()> {
    let name = std::ffi::CString::new(iface)?;
    // SAFETY: name is a valid C string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!("no interface {iface}");
    }
    let protocol = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket call, checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(protocol)) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("packet socket");
    }
    // SAFETY: sockaddr_ll is plain data.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = protocol;
    address.sll_ifindex = ifindex as i32;
    let size = std::mem::size_of::<libc::sockaddr_ll>() as u32;
    // SAFETY: address is valid for size bytes.
    if unsafe { libc::bind(fd, (&address as *const libc::sockaddr_ll).cast(), size) } < 0 {
        return Err(std::io::Error::last_os_error()).context("binding the packet socket");
    }
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
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
    println!("ready");
    std::io::stdout().flush()?;
    let deadline = Instant::now() + timeout;
    let mut frame = vec![0u8; 65_536];
    while Instant::now() < deadline {
        // SAFETY: sockaddr_ll is plain data; buffers are valid for their lengths.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut from_len = size;
        let n = unsafe {
            libc::recvfrom(
                fd,
                frame.as_mut_ptr().cast(),
                frame.len(),
                0,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut from_len,
            )
        };
        if n <= 0 {
            continue;
        }
        // Only frames the bridge sends out of this port, i.e. towards the namespace behind it.
        if from.sll_pkttype != libc::PACKET_OUTGOING {
            continue;
        }
        let frame = &mut frame[..n as usize];
        let Some((spi, seq)) = esp_in_frame(frame) else {
            continue;
        };
        // A frame caught on its way out may still carry a partial UDP checksum (the veth
        // offloads it): complete it, or the copy would be dropped for its checksum rather than
        // as a replay.
        fix_udp_checksum(frame);
        // Give the original a head start, then send the copy out of the same port.
        std::thread::sleep(Duration::from_millis(50));
        // SAFETY: the frame and address are valid for the call.
        let sent = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&address as *const libc::sockaddr_ll).cast(),
                size,
            )
        };
        if sent < 0 {
            return Err(std::io::Error::last_os_error()).context("re-sending the frame");
        }
        println!("replayed {spi:#x} {seq}");
        return Ok(());
    }
    bail!("no ESP frame left through {iface} within {timeout:?}")
}

fn ike_peer(
    bind: Ipv4Addr,
    port: u16,
    dest: Ipv4Addr,
    message: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let socket = UdpSocket::bind((bind, port))?;
    socket.set_read_timeout(Some(timeout))?;
    let mut datagram = vec![0u8; 4];
    datagram.extend_from_slice(message.as_bytes());
    socket.send_to(&datagram, (dest, 4500))?;
    let mut buffer = [0u8; 2048];
    let (n, from) = socket
        .recv_from(&mut buffer)
        .context("no answer to the IKE message")?;
    println!("{from} {}", hex::encode(&buffer[..n]));
    Ok(())
}

fn spoof_udp(
    src: std::net::SocketAddrV4,
    dest: std::net::SocketAddrV4,
    data: &[u8],
) -> anyhow::Result<()> {
    use std::os::fd::FromRawFd;
    let address = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: src.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*src.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: plain socket calls on a descriptor this function owns; the option value and
    // the address are live for the duration of each call, with their true sizes.
    let socket = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if fd < 0 {
            bail!("socket: {}", std::io::Error::last_os_error());
        }
        let socket = UdpSocket::from_raw_fd(fd);
        let one: libc::c_int = 1;
        if libc::setsockopt(
            fd,
            libc::SOL_IP,
            libc::IP_TRANSPARENT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) != 0
        {
            bail!("IP_TRANSPARENT: {}", std::io::Error::last_os_error());
        }
        if libc::bind(
            fd,
            (&address as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) != 0
        {
            bail!(
                "binding the forged source {src}: {}",
                std::io::Error::last_os_error()
            );
        }
        socket
    };
    socket.send_to(data, dest)?;
    Ok(())
}

fn send_ra(iface: &str) -> anyhow::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let index = std::ffi::CString::new(iface)?;
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(index.as_ptr()) };
    if ifindex == 0 {
        bail!("{iface}: {}", std::io::Error::last_os_error());
    }
    // SAFETY: plain socket calls on a descriptor this function owns; option values and the
    // address live for the duration of each call, with their true sizes.
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6);
        if fd < 0 {
            bail!("socket: {}", std::io::Error::last_os_error());
        }
        let socket = OwnedFd::from_raw_fd(fd);
        let set = |level: libc::c_int, option: libc::c_int, value: libc::c_int| {
            libc::setsockopt(
                socket.as_raw_fd(),
                level,
                option,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if set(libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, 255) != 0
            || set(
                libc::IPPROTO_IPV6,
                libc::IPV6_MULTICAST_IF,
                ifindex as libc::c_int,
            ) != 0
        {
            bail!("setsockopt: {}", std::io::Error::last_os_error());
        }
        // Type 134, code 0, checksum (the kernel's), hop limit 64, no flags, router lifetime
        // 1800 s, reachable time and retransmission timer unspecified (RFC 4861 4.2).
        let mut ra = [0u8; 16];
        ra[0] = 134;
        ra[4] = 64;
        ra[6..8].copy_from_slice(&1800u16.to_be_bytes());
        let mut to: libc::sockaddr_in6 = std::mem::zeroed();
        to.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        to.sin6_addr.s6_addr = "ff02::1".parse::<Ipv6Addr>()?.octets();
        to.sin6_scope_id = ifindex;
        let sent = libc::sendto(
            socket.as_raw_fd(),
            ra.as_ptr().cast(),
            ra.len(),
            0,
            (&to as *const libc::sockaddr_in6).cast(),
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        );
        if sent < 0 {
            bail!("sendto: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn forge(
    encap: &str,
    dest: Ipv4Addr,
    spi: u32,
    seq: u64,
    key: &str,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> anyhow::Result<()> {
    let keymat = hex::decode(key)?;
    let alg = if keymat.len() == 36 {
        AeadAlg::AesGcm256
    } else {
        AeadAlg::AesGcm128
    };
    let key = AeadKey::from_keymat(alg, &keymat)?;
    let sealer = EspSealer::new(Spi(spi), &key, false, AeadBackend::Ring)?;
    // An inner IPv6 packet with no next header and a little payload.
    let payload = b"forged source";
    let mut inner = vec![0u8; 40 + payload.len()];
    inner[0] = 0x60;
    inner[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    inner[6] = 59;
    inner[7] = 64;
    inner[8..24].copy_from_slice(&src.octets());
    inner[24..40].copy_from_slice(&dst.octets());
    inner[40..].copy_from_slice(payload);
    let mut esp = vec![0u8; EspSealer::sealed_len(inner.len())];
    let len = sealer.seal(seq, &inner, NEXT_HEADER_IPV6, &mut esp)?;
    match encap {
        "udp" => {
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            socket.send_to(&esp[..len], (dest, 4500))?;
        }
        "raw" => {
            // SAFETY: plain socket call, checked.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, 50) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error()).context("raw socket");
            }
            let to = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from(dest).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: the buffers are valid for the call.
            let sent = unsafe {
                libc::sendto(
                    fd,
                    esp.as_ptr().cast(),
                    len,
                    0,
                    (&to as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as u32,
                )
            };
            if sent < 0 {
                return Err(std::io::Error::last_os_error()).context("sending");
            }
        }
        other => bail!("encapsulation {other}: raw or udp"),
    }
    println!("forged {spi:#x} {seq} from {src}");
    Ok(())
}
