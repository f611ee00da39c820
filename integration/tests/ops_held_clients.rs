//! Many idle homes on one server (the memory benchmark's set-up in small): 50 homes,
//! each with its own identity, certificate and /64 from `hometun pki`, bring up an IKE SA with
//! its CHILD SA against `hometun server` and stay up (`hometun ike bench --hold`, the initiator
//! `bench/memory.sh` uses). The server's status shows 50 peers, each with its own prefix, and
//! 50 CHILD SA pairs in its forwarder; when the initiator ends, it deletes every SA and the
//! server is left with none.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::time::Duration;

use hometun_lab::ike_lab::{Daemon, Setup};
use hometun_lab::roaming_ike_lab::wait_status;
use hometun_lab::{Guarded, require_root};

const HOMES: usize = 50;

fn peers(status: &serde_json::Value) -> usize {
    status["peers"].as_array().map_or(0, Vec::len)
}

fn pairs(status: &serde_json::Value) -> usize {
    status["counters"]["sas"].as_array().map_or(0, Vec::len)
}

#[test]
fn fifty_held_clients_are_up_at_once_and_leave_nothing_behind() {
    if !require_root("fifty_held_clients_are_up_at_once_and_leave_nothing_behind") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    let configs = setup.identities("held", HOMES).unwrap();
    let server: Daemon = setup.start_server().unwrap();

    // All homes come from one address; 4 in flight stays under the default per-source
    // half-open bound (8) and cookie threshold (32).
    let count = HOMES.to_string();
    let command = setup
        .ike_bench(
            &configs,
            &["--count", &count, "--concurrency", "4", "--hold"],
        )
        .unwrap();
    let mut initiator = Guarded::spawn_piped(command, "hometun ike bench --hold").unwrap();
    let handshakes = initiator.read_line().unwrap();
    assert!(
        handshakes.contains(&format!("ok {HOMES} failed 0")),
        "{handshakes}\n{}",
        server.log_text()
    );
    assert_eq!(
        initiator.read_line().unwrap(),
        format!("holding {HOMES} SAs")
    );

    let status = wait_status(&server, Duration::from_secs(20), |s| {
        peers(s) == HOMES && pairs(s) == HOMES
    })
    .unwrap_or_else(|| {
        panic!(
            "the server does not show {HOMES} peers with their CHILD SAs: {:#}\n{}",
            server.status().unwrap(),
            server.log_text()
        )
    });
    let prefixes: BTreeSet<String> = status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["prefixes"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p.as_str().map(str::to_string))
        .collect();
    assert_eq!(prefixes.len(), HOMES, "{status:#}");
    let table = server.status_table().unwrap();
    assert!(
        table
            .lines()
            .next()
            .unwrap()
            .contains(&format!("{HOMES} peers")),
        "{table}"
    );
    // Still all up a moment later: idle SAs stay.
    std::thread::sleep(Duration::from_secs(2));
    let status = server.status().unwrap();
    assert_eq!(
        (peers(&status), pairs(&status)),
        (HOMES, HOMES),
        "{status:#}"
    );

    initiator.signal(libc::SIGTERM);
    let output = initiator.wait(Duration::from_secs(30)).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains(&format!("held {HOMES} up at the end 0 went down")),
        "{stdout}"
    );
    // Every DELETE reached the server: no peer and no CHILD SA left.
    wait_status(&server, Duration::from_secs(20), |s| {
        peers(s) == 0 && pairs(s) == 0
    })
    .unwrap_or_else(|| {
        panic!(
            "SAs left after the DELETEs: {:#}\n{}",
            server.status().unwrap(),
            server.log_text()
        )
    });
    assert!(server.stop().unwrap().success());
}
