//! The return-routability check (docs/ARCHITECTURE.md, "Roaming", as MOBIKE's RFC 4555 5.4): the
//! ESP ICV does not cover the outer IPv4 header, so an authentic packet from a new source proves
//! who sent it, not where the peer is. Before it moves a peer's endpoint the server sends an
//! ESP-protected probe with a fresh nonce to the new address, and moves only on the authenticated
//! answer carrying that nonce from that address.
//!
//! The probe is an ICMPv6 Echo Request from the server's link-local address to ff02::1 with hop
//! limit 255 whose data is [`PROBE_MAGIC`] and the nonce; the peer's forwarder answers it itself
//! (an Echo Reply with the same data from its link-local address) and neither writes the probe
//! nor the answer into its TUN device. Sans-IO: packets in, packets out, time passed in.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use hometun_control::{Encapsulation, Endpoint};

use crate::wire::icmpv6::{self, TYPE_ECHO_REPLY, TYPE_ECHO_REQUEST};
use crate::wire::ipv6::{self, NEXT_HEADER_ICMPV6};
use crate::wire::{Icmpv6Packet, Icmpv6Repr, WireError};

use super::override_na::{ALL_NODES, ND_HOP_LIMIT};

/// The first bytes of a probe's data: tells a probe from any other ping.
pub const PROBE_MAGIC: [u8; 8] = *b"htprobe1";
/// Bytes of fresh randomness in each probe.
pub const NONCE_LEN: usize = 16;
/// The Echo identifier of probes.
pub const PROBE_IDENT: u16 = 0x6874;
/// A probe's nonce.
pub type Nonce = [u8; NONCE_LEN];
/// Length of a probe or its answer: IPv6 header, ICMPv6 header, magic, nonce.
pub const PROBE_LEN: usize = ipv6::HEADER_LEN + icmpv6::HEADER_LEN + PROBE_MAGIC.len() + NONCE_LEN;

/// Where an authenticated ESP packet came from: the outer IPv4 source and, for ESP in UDP, the
/// UDP source port (behind a NAT: the NAT's public address and port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Observed {
    /// The outer source address.
    pub addr: Ipv4Addr,
    /// The UDP source port; `None` for raw ESP (IP protocol 50).
    pub port: Option<u16>,
}

impl Observed {
    /// Where a peer's endpoint says its packets come from.
    pub fn of_endpoint(endpoint: &Endpoint) -> Self {
        Observed {
            addr: endpoint.remote,
            port: match endpoint.encap {
                Encapsulation::Raw => None,
                Encapsulation::Udp { remote_port, .. } => Some(remote_port),
            },
        }
    }

    /// True when this is where `endpoint` sends to (address, and port with UDP).
    pub fn is(&self, endpoint: &Endpoint) -> bool {
        *self == Self::of_endpoint(endpoint)
    }

    /// The endpoint after a move here: our address stays, the peer's is this one; packets that
    /// came in UDP are answered in UDP from our `udp_port`.
    pub fn moved(&self, current: &Endpoint, udp_port: u16) -> Endpoint {
        Endpoint {
            local: current.local,
            remote: self.addr,
            encap: match self.port {
                None => Encapsulation::Raw,
                Some(remote_port) => Encapsulation::Udp {
                    local_port: match current.encap {
                        Encapsulation::Udp { local_port, .. } => local_port,
                        Encapsulation::Raw => udp_port,
                    },
                    remote_port,
                },
            },
        }
    }
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            None => write!(f, "{} (esp)", self.addr),
            Some(port) => write!(f, "{}:{port} (udp)", self.addr),
        }
    }
}

/// Writes a probe from `source` (our link-local address) carrying `nonce`; `try_no` goes into
/// the Echo sequence number. Returns its length ([`PROBE_LEN`]).
pub fn emit_probe(
    source: Ipv6Addr,
    nonce: &Nonce,
    try_no: u16,
    out: &mut [u8],
) -> Result<usize, WireError> {
    let mut data = [0u8; PROBE_MAGIC.len() + NONCE_LEN];
    data[..PROBE_MAGIC.len()].copy_from_slice(&PROBE_MAGIC);
    data[PROBE_MAGIC.len()..].copy_from_slice(nonce);
    let repr = Icmpv6Repr::EchoRequest {
        ident: PROBE_IDENT,
        seq_no: try_no,
        data: &data,
    };
    icmpv6::emit_ipv6(source, ALL_NODES, ND_HOP_LIMIT, &repr, out)
}

