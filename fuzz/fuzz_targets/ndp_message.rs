//! The Neighbor Discovery parsers (hometun_daemon::ndp) on arbitrary bytes: Router
//! Solicitations and Neighbor Solicitations as hometun reads them from LAN hosts and from the
//! provider's link, Router and Neighbor Advertisements, whole IPv6 packets from the packet
//! socket of the NDP proxy. Nothing may panic, and what parses, built again, parses to the same.
//!
//! The first input byte picks the source address (unspecified or link-local).
#![no_main]

use std::net::Ipv6Addr;

use hometun_daemon::ndp::{
    NeighborAdvertisement, NeighborSolicitation, RouterAdvertisement, RouterSolicitation,
    parse_solicitation_packet,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, message)) = data.split_first() else {
        return;
    };
    let source = if pick & 1 == 0 {
        Ipv6Addr::UNSPECIFIED
    } else {
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 9)
    };
    if let Ok(rs) = RouterSolicitation::parse(message, source) {
        assert_eq!(RouterSolicitation::parse(&rs.to_bytes(), source), Ok(rs));
    }
    if let Ok(ns) = NeighborSolicitation::parse(message, source) {
        assert!(!ns.target.is_multicast());
        assert_eq!(NeighborSolicitation::parse(&ns.to_bytes(), source), Ok(ns));
    }
    if let Ok(ra) = RouterAdvertisement::parse(message) {
        assert_eq!(RouterAdvertisement::parse(&ra.to_bytes()), Ok(ra));
    }
    if let Ok(na) = NeighborAdvertisement::parse(message) {
        assert_eq!(NeighborAdvertisement::parse(&na.to_bytes()), Ok(na));
    }
    if let Ok(packet) = parse_solicitation_packet(message) {
        assert_eq!(message[7], 255);
        assert!(!packet.solicitation.target.is_multicast());
    }
});
