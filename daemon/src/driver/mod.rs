//! The tokio driver: one task that owns the sans-IO [`Endpoint`] and connects it to the world.
//!
//! It holds the UDP socket on the IKE port (500), the forwarder (a child process, or one
//! already running at `forwarder_socket`; it owns the TUN device and the NAT-T port 4500, and
//! relays IKE messages that arrive there), the status socket, the signals and the clock. Each input goes into the endpoint through a `handle_*`
//! call; after each, everything the endpoint queued is carried out in order: IKE messages are
//! sent (from port 4500 through the forwarder, otherwise from our socket) and forwarder requests
//! are sent. Their answers are awaited alongside everything else (the forwarder carries requests
//! out in the order they were sent): the loop goes on with the next IKE message meanwhile, and
//! many requests share one wake-up of the forwarder. A server's key derivation after IKE_SA_INIT
//! and its IKE_AUTH signature work run as jobs, on worker threads while the driver has other
//! work ([`workers`]), their results taken in the same loop.

mod forwarder_requests;
mod forwarder_start;
pub mod icmp;
mod operations;
mod optional;
pub mod workers;

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use hometun_control::{Event, InterfaceConfig, Request, Response};
use tokio::net::UdpSocket;
use tokio::process::Child;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::clock::{BatchedOsRandom, now};
use crate::forwarder_link::{ForwarderLink, LinkError};
use crate::operator::CommandRequest;
use crate::peers_up::PeersUp;
use crate::reload::ConfigReloader;
use crate::site::{Site, SitePlan};
use crate::status::{StatusReport, StatusRequest};
use forwarder_requests::{HeldLine, InFlight, InstallOf, forwarder_gone};
pub use forwarder_start::ForwarderSource;
use forwarder_start::open_configured_forwarder;
use hometun_ike::endpoint::{Endpoint, InitiatorConfig, Output, ResponderConfig, Transmit};
use hometun_ike::notice::{Level, Notice};
use optional::{child_exit, home_lost, renewal_due, renewal_result};

/// How often the forwarder's counters are fetched (liveness, make-before-break, status).
const COUNTER_INTERVAL: Duration = Duration::from_secs(1);
/// IKE messages from port 4500 kept while a forwarder request is awaited; more are dropped
/// (a flood must not grow memory without bound; IKE retransmits what matters).
const MAX_BUFFERED_IKE: usize = 4096;
/// How long the forwarder gets to stop on its own before it is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a stopping daemon waits for its peers to answer the DELETEs of their IKE SAs:
/// an answered DELETE lets the peer know at once, and the tries within it (retransmissions
/// from `ike.retransmit_ms`) get past a lost datagram. A restart costs at most this.
const DELETE_WAIT: Duration = Duration::from_secs(2);
/// Forwarder requests sent and not yet answered; at this many the loop waits for the oldest.
const MAX_IN_FLIGHT: usize = 256;

/// Which side the endpoint plays.
pub enum Role {
    /// The server: answers IKE_SA_INIT from any client.
    Responder(ResponderConfig),
    /// The client: connects to its server at once.
    Initiator(InitiatorConfig),
}

