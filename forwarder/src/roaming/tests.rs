//! The roaming glue in one process: two SADs (home and VPS), two [`Roaming`]s and sockets that
//! only record what they were given. The packets are real ESP; the network is the test.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;

use hometun_control::{
    AeadAlg, ChildSa, DropReason, Encapsulation, Endpoint, Event, MoveRefusal, PeerId,
    RoamingConfig, Spi,
};
use ipnet::Ipv6Net;

use super::return_routability::Observed;
use super::*;
use crate::aead::AeadBackend;
use crate::clock::Now;
use crate::events::{self, EventReceiver};
use crate::wire::icmpv6::{self, Repr as Icmpv6Repr};

const HOME_TO_VPS: Spi = Spi(0x100);
const VPS_TO_HOME: Spi = Spi(0x200);
const PEER: PeerId = PeerId(1);

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// Sockets that record every ESP packet sent, with its destination.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<(Observed, Vec<u8>)>>,
}

impl Recorder {
    fn take(&self) -> Vec<(Observed, Vec<u8>)> {
        std::mem::take(&mut *self.sent.lock().unwrap())
    }
}

impl OuterSockets for Recorder {
    fn send_esp(&self, to: Observed, esp: &[u8]) -> io::Result<()> {
        self.sent.lock().unwrap().push((to, esp.to_vec()));
        Ok(())
    }

    fn rebind(&self, _old: Ipv4Addr, _new: Ipv4Addr) -> io::Result<bool> {
        Ok(false)
    }

    fn udp_port(&self) -> u16 {
        4500
    }
}

struct Side {
    sad: Sad,
    roaming: Roaming,
    sockets: Recorder,
    events: EventReceiver,
}

impl Side {
    fn new(sa: ChildSa, config: RoamingConfig, tun: &[&str]) -> Self {
        let (tx, events) = events::channel();
        let sad = Sad::new(tx.clone(), AeadBackend::Ring);
        sad.install(&sa).unwrap();
        let tun: Vec<Ipv6Net> = tun.iter().map(|a| a.parse().unwrap()).collect();
        Side {
            sad,
            roaming: Roaming::new(config, &tun, tx),
            sockets: Recorder::default(),
            events,
        }
    }

    /// What the inbound path does with an ESP packet from `from`: the inner packet if it is
    /// for the TUN device.
    fn receive(&self, esp: &[u8], from: Observed) -> Result<Option<Vec<u8>>, DropReason> {
        let mut esp = esp.to_vec();
        let spi = Spi(u32::from_be_bytes(esp[..4].try_into().unwrap()));
        let seq = u32::from_be_bytes(esp[4..8].try_into().unwrap());
        let snapshot = self.sad.load();
        let pair = snapshot.inbound(spi).ok_or(DropReason::NoSa)?;
        let accepted = pair.open(seq, &mut esp, Now::ZERO)?;
        let inner = &esp[accepted.inner];
        let consumed = self.roaming.after_open(
            &self.sockets,
            &self.sad,
            &snapshot,
            pair,
            accepted.seq,
            inner,
            from,
            Now::ZERO,
        );
        Ok((!consumed && !inner.is_empty()).then(|| inner.to_vec()))
    }

    /// What the outbound path does with an inner packet: `Some` (destination, ESP) when it is
    /// sent now, `None` when held.
    fn send(&self, inner: &[u8]) -> Option<(Observed, Vec<u8>)> {
        let snapshot = self.sad.load();
        let route = snapshot.outbound(ip6_destination(inner)).unwrap();
        let mut endpoint = route.endpoint;
        if self.roaming.holding() {
            match self
                .roaming
                .hold_outbound(&self.sad, route.pair.peer(), inner)
            {
                HoldOutcome::Held => return None,
                HoldOutcome::Send(Some(current)) => endpoint = current,
                HoldOutcome::Send(None) => {}
            }
        }
        let mut esp = vec![0u8; 2048];
        let len = route.pair.seal(inner, &mut esp).unwrap();
        esp.truncate(len);
        Some((Observed::of_endpoint(&endpoint), esp))
    }

    fn endpoint(&self) -> Endpoint {
        self.sad.load().endpoint(PEER).unwrap()
    }
}

fn ip6_destination(inner: &[u8]) -> Ipv6Addr {
    crate::wire::ipv6::Packet::new_checked(inner)
        .unwrap()
        .dst_addr()
}

fn vps_sa() -> ChildSa {
    ChildSa::builder()
        .spis(HOME_TO_VPS.0, VPS_TO_HOME.0)
        .keys(AeadAlg::AesGcm128, 0x11, 0x22)
        .addresses(ip("203.0.113.2"), ip("198.51.100.2"))
        .build()
}

