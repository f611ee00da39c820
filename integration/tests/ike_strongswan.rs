//! Interoperability with strongSwan 5.9 (charon with kernel-libipsec: userspace ESP, which
//! strongSwan always puts in UDP 4500, faking the NAT detection hashes), certificates from
//! `hometun pki`, in network namespaces:
//! - a strongSwan client connects to `hometun server`;
//! - `hometun client` connects to a strongSwan server (and `hometun ike probe` reads its
//!   answer first).
//!
//! Each carries ping6 and 100 MB of TCP checked by SHA-256, once plainly and once with a small
//! byte limit on one side so that CHILD SAs are rekeyed during the transfer (strongSwan's
//! `rekey_bytes` when it is the client, hometun's `[limits] rekey_bytes` when hometun is). When
//! strongSwan refuses something, charon's log (in the failure message) says why;
//! `HOMETUN_CHARON_IKE_LOG=4` shows more.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::Path;
use std::time::{Duration, Instant};

use hometun_lab::ike_lab::{
    Daemon, HOME_PREFIX, OuterCounters, Setup, VPS_INNER, VPS_NAME, edit_client, ping6,
    tcp_transfer, wait_ping,
};
use hometun_lab::strongswan::{Charon, CharonSpec, lab_can_run, logs};

const TRANSFER_BYTES: u64 = 100 * 1024 * 1024;
/// The byte limit of the rekey variants: several rekeys during the transfer.
const REKEY_BYTES: u64 = 24 * 1024 * 1024;

fn inbound_spis(status: &serde_json::Value) -> Vec<u64> {
    status["peers"][0]["children"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|c| hometun_lab::ike_lab::spi(&c["spi_in"]))
                .collect()
        })
        .unwrap_or_default()
}

/// After a transfer with rekeys: the daemon logged them, the first pair is gone (at once when
/// the peer deleted it, or once hometun's make-before-break grace ran out), nothing was dropped
/// for want of an SA or a key.
fn check_rekeyed(daemon: &Daemon, charon: &Charon, before: &[u64]) {
    let rekeys = daemon.log_text().matches("CHILD SA rekeyed").count();
    assert!(
        rekeys >= 2,
        "{rekeys} rekeys logged\n{}",
        logs(daemon, charon)
    );
    let waited = Instant::now();
    let replaced = hometun_lab::wait_for(Duration::from_secs(30), || {
        daemon.status().is_ok_and(|status| {
            let now = inbound_spis(&status);
            !now.is_empty() && now.iter().all(|s| !before.contains(s))
        })
    });
    let status = daemon.status().unwrap();
    let now = inbound_spis(&status);
    assert!(
        replaced,
        "SPIs {before:x?} -> {now:x?}\n{}",
        logs(daemon, charon)
    );
    for sa in status["counters"]["sas"].as_array().unwrap() {
        for drop in sa["drops"].as_array().unwrap() {
            assert!(
                !["HardLimit", "AuthFailed", "NoSa"].contains(&drop[0].as_str().unwrap_or("")),
                "{status:#}"
            );
        }
    }
    eprintln!(
        "{rekeys} CHILD SA rekeys; inbound SPIs {before:x?} -> {now:x?} ({:.1} s after the transfer)",
        waited.elapsed().as_secs_f64()
    );
}

fn nettool() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hometun-nettool"))
}

fn transfer(setup: &Setup, daemon: &Daemon, charon: &Charon) -> Duration {
    let lab = &setup.lab;
    assert!(
        ping6(&lab.home().ns, VPS_INNER, 5).unwrap(),
        "ping6 lost packets\n{}",
        logs(daemon, charon)
    );
    let started = Instant::now();
    let (sent, received) = tcp_transfer(
        nettool(),
        &lab.vps.ns,
        &lab.home().ns,
        VPS_INNER,
        5001,
        TRANSFER_BYTES,
    )
    .unwrap_or_else(|e| panic!("transfer: {e:#}\n{}", logs(daemon, charon)));
    let took = started.elapsed();
    assert!(sent.starts_with(&format!("{TRANSFER_BYTES} ")), "{sent}");
    assert_eq!(received, sent, "SHA-256 differs between the ends");
    took
}

