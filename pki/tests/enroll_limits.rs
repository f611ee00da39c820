//! The enrollment listener's admission, against the real listener on loopback: a connection cap,
//! rate limits per source and in total (the excess is closed at once and counted), and a
//! deadline for the TLS handshake; enrollment still works within the limits.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{now, server};
use hometun_pki::ca::KeyType;
use hometun_pki::client_dir::ClientDir;
use hometun_pki::enroll::client::enroll;
use hometun_pki::enroll::limits::{ListenerLimits, Rate};
use hometun_pki::enroll::server::EnrollmentServer;
use hometun_pki::server_dir::ServerDir;
use rustls_pki_types::UnixTime;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

fn limits(max: usize, per_source: u32, global: u32) -> ListenerLimits {
    ListenerLimits {
        max_connections: max,
        // Next to no refill: what a test spends stays spent while it runs.
        per_source: Rate {
            burst: per_source,
            per_second: 0.001,
        },
        global: Rate {
            burst: global,
            per_second: 0.001,
        },
        ..ListenerLimits::default()
    }
}

async fn start(dir: &ServerDir, limits: ListenerLimits) -> (SocketAddr, Arc<EnrollmentServer>) {
    let service = Arc::new(EnrollmentServer::with_limits(dir.dir(), limits).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(Arc::clone(&service).serve(listener));
    (addr, service)
}

async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the server closes the connection within `within` (it sends nothing before the
/// client's TLS hello, so any end of the stream is the server closing it).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(within, stream.read(&mut byte)).await {
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// Until the server has counted `n` connections, admitted or not.
async fn counted(service: &EnrollmentServer, n: u64) {
    for _ in 0..200 {
        let s = service.stats();
        if s.admitted + s.dropped() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the listener counted {:?}, not {n}", service.stats());
}

fn ca(tmp: &tempfile::TempDir) -> ServerDir {
    server(
        &tmp.path().join("srv"),
        "2001:db8:100::/48",
        64,
        KeyType::Ed25519,
    )
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (addr, service) = start(&ca(&tmp), limits(64, 1000, 1000)).await;
    // 80 connections that never say hello: 64 wait for their handshake, 16 are closed.
    let mut open = Vec::new();
    for _ in 0..80 {
        open.push(TcpStream::connect(addr).await.unwrap());
    }
    counted(&service, 80).await;
    let stats = service.stats();
    assert_eq!((stats.admitted, stats.busy), (64, 16), "{stats:?}");
    let mut closed = 0;
    for stream in &mut open[64..] {
        closed += usize::from(closed_within(stream, Duration::from_secs(2)).await);
    }
    assert_eq!(closed, 16);
    assert!(!closed_within(&mut open[0], Duration::from_millis(200)).await);

    // A slot that frees up is taken again.
    open.truncate(10);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut next = TcpStream::connect(addr).await.unwrap();
    assert!(!closed_within(&mut next, Duration::from_millis(300)).await);
    assert_eq!(service.stats().busy, 16);
}

#[tokio::test]
async fn each_source_and_all_sources_have_a_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let (addr, service) = start(&ca(&tmp), limits(100, 3, 5)).await;
    let mut kept = Vec::new();
    for _ in 0..3 {
        kept.push(connect_from("127.0.0.1", addr).await);
    }
    let mut fourth = connect_from("127.0.0.1", addr).await;
    assert!(closed_within(&mut fourth, Duration::from_secs(2)).await);
    assert_eq!(service.stats().source_rate, 1);
    // Another source has its own bucket, until all sources together reach 5.
    for _ in 0..2 {
        kept.push(connect_from("127.0.0.2", addr).await);
    }
    let mut over = connect_from("127.0.0.3", addr).await;
    assert!(closed_within(&mut over, Duration::from_secs(2)).await);
    counted(&service, 7).await;
    let stats = service.stats();
    assert_eq!(
        (stats.admitted, stats.source_rate, stats.global_rate),
        (5, 1, 1),
        "{stats:?}"
    );
    for stream in &mut kept {
        assert!(!closed_within(stream, Duration::from_millis(50)).await);
    }
}

#[tokio::test]
async fn a_silent_connection_loses_its_slot_at_the_handshake_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let mut limits = limits(1, 100, 100);
    limits.handshake_timeout = Duration::from_millis(300);
    let (addr, service) = start(&ca(&tmp), limits).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(!closed_within(&mut silent, Duration::from_millis(100)).await);
    assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
    // Its slot is free again.
    let mut next = TcpStream::connect(addr).await.unwrap();
    assert!(!closed_within(&mut next, Duration::from_millis(100)).await);
    assert_eq!(service.stats().busy, 0);
}

#[tokio::test]
async fn enrollment_works_within_the_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = ca(&tmp);
    let (addr, service) = start(&srv, ListenerLimits::default()).await;
    let token = srv
        .make_token("home.example", 24 * 60, Some(addr), now())
        .unwrap();
    let home = ClientDir::new(&tmp.path().join("home"));
    let (bundle, _) = enroll(&home, &token, addr, KeyType::Ed25519, UnixTime::now())
        .await
        .unwrap();
    assert_eq!(bundle.name, "home.example");
    assert_eq!(service.stats().admitted, 1);
}
