//! A server killed with SIGKILL and started again at once, with the real daemons in namespaces
//! (docs/ARCHITECTURE.md, "Restart recovery"). Its homes still hold their SAs: a home that sends
//! gets INVALID_SPI for its ESP, an idle home is told from the server's record of the peers that
//! were up (state directory, `peers-up.json`). Either checks at once whether the server still
//! knows its IKE SA, and connects again after a second of silence, long before its liveness
//! timeout (30 s, then 31.5 s of retransmissions) would have noticed. A forged INVALID_SPI from
//! another host on the path, naming the home's real SPI, costs one liveness check and moves
//! nothing. The recovery time is printed; `bench/restart.sh` measures it for many homes.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::Path;
use std::time::{Duration, Instant};

use hometun_lab::ike_lab::{Daemon, Setup, VPS_ADDR, VPS_INNER, logs};
use hometun_lab::{Netns, require_root, wait_for};

fn sigkill(pid: u32) {
    // SAFETY: kill has no memory preconditions; the pid is a daemon this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
}

/// Pings `addr` from `ns` (one echo at a time, 200 ms each) until the first reply; the time
/// since `since` when it came.
fn first_reply(ns: &Netns, addr: std::net::Ipv6Addr, since: Instant) -> Option<Duration> {
    let deadline = since + Duration::from_secs(25);
    while Instant::now() < deadline {
        let replied = ns
            .output("ping", &["-6", "-c", "1", "-W", "0.2", &addr.to_string()])
            .is_ok_and(|o| o.status.success());
        if replied {
            return Some(since.elapsed());
        }
    }
    None
}

fn counter(daemon: &Daemon, name: &str) -> u64 {
    daemon.status().unwrap()["endpoint"][name]
        .as_u64()
        .unwrap_or(0)
}

