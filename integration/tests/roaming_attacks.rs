//! Roaming (docs/ARCHITECTURE.md, "Roaming"): attacks on the override NA from a fourth namespace
//! attached to the ISP. The VPS's endpoint for the home never moves to the attacker, and the
//! counters say why each attempt was refused:
//!
//! - an NA outside ESP (plain) and an NA sealed with a wrong key never reach the NA checks:
//!   `NoSa` and `AuthFailed`, as the ESP drops they are;
//! - NAs that fail a check (hop limit, flags, checksum, no option, another client's target,
//!   multicast / loopback / the server's own target, older than the last, a storm), each under
//!   its own reason;
//! - a captured genuine NA replayed from the attacker's address: `Replay`;
//! - the same NA raced ahead of the real one from the attacker's address: the probe goes to the
//!   attacker, who relays it to the real client; the client's answer comes from the wrong
//!   address (`ProbeWrongAddress`), the attacker's round times out (`ProbeTimeout`), and the
//!   endpoint moves only to the client's real new address.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use hometun_control::{CounterReport, DropReason, Event, MoveRefusal, Request, RoamingReport, Spi};
use hometun_forwarder::roaming::override_na::emit_override_na;
use hometun_forwarder::server::ControlClient;
use hometun_lab::roaming_lab::{
    ATTACKER, HOME_FIRST, HOME_INNER, HOME_PEER, KEY_HOME_TO_VPS, LabOptions, OTHER_CLIENT_INNER,
    OTHER_PEER, RoamingLab, SPI_HOME_TO_VPS, SPI_VPS_TO_HOME, VPS_INNER, VPS_OUTER,
};
use hometun_lab::{Guarded, Netns, require_root, wait_for};

fn roamtool() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hometun-roamtool"))
}

/// Runs `hometun-roamtool ARGS` in `ns`; returns its output, failing the test if it failed.
fn roam(ns: &Netns, args: &[&str]) -> String {
    let output = ns
        .output(roamtool().to_str().unwrap(), args)
        .expect("running roamtool");
    assert!(
        output.status.success(),
        "roamtool {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn pair_drops(report: &CounterReport, spi_in: u32, reason: DropReason) -> u64 {
    report
        .sas
        .iter()
        .find(|s| s.spi_in == Spi(spi_in))
        .and_then(|s| s.drops.iter().find(|(r, _)| *r == reason))
        .map_or(0, |(_, n)| *n)
}

fn global_drops(report: &CounterReport, reason: DropReason) -> u64 {
    report
        .global_drops
        .iter()
        .find(|(r, _)| *r == reason)
        .map_or(0, |(_, n)| *n)
}

fn start() -> RoamingLab {
    let lab = RoamingLab::start(LabOptions::default()).unwrap();
    let ping = lab
        .home
        .output(
            "ping",
            &[
                "-6",
                "-c",
                "2",
                "-i",
                "0.2",
                "-W",
                "2",
                &VPS_INNER.to_string(),
            ],
        )
        .unwrap();
    assert!(ping.status.success(), "no ping\n{}", lab.logs());
    lab
}

/// An ESP sequence number ahead of everything the home sent, inside the VPS's window.
fn forged_seq(lab: &RoamingLab, ahead: u64) -> u64 {
    lab.counters("home").unwrap().sas[0].tx_packets + ahead
}

fn probes_sent(report: &Option<RoamingReport>) -> u64 {
    report
        .as_ref()
        .and_then(|r| r.peer(HOME_PEER))
        .map_or(0, |p| p.probes_sent)
}

#[test]
fn unauthenticated_nas_are_counted_as_the_esp_drops_they_are() {
    if !require_root("unauthenticated_nas_are_counted_as_the_esp_drops_they_are") {
        return;
    }
    let lab = start();
    let before = lab.counters("vps").unwrap();
    let endpoint = lab.vps_endpoint(HOME_PEER).unwrap();
    // A plain NA, outside ESP, as IP protocol 50 from the attacker and from the home's address.
    let mut na = vec![0u8; 128];
    let len = emit_override_na("fe80::2".parse().unwrap(), HOME_INNER, ATTACKER, &mut na).unwrap();
    let na = hex::encode(&na[..len]);
    let vps = VPS_OUTER.to_string();
    roam(
        &lab.attacker,
        &["send-esp", "raw", &ATTACKER.to_string(), &vps, &na],
    );
    roam(
        &lab.attacker,
        &["send-esp", "raw", &HOME_FIRST.to_string(), &vps, &na],
    );
    // The same in UDP 4500 (the VPS listens there too).
    roam(
        &lab.attacker,
        &["send-esp", "udp", &ATTACKER.to_string(), &vps, &na],
    );
    // A well-formed override NA in ESP with the home's SPI but a wrong key, from the attacker
    // and from the home's own address.
    let seq = forged_seq(&lab, 200).to_string();
    let wrong_key = "00112233445566778899aabbccddeeff01020304";
    let spi = format!("{SPI_HOME_TO_VPS:#x}");
    for src in [ATTACKER, HOME_FIRST] {
        roam(
            &lab.attacker,
            &[
                "forge-na",
                "raw",
                &src.to_string(),
                &vps,
                &spi,
                &seq,
                wrong_key,
            ],
        );
    }
    let counted = wait_for(Duration::from_secs(5), || {
        let now = lab.counters("vps").unwrap();
        global_drops(&now, DropReason::NoSa) >= global_drops(&before, DropReason::NoSa) + 3
            && pair_drops(&now, SPI_HOME_TO_VPS, DropReason::AuthFailed)
                >= pair_drops(&before, SPI_HOME_TO_VPS, DropReason::AuthFailed) + 2
    });
    let after = lab.counters("vps").unwrap();
    assert!(
        counted,
        "before {before:?}\nafter {after:?}\n{}",
        lab.logs()
    );
    assert_eq!(
        pair_drops(&after, SPI_HOME_TO_VPS, DropReason::OverrideNaRefused),
        0,
        "they never reached the NA checks"
    );
    assert_eq!(lab.vps_endpoint(HOME_PEER).unwrap(), endpoint);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        probes_sent(&lab.roaming_report("vps")),
        0,
        "no probe for them"
    );
    println!(
        "unauthenticated NAs: NoSa {} -> {}, AuthFailed {} -> {}",
        global_drops(&before, DropReason::NoSa),
        global_drops(&after, DropReason::NoSa),
        pair_drops(&before, SPI_HOME_TO_VPS, DropReason::AuthFailed),
        pair_drops(&after, SPI_HOME_TO_VPS, DropReason::AuthFailed)
    );
}

