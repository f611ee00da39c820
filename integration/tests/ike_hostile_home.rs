//! What an authenticated home sends through its tunnel that the server must not act on: a
//! Router Advertisement from the home's link-local address, which a server with forwarding on
//! (`accept_ra` 2 inherited by the TUN device) would take as a default route into the tunnel,
//! blackholing its own IPv6 traffic for every home. The forwarder drops it (`link-scoped`) and
//! the tunnel device takes no advertisement or redirect anyway.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::time::Duration;

use hometun_lab::ike_lab::{Setup, VPS_INNER, logs, ping6, wait_ping};
use hometun_lab::lan_lab::sysctl_value;
use hometun_lab::require_root;

fn nettool() -> &'static str {
    env!("CARGO_BIN_EXE_hometun-nettool")
}

fn link_scoped_drops(status: &serde_json::Value) -> u64 {
    status["counters"]["sas"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|sa| sa["drops"].as_array().cloned().unwrap_or_default())
        .filter(|d| d[0] == "link-scoped")
        .filter_map(|d| d[1].as_u64())
        .sum()
}

#[test]
fn a_router_advertisement_from_a_home_never_routes_the_server() {
    if !require_root("a_router_advertisement_from_a_home_never_routes_the_server") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    let lab = &setup.lab;
    let (server, client) = setup.start_first_home_up().unwrap();
    assert!(
        wait_ping(&lab.home().ns, VPS_INNER, Duration::from_secs(30)),
        "the tunnel did not come up\n{}",
        logs(&[&server, &client])
    );
    let tunnel = "hometun0";
    let vps = &lab.vps.ns;
    let routes = |ns: &hometun_lab::Netns| {
        String::from_utf8_lossy(&ns.output("ip", &["-6", "route", "show"]).unwrap().stdout)
            .into_owned()
    };
    assert!(!routes(vps).contains("proto ra"), "{}", routes(vps));
    for _ in 0..3 {
        let sent = lab
            .home()
            .ns
            .output(nettool(), &["send-ra", tunnel])
            .unwrap();
        assert!(
            sent.status.success(),
            "send-ra: {}",
            String::from_utf8_lossy(&sent.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The server's routes are as they were.
    std::thread::sleep(Duration::from_millis(500));
    let after = routes(vps);
    assert!(!after.contains("proto ra"), "{after}");
    assert!(
        !after
            .lines()
            .any(|l| l.starts_with("default") && l.contains(tunnel)),
        "{after}"
    );
    // The forwarder counted each as dropped.
    let counted = hometun_lab::wait_for(Duration::from_secs(5), || {
        server
            .status()
            .is_ok_and(|status| link_scoped_drops(&status) >= 3)
    });
    let status = server.status().unwrap();
    assert!(counted, "{status:#}\n{}", logs(&[&server, &client]));
    // And the tunnel device takes no advertisement or redirect, should one get through.
    for setting in ["accept_ra", "accept_redirects"] {
        assert_eq!(
            sysctl_value(vps, &format!("net.ipv6.conf.{tunnel}.{setting}")).unwrap(),
            "0",
            "the server's {tunnel}: {setting}"
        );
    }

    // The tunnel still carries the home's traffic.
    assert!(
        ping6(&lab.home().ns, VPS_INNER, 3).unwrap(),
        "ping6 lost packets"
    );
}
