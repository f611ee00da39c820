//! The TUN device deleted under a running tunnel (`ip link del hometun0`, as a network manager or
//! a careless admin does). The forwarder must notice, say so in one line, make the device again
//! with its addresses and routes, and carry traffic again, without spinning on the dead
//! descriptor (its CPU time is counted from /proc, not timed). If the device cannot be made
//! again (a bridge took the name), the daemon stops with one line and exit
//! status 1.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::time::Duration;

use hometun_lab::ike_lab::{Daemon, Setup, VPS_INNER, has_link, logs, wait_ping};
use hometun_lab::{Guarded, Netns, require_root, wait_for};

/// The forwarder a daemon started: its only child process.
fn forwarder_pid(daemon: &Daemon) -> u32 {
    let pid = daemon.pid();
    let mut children = String::new();
    assert!(
        wait_for(Duration::from_secs(10), || {
            children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
            !children.trim().is_empty()
        }),
        "daemon {pid} has no forwarder child"
    );
    children.split_whitespace().next().unwrap().parse().unwrap()
}

/// User plus system CPU time of a process so far, in clock ticks (/proc/PID/stat fields 14
/// and 15, counted after the command name, which may hold spaces).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Field 3 (state) is the first after the name: utime is field 14, stime field 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Clock ticks the process used over `period`.
fn ticks_over(pid: u32, period: Duration) -> u64 {
    let before = cpu_ticks(pid);
    std::thread::sleep(period);
    cpu_ticks(pid) - before
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).unwrap_or(100)
}

/// The IPv6 routes through hometun0 in `ns`, sorted.
fn tunnel_routes(ns: &Netns) -> Vec<String> {
    let output = ns
        .output("ip", &["-6", "route", "show", "dev", "hometun0"])
        .unwrap();
    let mut routes: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        // The kernel's own routes (fe80::/64, the /128 of the tunnel address) come back with
        // the addresses; the forwarder's carry its own protocol (tunnel.route_protocol).
        .filter(|l| !l.contains("proto kernel"))
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
        .collect();
    routes.sort();
    routes
}

fn addresses(ns: &Netns) -> Vec<String> {
    let output = ns
        .output("ip", &["-6", "-o", "addr", "show", "dev", "hometun0"])
        .unwrap();
    let mut found: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        // The forwarder's own (the kernel's random link-local address is made again, anew).
        .filter(|l| l.contains("nodad"))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "inet6")?;
            words.get(at + 1).map(|w| w.to_string())
        })
        .collect();
    found.sort();
    found
}

