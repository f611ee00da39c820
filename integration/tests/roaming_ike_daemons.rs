//! Roaming (docs/ARCHITECTURE.md, "Roaming") with the full daemons (`hometun server` / `hometun
//! client`, certificates from `hometun pki`) on home — isp — vps namespaces:
//!
//! 1. the home's IPv4 address changes under a running TCP transfer and a ping every 20 ms
//!    (raw ESP): the transfer completes with the right SHA-256, the test prints the outage (last
//!    reply before the change, first after, pings lost), the server's IKE SA follows and its
//!    CHILD SA rekey after the move (a small `[limits] rekey_bytes`) reaches the home there;
//! 2. the same behind NAT when the NAT's public address changes (ESP in UDP, a NAT rebinding);
//! 3. the same as 1 for a home that forces ESP in UDP (`force_udp_encapsulation`): it stays on
//!    UDP 4500 through the move and the rekey after it;
//! 4. an attacker replays a captured ESP packet holding the home's genuine override NA from its
//!    own address: the endpoint does not move, and `hometun status` counts the replay.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::Path;
use std::time::Duration;

use hometun_lab::ike_lab::{VPS_NAME, edit_client, edit_server, logs, ping6, wait_ping};
use hometun_lab::roaming_ike_lab::{
    ATTACKER, HOME_NAME, HOME_SECOND, IkeRoamingLab, VPS_INNER, VPS_OUTER, drops, inbound_spis,
    wait_status,
};
use hometun_lab::roaming_lab::{Path4, outage};
use hometun_lab::roaming_lab::{RoamingTools, TransferOutcome, TransferUnderPing};
use hometun_lab::{Guarded, require_root, wait_for};

fn nettool() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hometun-nettool"))
}

fn roamtool() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hometun-roamtool"))
}

/// 24 MB at 40 Mbit/s: about 5 s; the address changes 1.5 s in.
const TRANSFER_BYTES: u64 = 24 * 1024 * 1024;
const TRANSFER_MBIT: u64 = 40;
/// The server rekeys after 16 MB from the home: after the move (at most 7.5 MB by then).
const REKEY_BYTES: u64 = 16 * 1024 * 1024;

/// The peer's remote address (without port) in a status.
fn peer_remote(status: &serde_json::Value) -> String {
    status["peers"][0]["remote"]
        .as_str()
        .and_then(|r| r.split(':').next())
        .unwrap_or_default()
        .to_string()
}

/// Every forwarder SA of the status sends to `remote`.
fn sas_at(status: &serde_json::Value, remote: &str) -> bool {
    status["counters"]["sas"].as_array().is_some_and(|sas| {
        !sas.is_empty() && sas.iter().all(|sa| sa["endpoint"]["remote"] == remote)
    })
}

/// Every forwarder SA of the status carries ESP in UDP.
fn sas_udp(status: &serde_json::Value) -> bool {
    status["counters"]["sas"].as_array().is_some_and(|sas| {
        !sas.is_empty()
            && sas
                .iter()
                .all(|sa| sa["endpoint"]["encap"]["udp"].is_object())
    })
}

