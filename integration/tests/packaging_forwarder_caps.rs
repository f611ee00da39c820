//! Packaging: `hometun server` with `server.forwarder_socket` uses a forwarder that
//! runs on its own, as the systemd unit examples/systemd/hometun-server-forwarder.service runs
//! it: as user nobody holding only CAP_NET_ADMIN and CAP_NET_RAW (setpriv), with the roaming
//! flag the daemon would give its own child. The TUN device, the raw ESP socket and UDP 4500
//! all work with those two capabilities: a home's tunnel comes up and carries ping6 both ways.
//! Also: `--check` on a good and a bad config, the one-line error when the socket is missing,
//! and the forwarder stopping (TUN device gone) when the daemon stops.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hometun_lab::ike_lab::{
    Daemon, HOME_INNER, OuterCounters, Setup, VPS_INNER, edit_client, edit_server, has_link,
    hometun, ping6, wait_ping,
};
use hometun_lab::roaming_ike_lab::{IkeRoamingLab, wait_status};
use hometun_lab::roaming_lab::Path4;
use hometun_lab::{Guarded, Netns, hometun_bin, require_root, wait_for};

/// CAP_NET_ADMIN (12) and CAP_NET_RAW (13).
const NET_ADMIN_AND_RAW: u64 = (1 << 12) | (1 << 13);

fn logs(daemons: &[&Daemon], forwarder_log: &Path) -> String {
    let mut text: Vec<String> = daemons
        .iter()
        .map(|d| format!("--- {}:\n{}", d.log.display(), d.log_text()))
        .collect();
    text.push(format!(
        "--- forwarder:\n{}",
        std::fs::read_to_string(forwarder_log).unwrap_or_default()
    ));
    text.join("\n")
}

/// A `/proc/PID/status` field.
fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

fn capability_set(pid: u32, field: &str) -> u64 {
    u64::from_str_radix(&status_field(pid, field), 16).unwrap()
}

/// The directory a forwarder unit's RuntimeDirectory= makes: `run/NAME`, owned by its user
/// (nobody here). Returns the control socket path in it.
fn runtime_socket(run: &Path, name: &str) -> PathBuf {
    std::fs::set_permissions(run, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = run.join(name);
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    dir.join("control.sock")
}

/// `hometun forwarder --control SOCKET FLAGS...` in `ns` as the unit runs it: user nobody,
/// CAP_NET_ADMIN and CAP_NET_RAW only; waits until it listens.
fn start_unit_forwarder(ns: &Netns, socket: &Path, flags: &[&str], log: &Path) -> Guarded {
    let mut command = ns.command(Path::new("setpriv"));
    command
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all,+net_admin,+net_raw",
            "--ambient-caps=-all,+net_admin,+net_raw",
            "--bounding-set=-all,+net_admin,+net_raw",
            "--no-new-privs",
        ])
        .arg(hometun_bin().unwrap())
        .args(["forwarder", "--control"])
        .arg(socket)
        .args(flags);
    let forwarder = Guarded::spawn(command, "hometun forwarder as nobody", log).unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || socket.exists()),
        "the forwarder did not bind its socket:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    // `ip netns exec` and setpriv exec in place: the child's pid is the forwarder's.
    let pid = forwarder.id();
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.contains("forwarder\0--control"), "{cmdline:?}");
    forwarder
}

/// The forwarder runs as nobody with exactly CAP_NET_ADMIN and CAP_NET_RAW, no new privileges.
fn assert_only_net_admin_and_raw(pid: u32) {
    for set in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        assert_eq!(
            capability_set(pid, set),
            NET_ADMIN_AND_RAW,
            "{set} of the forwarder: {}",
            status_field(pid, set)
        );
    }
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    let uids: Vec<String> = status_field(pid, "Uid")
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(uids, ["65534"; 4]);
    eprintln!(
        "forwarder pid {pid}: uid 65534, CapEff {} (CAP_NET_ADMIN, CAP_NET_RAW)",
        status_field(pid, "CapEff")
    );
}

