//! Roaming (docs/ARCHITECTURE.md, "Roaming"): the home's outer address changes under a running TCP
//! transfer and a ping every 20 ms, over raw ESP (the home's own address changes; its forwarder
//! learns it from netlink, re-binds and sends the override NA) and behind NAT (the NAT's public
//! address changes; the home sees nothing and the VPS follows the NAT rebinding). The transfer
//! must complete with the right SHA-256 and the VPS must move the endpoint; the test prints the
//! outage (pings lost, ms between the last reply before the change and the first after).

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use hometun_control::{Encapsulation, Event, FromForwarder, Request};
use hometun_forwarder::server::ControlClient;
use hometun_lab::require_root;
use hometun_lab::roaming_lab::{HOME_PEER, LabOptions, Path4, RoamingLab, VPS_INNER, outage};
use hometun_lab::roaming_lab::{RoamingTools, TransferOutcome, TransferUnderPing};

fn nettool() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hometun-nettool"))
}

fn roamtool() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hometun-roamtool"))
}

/// 24 MB at 40 Mbit/s: about 5 s, the address changes in its middle.
const TRANSFER_BYTES: u64 = 24 * 1024 * 1024;
const TRANSFER_MBIT: u64 = 40;

fn scenario(path: Path4) {
    let mut lab = RoamingLab::start(LabOptions {
        path,
        bind_home: path == Path4::Routed,
        ..LabOptions::default()
    })
    .unwrap();
    let ping = lab
        .home
        .output(
            "ping",
            &[
                "-6",
                "-c",
                "3",
                "-i",
                "0.2",
                "-W",
                "2",
                &VPS_INNER.to_string(),
            ],
        )
        .unwrap();
    assert!(
        ping.status.success(),
        "no ping before the change\n{}",
        lab.logs()
    );
    let before = lab.vps_endpoint(HOME_PEER).unwrap();
    assert_eq!(before.remote, lab.home_seen_from_vps());

    // The VPS's controller sees the move as an event.
    let mut controller = ControlClient::connect(&lab.socket("vps")).unwrap();
    controller.request(Request::GetCounters).unwrap().0.unwrap();

    let tools = RoamingTools {
        nettool: nettool(),
        roamtool: roamtool(),
    };
    let load = TransferUnderPing::start(
        &tools,
        &lab.home,
        &lab.vps,
        VPS_INNER,
        (TRANSFER_BYTES, TRANSFER_MBIT),
        4000,
    )
    .unwrap();

    std::thread::sleep(Duration::from_millis(1500));
    let (changed_at, new_seen) = match path {
        Path4::Routed => {
            let new = Ipv4Addr::new(198, 51, 100, 3);
            (lab.change_home_address(new).unwrap(), new)
        }
        Path4::Nat => {
            let new = Ipv4Addr::new(203, 0, 113, 11);
            (lab.change_public_address(new).unwrap(), new)
        }
    };

    let TransferOutcome {
        pings,
        sent,
        received,
    } = load
        .finish(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    assert!(sent.starts_with(&format!("{TRANSFER_BYTES} ")), "{sent}");
    assert_eq!(received, sent, "SHA-256 differs between the ends");

    // The VPS moved the home's endpoint to where it is now, and said so.
    let after = lab.vps_endpoint(HOME_PEER).unwrap();
    assert_eq!(after.remote, new_seen, "{}", lab.logs());
    assert_eq!(after.local, before.local);
    if path == Path4::Nat {
        assert!(matches!(after.encap, Encapsulation::Udp { .. }));
    }
    let moved = loop {
        match controller.next_message().unwrap() {
            FromForwarder::Event(Event::EndpointMoved { peer, old, new }) => {
                break (peer, old, new);
            }
            _ => continue,
        }
    };
    assert_eq!(moved, (HOME_PEER, before, after));
    let report = lab
        .wait_report("vps", Duration::from_secs(5), |r| {
            r.peer(HOME_PEER).is_some_and(|p| p.moves >= 1)
        })
        .unwrap_or_else(|| panic!("no move in the VPS's roaming report\n{}", lab.logs()));
    let peer = report.peer(HOME_PEER).unwrap();
    assert!(peer.refusals.is_empty(), "{peer:?}");
    match path {
        Path4::Routed => {
            assert!(peer.nas_accepted >= 1, "{peer:?}");
            let home = lab
                .wait_report("home", Duration::from_secs(5), |r| {
                    r.local_address_changes >= 1
                })
                .unwrap_or_else(|| panic!("the home did not notice\n{}", lab.logs()));
            assert!(
                home.announcements_sent >= 1 && home.probes_answered >= 1,
                "{home:?}"
            );
            // The home's own endpoint followed its address.
            let local = lab.counters("home").unwrap().sas[0].endpoint.local;
            assert_eq!(local, lab.home_address());
        }
        Path4::Nat => {
            assert_eq!(peer.nas_accepted, 0, "the home saw no change: no NA");
            assert!(peer.rebinding_rounds >= 1, "{peer:?}");
        }
    }
    let outage = outage(&pings, changed_at).unwrap();
    let log = std::fs::read_to_string(lab.log("vps")).unwrap();
    let switch = log
        .lines()
        .find(|l| l.contains(" moved "))
        .map(|l| l.split("roaming: ").nth(1).unwrap_or(l).to_string())
        .unwrap_or_default();
    println!("roaming {path:?}: {outage}; VPS: {switch}");
}

#[test]
fn home_address_change_over_raw_esp() {
    if !require_root("home_address_change_over_raw_esp") {
        return;
    }
    scenario(Path4::Routed);
}

#[test]
fn nat_public_address_change_over_udp() {
    if !require_root("nat_public_address_change_over_udp") {
        return;
    }
    scenario(Path4::Nat);
}
