//! `hometun client` <-> `hometun server` in network namespaces, certificates from
//! `hometun pki`: `ike probe` sees the server's choice and no NAT; the tunnel comes up over raw
//! ESP (IP protocol 50, counted by nftables on the VPS), carries ping6 and 100 MB of TCP with
//! matching SHA-256; `hometun status` shows the peer, its prefix and SAs; SIGTERM deletes the SAs
//! and removes the TUN devices and routes on both sides.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::Path;
use std::time::{Duration, Instant};

use hometun_lab::ike_lab::{
    Daemon, HOME_INNER, HOME_PREFIX, OuterCounters, Setup, VPS_INNER, edit_client, edit_server,
    has_link, hometun, logs, ping6, tcp_transfer, wait_ping,
};
use hometun_lab::{require_root, wait_for};

const TRANSFER_BYTES: u64 = 100 * 1024 * 1024;

fn nettool() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hometun-nettool"))
}

#[test]
fn hometun_client_and_server_over_raw_esp() {
    if !require_root("hometun_client_and_server_over_raw_esp") {
        return;
    }
    let started = Instant::now();
    let setup = Setup::new(1).unwrap();
    let lab = &setup.lab;
    let outer = OuterCounters::install(&lab.vps.ns).unwrap();
    let server = setup.start_server().unwrap();

    // The probe from the home: our default proposals, the server's choice, no NAT.
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
        logs(&[&server])
    );
    assert!(
        printed.contains("chosen:   aes128gcm16-prfsha256-x25519"),
        "{printed}"
    );
    assert!(printed.contains("NAT:      none between us"), "{printed}");
    assert!(printed.contains("cookie:   not asked for"), "{printed}");
    eprintln!("{printed}");

    let client = setup.start_client(0).unwrap();
    assert!(
        wait_ping(&lab.home().ns, VPS_INNER, Duration::from_secs(30)),
        "the tunnel did not come up\n{}",
        logs(&[&server, &client])
    );
    let up = started.elapsed();
    assert!(
        ping6(&lab.home().ns, VPS_INNER, 5).unwrap(),
        "ping6 lost packets"
    );

    // The server's view: the peer, its prefix from the certificate, raw ESP.
    let status = server.status().unwrap();
    let peers = status["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "{status:#}");
    assert_eq!(peers[0]["name"], "home.example");
    assert_eq!(peers[0]["prefixes"][0], HOME_PREFIX);
    assert_eq!(peers[0]["nat"], false);
    assert_eq!(peers[0]["remote"], "192.0.2.2:500");
    let child = &peers[0]["children"][0];
    assert_eq!(child["remote_ts"][0], HOME_PREFIX, "{status:#}");
    let sas = status["counters"]["sas"].as_array().unwrap();
    assert!(!sas.is_empty(), "{status:#}");
    assert!(
        sas.iter().all(|sa| sa["endpoint"]["encap"] == "raw"),
        "{status:#}"
    );
    // The client's view of the server.
    let status = client.status().unwrap();
    assert_eq!(status["peers"][0]["name"], "vps.example", "{status:#}");
    assert_eq!(
        status["peers"][0]["children"][0]["local_ts"][0],
        HOME_PREFIX
    );

    // 100 MB of TCP from the home's address to the VPS, hashed on both ends.
    let transfer = Instant::now();
    let (sent, received) = tcp_transfer(
        nettool(),
        &lab.vps.ns,
        &lab.home().ns,
        VPS_INNER,
        5001,
        TRANSFER_BYTES,
    )
    .unwrap_or_else(|e| panic!("transfer: {e:#}\n{}", logs(&[&server, &client])));
    let transfer = transfer.elapsed();
    assert!(sent.starts_with(&format!("{TRANSFER_BYTES} ")), "{sent}");
    assert_eq!(received, sent, "SHA-256 differs between the ends");

    // Everything arrived at the VPS as IP protocol 50, nothing as ESP in UDP.
    let outer = outer.read(&lab.vps.ns).unwrap();
    assert!(
        outer.esp_bytes > TRANSFER_BYTES,
        "only {outer:?} reached the VPS"
    );
    assert!(
        outer.udp_packets < 20,
        "{outer:?}: ESP in UDP reached the VPS (no NAT here)"
    );

    // The reverse direction too: a ping from the VPS to the home's tunnel address.
    assert!(
        ping6(&lab.vps.ns, HOME_INNER, 3).unwrap(),
        "ping6 VPS -> home"
    );
    let table = server.status_table().unwrap();
    assert!(table.contains("peer: home.example"), "{table}");
    assert!(table.contains("ESP (protocol 50)"), "{table}");
    eprintln!("hometun status on the server:\n{table}");
    eprintln!(
        "hometun status on the client:\n{}",
        client.status_table().unwrap()
    );

    // SIGTERM on the client: it deletes its IKE SA (the server notices), removes its TUN and
    // the default route through it, and exits 0.
    let client_log = client.log.clone();
    let status = client.stop().unwrap();
    assert!(status.success(), "client exit {status}");
    assert!(
        !has_link(&lab.home().ns, "hometun0"),
        "TUN left on the home"
    );
    let routes = lab
        .home()
        .ns
        .output("ip", &["-6", "route", "show"])
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&routes.stdout).contains("hometun0"),
        "routes left: {}",
        String::from_utf8_lossy(&routes.stdout)
    );
    assert!(
        wait_for(Duration::from_secs(10), || server
            .status()
            .is_ok_and(|s| s["peers"]
                .as_array()
                .is_some_and(|p| p.is_empty()))),
        "the server kept the peer after the client's DELETE: {:#}\n{}",
        server.status().unwrap(),
        std::fs::read_to_string(client_log).unwrap_or_default()
    );
    let status = server.stop().unwrap();
    assert!(status.success(), "server exit {status}");
    assert!(!has_link(&lab.vps.ns, "hometun0"), "TUN left on the VPS");
    assert!(
        !setup.pki.dir.join("state/control.sock").exists(),
        "status socket left behind"
    );
    eprintln!(
        "timings: tunnel up {:.2} s after start, 100 MB in {:.2} s ({:.0} Mbit/s), total {:.1} s",
        up.as_secs_f64(),
        transfer.as_secs_f64(),
        TRANSFER_BYTES as f64 * 8.0 / transfer.as_secs_f64() / 1e6,
        started.elapsed().as_secs_f64()
    );
}

