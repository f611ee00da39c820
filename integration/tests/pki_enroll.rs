//! Online enrollment through the running `hometun server`: server.toml's `[enroll]` (as `pki
//! init` writes it) makes the daemon listen for `hometun enroll` next to IKE. The operator
//! makes a one-time token with `hometun pki token`; the home runs `hometun enroll` in its own
//! namespace (TLS across the lab's wire, the CA pinned by the token) and `hometun client` comes
//! up with the prefix the CA gave it. A second use of the token, and a forged token, are
//! refused; the server logs each refusal with the home's address. `hometun renew` then renews
//! the home's certificate through the same listener (same name, same prefix).

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use hometun_lab::ike_lab::{Daemon, IkeLab, Pki, VPS_ADDR, VPS_INNER, hometun, ping6};
use hometun_lab::pki_lab::{
    arg, global_addresses, hometun_in, line_with, listed_prefix, logs, pki_list, pki_list_all,
    printed,
};
use hometun_lab::{require_root, wait_for};
use hometun_pki::token::Token;

#[test]
fn token_enrollment_through_the_server_daemon_then_the_tunnel_comes_up() {
    if !require_root("token_enrollment_through_the_server_daemon_then_the_tunnel_comes_up") {
        return;
    }
    let started = Instant::now();
    let lab = IkeLab::new(2).unwrap();
    let pki = Pki::init(&lab.dir().join("ca")).unwrap();
    let enroll_addr = hometun_config::ServerConfig::load(&pki.server_toml())
        .unwrap()
        .enroll
        .expect("pki init writes an [enroll] table")
        .public_address();
    assert_eq!(enroll_addr.ip(), VPS_ADDR);

    let server = Daemon::start(
        &lab.vps.ns,
        "server",
        &pki.server_toml(),
        &lab.dir().join("server.log"),
    )
    .unwrap();
    assert!(
        server.wait_log("IKE on", Duration::from_secs(20)),
        "the server did not start\n{}",
        logs(&[&server])
    );
    assert!(
        server
            .log_text()
            .contains(&format!("enrollment listener on {enroll_addr}")),
        "{}",
        logs(&[&server])
    );

    // The operator's side: one token for one home; it names the enrollment address.
    let out = hometun(&[
        "pki",
        "token",
        "--dir",
        arg(&pki.dir).unwrap(),
        "--name",
        "home.example",
    ])
    .unwrap();
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(Token::parse(&token).unwrap().server, enroll_addr);

    // The home: key and CSR made here, sent over TLS to the daemon, the bundle imported.
    let home_dir = lab.dir().join("home");
    let enrolled = Instant::now();
    let out = hometun_in(
        &lab.home().ns,
        &[
            "enroll",
            "--dir",
            arg(&home_dir).unwrap(),
            "--token",
            &token,
        ],
    )
    .unwrap();
    assert!(
        out.status.success(),
        "hometun enroll: {}\n{}",
        printed(&out),
        logs(&[&server])
    );
    let enroll_time = enrolled.elapsed();
    eprint!("{}", printed(&out));
    let prefix = listed_prefix(&pki.dir, "home.example").unwrap();
    let client_toml = home_dir.join("client.toml");
    let config = hometun_config::ClientConfig::load(&client_toml).unwrap();
    assert_eq!(config.client.prefix, prefix);
    let line = line_with(&server.log_text(), &["enrolled", "home.example"])
        .unwrap_or_else(|| panic!("no enrollment line\n{}", logs(&[&server])));
    assert!(line.contains(&prefix.to_string()), "{line}");
    assert!(line.contains("192.0.2.2"), "{line}");
    eprintln!("server: {line}");

    // The tunnel with what enrollment gave.
    let client = Daemon::start(
        &lab.home().ns,
        "client",
        &client_toml,
        &lab.dir().join("client.log"),
    )
    .unwrap();
    let home_address = config.tunnel_address();
    assert!(prefix.contains(&home_address));
    assert!(
        wait_for(Duration::from_secs(30), || ping6(
            &lab.vps.ns,
            home_address,
            1
        )
        .unwrap_or(false)),
        "the VPS cannot reach {home_address}\n{}",
        logs(&[&server, &client])
    );
    assert!(ping6(&lab.home().ns, VPS_INNER, 3).unwrap());
    assert!(
        global_addresses(&lab.home().ns, &config.tunnel.interface)
            .unwrap()
            .contains(&home_address)
    );
    let status = server.status().unwrap();
    assert_eq!(status["peers"][0]["name"], "home.example", "{status:#}");
    assert_eq!(
        status["peers"][0]["prefixes"][0],
        prefix.to_string(),
        "{status:#}"
    );

    // The wrong port: nothing listens, and the home is told the token carries the address.
    let out = hometun_in(
        &lab.homes[1].ns,
        &[
            "enroll",
            "--dir",
            arg(&lab.dir().join("wrong-port")).unwrap(),
            "--server",
            "192.0.2.1:8444",
            "--token",
            &token,
        ],
    )
    .unwrap();
    assert!(!out.status.success(), "{}", printed(&out));
    assert!(
        printed(&out).contains(
            "nothing answers at 192.0.2.1:8444; the token carries the enrollment address 192.0.2.1:8443"
        ),
        "{}",
        printed(&out)
    );

    // The same token again, from another home: refused, logged, nothing issued.
    let second_dir = lab.dir().join("second");
    let out = hometun_in(
        &lab.homes[1].ns,
        &[
            "enroll",
            "--dir",
            arg(&second_dir).unwrap(),
            "--token",
            &token,
        ],
    )
    .unwrap();
    assert!(
        !out.status.success(),
        "a used token enrolled again: {}",
        printed(&out)
    );
    assert!(
        printed(&out).contains("already used"),
        "the home is not told why: {}",
        printed(&out)
    );
    assert!(!second_dir.join("client.toml").exists());
    assert!(!second_dir.join("client.pem").exists());
    eprint!("second use: {}", printed(&out));
    let refused_reuse = || {
        line_with(
            &server.log_text(),
            &["enrollment refused", "192.0.2.3", "already used"],
        )
    };
    assert!(
        wait_for(Duration::from_secs(5), || refused_reuse().is_some()),
        "the server did not log the reuse\n{}",
        logs(&[&server])
    );
    eprintln!("server: {}", refused_reuse().unwrap());

    // A token the CA never made (right CA and address, forged secret): refused too.
    let mut forged = Token::parse(&token).unwrap();
    forged.secret = [0x5a; 32];
    let forged = forged.encode();
    let out = hometun_in(
        &lab.homes[1].ns,
        &[
            "enroll",
            "--dir",
            arg(&second_dir).unwrap(),
            "--token",
            &forged,
        ],
    )
    .unwrap();
    assert!(
        !out.status.success(),
        "a forged token enrolled: {}",
        printed(&out)
    );
    assert!(
        wait_for(Duration::from_secs(5), || line_with(
            &server.log_text(),
            &["enrollment refused", "192.0.2.3", "unknown"]
        )
        .is_some()),
        "the server did not log the forged token\n{}",
        logs(&[&server])
    );
    eprint!("forged: {}", printed(&out));
    // Still exactly one certificate, and the first home's tunnel never noticed.
    let listed = pki_list_all(&pki.dir).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(ping6(&lab.home().ns, VPS_INNER, 2).unwrap());

    // Renewal through the same listener, authenticated by the home's certificate: not due yet,
    // then forced; the same name and prefix, a new certificate and key, and the old one
    // superseded (valid until it expires).
    let config_arg = arg(&client_toml).unwrap();
    let out = hometun_in(&lab.home().ns, &["renew", "--config", config_arg]).unwrap();
    assert!(out.status.success(), "hometun renew: {}", printed(&out));
    assert!(printed(&out).contains("nothing to do"), "{}", printed(&out));
    let old_cert = std::fs::read(home_dir.join("client.pem")).unwrap();
    let out = hometun_in(
        &lab.home().ns,
        &["renew", "--config", config_arg, "--force"],
    )
    .unwrap();
    assert!(
        out.status.success(),
        "hometun renew --force: {}\n{}",
        printed(&out),
        logs(&[&server])
    );
    eprint!("{}", printed(&out));
    assert!(
        printed(&out).contains(&format!("renewed home.example ({prefix})")),
        "{}",
        printed(&out)
    );
    assert_ne!(
        std::fs::read(home_dir.join("client.pem")).unwrap(),
        old_cert
    );
    assert_eq!(listed_prefix(&pki.dir, "home.example").unwrap(), prefix);
    // One row per name; the history only with --all.
    let listed = pki_list(&pki.dir).unwrap();
    let states: Vec<&str> = listed.iter().map(|l| l.status.as_str()).collect();
    assert_eq!(states, ["active"], "{listed:?}");
    let listed = pki_list_all(&pki.dir).unwrap();
    let states: Vec<&str> = listed.iter().map(|l| l.status.as_str()).collect();
    assert_eq!(states, ["superseded", "active"], "{listed:?}");
    assert!(
        wait_for(Duration::from_secs(5), || line_with(
            &server.log_text(),
            &["renewed", "home.example", "192.0.2.2"]
        )
        .is_some()),
        "the server did not log the renewal\n{}",
        logs(&[&server])
    );
    assert!(ping6(&lab.home().ns, VPS_INNER, 2).unwrap());

    assert!(client.stop().unwrap().success());
    assert!(server.stop().unwrap().success());
    eprintln!(
        "timings: hometun enroll {:.2} s, total {:.1} s",
        enroll_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
