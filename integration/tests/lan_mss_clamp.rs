//! TCP MSS clamping (`tunnel.clamp_mss`, on by default): with the ICMPv6 Packet Too Big errors
//! filtered at both ends and a LAN host that ignores the advertised MTU (1500 on its link), TCP
//! between it and the Internet host still flows both ways, because both forwarders lower the
//! MSS of SYNs to what fits the tunnel. With clamping off the same transfers stall (a path MTU
//! black hole). The throughput with clamping on and off is compared by an ignored test:
//! `cargo test --release -p hometun-integration --test lan_mss_clamp -- --ignored --nocapture`.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::net::Ipv6Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use hometun_lab::ike_lab::{Daemon, edit_client, edit_server, logs, tcp_transfer, wait_ping};
use hometun_lab::lan_lab::{INTERNET_HOST, LanLab, Mode, sysctl};
use hometun_lab::{Guarded, Netns, require_root};

fn nettool() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hometun-nettool"))
}

/// A routed lab with `clamp_mss` on both routers and a LAN host that ignores the advertised
/// MTU; the tunnel up and the LAN host's address.
fn lab_with(clamp: bool) -> (LanLab, Daemon, Daemon, Ipv6Addr) {
    let lab = LanLab::new(Mode::Routed).unwrap();
    edit_server(&lab.server_toml, |c| c.tunnel.clamp_mss = clamp).unwrap();
    edit_client(&lab.client_toml, |c| c.tunnel.clamp_mss = clamp).unwrap();
    // A LAN host that keeps its link's 1500 bytes whatever the advertisements say.
    sysctl(&lab.lan, "net.ipv6.conf.eth0.accept_ra_mtu", "0").unwrap();
    let server = lab.start_server().unwrap();
    let started = Instant::now();
    let client = lab.start_client().unwrap();
    let (lan_host, _) = lab
        .wait_slaac(started, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs(&[&server, &client])));
    assert!(wait_ping(&lab.lan, INTERNET_HOST, Duration::from_secs(10)));
    (lab, server, client, lan_host)
}

/// Breaks path MTU discovery: both hosts drop every Packet Too Big.
fn break_pmtud(lab: &LanLab) {
    for ns in [&lab.lan, &lab.inet] {
        let output = ns
            .output(
                "nft",
                &["add table ip6 f; add chain ip6 f in { type filter hook input priority 0; }; add rule ip6 f in icmpv6 type packet-too-big drop"],
            )
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// `bytes` of TCP from `sender` to `[addr]:port` in `receiver`; `None` when it does not finish
/// within `timeout`, else whether both ends' SHA-256 agree.
fn transfer_within(
    receiver: &Netns,
    sender: &Netns,
    addr: Ipv6Addr,
    port: u16,
    bytes: u64,
    timeout: Duration,
) -> Option<bool> {
    let mut command = receiver.command(nettool());
    command.args(["tcp-recv", &port.to_string()]);
    let mut listening = Guarded::spawn_piped(command, "tcp-recv").unwrap();
    assert_eq!(listening.read_line().unwrap(), "ready");
    let mut command = sender.command(nettool());
    command.args([
        "tcp-send",
        &addr.to_string(),
        &port.to_string(),
        &bytes.to_string(),
    ]);
    let sending = Guarded::spawn_piped(command, "tcp-send").unwrap();
    let sent = sending.wait(timeout).ok()?;
    let received = listening.wait(Duration::from_secs(5)).ok()?;
    let line = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).trim().to_string();
    Some(!line(&sent).is_empty() && line(&sent) == line(&received))
}

#[test]
fn clamping_carries_tcp_where_packet_too_big_is_filtered_and_without_it_tcp_stalls() {
    if !require_root(
        "clamping_carries_tcp_where_packet_too_big_is_filtered_and_without_it_tcp_stalls",
    ) {
        return;
    }
    const BYTES: u64 = 20 * 1024 * 1024;
    let timeout = Duration::from_secs(15);
    let (lab, _server, _client, lan_host) = lab_with(true);
    break_pmtud(&lab);
    assert_eq!(
        transfer_within(&lab.lan, &lab.inet, lan_host, 5001, BYTES, timeout),
        Some(true),
        "Internet host -> LAN host with clamping"
    );
    assert_eq!(
        transfer_within(&lab.inet, &lab.lan, INTERNET_HOST, 5002, BYTES, timeout),
        Some(true),
        "LAN host -> Internet host with clamping"
    );
    drop(lab);

    let (lab, _server, _client, lan_host) = lab_with(false);
    break_pmtud(&lab);
    let short = Duration::from_secs(5);
    assert_eq!(
        transfer_within(&lab.lan, &lab.inet, lan_host, 5001, BYTES, short),
        None,
        "without clamping, Internet host -> LAN host should stall in the black hole"
    );
    assert_eq!(
        transfer_within(&lab.inet, &lab.lan, INTERNET_HOST, 5002, BYTES, short),
        None,
        "without clamping, LAN host -> Internet host should stall in the black hole"
    );
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn clamping_costs_no_throughput() {
    if !require_root("clamping_costs_no_throughput") {
        return;
    }
    const BYTES: u64 = 200 * 1024 * 1024;
    for clamp in [true, false, true, false] {
        let (lab, _server, _client, lan_host) = lab_with(clamp);
        let mut rates = Vec::new();
        for (receiver, sender, addr) in [
            (&lab.lan, &lab.inet, lan_host),
            (&lab.inet, &lab.lan, INTERNET_HOST),
        ] {
            let t = Instant::now();
            let (sent, received) =
                tcp_transfer(nettool(), receiver, sender, addr, 5003, BYTES).unwrap();
            assert_eq!(sent, received);
            rates.push((BYTES * 8) as f64 / t.elapsed().as_secs_f64() / 1e6);
        }
        eprintln!(
            "clamp_mss = {clamp}: Internet -> LAN {:.0} Mbit/s, LAN -> Internet {:.0} Mbit/s",
            rates[0], rates[1]
        );
    }
}
