//! Tests of the SA database: routing, make-before-break, inbound checks, limits, refusals.

use super::*;
use crate::clock::Now;
use crate::events::{self, EventReceiver};
use hometun_control::Limits;

/// Key bytes from home to the VPS and back.
const HOME_TO_VPS: u8 = 0x11;
const VPS_TO_HOME: u8 = 0x22;

/// The VPS's view of a pair with the home (peer 1, `home_prefix`); `rekey` shifts the SPIs.
fn vps_sa(peer: u64, spi: u32, remote: &[&str]) -> ChildSa {
    ChildSa::builder()
        .peer(peer)
        .spis(spi, spi + 0x8000)
        .keys(AeadAlg::AesGcm128, HOME_TO_VPS, VPS_TO_HOME)
        .remote_ts(remote)
        .build()
}

/// The home's mirror of `vps_sa` (same outer addresses: the SAD does not look at them here).
fn home_sa(spi: u32) -> ChildSa {
    ChildSa::builder()
        .spis(spi + 0x8000, spi)
        .keys(AeadAlg::AesGcm128, VPS_TO_HOME, HOME_TO_VPS)
        .local_ts(&["2001:db8:1::/64"])
        .remote_ts(&["::/0"])
        .build()
}

fn sad() -> (Sad, EventReceiver) {
    let (tx, rx) = events::channel();
    (Sad::new(tx, AeadBackend::Ring), rx)
}