#[test]
fn server_uses_a_separate_forwarder_holding_only_net_admin_and_net_raw() {
    if !require_root("server_uses_a_separate_forwarder_holding_only_net_admin_and_net_raw") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    let lab = &setup.lab;
    let server_toml = setup.server_toml.to_str().unwrap().to_string();

    let run = tempfile::Builder::new().prefix("htpkg").tempdir().unwrap();
    let socket = runtime_socket(run.path(), "hometun-server-forwarder");
    edit_server(&setup.server_toml, |c| {
        c.server.forwarder_socket = Some(socket.clone())
    })
    .unwrap();

    // --check: "FILE: ok" for the good config, the one-line error for a bad one.
    let checked = hometun(&["server", "--config", &server_toml, "--check"]).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&checked.stdout),
        format!("{server_toml}: ok\n")
    );
    let bad = lab.dir().join("bad.toml");
    let text = std::fs::read_to_string(&setup.server_toml).unwrap();
    assert!(text.contains("mtu = 1400"), "{text}");
    std::fs::write(&bad, text.replace("mtu = 1400", "mtu = 9000")).unwrap();
    let refused = std::process::Command::new(hometun_bin().unwrap())
        .args(["server", "--check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let error = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{error}");
    assert_eq!(
        error,
        format!(
            "hometun: {}: tunnel.mtu: 9000 is outside 1280..=1435 (IPv6 minimum; room for outer headers)\n",
            bad.display()
        )
    );

    // No forwarder yet: the daemon waits a moment for the socket, then stops with one line.
    let missing = lab
        .vps
        .ns
        .output(
            hometun_bin().unwrap().to_str().unwrap(),
            &["server", "--config", &server_toml],
        )
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(missing.status.code(), Some(1), "{stderr}");
    assert!(
        last.starts_with(&format!("hometun: forwarder_socket {}: ", socket.display()))
            && last.contains("No such file or directory")
            && last.ends_with("running?)"),
        "{stderr}"
    );

    // The forwarder as the unit runs it: user nobody, CAP_NET_ADMIN and CAP_NET_RAW only.
    let forwarder_log = lab.dir().join("forwarder.log");
    let forwarder = start_unit_forwarder(&lab.vps.ns, &socket, &["--accept-moves"], &forwarder_log);
    let pid = forwarder.id();

    let server = setup.start_server().unwrap();
    assert!(
        server
            .log_text()
            .contains(&format!("forwarder at {}", socket.display())),
        "{}",
        server.log_text()
    );
    let outer = OuterCounters::install(&lab.vps.ns).unwrap();
    let client = setup.start_client(0).unwrap();
    assert!(
        wait_ping(&lab.home().ns, VPS_INNER, Duration::from_secs(30)),
        "the tunnel did not come up\n{}",
        logs(&[&server, &client], &forwarder_log)
    );
    assert!(
        ping6(&lab.home().ns, VPS_INNER, 5).unwrap(),
        "ping6 from the home lost packets"
    );
    assert!(
        ping6(&lab.vps.ns, HOME_INNER, 5).unwrap(),
        "ping6 to the home lost packets"
    );
    // Over the raw ESP socket (no NAT here): CAP_NET_RAW was enough for it.
    let seen = outer.read(&lab.vps.ns).unwrap();
    assert!(seen.esp_packets >= 10, "no raw ESP arrived: {seen:?}");

    // With the tunnel up, the forwarder still holds exactly those two capabilities, as nobody.
    assert_only_net_admin_and_raw(pid);

    // Stopping the daemon stops the forwarder it used: TUN device and socket gone, exit 0.
    let status = client.stop().unwrap();
    assert!(status.success(), "client: {status}");
    let status = server.stop().unwrap();
    assert!(status.success(), "server: {status}");
    let output = forwarder.wait(Duration::from_secs(10)).unwrap();
    assert!(
        output.status.success(),
        "forwarder: {}\n{}",
        output.status,
        std::fs::read_to_string(&forwarder_log).unwrap_or_default()
    );
    assert!(!has_link(&lab.vps.ns, "hometun0"), "TUN device left behind");
    assert!(!socket.exists(), "control socket left behind");
}

