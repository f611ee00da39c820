//! A revoked home is refused by `hometun server`: `hometun pki revoke` publishes the CRL that
//! server.toml's `server.crl` names; the server, started after the revocation, refuses that
//! home in IKE_AUTH with AUTHENTICATION_FAILED and a log line naming it as revoked, installs
//! nothing for it, and keeps serving another home of the same CA.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use hometun_lab::ike_lab::{Daemon, Setup, VPS_INNER, hometun, ping6, wait_ping};
use hometun_lab::pki_lab::{arg, logs, nothing_installed_for, pki_list, printed, wait_refusal};
use hometun_lab::require_root;

#[test]
fn a_revoked_home_is_refused_and_the_other_keeps_its_tunnel() {
    if !require_root("a_revoked_home_is_refused_and_the_other_keeps_its_tunnel") {
        return;
    }
    let started = Instant::now();
    // home.example at 192.0.2.2 and home2.example at 192.0.2.3, both issued by `pki sign`.
    let setup = Setup::new(2).unwrap();
    let lab = &setup.lab;
    let revoked_name = "home2.example";

    let out = hometun(&[
        "pki",
        "revoke",
        "--dir",
        arg(&setup.pki.dir).unwrap(),
        "--name",
        revoked_name,
    ])
    .unwrap();
    eprint!("{}", printed(&out));
    assert!(printed(&out).contains("CRL published"), "{}", printed(&out));
    let listed = pki_list(&setup.pki.dir).unwrap();
    let entry = listed.iter().find(|l| l.name == revoked_name).unwrap();
    assert_eq!(entry.status, "revoked", "{listed:?}");
    // The server reads the CRL the revocation wrote.
    let crl = hometun_config::ServerConfig::load(&setup.server_toml)
        .unwrap()
        .server
        .crl
        .expect("pki init names a CRL in server.toml");
    assert!(crl.exists());

    let server = setup.start_server().unwrap();
    let good = setup.start_client(0).unwrap();
    assert!(
        wait_ping(&lab.home().ns, VPS_INNER, Duration::from_secs(30)),
        "the good home did not come up\n{}",
        logs(&[&server, &good])
    );

    let bad = Daemon::start(
        &lab.homes[1].ns,
        "client",
        &setup.client_tomls[1],
        &lab.dir().join("revoked.log"),
    )
    .unwrap();
    assert!(
        bad.wait_log("AUTHENTICATION_FAILED", Duration::from_secs(20)),
        "the revoked home was not told AUTHENTICATION_FAILED\n{}",
        logs(&[&server, &bad])
    );
    let line = wait_refusal(&server, revoked_name, Duration::from_secs(5)).unwrap_or_else(|| {
        panic!(
            "no refusal line naming {revoked_name}\n{}",
            logs(&[&server, &bad])
        )
    });
    assert!(line.contains("revoked"), "{line}");
    assert!(line.contains("192.0.2.3"), "{line}");
    eprintln!("server: {line}");
    eprintln!(
        "revoked home: {}",
        bad.log_text()
            .lines()
            .find(|l| l.contains("AUTHENTICATION_FAILED"))
            .unwrap_or_default()
    );

    // Nothing installed for it; its prefix is not reachable through the tunnel.
    let status = server.status().unwrap();
    nothing_installed_for(&status, revoked_name).unwrap();
    let peers = status["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "{status:#}");
    assert_eq!(peers[0]["name"], "home.example");
    assert!(
        !ping6(&lab.homes[1].ns, VPS_INNER, 1).unwrap(),
        "the revoked home reached the VPS"
    );

    // The other home never noticed.
    assert!(
        ping6(&lab.home().ns, VPS_INNER, 3).unwrap(),
        "the good home lost its tunnel\n{}",
        logs(&[&server, &good])
    );
    // The revoked home keeps retrying with backoff; every try is refused the same way.
    assert!(bad.stop().unwrap().success());
    assert!(good.stop().unwrap().success());
    assert!(server.stop().unwrap().success());
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
}
