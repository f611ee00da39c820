//! The home's LAN across restarts. A server restart (SIGKILL, started again at once) brings
//! the tunnel down for a second or two: the client keeps the LAN set up meanwhile (no final
//! Router Advertisement, the LAN host keeps its address and default route, the updown hook is
//! not run), and takes it down only once the tunnel has stayed down for the liveness timeout.
//! A client and a server killed with SIGKILL leave their changes to the network set-up behind:
//! the next run sets them back, so that its clean stop leaves the routers as they were.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::Path;
use std::time::{Duration, Instant};

use hometun_lab::ike_lab::{Daemon, edit_client, logs, wait_ping};
use hometun_lab::lan_lab::{
    INTERNET_HOST, LAN_INTERFACE, LanLab, Mode, ip_text, network_state, sysctl_value,
};
use hometun_lab::{Netns, require_root, wait_for};

/// An updown hook that appends each state to `log`.
fn logging_hook(lab: &LanLab, log: &Path) -> std::path::PathBuf {
    let hook = lab.dir().join("updown.sh");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\necho \"$HOMETUN_STATE\" >> {}\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    hook
}

fn restart_server(lab: &LanLab, log: &str) -> Daemon {
    let server = Daemon::start(&lab.vps, "server", &lab.server_toml, &lab.dir().join(log)).unwrap();
    assert!(
        server.wait_log("IKE on", Duration::from_secs(20)),
        "{}",
        server.log_text()
    );
    server
}

fn peer_ups(client: &Daemon) -> usize {
    client
        .log_text()
        .lines()
        .filter(|l| l.contains("peer up"))
        .count()
}

#[test]
fn a_server_restart_leaves_the_lan_set_up_and_a_long_outage_takes_it_down() {
    let test = "a_server_restart_leaves_the_lan_set_up_and_a_long_outage_takes_it_down";
    if !require_root(test) {
        return;
    }
    let lab = LanLab::new(Mode::Routed).unwrap();
    let hook_log = lab.dir().join("updown.log");
    let hook = logging_hook(&lab, &hook_log);
    edit_client(&lab.client_toml, |c| {
        c.client.updown = Some(hook.clone());
        // A liveness timeout of 0.2 + 0.4 + 0.8 + 1.6 = 3 s: the grace the LAN gets.
        c.ike.retransmit_ms = 200;
        c.ike.retransmit_tries = 4;
    })
    .unwrap();
    let server = lab.start_server().unwrap();
    let started = Instant::now();
    let client = lab.start_client().unwrap();
    lab.wait_slaac(started, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs(&[&server, &client])));
    assert!(
        wait_ping(&lab.lan, INTERNET_HOST, Duration::from_secs(10)),
        "{}",
        logs(&[&server, &client])
    );
    // The server records the homes that are up at its next counter tick (every second).
    std::thread::sleep(Duration::from_millis(1500));

    // SIGKILL, started again at once.
    drop(server);
    let server = restart_server(&lab, "server-restarted.log");
    let restarted = Instant::now();
    // Until the home is back, the LAN host keeps its address (not deprecated) and its default
    // route through the home.
    let mut watched = 0;
    while peer_ups(&client) < 2 && restarted.elapsed() < Duration::from_secs(10) {
        let addresses = lab.lan_host_addresses();
        assert!(
            !addresses.is_empty() && addresses.iter().all(|(_, deprecated)| !deprecated),
            "the LAN host's address was deprecated during a server restart: {addresses:?}\n{}",
            logs(&[&server, &client])
        );
        let routes = ip_text(&lab.lan, &["-6", "route", "show", "default"]);
        assert!(
            routes.contains("via fe80::"),
            "the LAN host lost its default route during a server restart: {routes}\n{}",
            logs(&[&server, &client])
        );
        watched += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(peer_ups(&client), 2, "{}", logs(&[&server, &client]));
    assert!(watched > 0);
    assert!(
        wait_ping(&lab.lan, INTERNET_HOST, Duration::from_secs(5)),
        "{}",
        logs(&[&server, &client])
    );
    eprintln!(
        "{test}: the home was back {} ms after the server's restart; the LAN stayed set up",
        restarted.elapsed().as_millis()
    );
    let client_log = client.log_text();
    assert!(
        !client_log
            .lines()
            .any(|l| l.contains("lan lan0: ") && l.contains(" down")),
        "{client_log}"
    );
    assert_eq!(
        std::fs::read_to_string(&hook_log).unwrap(),
        "up\n",
        "the hook ran for a reconnect"
    );

    // The server stops for good: once the tunnel has stayed down for the liveness timeout, the
    // final advertisement deprecates the LAN host's address and the hook hears "down".
    let stopped = Instant::now();
    assert!(server.stop().unwrap().success());
    assert!(
        wait_for(Duration::from_secs(20), || lab
            .lan_host_addresses()
            .iter()
            .all(|(_, deprecated)| *deprecated)),
        "{}\n{}",
        ip_text(&lab.lan, &["-6", "addr", "show", "dev", "eth0"]),
        client.log_text()
    );
    let after = stopped.elapsed();
    eprintln!(
        "{test}: the LAN went down {} ms after the server stopped for good",
        after.as_millis()
    );
    assert!(after >= Duration::from_secs(3), "{}", client.log_text());
    assert!(
        wait_for(Duration::from_secs(5), || std::fs::read_to_string(
            &hook_log
        )
        .is_ok_and(|t| t == "up\ndown\n")),
        "{:?}",
        std::fs::read_to_string(&hook_log)
    );
    assert!(client.stop().unwrap().success());
}