#[test]
fn nas_failing_a_check_are_refused_and_counted_by_reason() {
    if !require_root("nas_failing_a_check_are_refused_and_counted_by_reason") {
        return;
    }
    let lab = start();
    let home_endpoint = lab.vps_endpoint(HOME_PEER).unwrap();
    let other_endpoint = lab.vps_endpoint(OTHER_PEER).unwrap();
    let vps = VPS_OUTER.to_string();
    let home = HOME_FIRST.to_string();
    let spi = format!("{SPI_HOME_TO_VPS:#x}");
    let mut seq = forged_seq(&lab, 200);
    // Authentic (the home's key), from the home's own address: only the NA checks refuse them.
    let other_client = format!("target={OTHER_CLIENT_INNER}");
    let own = format!("target={VPS_INNER}");
    let cases: [(&[&str], MoveRefusal); 11] = [
        (&["hop=64"], MoveRefusal::HopLimit),
        (&["hop=254"], MoveRefusal::HopLimit),
        (&["flags=0x60"], MoveRefusal::Flags),
        (&["flags=0x00"], MoveRefusal::Flags),
        (&["flags=0xa0"], MoveRefusal::Flags),
        (&["checksum=bad"], MoveRefusal::Checksum),
        (&["tlla=0"], MoveRefusal::NoTargetLinkAddress),
        (&[&other_client], MoveRefusal::ForeignTarget),
        (&["target=ff02::1"], MoveRefusal::BadTarget),
        (&["target=::1"], MoveRefusal::BadTarget),
        (&[&own], MoveRefusal::BadTarget),
    ];
    for (options, _) in &cases {
        let seq_text = seq.to_string();
        let mut args = vec![
            "forge-na",
            "raw",
            &home,
            &vps,
            &spi,
            &seq_text,
            KEY_HOME_TO_VPS,
        ];
        args.extend_from_slice(options);
        roam(&lab.home, &args);
        seq += 1;
    }
    // A good NA, then an older one (unseen, inside the replay window, but not newer).
    let good = seq + 20;
    roam(
        &lab.home,
        &[
            "forge-na",
            "raw",
            &home,
            &vps,
            &spi,
            &good.to_string(),
            KEY_HOME_TO_VPS,
        ],
    );
    roam(
        &lab.home,
        &[
            "forge-na",
            "raw",
            &home,
            &vps,
            &spi,
            &(good - 10).to_string(),
            KEY_HOME_TO_VPS,
        ],
    );
    // A storm: 60 good NAs at once.
    roam(
        &lab.home,
        &[
            "forge-na",
            "raw",
            &home,
            &vps,
            &spi,
            &(good + 1).to_string(),
            KEY_HOME_TO_VPS,
            "count=60",
        ],
    );
    let expect = |reason: MoveRefusal| cases.iter().filter(|(_, r)| *r == reason).count() as u64;
    let report = lab.wait_report("vps", Duration::from_secs(5), |r| {
        r.peer(HOME_PEER).is_some_and(|p| {
            p.refused(MoveRefusal::Storm) > 0 && p.refused(MoveRefusal::OlderNa) == 1
        })
    });
    let report = report.unwrap_or_else(|| panic!("no refusals reported\n{}", lab.logs()));
    let peer = report.peer(HOME_PEER).unwrap();
    for reason in [
        MoveRefusal::HopLimit,
        MoveRefusal::Flags,
        MoveRefusal::Checksum,
        MoveRefusal::NoTargetLinkAddress,
        MoveRefusal::ForeignTarget,
        MoveRefusal::BadTarget,
    ] {
        assert_eq!(peer.refused(reason), expect(reason), "{reason}: {peer:?}");
    }
    assert_eq!(peer.refused(MoveRefusal::OlderNa), 1, "{peer:?}");
    // 16 NAs pass at once (the burst), one was the good NA above: most of the 60 are a storm.
    let storm = peer.refused(MoveRefusal::Storm);
    assert!((40..=60).contains(&storm), "storm {storm}: {peer:?}");
    assert_eq!(peer.nas_accepted + storm, 61, "{peer:?}");
    assert_eq!(
        peer.probes_sent, 0,
        "all from the endpoint itself: {peer:?}"
    );
    assert_eq!(peer.moves, 0);
    let counters = lab.counters("vps").unwrap();
    let total: u64 = peer.refusals.iter().map(|(_, n)| n).sum();
    assert_eq!(
        pair_drops(&counters, SPI_HOME_TO_VPS, DropReason::OverrideNaRefused),
        total
    );
    // The counter report the daemon reads every second (status, metrics) carries the same
    // refusals by reason.
    let reported = counters
        .roaming
        .iter()
        .find(|p| p.peer == HOME_PEER)
        .unwrap_or_else(|| panic!("no roaming entry in {:?}", counters.roaming));
    assert_eq!(reported.refusals, peer.refusals);
    assert_eq!(reported.nas_accepted, peer.nas_accepted);
    assert_eq!(lab.vps_endpoint(HOME_PEER).unwrap(), home_endpoint);
    assert_eq!(lab.vps_endpoint(OTHER_PEER).unwrap(), other_endpoint);
    let log = std::fs::read_to_string(lab.log("vps")).unwrap();
    assert!(log.contains("refused (foreign-target"), "{log}");
    println!("refusals by reason: {:?}", peer.refusals);
}