/// An Echo message of the probe's shape: ident, sequence number, and the nonce after the magic.
fn probe_fields(inner: &[u8], want_type: u8) -> Option<(Ipv6Addr, Ipv6Addr, u16, Nonce)> {
    let ip = ipv6::Packet::new_checked(inner).ok()?;
    if ip.next_header() != NEXT_HEADER_ICMPV6 || ip.hop_limit() != ND_HOP_LIMIT {
        return None;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let icmp = Icmpv6Packet::new_checked(ip.payload()).ok()?;
    if icmp.msg_type() != want_type {
        return None;
    }
    let (ident, seq_no, data) = match Icmpv6Repr::parse(&src, &dst, &icmp).ok()? {
        Icmpv6Repr::EchoRequest {
            ident,
            seq_no,
            data,
        }
        | Icmpv6Repr::EchoReply {
            ident,
            seq_no,
            data,
        } => (ident, seq_no, data),
        _ => return None,
    };
    if ident != PROBE_IDENT || data.len() != PROBE_MAGIC.len() + NONCE_LEN {
        return None;
    }
    let (magic, nonce) = data.split_at(PROBE_MAGIC.len());
    if magic != PROBE_MAGIC {
        return None;
    }
    let nonce: Nonce = nonce.try_into().ok()?;
    Some((src, dst, seq_no, nonce))
}

/// The peer's side: if `inner` is a probe (an Echo Request of the probe's shape from a
/// link-local address to ff02::1), writes the answer from `our_link_local` into `out` and
/// returns its length. Anything else: `None` (it is an ordinary packet).
pub fn answer_probe(inner: &[u8], our_link_local: Ipv6Addr, out: &mut [u8]) -> Option<usize> {
    let (src, dst, seq_no, nonce) = probe_fields(inner, TYPE_ECHO_REQUEST)?;
    if dst != ALL_NODES || !crate::netlink::is_link_local(src) {
        return None;
    }
    let mut data = [0u8; PROBE_MAGIC.len() + NONCE_LEN];
    data[..PROBE_MAGIC.len()].copy_from_slice(&PROBE_MAGIC);
    data[PROBE_MAGIC.len()..].copy_from_slice(&nonce);
    let repr = Icmpv6Repr::EchoReply {
        ident: PROBE_IDENT,
        seq_no,
        data: &data,
    };
    icmpv6::emit_ipv6(our_link_local, src, ND_HOP_LIMIT, &repr, out).ok()
}

/// The server's side: the nonce of a probe's answer (an Echo Reply of the probe's shape, right
/// checksum, hop limit 255), or `None` if `inner` is not one.
pub fn answer_nonce(inner: &[u8]) -> Option<Nonce> {
    probe_fields(inner, TYPE_ECHO_REPLY).map(|(_, _, _, nonce)| nonce)
}

/// When a round's probes go out and when it gives up, in milliseconds after its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeTiming {
    /// Send times after the first probe (at 0): retransmissions for a lost probe or answer.
    pub retries_ms: [u64; 2],
    /// No answer from the probed address by then: the round failed.
    pub timeout_ms: u64,
}

impl Default for ProbeTiming {
    fn default() -> Self {
        // Fast enough to hide a lost probe on a home line (RTTs to a VPS are tens of ms), slow
        // enough that one round costs at most three small packets.
        ProbeTiming {
            retries_ms: [250, 750],
            timeout_ms: 1500,
        }
    }
}

/// What started a probe round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// An override NA that passed every check.
    OverrideNa,
    /// Authenticated ESP from a new source without an NA (a NAT rebinding).
    NewSource,
}

/// One probe round: a nonce sent to one address, waiting for its authenticated answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    /// The address probed.
    pub target: Observed,
    /// The nonce its answer must carry.
    pub nonce: Nonce,
    /// When the trigger arrived (the switch time is measured from here).
    pub started_ms: u64,
    /// What started it.
    pub trigger: Trigger,
    /// Probes sent so far.
    pub sent: u16,
}

