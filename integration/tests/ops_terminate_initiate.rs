//! Acting on one home without revoking it, and getting a home back without waiting out its
//! backoff: `hometun terminate NAME` on the server drops the home's SAs (DELETE sent) and the home
//! comes back by itself while the other keeps its tunnel; `hometun initiate` and SIGHUP make a
//! client that waits in a long backoff connect at once; a server whose host is up but whose
//! daemon is not answers with ICMP port unreachable, and the home is back within a second or
//! two of the daemon's start.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::Path;
use std::time::{Duration, Instant};

use hometun_lab::ike_lab::{Daemon, Setup, VPS_INNER, edit_client, logs, wait_ping};
use hometun_lab::{Netns, require_root, wait_for};

fn run_hometun(args: &[&str]) -> std::process::Output {
    let bin = hometun_lab::hometun_bin().unwrap();
    std::process::Command::new(bin).args(args).output().unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The IKE SPIs of `name`'s IKE SA in the server's status.
fn ike_spis(server: &Daemon, name: &str) -> Option<serde_json::Value> {
    let status = server.status().ok()?;
    status["peers"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["ike_spis"].clone())
}

/// Drops everything the home at `from` sends to the VPS (no ICMP: a silent path).
fn block(vps: &Netns, from: &str) {
    let rules = format!(
        "add table ip block; add chain ip block input {{ type filter hook input priority -20; }}; \
         add rule ip block input ip saddr {from} drop"
    );
    let output = vps.output("nft", &[&rules]).unwrap();
    assert!(output.status.success(), "{output:?}");
}

fn unblock(vps: &Netns) {
    let output = vps.output("nft", &["delete table ip block"]).unwrap();
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn terminate_drops_a_home_that_comes_back_and_leaves_the_other_alone() {
    if !require_root("terminate_drops_a_home_that_comes_back_and_leaves_the_other_alone") {
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
    let home2_before = ike_spis(&server, "home2.example").unwrap();
    let home_before = ike_spis(&server, "home.example").unwrap();

    let config = path(&setup.server_toml);
    // Another local user, who may read the config and reach the socket's directory, may not
    // act: the status socket is the owner's only (mode 0600).
    {
        use std::os::unix::fs::PermissionsExt;
        let state = setup.pki.dir.join("state");
        for dir in [lab.dir(), setup.pki.dir.as_path(), state.as_path()] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(&setup.server_toml, std::fs::Permissions::from_mode(0o644))
            .unwrap();
    }
    let bin = hometun_lab::hometun_bin().unwrap();
    let output = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["terminate", "home.example", "--config", config])
        .output()
        .unwrap();
    let error = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(error.contains("Permission denied"), "{error}");
    assert_eq!(ike_spis(&server, "home.example").unwrap(), home_before);

    let output = run_hometun(&["terminate", "home.example", "--config", config]);
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(said.starts_with("terminated home.example"), "{said}");
    let terminated = |log: &str| {
        log.lines()
            .filter(|l| {
                l.contains("peer down")
                    && l.contains("home.example")
                    && l.contains("terminated by the operator")
            })
            .count()
    };
    assert!(
        wait_for(Duration::from_secs(5), || terminated(&server.log_text())
            == 1),
        "not one peer-down line\n{}",
        server.log_text()
    );
    assert!(
        clients[0].wait_log("deleted by the peer", Duration::from_secs(5)),
        "the DELETE did not reach the home\n{}",
        clients[0].log_text()
    );
    // Back by itself, with a new IKE SA; the other home kept its own.
    assert!(
        wait_ping(&lab.homes[0].ns, VPS_INNER, Duration::from_secs(10)),
        "the home did not come back\n{}",
        logs(&[&server, &clients[0]])
    );
    let home_after = ike_spis(&server, "home.example").unwrap();
    assert_ne!(home_after, home_before, "the same IKE SA after terminate");
    assert_eq!(ike_spis(&server, "home2.example").unwrap(), home2_before);

    // A name the server holds no SA of: exit status 1 and one line.
    let output = run_hometun(&["terminate", "nobody.example", "--config", config]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let error = String::from_utf8_lossy(&output.stderr);
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(error.contains("no IKE SA of nobody.example"), "{error}");
    // initiate is for a client.
    let output = run_hometun(&["initiate", "--config", config]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
}

/// Drops the home's IKE SA while its path to the VPS is silent, and waits until its backoff
/// has grown to 12.8 s (retransmissions every 100 ms, two tries, doubling waits).
fn into_a_long_backoff(setup: &Setup, server: &Daemon, client: &Daemon) {
    let vps = &setup.lab.vps.ns;
    let long_waits = || client.log_text().matches("in 12.8 s").count();
    let before = long_waits();
    block(vps, &setup.lab.home().addr.to_string());
    let config = path(&setup.server_toml);
    let output = run_hometun(&["terminate", "home.example", "--config", config]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        wait_for(Duration::from_secs(40), || long_waits() > before),
        "the backoff did not grow\n{}",
        logs(&[server, client])
    );
    unblock(vps);
}

#[test]
fn initiate_and_sighup_connect_a_waiting_home_at_once() {
    if !require_root("initiate_and_sighup_connect_a_waiting_home_at_once") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    edit_client(&setup.client_tomls[0], |c| {
        c.ike.retransmit_ms = 100;
        c.ike.retransmit_tries = 2;
        c.ike.reconnect_max_seconds = 60;
    })
    .unwrap();
    let lab = &setup.lab;
    let home = &lab.home().ns;
    let server = setup.start_server().unwrap();
    let client = setup.start_client(0).unwrap();
    assert!(
        wait_ping(home, VPS_INNER, Duration::from_secs(30)),
        "{}",
        logs(&[&server, &client])
    );

    into_a_long_backoff(&setup, &server, &client);
    let asked = Instant::now();
    let output = run_hometun(&["initiate", "--config", path(&setup.client_tomls[0])]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("connecting now"),
        "{output:?}"
    );
    assert!(
        wait_ping(home, VPS_INNER, Duration::from_secs(5)),
        "initiate did not connect\n{}",
        logs(&[&server, &client])
    );
    eprintln!("initiate: back {:?} after asking", asked.elapsed());
    let output = run_hometun(&["initiate", "--config", path(&setup.client_tomls[0])]);
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("already connected"),
        "{output:?}"
    );

    into_a_long_backoff(&setup, &server, &client);
    let asked = Instant::now();
    // SAFETY: kill has no memory preconditions; the pid is our daemon's.
    unsafe { libc::kill(client.pid() as i32, libc::SIGHUP) };
    assert!(
        wait_ping(home, VPS_INNER, Duration::from_secs(5)),
        "SIGHUP did not connect\n{}",
        logs(&[&server, &client])
    );
    eprintln!("SIGHUP: back {:?} after the signal", asked.elapsed());

    // A change of the home's network (here a second address on its uplink, as DHCP or a
    // network manager make) does the same: the forwarder hears it from netlink.
    into_a_long_backoff(&setup, &server, &client);
    let asked = Instant::now();
    home.ip(&["addr", "add", "192.0.2.12/24", "dev", "eth0"])
        .unwrap();
    assert!(
        wait_ping(home, VPS_INNER, Duration::from_secs(5)),
        "a network change did not connect\n{}",
        logs(&[&server, &client])
    );
    eprintln!("network change: back {:?} after it", asked.elapsed());
}

#[test]
fn a_home_is_back_within_seconds_of_its_server_daemon() {
    if !require_root("a_home_is_back_within_seconds_of_its_server_daemon") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    let home = &setup.lab.home().ns;
    // The VPS is up, hometun is not: its kernel answers with port unreachable.
    let client = setup.start_client(0).unwrap();
    // 25 s: with the default timers (500 ms doubling, 5 tries) its second attempt has just
    // gone unanswered, and without port unreachable the third would start at about 32 s.
    std::thread::sleep(Duration::from_secs(25));
    let started = Instant::now();
    let server = setup.start_server().unwrap();
    assert!(
        wait_ping(home, VPS_INNER, Duration::from_secs(10)),
        "{}",
        logs(&[&server, &client])
    );
    let back = started.elapsed();
    eprintln!("back {back:?} after the server daemon started");
    // Without port unreachable the home would sit in a backoff of up to 30 s by now.
    assert!(back < Duration::from_secs(4), "back after {back:?}");
}
