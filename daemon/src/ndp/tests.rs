//! Neighbor Discovery messages: the bytes hometun sends, what its parsers accept and refuse.

use super::*;

fn a(text: &str) -> Ipv6Addr {
    text.parse().unwrap()
}

fn full_ra() -> RouterAdvertisement {
    RouterAdvertisement {
        hop_limit: 64,
        managed: false,
        other: false,
        router_lifetime: 1800,
        reachable_ms: 0,
        retrans_ms: 0,
        source_lla: Some([0x02, 0, 0, 0, 0, 0x01]),
        mtu: Some(1400),
        prefixes: vec![PrefixInfo {
            prefix: a("2001:db8:100:100::"),
            prefix_len: 64,
            on_link: true,
            autonomous: true,
            valid_seconds: 5400,
            preferred_seconds: 2700,
        }],
        dns_servers: vec![a("2001:db8:53::53"), a("2001:db8:53::54")],
        search_domains: vec!["home.example".into(), "example".into()],
        dns_lifetime: 1800,
    }
}

#[test]
fn a_router_advertisement_has_the_layout_of_rfc_4861_and_8106() {
    let bytes = full_ra().to_bytes();
    // Fixed part: type 134, code 0, checksum for the kernel, hop limit, flags, lifetime.
    assert_eq!(&bytes[..8], &[134, 0, 0, 0, 64, 0, 0x07, 0x08]);
    // Source link-layer address, then MTU.
    assert_eq!(&bytes[16..24], &[1, 1, 0x02, 0, 0, 0, 0, 0x01]);
    assert_eq!(&bytes[24..32], &[5, 1, 0, 0, 0, 0, 0x05, 0x78]);
    // Prefix information: length 4 (32 bytes), /64, L and A set, 5400 s valid, 2700 s preferred.
    assert_eq!(
        &bytes[32..48],
        &[
            3, 4, 64, 0xc0, 0, 0, 0x15, 0x18, 0, 0, 0x0a, 0x8c, 0, 0, 0, 0
        ]
    );
    assert_eq!(&bytes[48..64], &a("2001:db8:100:100::").octets());
    // RDNSS: two addresses make 5 units.
    assert_eq!(&bytes[64..72], &[25, 5, 0, 0, 0, 0, 0x07, 0x08]);
    // DNSSL: 4home7example0 7example0 = 23 bytes, padded to 24: 4 units.
    let dnssl = &bytes[64 + 40..];
    assert_eq!(&dnssl[..8], &[31, 4, 0, 0, 0, 0, 0x07, 0x08]);
    assert_eq!(&dnssl[8..13], b"\x04home");
    assert_eq!(&dnssl[13..21], b"\x07example");
    assert_eq!(dnssl.len(), 32);
    assert_eq!(bytes.len() % 8, 0);
}

#[test]
fn a_router_advertisement_reads_back_as_built() {
    let ra = full_ra();
    assert_eq!(RouterAdvertisement::parse(&ra.to_bytes()), Ok(ra));
    let bare = RouterAdvertisement {
        router_lifetime: 0,
        ..RouterAdvertisement::default()
    };
    assert_eq!(bare.to_bytes().len(), 16);
    assert_eq!(RouterAdvertisement::parse(&bare.to_bytes()), Ok(bare));
}

#[test]
fn broken_router_advertisements_are_refused_with_the_reason() {
    let good = full_ra().to_bytes();
    assert_eq!(
        RouterAdvertisement::parse(&good[..15]),
        Err(NdpError::Truncated {
            what: "Router Advertisement",
            len: 15,
            need: 16
        })
    );
    let mut code = good.clone();
    code[1] = 1;
    assert_eq!(RouterAdvertisement::parse(&code), Err(NdpError::Code(1)));
    let mut zero = good.clone();
    zero[17] = 0;
    assert_eq!(
        RouterAdvertisement::parse(&zero),
        Err(NdpError::ZeroLengthOption { at: 16 })
    );
    let mut long = good.clone();
    long[17] = 200;
    assert_eq!(
        RouterAdvertisement::parse(&long),
        Err(NdpError::OptionOverrun { at: 16 })
    );
    let mut odd_tail = good.clone();
    odd_tail.push(1);
    assert_eq!(
        RouterAdvertisement::parse(&odd_tail),
        Err(NdpError::OptionOverrun { at: good.len() })
    );
    let mut short_pio = good.clone();
    short_pio[33] = 3;
    assert!(matches!(
        RouterAdvertisement::parse(&short_pio),
        Err(NdpError::BadOption {
            kind: 3,
            at: 32,
            ..
        })
    ));
    assert_eq!(
        RouterAdvertisement::parse(
            &RouterSolicitation {
                source_lla: Some([2, 0, 0, 0, 0, 9])
            }
            .to_bytes()
        ),
        Err(NdpError::WrongType {
            found: 133,
            expected: 134
        })
    );
}

#[test]
fn dnssl_names_must_be_labels_then_zero_padding() {
    let mut ra = full_ra();
    ra.dns_servers.clear();
    ra.search_domains = vec!["a.example".into()];
    let mut bytes = ra.to_bytes();
    // 8 bytes of header and 1a7example0 (11 bytes), padded to 24.
    let at = bytes.len() - 24;
    assert_eq!(bytes[at..at + 2], [31, 3]);
    // The padding's last byte made non-zero.
    let last = bytes.len() - 1;
    bytes[last] = 7;
    assert!(matches!(
        RouterAdvertisement::parse(&bytes),
        Err(NdpError::BadOption { kind: 31, problem, .. }) if problem.contains("padding")
    ));
    let mut label = ra.to_bytes();
    label[at + 9] = b' ';
    assert!(matches!(
        RouterAdvertisement::parse(&label),
        Err(NdpError::BadOption { kind: 31, .. })
    ));
    let mut runaway = ra.to_bytes();
    runaway[at + 8] = 63;
    assert!(matches!(
        RouterAdvertisement::parse(&runaway),
        Err(NdpError::BadOption { kind: 31, .. })
    ));
}

