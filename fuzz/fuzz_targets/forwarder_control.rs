//! The forwarder's SA channel with a peer pool, as a server runs it, driven by a hostile
//! controller: sequences of AllowPeer, Install, Delete and UpdateEndpoint with selectors chosen
//! to cross grants, pools and each other (host bits set, ::/0, host routes, neighbours' /64s),
//! plus whatever other request decodes. After each request the target checks:
//!
//! - every installed pair's remote selectors lie inside the pool, and an Install that succeeds
//!   lies inside its peer's grant as AllowPeer last set it (the harness keeps its own copy);
//! - no two peers' installed selectors overlap;
//! - a refused request changes nothing: counters and routes are equal before and after;
//! - every route the platform holds belongs to an installed pair, and the other way round.
//!
//! Configure, SetPeerPool and Shutdown are skipped: they are the daemon's configuration (a
//! reload sets the pool), not a request within it, and they move the pool the invariants are
//! checked against (the handler's unit tests cover them).
#![no_main]

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

use hometun_control::{
    AeadAlg, ChildSa, ControlError, Encapsulation, Endpoint, InterfaceConfig, PeerId, Request, Spi,
    decode_frame,
};
use hometun_forwarder::aead::AeadBackend;
use hometun_forwarder::requests::{RecordingPlatform, RequestHandler};
use ipnet::Ipv6Net;
use libfuzzer_sys::fuzz_target;

/// The server's pool, as `server.pool` gives it.
fn pool() -> Ipv6Net {
    "2001:db8:100::/48".parse().expect("literal")
}

/// Reads the fuzzer's bytes as choices; `None` once they run out.
struct Choices<'a> {
    data: &'a [u8],
}

impl Choices<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.data.split_first()?;
        self.data = rest;
        Some(*first)
    }

    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.data.len() < n {
            return None;
        }
        let (taken, rest) = self.data.split_at(n);
        self.data = rest;
        Some(taken)
    }

    fn peer(&mut self) -> Option<PeerId> {
        Some(PeerId(u64::from(self.byte()? % 4)))
    }

    /// A selector meant to cross lines: inside or outside the pool, a home's /64, wider or
    /// narrower, host bits set or not, the default route, a random address.
    fn prefix(&mut self) -> Option<Ipv6Net> {
        let kind = self.byte()?;
        let len = self.byte()? % 129;
        let address = match kind % 6 {
            // A home's /64 in the pool: 2001:db8:100:N::.
            0 => Ipv6Addr::new(
                0x2001,
                0xdb8,
                0x100,
                u16::from(self.byte()? % 8),
                0,
                0,
                0,
                0,
            ),
            // An address inside a home's /64, host bits set.
            1 => Ipv6Addr::new(
                0x2001,
                0xdb8,
                0x100,
                u16::from(self.byte()? % 8),
                0,
                0,
                0,
                u16::from(self.byte()?),
            ),
            // Just outside the pool.
            2 => Ipv6Addr::new(0x2001, 0xdb8, 0x101, 0, 0, 0, 0, 0),
            3 => Ipv6Addr::UNSPECIFIED,
            4 => Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
            _ => {
                let bytes: [u8; 16] = self.take(16)?.try_into().ok()?;
                Ipv6Addr::from(bytes)
            }
        };
        Ipv6Net::new(address, len).ok()
    }

    fn prefixes(&mut self) -> Option<Vec<Ipv6Net>> {
        let n = self.byte()? % 4;
        (0..n).map(|_| self.prefix()).collect()
    }

    fn endpoint(&mut self) -> Option<Endpoint> {
        let choice = self.byte()?;
        let encap = match choice % 4 {
            0 => Encapsulation::Raw,
            1 => Encapsulation::Udp {
                local_port: 4500,
                remote_port: 4500,
            },
            2 => Encapsulation::Udp {
                local_port: 4500,
                remote_port: 0,
            },
            _ => Encapsulation::Udp {
                local_port: u16::from(self.byte()?) + 4400,
                remote_port: 40000,
            },
        };
        Some(Endpoint {
            local: Ipv4Addr::new(192, 0, 2, 1),
            remote: Ipv4Addr::new(198, 51, 100, self.byte()?),
            encap,
        })
    }

    fn child_sa(&mut self) -> Option<ChildSa> {
        let peer = self.peer()?;
        let spi = u32::from(self.byte()? % 17);
        let alg_out = if self.byte()? % 8 == 0 {
            AeadAlg::AesGcm256
        } else {
            AeadAlg::AesGcm128
        };
        Some(
            ChildSa::builder()
                .peer(peer.0)
                .spis(spi, spi + 0x100)
                .key_out(alg_out, 2)
                .remote_nets(self.prefixes()?)
                .endpoint(self.endpoint()?)
                .build(),
        )
    }

    fn request(&mut self) -> Option<Request> {
        Some(match self.byte()? % 6 {
            0 => Request::AllowPeer {
                peer: self.peer()?,
                prefixes: self.prefixes()?,
            },
            1 | 2 => Request::Install(self.child_sa()?),
            3 => Request::Delete {
                spi_in: Spi(u32::from(self.byte()? % 17)),
            },
            4 => Request::UpdateEndpoint {
                peer: self.peer()?,
                endpoint: self.endpoint()?,
            },
            _ => {
                // Anything else a controller could send, as it would arrive.
                let len = usize::from(self.byte()?);
                let body = self.take(len)?;
                decode_frame::<Request>(body).ok()?
            }
        })
    }
}

