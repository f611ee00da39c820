//! Clean shutdown on SIGTERM: the server with two homes connected sends each a
//! DELETE (each client logs that the peer deleted its IKE SA), its forwarder removes the TUN
//! device and the routes, no process is left in its namespace and it exits 0; the homes then
//! stop the same way; and once the lab is dropped no namespace of this test is left.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::time::Duration;

use hometun_lab::ike_lab::{Daemon, Setup, VPS_INNER, assert_nothing_left, logs, wait_ping};
use hometun_lab::require_root;

#[test]
fn sigterm_deletes_the_sas_and_leaves_nothing() {
    if !require_root("sigterm_deletes_the_sas_and_leaves_nothing") {
        return;
    }
    let prefix = format!("ht{}-", std::process::id());
    {
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
        // The server's forwarder runs beside it in its namespace.
        assert!(lab.vps.ns.pids().len() >= 2, "{:?}", lab.vps.ns.pids());

        let server_log = server.log.clone();
        let status = server.stop().unwrap();
        assert!(status.success(), "server exit {status}");
        let text = std::fs::read_to_string(&server_log).unwrap();
        assert!(
            text.contains("SIGTERM: deleting the IKE SAs and stopping"),
            "{text}"
        );
        assert!(
            !text.contains("not every peer answered its DELETE"),
            "both homes answer their DELETE: {text}"
        );
        assert!(text.contains("stopped"), "{text}");
        assert_nothing_left(&lab.vps.ns, "VPS");
        assert!(
            !setup.pki.dir.join("state/control.sock").exists(),
            "status socket left"
        );
        for client in &clients {
            assert!(
                client.wait_log(
                    "peer down: vps.example (peer1): deleted by the peer",
                    Duration::from_secs(10)
                ),
                "the server's DELETE did not reach {}\n{}",
                client.log.display(),
                client.log_text()
            );
        }
        for (i, client) in clients.into_iter().enumerate() {
            assert!(client.stop().unwrap().success());
            assert_nothing_left(&lab.homes[i].ns, &format!("home {i}"));
        }
    }
    // Every namespace of this test is gone with the lab.
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    // Other tests of this binary run in parallel in the same process: only ours count, and
    // this file has one test.
    assert!(
        !list.lines().any(|l| l.starts_with(&prefix)),
        "namespaces left:\n{list}"
    );
}