#[test]
fn a_router_solicitation_from_the_unspecified_address_may_not_carry_an_address() {
    let with = RouterSolicitation {
        source_lla: Some([2, 0, 0, 0, 0, 9]),
    };
    assert_eq!(
        RouterSolicitation::parse(&with.to_bytes(), a("fe80::9")),
        Ok(with)
    );
    assert_eq!(
        RouterSolicitation::parse(&with.to_bytes(), Ipv6Addr::UNSPECIFIED),
        Err(NdpError::UnspecifiedWithSourceLla)
    );
    let without = RouterSolicitation { source_lla: None };
    assert_eq!(
        RouterSolicitation::parse(&without.to_bytes(), Ipv6Addr::UNSPECIFIED),
        Ok(without)
    );
    // An unknown option is skipped.
    let mut unknown = without.to_bytes();
    unknown.extend_from_slice(&[99, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        RouterSolicitation::parse(&unknown, a("fe80::9")),
        Ok(without)
    );
}

/// An NS as the kernel sends it, in a whole IPv6 packet with its checksum.
fn ns_packet(source: Ipv6Addr, target: Ipv6Addr, hop_limit: u8) -> Vec<u8> {
    let destination = a("ff02::1:ff00:0");
    let mut message = NeighborSolicitation {
        target,
        source_lla: (!source.is_unspecified()).then_some([2, 0, 0, 0, 0, 7]),
    }
    .to_bytes();
    let checksum = icmpv6_checksum(source, destination, &message);
    message[2..4].copy_from_slice(&checksum.to_be_bytes());
    let mut packet = vec![0x60, 0, 0, 0];
    packet.extend_from_slice(&(message.len() as u16).to_be_bytes());
    packet.extend_from_slice(&[58, hop_limit]);
    packet.extend_from_slice(&source.octets());
    packet.extend_from_slice(&destination.octets());
    packet.extend_from_slice(&message);
    packet
}

#[test]
fn a_neighbor_solicitation_packet_is_checked_whole() {
    let target = a("2001:db8:200::1234");
    let packet = ns_packet(a("fe80::7"), target, 255);
    let parsed = parse_solicitation_packet(&packet).unwrap();
    assert_eq!(parsed.source, a("fe80::7"));
    assert_eq!(parsed.solicitation.target, target);
    assert_eq!(parsed.solicitation.source_lla, Some([2, 0, 0, 0, 0, 7]));
    // Ethernet padding after the payload is allowed.
    let mut padded = packet.clone();
    padded.extend_from_slice(&[0; 6]);
    assert_eq!(parse_solicitation_packet(&padded), Ok(parsed));

    assert_eq!(
        parse_solicitation_packet(&ns_packet(a("fe80::7"), target, 254)),
        Err(NdpError::HopLimit(254))
    );
    let mut flipped = packet.clone();
    flipped[40 + 8] ^= 1;
    assert_eq!(parse_solicitation_packet(&flipped), Err(NdpError::Checksum));
    let mut udp = packet.clone();
    udp[6] = 17;
    assert_eq!(
        parse_solicitation_packet(&udp),
        Err(NdpError::NotIcmpv6(17))
    );
    let mut v4 = packet.clone();
    v4[0] = 0x45;
    assert_eq!(parse_solicitation_packet(&v4), Err(NdpError::NotIpv6(4)));
    assert_eq!(
        parse_solicitation_packet(&packet[..packet.len() - 1]),
        Err(NdpError::PayloadLength {
            claimed: 32,
            actual: 31
        })
    );
    assert_eq!(
        parse_solicitation_packet(&ns_packet(a("fe80::7"), a("ff02::1"), 255)),
        Err(NdpError::MulticastTarget(a("ff02::1")))
    );
    // Duplicate address detection: from :: without a link-layer address is fine.
    let dad = parse_solicitation_packet(&ns_packet(Ipv6Addr::UNSPECIFIED, target, 255)).unwrap();
    assert!(dad.source.is_unspecified());
}

#[test]
fn a_neighbor_advertisement_carries_its_flags_and_address() {
    let na = NeighborAdvertisement {
        router: true,
        solicited: true,
        override_flag: false,
        target: a("2001:db8:200::1234"),
        target_lla: Some([2, 0, 0, 0, 0, 1]),
    };
    let bytes = na.to_bytes();
    assert_eq!(&bytes[..8], &[136, 0, 0, 0, 0xc0, 0, 0, 0]);
    assert_eq!(&bytes[24..], &[2, 1, 2, 0, 0, 0, 0, 1]);
    assert_eq!(NeighborAdvertisement::parse(&bytes), Ok(na));
}

#[test]
fn the_checksum_of_a_message_with_its_checksum_in_is_zero() {
    let (s, d) = (a("fe80::1"), a("ff02::1"));
    let mut message = full_ra().to_bytes();
    let sum = icmpv6_checksum(s, d, &message);
    message[2..4].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(icmpv6_checksum(s, d, &message), 0);
}