/// Start-up checks: a private key others can read, and a certificate file that is not one,
/// stop the daemon with one line naming the file.
#[test]
fn daemon_refuses_bad_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let pki = hometun_lab::ike_lab::Pki::init(&dir.path().join("ca")).unwrap();
    let config = pki.server_toml();
    let key = pki.dir.join("server.key");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let error = hometun(&["server", "--config", config.to_str().unwrap()]).unwrap_err();
    let text = format!("{error:#}");
    assert!(
        text.contains("server.private_key") && text.contains("readable by others"),
        "{text}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::write(pki.dir.join("server.pem"), "not a certificate\n").unwrap();
    let error = hometun(&["server", "--config", config.to_str().unwrap()]).unwrap_err();
    let text = format!("{error:#}");
    // `run` reports "PROGRAM ARGS: STDOUT STDERR"; the daemon's stderr is one line.
    let line = text
        .rsplit("hometun: ")
        .next()
        .unwrap_or_else(|| panic!("no error line: {text}"))
        .trim_end();
    assert!(!line.contains('\n'), "{text}");
    assert!(line.contains("server.pem"), "{line}");
}

/// `server --check` with an enrollment listener refuses a CA key others can read, as the
/// daemons refuse their own keys (it is read at every enrollment).
#[test]
fn check_refuses_a_ca_key_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let pki = hometun_lab::ike_lab::Pki::init(&dir.path().join("ca")).unwrap();
    let config = pki.server_toml();
    hometun(&["server", "--config", config.to_str().unwrap(), "--check"]).unwrap();
    let key = pki.dir.join("ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = hometun(&["server", "--config", config.to_str().unwrap(), "--check"]).unwrap_err();
    let text = format!("{error:#}");
    assert!(
        text.contains("enroll.pki_dir")
            && text.contains("ca.key: readable by others (mode 0644); run chmod 600 on it"),
        "{text}"
    );
}