fn overlaps(a: &Ipv6Net, b: &Ipv6Net) -> bool {
    a.contains(b) || b.contains(a)
}

fuzz_target!(|data: &[u8]| {
    let (mut handler, _events) =
        RequestHandler::new(RecordingPlatform::default(), AeadBackend::AwsLc);
    let configured = handler.handle(Request::Configure(InterfaceConfig::for_tests(
        "fuzz0",
        Some(pool()),
    )));
    assert!(configured.is_ok());
    // What AllowPeer granted each peer, as the harness saw it succeed.
    let mut grants: HashMap<PeerId, Vec<Ipv6Net>> = HashMap::new();
    let mut choices = Choices { data };
    while let Some(request) = choices.request() {
        if matches!(
            request,
            Request::Shutdown | Request::Configure(_) | Request::SetPeerPool { .. }
        ) {
            continue;
        }
        let before = handler.sad().counters();
        let routes_before = handler.platform().routes.clone();
        let result = handler.handle(request.clone());
        match (&request, &result) {
            (_, Err(_)) => {
                assert_eq!(
                    handler.sad().counters(),
                    before,
                    "{request:?} refused but changed the SAD"
                );
                assert_eq!(
                    handler.platform().routes,
                    routes_before,
                    "{request:?} refused but changed the routes"
                );
            }
            (Request::AllowPeer { peer, prefixes }, Ok(_)) => {
                assert!(prefixes.iter().all(|p| pool().contains(p)), "{request:?}");
                if prefixes.is_empty() {
                    grants.remove(peer);
                } else {
                    grants.insert(*peer, prefixes.clone());
                }
            }
            (Request::Install(sa), Ok(_)) => {
                let granted = grants.get(&sa.peer).map(Vec::as_slice).unwrap_or_default();
                for ts in &sa.remote_ts {
                    assert!(
                        granted.iter().any(|g| g.contains(ts)),
                        "installed {ts} of {} outside its grant {granted:?}",
                        sa.peer
                    );
                }
            }
            _ => {}
        }
        // A grant refused for lying outside the pool names that as the reason.
        if let (Request::AllowPeer { prefixes, .. }, Err(error)) = (&request, &result) {
            assert!(
                matches!(error, ControlError::GrantOutsidePool { .. }),
                "{error:?}"
            );
            assert!(prefixes.iter().any(|p| !pool().contains(p)));
        }

        let snapshot = handler.sad().load();
        let pairs: Vec<_> = snapshot.pairs().collect();
        for pair in &pairs {
            for ts in pair.remote_ts() {
                assert!(pool().contains(ts), "installed {ts} outside the pool");
            }
        }
        for (i, a) in pairs.iter().enumerate() {
            for b in &pairs[i + 1..] {
                if a.peer() == b.peer() {
                    continue;
                }
                for x in a.remote_ts() {
                    assert!(
                        !b.remote_ts().iter().any(|y| overlaps(x, y)),
                        "{x} of {} overlaps a selector of {}",
                        a.peer(),
                        b.peer()
                    );
                }
            }
        }
        let wanted: BTreeSet<Ipv6Net> = handler.sad().routed_prefixes();
        assert_eq!(handler.platform().routes, wanted, "routes and SAs disagree");
    }
});
