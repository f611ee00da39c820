//! Two forwarders with static SAs in two namespaces, once over raw ESP and once over UDP 4500:
//! ping6 across, a 200 MB TCP transfer whose SHA-256 matches on both ends, a replayed ESP frame
//! (captured and re-sent from a third namespace) dropped and counted as `Replay`, an inner packet
//! with a forged source (sealed with the right key) dropped and counted as `IngressFilter`, and a
//! clean shutdown that removes the TUN devices.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use hometun_control::{CounterReport, DropReason, Event, FromForwarder, Request, Spi};
use hometun_forwarder::server::ControlClient;
use hometun_lab::forwarder_lab::{
    Encap, ForwarderLab, KEY_HOME_TO_VPS, SPI_HOME_TO_VPS, Side, Stop, VPS_INNER,
};
use hometun_lab::{Guarded, require_root, wait_for};

const TRANSFER_BYTES: u64 = 200 * 1024 * 1024;

fn nettool() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hometun-nettool"))
}

fn pair_drops(report: &CounterReport, spi_in: u32, reason: DropReason) -> u64 {
    report
        .sas
        .iter()
        .find(|s| s.spi_in == Spi(spi_in))
        .and_then(|s| s.drops.iter().find(|(r, _)| *r == reason))
        .map_or(0, |(_, n)| *n)
}

fn logs(lab: &ForwarderLab) -> String {
    format!(
        "home log:\n{}\nvps log:\n{}",
        std::fs::read_to_string(lab.log(Side::Home)).unwrap_or_default(),
        std::fs::read_to_string(lab.log(Side::Vps)).unwrap_or_default()
    )
}

fn scenario(encap: Encap) {
    let lab = ForwarderLab::start(encap).unwrap();

    // ping6 across the tunnel.
    assert!(
        lab.ping(3).unwrap(),
        "ping6 through the tunnel failed\n{}",
        logs(&lab)
    );
    let vps = lab.counters(Side::Vps).unwrap();
    assert!(vps.sas[0].rx_packets >= 3, "{vps:?}");
    // Each forwarder timed aws-lc against ring when it started and says which it seals with.
    for side in [Side::Home, Side::Vps] {
        let log = std::fs::read_to_string(lab.log(side)).unwrap_or_default();
        assert!(
            log.contains("AES-GCM by aws-lc, the faster here")
                || log.contains("AES-GCM by ring, the faster here"),
            "no AES-GCM choice in the log\n{}",
            logs(&lab)
        );
    }

    // A replayed ESP frame: captured where it leaves the bridge towards the VPS, sent again.
    let mut command = lab.tap.command(nettool());
    command.args(["replay", "tv", "10000"]);
    let mut replay = Guarded::spawn_piped(command, "replay").unwrap();
    assert_eq!(replay.read_line().unwrap(), "ready");
    assert!(lab.ping(1).unwrap());
    let output = replay.wait(Duration::from_secs(15)).unwrap();
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        printed.starts_with(&format!("replayed {SPI_HOME_TO_VPS:#x} ")),
        "replay tool: {printed}"
    );
    assert!(
        wait_for(Duration::from_secs(5), || {
            pair_drops(
                &lab.counters(Side::Vps).unwrap(),
                SPI_HOME_TO_VPS,
                DropReason::Replay,
            ) == 1
        }),
        "the replayed frame was not counted as Replay: {:?}",
        lab.counters(Side::Vps).unwrap()
    );

    // 200 MB of TCP through the tunnel, hashed on both ends.
    let mut command = lab.vps.command(nettool());
    command.args(["tcp-recv", "5001"]);
    let mut receiver = Guarded::spawn_piped(command, "tcp-recv").unwrap();
    assert_eq!(receiver.read_line().unwrap(), "ready");
    let mut command = lab.home.command(nettool());
    command.args([
        "tcp-send",
        &VPS_INNER.to_string(),
        "5001",
        &TRANSFER_BYTES.to_string(),
    ]);
    let sender = Guarded::spawn_piped(command, "tcp-send").unwrap();
    let sent = match sender.wait(Duration::from_secs(180)) {
        Ok(sent) => sent,
        Err(error) => panic!("tcp-send: {error}\n{}", logs(&lab)),
    };
    assert!(sent.status.success(), "tcp-send: {sent:?}\n{}", logs(&lab));
    let received = receiver.wait(Duration::from_secs(60)).unwrap();
    let sent = String::from_utf8_lossy(&sent.stdout).trim().to_string();
    let received = String::from_utf8_lossy(&received.stdout).trim().to_string();
    assert!(sent.starts_with(&format!("{TRANSFER_BYTES} ")), "{sent}");
    assert_eq!(received, sent, "SHA-256 differs between the ends");

    // A packet sealed with the right key but with an inner source outside the home's prefix.
    // Its sequence number lies ahead of everything the home has sent, inside the window.
    let home = lab.counters(Side::Home).unwrap();
    let seq = home.sas[0].tx_packets + 500;
    let forged = lab
        .home
        .output(
            nettool().to_str().unwrap(),
            &[
                "forge",
                encap.name(),
                "192.0.2.1",
                &format!("{SPI_HOME_TO_VPS:#x}"),
                &seq.to_string(),
                KEY_HOME_TO_VPS,
                "2001:db8:99::1",
                &VPS_INNER.to_string(),
            ],
        )
        .unwrap();
    assert!(forged.status.success(), "forge: {forged:?}");
    assert!(
        wait_for(Duration::from_secs(5), || {
            pair_drops(
                &lab.counters(Side::Vps).unwrap(),
                SPI_HOME_TO_VPS,
                DropReason::IngressFilter,
            ) == 1
        }),
        "the forged source was not counted as IngressFilter: {:?}",
        lab.counters(Side::Vps).unwrap()
    );
    // Nothing else was refused on the way.
    let vps = lab.counters(Side::Vps).unwrap();
    assert_eq!(pair_drops(&vps, SPI_HOME_TO_VPS, DropReason::AuthFailed), 0);

    if encap == Encap::Udp {
        ike_relay(&lab);
        // NAT keepalives (one a second in this lab) arrive and are dropped silently.
        let vps = lab.counters(Side::Vps).unwrap();
        assert!(
            !vps.global_drops
                .iter()
                .any(|(r, _)| *r == DropReason::Malformed),
            "{vps:?}"
        );
    }

    // One pair stops on request, the other on SIGTERM: both must clean up and exit 0.
    let how = match encap {
        Encap::Raw => Stop::Request,
        Encap::Udp => Stop::Signal,
    };
    lab.shutdown(how).unwrap();
}

