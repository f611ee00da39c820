//! The home's outer IPv4 address changes under a running `hometun client` (docs/ARCHITECTURE.md,
//! "Roaming"): its forwarder follows the address, announces it through
//! the tunnel, the server's forwarder checks and probes it and moves the peer, and both IKE
//! endpoints follow (`EndpointMoved`). ping6 works again from the new address, both sides' status
//! shows it, and a DELETE from the client still reaches the server there.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use hometun_lab::ike_lab::{Setup, VPS_INNER, logs, ping6};
use hometun_lab::{require_root, wait_for};

#[test]
fn client_address_change_keeps_the_tunnel() {
    if !require_root("client_address_change_keeps_the_tunnel") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    let lab = &setup.lab;
    let (server, client) = setup.start_first_home_up().unwrap();
    // The ISP hands out another address: the new one first, then the old one goes.
    let home = &lab.home().ns;
    let sysctl = home
        .output(
            "sysctl",
            &["-q", "-w", "net.ipv4.conf.eth0.promote_secondaries=1"],
        )
        .unwrap();
    assert!(sysctl.status.success());
    home.ip(&["addr", "add", "192.0.2.9/24", "dev", "eth0"])
        .unwrap();
    home.ip(&["addr", "del", "192.0.2.2/24", "dev", "eth0"])
        .unwrap();
    let moved = Instant::now();
    let followed = wait_for(Duration::from_secs(20), || {
        server.status().is_ok_and(|s| {
            s["peers"][0]["remote"]
                .as_str()
                .is_some_and(|r| r.starts_with("192.0.2.9:"))
                && s["counters"]["sas"]
                    .as_array()
                    .is_some_and(|sas| sas.iter().all(|sa| sa["endpoint"]["remote"] == "192.0.2.9"))
        })
    });
    assert!(
        followed,
        "the server did not follow the move: {:#}\n{}",
        server.status().unwrap(),
        logs(&[&server, &client])
    );
    let took = moved.elapsed();
    assert!(
        ping6(home, VPS_INNER, 3).unwrap(),
        "no ping6 from the new address\n{}",
        logs(&[&server, &client])
    );
    let status = client.status().unwrap();
    assert_eq!(status["peers"][0]["local"], "192.0.2.9:500", "{status:#}");
    let status = server.status().unwrap();
    assert!(
        !status["peers"][0]["last_moved_seconds_ago"].is_null(),
        "{status:#}"
    );
    eprintln!(
        "followed within {:.2} s\n{}",
        took.as_secs_f64(),
        server.status_table().unwrap()
    );
    // The IKE SA moved too: the client's DELETE on SIGTERM reaches the server at the new address.
    assert!(client.stop().unwrap().success());
    assert!(
        wait_for(Duration::from_secs(10), || server
            .status()
            .is_ok_and(|s| s["peers"]
                .as_array()
                .is_some_and(|p| p.is_empty()))),
        "the server kept the peer after the client's DELETE from its new address\n{}",
        logs(&[&server])
    );
    assert!(server.stop().unwrap().success());
}
