//! MOBIKE (RFC 4555; docs/ARCHITECTURE.md, "Roaming"): a stock strongSwan 5.9 client (charon with
//! kernel-libipsec, ESP in UDP 4500, `mobike = yes`) roams against `hometun server`: its address
//! changes under a running TCP transfer and a ping every 20 ms (the new address added, the old one
//! deleted, `promote_secondaries`); strongSwan sends MOBIKE's UPDATE_SA_ADDRESSES from the new
//! address, the server moves the IKE SA, checks the new address (COOKIE2) and moves the CHILD SAs.
//! The transfer completes with the right SHA-256, pings resume, the test prints the outage.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::Path;
use std::time::Duration;

use hometun_lab::ike_lab::{VPS_NAME, ping6, wait_ping};
use hometun_lab::roaming_ike_lab::{
    HOME_FIRST, HOME_INNER, HOME_NAME, HOME_PREFIX, HOME_SECOND, IkeRoamingLab, VPS_INNER,
    VPS_OUTER, swap_address, wait_status,
};
use hometun_lab::roaming_lab::{Path4, outage};
use hometun_lab::roaming_lab::{RoamingTools, TransferOutcome, TransferUnderPing};
use hometun_lab::strongswan::{Charon, CharonSpec, lab_can_run, logs};

fn nettool() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hometun-nettool"))
}

fn roamtool() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hometun-roamtool"))
}

const TRANSFER_BYTES: u64 = 24 * 1024 * 1024;
const TRANSFER_MBIT: u64 = 40;

#[test]
fn mobike_strongswan_client_roams_against_hometun_server() {
    if !lab_can_run("mobike_strongswan_client_roams_against_hometun_server") {
        return;
    }
    let lab = IkeRoamingLab::new(Path4::Routed).unwrap();
    let server = lab.start_server().unwrap();
    // strongSwan takes its inner source address from a local interface inside its TS.
    lab.home
        .ip(&[
            "-6",
            "addr",
            "add",
            &format!("{HOME_INNER}/128"),
            "dev",
            "lo",
        ])
        .unwrap();
    let home_dir = lab.home_dir();
    let charon_dir = lab.dir().join("charon-home");
    std::fs::create_dir_all(&charon_dir).unwrap();
    let charon = Charon::start(
        &lab.home,
        &charon_dir,
        &CharonSpec {
            // Any local address: MOBIKE picks the new one when the old goes.
            local_addr: "%any".into(),
            remote_addr: VPS_OUTER.to_string(),
            local_id: HOME_NAME.into(),
            remote_id: VPS_NAME.into(),
            cert: home_dir.join("client.pem"),
            key: home_dir.join("client.key"),
            ca: home_dir.join("ca.pem"),
            local_ts: HOME_PREFIX.into(),
            remote_ts: "::/0".into(),
            proposals: "aes128gcm16-prfsha256-x25519".into(),
            esp_proposals: "aes128gcm16-x25519".into(),
            charon_extra: String::new(),
            connection_extra: String::new(),
            child_extra: String::new(),
        },
    )
    .unwrap();
    if let Err(error) = charon.initiate() {
        panic!(
            "strongSwan could not connect: {error:#}\n{}",
            logs(&server, &charon)
        );
    }
    assert!(
        wait_ping(&lab.home, VPS_INNER, Duration::from_secs(20)),
        "no ping6 through strongSwan's tunnel\n{}",
        logs(&server, &charon)
    );
    let status = server.status().unwrap();
    assert!(
        status["peers"][0]["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with(&format!("{HOME_FIRST}:"))),
        "{status:#}"
    );

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
        5000,
    )
    .unwrap();

    std::thread::sleep(Duration::from_millis(1500));
    let changed_at = swap_address(&lab.home, "h0", HOME_FIRST, HOME_SECOND).unwrap();

    let TransferOutcome {
        pings,
        sent,
        received,
    } = load
        .finish(Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs(&server, &charon)));
    assert!(sent.starts_with(&format!("{TRANSFER_BYTES} ")), "{sent}");
    assert_eq!(received, sent, "SHA-256 differs between the ends");

    let new = HOME_SECOND.to_string();
    let status = wait_status(&server, Duration::from_secs(20), |s| {
        s["peers"][0]["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with(&format!("{new}:")))
            && s["counters"]["sas"]
                .as_array()
                .is_some_and(|sas| sas.iter().all(|sa| sa["endpoint"]["remote"] == new))
    })
    .unwrap_or_else(|| {
        panic!(
            "the server did not follow strongSwan to {new}: {:#}\n{}",
            server.status().unwrap(),
            logs(&server, &charon)
        )
    });
    assert!(
        status["peers"][0]["moves"].as_u64() >= Some(1),
        "{status:#}"
    );
    let log = server.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("moved (MOBIKE)"))
        .unwrap_or_else(|| panic!("no MOBIKE move logged\n{}", logs(&server, &charon)))
        .to_string();
    assert!(
        ping6(&lab.home, VPS_INNER, 3).unwrap(),
        "no ping6 after the move\n{}",
        logs(&server, &charon)
    );
    let sas = charon.list_sas();
    assert!(sas.contains(&new), "{sas}");
    let outage = outage(&pings, changed_at).unwrap();
    let line = line.split("moved (MOBIKE)").nth(1).unwrap_or(&line).trim();
    println!("strongSwan MOBIKE client -> hometun server: {outage}; server: moved{line}");
    println!("{}", server.status_table().unwrap());
    charon.stop();
    assert!(server.stop().unwrap().success());
}
