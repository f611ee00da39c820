//! The server's checks of an override Neighbor Advertisement (docs/ARCHITECTURE.md, "Roaming").
//! Pure functions over the decrypted inner packet of an ESP packet that already passed the ICV and
//! the replay window, and over the state of its SA; time is passed in.
//!
//! The order is the brief's: the packet itself (hop limit, checksum, flags, the Target
//! Link-Layer Address option, the target), then the SA's history (ESP sequence newer than the
//! last accepted NA's), then the peer's rate limit. A refusal names the first check that failed.

use std::net::{Ipv4Addr, Ipv6Addr};

use hometun_control::MoveRefusal;
use ipnet::Ipv6Net;

use crate::wire::icmpv6::{self, TYPE_NEIGHBOR_ADVERT};
use crate::wire::ipv6::{self, NEXT_HEADER_ICMPV6};
use crate::wire::{Icmpv6Packet, Icmpv6Repr, WireError};

/// The hop limit every Neighbor Discovery message carries (RFC 4861 7.1.2).
pub const ND_HOP_LIMIT: u8 = 255;

/// What an override NA is checked against: the SA's and the server's addresses.
#[derive(Debug, Clone, Copy)]
pub struct NaRules<'a> {
    /// The SA's remote traffic selector: the client's prefixes. The target must be inside.
    pub remote_ts: &'a [Ipv6Net],
    /// The server's own addresses (those of its TUN device, link-local included).
    pub own_addresses: &'a [Ipv6Addr],
}

/// An override NA that passed the checks of the packet itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverrideNa {
    /// The client's tunnel address it announces.
    pub target: Ipv6Addr,
    /// The IPv4 address in its Target Link-Layer Address option (informational: the server
    /// adopts the observed outer source, which behind a NAT differs).
    pub lladdr: Ipv4Addr,
}

/// True when an inner packet is an ICMPv6 message of type `msg_type` without extension headers:
/// the one cheap test the data path makes before anything else (two byte compares).
#[inline]
pub fn is_icmpv6_type(inner: &[u8], msg_type: u8) -> bool {
    inner.len() > ipv6::HEADER_LEN
        && inner[6] == NEXT_HEADER_ICMPV6
        && inner[ipv6::HEADER_LEN] == msg_type
}

/// True when an inner packet claims to be a Neighbor Advertisement (see [`is_icmpv6_type`]).
#[inline]
pub fn is_neighbor_advert(inner: &[u8]) -> bool {
    is_icmpv6_type(inner, TYPE_NEIGHBOR_ADVERT)
}

