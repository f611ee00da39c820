//! Many homes on one server: three `hometun client`s against one `hometun server`,
//! one TUN device on the VPS with one route per home prefix, each home with its own SAs. While
//! two of them keep a ping going (20 per second, one each way), the third leaves (its route
//! goes), comes back (its route returns), and is cut off by a reload that gives its prefix to a
//! `[[clients]]` entry and refused at its next connection: the two pings lose nothing.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::time::Duration;

use hometun_lab::ike_lab::{Daemon, Setup, VPS_INNER, edit_server, logs, wait_ping};
use hometun_lab::{Guarded, Netns, require_root, wait_for};

fn prefix(i: usize) -> String {
    format!("2001:db8:100:{}::/64", i + 1)
}

fn inner(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0x100, i as u16 + 1, 0, 0, 0, 1)
}

fn peer_names(server: &Daemon) -> BTreeSet<String> {
    server
        .status()
        .map(|s| {
            s["peers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn tunnel_routes(ns: &Netns) -> String {
    String::from_utf8_lossy(
        &ns.output("ip", &["-6", "route", "show", "dev", "hometun0"])
            .unwrap()
            .stdout,
    )
    .into_owned()
}

/// A ping every 50 ms until stopped, its output in a file.
struct Pinger {
    child: Guarded,
    log: std::path::PathBuf,
}

impl Pinger {
    fn start(ns: &Netns, to: Ipv6Addr, log: std::path::PathBuf) -> Self {
        let mut command = ns.command(std::path::Path::new("ping"));
        command.args(["-6", "-i", "0.05", "-W", "1", &to.to_string()]);
        Pinger {
            child: Guarded::spawn(command, "ping", &log).unwrap(),
            log,
        }
    }

    /// Stops it; returns (highest sequence number answered, sequence numbers missing below it).
    fn stop(self) -> (u64, Vec<u64>, String) {
        self.child.signal(libc::SIGINT);
        let _ = self.child.wait(Duration::from_secs(5));
        let text = std::fs::read_to_string(&self.log).unwrap();
        let answered: BTreeSet<u64> = text
            .lines()
            .filter(|l| l.contains("bytes from"))
            .filter_map(|l| l.split("icmp_seq=").nth(1))
            .filter_map(|s| s.split_whitespace().next())
            .filter_map(|s| s.parse().ok())
            .collect();
        let last = answered.iter().next_back().copied().unwrap_or(0);
        let missing = (1..last).filter(|s| !answered.contains(s)).collect();
        let summary = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or("")
            .to_string();
        (last, missing, summary)
    }
}

#[test]
fn homes_come_and_go_without_disturbing_the_others() {
    if !require_root("homes_come_and_go_without_disturbing_the_others") {
        return;
    }
    let setup = Setup::new(3).unwrap();
    let lab = &setup.lab;
    let server = setup.start_server().unwrap();
    let clients: Vec<Daemon> = (0..3).map(|i| setup.start_client(i).unwrap()).collect();
    for (i, client) in clients.iter().enumerate() {
        assert!(
            wait_ping(&lab.homes[i].ns, VPS_INNER, Duration::from_secs(30)),
            "home {i} did not come up\n{}",
            logs(&[&server, client])
        );
    }

    // One TUN device, one route per home, and each home with its own pair.
    let links = lab.vps.ns.output("ip", &["-o", "link", "show"]).unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert_eq!(
        links.lines().filter(|l| l.contains("hometun")).count(),
        1,
        "{links}"
    );
    let routes = tunnel_routes(&lab.vps.ns);
    for i in 0..3 {
        assert!(routes.contains(&prefix(i)), "{routes}");
    }
    let status = server.status().unwrap();
    let peers = status["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 3, "{status:#}");
    let mut spis = BTreeSet::new();
    for peer in peers {
        let name = peer["name"].as_str().unwrap();
        let i = match name {
            "home.example" => 0,
            "home2.example" => 1,
            "home3.example" => 2,
            other => panic!("unexpected peer {other}"),
        };
        let child = &peer["children"][0];
        assert_eq!(child["remote_ts"][0], prefix(i), "{status:#}");
        assert!(
            spis.insert(hometun_lab::ike_lab::spi(&child["spi_in"]).unwrap()),
            "{status:#}"
        );
    }

    // Two homes keep pinging: home 0 to the VPS, the VPS to home 1.
    let pings = [
        Pinger::start(&lab.homes[0].ns, VPS_INNER, lab.dir().join("ping0.log")),
        Pinger::start(&lab.vps.ns, inner(1), lab.dir().join("ping1.log")),
    ];
    std::thread::sleep(Duration::from_millis(500));

    // The third leaves: its peer and its route go.
    let mut clients = clients;
    let third = clients.pop().unwrap();
    assert!(third.stop().unwrap().success());
    assert!(
        wait_for(Duration::from_secs(10), || !peer_names(&server)
            .contains("home3.example")),
        "the server kept the third home\n{}",
        logs(&[&server])
    );
    assert!(
        wait_for(Duration::from_secs(5), || !tunnel_routes(&lab.vps.ns)
            .contains(&prefix(2))),
        "its route stayed: {}",
        tunnel_routes(&lab.vps.ns)
    );

    // It comes back.
    let log = lab.dir().join("client2-again.log");
    let third = Daemon::start(&lab.homes[2].ns, "client", &setup.client_tomls[2], &log).unwrap();
    assert!(
        wait_ping(&lab.homes[2].ns, VPS_INNER, Duration::from_secs(30)),
        "the third home did not come back\n{}",
        logs(&[&server, &third])
    );
    assert_eq!(peer_names(&server).len(), 3);
    assert!(tunnel_routes(&lab.vps.ns).contains(&prefix(2)));

    // Its prefix goes to a static client: the reload deletes its SAs at once (the prefix is
    // no longer its own) and its next connection is refused.
    edit_server(&setup.server_toml, |c| {
        c.clients.push(hometun_config::StaticClient {
            name: "office.example".into(),
            prefix: prefix(2).parse().unwrap(),
        })
    })
    .unwrap();
    // SAFETY: kill has no memory preconditions; the pid is our server's.
    unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };
    assert!(
        server.wait_log("changed clients", Duration::from_secs(10)),
        "{}",
        logs(&[&server])
    );
    assert!(
        server.wait_log(
            "SIGHUP: deleted the SAs of home3.example: its certificate's prefix 2001:db8:100:3::/64 overlaps",
            Duration::from_secs(5)
        ),
        "the reload kept the home whose prefix went to another\n{}",
        logs(&[&server])
    );
    assert!(
        wait_for(Duration::from_secs(5), || !peer_names(&server)
            .contains("home3.example")
            && !tunnel_routes(&lab.vps.ns).contains(&prefix(2))),
        "its peer or route stayed: {}",
        tunnel_routes(&lab.vps.ns)
    );
    assert!(
        third.wait_log("peer down", Duration::from_secs(5)),
        "the third home did not hear of it\n{}",
        logs(&[&third])
    );
    third.stop().unwrap();
    let log = lab.dir().join("client2-refused.log");
    let third = Daemon::start(&lab.homes[2].ns, "client", &setup.client_tomls[2], &log).unwrap();
    assert!(
        third.wait_log("AUTHENTICATION_FAILED", Duration::from_secs(20)),
        "the third home was not refused\n{}",
        logs(&[&server, &third])
    );
    let refusal = server
        .log_text()
        .lines()
        .find(|l| l.contains("refused home3.example"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        refusal.contains("overlaps 2001:db8:100:3::/64 of [[clients]] office.example"),
        "{refusal}\n{}",
        logs(&[&server])
    );
    eprintln!("{refusal}");
    assert!(third.stop().unwrap().success());
    assert_eq!(
        peer_names(&server),
        ["home.example", "home2.example"]
            .into_iter()
            .map(String::from)
            .collect()
    );

    // The other two never noticed. A second more of pings, so that each log has more than 20
    // answers however fast the steps above went (what counts is that none is missing).
    std::thread::sleep(Duration::from_millis(1100));
    for (ping, what) in pings.into_iter().zip(["home 0 -> VPS", "VPS -> home 1"]) {
        let (last, missing, summary) = ping.stop();
        eprintln!("{what}: {summary}");
        assert!(last > 20, "{what}: only {last} pings answered");
        assert!(missing.is_empty(), "{what}: pings lost: {missing:?}");
    }
    for client in clients {
        assert!(client.stop().unwrap().success());
    }
    assert!(server.stop().unwrap().success());
}
