//! The server's override-NA checks and the return-routability matching (docs/ARCHITECTURE.md,
//! "Roaming") on arbitrary decrypted inner packets. Nothing may panic, and:
//! - the data path's cheap test never hides an NA, a probe or an answer the checks accept;
//! - an NA that passes, emitted again from its fields, passes again with the same fields;
//! - a packet the peer answers as a probe gives an answer carrying the probe's nonce;
//! - a probe round switches only on its own nonce from the probed address.
//!
//! The first input byte picks where the packet came from (the endpoint, a new address, the
//! same address over UDP) and the next eight are its ESP sequence number.
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};

use hometun_control::{Encapsulation, Endpoint, PeerId, Spi};
use hometun_forwarder::roaming::may_be_roaming;
use hometun_forwarder::roaming::moves::{AnswerVerdict, MoveChecker, NaVerdict};
use hometun_forwarder::roaming::override_na::{
    NaRules, check_packet, emit_override_na, is_icmpv6_type, is_neighbor_advert,
};
use hometun_forwarder::roaming::return_routability::{
    Observed, PROBE_LEN, answer_nonce, answer_probe, emit_probe,
};
use ipnet::Ipv6Net;
use libfuzzer_sys::fuzz_target;

const PEER: PeerId = PeerId(1);
const SPI: Spi = Spi(0x3001);
const NONCE: [u8; 16] = [0xab; 16];

fn current() -> Endpoint {
    Endpoint {
        local: Ipv4Addr::new(203, 0, 113, 2),
        remote: Ipv4Addr::new(198, 51, 100, 2),
        encap: Encapsulation::Raw,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((seq, inner)) = rest.split_at_checked(8) else {
        return;
    };
    let seq = u64::from_be_bytes(seq.try_into().expect("eight bytes"));
    let from = match mode % 3 {
        0 => Observed::of_endpoint(&current()),
        1 => Observed {
            addr: Ipv4Addr::new(198, 51, 100, 3),
            port: None,
        },
        _ => Observed {
            addr: Ipv4Addr::new(198, 51, 100, 2),
            port: Some(4500),
        },
    };
    let remote_ts: Vec<Ipv6Net> = vec![
        "2001:db8:1::/64".parse().expect("literal"),
        if mode & 0x80 != 0 {
            "::/0".parse().expect("literal")
        } else {
            "2001:db8:7::/48".parse().expect("literal")
        },
    ];
    let own: Vec<Ipv6Addr> = vec!["fe80::1".parse().expect("literal")];
    let rules = NaRules {
        remote_ts: &remote_ts,
        own_addresses: &own,
    };

    // The packet checks, and the round trip of what passes.
    let checked = check_packet(inner, &rules);
    if let Ok(na) = checked {
        assert!(is_neighbor_advert(inner) && may_be_roaming(inner));
        let source = Ipv6Addr::from(<[u8; 16]>::try_from(&inner[8..24]).expect("IPv6 header"));
        let mut again = [0u8; 128];
        let len = emit_override_na(source, na.target, na.lladdr, &mut again).expect("fits");
        assert_eq!(check_packet(&again[..len], &rules), Ok(na));
    }

    // The peer's side: whatever it answers carries the probe's nonce back.
    let mut answer = [0u8; 256];
    if let Some(len) = answer_probe(inner, "fe80::2".parse().expect("literal"), &mut answer) {
        assert!(is_icmpv6_type(inner, 128) && may_be_roaming(inner));
        assert_eq!(len, PROBE_LEN);
        let nonce = answer_nonce(&answer[..len]).expect("our own answer parses");
        assert_eq!(&inner[56..72], &nonce[..]);
    }
    let nonce_in_packet = answer_nonce(inner);
    if nonce_in_packet.is_some() {
        assert!(is_icmpv6_type(inner, 129) && may_be_roaming(inner));
    }

    // The server's state: the NA, then the packet as an answer to the round it started.
    let mut checker = MoveChecker::default();
    let verdict = checker.handle_na(
        1000,
        PEER,
        SPI,
        seq,
        inner,
        &rules,
        from,
        &current(),
        || Some(NONCE),
    );
    match (&checked, &verdict) {
        (Err(reason), NaVerdict::Refused(refused)) => assert_eq!(reason, refused),
        (Ok(_), NaVerdict::AtEndpoint(_)) => assert!(from.is(&current())),
        (Ok(_), NaVerdict::Probe(_, probe)) => {
            assert!(!from.is(&current()));
            assert_eq!(probe.to, from);
            let mut packet = [0u8; 128];
            let len = emit_probe(
                "fe80::1".parse().expect("literal"),
                &probe.nonce,
                0,
                &mut packet,
            )
            .expect("fits");
            assert!(
                answer_probe(
                    &packet[..len],
                    "fe80::2".parse().expect("literal"),
                    &mut answer
                )
                .is_some()
            );
        }
        (checked, verdict) => panic!("check {checked:?} but verdict {verdict:?}"),
    }
    // A round started by a new source; the packet as its answer, from the wrong address and
    // from the probed one.
    let mut rounds = MoveChecker::default();
    let probed = rounds
        .handle_new_source(1000, PEER, from, &current(), || Some(NONCE))
        .is_some();
    assert_eq!(probed, !from.is(&current()));
    if let Some(nonce) = nonce_in_packet {
        let wrong = Observed {
            addr: Ipv4Addr::new(192, 0, 2, 66),
            port: None,
        };
        let other = rounds.handle_answer(1001, PEER, wrong, &nonce, &current());
        let right = rounds.handle_answer(1002, PEER, from, &nonce, &current());
        if probed && nonce == NONCE {
            assert!(matches!(other, AnswerVerdict::WrongAddress { .. }));
            assert!(matches!(right, AnswerVerdict::Switch { to, .. } if to == from));
        } else {
            assert!(!matches!(other, AnswerVerdict::Switch { .. }));
            assert!(!matches!(right, AnswerVerdict::Switch { .. }));
        }
    }
    // Timers never panic, and a round always ends.
    for now in [1250, 1750, 2600] {
        let _ = checker.poll(now);
        let _ = rounds.poll(now);
    }
    assert_eq!(checker.next_deadline_ms(), None);
    assert_eq!(rounds.next_deadline_ms(), None);
});
