//! The forwarder's side of the SA channel, independent of any transport: a [`RequestHandler`]
//! turns each [`Request`] into a [`Response`] or a [`ControlError`] and changes nothing on error.
//! Events leave through the channel given at construction.
//!
//! What touches the system (TUN device, routes, sockets) sits behind [`Platform`], so tests drive
//! the handler in-process with a [`RecordingPlatform`] and the forwarder process uses the Linux
//! data plane ([`crate::dataplane::LinuxPlatform`]).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use hometun_control::{
    ChildSa, ControlError, Encapsulation, Endpoint, EndpointError, InterfaceConfig, PeerId,
    PlatformError, PlatformOp, Request, Response, RoamingReport, Spi, heap_trim::QuietTrim,
};
use ipnet::Ipv6Net;

use crate::aead::AeadBackend;
use crate::events::{self, EventReceiver, EventSender};
use crate::sad::Sad;

pub use hometun_control::MAX_MTU;

/// What the handler needs from the system. Each error names the operation and carries the OS's
/// own words (and errno), so the controller gets one line that says what failed.
pub trait Platform: Send {
    /// Creates the TUN device and the outer sockets, and starts the data threads on `sad`.
    fn configure(&mut self, config: &InterfaceConfig, sad: &Arc<Sad>) -> Result<(), PlatformError>;
    /// Routes `net` into the TUN device.
    fn add_route(&mut self, net: Ipv6Net) -> Result<(), PlatformError>;
    /// Removes the route for `net`.
    fn remove_route(&mut self, net: Ipv6Net) -> Result<(), PlatformError>;
    /// Sends an IKE message from the UDP socket, with the non-ESP marker.
    fn send_ike(
        &mut self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        data: &[u8],
    ) -> Result<(), PlatformError>;
    /// Removes the TUN device (and with it its routes) and closes the sockets.
    fn shutdown(&mut self);
    /// What the data plane counted about address changes (roaming), once configured.
    fn roaming_report(&self) -> Option<RoamingReport> {
        None
    }
}

/// A platform that touches nothing and records what it was asked, for in-process tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordingPlatform {
    /// The interface it was configured with.
    pub configured: Option<InterfaceConfig>,
    /// Routes currently "installed".
    pub routes: BTreeSet<Ipv6Net>,
    /// IKE messages "sent".
    pub ike_sent: Vec<(SocketAddrV4, SocketAddrV4, Vec<u8>)>,
    /// Whether shutdown was called.
    pub shut_down: bool,
    /// Refuse route additions for this prefix (to test that a failure changes nothing).
    pub fail_route: Option<Ipv6Net>,
}

impl Platform for RecordingPlatform {
    fn configure(
        &mut self,
        config: &InterfaceConfig,
        _sad: &Arc<Sad>,
    ) -> Result<(), PlatformError> {
        self.configured = Some(config.clone());
        Ok(())
    }

    fn add_route(&mut self, net: Ipv6Net) -> Result<(), PlatformError> {
        if self.fail_route == Some(net) {
            return Err(PlatformError::other(
                PlatformOp::AddRoute(net),
                "refused by the test",
            ));
        }
        self.routes.insert(net);
        Ok(())
    }

    fn remove_route(&mut self, net: Ipv6Net) -> Result<(), PlatformError> {
        self.routes.remove(&net);
        Ok(())
    }

    fn send_ike(
        &mut self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        data: &[u8],
    ) -> Result<(), PlatformError> {
        self.ike_sent.push((local, remote, data.to_vec()));
        Ok(())
    }

    fn shutdown(&mut self) {
        self.routes.clear();
        self.shut_down = true;
    }
}

