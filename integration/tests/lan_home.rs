//! The static prefix serves the whole home, and the whole Internet reaches it: a LAN host behind
//! the home router gets an address from the home's prefix by SLAAC from the client's Router
//! Advertisements, reaches an Internet host beyond the VPS and is reached by it, carries 100 MB
//! of TCP each way with the SHA-256 checked, and loses the prefix (deprecated by the final
//! advertisement) when the client stops; nothing stays behind on either router. Both upstream
//! modes: the provider routes the pool to the VPS, or the VPS answers Neighbor Solicitations for
//! the home's addresses on its one on-link /64.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::net::Ipv6Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use hometun_lab::ike_lab::{Daemon, logs, ping6, tcp_transfer, wait_ping};
use hometun_lab::lan_lab::{
    INTERNET_HOST, LAN_INTERFACE, LanLab, Mode, ip_text, network_state, ping_output, sysctl_value,
};
use hometun_lab::{require_root, wait_for};

const MB_100: u64 = 100 * 1024 * 1024;

fn nettool() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hometun-nettool"))
}

fn the_home_s_lan_reaches_and_is_reached(mode: Mode, test: &str) {
    if !require_root(test) {
        return;
    }
    let started = Instant::now();
    let lab = LanLab::new(mode).unwrap();
    // The updown hook writes what it was given.
    let hook_log = lab.dir().join("updown.log");
    let hook = lab.dir().join("updown.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$HOMETUN_STATE $HOMETUN_PREFIX $HOMETUN_LANS $HOMETUN_TUNNEL $HOMETUN_MTU\" >> {}\n",
            hook_log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    hometun_lab::ike_lab::edit_client(&lab.client_toml, |c| {
        c.client.updown = Some(hook.clone());
    })
    .unwrap();
    let before_home = state(&lab, Side::Home);
    let before_vps = state(&lab, Side::Vps);

    let server = lab.start_server().unwrap();
    let client_started = Instant::now();
    let client = lab.start_client().unwrap();
    let both = |server: &Daemon, client: &Daemon| logs(&[server, client]);
    assert!(
        client.wait_log("lan lan0: ", Duration::from_secs(30)),
        "the LAN did not come up:\n{}",
        both(&server, &client)
    );
    let tunnel_up = client_started.elapsed();
    let (lan_host, slaac) = lab
        .wait_slaac(client_started, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", both(&server, &client)));
    if slaac > Duration::from_secs(1) {
        eprintln!("{}", both(&server, &client));
    }
    eprintln!(
        "{test}: tunnel up {} ms after the client's start, LAN host {lan_host} by SLAAC after {} ms",
        tunnel_up.as_millis(),
        slaac.as_millis()
    );

    // What the advertisements told the LAN host: the tunnel's MTU and the home as default
    // router.
    assert_eq!(
        sysctl_value(&lab.lan, "net.ipv6.conf.eth0.mtu").unwrap(),
        "1400"
    );
    let routes = ip_text(&lab.lan, &["-6", "route", "show", "default"]);
    assert!(routes.contains("via fe80::"), "{routes}");
    // Packets from the home's prefix take the tunnel whatever other default route the home has.
    let home_routes = ip_text(&lab.home, &["-6", "route", "show"]);
    assert!(
        home_routes.contains(&format!("default from {} dev hometun0", mode.home_prefix())),
        "{home_routes}"
    );
    // The home router holds <subnet>::1/64 on the LAN and forwards.
    let router = Ipv6Addr::from(u128::from(mode.lan_subnet().network()) | 1);
    assert!(
        ip_text(&lab.home, &["-6", "addr", "show", "dev", LAN_INTERFACE])
            .contains(&format!("{router}/64"))
    );
    assert_eq!(
        sysctl_value(&lab.home, "net.ipv6.conf.all.forwarding").unwrap(),
        "1"
    );
    assert_eq!(
        sysctl_value(&lab.vps, "net.ipv6.conf.all.forwarding").unwrap(),
        "1"
    );
    // Forwarding on: the native uplink still takes Router Advertisements (accept_ra 1 -> 2),
    // the LAN none (a LAN host could otherwise make itself the router's default router).
    assert_eq!(
        sysctl_value(&lab.home, "net.ipv6.conf.eth0.accept_ra").unwrap(),
        "2"
    );
    assert_eq!(
        sysctl_value(
            &lab.home,
            &format!("net.ipv6.conf.{LAN_INTERFACE}.accept_ra")
        )
        .unwrap(),
        "0"
    );

    // Both ways.
    assert!(
        wait_ping(&lab.lan, INTERNET_HOST, Duration::from_secs(10)),
        "LAN host -> Internet host:\n{}",
        both(&server, &client)
    );
    assert!(
        ping6(&lab.inet, lan_host, 3).unwrap(),
        "Internet host -> LAN host"
    );
    assert!(
        ping6(&lab.inet, router, 3).unwrap(),
        "Internet host -> home router's LAN address"
    );

    // A packet too large for the tunnel from the Internet host's 1500-byte link: the VPS's
    // Packet Too Big comes from a global address.
    let too_big = ping_output(&lab.inet, lan_host, 1452).unwrap();
    assert!(
        too_big.contains(&format!("From {}", mode.vps_address()))
            && too_big.to_lowercase().contains("too big"),
        "{too_big}"
    );

    // 100 MB of TCP each way between the MTU-1500 Internet host and the LAN host.
    let t = Instant::now();
    let (sent, received) =
        tcp_transfer(nettool(), &lab.lan, &lab.inet, lan_host, 5001, MB_100).unwrap();
    let inbound = t.elapsed();
    assert_eq!(sent, received, "Internet host -> LAN host");
    assert!(sent.starts_with(&MB_100.to_string()), "{sent}");
    let t = Instant::now();
    let (sent, received) =
        tcp_transfer(nettool(), &lab.inet, &lab.lan, INTERNET_HOST, 5002, MB_100).unwrap();
    let outbound = t.elapsed();
    assert_eq!(sent, received, "LAN host -> Internet host");
    eprintln!(
        "{test}: 100 MB Internet -> LAN in {} ms ({:.0} Mbit/s), LAN -> Internet in {} ms ({:.0} Mbit/s)",
        inbound.as_millis(),
        mbits(inbound),
        outbound.as_millis(),
        mbits(outbound)
    );

    if mode == Mode::Routed {
        // A home of the pool that is not up: refused at the VPS with an ICMPv6 error from its
        // global address, not sent back towards the provider.
        let absent = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0x900, 0, 0, 0, 1);
        let refused = ping_output(&lab.inet, absent, 56).unwrap();
        assert!(
            refused.contains(&format!("From {}", mode.vps_address()))
                && refused.contains("nreachable"),
            "{refused}"
        );
    }

    // The hook ran with the home's prefix, its LAN and the tunnel.
    let expected_up = format!(
        "up {} {LAN_INTERFACE}={} hometun0 1400",
        mode.home_prefix(),
        mode.lan_subnet()
    );
    assert!(
        wait_for(Duration::from_secs(5), || std::fs::read_to_string(
            &hook_log
        )
        .is_ok_and(|t| t.contains(&expected_up))),
        "{:?}",
        std::fs::read_to_string(&hook_log)
    );

    // The client stops: the final advertisement deprecates the LAN host's address and takes the
    // home off its list of default routers.
    let stopping = Instant::now();
    assert!(client.stop().unwrap().success());
    assert!(
        wait_for(Duration::from_secs(5), || lab
            .lan_host_addresses()
            .iter()
            .all(|(_, deprecated)| *deprecated)),
        "{}",
        ip_text(&lab.lan, &["-6", "addr", "show", "dev", "eth0"])
    );
    eprintln!(
        "{test}: LAN host's address deprecated {} ms after SIGTERM to the client",
        stopping.elapsed().as_millis()
    );
    let routes = ip_text(&lab.lan, &["-6", "route", "show", "default"]);
    assert!(!routes.contains("via fe80::"), "{routes}");
    assert!(
        std::fs::read_to_string(&hook_log)
            .unwrap()
            .contains(&expected_up.replacen("up", "down", 1))
    );

    if mode == Mode::NdpProxy {
        // The home is gone: the VPS no longer answers for its addresses.
        lab.inet
            .ip(&["-6", "neigh", "flush", "dev", "eth0"])
            .unwrap();
        assert!(!ping6(&lab.inet, lan_host, 1).unwrap());
        let neighbours = ip_text(&lab.inet, &["-6", "neigh", "show", &lan_host.to_string()]);
        assert!(!neighbours.contains("lladdr"), "{neighbours}");
    }

    assert!(server.stop().unwrap().success());
    // Nothing left behind.
    assert_eq!(state(&lab, Side::Home), before_home);
    assert_eq!(state(&lab, Side::Vps), before_vps);
    eprintln!("{test}: {} ms in all", started.elapsed().as_millis());
}

fn mbits(elapsed: Duration) -> f64 {
    (MB_100 * 8) as f64 / elapsed.as_secs_f64() / 1e6
}

enum Side {
    Home,
    Vps,
}

/// What a router's daemon may change: addresses, routes, forwarding and accept_ra sysctls.
fn state(lab: &LanLab, side: Side) -> String {
    let ns = match side {
        Side::Home => &lab.home,
        Side::Vps => &lab.vps,
    };
    network_state(
        ns,
        &[
            "net.ipv6.conf.all.forwarding",
            "net.ipv6.conf.default.accept_ra",
            "net.ipv6.conf.eth0.accept_ra",
            "net.ipv6.conf.lan0.accept_ra",
        ],
    )
}

#[test]
fn routed_upstream_the_lan_host_gets_the_prefix_and_the_internet_reaches_it() {
    the_home_s_lan_reaches_and_is_reached(
        Mode::Routed,
        "routed_upstream_the_lan_host_gets_the_prefix_and_the_internet_reaches_it",
    );
}

#[test]
fn ndp_proxy_upstream_the_lan_host_gets_the_prefix_and_the_internet_reaches_it() {
    the_home_s_lan_reaches_and_is_reached(
        Mode::NdpProxy,
        "ndp_proxy_upstream_the_lan_host_gets_the_prefix_and_the_internet_reaches_it",
    );
}