fn ipv6_packet(source: &str, destination: &str, payload: usize) -> Vec<u8> {
    let mut packet = vec![0u8; 40 + payload];
    packet[0] = 0x60;
    packet[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
    packet[6] = 59;
    packet[7] = 64;
    packet[8..24].copy_from_slice(&source.parse::<Ipv6Addr>().unwrap().octets());
    packet[24..40].copy_from_slice(&destination.parse::<Ipv6Addr>().unwrap().octets());
    for (i, byte) in packet[40..].iter_mut().enumerate() {
        *byte = i as u8;
    }
    packet
}

/// An ICMPv6 message of `kind` (24 bytes of body), behind one 8-byte hop-by-hop or destination
/// options header for each entry of `options` (0 or 60).
fn icmpv6_packet(source: &str, destination: &str, options: &[u8], kind: u8) -> Vec<u8> {
    let mut packet = ipv6_packet(source, destination, options.len() * 8 + 24);
    // Where the current Next Header field is, and where the next header starts.
    let (mut next_header_at, mut offset) = (6, 40);
    for &header in options {
        packet[next_header_at] = header;
        packet[offset + 1] = 0; // Hdr Ext Len 0: 8 bytes.
        next_header_at = offset;
        offset += 8;
    }
    packet[next_header_at] = 58;
    packet[offset] = kind;
    packet[offset + 1] = 0;
    packet
}

fn spi_of(route: Option<&Outbound>) -> Option<Spi> {
    route.map(|r| r.pair.spi_in())
}

/// Seals at the home, opens at the VPS; returns the VPS's verdict.
fn carry(home: &Sad, vps: &Sad, packet: &[u8]) -> Result<Vec<u8>, DropReason> {
    let snapshot = home.load();
    let route = snapshot
        .outbound(ipv6_destination(packet))
        .expect("home has a route");
    let mut esp = vec![0u8; 2048];
    let len = route.pair.seal(packet, &mut esp)?;
    deliver(vps, &mut esp[..len])
}

fn deliver(vps: &Sad, esp: &mut [u8]) -> Result<Vec<u8>, DropReason> {
    let spi = Spi(u32::from_be_bytes(esp[..4].try_into().unwrap()));
    let seq = u32::from_be_bytes(esp[4..8].try_into().unwrap());
    let snapshot = vps.load();
    let pair = snapshot.inbound(spi).ok_or(DropReason::NoSa)?;
    let accepted = pair.open(seq, esp, Now::from_secs(7))?;
    Ok(esp[accepted.inner].to_vec())
}

fn ipv6_destination(packet: &[u8]) -> Ipv6Addr {
    Ipv6Addr::from(<[u8; 16]>::try_from(&packet[24..40]).unwrap())
}

#[test]
fn longest_prefix_wins() {
    let (sad, _events) = sad();
    sad.install(&vps_sa(1, 0x100, &["2001:db8:1::/48"]))
        .unwrap();
    sad.install(&vps_sa(1, 0x200, &["2001:db8:1:5::/64"]))
        .unwrap();
    sad.install(&vps_sa(2, 0x300, &["2001:db8:2::/64", "2001:db8:3::1/128"]))
        .unwrap();
    let snapshot = sad.load();
    let lookup = |a: &str| spi_of(snapshot.outbound(a.parse().unwrap()));
    assert_eq!(lookup("2001:db8:1:5::9"), Some(Spi(0x200)));
    assert_eq!(lookup("2001:db8:1:6::9"), Some(Spi(0x100)));
    assert_eq!(lookup("2001:db8:2::1"), Some(Spi(0x300)));
    assert_eq!(lookup("2001:db8:3::1"), Some(Spi(0x300)));
    assert_eq!(lookup("2001:db8:3::2"), None);
    assert_eq!(lookup("2001:db8:4::1"), None);
    assert_eq!(
        snapshot.inbound(Spi(0x200)).map(|p| p.peer()),
        Some(PeerId(1))
    );
    assert!(snapshot.inbound(Spi(0x999)).is_none());
}

#[test]
fn default_route_and_host_route() {
    let (sad, _events) = sad();
    sad.install(&vps_sa(1, 0x100, &["::/0"])).unwrap();
    sad.install(&vps_sa(1, 0x200, &["2001:db8::1/128"]))
        .unwrap();
    let snapshot = sad.load();
    assert_eq!(
        spi_of(snapshot.outbound("2001:db8::1".parse().unwrap())),
        Some(Spi(0x200))
    );
    assert_eq!(
        spi_of(snapshot.outbound("2001:db8::2".parse().unwrap())),
        Some(Spi(0x100))
    );
    assert_eq!(
        spi_of(snapshot.outbound("::".parse().unwrap())),
        Some(Spi(0x100))
    );
}

#[test]
fn make_before_break_newest_sends_older_still_receives() {
    let (sad, _events) = sad();
    sad.install(&vps_sa(1, 0x100, &["2001:db8:1::/64"]))
        .unwrap();
    sad.install(&vps_sa(1, 0x200, &["2001:db8:1::/64"]))
        .unwrap();
    let dst: Ipv6Addr = "2001:db8:1::2".parse().unwrap();
    assert_eq!(spi_of(sad.load().outbound(dst)), Some(Spi(0x200)));
    assert!(sad.load().inbound(Spi(0x100)).is_some());
    // The newer one goes first: the older takes over again.
    sad.delete(Spi(0x200)).unwrap();
    assert_eq!(spi_of(sad.load().outbound(dst)), Some(Spi(0x100)));
    sad.delete(Spi(0x100)).unwrap();
    assert!(sad.load().outbound(dst).is_none());
    assert!(sad.delete(Spi(0x100)).is_err());
}

#[test]
fn no_packet_lost_while_a_pair_is_replaced() {
    let (home, _he) = sad();
    let (vps, _ve) = sad();
    home.install(&home_sa(0x100)).unwrap();
    vps.install(&vps_sa(1, 0x100, &["2001:db8:1::/64"]))
        .unwrap();
    // The responder installs the new inbound SA before the initiator switches to it.
    vps.install(&vps_sa(1, 0x200, &["2001:db8:1::/64"]))
        .unwrap();
    let home = Arc::new(home);
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let sender = {
        let home = home.clone();
        let stop = stop.clone();
        let progress = progress.clone();
        std::thread::spawn(move || {
            let packet = ipv6_packet("2001:db8:1::2", "2001:db8:ffff::1", 100);
            let mut sent = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let snapshot = home.load();
                let route = snapshot
                    .outbound("2001:db8:ffff::1".parse().unwrap())
                    .unwrap();
                let mut esp = vec![0u8; 512];
                let len = route.pair.seal(&packet, &mut esp).unwrap();
                esp.truncate(len);
                sent.push(esp);
                progress.fetch_add(1, Ordering::Relaxed);
            }
            sent
        })
    };
    // Switch while the sender runs: some packets before, some between, some after.
    let wait_for = |n: u64| {
        while progress.load(Ordering::Relaxed) < n {
            std::thread::yield_now();
        }
    };
    wait_for(200);
    home.install(&home_sa(0x200)).unwrap();
    let after_install = progress.load(Ordering::Relaxed);
    wait_for(after_install + 200);
    home.delete(Spi(0x8100)).unwrap();
    let after_delete = progress.load(Ordering::Relaxed);
    wait_for(after_delete + 200);
    stop.store(true, Ordering::Relaxed);
    let mut sent = sender.join().unwrap();
    let spis: BTreeSet<Vec<u8>> = sent.iter().map(|p| p[..4].to_vec()).collect();
    assert_eq!(
        spis.len(),
        2,
        "traffic moved from the old pair to the new one"
    );
    for esp in &mut sent {
        assert!(deliver(&vps, esp).is_ok());
    }
    let report = vps.counters();
    let received: u64 = report.sas.iter().map(|s| s.rx_packets).sum();
    assert_eq!(received, sent.len() as u64);
}

