use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use super::*;
use crate::sockets::{RecvBatch, enable_udp_gro, raw_esp_socket, set_read_timeout};

/// Fills buffer `i` with a fake ESP packet of `len` bytes (the batch does not look inside).
fn fill(batch: &mut SendBatch, i: usize, len: usize, seed: u8) -> Vec<u8> {
    let esp: Vec<u8> = (0..len).map(|j| seed.wrapping_add(j as u8)).collect();
    batch.buffer_mut(i)[ESP_AT..ESP_AT + len].copy_from_slice(&esp);
    esp
}

/// Whether raw sockets can be had here (root or CAP_NET_RAW); otherwise why not. Under
/// `CI=true` a missing capability fails the test instead.
fn raw_socket() -> Option<OwnedFd> {
    match raw_esp_socket(None) {
        Ok(esp) => Some(esp),
        Err(e) => {
            let why = format!("raw sockets need CAP_NET_RAW: {e}");
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// Raw ESP packets received on `socket` (IPv4 header first), until `count` arrived from
/// 127.0.0.1 with protocol 50.
fn receive_raw(socket: &OwnedFd, count: usize) -> Vec<Vec<u8>> {
    set_read_timeout(socket.as_raw_fd(), Duration::from_millis(500)).unwrap();
    let mut recv = RecvBatch::new(16, 70_000);
    let mut seen = Vec::new();
    while seen.len() < count {
        let n = recv.recv(socket.as_raw_fd()).unwrap();
        assert!(n > 0, "raw ESP lost on loopback after {}", seen.len());
        for i in 0..n {
            let (bytes, source, truncated) = recv.get_mut(i);
            assert!(!truncated);
            if *source.ip() == Ipv4Addr::LOCALHOST {
                seen.push(bytes.to_vec());
            }
        }
    }
    seen
}

#[test]
fn raw_esp_goes_out_as_sealed() {
    let Some(esp_socket) = raw_socket() else {
        return;
    };
    let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
    let mut batch = SendBatch::new(8, 1500);
    let mut sent = Vec::new();
    // Buffers 0, 2, 4, 6: a batch has holes where packets were dropped before sealing.
    for i in (0..8).step_by(2) {
        sent.push(fill(&mut batch, i, 100 + i * 10, i as u8));
        batch.push(i, 100 + i * 10, to, false);
    }
    assert_eq!(batch.len(), 4);
    assert_eq!(batch.flush_raw(esp_socket.as_raw_fd()), 0);
    batch.clear();
    let seen = receive_raw(&esp_socket, 4);
    for (packet, esp) in seen.iter().zip(&sent) {
        assert_eq!(packet[9], 50, "protocol");
        assert_eq!(&packet[20..], &esp[..]);
    }
}

#[test]
fn without_a_socket_nothing_is_sent_and_all_count() {
    let mut batch = SendBatch::new(4, 1500);
    fill(&mut batch, 0, 100, 0);
    batch.push(0, 100, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), false);
    fill(&mut batch, 1, 100, 0);
    batch.push(1, 100, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4500), true);
    let mut gso = true;
    assert_eq!(batch.flush_raw(-1), 1);
    assert_eq!(batch.flush_udp(-1, &mut gso), 1);
}

#[test]
fn udp_goes_out_one_by_one_and_with_gso() {
    for mut gso in [false, true] {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let gro = enable_udp_gro(b.as_raw_fd());
        let std::net::SocketAddr::V4(to) = b.local_addr().unwrap() else {
            panic!("bound to an IPv4 address")
        };
        // 40 datagrams of 1000 bytes and a last one of 300: one GSO run.
        let mut batch = SendBatch::new(64, 1500);
        let mut expected = Vec::new();
        for i in 0..41usize {
            let len = if i == 40 { 300 } else { 1000 };
            expected.push(fill(&mut batch, i, len, i as u8));
            batch.push(i, len, to, true);
        }
        assert_eq!(batch.flush_udp(a.as_raw_fd(), &mut gso), 0);
        batch.clear();
        set_read_timeout(b.as_raw_fd(), Duration::from_millis(500)).unwrap();
        let mut recv = RecvBatch::new(8, 65_536);
        let mut seen = Vec::new();
        while seen.len() < expected.len() {
            let n = recv.recv(b.as_raw_fd()).unwrap();
            assert!(n > 0, "datagrams lost on loopback after {}", seen.len());
            for i in 0..n {
                let segment = recv.segment_size(i);
                let (bytes, source, truncated) = recv.get_mut(i);
                assert!(!truncated);
                assert_eq!(std::net::SocketAddr::V4(source), a.local_addr().unwrap());
                if segment == 0 {
                    seen.push(bytes.to_vec());
                } else {
                    assert!(gro, "coalesced datagrams without UDP_GRO");
                    seen.extend(bytes.chunks(segment).map(<[u8]>::to_vec));
                }
            }
        }
        assert_eq!(seen, expected);
    }
}

#[test]
fn a_mixed_batch_sends_each_kind_through_its_socket() {
    let Some(esp_socket) = raw_socket() else {
        return;
    };
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let std::net::SocketAddr::V4(udp_to) = b.local_addr().unwrap() else {
        panic!("bound to an IPv4 address")
    };
    let raw_to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
    let mut batch = SendBatch::new(8, 1500);
    let raw_one = fill(&mut batch, 0, 200, 1);
    batch.push(0, 200, raw_to, false);
    let udp_one = fill(&mut batch, 1, 210, 2);
    batch.push(1, 210, udp_to, true);
    let raw_two = fill(&mut batch, 3, 220, 3);
    batch.push(3, 220, raw_to, false);
    let mut gso = true;
    assert_eq!(batch.flush_raw(esp_socket.as_raw_fd()), 0);
    assert_eq!(batch.flush_udp(a.as_raw_fd(), &mut gso), 0);
    batch.clear();
    assert!(batch.is_empty());
    let seen = receive_raw(&esp_socket, 2);
    assert_eq!(&seen[0][20..], &raw_one[..]);
    assert_eq!(&seen[1][20..], &raw_two[..]);
    b.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 2000];
    let (n, _) = b.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], &udp_one[..]);
}