/// IKE through the forwarder's UDP 4500 socket: a datagram with the non-ESP marker becomes an
/// `IkeReceived` event for every controller; `SendIke` sends one back with the marker.
fn ike_relay(lab: &ForwarderLab) {
    let mut controller = ControlClient::connect(&lab.socket(Side::Vps)).unwrap();
    // Registered before the datagram arrives: a request round trip proves it.
    controller.request(Request::GetCounters).unwrap().0.unwrap();
    let mut command = lab.home.command(nettool());
    command.args([
        "ike-peer",
        "192.0.2.2",
        "4600",
        "192.0.2.1",
        "hello ike",
        "10000",
    ]);
    let peer = Guarded::spawn_piped(command, "ike-peer").unwrap();
    let peer_address: SocketAddrV4 = "192.0.2.2:4600".parse().unwrap();
    let event = loop {
        match controller.next_message().unwrap() {
            FromForwarder::Event(event @ Event::IkeReceived { .. }) => break event,
            _ => continue,
        }
    };
    assert_eq!(
        event,
        Event::IkeReceived {
            local: "192.0.2.1:4500".parse().unwrap(),
            remote: peer_address,
            data: b"hello ike".to_vec(),
        }
    );
    let (result, _) = controller
        .request(Request::SendIke {
            local: "192.0.2.1:4500".parse().unwrap(),
            remote: peer_address,
            data: b"answer".to_vec(),
        })
        .unwrap();
    result.unwrap();
    let output = peer.wait(Duration::from_secs(15)).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("192.0.2.1:4500 00000000{}", hex::encode(b"answer"))
    );
}

#[test]
fn static_pair_over_raw_esp() {
    if !require_root("static_pair_over_raw_esp") {
        return;
    }
    scenario(Encap::Raw);
}

#[test]
fn static_pair_over_udp_4500() {
    if !require_root("static_pair_over_udp_4500") {
        return;
    }
    scenario(Encap::Udp);
}