#[test]
fn link_local_traffic_from_the_peer_is_icmpv6_and_never_a_router_message() {
    let (home, _he) = sad();
    let (vps, _ve) = sad();
    home.install(&home_sa(0x100)).unwrap();
    vps.install(&vps_sa(1, 0x100, &["2001:db8:1::/64"]))
        .unwrap();
    // Pings and neighbour messages between the two ends pass, with options headers too.
    for passes in [
        icmpv6_packet("fe80::2", "fe80::1", &[], 128),
        icmpv6_packet("fe80::2", "ff02::1", &[], 136),
        icmpv6_packet("fe80::2", "ff02::16", &[0], 143),
        icmpv6_packet("fe80::2", "fe80::1", &[0, 60], 129),
    ] {
        assert_eq!(carry(&home, &vps, &passes), Ok(passes.clone()));
    }
    // A Router Advertisement, Solicitation or Redirect never does, however it is wrapped;
    // nor does link-local traffic other than ICMPv6 (a routing protocol, DHCPv6), nor a
    // header chain that ends early.
    let mut udp_to_dhcp = ipv6_packet("fe80::2", "ff02::1:2", 32);
    udp_to_dhcp[6] = 17;
    let mut cut = icmpv6_packet("fe80::2", "ff02::1", &[0], 128);
    cut[40 + 1] = 200; // the options header claims 1608 bytes
    let refused = [
        icmpv6_packet("fe80::2", "ff02::1", &[], 134),
        icmpv6_packet("fe80::2", "fe80::1", &[], 134),
        icmpv6_packet("fe80::2", "ff02::1", &[0], 134),
        icmpv6_packet("fe80::2", "ff02::1", &[60, 0], 134),
        icmpv6_packet("fe80::2", "ff02::2", &[], 133),
        icmpv6_packet("fe80::2", "fe80::1", &[], 137),
        udp_to_dhcp,
        ipv6_packet("fe80::2", "ff02::5", 32),
        cut,
    ];
    for packet in &refused {
        assert_eq!(
            carry(&home, &vps, packet),
            Err(DropReason::LinkScoped),
            "{packet:02x?}"
        );
    }
    let pair = vps.load().inbound(Spi(0x100)).unwrap().clone();
    assert_eq!(pair.drops(DropReason::LinkScoped), refused.len() as u64);
    assert_eq!(pair.drops(DropReason::IngressFilter), 0);
    assert_eq!(vps.counters().sas[0].rx_packets, 4);
}