fn lines_with(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// Deletes hometun0 in `ns` under ping traffic and checks that it comes back whole, with one log
/// line, and that the forwarder stays idle meanwhile.
fn delete_and_expect_recovery(ns: &Netns, daemon: &Daemon, what: &str, others: &[&Daemon]) {
    let forwarder = forwarder_pid(daemon);
    let routes = tunnel_routes(ns);
    let addrs = addresses(ns);
    assert!(!routes.is_empty(), "{what}: no route through hometun0");
    let before = lines_with(&daemon.log_text(), "hometun0 was deleted");

    ns.ip(&["link", "del", "hometun0"]).unwrap();
    // The whole period right after the deletion: a forwarder spinning on the dead descriptor
    // burns every tick of a core (the defect: 494 of 500 in 5 s).
    let period = Duration::from_secs(3);
    let used = ticks_over(forwarder, period);
    let available = ticks_per_second() * period.as_secs();
    eprintln!("{what}: forwarder used {used} of {available} clock ticks after the deletion");
    assert!(
        used * 10 < available,
        "{what}: the forwarder used {used} of {available} clock ticks in {period:?} after its \
         TUN device was deleted\n{}",
        daemon.log_text()
    );

    assert!(
        daemon.wait_log("hometun0 was deleted", Duration::from_secs(5)),
        "{what}: nothing logged\n{}",
        daemon.log_text()
    );
    assert!(has_link(ns, "hometun0"), "{what}: hometun0 not back");
    assert_eq!(addresses(ns), addrs, "{what}: addresses not back");
    assert_eq!(tunnel_routes(ns), routes, "{what}: routes not back");
    let log = daemon.log_text();
    assert_eq!(
        lines_with(&log, "hometun0 was deleted") - before,
        1,
        "{what}: not one line\n{log}"
    );
    let mut all = vec![daemon];
    all.extend_from_slice(others);
    assert!(
        wait_ping(ns, VPS_INNER, Duration::from_secs(10)) || what == "VPS",
        "{what}: no ping through the new device\n{}",
        logs(&all)
    );
    // Idle again, for good.
    let used = ticks_over(forwarder, Duration::from_secs(2));
    assert!(
        used * 10 < 2 * ticks_per_second(),
        "{what}: {used} ticks in 2 s"
    );
}

#[test]
fn a_deleted_tun_device_comes_back_and_the_forwarder_stays_idle() {
    if !require_root("a_deleted_tun_device_comes_back_and_the_forwarder_stays_idle") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    let lab = &setup.lab;
    let server = setup.start_server().unwrap();
    let client = setup.start_client(0).unwrap();
    let home = &lab.home().ns;
    assert!(
        wait_ping(home, VPS_INNER, Duration::from_secs(30)),
        "the home did not come up\n{}",
        logs(&[&server, &client])
    );
    // Traffic all along: five pings a second from the home.
    let mut ping = home.command(std::path::Path::new("ping"));
    ping.args(["-6", "-i", "0.2", &VPS_INNER.to_string()]);
    let _ping = Guarded::spawn(ping, "ping", &lab.dir().join("ping.log")).unwrap();

    delete_and_expect_recovery(home, &client, "home", &[&server]);
    // The server's device carries a route per home: deleted there, the home's route comes back.
    delete_and_expect_recovery(&lab.vps.ns, &server, "VPS", &[&client]);
    assert!(
        wait_ping(home, VPS_INNER, Duration::from_secs(10)),
        "no ping after the server's device came back\n{}",
        logs(&[&server, &client])
    );

    let client_log = client.log.clone();
    let server_log = server.log.clone();
    assert!(client.stop().unwrap().success());
    assert!(server.stop().unwrap().success());
    for log in [client_log, server_log] {
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            !text.contains("removing route"),
            "{}: route warnings at SIGTERM\n{text}",
            log.display()
        );
    }
    assert!(!has_link(home, "hometun0"));
}

#[test]
fn a_tun_device_that_cannot_be_made_again_stops_the_daemon_with_status_1() {
    if !require_root("a_tun_device_that_cannot_be_made_again_stops_the_daemon_with_status_1") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    let lab = &setup.lab;
    // No server: the client sets its tunnel up and keeps trying to reach it.
    let client = setup.start_client(0).unwrap();
    let home = &lab.home().ns;
    assert!(
        wait_for(Duration::from_secs(10), || has_link(home, "hometun0")),
        "{}",
        client.log_text()
    );
    let forwarder = forwarder_pid(&client);
    // The forwarder would make the device again within a millisecond: hold it (SIGSTOP) while
    // the device goes and a bridge takes its name, then let it find out.
    let signal = |signal| {
        // SAFETY: kill has no memory preconditions; the pid is the forwarder of our daemon.
        assert_eq!(unsafe { libc::kill(forwarder as i32, signal) }, 0);
    };
    signal(libc::SIGSTOP);
    home.ip(&["link", "del", "hometun0"]).unwrap();
    home.ip(&["link", "add", "hometun0", "type", "bridge"])
        .unwrap();
    signal(libc::SIGCONT);

    let log = client.log.clone();
    let status = client.wait_exit(Duration::from_secs(15));
    let text = std::fs::read_to_string(&log).unwrap();
    let status = status.unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(status.code(), Some(1), "{text}");
    assert_eq!(
        lines_with(&text, "cannot be made again"),
        1,
        "not one line saying why\n{text}"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{forwarder}")).exists(),
        "the forwarder is still running"
    );
}
