//! The server's log tells each CHILD SA's and each home's story in order, also when homes
//! come and go faster than its forwarder answers: 4 homes make 48 handshakes, 4 in flight,
//! each deleting its IKE SA as soon as it is up (`hometun ike bench`). An install is logged
//! once the forwarder has confirmed it, so the lines about the pair and its peer that come
//! meanwhile wait for it: every "deleted" line follows its pair's "installed" line, and each
//! home's "peer up" and "peer down" lines alternate.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::collections::{HashMap, HashSet};

use hometun_lab::ike_lab::{Daemon, Setup, edit_server};
use hometun_lab::require_root;

const HANDSHAKES: usize = 48;

/// The name in a "peer up: NAME (..." or "peer down: NAME (..." line, and whether it is up.
fn peer_line(line: &str) -> Option<(&str, bool)> {
    let (rest, up) = match (line.find("peer up: "), line.find("peer down: ")) {
        (Some(at), _) => (&line[at + "peer up: ".len()..], true),
        (None, Some(at)) => (&line[at + "peer down: ".len()..], false),
        (None, None) => return None,
    };
    Some((rest.split_whitespace().next()?, up))
}

/// The inbound SPI of a "CHILD SA <in>_i <out>_o installed|deleted" line, and which it is.
fn child_line(line: &str) -> Option<(&str, &str)> {
    let rest = &line[line.find("CHILD SA ")? + "CHILD SA ".len()..];
    let mut words = rest.split_whitespace();
    let spi_in = words.next()?.strip_suffix("_i")?;
    words.next()?.strip_suffix("_o")?;
    let what = words.next()?.trim_end_matches(':');
    matches!(what, "installed" | "deleted").then_some((spi_in, what))
}

#[test]
fn a_pair_deleted_before_its_install_was_confirmed_is_logged_after_it() {
    if !require_root("a_pair_deleted_before_its_install_was_confirmed_is_logged_after_it") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    let configs = setup.identities("home", 4).unwrap();
    // Each identity makes many IKE SAs in a row here: no bound of new ones.
    edit_server(&setup.server_toml, |c| c.dos.new_ike_sas_per_identity = 0).unwrap();
    let server: Daemon = setup.start_server().unwrap();

    // 4 in flight stays under the default per-source half-open bound (8).
    let count = HANDSHAKES.to_string();
    let output = setup
        .ike_bench(&configs, &["--count", &count, "--concurrency", "4"])
        .unwrap()
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains(&format!("ok {HANDSHAKES} failed 0")),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.log_text()
    );
    // Every pair's end is logged (the DELETE answers were awaited).
    let all_deleted = || {
        server
            .log_text()
            .lines()
            .filter(|line| child_line(line).is_some_and(|(_, what)| what == "deleted"))
            .count()
            == HANDSHAKES
    };
    assert!(
        hometun_lab::wait_for(std::time::Duration::from_secs(10), all_deleted),
        "{}",
        server.log_text()
    );

    let log = server.log_text();
    let mut installed = HashSet::new();
    let mut up = HashMap::new();
    for line in log.lines() {
        if let Some((name, now_up)) = peer_line(line) {
            let was_up = up.insert(name.to_string(), now_up).unwrap_or(false);
            assert_ne!(
                was_up,
                now_up,
                "{name}: two \"peer {}\" lines in a row:\n{log}",
                if now_up { "up" } else { "down" }
            );
        }
        match child_line(line) {
            Some((spi_in, "installed")) => {
                installed.insert(spi_in.to_string());
            }
            Some((spi_in, _)) => assert!(
                installed.contains(spi_in),
                "CHILD SA {spi_in} logged as deleted before it was logged as installed:\n{log}"
            ),
            None => {}
        }
    }
    assert_eq!(installed.len(), HANDSHAKES, "{log}");
    assert!(up.values().all(|up| !up), "a home still up: {up:?}\n{log}");
    server.stop().unwrap();
}