#[test]
fn open_checks_replay_auth_and_ingress_filter() {
    let (home, _he) = sad();
    let (vps, _ve) = sad();
    home.install(&home_sa(0x100)).unwrap();
    vps.install(&vps_sa(1, 0x100, &["2001:db8:1::/64"]))
        .unwrap();
    let good = ipv6_packet("2001:db8:1::2", "2001:db8:ffff::1", 64);
    assert_eq!(carry(&home, &vps, &good), Ok(good.clone()));

    // Replay: the same ESP packet twice.
    let snapshot = home.load();
    let route = snapshot
        .outbound("2001:db8:ffff::1".parse().unwrap())
        .unwrap();
    let mut esp = vec![0u8; 512];
    let len = route.pair.seal(&good, &mut esp).unwrap();
    let mut copy = esp[..len].to_vec();
    assert!(deliver(&vps, &mut esp[..len]).is_ok());
    assert_eq!(deliver(&vps, &mut copy), Err(DropReason::Replay));

    // A flipped ciphertext bit fails the ICV and does not move the window.
    let len = route.pair.seal(&good, &mut esp).unwrap();
    esp[20] ^= 1;
    assert_eq!(deliver(&vps, &mut esp[..len]), Err(DropReason::AuthFailed));

    // A source outside the peer's traffic selector (RFC 4891).
    let forged = ipv6_packet("2001:db8:99::1", "2001:db8:ffff::1", 64);
    assert_eq!(carry(&home, &vps, &forged), Err(DropReason::IngressFilter));

    // Link-local ICMPv6 of the tunnel's link passes (the override NA to ff02::1) ...
    let na = icmpv6_packet("fe80::2", "ff02::1", &[], 136);
    assert_eq!(carry(&home, &vps, &na), Ok(na.clone()));
    // ... but a link-local source towards a routable destination does not.
    let escaping = ipv6_packet("fe80::2", "2001:db8:ffff::1", 32);
    assert_eq!(
        carry(&home, &vps, &escaping),
        Err(DropReason::IngressFilter)
    );

    let pair = vps.load().inbound(Spi(0x100)).unwrap().clone();
    assert_eq!(pair.drops(DropReason::Replay), 1);
    assert_eq!(pair.drops(DropReason::AuthFailed), 1);
    assert_eq!(pair.drops(DropReason::IngressFilter), 2);
    let report = vps.counters();
    assert_eq!(report.sas[0].rx_packets, 3);
    assert_eq!(
        report.sas[0].rx_bytes,
        2 * good.len() as u64 + na.len() as u64
    );
    assert_eq!(report.sas[0].last_rx_seconds_ago, Some(0));
    assert_eq!(
        report.sas[0].drops,
        vec![
            (DropReason::Replay, 1),
            (DropReason::AuthFailed, 1),
            (DropReason::IngressFilter, 2)
        ]
    );
}

#[test]
fn sequence_exhaustion_stops_sending_and_reports_once() {
    let (home, events) = sad();
    home.install(&home_sa(0x100)).unwrap();
    let snapshot = home.load();
    let pair = snapshot.inbound(Spi(0x8100)).unwrap();
    pair.set_next_seq_for_test(u64::from(u32::MAX));
    let packet = ipv6_packet("2001:db8:1::2", "2001:db8:ffff::1", 10);
    let mut esp = vec![0u8; 256];
    assert!(
        pair.seal(&packet, &mut esp).is_ok(),
        "2^32-1 is the last number"
    );
    assert_eq!(u32::from_be_bytes(esp[4..8].try_into().unwrap()), u32::MAX);
    assert_eq!(pair.seal(&packet, &mut esp), Err(DropReason::SeqExhausted));
    assert_eq!(pair.seal(&packet, &mut esp), Err(DropReason::SeqExhausted));
    assert_eq!(
        events.try_iter().collect::<Vec<_>>(),
        vec![Event::SeqExhausted {
            peer: PeerId(1),
            spi_in: Spi(0x8100)
        }]
    );
    assert_eq!(pair.drops(DropReason::SeqExhausted), 2);
}

#[test]
fn esn_goes_past_two_to_the_32() {
    let (home, _events) = sad();
    let mut sa = home_sa(0x100);
    sa.esn = true;
    home.install(&sa).unwrap();
    let snapshot = home.load();
    let pair = snapshot.inbound(Spi(0x8100)).unwrap();
    pair.set_next_seq_for_test(u64::from(u32::MAX));
    let packet = ipv6_packet("2001:db8:1::2", "2001:db8:ffff::1", 10);
    let mut esp = vec![0u8; 256];
    assert!(pair.seal(&packet, &mut esp).is_ok());
    assert!(pair.seal(&packet, &mut esp).is_ok());
    assert_eq!(
        u32::from_be_bytes(esp[4..8].try_into().unwrap()),
        0,
        "low 32 bits wrapped"
    );
}