/// Everything the driver needs besides the endpoint's own configuration.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// `server` or `client`, for logs and status.
    pub role_name: &'static str,
    /// Our IKE identity, for logs and status.
    pub identity: String,
    /// Where the IKE socket binds: the server's address, or any address on the client.
    pub ike_bind: SocketAddrV4,
    /// Our outer address (what an unspecified bind address stands for).
    pub local_addr: Ipv4Addr,
    /// The NAT-T port, owned by the forwarder: IKE messages from it go through `SendIke`.
    pub nat_port: u16,
    /// The forwarder's interface: TUN, addresses, sockets, routes.
    pub interface: InterfaceConfig,
    /// Where the forwarder comes from: a child we start, or one already running.
    pub forwarder: ForwarderSource,
    /// The status socket (`control_socket` in the config), served by the driver's caller.
    pub status_socket: PathBuf,
    /// Where the driver's caller serves Prometheus metrics (`server.metrics` /
    /// `client.metrics`), if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Reads the configuration again on SIGHUP (none: SIGHUP is logged and ignored).
    pub reloader: Option<ConfigReloader>,
    /// The client's configuration file, whose certificate it renews before it expires
    /// (`None` on a server).
    pub renewal: Option<PathBuf>,
    /// The server's state directory, where it keeps the peers that are up across a restart
    /// (`None` on a client).
    pub peers_up: Option<PathBuf>,
    /// What to set up around the tunnel: the home's LANs or the VPS's upstream.
    pub site: SitePlan,
    /// The peers status lists before they are seen (configured and enrolled homes, or the
    /// client's server).
    pub known_peers: crate::homes::KnownPeers,
    /// A server's registry of which server holds each home (`None`: a client, or a server
    /// without a registry).
    pub holders: Option<crate::holders::HolderRegistry>,
}

/// What the driver answers besides IKE: the requests of the status socket and the metrics
/// endpoint, which its caller serves (`setup`), and the operator's commands.
#[derive(Debug)]
pub struct Requests {
    /// Status reports asked for (by the status socket and by metrics).
    pub status: mpsc::Receiver<StatusRequest>,
    /// The operator's commands from the status socket.
    pub commands: mpsc::Receiver<CommandRequest>,
}

/// Runs a daemon until SIGTERM or SIGINT (then it deletes its IKE SAs, stops the forwarder and
/// returns `Ok`), or until the forwarder dies (an error: never run half-blind).
pub async fn run(config: DriverConfig, role: Role, requests: Requests) -> anyhow::Result<()> {
    run_with_registry(config, role, requests, None).await
}

/// [`run`] for a server with a shared registry, whose revocations it applies as they come.
pub async fn run_with_registry(
    config: DriverConfig,
    role: Role,
    requests: Requests,
    registry: Option<crate::registry_watch::RegistryWatch>,
) -> anyhow::Result<()> {
    let started = now();
    let udp = crate::port_wait::bind("IKE socket", || {
        UdpSocket::bind(SocketAddr::V4(config.ike_bind))
    })
    .await
    .with_context(|| format!("cannot bind the IKE socket {}", config.ike_bind))?;
    widen_receive_buffer(&udp);
    let server = match &role {
        Role::Initiator(c) => Some(c.server),
        Role::Responder(_) => None,
    };
    if server.is_some()
        && let Err(error) = icmp::report_errors(&udp)
    {
        // Without it the client only backs off more slowly when its server is not up yet.
        tracing::debug!("IKE socket: IP_RECVERR: {error}");
    }
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("SIGHUP handler")?;

    let (link, events, child) =
        open_configured_forwarder(&config.forwarder, &config.interface).await?;
    let site = Site::start(&config.site);
    let forwarder = match (&child, &config.forwarder) {
        (_, ForwarderSource::Connect(path)) => format!("forwarder at {}", path.display()),
        (Some(child), _) => format!("forwarder pid {}", child.id().unwrap_or(0)),
        (None, _) => "forwarder".to_string(),
    };
    tracing::info!(
        "{} {}: IKE on {}, {forwarder} with {} (mtu {})",
        config.role_name,
        config.identity,
        udp.local_addr()?,
        config.interface.tun_name,
        config.interface.mtu
    );

    let mut rng = BatchedOsRandom::new();
    let (done_tx, crypto_done) = mpsc::unbounded_channel();
    let (mut endpoint, workers) = match role {
        Role::Responder(c) => {
            let mut endpoint = Endpoint::responder(c, now(), &mut rng);
            // X25519 and key derivation, signatures and certificate checks as jobs, on the
            // other cores while the driver has other work (workers::default_count; none on a
            // single core).
            endpoint.defer_crypto(true);
            let workers = match workers::default_count() {
                0 => None,
                count => Some(
                    workers::Workers::start(count, done_tx)
                        .context("starting the IKE worker threads")?,
                ),
            };
            (endpoint, workers)
        }
        Role::Initiator(c) => (Endpoint::initiator(c, now(), &mut rng), None),
    };
    let peers_up = config.peers_up.as_deref().map(PeersUp::new);
    if let Some(record) = &peers_up {
        // A previous run that did not stop cleanly left its peers: they still send with SAs we
        // no longer have. The first flush tells them.
        let previous = record.read_previous();
        if !previous.is_empty() {
            endpoint.send_restart_hints(now(), &previous);
        }
    }
    let (renewal, renewal_results) = match config.renewal.clone() {
        Some(path) => {
            let (timer, results) = crate::renewal::RenewalTimer::new(path);
            (Some(timer), Some(results))
        }
        None => (None, None),
    };
    let holders = config
        .holders
        .clone()
        .map(crate::holders::HomeHolders::start);
    let mut driver = Driver {
        endpoint,
        holders,
        link,
        child,
        events,
        events_open: true,
        backlog: VecDeque::new(),
        udp,
        rng,
        renewal,
        renewal_results,
        peers_up,
        site,
        homes: crate::homes::Homes::new(config.known_peers.clone()),
        refusals: crate::refusals::RefusalLog::default(),
        crl: config
            .reloader
            .as_ref()
            .and_then(|r| r.crl())
            .map(crate::crl_watch::FileWatch::new),
        config,
        started,
        server,
        registry,
        in_flight: VecDeque::new(),
        heap: hometun_control::heap_trim::QuietTrim::new(),
        workers,
        crypto_done,
        closing_until: None,
        up_at_close: Vec::new(),
    };
    let outcome = driver
        .serve(
            requests.status,
            requests.commands,
            &mut sigterm,
            &mut sigint,
            &mut sighup,
        )
        .await;
    match outcome {
        Ok(()) => {
            driver.shut_down().await;
            Ok(())
        }
        Err(error) => {
            driver.site.stop().await;
            // Whatever failed, leave no forwarder (and so no TUN or route) behind. A forwarder
            // we did not start stops when our end of the channel closes.
            if let Some(child) = driver.child.as_mut() {
                let _ = child.start_kill();
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, child.wait()).await;
            }
            Err(error)
        }
    }
}

