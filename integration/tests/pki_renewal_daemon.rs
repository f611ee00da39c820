//! The client daemon renews its certificate on its own when `[renew]` says it is due, over
//! the server's enrollment listener, and re-authenticates with it make-before-break: the home
//! keeps its prefix and its tunnel, and a ping every 20 ms across the renewal loses nothing.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::Path;
use std::time::Duration;

use hometun_lab::ike_lab::{Setup, VPS_INNER, edit_client, logs, wait_ping};
use hometun_lab::require_root;
use hometun_lab::roaming_lab::{RoamingTools, TransferUnderPing};
use rustls_pki_types::pem::PemObject;

fn serial_of(pem_file: &Path) -> String {
    let pem = std::fs::read_to_string(pem_file).unwrap();
    let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    hometun_certs::verify::describe(&der)
        .unwrap()
        .serial
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn the_client_renews_its_certificate_and_keeps_its_tunnel() {
    if !require_root("the_client_renews_its_certificate_and_keeps_its_tunnel") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    let client_toml = &setup.client_tomls[0];
    // Due at once: "at least 1000 days before it expires" lies in the past of a 730-day
    // certificate.
    edit_client(client_toml, |c| c.renew.before_days = 1000).unwrap();
    let certificate = client_toml.parent().unwrap().join("client.pem");
    let before = serial_of(&certificate);
    let server = setup.start_server().unwrap();
    let client = setup.start_client(0).unwrap();
    assert!(
        wait_ping(&setup.lab.home().ns, VPS_INNER, Duration::from_secs(20)),
        "no tunnel\n{}",
        logs(&[&server, &client])
    );
    let tools = RoamingTools {
        nettool: Path::new(env!("CARGO_BIN_EXE_hometun-nettool")),
        roamtool: Path::new(env!("CARGO_BIN_EXE_hometun-roamtool")),
    };
    // 20 s of pings (and a slow TCP stream) across the renewal, which starts 10 s after the
    // client did.
    let load = TransferUnderPing::start(
        &tools,
        &setup.lab.home().ns,
        &setup.lab.vps.ns,
        VPS_INNER,
        (2_500_000, 1),
        1000,
    )
    .unwrap();
    assert!(
        client.wait_log("certificate renewed", Duration::from_secs(30)),
        "no renewal\n{}",
        logs(&[&server, &client])
    );
    assert!(
        server.wait_log("peer re-authenticated", Duration::from_secs(10)),
        "no re-authentication\n{}",
        logs(&[&server, &client])
    );
    let outcome = load.finish(Duration::from_secs(60)).unwrap();
    assert_eq!(outcome.received, outcome.sent, "SHA-256 differs");
    let lost = outcome
        .pings
        .lines()
        .find_map(|l| l.strip_prefix("sent "))
        .and_then(|n| n.parse::<usize>().ok())
        .map(|sent| {
            sent - outcome
                .pings
                .lines()
                .filter(|l| l.starts_with("reply "))
                .count()
        })
        .unwrap();
    assert_eq!(
        lost,
        0,
        "pings lost across the renewal\n{}",
        logs(&[&server, &client])
    );
    let after = serial_of(&certificate);
    assert_ne!(before, after, "the certificate file was not replaced");
    let status = server.status().unwrap();
    let peers = status["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "{status:#}");
    assert_eq!(peers[0]["prefixes"][0], "2001:db8:100:1::/64", "{status:#}");
    assert!(
        !client.log_text().contains("peer down") && !server.log_text().contains("peer down"),
        "{}",
        logs(&[&server, &client])
    );
    eprintln!(
        "renewed: serial {before} -> {after}; 0 of {} pings lost",
        outcome
            .pings
            .lines()
            .filter(|l| l.starts_with("reply "))
            .count()
    );
    assert!(client.stop().unwrap().success());
    assert!(server.stop().unwrap().success());
}