#[test]
fn limits_raise_events_and_stop_the_direction() {
    let (home, events) = sad();
    let mut sa = home_sa(0x100);
    sa.limits = Limits {
        soft_packets: Some(2),
        hard_packets: Some(3),
        ..Limits::default()
    };
    home.install(&sa).unwrap();
    let snapshot = home.load();
    let pair = snapshot.inbound(Spi(0x8100)).unwrap();
    let packet = ipv6_packet("2001:db8:1::2", "2001:db8:ffff::1", 10);
    let mut esp = vec![0u8; 256];
    for _ in 0..3 {
        pair.seal(&packet, &mut esp).unwrap();
    }
    assert_eq!(pair.seal(&packet, &mut esp), Err(DropReason::HardLimit));
    let (peer, spi_in, direction) = (PeerId(1), Spi(0x8100), Direction::Outbound);
    assert_eq!(
        events.try_iter().collect::<Vec<_>>(),
        vec![
            Event::SoftLimit {
                peer,
                spi_in,
                direction,
                kind: LimitKind::Packets
            },
            Event::HardLimit {
                peer,
                spi_in,
                direction,
                kind: LimitKind::Packets
            },
        ]
    );
    assert_eq!(home.counters().sas[0].tx_packets, 3);
}

#[test]
fn time_limits_follow_the_clock() {
    let (home, events) = sad();
    let mut sa = home_sa(0x100);
    sa.limits = Limits {
        soft_seconds: Some(60),
        ..Limits::default()
    };
    home.set_now(Now::from_secs(10));
    home.install(&sa).unwrap();
    home.set_now(Now::from_secs(69));
    assert!(events.try_recv().is_none());
    home.set_now(Now::from_secs(70));
    let got: Vec<Event> = events.try_iter().collect();
    assert_eq!(got.len(), 2, "both directions: {got:?}");
    assert!(got.iter().all(|e| matches!(
        e,
        Event::SoftLimit {
            kind: LimitKind::Time,
            ..
        }
    )));
    assert_eq!(home.counters().sas[0].age_seconds, 60);
}

#[test]
fn install_refuses_bad_pairs_and_changes_nothing() {
    let (sad, _events) = sad();
    sad.install(&vps_sa(1, 0x100, &["2001:db8:1::/64"]))
        .unwrap();
    let before = sad.counters();
    let errors = [
        sad.install(&vps_sa(1, 0x100, &["2001:db8:7::/64"]))
            .unwrap_err(),
        sad.install(&vps_sa(2, 0x200, &["2001:db8:1::5/128"]))
            .unwrap_err(),
        sad.install(&vps_sa(2, 0x200, &["::/0"])).unwrap_err(),
        sad.install(&vps_sa(2, 0x200, &[])).unwrap_err(),
        sad.install(&vps_sa(2, 0, &["2001:db8:2::/64"]))
            .unwrap_err(),
    ];
    let home: Ipv6Net = "2001:db8:1::/64".parse().unwrap();
    assert_eq!(errors[0], ControlError::SpiInUse(Spi(0x100)));
    assert_eq!(
        errors[1],
        ControlError::SelectorOverlap {
            remote_ts: "2001:db8:1::5/128".parse().unwrap(),
            theirs: home,
            peer: PeerId(1),
            spi: Spi(0x100),
        }
    );
    assert_eq!(
        errors[1].to_string(),
        "remote_ts 2001:db8:1::5/128 overlaps 2001:db8:1::/64 of peer1 (SPI 00000100)"
    );
    assert!(
        matches!(errors[2], ControlError::SelectorOverlap { theirs, .. } if theirs == home),
        "{}",
        errors[2]
    );
    assert_eq!(errors[3], ControlError::NoRemoteTs);
    assert_eq!(errors[4], ControlError::ZeroSpi(Direction::Inbound));
    assert_eq!(sad.counters(), before);
    assert_eq!(sad.routed_prefixes().len(), 1);
}