/// What woke the loop.
enum Wake {
    Datagram(usize, SocketAddr),
    CryptoDone(Box<hometun_ike::sa::crypto_job::CryptoDone>),
    Answer(Result<hometun_control::Response, LinkError>),
    Event(Event),
    Counters,
    Timer,
    Status(StatusRequest),
    Command(CommandRequest),
    Stop(&'static str),
    Reload,
    RenewalDue,
    CrlCheck,
    Registry(hometun_pki::registry::RegistryEvent),
    Renewed(crate::renewal::RenewalResult),
    ForwarderExited(std::io::Result<std::process::ExitStatus>),
    EventsClosed,
    HomeLost(crate::holders::Lost),
}

/// Whether the loop goes on after a wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

struct Driver {
    endpoint: Endpoint,
    link: ForwarderLink,
    /// The forwarder process, if we started it.
    child: Option<Child>,
    events: mpsc::Receiver<Event>,
    events_open: bool,
    /// Events that arrived while a forwarder request was awaited.
    backlog: VecDeque<Event>,
    udp: UdpSocket,
    rng: BatchedOsRandom,
    config: DriverConfig,
    started: hometun_ike::endpoint::Now,
    renewal: Option<crate::renewal::RenewalTimer>,
    renewal_results: Option<mpsc::Receiver<crate::renewal::RenewalResult>>,
    /// The server's record of the peers that are up.
    peers_up: Option<PeersUp>,
    /// A client's server (IKE address and port); `None` on a server.
    server: Option<SocketAddrV4>,
    /// A server's CRL file, looked at every few seconds.
    crl: Option<crate::crl_watch::FileWatch>,
    /// A server's shared registry: revocations as they are committed.
    registry: Option<crate::registry_watch::RegistryWatch>,
    /// The home's LANs or the VPS's upstream.
    site: Site,
    /// Every peer known, up or down, with its traffic totals.
    homes: crate::homes::Homes,
    /// A server's claims of its homes in the registry, and the homes other servers took.
    holders: Option<crate::holders::HomeHolders>,
    /// Refusals already logged at warn (repeats go to debug).
    refusals: crate::refusals::RefusalLog,
    /// Forwarder requests sent and not yet answered, oldest first.
    in_flight: VecDeque<InFlight>,
    /// Trims the heap once a burst of SA changes is over (hometun_control::heap_trim).
    heap: hometun_control::heap_trim::QuietTrim,
    /// The server's worker threads for key derivation and IKE_AUTH signature work, and their
    /// results.
    workers: Option<workers::Workers>,
    crypto_done: mpsc::UnboundedReceiver<hometun_ike::sa::crypto_job::CryptoDone>,
    /// Stopping: the DELETEs of our IKE SAs are out, and their answers are awaited until then.
    closing_until: Option<std::time::Instant>,
    /// Stopping: the peers that were up when the DELETEs went out (a peer whose DELETE stays
    /// unanswered stays in `peers-up.json`).
    up_at_close: Vec<hometun_ike::endpoint::RestartHint>,
}

impl Driver {
    async fn serve(
        &mut self,
        mut status_rx: mpsc::Receiver<StatusRequest>,
        mut command_rx: mpsc::Receiver<CommandRequest>,
        sigterm: &mut tokio::signal::unix::Signal,
        sigint: &mut tokio::signal::unix::Signal,
        sighup: &mut tokio::signal::unix::Signal,
    ) -> anyhow::Result<()> {
        let mut buf = vec![0u8; 65536];
        let mut tick = tokio::time::interval(COUNTER_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut crl_tick = tokio::time::interval(crate::crl_watch::CHECK_PERIOD);
        crl_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The initiator queued its IKE_SA_INIT when it was made.
        self.flush().await?;
        loop {
            while let Some(event) = self.backlog.pop_front() {
                self.on_event(event);
                self.flush().await?;
            }
            if let Some(until) = self.closing_until
                && (self.endpoint.is_closed() || now().mono >= until)
            {
                return Ok(());
            }
            let deadline = [self.endpoint.poll_timeout(), self.closing_until]
                .into_iter()
                .flatten()
                .min();
            let timer = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let events_open = self.events_open;
            let answer = async {
                match self.in_flight.front_mut() {
                    Some(oldest) => (&mut oldest.reply).await,
                    None => std::future::pending().await,
                }
            };
            let wake = tokio::select! {
                answer = answer => Wake::Answer(answer),
                Some(done) = self.crypto_done.recv() => Wake::CryptoDone(Box::new(done)),
                received = self.udp.recv_from(&mut buf) => match received {
                    Ok((n, from)) => Wake::Datagram(n, from),
                    Err(error) => {
                        self.udp_error(error);
                        continue;
                    }
                },
                event = self.events.recv(), if events_open => match event {
                    Some(event) => Wake::Event(event),
                    None => Wake::EventsClosed,
                },
                _ = tick.tick() => Wake::Counters,
                _ = crl_tick.tick(), if self.crl.is_some() => Wake::CrlCheck,
                Some(event) = crate::registry_watch::next_event(&mut self.registry) => Wake::Registry(event),
                () = timer => Wake::Timer,
                Some(request) = status_rx.recv() => Wake::Status(request),
                Some(request) = command_rx.recv() => Wake::Command(request),
                _ = sigterm.recv() => Wake::Stop("SIGTERM"),
                _ = sigint.recv() => Wake::Stop("SIGINT"),
                _ = sighup.recv() => Wake::Reload,
                status = child_exit(&mut self.child) => Wake::ForwarderExited(status),
                () = renewal_due(&self.renewal) => Wake::RenewalDue,
                Some(result) = renewal_result(&mut self.renewal_results) => Wake::Renewed(result),
                lost = home_lost(&mut self.holders) => Wake::HomeLost(lost),
            };
            if self.on_wake(wake, &buf).await? == Flow::Stop {
                return Ok(());
            }
            self.flush().await?;
        }
    }

    /// What the loop does for what woke it: `Flow::Stop` when the daemon is done (a second
    /// signal while stopping); errors end the daemon (the forwarder is gone, a request failed).
    async fn on_wake(&mut self, wake: Wake, buf: &[u8]) -> anyhow::Result<Flow> {
        match wake {
            Wake::Datagram(n, from) => self.datagram(&buf[..n], from),
            Wake::CryptoDone(done) => {
                if let Some(workers) = &mut self.workers {
                    workers.finished();
                }
                self.endpoint
                    .handle_crypto_done(now(), *done, &mut self.rng);
            }
            Wake::Answer(answer) => {
                if let Some(request) = self.in_flight.pop_front() {
                    self.answered(request, answer).await?;
                }
            }
            Wake::Event(event) => self.on_event(event),
            Wake::Counters => {
                self.site.tick().await;
                self.fetch_counters().await?;
                self.heap.trim_if_due(self.uptime());
            }
            Wake::Timer => self.endpoint.handle_timeout(now(), &mut self.rng),
            Wake::Status(reply) => {
                // Fresh counters: what status shows must include an SA installed a moment ago.
                let counters = self.fetch_counters().await?;
                let _ = reply.send(self.status_json(counters));
            }
            Wake::Command(request) => {
                let answer = self.command(request.command);
                let _ = request.reply.send(answer);
            }
            Wake::Stop(signal) => {
                if self.closing_until.is_some() {
                    tracing::info!("{signal} again: stopping without waiting for the peers");
                    return Ok(Flow::Stop);
                }
                tracing::info!("{signal}: deleting the IKE SAs and stopping");
                self.up_at_close = self.endpoint.restart_hints();
                self.endpoint.close(now(), &mut self.rng);
                self.closing_until = Some(now().mono + DELETE_WAIT);
            }
            Wake::Reload if self.closing_until.is_some() => {
                tracing::info!("SIGHUP while stopping: not reloaded");
            }
            Wake::Reload => self.reload("SIGHUP").await?,
            Wake::Registry(event) => self.registry_event(event).await?,
            Wake::CrlCheck => {
                let changed = self.crl.as_mut().is_some_and(|watch| watch.changed());
                if changed {
                    let why = match &self.crl {
                        Some(watch) => format!("{} changed", watch.path().display()),
                        None => "the CRL changed".to_string(),
                    };
                    self.reload(&why).await?;
                }
            }
            Wake::RenewalDue => {
                if let Some(timer) = self.renewal.as_mut() {
                    timer.look();
                }
            }
            Wake::Renewed(result) => {
                let renewed = self
                    .renewal
                    .as_mut()
                    .is_some_and(|timer| timer.finished(result));
                // Stopping, the new files are read at the next start.
                if renewed && self.closing_until.is_none() {
                    // The new certificate and key, read like a SIGHUP reload: the endpoint
                    // re-authenticates with them before the old IKE SA goes.
                    self.reload("renewed certificate").await?;
                }
            }
            Wake::HomeLost(lost) => self.home_lost(lost),
            Wake::ForwarderExited(status) => return Err(forwarder_gone(Some(status))),
            Wake::EventsClosed => {
                self.events_open = false;
                return Err(self.forwarder_gone().await);
            }
        }
        Ok(Flow::Continue)
    }

    /// An IKE message arrived on our UDP socket.
    fn datagram(&mut self, bytes: &[u8], from: SocketAddr) {
        let SocketAddr::V4(remote) = from else {
            return;
        };
        let local = SocketAddrV4::new(
            self.local_ip(*self.config.ike_bind.ip()),
            self.config.ike_bind.port(),
        );
        self.endpoint
            .handle_datagram(now(), local, remote, bytes, &mut self.rng);
    }

    /// Reading the UDP socket failed: ICMP errors surface here on Linux, and the socket stays
    /// usable. A client reads which of its requests met a port unreachable.
    fn udp_error(&mut self, error: std::io::Error) {
        tracing::debug!("IKE socket: {error}");
        if self.server.is_some() {
            for destination in icmp::port_unreachable(&self.udp) {
                self.endpoint.handle_unreachable(now(), destination);
            }
        }
    }

    /// An unspecified address (a socket bound to any) stands for our outer address.
    fn local_ip(&self, ip: Ipv4Addr) -> Ipv4Addr {
        if ip.is_unspecified() {
            self.config.local_addr
        } else {
            ip
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::IkeReceived {
                local,
                remote,
                data,
            } => {
                let local = SocketAddrV4::new(self.local_ip(*local.ip()), local.port());
                self.endpoint
                    .handle_datagram(now(), local, remote, &data, &mut self.rng);
            }
            Event::NetworkChanged => self.network_changed(),
            Event::TunnelRecreated => self.site.tunnel_recreated(),
            other => {
                if let Event::EndpointMoved { old, new, .. } = &other
                    && old.local != new.local
                {
                    // Our own address changed (the client's forwarder follows it): what an
                    // unspecified bind address stands for changes with it.
                    // The forwarder logged the move at info; this is detail.
                    tracing::debug!("our outer address moved: {} -> {}", old.local, new.local);
                    self.config.local_addr = new.local;
                    self.endpoint
                        .handle_local_address(now(), new.local, &mut self.rng);
                }
                tracing::debug!("forwarder: {other:?}");
                self.endpoint
                    .handle_forwarder_event(now(), &other, &mut self.rng);
            }
        }
    }

    /// Reads the forwarder's counters (every second, and for each status request) and hands
    /// them to the endpoint and the book of homes. The report is returned, not kept: with a
    /// thousand homes it is a quarter of a megabyte, and only a status request needs it
    /// (bench/README.md, "memory.sh").
    async fn fetch_counters(&mut self) -> anyhow::Result<Option<hometun_control::CounterReport>> {
        let mut counters = None;
        if let Some(Response::Counters(report)) = self.forward(Request::GetCounters).await? {
            self.endpoint.handle_counters(now(), &report, &mut self.rng);
            let names: std::collections::HashMap<_, _> = self.endpoint.peer_names().collect();
            self.homes.observe(&report, &names, now().wall);
            counters = Some(report);
        }
        if let Some(record) = &mut self.peers_up {
            record.record(self.endpoint.restart_hints());
        }
        Ok(counters)
    }

    fn status_json(&self, counters: Option<hometun_control::CounterReport>) -> String {
        let at = now();
        let peers = self.endpoint.status(at);
        let homes = self.homes.status(&peers);
        let report = StatusReport {
            role: self.config.role_name.to_string(),
            identity: self.config.identity.clone(),
            local: self.config.local_addr,
            interface: self.config.interface.tun_name.clone(),
            uptime_seconds: at
                .mono
                .saturating_duration_since(self.started.mono)
                .as_secs(),
            peers,
            endpoint: self.endpoint.counters(),
            counters,
            homes,
            time: at
                .wall
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        match serde_json::to_string_pretty(&report) {
            Ok(text) => text + "\n",
            Err(error) => format!("{}\n", serde_json::json!({ "error": error.to_string() })),
        }
    }

    /// Whether the driver has other work waiting right now (an event put back, a crypto
    /// result, an IKE datagram), which it can do while a worker runs a job. The peek leaves
    /// the datagram queued, and takes no error: only a client's socket reports ICMP errors
    /// (`icmp::report_errors`), and only a server hands jobs out.
    fn other_work_waiting(&self) -> bool {
        !self.backlog.is_empty()
            || !self.crypto_done.is_empty()
            || self.udp.try_peek_sender().is_ok()
    }

    /// Carries out everything the endpoint queued: crypto jobs (handed to a worker, or run
    /// here once the messages before them are out), IKE messages, then forwarder requests and
    /// log lines, in order.
    async fn flush(&mut self) -> anyhow::Result<()> {
        loop {
            let mut progressed = false;
            let jobs: Vec<_> = std::iter::from_fn(|| self.endpoint.poll_crypto_job()).collect();
            let mut here = Vec::new();
            if !jobs.is_empty() {
                progressed = true;
                // Looked at only when a worker could take a job.
                let waiting = self.workers.as_ref().is_some_and(|w| w.takes_job(true))
                    && self.other_work_waiting();
                let last = jobs.len() - 1;
                for (i, job) in jobs.into_iter().enumerate() {
                    // A later job of this flush is work for the driver too.
                    let job = match &mut self.workers {
                        Some(workers) if workers.takes_job(waiting || i < last) => {
                            workers.run(job).err()
                        }
                        _ => Some(job),
                    };
                    here.extend(job);
                }
            }
            while let Some(transmit) = self.endpoint.poll_transmit() {
                progressed = true;
                self.send(transmit).await?;
            }
            for job in here {
                self.endpoint
                    .handle_crypto_done(now(), job.run(), &mut self.rng);
            }
            while let Some(output) = self.endpoint.poll_output() {
                progressed = true;
                self.output(output).await?;
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    async fn send(&mut self, transmit: Transmit) -> anyhow::Result<()> {
        if transmit.local.port() == self.config.nat_port {
            self.send_request(Request::SendIke {
                local: transmit.local,
                remote: transmit.remote,
                data: transmit.data,
            })
            .await?;
        } else if let Err(error) = self
            .udp
            .send_to(&transmit.data, SocketAddr::V4(transmit.remote))
            .await
        {
            // The network may be down for a moment; retransmission covers it.
            tracing::warn!("sending IKE to {}: {error}", transmit.remote);
        }
        Ok(())
    }

    async fn output(&mut self, output: Output) -> anyhow::Result<()> {
        self.site.observe(&output).await;
        match output {
            Output::Forwarder(request) => self.send_request(request).await?,
            Output::PeerUp {
                peer,
                name,
                remote,
                reauthenticated,
            } => {
                self.homes.up(&name, now().wall);
                if let Some(holders) = &self.holders {
                    holders.up(&name, now().wall);
                }
                let line = if reauthenticated {
                    format!("peer re-authenticated: {name} ({peer}) at {remote}")
                } else {
                    format!("peer up: {name} ({peer}) at {remote}")
                };
                self.log_after_install(InstallOf::Peer(peer), HeldLine::Info(line));
                // The forwarder's roaming lines then name the peer as we do.
                let name = Some(name);
                self.send_request(Request::NamePeer { peer, name }).await?;
            }
            Output::PeerDown { peer, name, reason } => {
                self.homes.down(&name, &reason, now().wall);
                if let Some(holders) = &self.holders {
                    holders.down(&name);
                }
                self.log_after_install(
                    InstallOf::Peer(peer),
                    HeldLine::Info(format!("peer down: {name} ({peer}): {reason}")),
                );
                self.send_request(Request::NamePeer { peer, name: None })
                    .await?;
            }
            Output::Refused {
                remote,
                name,
                reason,
            } => self
                .refusals
                .log(now().mono, name.as_deref(), remote, &reason),
            Output::Rekeyed {
                peer,
                name,
                old_spi_in,
                new_spi_in,
            } => self.log_after_install(
                InstallOf::Peer(peer),
                HeldLine::Info(format!(
                    "CHILD SA rekeyed ({name}): inbound SPI {old_spi_in} -> {new_spi_in}"
                )),
            ),
            Output::Notice(notice) => match notice {
                Notice::ChildDeleted { spi_in, .. } => {
                    self.log_after_install(InstallOf::Pair(spi_in), HeldLine::Notice(notice));
                }
                notice => log_notice(&notice),
            },
        }
        Ok(())
    }

    /// Time since the start, for the heap trimmer.
    fn uptime(&self) -> std::time::Duration {
        now().mono.saturating_duration_since(self.started.mono)
    }

    /// After SIGTERM/SIGINT and the wait for the peers' answers to our DELETEs: a DELETE still
    /// unanswered is given up, the forwarder is stopped (it removes the TUN device and the
    /// routes) and waited for.
    async fn shut_down(&mut self) {
        if !self.endpoint.is_closed() {
            tracing::info!(
                "not every peer answered its DELETE within {DELETE_WAIT:?}; stopping anyway"
            );
        }
        let not_told = self.endpoint.peers_not_told();
        self.endpoint.close_now(now(), &mut self.rng);
        if let Err(error) = self.flush().await {
            tracing::warn!("sending the DELETEs: {error:#}");
        }
        while !self.in_flight.is_empty() {
            if let Err(error) = self.await_oldest().await {
                tracing::warn!("forwarder: {error:#}");
                break;
            }
        }
        if let Some(record) = &mut self.peers_up {
            // A peer that answered its DELETE knows; one that did not may never have had it
            // (its DELETE sent once, out of turn, may be lost too): the next run tells it.
            let mut left = std::mem::take(&mut self.up_at_close);
            left.retain(|hint| not_told.contains(&hint.peer));
            if !left.is_empty() {
                tracing::info!(
                    "{} peer(s) kept in {} for the next run to tell: {}",
                    left.len(),
                    crate::peers_up::FILE_NAME,
                    left.iter()
                        .map(|hint| hint.peer.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            record.record(left);
        }
        // The LANs' final advertisements go while the tunnel still exists.
        self.site.stop().await;
        match tokio::time::timeout(SHUTDOWN_GRACE, self.link.request(Request::Shutdown)).await {
            Ok(Ok(_)) | Ok(Err(LinkError::Closed)) => {}
            Ok(Err(error)) => tracing::warn!("forwarder shutdown: {error}"),
            Err(_) => tracing::warn!("forwarder did not answer the shutdown request"),
        }
        let Some(child) = self.child.as_mut() else {
            // Not ours to wait for: it stops on the shutdown request.
            tracing::info!("stopped");
            return;
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, child.wait()).await {
            Ok(Ok(status)) if status.success() => tracing::info!("stopped"),
            Ok(Ok(status)) => tracing::warn!("forwarder exited with {status}"),
            Ok(Err(error)) => tracing::warn!("waiting for the forwarder: {error}"),
            Err(_) => {
                tracing::warn!("forwarder did not stop within {SHUTDOWN_GRACE:?}; killing it");
                let _ = child.kill().await;
            }
        }
    }
}

/// The IKE socket's receive buffer, as large as we may make it: after a restart of the server
/// its homes come back at once, and a burst of IKE_SA_INITs the default buffer (about 200
/// datagrams) cannot hold costs the ones dropped a retransmission timeout or more. Without
/// CAP_NET_ADMIN the kernel caps it at `net.core.rmem_max`.
fn widen_receive_buffer(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    const BYTES: libc::c_int = 4 << 20;
    let set = |option: libc::c_int| {
        // SAFETY: setsockopt on our own socket with a live c_int of the right size.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&BYTES as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) == 0
        }
    };
    if !set(libc::SO_RCVBUFFORCE) && !set(libc::SO_RCVBUF) {
        tracing::debug!(
            "IKE socket receive buffer: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// One line for a protocol event of the endpoint, at its level (under the protocol crate's
/// target, so that `RUST_LOG=hometun_ike=...` selects the protocol's lines as it always did).
pub fn log_notice(notice: &hometun_ike::notice::Notice) {
    match notice.level() {
        Level::Debug => tracing::debug!(target: "hometun_ike", "{notice}"),
        Level::Info => tracing::info!(target: "hometun_ike", "{notice}"),
        Level::Warn => tracing::warn!(target: "hometun_ike", "{notice}"),
    }
}
