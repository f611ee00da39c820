//! Fixtures for tests, benchmarks and fuzz targets (feature `test-util`, never in the daemons):
//! a [`ChildSa`] built from a few lines instead of every field spelled out.
//!
//! The defaults are the server's view of a home's pair in the labs: peer 1, inbound SPI 0x100,
//! outbound SPI 0x200, AES-128-GCM keys of the repeated bytes 1 (in) and 2 (out), our side
//! `::/0`, the home's `2001:db8:1::/64`, raw ESP from 192.0.2.1 to 192.0.2.2, no limits, no ESN,
//! a 1024-packet replay window, no NAT keepalives. [`ChildSaBuilder::mirrored`] gives the home's
//! view of the same pair.

use std::net::Ipv4Addr;

use ipnet::Ipv6Net;

use crate::InterfaceConfig;
use crate::types::{AeadAlg, AeadKey, ChildSa, Encapsulation, Endpoint, Limits, PeerId, Spi};

/// Builds a [`ChildSa`]; start with [`ChildSa::builder`].
#[derive(Clone, Debug)]
pub struct ChildSaBuilder {
    sa: ChildSa,
}

impl InterfaceConfig {
    /// The interface the tests configure: `tun_name`, MTU 1400, `fe80::1/64`, UDP 4500 and raw
    /// ESP, routes managed (metric 1024, protocol 57), `peer_pool` if any, no MSS clamping.
    pub fn for_tests(tun_name: &str, peer_pool: Option<Ipv6Net>) -> Self {
        InterfaceConfig {
            tun_name: tun_name.into(),
            mtu: 1400,
            addresses: prefixes(&["fe80::1/64"]),
            bind_ipv4: None,
            udp_port: 4500,
            raw_esp: true,
            manage_routes: true,
            route_metric: 1024,
            route_protocol: 57,
            peer_pool,
            clamp_mss: false,
            icmp_source: None,
        }
    }
}

/// A key of `alg` whose KEYMAT (key and salt) is `fill` repeated.
pub fn filled_key(alg: AeadAlg, fill: u8) -> AeadKey {
    AeadKey::from_keymat(alg, &vec![fill; alg.key_len() + 4])
        .expect("KEYMAT of the algorithm's own length")
}

fn prefixes(list: &[&str]) -> Vec<Ipv6Net> {
    list.iter()
        .map(|p| p.parse().expect("an IPv6 prefix in a test fixture"))
        .collect()
}

impl ChildSa {
    /// A builder with the defaults of [`crate::test_util`].
    pub fn builder() -> ChildSaBuilder {
        ChildSaBuilder {
            sa: ChildSa {
                peer: PeerId(1),
                spi_in: Spi(0x100),
                key_in: filled_key(AeadAlg::AesGcm128, 1),
                spi_out: Spi(0x200),
                key_out: filled_key(AeadAlg::AesGcm128, 2),
                local_ts: prefixes(&["::/0"]),
                remote_ts: prefixes(&["2001:db8:1::/64"]),
                endpoint: Endpoint {
                    local: Ipv4Addr::new(192, 0, 2, 1),
                    remote: Ipv4Addr::new(192, 0, 2, 2),
                    encap: Encapsulation::Raw,
                },
                limits: Limits::default(),
                esn: false,
                replay_window: 1024,
                nat_keepalive_seconds: None,
            },
        }
    }
}

impl ChildSaBuilder {
    /// The peer.
    pub fn peer(mut self, peer: u64) -> Self {
        self.sa.peer = PeerId(peer);
        self
    }

    /// Inbound and outbound SPI.
    pub fn spis(mut self, spi_in: u32, spi_out: u32) -> Self {
        self.sa.spi_in = Spi(spi_in);
        self.sa.spi_out = Spi(spi_out);
        self
    }

    /// Both keys of `alg`, from the repeated bytes `fill_in` and `fill_out`.
    pub fn keys(self, alg: AeadAlg, fill_in: u8, fill_out: u8) -> Self {
        self.key_in(alg, fill_in).key_out(alg, fill_out)
    }

    /// The inbound key of `alg`, from the repeated byte `fill`.
    pub fn key_in(mut self, alg: AeadAlg, fill: u8) -> Self {
        self.sa.key_in = filled_key(alg, fill);
        self
    }

    /// The outbound key of `alg`, from the repeated byte `fill`.
    pub fn key_out(mut self, alg: AeadAlg, fill: u8) -> Self {
        self.sa.key_out = filled_key(alg, fill);
        self
    }

    /// Our side's prefixes.
    pub fn local_ts(mut self, list: &[&str]) -> Self {
        self.sa.local_ts = prefixes(list);
        self
    }

    /// The peer's prefixes.
    pub fn remote_ts(mut self, list: &[&str]) -> Self {
        self.sa.remote_ts = prefixes(list);
        self
    }

    /// The peer's prefixes, already parsed.
    pub fn remote_nets(mut self, nets: Vec<Ipv6Net>) -> Self {
        self.sa.remote_ts = nets;
        self
    }

    /// The whole endpoint.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.sa.endpoint = endpoint;
        self
    }

    /// Our and the peer's outer address (the encapsulation stays).
    pub fn addresses(mut self, local: Ipv4Addr, remote: Ipv4Addr) -> Self {
        self.sa.endpoint.local = local;
        self.sa.endpoint.remote = remote;
        self
    }

    /// ESP in UDP between these ports.
    pub fn udp(mut self, local_port: u16, remote_port: u16) -> Self {
        self.sa.endpoint.encap = Encapsulation::Udp {
            local_port,
            remote_port,
        };
        self
    }

    /// Lifetimes.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.sa.limits = limits;
        self
    }

    /// Extended sequence numbers.
    pub fn esn(mut self, esn: bool) -> Self {
        self.sa.esn = esn;
        self
    }

    /// Anti-replay window in packets.
    pub fn replay_window(mut self, packets: u32) -> Self {
        self.sa.replay_window = packets;
        self
    }

    /// NAT keepalive interval.
    pub fn nat_keepalive_seconds(mut self, seconds: Option<u32>) -> Self {
        self.sa.nat_keepalive_seconds = seconds;
        self
    }

    /// The same pair as the other side sees it: SPIs, keys, selectors, addresses and ports
    /// swapped.
    pub fn mirrored(mut self) -> Self {
        let sa = &mut self.sa;
        std::mem::swap(&mut sa.spi_in, &mut sa.spi_out);
        std::mem::swap(&mut sa.key_in, &mut sa.key_out);
        std::mem::swap(&mut sa.local_ts, &mut sa.remote_ts);
        std::mem::swap(&mut sa.endpoint.local, &mut sa.endpoint.remote);
        if let Encapsulation::Udp {
            local_port,
            remote_port,
        } = &mut sa.endpoint.encap
        {
            std::mem::swap(local_port, remote_port);
        }
        self
    }

    /// The pair.
    pub fn build(self) -> ChildSa {
        self.sa
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrored_twice_is_the_same_pair() {
        let sa = ChildSa::builder().udp(4500, 40000).peer(3);
        assert_eq!(sa.clone().mirrored().mirrored().build(), sa.clone().build());
        let home = sa.mirrored().build();
        assert_eq!(home.spi_in, Spi(0x200));
        assert_eq!(home.key_in, filled_key(AeadAlg::AesGcm128, 2));
        assert_eq!(home.local_ts, prefixes(&["2001:db8:1::/64"]));
        assert_eq!(home.endpoint.remote, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(
            home.endpoint.encap,
            Encapsulation::Udp {
                local_port: 40000,
                remote_port: 4500
            }
        );
    }
}