#[test]
fn replayed_na_from_the_attacker_is_dropped_by_the_replay_window() {
    if !require_root("replayed_na_from_the_attacker_is_dropped_by_the_replay_window") {
        return;
    }
    let mut lab = start();
    let mut command = lab.isp.command(roamtool());
    command.args([
        "capture-na",
        "ih",
        &format!("{SPI_HOME_TO_VPS:#x}"),
        KEY_HOME_TO_VPS,
        "10000",
    ]);
    let mut capture = Guarded::spawn_piped(command, "capture-na").unwrap();
    assert_eq!(capture.read_line().unwrap(), "ready");
    let new = Ipv4Addr::new(198, 51, 100, 3);
    lab.change_home_address(new).unwrap();
    let captured = capture.read_line().unwrap();
    let words: Vec<&str> = captured.split_whitespace().collect();
    assert_eq!(words[..2], ["captured", "198.51.100.3"], "{captured}");
    let esp = words[3].to_string();
    assert!(
        wait_for(Duration::from_secs(5), || lab
            .vps_endpoint(HOME_PEER)
            .is_ok_and(|e| e.remote == new)),
        "the genuine NA did not move the endpoint\n{}",
        lab.logs()
    );
    let before = lab.counters("vps").unwrap();
    let probes_before = probes_sent(&lab.wait_report("vps", Duration::from_secs(2), |_| true));
    let vps = VPS_OUTER.to_string();
    roam(
        &lab.attacker,
        &["send-esp", "raw", &ATTACKER.to_string(), &vps, &esp],
    );
    roam(
        &lab.attacker,
        &["send-esp", "udp", &ATTACKER.to_string(), &vps, &esp],
    );
    assert!(
        wait_for(Duration::from_secs(5), || {
            pair_drops(
                &lab.counters("vps").unwrap(),
                SPI_HOME_TO_VPS,
                DropReason::Replay,
            ) >= pair_drops(&before, SPI_HOME_TO_VPS, DropReason::Replay) + 2
        }),
        "the replays were not counted as Replay\n{}",
        lab.logs()
    );
    std::thread::sleep(Duration::from_millis(300));
    let endpoint = lab.vps_endpoint(HOME_PEER).unwrap();
    assert_eq!(
        endpoint.remote,
        new,
        "moved to the attacker?\n{}",
        lab.logs()
    );
    assert_eq!(
        probes_sent(&lab.roaming_report("vps")),
        probes_before,
        "a replay must not even start a probe"
    );
    println!("replayed NA: {captured:.40}... dropped as Replay; endpoint stays {endpoint}");
}