/// The client's CHILD SAs: (inbound SPI, outbound SPI).
fn child_spis(client: &Daemon) -> Vec<(u64, u64)> {
    let status = client.status().unwrap();
    status["peers"][0]["children"]
        .as_array()
        .map(|children| {
            children
                .iter()
                .map(|c| {
                    (
                        hometun_lab::ike_lab::spi(&c["spi_in"]).unwrap(),
                        hometun_lab::ike_lab::spi(&c["spi_out"]).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The peers the server's record lists.
fn recorded_peers(state_dir: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(state_dir.join("peers-up.json")) else {
        return Vec::new();
    };
    let peers: serde_json::Value = serde_json::from_str(&text).unwrap();
    peers
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer"].as_str().unwrap().to_string())
        .collect()
}

/// The server and its one home, the tunnel up and the home in the server's record.
fn start_with_home_recorded(setup: &Setup) -> (Daemon, Daemon) {
    let state_dir = setup.pki.dir.join("state");
    let server = setup.start_server().unwrap();
    let client = setup.start_client(0).unwrap();
    assert!(first_reply(&setup.lab.home().ns, VPS_INNER, Instant::now()).is_some());
    assert!(
        wait_for(Duration::from_secs(5), || recorded_peers(&state_dir)
            == ["home.example"]),
        "record: {:?}",
        recorded_peers(&state_dir)
    );
    (server, client)
}

/// Waits until the server that started at `started` told the idle home from its record and
/// the home is back (its new CHILD SA up, within 20 s: before its 30 s liveness check); the
/// time that took.
fn told_and_back(server: &Daemon, client: &Daemon, started: Instant) -> Duration {
    let reconnected = wait_for(Duration::from_secs(20), || {
        counter(client, "restart_checks_failed") == 1 && child_spis(client).len() == 1
    });
    let back = started.elapsed();
    assert!(reconnected, "{}", logs(&[server, client]));
    assert!(
        server
            .log_text()
            .contains("told 1 of 1 peers that were up before the restart"),
        "{}",
        server.log_text()
    );
    back
}

fn restart_server(setup: &Setup, old: &Daemon, tag: &str) -> (Daemon, Instant) {
    sigkill(old.pid());
    let log = setup.lab.dir().join(format!("server-{tag}.log"));
    let restarted = Instant::now();
    let server = Daemon::start(&setup.lab.vps.ns, "server", &setup.server_toml, &log).unwrap();
    (server, restarted)
}

#[test]
fn a_home_that_sends_is_back_within_seconds_of_a_server_restart() {
    if !require_root("a_home_that_sends_is_back_within_seconds_of_a_server_restart") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    let server = setup.start_server().unwrap();
    let client = setup.start_client(0).unwrap();
    let home = &setup.lab.home().ns;
    assert!(
        first_reply(home, VPS_INNER, Instant::now()).is_some(),
        "the tunnel did not come up\n{}",
        logs(&[&server, &client])
    );
    let (server, restarted) = restart_server(&setup, &server, "restarted");
    let back = first_reply(home, VPS_INNER, restarted);
    let back = back.unwrap_or_else(|| {
        panic!(
            "no ping6 reply within 25 s of the restart\n{}",
            logs(&[&server, &client])
        )
    });
    // Well before the 30 s liveness check could have noticed: the hints did it.
    assert!(
        client.log_text().contains("lost this IKE SA"),
        "{}",
        logs(&[&server, &client])
    );
    assert_eq!(counter(&client, "restart_checks_failed"), 1);
    assert!(counter(&server, "restart_hints_sent") >= 1);
    eprintln!(
        "a home pinging every 200 ms: first reply {} ms after the server was started again",
        back.as_millis()
    );
    assert!(client.stop().unwrap().success());
    assert!(server.stop().unwrap().success());
}

#[test]
fn an_idle_home_is_told_by_the_restarted_server_from_its_record() {
    if !require_root("an_idle_home_is_told_by_the_restarted_server_from_its_record") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    let state_dir = setup.pki.dir.join("state");
    let (server, client) = start_with_home_recorded(&setup);
    let home = &setup.lab.home().ns;
    let mode = std::fs::metadata(state_dir.join("peers-up.json"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    let (server, restarted) = restart_server(&setup, &server, "restarted");
    // The home sends nothing; it is back when its new IKE SA and CHILD SA are.
    let back = told_and_back(&server, &client, restarted);
    assert!(first_reply(home, VPS_INNER, Instant::now()).is_some());
    eprintln!(
        "an idle home: its new CHILD SA up {} ms after the server was started again",
        back.as_millis()
    );
    assert!(client.stop().unwrap().success());
    // A clean stop deletes the IKE SAs: nobody is left to tell.
    assert!(server.stop().unwrap().success());
    assert!(recorded_peers(&state_dir).is_empty());
}

#[test]
fn a_forged_invalid_spi_from_another_host_moves_nothing() {
    if !require_root("a_forged_invalid_spi_from_another_host_moves_nothing") {
        return;
    }
    // Home 1's namespace plays the attacker: a host on the same path, which saw the home's ESP
    // and so knows its SPI, forging the server's address.
    let setup = Setup::new(2).unwrap();
    let server = setup.start_server().unwrap();
    let client = setup.start_client(0).unwrap();
    let home = &setup.lab.homes[0];
    let attacker = &setup.lab.homes[1].ns;
    assert!(first_reply(&home.ns, VPS_INNER, Instant::now()).is_some());
    let before = child_spis(&client);
    assert_eq!(before.len(), 1);
    let spi_out = before[0].1 as u32;
    // INVALID_SPI in an unprotected INFORMATIONAL with zero IKE SPIs (RFC 7296 2.21.4).
    let hint = format!(
        "{}{}2920250000000000{:08x}0000000c0000000b{spi_out:08x}",
        "0".repeat(16),
        "0".repeat(16),
        40
    );
    let nettool = env!("CARGO_BIN_EXE_hometun-nettool");
    let ping = std::thread::scope(|scope| {
        let ping = scope.spawn(|| {
            home.ns
                .output(
                    "ping",
                    &[
                        "-6",
                        "-c",
                        "200",
                        "-i",
                        "0.02",
                        "-W",
                        "1",
                        &VPS_INNER.to_string(),
                    ],
                )
                .unwrap()
        });
        for _ in 0..20 {
            let sent = attacker
                .output(
                    nettool,
                    &[
                        "spoof-udp",
                        &format!("{VPS_ADDR}:500"),
                        &format!("{}:500", home.addr),
                        &hint,
                    ],
                )
                .unwrap();
            assert!(
                sent.status.success(),
                "{}",
                String::from_utf8_lossy(&sent.stderr)
            );
            std::thread::sleep(Duration::from_millis(150));
        }
        ping.join().unwrap()
    });
    let text = String::from_utf8_lossy(&ping.stdout).into_owned();
    assert!(
        text.contains("200 packets transmitted, 200 received"),
        "{text}\n{}",
        logs(&[&server, &client])
    );
    assert!(counter(&client, "restart_hints_received") >= 1);
    assert_eq!(counter(&client, "restart_checks_failed"), 0);
    assert_eq!(child_spis(&client), before, "the CHILD SA changed");
    assert!(!client.log_text().contains("lost this IKE SA"));
    eprintln!(
        "20 forged INVALID_SPI hints over 3 s: {} matched the home's SPI (one liveness check per 2 s at most), 0 of 200 pings lost, the CHILD SA unchanged",
        counter(&client, "restart_hints_received")
    );
    assert!(client.stop().unwrap().success());
    assert!(server.stop().unwrap().success());
}

/// A clean stop whose DELETE a home never gets (its path drops what the server sends, for the
/// stop's wait and the DELETE sent once more at its end) keeps that home in the record: the next
/// run tells it, and the idle home is back long before its liveness check would have noticed.
#[test]
fn a_home_that_missed_the_delete_of_a_clean_stop_is_told_by_the_next_run() {
    if !require_root("a_home_that_missed_the_delete_of_a_clean_stop_is_told_by_the_next_run") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    let state_dir = setup.pki.dir.join("state");
    let (server, client) = start_with_home_recorded(&setup);
    let home = &setup.lab.home().ns;
    // The home's path drops everything from the server (silently: no ICMP).
    home.nft(&format!(
        "add table ip drop_server\n\
         add chain ip drop_server input {{ type filter hook input priority -20; }}\n\
         add rule ip drop_server input ip saddr {VPS_ADDR} drop\n"
    ))
    .unwrap();
    let first_log = server.log.clone();
    assert!(server.stop().unwrap().success());
    let text = std::fs::read_to_string(&first_log).unwrap();
    assert!(
        text.contains("1 peer(s) kept in peers-up.json for the next run to tell: home.example"),
        "{text}"
    );
    assert_eq!(recorded_peers(&state_dir), ["home.example"]);
    let output = home
        .output("nft", &["delete table ip drop_server"])
        .unwrap();
    assert!(output.status.success(), "{output:?}");

    // The home still holds its SAs; the next run tells it.
    let log = setup.lab.dir().join("server-next.log");
    let started = Instant::now();
    let server = Daemon::start(&setup.lab.vps.ns, "server", &setup.server_toml, &log).unwrap();
    let back = told_and_back(&server, &client, started);
    eprintln!(
        "a home that missed the DELETE: its new CHILD SA up {} ms after the next run started",
        back.as_millis()
    );
    assert!(client.stop().unwrap().success());
    assert!(server.stop().unwrap().success());
    assert!(recorded_peers(&state_dir).is_empty());
}
