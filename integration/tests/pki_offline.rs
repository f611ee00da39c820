//! The PKI end to end with the hometun daemons, the offline way: `hometun pki init` on the VPS,
//! `pki request` on the home, `pki sign` on the VPS, `pki import` on the home; then `hometun
//! server` and `hometun client` bring the tunnel up with the prefix the CA allocated: the
//! home's tunnel address lies inside it, the VPS reaches that address, `hometun status` on the
//! server shows the prefix. And a home whose client.toml asks for another prefix than its
//! certificate's is refused with TS_UNACCEPTABLE.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use hometun_lab::ike_lab::{
    Daemon, IkeLab, POOL, Setup, VPS_ADDR, VPS_INNER, VPS_NAME, edit_client, hometun, ping6,
    wait_ping,
};
use hometun_lab::pki_lab::{
    arg, global_addresses, listed_prefix, logs, nothing_installed_for, printed, wait_refusal,
};
use hometun_lab::require_root;
use ipnet::Ipv6Net;

#[test]
fn init_request_sign_import_then_the_tunnel_carries_the_allocated_prefix() {
    if !require_root("init_request_sign_import_then_the_tunnel_carries_the_allocated_prefix") {
        return;
    }
    let started = Instant::now();
    let lab = IkeLab::new(1).unwrap();
    let ca = lab.dir().join("ca");
    let home = lab.dir().join("home");

    // VPS: the CA, the server's credentials and a server.toml ready to run.
    let out = hometun(&[
        "pki",
        "init",
        "--dir",
        arg(&ca).unwrap(),
        "--server-ipv4",
        &VPS_ADDR.to_string(),
        "--pool",
        POOL,
        "--server-name",
        VPS_NAME,
    ])
    .unwrap();
    eprint!("{}", printed(&out));
    let fingerprint = printed(&out)
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("SHA-256")
                .map(|f| f.trim().to_string())
        })
        .expect("pki init prints the CA's SHA-256");

    // Home: a key that stays here (0600) and a CSR.
    let out = hometun(&[
        "pki",
        "request",
        "--dir",
        arg(&home).unwrap(),
        "--name",
        "home.example",
    ])
    .unwrap();
    eprint!("{}", printed(&out));
    let key_mode = std::fs::metadata(home.join("client.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(key_mode, 0o600, "client.key mode {key_mode:o}");

    // VPS: allocate a prefix, issue, write the bundle (the CSR travels, the key does not).
    let bundle = lab.dir().join("home-bundle.toml");
    let out = hometun(&[
        "pki",
        "sign",
        "--dir",
        arg(&ca).unwrap(),
        "--csr",
        arg(&home.join("client.csr")).unwrap(),
        "--out",
        arg(&bundle).unwrap(),
    ])
    .unwrap();
    eprint!("{}", printed(&out));
    assert!(
        !std::fs::read_to_string(&bundle)
            .unwrap()
            .contains("PRIVATE KEY")
    );
    let prefix = listed_prefix(&ca, "home.example").unwrap();
    let pool: Ipv6Net = POOL.parse().unwrap();
    assert!(
        pool.contains(&prefix) && prefix.prefix_len() == 64,
        "{prefix}"
    );
    assert!(
        printed(&out).contains(&format!("prefix {prefix}")),
        "{}",
        printed(&out)
    );

    // Home: the bundle becomes client.toml, with the allocated prefix.
    let out = hometun(&[
        "pki",
        "import",
        "--dir",
        arg(&home).unwrap(),
        arg(&bundle).unwrap(),
    ])
    .unwrap();
    eprint!("{}", printed(&out));
    // The operator compares the CA fingerprint the bundle brought with the one init printed.
    assert!(
        printed(&out).contains(&format!("CA SHA-256 {fingerprint}: compare it")),
        "{}",
        printed(&out)
    );
    let client_toml = home.join("client.toml");
    let config = hometun_config::ClientConfig::load(&client_toml).unwrap();
    assert_eq!(config.client.prefix, prefix);
    let issued = started.elapsed();

    // The daemons, with the configs exactly as the PKI wrote them.
    let server = Daemon::start(
        &lab.vps.ns,
        "server",
        &ca.join("server.toml"),
        &lab.dir().join("server.log"),
    )
    .unwrap();
    assert!(
        server.wait_log("IKE on", Duration::from_secs(20)),
        "the server did not start\n{}",
        logs(&[&server])
    );
    let client = Daemon::start(
        &lab.home().ns,
        "client",
        &client_toml,
        &lab.dir().join("client.log"),
    )
    .unwrap();
    assert!(
        wait_ping(&lab.home().ns, VPS_INNER, Duration::from_secs(30)),
        "the tunnel did not come up\n{}",
        logs(&[&server, &client])
    );
    let up = started.elapsed();

    // The home's tunnel address lies inside the allocated prefix...
    let addresses = global_addresses(&lab.home().ns, &config.tunnel.interface).unwrap();
    let inside: Vec<_> = addresses
        .iter()
        .filter(|a| prefix.contains(*a))
        .copied()
        .collect();
    assert_eq!(
        inside.len(),
        1,
        "tunnel addresses {addresses:?}, prefix {prefix}"
    );
    let home_address = inside[0];
    // ... and the VPS reaches it through the tunnel.
    assert!(
        ping6(&lab.vps.ns, home_address, 5).unwrap(),
        "ping6 {home_address} from the VPS\n{}",
        logs(&[&server, &client])
    );

    // The server's status names the home and its prefix from the certificate, both as JSON
    // and in the table an operator reads.
    let status = server.status().unwrap();
    let peer = &status["peers"][0];
    assert_eq!(peer["name"], "home.example", "{status:#}");
    assert_eq!(peer["prefixes"][0], prefix.to_string(), "{status:#}");
    assert_eq!(
        peer["children"][0]["remote_ts"][0],
        prefix.to_string(),
        "{status:#}"
    );
    let table = server.status_table().unwrap();
    assert!(table.contains("peer: home.example"), "{table}");
    assert!(table.contains(&prefix.to_string()), "{table}");
    eprintln!("hometun status on the server:\n{table}");

    assert!(client.stop().unwrap().success());
    assert!(server.stop().unwrap().success());
    eprintln!(
        "timings: pki init..import {:.2} s, tunnel up {:.2} s after start, total {:.1} s",
        issued.as_secs_f64(),
        (up - issued).as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_client_asking_for_another_prefix_gets_ts_unacceptable() {
    if !require_root("a_client_asking_for_another_prefix_gets_ts_unacceptable") {
        return;
    }
    let started = Instant::now();
    let setup = Setup::new(1).unwrap();
    let lab = &setup.lab;
    let client_toml = &setup.client_tomls[0];
    let own = hometun_config::ClientConfig::load(client_toml)
        .unwrap()
        .client
        .prefix;
    // Another prefix of the same pool: one the CA could have given someone else.
    let other: Ipv6Net = "2001:db8:100:77::/64".parse().unwrap();
    assert_ne!(own, other);
    edit_client(client_toml, |c| c.client.prefix = other).unwrap();

    let server = setup.start_server().unwrap();
    let client = setup.start_client(0).unwrap();
    assert!(
        client.wait_log("TS_UNACCEPTABLE", Duration::from_secs(20)),
        "the client did not report TS_UNACCEPTABLE\n{}",
        logs(&[&server, &client])
    );
    let line = wait_refusal(&server, "home.example", Duration::from_secs(5)).unwrap_or_else(|| {
        panic!(
            "no refusal line on the server\n{}",
            logs(&[&server, &client])
        )
    });
    // The server says what was asked and what the certificate allows.
    assert!(
        line.contains(&format!("asks for {other} but may use {own}")),
        "{line}"
    );
    assert!(line.contains("192.0.2.2"), "{line}");
    eprintln!("server: {line}");
    eprintln!(
        "client: {}",
        client
            .log_text()
            .lines()
            .find(|l| l.contains("TS_UNACCEPTABLE"))
            .unwrap_or_default()
    );
    nothing_installed_for(&server.status().unwrap(), "home.example").unwrap();
    assert!(
        !ping6(&lab.home().ns, VPS_INNER, 1).unwrap(),
        "traffic passed for a refused prefix"
    );
    assert!(client.stop().unwrap().success());

    // The same home with its own prefix back comes up: the prefix was the only problem.
    edit_client(client_toml, |c| c.client.prefix = own).unwrap();
    let client = setup.start_client(0).unwrap();
    assert!(
        wait_ping(&lab.home().ns, VPS_INNER, Duration::from_secs(30)),
        "the home did not come up with its own prefix\n{}",
        logs(&[&server, &client])
    );
    assert!(client.stop().unwrap().success());
    assert!(server.stop().unwrap().success());
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
}