/// Checks the packet itself: an inner IPv6 packet carrying an override NA for one of the SA's
/// client addresses.
pub fn check_packet(inner: &[u8], rules: &NaRules<'_>) -> Result<OverrideNa, MoveRefusal> {
    let ip = ipv6::Packet::new_checked(inner).map_err(|_| MoveRefusal::Malformed)?;
    if ip.next_header() != NEXT_HEADER_ICMPV6 {
        return Err(MoveRefusal::Malformed);
    }
    if ip.hop_limit() != ND_HOP_LIMIT {
        return Err(MoveRefusal::HopLimit);
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let icmp = Icmpv6Packet::new_checked(ip.payload()).map_err(|_| MoveRefusal::Malformed)?;
    if icmp.msg_type() != TYPE_NEIGHBOR_ADVERT {
        return Err(MoveRefusal::Malformed);
    }
    let (flags, target, lladdr) = match Icmpv6Repr::parse(&src, &dst, &icmp) {
        Ok(Icmpv6Repr::NeighborAdvert {
            flags,
            target,
            target_lladdr,
        }) => (flags, target, target_lladdr),
        Ok(_) => return Err(MoveRefusal::Malformed),
        Err(WireError::BadChecksum) => return Err(MoveRefusal::Checksum),
        Err(WireError::SolicitedToMulticast) => return Err(MoveRefusal::Flags),
        Err(WireError::MulticastTarget) => return Err(MoveRefusal::BadTarget),
        Err(_) => return Err(MoveRefusal::Malformed),
    };
    if !flags.override_flag || flags.solicited || flags.router {
        return Err(MoveRefusal::Flags);
    }
    let lladdr = lladdr.ok_or(MoveRefusal::NoTargetLinkAddress)?;
    if target.is_multicast()
        || target.is_loopback()
        || target.is_unspecified()
        || rules.own_addresses.contains(&target)
    {
        return Err(MoveRefusal::BadTarget);
    }
    if !rules.remote_ts.iter().any(|net| net.contains(&target)) {
        return Err(MoveRefusal::ForeignTarget);
    }
    Ok(OverrideNa { target, lladdr })
}

/// Checks that an NA's ESP sequence number is newer than the last accepted NA's on that SA
/// (the replay window lets an older, unseen packet through; an older NA must not undo a newer
/// one).
pub fn check_newer(seq: u64, last_accepted: Option<u64>) -> Result<(), MoveRefusal> {
    match last_accepted {
        Some(last) if seq <= last => Err(MoveRefusal::OlderNa),
        _ => Ok(()),
    }
}

/// A token bucket over a millisecond clock: `burst` events at once, then one per `interval_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    burst: u64,
    interval_ms: u64,
    /// Credit in milliseconds of refill; one event costs `interval_ms`.
    credit_ms: u64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket at `now_ms`.
    pub fn new(burst: u32, interval_ms: u64, now_ms: u64) -> Self {
        let interval_ms = interval_ms.max(1);
        let burst = u64::from(burst.max(1));
        TokenBucket {
            burst,
            interval_ms,
            credit_ms: burst * interval_ms,
            last_ms: now_ms,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.credit_ms = self
            .credit_ms
            .saturating_add(elapsed)
            .min(self.burst * self.interval_ms);
        if self.credit_ms >= self.interval_ms {
            self.credit_ms -= self.interval_ms;
            true
        } else {
            false
        }
    }
}

/// Builds the client's override NA (the inverse of [`check_packet`]): from `source` (the
/// client's link-local address) to ff02::1, hop limit 255, O=1 S=0 R=0, `target`, and a Target
/// Link-Layer Address option carrying `lladdr`. Returns the length written into `out`.
pub fn emit_override_na(
    source: Ipv6Addr,
    target: Ipv6Addr,
    lladdr: Ipv4Addr,
    out: &mut [u8],
) -> Result<usize, WireError> {
    let repr = Icmpv6Repr::NeighborAdvert {
        flags: crate::wire::NaFlags {
            router: false,
            solicited: false,
            override_flag: true,
        },
        target,
        target_lladdr: Some(lladdr),
    };
    icmpv6::emit_ipv6(source, ALL_NODES, ND_HOP_LIMIT, &repr, out)
}

/// ff02::1, the link-local all-nodes multicast address.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The override NA as Scapy 2.5 builds it (the same bytes as the ICMPv6
    /// codec's test): fe80::2 -> ff02::1, hop limit 255, R=0 S=0 O=1, target 2001:db8:1::2,
    /// Target Link-Layer Address option with 198.51.100.7.
    pub(crate) const SCAPY_NA: [u8; 72] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x88, 0x00, 0x00, 0x26, 0x20,
        0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x02, 0x02, 0x01, 0x00, 0x00, 0xc6, 0x33, 0x64, 0x07,
    ];

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn remote_ts() -> Vec<Ipv6Net> {
        vec![net("2001:db8:1::/64")]
    }

    fn own() -> Vec<Ipv6Addr> {
        vec![addr("fe80::1"), addr("2001:db8:ffff::1")]
    }

    fn check(packet: &[u8]) -> Result<OverrideNa, MoveRefusal> {
        let (ts, own) = (remote_ts(), own());
        check_packet(
            packet,
            &NaRules {
                remote_ts: &ts,
                own_addresses: &own,
            },
        )
    }

    /// Rewrites the ICMPv6 checksum after a change, so that only the property under test fails.
    fn fix_checksum(packet: &mut [u8]) {
        let ip = ipv6::Packet::new_checked(&packet[..]).unwrap();
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let total = ip.total_len();
        Icmpv6Packet::new_unchecked(&mut packet[ipv6::HEADER_LEN..total]).fill_checksum(&src, &dst);
    }

    fn with_target(target: &str) -> Vec<u8> {
        let mut packet = SCAPY_NA.to_vec();
        packet[48..64].copy_from_slice(&addr(target).octets());
        fix_checksum(&mut packet);
        packet
    }

    #[test]
    fn scapy_override_na_passes() {
        assert_eq!(
            check(&SCAPY_NA),
            Ok(OverrideNa {
                target: addr("2001:db8:1::2"),
                lladdr: Ipv4Addr::new(198, 51, 100, 7),
            })
        );
        assert!(is_neighbor_advert(&SCAPY_NA));
    }

    #[test]
    fn emitted_na_is_the_scapy_packet() {
        let mut out = [0u8; 128];
        let len = emit_override_na(
            addr("fe80::2"),
            addr("2001:db8:1::2"),
            Ipv4Addr::new(198, 51, 100, 7),
            &mut out,
        )
        .unwrap();
        assert_eq!(&out[..len], &SCAPY_NA[..]);
        assert_eq!(
            emit_override_na(
                addr("fe80::2"),
                addr("2001:db8:1::2"),
                Ipv4Addr::new(198, 51, 100, 7),
                &mut out[..71]
            ),
            Err(WireError::BufferTooSmall)
        );
    }

    #[test]
    fn hop_limit_must_be_255() {
        for hop_limit in [0u8, 1, 64, 254] {
            let mut packet = SCAPY_NA.to_vec();
            packet[7] = hop_limit;
            assert_eq!(check(&packet), Err(MoveRefusal::HopLimit), "{hop_limit}");
        }
    }

    #[test]
    fn checksum_must_be_right() {
        let mut packet = SCAPY_NA.to_vec();
        packet[43] ^= 0x01;
        assert_eq!(check(&packet), Err(MoveRefusal::Checksum));
        // The pseudo-header counts: the same message to another destination fails.
        let mut packet = SCAPY_NA.to_vec();
        packet[39] = 0x02;
        assert_eq!(check(&packet), Err(MoveRefusal::Checksum));
    }

    #[test]
    fn flags_must_be_override_only() {
        for (byte, why) in [
            (0x00, "O=0"),
            (0x60, "S=1 to multicast"),
            (0xa0, "R=1"),
            (0x80, "R=1 O=0"),
        ] {
            let mut packet = SCAPY_NA.to_vec();
            packet[44] = byte;
            fix_checksum(&mut packet);
            assert_eq!(check(&packet), Err(MoveRefusal::Flags), "{why}");
        }
        // S=1 is refused towards a unicast destination too.
        let mut packet = SCAPY_NA.to_vec();
        packet[44] = 0x60;
        packet[24..40].copy_from_slice(&addr("fe80::1").octets());
        fix_checksum(&mut packet);
        assert_eq!(check(&packet), Err(MoveRefusal::Flags));
    }

    #[test]
    fn target_link_layer_address_is_required() {
        let mut packet = SCAPY_NA[..64].to_vec();
        packet[5] = 24;
        fix_checksum(&mut packet);
        assert_eq!(check(&packet), Err(MoveRefusal::NoTargetLinkAddress));
        // Another option alone (a nonce, type 14) does not count.
        let mut packet = SCAPY_NA.to_vec();
        packet[64] = 14;
        fix_checksum(&mut packet);
        assert_eq!(check(&packet), Err(MoveRefusal::NoTargetLinkAddress));
    }

    #[test]
    fn target_must_be_the_clients() {
        assert_eq!(
            check(&with_target("2001:db8:2::2")),
            Err(MoveRefusal::ForeignTarget)
        );
        assert_eq!(
            check(&with_target("2001:db8:1:1::2")),
            Err(MoveRefusal::ForeignTarget)
        );
        assert_eq!(
            check(&with_target("fe80::2")),
            Err(MoveRefusal::ForeignTarget)
        );
        assert!(check(&with_target("2001:db8:1::ffff")).is_ok());
    }

    #[test]
    fn target_must_not_be_special_or_ours() {
        for target in [
            "ff02::1",
            "ff0e::5",
            "::1",
            "::",
            "fe80::1",
            "2001:db8:ffff::1",
        ] {
            assert_eq!(
                check(&with_target(target)),
                Err(MoveRefusal::BadTarget),
                "{target}"
            );
        }
        // Even when the client's selector is ::/0 (a server roaming towards its client).
        let wide = vec![net("::/0")];
        let own = own();
        let rules = NaRules {
            remote_ts: &wide,
            own_addresses: &own,
        };
        for target in ["::1", "::", "fe80::1", "2001:db8:ffff::1"] {
            assert_eq!(
                check_packet(&with_target(target), &rules),
                Err(MoveRefusal::BadTarget),
                "{target}"
            );
        }
        assert!(check_packet(&with_target("2001:db8:5::1"), &rules).is_ok());
    }

    #[test]
    fn other_packets_are_malformed_nas() {
        assert_eq!(check(&SCAPY_NA[..50]), Err(MoveRefusal::Malformed));
        let mut code = SCAPY_NA.to_vec();
        code[41] = 1;
        fix_checksum(&mut code);
        assert_eq!(check(&code), Err(MoveRefusal::Malformed));
        let mut zero_option = SCAPY_NA.to_vec();
        zero_option[65] = 0;
        fix_checksum(&mut zero_option);
        assert_eq!(check(&zero_option), Err(MoveRefusal::Malformed));
        let mut not_icmp = SCAPY_NA.to_vec();
        not_icmp[6] = 59;
        assert_eq!(check(&not_icmp), Err(MoveRefusal::Malformed));
        assert!(!is_neighbor_advert(&not_icmp));
        let mut echo = SCAPY_NA.to_vec();
        echo[40] = 128;
        fix_checksum(&mut echo);
        assert_eq!(check(&echo), Err(MoveRefusal::Malformed));
        assert!(!is_neighbor_advert(&echo));
        assert!(!is_neighbor_advert(&SCAPY_NA[..40]));
    }

    #[test]
    fn only_newer_sequence_numbers_pass() {
        assert_eq!(check_newer(5, None), Ok(()));
        assert_eq!(check_newer(6, Some(5)), Ok(()));
        assert_eq!(check_newer(5, Some(5)), Err(MoveRefusal::OlderNa));
        assert_eq!(check_newer(4, Some(5)), Err(MoveRefusal::OlderNa));
        assert_eq!(
            check_newer(1 << 32, Some(u64::from(u32::MAX))),
            Ok(()),
            "ESN: beyond 2^32"
        );
    }

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(3, 100, 1000);
        assert!(bucket.take(1000));
        assert!(bucket.take(1000));
        assert!(bucket.take(1000));
        assert!(!bucket.take(1000));
        assert!(!bucket.take(1099));
        assert!(bucket.take(1100));
        assert!(!bucket.take(1150));
        // A long pause refills no more than the burst.
        for _ in 0..3 {
            assert!(bucket.take(100_000));
        }
        assert!(!bucket.take(100_000));
        // A clock that goes backwards gives nothing away.
        assert!(!bucket.take(50));
    }
}