/// What an answer means for a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerMatch {
    /// The right nonce from the probed address: switch.
    Confirmed,
    /// The right nonce from another address: does not count.
    WrongAddress,
    /// Not this round's nonce (a late answer of an earlier round, or a guess).
    Stale,
}

impl Round {
    /// A round probing `target`, started by `trigger` at `now_ms`.
    pub fn new(target: Observed, nonce: Nonce, trigger: Trigger, now_ms: u64) -> Self {
        Round {
            target,
            nonce,
            started_ms: now_ms,
            trigger,
            sent: 0,
        }
    }

    /// Matches an authenticated answer that arrived from `from`. The nonce is compared in
    /// constant time (it is the secret the answer proves knowledge of).
    pub fn check_answer(&self, from: Observed, nonce: &Nonce) -> AnswerMatch {
        let same = nonce
            .iter()
            .zip(self.nonce.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        if !same {
            AnswerMatch::Stale
        } else if from == self.target {
            AnswerMatch::Confirmed
        } else {
            AnswerMatch::WrongAddress
        }
    }

    /// When the next probe is due, if another one is.
    pub fn next_send_ms(&self, timing: &ProbeTiming) -> Option<u64> {
        match self.sent {
            0 => Some(self.started_ms),
            n => timing
                .retries_ms
                .get(usize::from(n) - 1)
                .map(|delay| self.started_ms + delay),
        }
    }

    /// When the round gives up.
    pub fn deadline_ms(&self, timing: &ProbeTiming) -> u64 {
        self.started_ms + timing.timeout_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    const NONCE: Nonce = [0x5a; NONCE_LEN];

    fn probe(nonce: &Nonce) -> Vec<u8> {
        let mut out = vec![0u8; 256];
        let len = emit_probe(addr("fe80::1"), nonce, 3, &mut out).unwrap();
        out.truncate(len);
        out
    }

    #[test]
    fn probe_layout() {
        let packet = probe(&NONCE);
        assert_eq!(packet.len(), PROBE_LEN);
        let ip = ipv6::Packet::new_checked(&packet[..]).unwrap();
        assert_eq!(ip.hop_limit(), 255);
        assert_eq!(ip.dst_addr(), addr("ff02::1"));
        assert_eq!(ip.src_addr(), addr("fe80::1"));
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(
            Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), &icmp).unwrap(),
            Icmpv6Repr::EchoRequest {
                ident: PROBE_IDENT,
                seq_no: 3,
                data: &[&PROBE_MAGIC[..], &NONCE[..]].concat()
            }
        );
    }

    #[test]
    fn the_peer_answers_a_probe_with_the_same_nonce() {
        let mut out = [0u8; 256];
        let len = answer_probe(&probe(&NONCE), addr("fe80::2"), &mut out).unwrap();
        let answer = &out[..len];
        let ip = ipv6::Packet::new_checked(answer).unwrap();
        assert_eq!(ip.src_addr(), addr("fe80::2"));
        assert_eq!(ip.dst_addr(), addr("fe80::1"));
        assert_eq!(answer_nonce(answer), Some(NONCE));
        // A probe is not an answer, and an answer is not a probe.
        assert_eq!(answer_nonce(&probe(&NONCE)), None);
        assert_eq!(answer_probe(answer, addr("fe80::2"), &mut [0u8; 256]), None);
    }