#[test]
fn unknown_spi_is_not_found() {
    let (vps, _events) = sad();
    let mut esp = vec![0u8; 64];
    esp[..4].copy_from_slice(&7u32.to_be_bytes());
    assert_eq!(deliver(&vps, &mut esp), Err(DropReason::NoSa));
}

#[test]
fn sealing_in_place_and_by_copy_interleave_in_one_sequence() {
    // The data path seals in the read buffer; both ways share the sequence numbers, the
    // counters and the lifetime, and the peer opens each in order.
    let (home, _h) = sad();
    let (vps, _v) = sad();
    home.install(&home_sa(0x100)).unwrap();
    vps.install(&vps_sa(1, 0x100, &["2001:db8:1::/64"]))
        .unwrap();
    let snapshot = home.load();
    let packet = ipv6_packet("2001:db8:1::2", "2001:db8:ffff::1", 1000);
    let route = snapshot.outbound(ipv6_destination(&packet)).unwrap();
    for round in 0..4u32 {
        let mut esp = vec![0u8; 2048];
        let len = if round % 2 == 0 {
            esp[crate::esp::HEADROOM..crate::esp::HEADROOM + packet.len()].copy_from_slice(&packet);
            route.pair.seal_in_place(&mut esp, packet.len()).unwrap()
        } else {
            route.pair.seal(&packet, &mut esp).unwrap()
        };
        assert_eq!(u32::from_be_bytes(esp[4..8].try_into().unwrap()), round + 1);
        assert_eq!(deliver(&vps, &mut esp[..len]).unwrap(), packet);
    }
    let report = home.counters();
    assert_eq!(report.sas[0].tx_packets, 4);
    assert_eq!(report.sas[0].tx_bytes, 4 * packet.len() as u64);
    // A buffer too short for the sealed packet is refused and counted, not overrun.
    let mut short = vec![0u8; crate::esp::HEADROOM + packet.len()];
    assert_eq!(
        route.pair.seal_in_place(&mut short, packet.len()),
        Err(DropReason::Malformed)
    );
}

/// The SAD as a list of pairs, oldest first, asked by visiting every one: what the indexed SAD
/// must answer.
#[derive(Default)]
struct Model {
    pairs: Vec<(u64, Spi, Vec<Ipv6Net>)>,
    endpoints: HashMap<u64, Ipv4Addr>,
}

impl Model {
    fn overlaps(&self, peer: u64, nets: &[Ipv6Net]) -> bool {
        self.pairs
            .iter()
            .filter(|(p, _, _)| *p != peer)
            .any(|(_, _, theirs)| {
                theirs
                    .iter()
                    .any(|t| nets.iter().any(|m| t.contains(m) || m.contains(t)))
            })
    }

    /// Longest prefix, then the newest pair: its SPI and its peer's address.
    fn route(&self, destination: Ipv6Addr) -> Option<(Spi, Ipv4Addr)> {
        let mut best: Option<(u8, usize)> = None;
        for (i, (_, _, nets)) in self.pairs.iter().enumerate() {
            for net in nets.iter().filter(|n| n.contains(&destination)) {
                if best.is_none_or(|(len, _)| net.prefix_len() >= len) {
                    best = Some((net.prefix_len(), i));
                }
            }
        }
        best.map(|(_, i)| {
            let (peer, spi, _) = &self.pairs[i];
            (*spi, self.endpoints[peer])
        })
    }
}

use std::net::Ipv4Addr;