/// `force_udp`: the home sets `[client] force_udp_encapsulation`.
fn scenario(path: Path4, force_udp: bool) {
    let mut lab = IkeRoamingLab::new(path).unwrap();
    edit_server(&lab.server_toml, |c| c.limits.rekey_bytes = REKEY_BYTES).unwrap();
    if force_udp {
        edit_client(&lab.client_toml, |c| {
            c.client.force_udp_encapsulation = true
        })
        .unwrap();
    }
    let server = lab.start_server().unwrap();
    let client = lab.start_client().unwrap();
    assert!(
        wait_ping(&lab.home, VPS_INNER, Duration::from_secs(30)),
        "the tunnel did not come up\n{}",
        logs(&[&server, &client])
    );
    let before = server.status().unwrap();
    assert_eq!(peer_remote(&before), lab.home_seen_from_vps().to_string());
    let first_spis = inbound_spis(&before);
    // ESP in UDP behind the NAT or when forced, raw ESP otherwise.
    let udp = force_udp || path == Path4::Nat;
    assert_eq!(sas_udp(&before), udp, "{before:#}");

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
    let changed_at = lab.change_address().unwrap();
    let new = lab.home_seen_from_vps().to_string();

    let TransferOutcome {
        pings,
        sent,
        received,
    } = load
        .finish(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs(&[&server, &client])));
    assert!(sent.starts_with(&format!("{TRANSFER_BYTES} ")), "{sent}");
    assert_eq!(received, sent, "SHA-256 differs between the ends");

    // The server's IKE SA and its forwarder's SAs are where the home is now.
    let status = wait_status(&server, Duration::from_secs(20), |s| {
        peer_remote(s) == new && sas_at(s, &new)
    })
    .unwrap_or_else(|| {
        panic!(
            "the server did not follow to {new}: {:#}\n{}",
            server.status().unwrap(),
            logs(&[&server, &client])
        )
    });
    assert!(
        status["peers"][0]["moves"].as_u64() >= Some(1),
        "{status:#}"
    );
    assert!(!status["peers"][0]["last_moved_seconds_ago"].is_null());
    // The server's CHILD SA rekey came after the move and reached the home at its new
    // address: new SPIs on both sides, installed there.
    let status = wait_status(&server, Duration::from_secs(20), |s| {
        let now = inbound_spis(s);
        !now.is_empty() && now.iter().all(|spi| !first_spis.contains(spi)) && sas_at(s, &new)
    })
    .unwrap_or_else(|| {
        panic!(
            "no CHILD SA rekey after the move: {:#}\n{}",
            server.status().unwrap(),
            logs(&[&server, &client])
        )
    });
    let log = server.log_text();
    let followed = log
        .find("IKE follows")
        .expect("the IKE SA followed the move");
    let rekeyed = log.find("CHILD SA rekeyed").expect("a rekey is logged");
    assert!(
        followed < rekeyed,
        "the rekey came before the move\n{}",
        logs(&[&server, &client])
    );
    assert_eq!(drops(&status, "hard-limit"), 0, "{status:#}");
    // The move and the rekey kept the encapsulation the tunnel came up with.
    assert_eq!(sas_udp(&status), udp, "{status:#}");
    if force_udp {
        assert!(
            status["peers"][0]["remote"]
                .as_str()
                .is_some_and(|r| r.ends_with(":4500")),
            "{status:#}"
        );
    }
    assert!(
        ping6(&lab.home, VPS_INNER, 3).unwrap(),
        "no ping6 after the rekey\n{}",
        logs(&[&server, &client])
    );
    let client_status = client.status().unwrap();
    if path == Path4::Routed {
        assert_eq!(
            client_status["peers"][0]["local"]
                .as_str()
                .and_then(|l| l.split(':').next()),
            Some(lab.home_address().to_string().as_str()),
            "{client_status:#}"
        );
    }

    let outage = outage(&pings, changed_at).unwrap();
    // The forwarder's line is `... INFO hometun_forwarder::roaming: roaming: peer1 moved A -> B:
    // T ms from the override NA to the switch (moves: 1)`: its target ends in "roaming: " too,
    // so the message is what follows the last one.
    let switch = log
        .lines()
        .find(|l| l.contains("roaming: ") && l.contains(" moved "))
        .and_then(|l| l.rsplit_once("roaming: "))
        .map(|(_, message)| message.to_string())
        .unwrap_or_else(|| panic!("no switch logged by the server's forwarder\n{log}"));
    println!("hometun daemons, {path:?}: {outage}; server: {switch}");
    // What the default level shows of the moves: one line each, naming the peer by its identity
    // (the daemons run with -v; the probing and IKE's following are debug detail).
    let moves = status["peers"][0]["moves"].as_u64().unwrap();
    let server_lines = info_lines_of_moves(&log);
    assert_eq!(server_lines.len() as u64, moves, "{server_lines:#?}");
    assert!(
        server_lines
            .iter()
            .all(|l| l.contains(HOME_NAME) && !l.contains("peer1")),
        "{server_lines:#?}"
    );
    let client_lines = info_lines_of_moves(&client.log_text());
    if path == Path4::Routed {
        assert_eq!(client_lines.len(), 1, "{client_lines:#?}");
        assert!(client_lines[0].contains(VPS_NAME), "{client_lines:#?}");
    } else {
        assert!(
            client_lines.is_empty(),
            "the home saw no change: {client_lines:#?}"
        );
    }
    println!("{}", server.status_table().unwrap());

    // The client's DELETE (SIGTERM) reaches the server from where the home is now.
    assert!(client.stop().unwrap().success());
    assert!(
        wait_for(Duration::from_secs(10), || server
            .status()
            .is_ok_and(|s| s["peers"]
                .as_array()
                .is_some_and(|p| p.is_empty()))),
        "the server kept the peer after the client's DELETE\n{}",
        logs(&[&server])
    );
    assert!(server.stop().unwrap().success());
}

