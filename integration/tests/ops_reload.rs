//! SIGHUP: `hometun server` reads its configuration again. A good new config is taken
//! (logged with what changed) and the running tunnel keeps its IKE and CHILD SAs; a bad one is
//! refused with the same one-line error start-up gives, logged, and the running one stays; a
//! change that needs a restart (the interface name) is refused with a line saying so; and a
//! CRL published by `hometun pki revoke` takes effect at the reload: the revoked home, which
//! still got in before it, has its SAs deleted then and is refused at its next connection,
//! while the other home's tunnel carries on.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::Path;
use std::time::Duration;

use hometun_lab::ike_lab::{Daemon, Setup, VPS_INNER, edit_server, hometun, logs, wait_ping};
use hometun_lab::{require_root, wait_for};

fn sighup(daemon: &Daemon) {
    // SAFETY: kill has no memory preconditions; the pid is our daemon's.
    unsafe { libc::kill(daemon.pid() as i32, libc::SIGHUP) };
}

/// Sends SIGHUP and waits for the next reload line of the log (counting `SIGHUP:` lines).
fn reload(daemon: &Daemon) -> String {
    let before = daemon.log_text().matches("SIGHUP: ").count();
    sighup(daemon);
    assert!(
        wait_for(Duration::from_secs(10), || daemon
            .log_text()
            .matches("SIGHUP: ")
            .count()
            > before),
        "no reload line after SIGHUP\n{}",
        daemon.log_text()
    );
    daemon
        .log_text()
        .lines()
        .filter(|l| l.contains("SIGHUP: "))
        .nth(before)
        .unwrap()
        .to_string()
}

/// The IKE SPIs and CHILD SA SPIs of the first peer in a status answer.
fn spis(status: &serde_json::Value) -> (String, Vec<u64>) {
    let peer = &status["peers"][0];
    let ike = format!("{}/{}", peer["ike_spis"][0], peer["ike_spis"][1]);
    let children = peer["children"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|c| hometun_lab::ike_lab::spi(&c["spi_in"]))
                .collect()
        })
        .unwrap_or_default();
    (ike, children)
}