#[test]
fn installs_deletes_and_moves_agree_with_a_visit_of_every_pair() {
    let (sad, _events) = sad();
    let mut model = Model::default();
    // Prefixes of a small space, so that they overlap often: /48s, /56s, /64s and hosts.
    let nets: Vec<Ipv6Net> = [
        "2001:db8:1::/48",
        "2001:db8:1:100::/56",
        "2001:db8:1:101::/64",
        "2001:db8:1:102::/64",
        "2001:db8:1:102::7/128",
        "2001:db8:2::/48",
        "2001:db8:2:5::/64",
        "2001:db8:3::/64",
        "2001:db8::/32",
    ]
    .iter()
    .map(|n| n.parse().unwrap())
    .collect();
    let probes: Vec<Ipv6Addr> = [
        "2001:db8:1::1",
        "2001:db8:1:101::1",
        "2001:db8:1:102::7",
        "2001:db8:1:102::8",
        "2001:db8:1:1ff::1",
        "2001:db8:2:5::1",
        "2001:db8:2:6::1",
        "2001:db8:3::1",
        "2001:db8:9::1",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut spi = 0x100u32;
    let (mut installed, mut refused, mut deleted, mut moved) = (0, 0, 0, 0);
    for step in 0..3000 {
        match next(4) {
            0 | 1 => {
                let peer = 1 + next(4) as u64;
                let mine: Vec<Ipv6Net> = (0..1 + next(2)).map(|_| nets[next(nets.len())]).collect();
                let address = Ipv4Addr::new(192, 0, 2, next(250) as u8 + 1);
                spi += 1;
                let sa = ChildSa::builder()
                    .peer(peer)
                    .spis(spi, spi + 0x10_0000)
                    .keys(AeadAlg::AesGcm128, HOME_TO_VPS, VPS_TO_HOME)
                    .remote_nets(mine.clone())
                    .addresses(Ipv4Addr::new(203, 0, 113, 1), address)
                    .build();
                let overlap = model.overlaps(peer, &mine);
                match sad.install(&sa) {
                    Ok(_) => {
                        assert!(!overlap, "step {step}: {mine:?} of peer{peer} overlaps");
                        model.pairs.push((peer, Spi(spi), mine));
                        model.endpoints.insert(peer, address);
                        installed += 1;
                    }
                    Err(ControlError::SelectorOverlap {
                        remote_ts,
                        theirs,
                        peer: other,
                        ..
                    }) => {
                        assert!(overlap, "step {step}: {mine:?} of peer{peer} refused");
                        assert!(other.0 != peer && mine.contains(&remote_ts));
                        assert!(theirs.contains(&remote_ts) || remote_ts.contains(&theirs));
                        refused += 1;
                    }
                    Err(error) => panic!("step {step}: {error}"),
                }
            }
            2 if !model.pairs.is_empty() => {
                let (peer, spi, _) = model.pairs.remove(next(model.pairs.len()));
                sad.delete(spi).unwrap();
                deleted += 1;
                if !model.pairs.iter().any(|(p, _, _)| *p == peer) {
                    model.endpoints.remove(&peer);
                }
            }
            _ if !model.endpoints.is_empty() => {
                let peers: Vec<u64> = model.endpoints.keys().copied().collect();
                let peer = peers[next(peers.len())];
                let address = Ipv4Addr::new(198, 51, 100, next(250) as u8 + 1);
                let mut endpoint = sad.load().endpoint(PeerId(peer)).unwrap();
                endpoint.remote = address;
                sad.update_endpoint(PeerId(peer), endpoint).unwrap();
                model.endpoints.insert(peer, address);
                moved += 1;
            }
            _ => continue,
        }
        let snapshot = sad.load();
        for probe in &probes {
            let route = snapshot
                .outbound(*probe)
                .map(|o| (o.pair.spi_in(), o.endpoint.remote));
            assert_eq!(route, model.route(*probe), "step {step}: route to {probe}");
        }
        for (peer, address) in &model.endpoints {
            let endpoint = snapshot.endpoint(PeerId(*peer)).map(|e| e.remote);
            assert_eq!(endpoint, Some(*address), "step {step}: peer{peer}");
        }
        let routed: BTreeSet<Ipv6Net> =
            model.pairs.iter().flat_map(|(_, _, n)| n.clone()).collect();
        assert_eq!(sad.routed_prefixes(), routed, "step {step}");
        assert_eq!(snapshot.pairs().count(), model.pairs.len(), "step {step}");
        let order: Vec<Spi> = sad.counters().sas.iter().map(|c| c.spi_in).collect();
        let expected: Vec<Spi> = model.pairs.iter().map(|(_, spi, _)| *spi).collect();
        assert_eq!(order, expected, "step {step}: counters oldest first");
    }
    // Every kind of change happened many times.
    assert!(installed > 300 && refused > 300 && deleted > 300 && moved > 300);
}