#[test]
fn raced_na_from_the_attacker_never_moves_the_endpoint_there() {
    if !require_root("raced_na_from_the_attacker_never_moves_the_endpoint_there") {
        return;
    }
    let mut lab = start();
    let new = Ipv4Addr::new(198, 51, 100, 3);
    // The attacker wins the race: the real packets from the new address are held up at the
    // ISP (dropped) while the attacker's copy goes through.
    lab.isp
        .nft(&format!(
            "table ip race {{\n chain forward {{\n  type filter hook forward priority 0; policy accept;\n  ip saddr {new} ip daddr {VPS_OUTER} drop\n }}\n}}\n"
        ))
        .unwrap();
    let mut command = lab.isp.command(roamtool());
    command.args([
        "capture-na",
        "ih",
        &format!("{SPI_HOME_TO_VPS:#x}"),
        KEY_HOME_TO_VPS,
        "10000",
    ]);
    let mut capture = Guarded::spawn_piped(command, "capture-na").unwrap();
    assert_eq!(capture.read_line().unwrap(), "ready");
    // The attacker relays the probe it gets to the real client, once the ISP lets the
    // client's packets through again (the test says when: a file appears).
    let go = lab.dir().join("relay-go");
    let mut command = lab.attacker.command(roamtool());
    command.args([
        "relay-esp",
        &format!("{SPI_VPS_TO_HOME:#x}"),
        &new.to_string(),
        &VPS_OUTER.to_string(),
        "raw",
        "10000",
        go.to_str().unwrap(),
    ]);
    let mut relay = Guarded::spawn_piped(command, "relay-esp").unwrap();
    assert_eq!(relay.read_line().unwrap(), "ready");
    let mut controller = ControlClient::connect(&lab.socket("vps")).unwrap();
    controller.request(Request::GetCounters).unwrap().0.unwrap();

    let changed = Instant::now();
    lab.change_home_address(new).unwrap();
    let captured = capture.read_line().unwrap();
    let esp = captured.split_whitespace().nth(3).unwrap().to_string();
    roam(
        &lab.attacker,
        &[
            "send-esp",
            "raw",
            &ATTACKER.to_string(),
            &VPS_OUTER.to_string(),
            &esp,
        ],
    );
    assert!(relay.read_line().unwrap().starts_with("received "));
    let lifted = lab
        .isp
        .output("nft", &["delete", "table", "ip", "race"])
        .unwrap();
    assert!(lifted.status.success(), "{lifted:?}");
    std::fs::write(&go, b"").unwrap();
    assert!(relay.read_line().unwrap().starts_with("relayed "));

    // Watch the endpoint until it reaches the real new address; it must never be the attacker.
    let mut seen = Vec::new();
    let arrived = wait_for(Duration::from_secs(10), || {
        let endpoint = lab.vps_endpoint(HOME_PEER).unwrap();
        if seen.last() != Some(&endpoint.remote) {
            seen.push(endpoint.remote);
        }
        endpoint.remote == new
    });
    assert!(arrived, "never moved to {new}: {seen:?}\n{}", lab.logs());
    assert!(!seen.contains(&ATTACKER), "moved to the attacker: {seen:?}");
    let took = changed.elapsed();
    let report = lab
        .wait_report("vps", Duration::from_secs(5), |r| {
            r.peer(HOME_PEER).is_some_and(|p| p.moves == 1)
        })
        .unwrap_or_else(|| panic!("no move reported\n{}", lab.logs()));
    let peer = report.peer(HOME_PEER).unwrap();
    assert!(
        peer.refused(MoveRefusal::ProbeWrongAddress) >= 1,
        "{peer:?}\n{}",
        lab.logs()
    );
    assert!(
        peer.refused(MoveRefusal::ProbeTimeout) >= 1,
        "{peer:?}\n{}",
        lab.logs()
    );
    // Every event since the controller connected comes before the reply to this request.
    let (_, events) = controller.request(Request::GetCounters).unwrap();
    let moves: Vec<Ipv4Addr> = events
        .iter()
        .filter_map(|e| match e {
            Event::EndpointMoved { new, .. } => Some(new.remote),
            _ => None,
        })
        .collect();
    assert_eq!(moves, vec![new], "EndpointMoved events");
    let log = std::fs::read_to_string(lab.log("vps")).unwrap();
    assert!(!log.contains(&format!("-> {ATTACKER}")), "{log}");
    println!(
        "raced NA: probe to {ATTACKER} answered from {new} (refused), round timed out; moved to {new} {} ms after the change; refusals {:?}",
        took.as_millis(),
        peer.refusals
    );
}