fn one_line_error_of_start(config: &Path) -> String {
    let output = std::process::Command::new(hometun_lab::hometun_bin().unwrap())
        .args(["server", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
        .strip_prefix("hometun: ")
        .unwrap_or(&stderr)
        .to_string()
}

#[test]
fn sighup_reload_good_bad_restart_and_crl() {
    if !require_root("sighup_reload_good_bad_restart_and_crl") {
        return;
    }
    let setup = Setup::new(2).unwrap();
    let lab = &setup.lab;
    let server = setup.start_server().unwrap();
    let home = setup.start_client(0).unwrap();
    assert!(
        wait_ping(&lab.home().ns, VPS_INNER, Duration::from_secs(30)),
        "the tunnel did not come up\n{}",
        logs(&[&server, &home])
    );
    let running = spis(&server.status().unwrap());
    assert!(!running.1.is_empty(), "{:#}", server.status().unwrap());

    // A good new config: other limits and liveness timer. Taken, the SAs stay.
    let config = setup.server_toml.clone();
    edit_server(&config, |c| {
        c.limits.rekey_bytes = 1 << 30;
        c.ike.dpd_seconds = 45;
    })
    .unwrap();
    let line = reload(&server);
    assert!(
        line.contains("reloaded: changed ike.dpd_seconds, limits.rekey_bytes;")
            || line.contains("changed ike.dpd_seconds, limits.rekey_bytes;"),
        "{line}"
    );
    assert!(line.contains("CRL read again"), "{line}");
    assert_eq!(spis(&server.status().unwrap()), running, "SAs changed");
    assert!(wait_ping(&lab.home().ns, VPS_INNER, Duration::from_secs(5)));

    // A bad one: the same one-line error start-up gives, and the running config stays.
    let good_text = std::fs::read_to_string(&config).unwrap();
    let bad = good_text.replace("mtu = 1400", "mtu = 99999");
    assert_ne!(bad, good_text, "no mtu line in\n{good_text}");
    std::fs::write(&config, &bad).unwrap();
    let error = one_line_error_of_start(&config);
    assert!(error.contains("tunnel.mtu: 99999 is outside"), "{error}");
    let line = reload(&server);
    assert!(
        line.contains(&format!(
            "reload refused, the running configuration stays: {error}"
        )),
        "{line}\nexpected: {error}"
    );
    assert!(line.contains("ERROR"), "{line}");
    // A missing certificate is refused the same way.
    let bad = good_text.replace("server.pem", "missing.pem");
    std::fs::write(&config, &bad).unwrap();
    let line = reload(&server);
    assert!(
        line.contains("reload refused") && line.contains("missing.pem"),
        "{line}"
    );
    // `hometun status` still reaches the daemon through the broken file, which names its socket,
    // and through a file that is not TOML at all.
    assert_eq!(spis(&server.status().unwrap()), running, "SAs changed");
    std::fs::write(&config, format!("{good_text}\n[[[\n")).unwrap();
    assert_eq!(spis(&server.status().unwrap()), running, "not TOML");
    assert!(server.status_table().unwrap().contains("home.example"));

    // A change that needs a restart.
    std::fs::write(&config, &good_text).unwrap();
    edit_server(&config, |c| c.tunnel.interface = "hometun9".into()).unwrap();
    let line = reload(&server);
    assert!(
        line.contains(
            "tunnel.interface: changed from \"hometun0\" to \"hometun9\", which needs a restart"
        ),
        "{line}"
    );
    assert_eq!(spis(&server.status().unwrap()), running, "SAs changed");
    assert!(wait_ping(&lab.home().ns, VPS_INNER, Duration::from_secs(5)));
    std::fs::write(&config, &good_text).unwrap();

    // Revoke the second home: until the reload the server still has the old CRL and lets it
    // in; the reload deletes its running SAs, and its next connection is refused.
    hometun(&[
        "pki",
        "revoke",
        "--dir",
        setup.pki.dir.to_str().unwrap(),
        "--name",
        "home2.example",
    ])
    .unwrap();
    let second = setup.start_client(1).unwrap();
    assert!(
        wait_ping(&lab.homes[1].ns, VPS_INNER, Duration::from_secs(30)),
        "the second home did not come up before the reload\n{}",
        logs(&[&server, &second])
    );
    let line = reload(&server);
    assert!(line.contains("reloaded"), "{line}");
    assert!(
        server.wait_log(
            "SIGHUP: deleted the SAs of home2.example: certificate is revoked",
            Duration::from_secs(5)
        ),
        "the revoked home's SAs stayed\n{}",
        logs(&[&server, &second])
    );
    assert!(
        second.wait_log("peer down", Duration::from_secs(5)),
        "the revoked home did not hear of it\n{}",
        logs(&[&second])
    );
    let peers = server.status().unwrap()["peers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert!(second.stop().unwrap().success());
    let log = lab.dir().join("second-again.log");
    let second = Daemon::start(&lab.homes[1].ns, "client", &setup.client_tomls[1], &log).unwrap();
    assert!(
        second.wait_log("AUTHENTICATION_FAILED", Duration::from_secs(20)),
        "the revoked home was not refused\n{}",
        logs(&[&server, &second])
    );
    // The server's line may land a moment after the home's.
    let refusal = || {
        server
            .log_text()
            .lines()
            .find(|l| l.contains("refused home2.example") && l.contains("revoked"))
            .map(str::to_string)
    };
    assert!(
        hometun_lab::wait_for(Duration::from_secs(5), || refusal().is_some()),
        "{}",
        logs(&[&server])
    );
    let refusal = refusal().unwrap_or_default();
    eprintln!("{refusal}");
    assert!(second.stop().unwrap().success());
    // The first home kept its SAs through all of it.
    assert_eq!(spis(&server.status().unwrap()), running, "SAs changed");
    assert!(wait_ping(&lab.home().ns, VPS_INNER, Duration::from_secs(5)));

    // The client reloads too (nothing changed: it says so).
    let line = reload(&home);
    assert!(
        line.contains("reloaded") && line.contains("no key changed"),
        "{line}"
    );
    assert!(home.stop().unwrap().success());
    assert!(server.stop().unwrap().success());
}