/// The lines at info level that report an address move or a step of one.
fn info_lines_of_moves(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(" INFO "))
        .filter(|l| {
            [
                "moved",
                "probing",
                "IKE follows",
                "reaches us again",
                "MOBIKE",
            ]
            .iter()
            .any(|word| l.contains(word))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn roaming_ike_home_address_change_under_transfer() {
    if !require_root("roaming_ike_home_address_change_under_transfer") {
        return;
    }
    scenario(Path4::Routed, false);
}

#[test]
fn roaming_ike_home_forcing_udp_address_change_under_transfer() {
    if !require_root("roaming_ike_home_forcing_udp_address_change_under_transfer") {
        return;
    }
    scenario(Path4::Routed, true);
}

#[test]
fn roaming_ike_nat_public_address_change_under_transfer() {
    if !require_root("roaming_ike_nat_public_address_change_under_transfer") {
        return;
    }
    scenario(Path4::Nat, false);
}

/// Parses `tcpdump -x` output: the IPv4 packets' bytes, in order.
fn tcpdump_packets(text: &str) -> Vec<Vec<u8>> {
    let mut packets: Vec<Vec<u8>> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("0x")
            && let Some((_, hex)) = rest.split_once(':')
        {
            let digits: String = hex.chars().filter(|c| c.is_ascii_hexdigit()).collect();
            if let (Some(last), Ok(bytes)) = (packets.last_mut(), hex::decode(&digits)) {
                last.extend(bytes);
            }
        } else if !trimmed.is_empty() {
            packets.push(Vec::new());
        }
    }
    packets.retain(|p| !p.is_empty());
    packets
}

/// Inner length of the override NA (IPv6 40 + NA 24 + target link-layer option 8) sealed in
/// ESP with AES-GCM-16: SPI, sequence, IV, the NA padded with pad length and next header to a
/// multiple of 4, ICV; and the IPv4 header before it.
const NA_IN_RAW_ESP: usize = 20 + 4 + 4 + 8 + 76 + 16;

#[test]
fn roaming_ike_replayed_genuine_na_from_the_attacker_moves_nothing() {
    if !require_root("roaming_ike_replayed_genuine_na_from_the_attacker_moves_nothing") {
        return;
    }
    let mut lab = IkeRoamingLab::new(Path4::Routed).unwrap();
    let server = lab.start_server().unwrap();
    let client = lab.start_client().unwrap();
    assert!(
        wait_ping(&lab.home, VPS_INNER, Duration::from_secs(30)),
        "the tunnel did not come up\n{}",
        logs(&[&server, &client])
    );
    let home_spi =
        hometun_lab::ike_lab::spi(&client.status().unwrap()["peers"][0]["children"][0]["spi_out"])
            .unwrap();
    // At the ISP, the first ESP packets from the home's new address: the first is its
    // override NA (nothing else runs; its size says so too).
    let filter = format!("ip proto 50 and src host {HOME_SECOND}");
    let mut command = std::process::Command::new("ip");
    command.args([
        "netns",
        "exec",
        lab.isp.name(),
        "tcpdump",
        "-i",
        "ih",
        "-n",
        "-l",
        "-x",
        "--immediate-mode",
        "-c",
        "3",
        &filter,
    ]);
    let capture_log = lab.dir().join("tcpdump.txt");
    let capture = Guarded::spawn(command, "tcpdump", &capture_log).unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || std::fs::read_to_string(
            &capture_log
        )
        .is_ok_and(|t| t.contains("listening on"))),
        "tcpdump did not start"
    );
    lab.change_address().unwrap();
    let status = wait_status(&server, Duration::from_secs(20), |s| {
        peer_remote(s) == HOME_SECOND.to_string() && sas_at(s, &HOME_SECOND.to_string())
    })
    .unwrap_or_else(|| {
        panic!(
            "the genuine NA did not move the home\n{}",
            logs(&[&server, &client])
        )
    });
    let moves = status["peers"][0]["moves"].as_u64().unwrap();
    let _ = capture.wait(Duration::from_secs(10));
    let packets = tcpdump_packets(&std::fs::read_to_string(&capture_log).unwrap());
    let na = packets.first().unwrap_or_else(|| {
        panic!(
            "nothing captured: {}",
            std::fs::read_to_string(&capture_log).unwrap()
        )
    });
    assert_eq!(na.len(), NA_IN_RAW_ESP, "{packets:x?}");
    assert_eq!(
        u32::from_be_bytes(na[20..24].try_into().unwrap()),
        home_spi as u32
    );
    let seq = u32::from_be_bytes(na[24..28].try_into().unwrap());
    let log = server.log_text();
    assert!(
        log.contains(&format!("from {HOME_SECOND}")) && log.contains("override NA for"),
        "the server saw no override NA from the new address\n{log}"
    );

    // The attacker sends the captured ESP packet from its own address.
    let replays_before = drops(&server.status().unwrap(), "replay");
    let esp = hex::encode(&na[20..]);
    let sent = lab
        .attacker
        .output(
            roamtool().to_str().unwrap(),
            &[
                "send-esp",
                "raw",
                &ATTACKER.to_string(),
                &VPS_OUTER.to_string(),
                &esp,
            ],
        )
        .unwrap();
    assert!(sent.status.success(), "{sent:?}");
    let status = wait_status(&server, Duration::from_secs(10), |s| {
        drops(s, "replay") > replays_before
    })
    .unwrap_or_else(|| {
        panic!(
            "the replay was not counted: {:#}\n{}",
            server.status().unwrap(),
            logs(&[&server])
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let status_after = server.status().unwrap();
    assert_eq!(peer_remote(&status_after), HOME_SECOND.to_string());
    assert!(
        sas_at(&status_after, &HOME_SECOND.to_string()),
        "{status_after:#}"
    );
    assert_eq!(status_after["peers"][0]["moves"].as_u64(), Some(moves));
    assert!(
        !server.log_text().contains(&format!("from {ATTACKER}")),
        "the attacker's packet got past the replay window\n{}",
        server.log_text()
    );
    assert!(ping6(&lab.home, VPS_INNER, 3).unwrap());
    let table = server.status_table().unwrap();
    assert!(table.contains("replay "), "{table}");
    println!(
        "replayed NA (ESP seq {seq}) from {ATTACKER}: dropped as Replay ({} in all); the home stays at {HOME_SECOND}\n{table}",
        drops(&status, "replay")
    );
    assert!(client.stop().unwrap().success());
    assert!(server.stop().unwrap().success());
}