    #[test]
    fn ordinary_pings_are_not_probes() {
        let mut out = [0u8; 256];
        // An ordinary ping to ff02::1 (other ident, other data).
        let data = [7u8; 24];
        let mut ping = vec![0u8; 256];
        let repr = Icmpv6Repr::EchoRequest {
            ident: 1,
            seq_no: 1,
            data: &data,
        };
        let len = icmpv6::emit_ipv6(addr("fe80::1"), ALL_NODES, 255, &repr, &mut ping).unwrap();
        assert_eq!(answer_probe(&ping[..len], addr("fe80::2"), &mut out), None);
        // The probe's shape, but hop limit 64, or not to ff02::1, or from a global address,
        // or a broken checksum, or a short nonce.
        let good = probe(&NONCE);
        let mut hop = good.clone();
        hop[7] = 64;
        assert_eq!(answer_probe(&hop, addr("fe80::2"), &mut out), None);
        let mut unicast = vec![0u8; 256];
        let data = [&PROBE_MAGIC[..], &NONCE[..]].concat();
        let repr = Icmpv6Repr::EchoRequest {
            ident: PROBE_IDENT,
            seq_no: 0,
            data: &data,
        };
        let len =
            icmpv6::emit_ipv6(addr("fe80::1"), addr("fe80::2"), 255, &repr, &mut unicast).unwrap();
        assert_eq!(
            answer_probe(&unicast[..len], addr("fe80::2"), &mut out),
            None
        );
        let len = icmpv6::emit_ipv6(
            addr("2001:db8:ffff::1"),
            ALL_NODES,
            255,
            &repr,
            &mut unicast,
        )
        .unwrap();
        assert_eq!(
            answer_probe(&unicast[..len], addr("fe80::2"), &mut out),
            None
        );
        let mut checksum = good.clone();
        checksum[60] ^= 1;
        assert_eq!(answer_probe(&checksum, addr("fe80::2"), &mut out), None);
        let short = [&PROBE_MAGIC[..], &NONCE[..15]].concat();
        let repr = Icmpv6Repr::EchoRequest {
            ident: PROBE_IDENT,
            seq_no: 0,
            data: &short,
        };
        let len = icmpv6::emit_ipv6(addr("fe80::1"), ALL_NODES, 255, &repr, &mut unicast).unwrap();
        assert_eq!(
            answer_probe(&unicast[..len], addr("fe80::2"), &mut out),
            None
        );
        assert!(answer_probe(&good, addr("fe80::2"), &mut out).is_some());
    }

    fn observed(a: &str, port: Option<u16>) -> Observed {
        Observed {
            addr: a.parse().unwrap(),
            port,
        }
    }

    #[test]
    fn answers_count_only_with_the_nonce_and_from_the_probed_address() {
        let target = observed("198.51.100.3", None);
        let round = Round::new(target, NONCE, Trigger::OverrideNa, 100);
        assert_eq!(round.check_answer(target, &NONCE), AnswerMatch::Confirmed);
        assert_eq!(
            round.check_answer(observed("203.0.113.66", None), &NONCE),
            AnswerMatch::WrongAddress
        );
        assert_eq!(
            round.check_answer(observed("198.51.100.3", Some(4500)), &NONCE),
            AnswerMatch::WrongAddress,
            "same address, other transport"
        );
        let mut other = NONCE;
        other[15] ^= 1;
        assert_eq!(round.check_answer(target, &other), AnswerMatch::Stale);
    }

    #[test]
    fn probes_are_retransmitted_then_the_round_gives_up() {
        let timing = ProbeTiming::default();
        let mut round = Round::new(
            observed("198.51.100.3", None),
            NONCE,
            Trigger::NewSource,
            1000,
        );
        assert_eq!(round.next_send_ms(&timing), Some(1000));
        round.sent = 1;
        assert_eq!(round.next_send_ms(&timing), Some(1250));
        round.sent = 2;
        assert_eq!(round.next_send_ms(&timing), Some(1750));
        round.sent = 3;
        assert_eq!(round.next_send_ms(&timing), None);
        assert_eq!(round.deadline_ms(&timing), 2500);
    }

    #[test]
    fn moved_endpoint_keeps_our_side_and_takes_the_observed_transport() {
        let raw = Endpoint {
            local: "203.0.113.1".parse().unwrap(),
            remote: "198.51.100.2".parse().unwrap(),
            encap: Encapsulation::Raw,
        };
        assert!(observed("198.51.100.2", None).is(&raw));
        assert!(!observed("198.51.100.2", Some(4500)).is(&raw));
        let behind_nat = observed("198.51.100.9", Some(40123)).moved(&raw, 4500);
        assert_eq!(
            behind_nat,
            Endpoint {
                local: raw.local,
                remote: "198.51.100.9".parse().unwrap(),
                encap: Encapsulation::Udp {
                    local_port: 4500,
                    remote_port: 40123
                },
            }
        );
        assert!(observed("198.51.100.9", Some(40123)).is(&behind_nat));
        assert_eq!(
            observed("198.51.100.3", None)
                .moved(&behind_nat, 4500)
                .encap,
            Encapsulation::Raw
        );
        assert_eq!(
            observed("198.51.100.9", Some(4500)).to_string(),
            "198.51.100.9:4500 (udp)"
        );
    }
}