/// Turns requests into responses; owns the SAD and the platform.
pub struct RequestHandler<P: Platform> {
    sad: Arc<Sad>,
    platform: P,
    interface: Option<InterfaceConfig>,
    routes: BTreeSet<Ipv6Net>,
    /// Each peer's prefixes as the controller granted them (`Request::AllowPeer`).
    grants: HashMap<PeerId, Vec<Ipv6Net>>,
    /// Trims the heap once a burst of SA changes is over (hometun_control::heap_trim); the
    /// daemon's counter request every second gives it its turn.
    heap: QuietTrim,
    shut_down: bool,
}

impl<P: Platform> RequestHandler<P> {
    /// A handler with an empty SAD; the events (limits, IKE received, ...) come out of the
    /// returned receiver. `events` is the sender the data threads use as well.
    pub fn new(platform: P, backend: AeadBackend) -> (Self, EventReceiver) {
        let (events, receiver) = events::channel();
        (Self::with_events(platform, backend, events), receiver)
    }

    /// A handler whose events go into an existing channel.
    pub fn with_events(platform: P, backend: AeadBackend, events: EventSender) -> Self {
        RequestHandler {
            sad: Arc::new(Sad::new(events, backend)),
            platform,
            interface: None,
            routes: BTreeSet::new(),
            grants: HashMap::new(),
            heap: QuietTrim::new(),
            shut_down: false,
        }
    }

    /// The SA database (the data threads hold it too).
    pub fn sad(&self) -> &Arc<Sad> {
        &self.sad
    }

    /// The platform (tests look at what was recorded).
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The interface, once configured.
    pub fn interface(&self) -> Option<&InterfaceConfig> {
        self.interface.as_ref()
    }

    /// The roaming counters (moves, refusals by reason, NAs, probes), once configured; the
    /// server's per-peer part also goes out in `Response::Counters`.
    pub fn roaming_report(&self) -> Option<RoamingReport> {
        self.platform.roaming_report()
    }