fn home_sa() -> ChildSa {
    ChildSa::builder()
        .spis(HOME_TO_VPS.0, VPS_TO_HOME.0)
        .keys(AeadAlg::AesGcm128, 0x11, 0x22)
        .addresses(ip("203.0.113.2"), ip("198.51.100.2"))
        .mirrored()
        .build()
}

fn vps() -> Side {
    Side::new(
        vps_sa(),
        RoamingConfig {
            accept_moves: true,
            ..RoamingConfig::default()
        },
        &["fe80::1/64", "2001:db8:ffff::1/128"],
    )
}

fn home() -> Side {
    Side::new(
        home_sa(),
        RoamingConfig {
            follow_local_address: true,
            ..RoamingConfig::default()
        },
        &["fe80::2/64", "2001:db8:1::2/64"],
    )
}

fn ping(src: &str, dst: &str, request: bool, seq_no: u16) -> Vec<u8> {
    let repr = if request {
        Icmpv6Repr::EchoRequest {
            ident: 7,
            seq_no,
            data: b"ping",
        }
    } else {
        Icmpv6Repr::EchoReply {
            ident: 7,
            seq_no,
            data: b"ping",
        }
    };
    let mut out = vec![0u8; 128];
    let len = icmpv6::emit_ipv6(ip6(src), ip6(dst), 64, &repr, &mut out).unwrap();
    out.truncate(len);
    out
}

fn raw(addr: &str) -> Observed {
    Observed {
        addr: ip(addr),
        port: None,
    }
}

/// The home's override NA for its new address, sealed by the home.
fn home_na(home: &Side, new: &str) -> Vec<u8> {
    let mut na = [0u8; 128];
    let len = override_na::emit_override_na(ip6("fe80::2"), ip6("2001:db8:1::2"), ip(new), &mut na)
        .unwrap();
    home.send(&na[..len]).unwrap().1
}

#[test]
fn na_probe_answer_switch_and_the_held_reply_goes_to_the_new_address() {
    let (vps, home) = (vps(), home());
    let old = vps.endpoint();
    // The home's NA arrives from its new address: consumed, a probe goes there.
    assert_eq!(
        vps.receive(&home_na(&home, "198.51.100.3"), raw("198.51.100.3")),
        Ok(None)
    );
    let sent = vps.sockets.take();
    assert_eq!(sent.len(), 1);
    let (to, probe) = &sent[0];
    assert_eq!(*to, raw("198.51.100.3"));
    assert_eq!(vps.endpoint(), old, "nothing moves before the answer");
    // Meanwhile a ping from the new address is delivered (authenticated), and the reply the
    // VPS sends is held, not sent to the old address.
    let request = ping("2001:db8:1::2", "2001:db8:ffff::1", true, 1);
    let delivered = vps
        .receive(&home.send(&request).unwrap().1, raw("198.51.100.3"))
        .unwrap();
    assert_eq!(delivered, Some(request));
    assert_eq!(
        vps.send(&ping("2001:db8:ffff::1", "2001:db8:1::2", false, 1)),
        None
    );
    // The probe reaches the home, which answers it itself (not into its TUN device) ...
    assert_eq!(home.receive(probe, raw("203.0.113.2")), Ok(None));
    let answers = home.sockets.take();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].0, raw("203.0.113.2"), "to the VPS, its endpoint");
    assert_eq!(home.roaming.report().probes_answered, 1);
    // ... and the answer from the new address moves the endpoint.
    assert_eq!(vps.receive(&answers[0].1, raw("198.51.100.3")), Ok(None));
    let new = vps.endpoint();
    assert_eq!(new.remote, ip("198.51.100.3"));
    assert_eq!(new.local, old.local);
    assert_eq!(
        vps.events.try_iter().collect::<Vec<_>>(),
        vec![Event::EndpointMoved {
            peer: PEER,
            old,
            new
        }]
    );
    // The held reply went out with the switch, to the new address, and reaches the home.
    let released = vps.sockets.take();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].0, raw("198.51.100.3"));
    let reply = home
        .receive(&released[0].1, raw("203.0.113.2"))
        .unwrap()
        .unwrap();
    assert_eq!(reply, ping("2001:db8:ffff::1", "2001:db8:1::2", false, 1));
    assert!(!vps.roaming.holding());
    // From now on the VPS sends there directly.
    let next = vps
        .send(&ping("2001:db8:ffff::1", "2001:db8:1::2", false, 2))
        .unwrap();
    assert_eq!(next.0, raw("198.51.100.3"));
    let report = vps.roaming.report();
    let peer = report.peer(PEER).unwrap();
    assert_eq!((peer.moves, peer.nas_accepted, peer.probes_sent), (1, 1, 1));
}