/// Both sides as the units run them (each IKE daemon with its forwarder as nobody holding only
/// CAP_NET_ADMIN and CAP_NET_RAW, the server's with --accept-moves, the home's with
/// --follow-local-address): the home's IPv4 address changes, the home's forwarder notices
/// (netlink), re-binds and announces it, the server's probes and moves the endpoint, and the
/// tunnel carries ping6 again; the capabilities stay the two.
#[test]
fn both_unit_forwarders_follow_an_address_change() {
    if !require_root("both_unit_forwarders_follow_an_address_change") {
        return;
    }
    let mut lab = IkeRoamingLab::new(Path4::Routed).unwrap();
    let run = tempfile::Builder::new().prefix("htpkg").tempdir().unwrap();
    let server_socket = runtime_socket(run.path(), "hometun-server-forwarder");
    let client_socket = runtime_socket(run.path(), "hometun-client-forwarder");
    edit_server(&lab.server_toml, |c| {
        c.server.forwarder_socket = Some(server_socket.clone())
    })
    .unwrap();
    edit_client(&lab.client_toml, |c| {
        c.client.forwarder_socket = Some(client_socket.clone())
    })
    .unwrap();
    let server_log = lab.dir().join("server-forwarder.log");
    let client_log = lab.dir().join("client-forwarder.log");
    let server_forwarder =
        start_unit_forwarder(&lab.vps, &server_socket, &["--accept-moves"], &server_log);
    let client_forwarder = start_unit_forwarder(
        &lab.home,
        &client_socket,
        &["--follow-local-address"],
        &client_log,
    );
    let server = lab.start_server().unwrap();
    let client = lab.start_client().unwrap();
    let all_logs = |server: &Daemon, client: &Daemon| {
        format!(
            "{}\n{}",
            logs(&[server, client], &server_log),
            std::fs::read_to_string(&client_log).unwrap_or_default()
        )
    };
    assert!(
        wait_ping(&lab.home, VPS_INNER, Duration::from_secs(30)),
        "the tunnel did not come up\n{}",
        all_logs(&server, &client)
    );

    lab.change_address().unwrap();
    let new = lab.home_seen_from_vps().to_string();
    assert!(
        wait_ping(&lab.home, VPS_INNER, Duration::from_secs(30)),
        "no tunnel after the address change\n{}",
        all_logs(&server, &client)
    );
    let status = wait_status(&server, Duration::from_secs(20), |s| {
        s["peers"][0]["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with(&format!("{new}:")))
    })
    .unwrap_or_else(|| {
        panic!(
            "the server did not move the home to {new}\n{}",
            all_logs(&server, &client)
        )
    });
    assert!(
        status["peers"][0]["moves"].as_u64() >= Some(1),
        "{status:#}"
    );
    assert!(
        ping6(&lab.home, VPS_INNER, 5).unwrap(),
        "ping6 lost packets"
    );
    assert_only_net_admin_and_raw(server_forwarder.id());
    assert_only_net_admin_and_raw(client_forwarder.id());

    assert!(client.stop().unwrap().success());
    assert!(server.stop().unwrap().success());
    for forwarder in [server_forwarder, client_forwarder] {
        let output = forwarder.wait(Duration::from_secs(10)).unwrap();
        assert!(output.status.success(), "forwarder: {}", output.status);
    }
    assert!(!has_link(&lab.home, "hometun0") && !has_link(&lab.vps, "hometun0"));
}

/// Started without the capabilities it needs, the forwarder stops with one line that names the
/// capability and how to grant it, not only "Operation not permitted".
#[test]
fn a_forwarder_without_capabilities_names_the_one_it_needs() {
    if !require_root("a_forwarder_without_capabilities_names_the_one_it_needs") {
        return;
    }
    let ns = Netns::new("c").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sas = dir.path().join("home.toml");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/static-sa/home.toml");
    std::fs::copy(example, &sas).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&sas, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = ns
        .command(Path::new("setpriv"))
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
        ])
        .arg(hometun_bin().unwrap())
        .args(["forwarder", "--control"])
        .arg(dir.path().join("control.sock"))
        .arg("--static")
        .arg(&sas)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("creating TUN device")
            && last.contains("this needs CAP_NET_ADMIN (run as root, or grant it as examples/systemd does with AmbientCapabilities)"),
        "{stderr}"
    );
}
