//! A daemon killed with SIGKILL and started again at once, as a supervisor does: its forwarder
//! must not outlive it holding the TUN device (the restarted daemon then failed with `creating
//! TUN device hometun0: Device or resource busy` and exited, again and again). A spawned
//! forwarder dies with its daemon (PR_SET_PDEATHSIG); a forwarder serving a control socket stops
//! when the daemon that configured it is gone; a new forwarder waits a moment for a device still
//! held, or says who holds it. Each test counts the forwarders afterwards: exactly one. The
//! server's forwarder is stopped (SIGSTOP) before its daemon is killed: only the parent-death
//! signal can end it then.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::Path;
use std::time::{Duration, Instant};

use hometun_control::{
    ControlError, InterfaceConfig, PlatformError, PlatformOp, Request, Response,
};
use hometun_forwarder::server::ControlClient;
use hometun_lab::ike_lab::{Daemon, Setup, VPS_INNER, edit_client, edit_server, has_link, logs};
use hometun_lab::{Guarded, Netns, hometun_bin, require_root, wait_for};

/// The live (not zombie) `hometun forwarder` processes in `ns`.
fn forwarders(ns: &Netns) -> Vec<u32> {
    let output = std::process::Command::new("ip")
        .args(["netns", "pids", ns.name()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            !zombie && cmdline.split(|b| *b == 0).any(|arg| arg == b"forwarder")
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty()
        && !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

/// Pings `addr` from `ns` until the first reply; the time since `since` when it came.
fn first_reply(ns: &Netns, addr: std::net::Ipv6Addr, since: Instant) -> Option<Duration> {
    let deadline = since + Duration::from_secs(40);
    while Instant::now() < deadline {
        let replied = ns
            .output("ping", &["-6", "-c", "1", "-W", "0.2", &addr.to_string()])
            .is_ok_and(|o| o.status.success());
        if replied {
            return Some(since.elapsed());
        }
    }
    None
}

/// What the new forwarder said about taking the device over, if it had to wait.
fn takeover(log: &str) -> String {
    log.lines()
        .rev()
        .find_map(|l| {
            l.split_once("creating TUN device hometun0: ")
                .map(|(_, m)| m)
        })
        .map_or("the device was free at once".into(), String::from)
}

fn sigkill(pid: u32) {
    // SAFETY: kill has no memory preconditions; the pid is a daemon this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
}

/// The client notices a restarted server within a few seconds (the default liveness check
/// comes after 30 s without traffic).
fn quick_liveness(setup: &Setup) {
    edit_client(&setup.client_tomls[0], |c| {
        c.ike.dpd_seconds = 2;
        c.ike.retransmit_ms = 200;
        c.ike.retransmit_tries = 2;
    })
    .unwrap();
}

#[test]
fn a_daemon_killed_and_started_again_at_once_comes_back_in_both_roles() {
    if !require_root("a_daemon_killed_and_started_again_at_once_comes_back_in_both_roles") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    quick_liveness(&setup);
    let lab = &setup.lab;
    let mut server = setup.start_server().unwrap();
    let mut client = setup.start_client(0).unwrap();
    assert!(
        first_reply(&lab.home().ns, VPS_INNER, Instant::now()).is_some(),
        "the tunnel did not come up\n{}",
        logs(&[&server, &client])
    );

    for role in ["server", "client"] {
        let (ns, config) = match role {
            "server" => (&lab.vps.ns, setup.server_toml.as_path()),
            _ => (&lab.home().ns, setup.client_tomls[0].as_path()),
        };
        let old = if role == "server" { &server } else { &client };
        let before = forwarders(ns);
        assert_eq!(before.len(), 1, "{role}: forwarders before: {before:?}");
        if role == "server" {
            // A forwarder that cannot notice anything (stopped, or wedged) must die as well:
            // only the kernel's parent-death signal reaches it.
            // SAFETY: kill has no memory preconditions; the pid is the daemon's forwarder.
            assert_eq!(unsafe { libc::kill(before[0] as i32, libc::SIGSTOP) }, 0);
        }
        sigkill(old.pid());
        let killed = Instant::now();
        let log = lab.dir().join(format!("{role}-restarted.log"));
        let restarted = Daemon::start(ns, role, config, &log).unwrap();
        let freed = wait_for(Duration::from_secs(5), || !alive(before[0]));
        let gone_after = killed.elapsed();
        assert!(freed, "{role}: the old forwarder outlived its daemon");
        assert!(
            gone_after < Duration::from_secs(1),
            "{role}: the old forwarder lived {gone_after:?} after its daemon"
        );
        let reply = first_reply(&lab.home().ns, VPS_INNER, killed);
        let text = restarted.log_text();
        assert!(
            reply.is_some(),
            "{role}: no ping6 through the tunnel after the restart\n--- restarted {role}:\n{text}\n{}",
            logs(&[&server, &client])
        );
        // The kernel releases a killed forwarder's device a moment after the process is gone,
        // so the new forwarder may find it busy: it must have waited and taken it over.
        assert!(
            !text.contains("Device or resource busy") || text.contains("taken over"),
            "{role}: the restarted daemon gave up on a busy device:\n{text}"
        );
        let after = forwarders(ns);
        assert_eq!(after.len(), 1, "{role}: forwarders after: {after:?}");
        assert_ne!(after, before, "{role}: the old forwarder still runs");
        eprintln!(
            "{role}: SIGKILL; old forwarder gone after {} ms; restarted at once; first ping6 \
             reply {} ms after the kill; one forwarder (pid {}); {}",
            gone_after.as_millis(),
            reply.unwrap_or_default().as_millis(),
            after[0],
            takeover(&text)
        );
        match role {
            "server" => server = restarted,
            _ => client = restarted,
        }
    }
    assert!(client.stop().unwrap().success());
    assert!(server.stop().unwrap().success());
}

#[test]
fn a_socket_served_forwarder_stops_at_once_when_its_daemon_is_killed() {
    if !require_root("a_socket_served_forwarder_stops_at_once_when_its_daemon_is_killed") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    quick_liveness(&setup);
    let lab = &setup.lab;
    let socket = lab.dir().join("forwarder/control.sock");
    std::fs::create_dir(socket.parent().unwrap()).unwrap();
    edit_server(&setup.server_toml, |c| {
        c.server.forwarder_socket = Some(socket.clone())
    })
    .unwrap();
    let start_forwarder = |log: &Path| {
        let mut command = lab.vps.ns.command(&hometun_bin().unwrap());
        command
            .args(["forwarder", "--accept-moves", "--control"])
            .arg(&socket);
        Guarded::spawn(command, "hometun forwarder", log).unwrap()
    };
    let old_forwarder = start_forwarder(&lab.dir().join("forwarder.log"));
    assert!(wait_for(Duration::from_secs(10), || socket.exists()));
    let server = setup.start_server().unwrap();
    let client = setup.start_client(0).unwrap();
    assert!(
        first_reply(&lab.home().ns, VPS_INNER, Instant::now()).is_some(),
        "the tunnel did not come up\n{}",
        logs(&[&server, &client])
    );

    // The daemon dies: its forwarder stops at once (TUN device and routes go), while a new
    // forwarder and daemon start, as a supervisor would start them.
    sigkill(server.pid());
    let killed = Instant::now();
    let new_forwarder = start_forwarder(&lab.dir().join("forwarder-restarted.log"));
    let restarted = Daemon::start(
        &lab.vps.ns,
        "server",
        &setup.server_toml,
        &lab.dir().join("server-restarted.log"),
    )
    .unwrap();
    let stopped = old_forwarder.wait(Duration::from_secs(5)).unwrap();
    let stop_time = killed.elapsed();
    assert!(
        stopped.status.success(),
        "old forwarder: {}",
        stopped.status
    );
    assert!(
        stop_time < Duration::from_secs(1),
        "the forwarder took {stop_time:?} to notice its daemon's death"
    );
    let reply = first_reply(&lab.home().ns, VPS_INNER, killed);
    let old_log = std::fs::read_to_string(lab.dir().join("forwarder.log")).unwrap_or_default();
    let new_log =
        std::fs::read_to_string(lab.dir().join("forwarder-restarted.log")).unwrap_or_default();
    assert!(
        reply.is_some(),
        "no ping6 after the restart\n--- old forwarder:\n{old_log}\n--- new forwarder:\n\
         {new_log}\n{}",
        logs(&[&restarted, &client])
    );
    assert!(
        old_log.contains("forwarder: stopped: its controller closed the channel"),
        "{old_log}"
    );
    let after = forwarders(&lab.vps.ns);
    assert_eq!(after, [new_forwarder.id()], "forwarders after the restart");
    eprintln!(
        "socket-served: SIGKILL of the daemon; its forwarder exited {} ms later; new forwarder \
         and daemon started at once; first ping6 reply {} ms after the kill; {}",
        stop_time.as_millis(),
        reply.unwrap_or_default().as_millis(),
        takeover(&new_log)
    );
    assert!(client.stop().unwrap().success());
    assert!(restarted.stop().unwrap().success());
    new_forwarder.wait(Duration::from_secs(10)).unwrap();
    assert!(!has_link(&lab.vps.ns, "hometun0"), "TUN device left");
}

fn interface() -> InterfaceConfig {
    InterfaceConfig {
        tun_name: "hometun0".into(),
        mtu: 1400,
        addresses: vec!["fe80::1/64".parse().unwrap()],
        bind_ipv4: None,
        udp_port: 0,
        raw_esp: true,
        manage_routes: true,
        route_metric: 1024,
        route_protocol: 57,
        peer_pool: None,
        clamp_mss: false,
        icmp_source: None,
    }
}

#[test]
fn a_busy_tun_device_is_waited_for_then_refused_naming_its_holder() {
    if !require_root("a_busy_tun_device_is_waited_for_then_refused_naming_its_holder") {
        return;
    }
    let ns = Netns::new("b").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str| {
        let socket = dir.path().join(format!("{name}.sock"));
        let mut command = ns.command(&hometun_bin().unwrap());
        command.args(["forwarder", "--control"]).arg(&socket);
        let forwarder =
            Guarded::spawn(command, name, &dir.path().join(format!("{name}.log"))).unwrap();
        assert!(wait_for(Duration::from_secs(10), || socket.exists()));
        (forwarder, ControlClient::connect(&socket).unwrap())
    };
    let (holder, mut first) = start("first");
    assert_eq!(
        first.request(Request::Configure(interface())).unwrap().0,
        Ok(Response::Ok)
    );

    // The device stays held: refused after the wait, naming who holds it.
    let (second_forwarder, mut second) = start("second");
    let asked = Instant::now();
    let refused = second.request(Request::Configure(interface())).unwrap().0;
    let waited = asked.elapsed();
    let expected = format!("held by pid {} (hometun)", holder.id());
    match &refused {
        Err(ControlError::Platform(PlatformError {
            operation: PlatformOp::CreateTun(name),
            errno: Some(libc::EBUSY),
            message,
        })) if name == "hometun0" && message.contains(&expected) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        (Duration::from_secs(3)..Duration::from_secs(5)).contains(&waited),
        "refused after {waited:?}"
    );
    eprintln!("refused after {waited:?}: {}", refused.unwrap_err());

    // Freed while the second waits: it takes the device over.
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        first.request(Request::Shutdown).unwrap().0.unwrap();
    });
    let asked = Instant::now();
    let configured = second.request(Request::Configure(interface())).unwrap().0;
    let waited = asked.elapsed();
    release.join().unwrap();
    assert_eq!(configured, Ok(Response::Ok));
    assert!(waited < Duration::from_secs(3), "took {waited:?}");
    assert!(has_link(&ns, "hometun0"));
    let log = std::fs::read_to_string(dir.path().join("second.log")).unwrap();
    assert!(
        log.contains("creating TUN device hometun0: free after about"),
        "{log}"
    );
    eprintln!("taken over {waited:?} after asking (freed after 500 ms)");
    holder.wait(Duration::from_secs(10)).unwrap();
    drop(second_forwarder);
}
