//! The TUN device of a home router with a LAN deleted under it: the forwarder makes it again
//! with its addresses and routes, and the client puts back what it added for the LAN (the
//! default route for packets from the home's prefix through the tunnel), so the LAN host
//! reaches the Internet host again.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use hometun_lab::ike_lab::{logs, wait_ping};
use hometun_lab::lan_lab::{INTERNET_HOST, LanLab, Mode, ip_text};
use hometun_lab::{require_root, wait_for};

#[test]
fn a_deleted_tun_device_comes_back_with_the_lan_s_source_route() {
    if !require_root("a_deleted_tun_device_comes_back_with_the_lan_s_source_route") {
        return;
    }
    let mode = Mode::Routed;
    let lab = LanLab::new(mode).unwrap();
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
    let source_route = format!("default from {} dev hometun0", mode.home_prefix());
    let routes = || ip_text(&lab.home, &["-6", "route", "show"]);
    assert!(routes().contains(&source_route), "{}", routes());

    lab.home.ip(&["link", "del", "hometun0"]).unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || routes().contains(&source_route)),
        "the LAN's source route did not come back:\n{}\n{}",
        routes(),
        client.log_text()
    );
    assert!(
        wait_ping(&lab.lan, INTERNET_HOST, Duration::from_secs(10)),
        "LAN host -> Internet host after the device came back\n{}",
        logs(&[&server, &client])
    );
    let log = client.log_text();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("hometun0 was deleted"))
            .count(),
        1,
        "{log}"
    );
    assert!(client.stop().unwrap().success());
    assert!(
        !routes().contains("hometun0"),
        "routes left after the client stopped:\n{}",
        routes()
    );
}
