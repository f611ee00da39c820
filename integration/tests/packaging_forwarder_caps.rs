//! Packaging (issue 6): `hometun server` with `server.forwarder_socket` uses a forwarder that
//! runs on its own, as the systemd unit examples/systemd/hometun-server-forwarder.service runs
//! it: as user nobody holding only CAP_NET_ADMIN and CAP_NET_RAW (setpriv), with the roaming
//! flag the daemon would give its own child. The TUN device, the raw ESP socket and UDP 4500
//! all work with those two capabilities: a home's tunnel comes up and carries ping6 both ways.
//! Also: `--check` on a good and a bad config, the one-line error when the socket is missing,
//! and the forwarder stopping (TUN device gone) when the daemon stops.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use hometun_integration::ike_lab::{
    Daemon, HOME_INNER, OuterCounters, Setup, VPS_INNER, edit_server, has_link, hometun, ping6,
    wait_ping,
};
use hometun_integration::{Guarded, hometun_bin, require_root, wait_for};

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

#[test]
fn server_uses_a_separate_forwarder_holding_only_net_admin_and_net_raw() {
    if !require_root("server_uses_a_separate_forwarder_holding_only_net_admin_and_net_raw") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    let lab = &setup.lab;
    let server_toml = setup.server_toml.to_str().unwrap().to_string();

    // The socket's directory belongs to nobody, as RuntimeDirectory= makes it for User=.
    let run = tempfile::Builder::new().prefix("htpkg").tempdir().unwrap();
    std::fs::set_permissions(run.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = run.path().join("hometun-server-forwarder");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let socket = dir.join("control.sock");
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
    let mut command = lab.vps.ns.command(Path::new("setpriv"));
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
        .arg(&socket)
        .arg("--accept-moves");
    let forwarder = Guarded::spawn(command, "hometun forwarder as nobody", &forwarder_log).unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || socket.exists()),
        "the forwarder did not bind its socket:\n{}",
        std::fs::read_to_string(&forwarder_log).unwrap_or_default()
    );
    // `ip netns exec` and setpriv exec in place: the child's pid is the forwarder's.
    let pid = forwarder.id();
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.contains("forwarder\0--control"), "{cmdline:?}");

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