#[test]
fn strongswan_client_to_hometun_server() {
    if lab_can_run("strongswan_client_to_hometun_server") {
        strongswan_client(false);
    }
}

#[test]
fn strongswan_client_rekeys_with_hometun_server() {
    if lab_can_run("strongswan_client_rekeys_with_hometun_server") {
        strongswan_client(true);
    }
}

#[test]
fn hometun_client_to_strongswan_server() {
    if lab_can_run("hometun_client_to_strongswan_server") {
        hometun_client(false);
    }
}

#[test]
fn hometun_client_rekeys_with_strongswan_server() {
    if lab_can_run("hometun_client_rekeys_with_strongswan_server") {
        hometun_client(true);
    }
}

/// A strongSwan client (rekeying after `REKEY_BYTES` when `rekey`) and `hometun server`.
fn strongswan_client(rekey: bool) {
    let started = Instant::now();
    let setup = Setup::new(1).unwrap();
    let lab = &setup.lab;
    let outer = OuterCounters::install(&lab.vps.ns).unwrap();
    let server = setup.start_server().unwrap();
    // strongSwan takes its inner source address from a local interface inside its TS.
    let home_address = "2001:db8:100:1::1/128";
    lab.home()
        .ns
        .ip(&["-6", "addr", "add", home_address, "dev", "lo"])
        .unwrap();
    let home_dir = setup.client_tomls[0].parent().unwrap().to_path_buf();
    let charon_dir = lab.dir().join("charon-home");
    std::fs::create_dir_all(&charon_dir).unwrap();
    let charon = Charon::start(
        &lab.home().ns,
        &charon_dir,
        &CharonSpec {
            local_addr: lab.home().addr.to_string(),
            remote_addr: lab.vps.addr.to_string(),
            local_id: "home.example".into(),
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
            child_extra: if rekey {
                format!("        rekey_bytes = {REKEY_BYTES}")
            } else {
                String::new()
            },
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
        wait_ping(&lab.home().ns, VPS_INNER, Duration::from_secs(20)),
        "no ping6 through the tunnel\n{}",
        logs(&server, &charon)
    );
    let up = started.elapsed();
    let status = server.status().unwrap();
    let peer = &status["peers"][0];
    assert_eq!(peer["name"], "home.example", "{status:#}");
    assert_eq!(peer["prefixes"][0], HOME_PREFIX, "{status:#}");
    // libipsec fakes NAT detection: ESP in UDP 4500.
    assert_eq!(peer["nat"], true, "{status:#}");
    let before = inbound_spis(&status);
    let took = transfer(&setup, &server, &charon);
    if rekey {
        check_rekeyed(&server, &charon, &before);
    }
    let outer = outer.read(&lab.vps.ns).unwrap();
    assert!(outer.udp_bytes > TRANSFER_BYTES, "only {outer:?}");
    eprintln!("{}", server.status_table().unwrap());
    eprintln!(
        "strongSwan client -> hometun server: up {:.2} s, 100 MB in {:.2} s ({:.0} Mbit/s)",
        up.as_secs_f64(),
        took.as_secs_f64(),
        TRANSFER_BYTES as f64 * 8.0 / took.as_secs_f64() / 1e6
    );
    // strongSwan deletes its IKE SA; the server drops the peer.
    charon
        .swanctl(&["--terminate", "--ike", "home", "--timeout", "10"])
        .unwrap();
    assert!(
        hometun_lab::wait_for(Duration::from_secs(10), || server
            .status()
            .is_ok_and(|s| s["peers"].as_array().is_some_and(|p| p.is_empty()))),
        "the server kept the peer after strongSwan's DELETE\n{}",
        logs(&server, &charon)
    );
    charon.stop();
    assert!(server.stop().unwrap().success());
}

/// `hometun client` (rekeying after `REKEY_BYTES` when `rekey`) and a strongSwan server.
fn hometun_client(rekey: bool) {
    let started = Instant::now();
    let setup = Setup::new(1).unwrap();
    let lab = &setup.lab;
    if rekey {
        // This home also forces ESP in UDP: strongSwan then gets a NAT_DETECTION_SOURCE_IP that
        // names no address of the home's, as from its own `encap = yes`.
        edit_client(&setup.client_tomls[0], |c| {
            c.limits.rekey_bytes = REKEY_BYTES;
            c.client.force_udp_encapsulation = true;
        })
        .unwrap();
    }
    let charon_dir = lab.dir().join("charon-vps");
    std::fs::create_dir_all(&charon_dir).unwrap();
    let ca = &setup.pki.dir;
    let charon = Charon::start(
        &lab.vps.ns,
        &charon_dir,
        &CharonSpec {
            local_addr: lab.vps.addr.to_string(),
            remote_addr: "%any".into(),
            local_id: VPS_NAME.into(),
            remote_id: "home.example".into(),
            cert: ca.join("server.pem"),
            key: ca.join("server.key"),
            ca: ca.join("ca.pem"),
            local_ts: "::/0".into(),
            remote_ts: HOME_PREFIX.into(),
            proposals: "aes128gcm16-prfsha256-x25519".into(),
            esp_proposals: "aes128gcm16-x25519".into(),
            charon_extra: String::new(),
            connection_extra: String::new(),
            child_extra: String::new(),
        },
    )
    .unwrap();

    // The probe reads strongSwan's answer.
    let probe = lab
        .home()
        .ns
        .output(
            hometun_lab::hometun_bin().unwrap().to_str().unwrap(),
            &["ike", "probe", "192.0.2.1"],
        )
        .unwrap();
    let printed = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.status.success(),
        "probe: {printed}{}\n{}",
        String::from_utf8_lossy(&probe.stderr),
        charon.log()
    );
    assert!(
        printed.contains("chosen:   aes128gcm16-prfsha256-x25519"),
        "{printed}"
    );
    eprintln!("hometun ike probe against strongSwan:\n{printed}");

    let client = setup.start_client(0).unwrap();
    assert!(
        wait_ping(&lab.home().ns, VPS_INNER, Duration::from_secs(30)),
        "the tunnel did not come up\n{}",
        logs(&client, &charon)
    );
    let up = started.elapsed();
    let status = client.status().unwrap();
    let peer = &status["peers"][0];
    assert_eq!(peer["name"], VPS_NAME, "{status:#}");
    assert_eq!(
        peer["nat"], true,
        "strongSwan's faked NAT-D was not seen: {status:#}"
    );
    let sas = status["counters"]["sas"].as_array().unwrap();
    assert!(
        sas.iter()
            .all(|sa| sa["endpoint"]["encap"]["udp"].is_object()),
        "{status:#}"
    );
    let before = inbound_spis(&status);
    let took = transfer(&setup, &client, &charon);
    if rekey {
        check_rekeyed(&client, &charon, &before);
    }
    eprintln!("{}", client.status_table().unwrap());
    eprintln!(
        "hometun client -> strongSwan server: up {:.2} s, 100 MB in {:.2} s ({:.0} Mbit/s)",
        up.as_secs_f64(),
        took.as_secs_f64(),
        TRANSFER_BYTES as f64 * 8.0 / took.as_secs_f64() / 1e6
    );
    // The client's SIGTERM deletes the IKE SA at strongSwan, and waits for its answer.
    let client_log = client.log.clone();
    assert!(client.stop().unwrap().success());
    assert!(
        hometun_lab::wait_for(Duration::from_secs(10), || !charon
            .list_sas()
            .contains("ESTABLISHED")),
        "strongSwan kept the IKE SA after the client's DELETE:\n{}\n--- {}:\n{}\n--- charon.log:\n{}",
        charon.list_sas(),
        client_log.display(),
        hometun_lab::ike_lab::strip_ansi(&std::fs::read_to_string(&client_log).unwrap_or_default()),
        charon.log()
    );
    charon.stop();
}