    /// True after [`Request::Shutdown`]: the caller should exit.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down
    }

    /// How often the heap was trimmed after a burst of changes.
    pub fn heap_trims(&self) -> u64 {
        self.heap.trims()
    }

    /// Handles one request. On error nothing changed.
    pub fn handle(&mut self, request: Request) -> Result<Response, ControlError> {
        if self.shut_down {
            return Err(ControlError::ShuttingDown);
        }
        // The forwarder's time as the ticker last set it.
        let now = Duration::from_millis(self.sad.now().millis());
        self.heap.trim_if_due(now);
        let changes = !matches!(request, Request::GetCounters | Request::SendIke { .. });
        let result = self.dispatch(request);
        if changes && result.is_ok() {
            self.heap.changed(now);
        }
        result
    }

    fn dispatch(&mut self, request: Request) -> Result<Response, ControlError> {
        match request {
            Request::Configure(config) => self.configure(config),
            Request::Install(sa) => self.install(&sa),
            Request::AllowPeer { peer, prefixes } => self.allow_peer(peer, prefixes),
            Request::SetPeerPool { pool } => self.set_peer_pool(pool),
            Request::NamePeer { peer, name } => {
                self.sad.name_peer(peer, name);
                Ok(Response::Ok)
            }
            Request::Delete { spi_in } => {
                let pair = self.sad.delete(spi_in)?;
                self.sync_routes(pair.remote_ts())?;
                Ok(Response::Ok)
            }
            Request::UpdateEndpoint { peer, endpoint } => {
                self.check_endpoint(&endpoint)?;
                self.sad.update_endpoint(peer, endpoint)?;
                Ok(Response::Ok)
            }
            Request::GetCounters => {
                let mut report = self.sad.counters();
                report.roaming = self
                    .platform
                    .roaming_report()
                    .map(|r| r.peers)
                    .unwrap_or_default();
                // Only peers that roamed or tried: the report goes out every second.
                report.roaming.retain(|p| {
                    p.moves + p.nas_accepted + p.probes_sent + p.rebinding_rounds > 0
                        || !p.refusals.is_empty()
                });
                Ok(Response::Counters(report))
            }
            Request::SendIke {
                local,
                remote,
                data,
            } => {
                let interface = self.configured()?;
                if interface.udp_port == 0 || local.port() != interface.udp_port {
                    return Err(ControlError::SendIkePort {
                        port: local.port(),
                        udp_port: interface.udp_port,
                    });
                }
                if data.is_empty() {
                    return Err(ControlError::EmptyIke);
                }
                self.platform.send_ike(local, remote, &data)?;
                Ok(Response::Ok)
            }
            Request::Shutdown => {
                self.shutdown();
                Ok(Response::Ok)
            }
        }
    }

    /// Removes the routes and the device (also on SIGTERM). Idempotent.
    pub fn shutdown(&mut self) {
        if self.shut_down {
            return;
        }
        for net in std::mem::take(&mut self.routes) {
            if let Err(error) = self.platform.remove_route(net) {
                tracing::warn!("removing route {net}: {error}");
            }
        }
        self.platform.shutdown();
        self.shut_down = true;
    }

    fn configured(&self) -> Result<&InterfaceConfig, ControlError> {
        self.interface.as_ref().ok_or(ControlError::NotConfigured)
    }

    fn configure(&mut self, config: InterfaceConfig) -> Result<Response, ControlError> {
        if self.interface.is_some() {
            return Err(ControlError::AlreadyConfigured);
        }
        config.validate()?;
        self.platform.configure(&config, &self.sad)?;
        self.interface = Some(config);
        Ok(Response::Ok)
    }

    fn check_endpoint(&self, endpoint: &Endpoint) -> Result<(), ControlError> {
        let interface = self.configured()?;
        let problem = match endpoint.encap {
            Encapsulation::Raw if !interface.raw_esp => EndpointError::RawEspDisabled,
            Encapsulation::Udp { local_port, .. } if local_port != interface.udp_port => {
                EndpointError::WrongUdpPort {
                    port: local_port,
                    udp_port: interface.udp_port,
                }
            }
            _ => return Ok(()),
        };
        Err(ControlError::BadEndpoint(problem))
    }

    fn allow_peer(
        &mut self,
        peer: PeerId,
        prefixes: Vec<Ipv6Net>,
    ) -> Result<Response, ControlError> {
        let interface = self.configured()?;
        if let Some(pool) = interface.peer_pool
            && let Some(outside) = prefixes.iter().find(|p| !pool.contains(*p))
        {
            return Err(ControlError::GrantOutsidePool {
                peer,
                prefix: *outside,
                pool,
            });
        }
        if prefixes.is_empty() {
            self.grants.remove(&peer);
        } else {
            self.grants.insert(peer, prefixes);
        }
        Ok(Response::Ok)
    }

    /// A new peer pool (`server.pool` changed on reload). An installed pair with a remote
    /// selector outside it is removed, one warning each: the IKE daemon deletes the pairs its
    /// new settings refuse before it sends this, so a pair left outside is one no home may
    /// hold any more (a second check, as at install).
    fn set_peer_pool(&mut self, pool: Option<Ipv6Net>) -> Result<Response, ControlError> {
        self.configured()?;
        if let Some(pool) = pool {
            let outside: Vec<(PeerId, Spi, Ipv6Net)> = self
                .sad
                .load()
                .pairs()
                .filter_map(|p| {
                    let ts = p.remote_ts().iter().find(|t| !pool.contains(*t))?;
                    Some((p.peer(), p.spi_in(), *ts))
                })
                .collect();
            let mut gone = Vec::new();
            for (peer, spi_in, ts) in outside {
                tracing::warn!(
                    "{}: pair {spi_in} removed: its remote selector {ts} is outside the new peer pool {pool}",
                    self.sad.peer_label(peer)
                );
                gone.extend_from_slice(self.sad.delete(spi_in)?.remote_ts());
            }
            self.sync_routes(&gone)?;
        }
        if let Some(interface) = self.interface.as_mut() {
            interface.peer_pool = pool;
        }
        Ok(Response::Ok)
    }

    /// The peer's remote selectors must lie inside its grant, and inside the peer pool: the
    /// forwarder's own check of what the IKE daemon negotiated (a peer must never receive
    /// another's traffic, whatever it answered in a rekey).
    fn check_grant(&self, sa: &ChildSa) -> Result<(), ControlError> {
        let interface = self.configured()?;
        if let Some(pool) = interface.peer_pool
            && let Some(outside) = sa.remote_ts.iter().find(|t| !pool.contains(*t))
        {
            return Err(ControlError::OutsidePool {
                peer: sa.peer,
                remote_ts: *outside,
                pool,
            });
        }
        match self.grants.get(&sa.peer) {
            Some(granted) => {
                if let Some(outside) = sa
                    .remote_ts
                    .iter()
                    .find(|t| !granted.iter().any(|g| g.contains(*t)))
                {
                    return Err(ControlError::OutsideGrant {
                        peer: sa.peer,
                        remote_ts: *outside,
                    });
                }
                Ok(())
            }
            None if interface.peer_pool.is_some() => Err(ControlError::NoGrant(sa.peer)),
            None => Ok(()),
        }
    }

    fn install(&mut self, sa: &ChildSa) -> Result<Response, ControlError> {
        self.check_endpoint(&sa.endpoint)?;
        self.check_grant(sa)?;
        self.sad.install(sa)?;
        if let Err(error) = self.sync_routes(&sa.remote_ts) {
            // Undo, so a refused install changes nothing.
            let _ = self.sad.delete(sa.spi_in);
            let _ = self.sync_routes(&sa.remote_ts);
            return Err(error);
        }
        Ok(Response::Ok)
    }

    /// Makes the routes of `nets`, the prefixes of the pairs that just came or went, match the
    /// SAD (when the interface manages routes): routed while some pair announces them. Only
    /// those prefixes can have changed, so no other is looked at.
    fn sync_routes(&mut self, nets: &[Ipv6Net]) -> Result<(), ControlError> {
        let manage = self.interface.as_ref().is_some_and(|i| i.manage_routes);
        if !manage {
            return Ok(());
        }
        for net in nets.iter().map(Ipv6Net::trunc) {
            let wanted = self.sad.routes(&net);
            if !wanted && self.routes.remove(&net) {
                if let Err(error) = self.platform.remove_route(net) {
                    tracing::warn!("removing route {net}: {error}");
                }
            } else if wanted && !self.routes.contains(&net) {
                self.platform.add_route(net)?;
                self.routes.insert(net);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hometun_control::{AeadAlg, AeadKey, Direction, KeyError, PeerId, Spi};

    use super::*;

    fn interface() -> InterfaceConfig {
        InterfaceConfig::for_tests("hometun0", None)
    }

    fn sa(peer: u64, spi_in: u32, remote: &str) -> ChildSa {
        ChildSa::builder()
            .peer(peer)
            .spis(spi_in, spi_in + 0x1000)
            .remote_ts(&[remote])
            .build()
    }

    fn handler() -> RequestHandler<RecordingPlatform> {
        let (mut handler, _events) =
            RequestHandler::new(RecordingPlatform::default(), AeadBackend::Ring);
        handler.handle(Request::Configure(interface())).unwrap();
        handler
    }

    fn counters(handler: &mut RequestHandler<RecordingPlatform>) -> hometun_control::CounterReport {
        match handler.handle(Request::GetCounters).unwrap() {
            Response::Counters(report) => report,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn install_adds_route_and_delete_removes_it() {
        let mut handler = handler();
        handler
            .handle(Request::Install(sa(1, 0x100, "2001:db8:1::/64")))
            .unwrap();
        assert_eq!(
            handler.platform().routes,
            BTreeSet::from(["2001:db8:1::/64".parse().unwrap()])
        );
        assert_eq!(counters(&mut handler).sas.len(), 1);
        handler
            .handle(Request::Delete { spi_in: Spi(0x100) })
            .unwrap();
        assert!(handler.platform().routes.is_empty());
        assert!(counters(&mut handler).sas.is_empty());
    }

    #[test]
    fn rekeyed_pair_shares_the_route_until_both_are_gone() {
        let mut handler = handler();
        handler
            .handle(Request::Install(sa(1, 0x100, "2001:db8:1::/64")))
            .unwrap();
        handler
            .handle(Request::Install(sa(1, 0x200, "2001:db8:1::/64")))
            .unwrap();
        handler
            .handle(Request::Delete { spi_in: Spi(0x100) })
            .unwrap();
        assert_eq!(handler.platform().routes.len(), 1);
        handler
            .handle(Request::Delete { spi_in: Spi(0x200) })
            .unwrap();
        assert!(handler.platform().routes.is_empty());
    }

    fn refused(handler: &mut RequestHandler<RecordingPlatform>, request: Request) -> ControlError {
        let before = counters(handler);
        let routes = handler.platform().routes.clone();
        let error = handler.handle(request).unwrap_err();
        assert_eq!(
            counters(handler),
            before,
            "a refused request changed the SAD"
        );
        assert_eq!(
            handler.platform().routes,
            routes,
            "a refused request changed routes"
        );
        error
    }

    fn net(text: &str) -> Ipv6Net {
        text.parse().unwrap()
    }

    #[test]
    fn a_server_installs_only_what_it_granted_inside_its_pool() {
        let (mut handler, _events) =
            RequestHandler::new(RecordingPlatform::default(), AeadBackend::AwsLc);
        let mut config = interface();
        let pool = net("2001:db8:100::/48");
        config.peer_pool = Some(pool);
        handler.handle(Request::Configure(config)).unwrap();
        let home = "2001:db8:100:1::/64";

        let error = refused(&mut handler, Request::Install(sa(1, 0x100, home)));
        assert_eq!(error, ControlError::NoGrant(PeerId(1)));
        assert_eq!(
            error.to_string(),
            "peer1 has no grant (AllowPeer must come before its first Install)"
        );

        let error = refused(
            &mut handler,
            Request::AllowPeer {
                peer: PeerId(1),
                prefixes: vec![net("2001:db8:999::/64")],
            },
        );
        assert_eq!(
            error,
            ControlError::GrantOutsidePool {
                peer: PeerId(1),
                prefix: net("2001:db8:999::/64"),
                pool,
            }
        );

        handler
            .handle(Request::AllowPeer {
                peer: PeerId(1),
                prefixes: vec![net(home)],
            })
            .unwrap();
        // Another home's /64 and a wider prefix lie outside the grant, a third prefix outside
        // the pool: each refused as what it is.
        for hostile in ["2001:db8:100:2::/64", "2001:db8:100::/56"] {
            let error = refused(&mut handler, Request::Install(sa(1, 0x200, hostile)));
            assert_eq!(
                error,
                ControlError::OutsideGrant {
                    peer: PeerId(1),
                    remote_ts: net(hostile),
                },
                "{hostile}"
            );
        }
        let error = refused(
            &mut handler,
            Request::Install(sa(1, 0x200, "2001:db8:999::/64")),
        );
        assert_eq!(
            error,
            ControlError::OutsidePool {
                peer: PeerId(1),
                remote_ts: net("2001:db8:999::/64"),
                pool,
            }
        );
        handler
            .handle(Request::Install(sa(1, 0x100, home)))
            .unwrap();
        // A narrower selector inside the grant is fine.
        handler
            .handle(Request::Install(sa(1, 0x300, "2001:db8:100:1:8000::/65")))
            .unwrap();

        // A new pool (a reload): grants outside it are refused from now on.
        handler
            .handle(Request::SetPeerPool {
                pool: Some("2001:db8:200::/48".parse().unwrap()),
            })
            .unwrap();
        let error = refused(
            &mut handler,
            Request::AllowPeer {
                peer: PeerId(2),
                prefixes: vec![home.parse().unwrap()],
            },
        );
        assert!(
            matches!(error, ControlError::GrantOutsidePool { .. }),
            "{error}"
        );
        handler
            .handle(Request::SetPeerPool {
                pool: Some("2001:db8:100::/48".parse().unwrap()),
            })
            .unwrap();

        // Withdrawn: later installs are refused, the installed pairs stay until deleted.
        handler
            .handle(Request::AllowPeer {
                peer: PeerId(1),
                prefixes: Vec::new(),
            })
            .unwrap();
        let error = refused(&mut handler, Request::Install(sa(1, 0x400, home)));
        assert_eq!(error, ControlError::NoGrant(PeerId(1)));
    }

    /// A reload that narrows `server.pool`: the installed pairs outside the new pool go (and
    /// their routes), those inside stay.
    #[test]
    fn a_narrower_pool_removes_the_pairs_outside_it() {
        let (mut handler, _events) =
            RequestHandler::new(RecordingPlatform::default(), AeadBackend::AwsLc);
        let mut config = interface();
        config.peer_pool = Some(net("2001:db8:100::/47"));
        handler.handle(Request::Configure(config)).unwrap();
        for (peer, spi, home) in [
            (1, 0x100, "2001:db8:100:1::/64"),
            (2, 0x200, "2001:db8:101:1::/64"),
        ] {
            handler
                .handle(Request::AllowPeer {
                    peer: PeerId(peer),
                    prefixes: vec![net(home)],
                })
                .unwrap();
            handler
                .handle(Request::Install(sa(peer, spi, home)))
                .unwrap();
        }
        handler
            .handle(Request::SetPeerPool {
                pool: Some(net("2001:db8:100::/48")),
            })
            .unwrap();
        let left: Vec<Spi> = counters(&mut handler)
            .sas
            .iter()
            .map(|c| c.spi_in)
            .collect();
        assert_eq!(left, [Spi(0x100)]);
        assert_eq!(
            handler.platform().routes,
            BTreeSet::from([net("2001:db8:100:1::/64")])
        );
        // The pool widened again: nothing comes back, nothing else goes.
        handler
            .handle(Request::SetPeerPool {
                pool: Some(net("2001:db8:100::/47")),
            })
            .unwrap();
        assert_eq!(counters(&mut handler).sas.len(), 1);
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason_and_change_nothing() {
        let mut handler = handler();
        handler
            .handle(Request::Install(sa(1, 0x100, "2001:db8:1::/64")))
            .unwrap();

        let mut zero = sa(2, 0, "2001:db8:2::/64");
        zero.spi_in = Spi(0);
        assert_eq!(
            refused(&mut handler, Request::Install(zero)),
            ControlError::ZeroSpi(Direction::Inbound)
        );

        let duplicate = sa(2, 0x100, "2001:db8:2::/64");
        assert_eq!(
            refused(&mut handler, Request::Install(duplicate)),
            ControlError::SpiInUse(Spi(0x100))
        );

        let overlapping = sa(2, 0x300, "2001:db8:1::/48");
        assert_eq!(
            refused(&mut handler, Request::Install(overlapping)),
            ControlError::SelectorOverlap {
                remote_ts: net("2001:db8:1::/48"),
                theirs: net("2001:db8:1::/64"),
                peer: PeerId(1),
                spi: Spi(0x100),
            }
        );

        // A short key cannot be made through from_keymat: decode one as a hostile controller
        // could send it (postcard: algorithm variant, key length, key bytes, 4-byte salt).
        let mut short = sa(2, 0x400, "2001:db8:2::/64");
        let mut forged = vec![0u8, 10];
        forged.extend([7u8; 10]);
        forged.extend([1u8; 4]);
        let key: AeadKey = hometun_control::decode_frame(&forged).unwrap();
        short.key_in = key;
        let error = refused(&mut handler, Request::Install(short));
        assert_eq!(
            error,
            ControlError::BadKey {
                direction: Direction::Inbound,
                error: KeyError::WrongLength {
                    alg: AeadAlg::AesGcm128,
                    expected: 20,
                    got: 14,
                },
            }
        );
        assert!(
            error
                .to_string()
                .starts_with("key_in: aes128gcm16 needs 20 bytes"),
            "{error}"
        );

        let mut udp = sa(2, 0x500, "2001:db8:2::/64");
        udp.endpoint.encap = Encapsulation::Udp {
            local_port: 4501,
            remote_port: 4500,
        };
        assert_eq!(
            refused(&mut handler, Request::Install(udp)),
            ControlError::BadEndpoint(EndpointError::WrongUdpPort {
                port: 4501,
                udp_port: 4500
            })
        );

        assert_eq!(
            refused(&mut handler, Request::Delete { spi_in: Spi(0x999) }),
            ControlError::UnknownSpi(Spi(0x999))
        );
        assert_eq!(
            refused(&mut handler, Request::Configure(interface())),
            ControlError::AlreadyConfigured
        );
    }

    #[test]
    fn failed_route_rolls_the_install_back() {
        let (mut handler, _events) = RequestHandler::new(
            RecordingPlatform {
                fail_route: Some(net("2001:db8:9::/64")),
                ..RecordingPlatform::default()
            },
            AeadBackend::Ring,
        );
        handler.handle(Request::Configure(interface())).unwrap();
        let error = handler
            .handle(Request::Install(sa(1, 0x100, "2001:db8:9::/64")))
            .unwrap_err();
        assert!(
            matches!(
                &error,
                ControlError::Platform(PlatformError { operation: PlatformOp::AddRoute(n), .. })
                    if *n == net("2001:db8:9::/64")
            ),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "route 2001:db8:9::/64: refused by the test"
        );
        assert!(counters(&mut handler).sas.is_empty());
        // The SPI is free again.
        handler
            .handle(Request::Install(sa(1, 0x100, "2001:db8:1::/64")))
            .unwrap();
    }

    #[test]
    fn requests_before_configure_are_refused() {
        let (mut handler, _events) =
            RequestHandler::new(RecordingPlatform::default(), AeadBackend::Ring);
        let error = handler
            .handle(Request::Install(sa(1, 0x100, "2001:db8:1::/64")))
            .unwrap_err();
        assert_eq!(error, ControlError::NotConfigured);
        let mut bad = interface();
        bad.mtu = 1000;
        assert_eq!(
            handler.handle(Request::Configure(bad)).unwrap_err(),
            ControlError::BadMtu {
                mtu: 1000,
                max: MAX_MTU
            }
        );
    }

    #[test]
    fn send_ike_goes_through_the_platform_from_the_udp_port() {
        let mut handler = handler();
        let local: SocketAddrV4 = "192.0.2.1:4500".parse().unwrap();
        let remote: SocketAddrV4 = "192.0.2.2:4500".parse().unwrap();
        handler
            .handle(Request::SendIke {
                local,
                remote,
                data: vec![1, 2, 3],
            })
            .unwrap();
        assert_eq!(
            handler.platform().ike_sent,
            vec![(local, remote, vec![1, 2, 3])]
        );
        let wrong: SocketAddrV4 = "192.0.2.1:500".parse().unwrap();
        assert_eq!(
            handler.handle(Request::SendIke {
                local: wrong,
                remote,
                data: vec![1],
            }),
            Err(ControlError::SendIkePort {
                port: 500,
                udp_port: 4500
            })
        );
    }

    #[test]
    fn shutdown_removes_routes_and_refuses_more() {
        let mut handler = handler();
        handler
            .handle(Request::Install(sa(1, 0x100, "2001:db8:1::/64")))
            .unwrap();
        assert_eq!(handler.handle(Request::Shutdown).unwrap(), Response::Ok);
        assert!(handler.is_shut_down());
        assert!(handler.platform().shut_down);
        assert!(handler.platform().routes.is_empty());
        assert_eq!(
            handler.handle(Request::GetCounters),
            Err(ControlError::ShuttingDown)
        );
    }

    #[test]
    fn a_flood_of_ike_messages_is_bounded_and_counted_in_the_report() {
        let (mut handler, events) =
            RequestHandler::new(RecordingPlatform::default(), AeadBackend::Ring);
        handler.handle(Request::Configure(interface())).unwrap();
        let data_path = handler.sad().events();
        let ike = hometun_control::Event::IkeReceived {
            local: "192.0.2.1:4500".parse().unwrap(),
            remote: "198.51.100.7:4500".parse().unwrap(),
            data: vec![0x21; 100],
        };
        for _ in 0..crate::events::IKE_CAPACITY + 10 {
            data_path.send(ike.clone());
        }
        let exhausted = hometun_control::Event::SeqExhausted {
            peer: PeerId(1),
            spi_in: Spi(0x100),
        };
        data_path.send(exhausted.clone());
        assert_eq!(counters(&mut handler).events_dropped, 10);
        let waiting: Vec<_> = events.try_iter().collect();
        assert_eq!(waiting.len(), crate::events::IKE_CAPACITY + 1);
        assert_eq!(waiting[0], exhausted, "the limit event was not kept");
        assert!(waiting[1..].iter().all(|e| *e == ike));
    }

    #[test]
    fn update_endpoint_moves_the_peer() {
        let mut handler = handler();
        handler
            .handle(Request::Install(sa(1, 0x100, "2001:db8:1::/64")))
            .unwrap();
        let moved = Endpoint {
            local: Ipv4Addr::new(192, 0, 2, 1),
            remote: Ipv4Addr::new(198, 51, 100, 7),
            encap: Encapsulation::Udp {
                local_port: 4500,
                remote_port: 40000,
            },
        };
        handler
            .handle(Request::UpdateEndpoint {
                peer: PeerId(1),
                endpoint: moved,
            })
            .unwrap();
        assert_eq!(counters(&mut handler).sas[0].endpoint, moved);
        let route = handler
            .sad()
            .load()
            .outbound("2001:db8:1::5".parse().unwrap())
            .map(|o| o.endpoint);
        assert_eq!(route, Some(moved));
        assert_eq!(
            handler.handle(Request::UpdateEndpoint {
                peer: PeerId(9),
                endpoint: moved,
            }),
            Err(ControlError::UnknownPeer(PeerId(9)))
        );
    }

    /// A burst of installs is followed by one heap trim, at the first request once the SA
    /// channel has been quiet for heap_trim::QUIET on the forwarder's clock; counter requests
    /// are no change.
    #[test]
    fn a_burst_of_installs_is_trimmed_once_quiet() {
        let mut handler = handler();
        let at = |handler: &RequestHandler<RecordingPlatform>, seconds: u64| {
            handler.sad().set_now(crate::clock::Now::from_secs(seconds));
        };
        // The Configure at 0 s was a change too: its trim comes with the first request 5 s on.
        at(&handler, 10);
        counters(&mut handler);
        assert_eq!(handler.heap_trims(), 1);
        // A minute and more later (heap_trim::MIN_INTERVAL), a burst.
        at(&handler, 100);
        for i in 0..20u32 {
            handler
                .handle(Request::Install(sa(
                    u64::from(i) + 1,
                    0x100 + i,
                    &format!("2001:db8:{i:x}::/64"),
                )))
                .unwrap();
        }
        for seconds in 101..105 {
            at(&handler, seconds);
            counters(&mut handler);
        }
        assert_eq!(handler.heap_trims(), 1, "4 s after the burst");
        at(&handler, 105);
        counters(&mut handler);
        assert_eq!(handler.heap_trims(), 2, "5 s after the burst");
        for seconds in 106..300 {
            at(&handler, seconds);
            counters(&mut handler);
        }
        assert_eq!(handler.heap_trims(), 2, "counter requests are no change");
    }
}