#[test]
fn nat_rebinding_is_probed_without_an_na() {
    let (vps, home) = (vps(), home());
    let nat = Observed {
        addr: ip("198.51.100.77"),
        port: Some(40123),
    };
    let request = ping("2001:db8:1::2", "2001:db8:ffff::1", true, 1);
    assert!(
        vps.receive(&home.send(&request).unwrap().1, nat)
            .unwrap()
            .is_some()
    );
    let probe = vps.sockets.take().pop().unwrap();
    assert_eq!(probe.0, nat, "probed in UDP, at the NAT's port");
    home.receive(&probe.1, raw("203.0.113.2")).unwrap();
    let answer = home.sockets.take().pop().unwrap();
    vps.receive(&answer.1, nat).unwrap();
    assert_eq!(
        vps.endpoint().encap,
        Encapsulation::Udp {
            local_port: 4500,
            remote_port: 40123
        }
    );
    assert_eq!(vps.roaming.report().peer(PEER).unwrap().rebinding_rounds, 1);
}

#[test]
fn an_answer_from_another_address_moves_nothing() {
    let (vps, home) = (vps(), home());
    let old = vps.endpoint();
    // The NA came (raced by an attacker) from the attacker's address.
    vps.receive(&home_na(&home, "198.51.100.3"), raw("192.0.2.66"))
        .unwrap();
    let (to, probe) = vps.sockets.take().pop().unwrap();
    assert_eq!(to, raw("192.0.2.66"));
    // The attacker relays the probe to the real home; its answer comes from the real address.
    home.receive(&probe, raw("203.0.113.2")).unwrap();
    let answer = home.sockets.take().pop().unwrap();
    vps.receive(&answer.1, raw("198.51.100.3")).unwrap();
    assert_eq!(vps.endpoint(), old);
    let pair = vps.sad.load().inbound(HOME_TO_VPS).unwrap().clone();
    assert_eq!(pair.drops(DropReason::OverrideNaRefused), 1);
    let report = vps.roaming.report();
    assert_eq!(
        report
            .peer(PEER)
            .unwrap()
            .refused(MoveRefusal::ProbeWrongAddress),
        1
    );
    // A second copy of the probe's answer replayed from the right address: the replay
    // window drops it before any roaming code sees it.
    assert_eq!(
        vps.receive(&answer.1, raw("192.0.2.66")),
        Err(DropReason::Replay)
    );
    assert!(vps.events.try_iter().next().is_none());
}

/// Seals `inner` with the pair of `side` whose inbound SPI is `spi_in` (whatever its route).
fn seal_with(side: &Side, spi_in: Spi, inner: &[u8]) -> Vec<u8> {
    let snapshot = side.sad.load();
    let pair = snapshot.inbound(spi_in).unwrap().clone();
    let mut out = vec![0u8; 512];
    let len = pair.seal(inner, &mut out).unwrap();
    out.truncate(len);
    out
}

#[test]
fn ordinary_traffic_is_not_touched() {
    let (vps, home) = (vps(), home());
    // A ping to ff02::1 that is not a probe: for the home's TUN device.
    let not_probe = ping("fe80::1", "ff02::1", true, 1);
    let sealed = seal_with(&vps, HOME_TO_VPS, &not_probe);
    assert_eq!(
        home.receive(&sealed, raw("203.0.113.2")),
        Ok(Some(not_probe))
    );
    // An echo reply that is not a probe's answer: for the VPS's TUN device.
    let reply = ping("2001:db8:1::2", "2001:db8:ffff::1", false, 3);
    let sealed = home.send(&reply).unwrap().1;
    assert_eq!(vps.receive(&sealed, raw("198.51.100.2")), Ok(Some(reply)));
    // An NA on a forwarder that does not accept moves (the home): for its TUN device.
    let mut na = [0u8; 128];
    let len = override_na::emit_override_na(
        ip6("fe80::1"),
        ip6("2001:db8:ffff::1"),
        ip("203.0.113.2"),
        &mut na,
    )
    .unwrap();
    let sealed = seal_with(&vps, HOME_TO_VPS, &na[..len]);
    assert_eq!(
        home.receive(&sealed, raw("203.0.113.2")),
        Ok(Some(na[..len].to_vec()))
    );
    assert!(vps.sockets.take().is_empty() && home.sockets.take().is_empty());
    assert!(vps.events.try_iter().next().is_none());
    assert_eq!(vps.roaming.report().peers, vec![]);
}
