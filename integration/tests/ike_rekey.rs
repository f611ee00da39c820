//! A CHILD SA rekey forced by a small byte limit (`[limits] rekey_bytes`) during a 100 MB TCP
//! transfer between `hometun client` and `hometun server`: the transfer arrives intact
//! (SHA-256 on both ends), the logs show the rekeys, `hometun status` shows new SPIs, and no
//! packet was dropped for a hard limit (make-before-break).

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::Path;
use std::time::{Duration, Instant};

use hometun_lab::ike_lab::{
    Daemon, Setup, VPS_INNER, edit_client, edit_server, logs, ping6, tcp_transfer, wait_ping,
};
use hometun_lab::require_root;

const TRANSFER_BYTES: u64 = 100 * 1024 * 1024;
/// Rekey after 24 MB in either direction: four or more rekeys during the transfer.
const REKEY_BYTES: u64 = 24 * 1024 * 1024;

fn nettool() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hometun-nettool"))
}

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

fn drops(status: &serde_json::Value, reason: &str) -> u64 {
    status["counters"]["sas"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|sa| sa["drops"].as_array().cloned().unwrap_or_default())
        .filter(|d| d[0] == reason)
        .filter_map(|d| d[1].as_u64())
        .sum()
}

#[test]
fn child_sa_rekey_by_bytes_during_a_transfer() {
    if !require_root("child_sa_rekey_by_bytes_during_a_transfer") {
        return;
    }
    let started = Instant::now();
    let setup = Setup::new(1).unwrap();
    let lab = &setup.lab;
    // Both sides count; whichever reaches the soft limit first starts the rekey.
    edit_server(&setup.server_toml, |c| c.limits.rekey_bytes = REKEY_BYTES).unwrap();
    edit_client(&setup.client_tomls[0], |c| {
        c.limits.rekey_bytes = REKEY_BYTES
    })
    .unwrap();
    let server = setup.start_server().unwrap();
    let client = setup.start_client(0).unwrap();
    assert!(
        wait_ping(&lab.home().ns, VPS_INNER, Duration::from_secs(30)),
        "the tunnel did not come up\n{}",
        logs(&[&server, &client])
    );
    let first_server = inbound_spis(&server.status().unwrap());
    let first_client = inbound_spis(&client.status().unwrap());
    assert_eq!(first_server.len(), 1, "{first_server:?}");

    let (sent, received) = tcp_transfer(
        nettool(),
        &lab.vps.ns,
        &lab.home().ns,
        VPS_INNER,
        5002,
        TRANSFER_BYTES,
    )
    .unwrap_or_else(|e| panic!("transfer: {e:#}\n{}", logs(&[&server, &client])));
    assert!(sent.starts_with(&format!("{TRANSFER_BYTES} ")), "{sent}");
    assert_eq!(received, sent, "SHA-256 differs between the ends");
    assert!(
        ping6(&lab.home().ns, VPS_INNER, 3).unwrap(),
        "ping6 after the rekeys"
    );

    let rekeys = |d: &Daemon| d.log_text().matches("CHILD SA rekeyed").count();
    let (server_rekeys, client_rekeys) = (rekeys(&server), rekeys(&client));
    assert!(
        server_rekeys + client_rekeys >= 2,
        "expected rekeys in the logs (server {server_rekeys}, client {client_rekeys})\n{}",
        logs(&[&server, &client])
    );
    // The old pairs go once their successors carried traffic (checked at each counter report,
    // every second); give that a few reports.
    let replaced =
        |first: &[u64], now: &[u64]| !now.is_empty() && now.iter().all(|s| !first.contains(s));
    let deadline = Instant::now() + Duration::from_secs(12);
    let (server_status, now_server, now_client) = loop {
        let server_status = server.status().unwrap();
        let now_server = inbound_spis(&server_status);
        let now_client = inbound_spis(&client.status().unwrap());
        if (replaced(&first_server, &now_server) && replaced(&first_client, &now_client))
            || Instant::now() > deadline
        {
            break (server_status, now_server, now_client);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        replaced(&first_server, &now_server),
        "server SPIs {first_server:x?} -> {now_server:x?}\n{}",
        logs(&[&server, &client])
    );
    assert!(
        replaced(&first_client, &now_client),
        "client SPIs {first_client:x?} -> {now_client:x?}"
    );
    for reason in ["hard-limit", "no-sa", "auth-failed"] {
        assert_eq!(
            drops(&server_status, reason),
            0,
            "{reason} drops: {server_status:#}"
        );
    }
    let table = server.status_table().unwrap();
    eprintln!("{table}");
    eprintln!(
        "rekeys: server {server_rekeys}, client {client_rekeys}; SPIs {first_server:x?} -> {now_server:x?}; {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(client.stop().unwrap().success());
    assert!(server.stop().unwrap().success());
}
