//! `hometun forwarder --control-fd N` as a daemon spawns it: a socketpair end inherited by the
//! child, requests over it (Configure creates the TUN device, Install adds the route, a bad
//! request is refused and the forwarder goes on), and the forwarder exiting 0 and removing its
//! device when the parent's end closes.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use hometun_control::{AeadAlg, ChildSa, ControlError, InterfaceConfig, Request, Response, Spi};
use hometun_forwarder::server::ControlClient;
use hometun_lab::{Guarded, Netns, hometun_bin, require_root};

fn child_sa(spi_in: u32) -> ChildSa {
    ChildSa::builder()
        .spis(spi_in, 0x77)
        .keys(AeadAlg::AesGcm256, 3, 4)
        .local_ts(&["2001:db8:ffff::/48"])
        .udp(4500, 4500)
        .esn(true)
        .replay_window(4096)
        .nat_keepalive_seconds(Some(20))
        .build()
}

#[test]
fn forwarder_driven_over_an_inherited_socket() {
    if !require_root("forwarder_driven_over_an_inherited_socket") {
        return;
    }
    let ns = Netns::new("f").unwrap();
    let (ours, theirs) = UnixStream::pair().unwrap();
    // SAFETY: clearing FD_CLOEXEC on a descriptor we own, so the child inherits it.
    assert_eq!(
        unsafe { libc::fcntl(theirs.as_raw_fd(), libc::F_SETFD, 0) },
        0
    );
    let mut command = ns.command(&hometun_bin().unwrap());
    command
        .arg("forwarder")
        .arg("--control-fd")
        .arg(theirs.as_raw_fd().to_string());
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = Guarded::spawn(command, "forwarder", log.path()).unwrap();
    drop(theirs);

    let mut client = ControlClient::from_stream(ours);
    let configure = Request::Configure(InterfaceConfig {
        tun_name: "htfd0".into(),
        mtu: 1400,
        addresses: vec!["fe80::1/64".parse().unwrap()],
        bind_ipv4: None,
        udp_port: 4500,
        raw_esp: false,
        manage_routes: true,
        route_metric: 77,
        route_protocol: 57,
        peer_pool: None,
        clamp_mss: false,
        icmp_source: None,
    });
    assert_eq!(client.request(configure).unwrap().0, Ok(Response::Ok));
    assert!(ns.ip(&["link", "show", "htfd0"]).is_ok(), "no TUN device");

    assert_eq!(
        client.request(Request::Install(child_sa(0x55))).unwrap().0,
        Ok(Response::Ok)
    );
    let routes = ns.ip(&["-6", "route", "show", "dev", "htfd0"]).unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(
        routes.contains("2001:db8:1::/64") && routes.contains("metric 77"),
        "{routes}"
    );

    let refused = client.request(Request::Install(child_sa(0x55))).unwrap().0;
    assert_eq!(refused, Err(ControlError::SpiInUse(Spi(0x55))));
    match client.request(Request::GetCounters).unwrap().0 {
        Ok(Response::Counters(report)) => {
            assert_eq!(report.sas.len(), 1);
            assert_eq!(report.sas[0].alg, "aes256gcm16");
        }
        other => panic!("{other:?}"),
    }

    // The parent goes away: the forwarder cleans up and exits 0.
    drop(client);
    let output = child.wait(Duration::from_secs(10)).unwrap();
    assert!(
        output.status.success(),
        "{}",
        std::fs::read_to_string(log.path()).unwrap_or_default()
    );
    assert!(
        ns.ip(&["link", "show", "htfd0"]).is_err(),
        "TUN device left behind"
    );
}