/// What a router's daemon may change: addresses, routes, forwarding and accept_ra sysctls.
fn state(ns: &Netns) -> String {
    let mut text = network_state(
        ns,
        &[
            "net.ipv6.conf.all.forwarding",
            "net.ipv6.conf.default.accept_ra",
            "net.ipv6.conf.eth0.accept_ra",
        ],
    );
    if ns
        .output("ip", &["link", "show", LAN_INTERFACE])
        .is_ok_and(|o| o.status.success())
    {
        let key = format!("net.ipv6.conf.{LAN_INTERFACE}.accept_ra");
        text += &format!("{key}={}\n", sysctl_value(ns, &key).unwrap_or_default());
    }
    text
}

#[test]
fn what_killed_daemons_left_is_set_back_by_their_next_run() {
    let test = "what_killed_daemons_left_is_set_back_by_their_next_run";
    if !require_root(test) {
        return;
    }
    let lab = LanLab::new(Mode::Routed).unwrap();
    let before_home = state(&lab.home);
    let before_vps = state(&lab.vps);
    assert!(before_home.contains("all.forwarding=0"), "{before_home}");

    let server = lab.start_server().unwrap();
    let started = Instant::now();
    let client = lab.start_client().unwrap();
    lab.wait_slaac(started, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs(&[&server, &client])));
    assert_ne!(state(&lab.home), before_home);
    assert_ne!(state(&lab.vps), before_vps);

    // SIGKILL: nothing is set back.
    drop(client);
    drop(server);
    // The forwarders stop when their daemons' channels close, taking the TUN devices along.
    assert!(wait_for(Duration::from_secs(5), || {
        !ip_text(&lab.home, &["link", "show"]).contains("hometun0")
            && !ip_text(&lab.vps, &["link", "show"]).contains("hometun0")
    }));
    let left = state(&lab.home);
    assert!(left.contains("all.forwarding=1"), "{left}");
    let records: Vec<_> = walk(lab.dir())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("netconf-"))
        .collect();
    assert_eq!(records.len(), 2, "{records:?}");

    // Run again, then stop cleanly: the routers are as they were before the first run.
    let server = restart_server(&lab, "server-2.log");
    let started = Instant::now();
    let client = Daemon::start(
        &lab.home,
        "client",
        &lab.client_toml,
        &lab.dir().join("client-2.log"),
    )
    .unwrap();
    lab.wait_slaac(started, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs(&[&server, &client])));
    assert!(
        wait_ping(&lab.lan, INTERNET_HOST, Duration::from_secs(10)),
        "{}",
        logs(&[&server, &client])
    );
    assert!(client.stop().unwrap().success());
    assert!(server.stop().unwrap().success());
    assert_eq!(state(&lab.home), before_home);
    assert_eq!(state(&lab.vps), before_vps);
    for dir in ["home", "ca"] {
        let leftovers: Vec<_> = walk(&lab.dir().join(dir))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("netconf-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
    }
    files
}
