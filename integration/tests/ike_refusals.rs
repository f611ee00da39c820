//! Clients the server must refuse, while it keeps serving a good one: a certificate from
//! another CA and an expired certificate of the right CA. Each is refused with
//! AUTHENTICATION_FAILED (the client logs it), the server logs one clear line with the reason,
//! and no SA is installed for it.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::time::Duration;

use hometun_lab::ike_lab::{Daemon, Pki, Setup, VPS_INNER, logs, ping6, wait_ping};
use hometun_lab::require_root;

/// Starts a client that must be refused in the second home's namespace; checks both logs and
/// that the server's forwarder holds nothing of it.
fn refused(setup: &Setup, server: &Daemon, config: &std::path::Path, name: &str, reason: &str) {
    let log = setup.lab.dir().join(format!("{name}.log"));
    let client = Daemon::start(&setup.lab.homes[1].ns, "client", config, &log).unwrap();
    let server_line = |text: &str| {
        text.lines()
            .find(|l| l.contains("refused") && l.contains(name))
            .map(str::to_string)
    };
    assert!(
        client.wait_log("AUTHENTICATION_FAILED", Duration::from_secs(20)),
        "{name}: the client did not report AUTHENTICATION_FAILED\n{}",
        logs(&[server, &client])
    );
    let line = server_line(&server.log_text()).unwrap_or_else(|| {
        panic!(
            "{name}: no refusal line on the server\n{}",
            logs(&[server, &client])
        )
    });
    assert!(line.contains(reason), "{name}: {line}");
    assert!(
        line.contains("192.0.2.3"),
        "{name}: the line names no address: {line}"
    );
    eprintln!("server: {line}");
    let status = server.status().unwrap();
    let peers = status["peers"].as_array().unwrap();
    assert!(
        peers.iter().all(|p| p["name"] != name),
        "{name} has an IKE SA: {status:#}"
    );
    let good: Vec<u64> = peers.iter().filter_map(|p| p["peer"].as_u64()).collect();
    let sas = status["counters"]["sas"].as_array().unwrap();
    assert!(
        sas.iter()
            .all(|sa| good.contains(&sa["peer"].as_u64().unwrap())),
        "an SA for a refused client: {status:#}"
    );
    // A refused client keeps trying with backoff; SIGTERM stops it cleanly (its TUN goes).
    let status = client.stop().unwrap();
    assert!(status.success(), "{name}: exit {status}");
}

#[test]
fn foreign_ca_and_expired_certificates_are_refused() {
    if !require_root("foreign_ca_and_expired_certificates_are_refused") {
        return;
    }
    let setup = Setup::new(2).unwrap();
    let lab = &setup.lab;
    let server = setup.start_server().unwrap();
    let good = setup.start_client(0).unwrap();
    assert!(
        wait_ping(&lab.home().ns, VPS_INNER, Duration::from_secs(30)),
        "the good client did not come up\n{}",
        logs(&[&server, &good])
    );

    // Another CA, with a server of the same name: its client's chain leads nowhere here.
    let other = Pki::init(&lab.dir().join("other-ca")).unwrap();
    let stranger = other
        .client(&lab.dir().join("stranger"), "stranger.example")
        .unwrap();
    refused(
        &setup,
        &server,
        &stranger,
        "stranger.example",
        // Another CA with the same name as ours: "does not verify with the configured CA's key";
        // one with another name: "not issued by the configured CA".
        "configured CA",
    );

    // Our CA, but expired a month ago.
    let expired = setup
        .pki
        .expired_client(
            &lab.dir().join("old"),
            "old.example",
            "2001:db8:100:99::/64",
            &setup.client_tomls[0],
        )
        .unwrap();
    refused(&setup, &server, &expired, "old.example", "expired");

    // The good client never noticed.
    assert!(
        ping6(&lab.home().ns, VPS_INNER, 3).unwrap(),
        "the good client lost its tunnel\n{}",
        logs(&[&server, &good])
    );
    let status = server.status().unwrap();
    assert_eq!(status["peers"].as_array().unwrap().len(), 1, "{status:#}");
    assert_eq!(status["peers"][0]["name"], "home.example");
    assert!(good.stop().unwrap().success());
    assert!(server.stop().unwrap().success());
}
