//! A revocation applies without SIGHUP: `hometun pki revoke` says the running server applies it
//! within a few seconds, and it does: the revoked home's SAs go (DELETE, one line naming it),
//! it is refused when it tries again and says once what to do, and the other home keeps its
//! tunnel.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use hometun_lab::ike_lab::{Daemon, Setup, VPS_INNER, hometun, logs, ping6, wait_ping};
use hometun_lab::{require_root, wait_for};

/// The IKE SPIs of `name`'s IKE SA in the server's status.
fn ike_spis(server: &Daemon, name: &str) -> Option<serde_json::Value> {
    let status = server.status().ok()?;
    status["peers"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["ike_spis"].clone())
}

#[test]
fn a_revoked_home_is_dropped_without_sighup_and_the_other_stays() {
    if !require_root("a_revoked_home_is_dropped_without_sighup_and_the_other_stays") {
        return;
    }
    let setup = Setup::new(2).unwrap();
    let lab = &setup.lab;
    let server = setup.start_server().unwrap();
    let clients: Vec<Daemon> = (0..2).map(|i| setup.start_client(i).unwrap()).collect();
    for (i, client) in clients.iter().enumerate() {
        assert!(
            wait_ping(&lab.homes[i].ns, VPS_INNER, Duration::from_secs(30)),
            "home {i} did not come up\n{}",
            logs(&[&server, client])
        );
    }
    let kept = ike_spis(&server, "home.example").unwrap();

    let revoked_at = Instant::now();
    let out = hometun(&[
        "pki",
        "revoke",
        "--dir",
        setup.pki.dir.to_str().unwrap(),
        "--name",
        "home2.example",
    ])
    .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("a running hometun server applies it within 2 s"),
        "{said}"
    );
    // No SIGHUP: the server finds the new CRL by itself.
    let line = "deleted the SAs of home2.example";
    assert!(
        wait_for(Duration::from_secs(5), || server.log_text().contains(line)),
        "the revoked home kept its SAs\n{}",
        logs(&[&server, &clients[1]])
    );
    let took = revoked_at.elapsed();
    eprintln!("revocation applied {took:?} after pki revoke");
    assert!(took <= Duration::from_millis(3500), "{took:?}");
    let log = server.log_text();
    let dropped: Vec<&str> = log.lines().filter(|l| l.contains(line)).collect();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert!(dropped[0].contains("revoked"), "{}", dropped[0]);
    assert!(!log.contains("SIGHUP"), "{log}");

    // It tries again and is refused, every time; it says once what to do.
    assert!(
        clients[1].wait_log("AUTHENTICATION_FAILED", Duration::from_secs(10)),
        "{}",
        clients[1].log_text()
    );
    std::thread::sleep(Duration::from_secs(8));
    assert!(!ping6(&lab.homes[1].ns, VPS_INNER, 2).unwrap());
    assert!(ike_spis(&server, "home2.example").is_none());
    let home2 = clients[1].log_text();
    let told = home2
        .lines()
        .filter(|l| l.contains("re-enroll with `hometun enroll`"))
        .count();
    assert_eq!(told, 1, "not said once:\n{home2}");
    let refused = log_refusals(&server, "home2.example");
    assert!(refused >= 2, "{refused} refusals: it stopped trying?");

    // The other home kept its IKE SA and its traffic.
    assert_eq!(ike_spis(&server, "home.example").unwrap(), kept);
    assert!(ping6(&lab.homes[0].ns, VPS_INNER, 3).unwrap());
}

fn log_refusals(server: &Daemon, name: &str) -> usize {
    server
        .log_text()
        .lines()
        .filter(|l| l.contains("refused") && l.contains(name) && l.contains("revoked"))
        .count()
}