/// What `hometun server --check` with `config` prints on stderr; it must fail.
fn check_fails(config: &Path) -> String {
    let output = std::process::Command::new(hometun_lab::hometun_bin().unwrap())
        .args(["server", "--config", config.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    assert!(!output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A file the config names that is missing: one line with the config, the key, the file and
/// the problem, said once (`server.toml: server.certificate: .../servr.pem: not found`).
#[test]
fn check_names_the_config_key_and_file_that_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = hometun_lab::ike_lab::Pki::init(&dir.path().join("ca")).unwrap();
    let config = pki.server_toml();
    let good = std::fs::read_to_string(&config).unwrap();
    for (written, key) in [
        ("server.pem", "server.certificate"),
        ("server.key", "server.private_key"),
        ("ca.pem", "server.ca"),
    ] {
        let quoted = format!("\"{written}\"");
        assert!(good.contains(&quoted), "{good}");
        std::fs::write(&config, good.replace(&quoted, "\"missing.pem\"")).unwrap();
        let text = check_fails(&config);
        let expected = format!(
            "hometun: {}: {key}: {}: not found\n",
            config.display(),
            pki.dir.join("missing.pem").display()
        );
        assert!(text.contains(&expected), "{text}\nexpected {expected:?}");
        assert!(!text.contains("os error"), "{text}");
    }
    std::fs::write(&config, &good).unwrap();
    // The config itself.
    let missing = dir.path().join("nothing.toml");
    let text = check_fails(&missing);
    assert!(
        text.contains(&format!("hometun: {}: not found\n", missing.display())),
        "{text}"
    );
}

/// The forwarder dies (SIGKILL): the daemon stops with an error line rather than run without
/// its data plane, and nothing of the tunnel is left.
#[test]
fn daemon_exits_when_its_forwarder_dies() {
    if !require_root("daemon_exits_when_its_forwarder_dies") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    let server = setup.start_server().unwrap();
    let children = std::fs::read_to_string(format!(
        "/proc/{pid}/task/{pid}/children",
        pid = server.pid()
    ))
    .unwrap();
    let forwarder: i32 = children
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("the server has no child process\n{}", server.log_text()))
        .parse()
        .unwrap();
    // SAFETY: kill has no memory preconditions; this is the daemon's forwarder child.
    unsafe { libc::kill(forwarder, libc::SIGKILL) };
    assert!(
        server.wait_log(
            "stopping rather than running without it",
            Duration::from_secs(20)
        ),
        "{}",
        server.log_text()
    );
    let log = server.log_text();
    let status = server.stop().unwrap();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("hometun: the forwarder exited"), "{log}");
    assert!(
        !has_link(&setup.lab.vps.ns, "hometun0"),
        "TUN left on the VPS"
    );
}

/// `hometun status` without --config says which default it tried.
#[test]
fn status_without_config_names_the_defaults() {
    if hometun_lab::ike_lab::DEFAULT_CONFIGS
        .iter()
        .any(|p| Path::new(p).exists())
    {
        eprintln!(
            "status_without_config_names_the_defaults: skipped: /etc/hometun has a config here"
        );
        return;
    }
    let error = hometun(&["status"]).unwrap_err();
    let text = format!("{error:#}");
    assert!(
        text.contains(
            "no --config given and none of /etc/hometun/server.toml, /etc/hometun/client.toml exists"
        ),
        "{text}"
    );
}

/// The home behind a NAT router (nftables masquerade): both sides see the NAT from the
/// NAT_DETECTION hashes, IKE floats to port 4500 and ESP travels in UDP to the mapped port;
/// ping6 both ways and 100 MB of TCP with matching SHA-256.
#[test]
fn hometun_client_behind_nat() {
    if !require_root("hometun_client_behind_nat") {
        return;
    }
    let mut setup = Setup::new(1).unwrap();
    setup.lab.put_behind_nat(0).unwrap();
    let lab = &setup.lab;
    let outer = OuterCounters::install(&lab.vps.ns).unwrap();
    let server = setup.start_server().unwrap();
    let client = setup.start_client(0).unwrap();
    assert!(
        wait_ping(&lab.home().ns, VPS_INNER, Duration::from_secs(30)),
        "the tunnel did not come up through the NAT\n{}",
        logs(&[&server, &client])
    );
    let status = server.status().unwrap();
    let peer = &status["peers"][0];
    assert_eq!(peer["nat"], true, "{status:#}");
    // The router's address, as the NAT rewrote it.
    assert!(
        peer["remote"].as_str().unwrap().starts_with("192.0.2.2:"),
        "{status:#}"
    );
    let status = client.status().unwrap();
    assert_eq!(status["peers"][0]["nat"], true, "{status:#}");
    assert_eq!(status["local"], "198.51.100.2", "{status:#}");
    carries_only_esp_in_udp(&setup, &server, &client, &outer, 5003);
    eprintln!("{}", server.status_table().unwrap());
    assert!(client.stop().unwrap().success());
    assert!(server.stop().unwrap().success());
}

/// `[client] force_udp_encapsulation = true` with no NAT in the way: both ends carry ESP in UDP
/// 4500 (the server sees a NAT in front of the home, since the home's NAT detection hash names no
/// address of its), and nothing goes as raw ESP.
#[test]
fn hometun_client_forcing_udp_without_a_nat() {
    if !require_root("hometun_client_forcing_udp_without_a_nat") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    edit_client(&setup.client_tomls[0], |c| {
        c.client.force_udp_encapsulation = true
    })
    .unwrap();
    let outer = OuterCounters::install(&setup.lab.vps.ns).unwrap();
    let (server, client) = setup.start_first_home_up().unwrap();
    // The home says why it moved to 4500 (not a NAT it saw).
    assert!(
        client
            .log_text()
            .contains("no NAT in the way, ESP in UDP as configured"),
        "{}",
        logs(&[&client])
    );
    let status = server.status().unwrap();
    let peer = &status["peers"][0];
    assert_eq!(peer["nat"], true, "{status:#}");
    // The home's own address and NAT-T port: no NAT rewrote them.
    assert_eq!(peer["remote"], "192.0.2.2:4500", "{status:#}");
    // The home's status says why it is on UDP: no NAT, its configuration.
    let home = client.status().unwrap();
    assert_eq!(home["peers"][0]["nat"], false, "{home:#}");
    assert_eq!(home["peers"][0]["udp_forced"], true, "{home:#}");
    assert!(
        client
            .status_table()
            .unwrap()
            .contains("no NAT, ESP in UDP as configured"),
        "{}",
        client.status_table().unwrap()
    );
    carries_only_esp_in_udp(&setup, &server, &client, &outer, 5004);
    assert!(client.stop().unwrap().success());
    assert!(server.stop().unwrap().success());
}

/// Every SA the server holds is ESP in UDP; 100 MB from the home arrive intact, a ping comes
/// back, and the VPS saw the transfer as UDP and not one raw ESP packet.
fn carries_only_esp_in_udp(
    setup: &Setup,
    server: &Daemon,
    client: &Daemon,
    outer: &OuterCounters,
    port: u16,
) {
    let lab = &setup.lab;
    let status = server.status().unwrap();
    let sas = status["counters"]["sas"].as_array().unwrap();
    assert!(!sas.is_empty(), "{status:#}");
    assert!(
        sas.iter()
            .all(|sa| sa["endpoint"]["encap"]["udp"].is_object()),
        "{status:#}"
    );
    let (sent, received) = tcp_transfer(
        nettool(),
        &lab.vps.ns,
        &lab.home().ns,
        VPS_INNER,
        port,
        TRANSFER_BYTES,
    )
    .unwrap_or_else(|e| panic!("transfer: {e:#}\n{}", logs(&[server, client])));
    assert!(sent.starts_with(&format!("{TRANSFER_BYTES} ")), "{sent}");
    assert_eq!(received, sent, "SHA-256 differs between the ends");
    assert!(
        ping6(&lab.vps.ns, HOME_INNER, 3).unwrap(),
        "ping6 VPS -> home"
    );
    let outer = outer.read(&lab.vps.ns).unwrap();
    assert!(outer.udp_bytes > TRANSFER_BYTES, "only {outer:?}");
    assert_eq!(outer.esp_packets, 0, "raw ESP reached the VPS: {outer:?}");
}

/// A server that asks every IKE_SA_INIT for a COOKIE and offers only P-256: `ike probe` answers
/// the COOKIE, follows INVALID_KE_PAYLOAD to group 19 and reports both; `hometun client` (X25519
/// first) gets through the same two round trips and carries ping6.
#[test]
fn probe_and_client_follow_cookie_and_invalid_ke() {
    if !require_root("probe_and_client_follow_cookie_and_invalid_ke") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    let lab = &setup.lab;
    edit_server(&setup.server_toml, |c| {
        c.dos.cookie_threshold = 0;
        c.ike.proposals = vec!["aes128gcm16-prfsha256-ecp256".into()];
    })
    .unwrap();
    let server = setup.start_server().unwrap();
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
        logs(&[&server])
    );
    assert!(
        printed.contains("cookie:   asked for (COOKIE), sent it back"),
        "{printed}"
    );
    assert!(
        printed.contains("group:    INVALID_KE_PAYLOAD, the server wants ECP_256"),
        "{printed}"
    );
    assert!(
        printed.contains("chosen:   aes128gcm16-prfsha256-ecp256"),
        "{printed}"
    );
    eprintln!("{printed}");
    let client = setup.start_client(0).unwrap();
    assert!(
        wait_ping(&lab.home().ns, VPS_INNER, Duration::from_secs(30)),
        "the client did not get through COOKIE and INVALID_KE_PAYLOAD\n{}",
        logs(&[&server, &client])
    );
    let status = server.status().unwrap();
    assert_eq!(
        status["peers"][0]["ike_proposal"], "aes128gcm16-prfsha256-ecp256",
        "{status:#}"
    );
    assert!(
        status["endpoint"]["cookies_sent"].as_u64().unwrap() >= 2,
        "{status:#}"
    );
    assert!(client.stop().unwrap().success());
    assert!(server.stop().unwrap().success());
}
