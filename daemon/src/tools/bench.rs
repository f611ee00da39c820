//! `hometun ike bench` (hidden): a concurrent IKE initiator for `bench/handshakes.sh`. Each
//! handshake is a fresh [`Endpoint`] initiator, on the UDP port of the worker running it (a
//! held SA keeps its own), with the credentials of a client config: IKE_SA_INIT, IKE_AUTH
//! with certificates, then DELETE of the IKE SA (its answer awaited), so any IKEv2 responder
//! that accepts that client can be measured.
//!
//! Give one client config per handshake in flight (`--config` repeated): the initiator sends
//! INITIAL_CONTACT, so concurrent handshakes of one identity would replace each other at a
//! responder that honours it, which measures that rule rather than handshakes.
//!
//! With `--hold` (for `bench/memory.sh`) each established IKE SA, with its CHILD SA, stays up
//! instead: its endpoint keeps running (answering the responder's liveness checks, sending its
//! own) until SIGTERM or SIGINT, then every held SA is deleted. Handshake N then uses config
//! N, one identity per held SA.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use hometun_config::ClientConfig;
use tokio::net::UdpSocket;

use crate::clock::{OsRandom, now};
use hometun_ike::crypto::PeerIdentity;
use hometun_ike::endpoint::{Endpoint, InitiatorConfig, Output};
use hometun_ike::wire::{add_non_esp_marker, strip_non_esp_marker};

/// Arguments of `hometun ike bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The responder's address (ADDR or ADDR:PORT, port 500 by default).
    pub addr: String,
    /// Client configs whose certificates, keys, CA, identities and prefixes the handshakes use
    /// (repeat it; worker N uses config N modulo their number).
    #[arg(long, value_name = "FILE", required = true)]
    pub config: Vec<PathBuf>,
    /// Handshakes in all.
    #[arg(long, default_value_t = 200)]
    pub count: u64,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: u64,
    /// Give up on one handshake after this many seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Keep each established IKE SA and its CHILD SA up (answering liveness checks) until
    /// SIGTERM or SIGINT, then DELETE them all; handshake N uses config N, so give at least
    /// COUNT configs.
    #[arg(long)]
    pub hold: bool,
}

/// One client config's initiator settings, loaded and parsed once: each handshake takes a
/// clone (the key and the verifier are shared), so the initiator spends its CPU on
/// handshakes, not on reading files, and leaves more of a shared machine to the responder.
struct Material {
    template: InitiatorConfig,
}

impl Material {
    fn load(path: &std::path::Path, server: SocketAddrV4, local: Ipv4Addr) -> anyhow::Result<Self> {
        let config = ClientConfig::load(path)?;
        let c = &config.client;
        let credentials = crate::setup::load_credentials(
            &crate::setup::CredentialFiles {
                config: path,
                section: "client",
                certificate: &c.certificate,
                private_key: &c.private_key,
                ca: &c.ca,
                crl: None,
            },
            hometun_ike::crypto::PeerUsage::Server,
        )?;
        let common = crate::setup::common_config(
            credentials,
            PeerIdentity::Fqdn(c.name.clone()),
            &config.ike,
            &config.limits,
            // Set per handshake (`initiator`).
            0,
            c.nat_port,
            path,
        )?;
        Ok(Material {
            template: InitiatorConfig {
                common,
                server,
                server_identity: PeerIdentity::Fqdn(c.server_name.first().clone()),
                // The benchmark measures one server's handshakes.
                fallback_servers: Vec::new(),
                local_addr: local,
                local_prefixes: vec![c.prefix],
                force_udp_encapsulation: c.force_udp_encapsulation,
            },
        })
    }

    /// The settings of a handshake sent from `port`.
    fn initiator(&self, port: u16) -> InitiatorConfig {
        let mut initiator = self.template.clone();
        // Our NAT detection hashes must name the port we really send from.
        initiator.common.ike_port = port;
        initiator
    }
}

/// What one run measured.
#[derive(Debug, Default)]
struct Tally {
    ok: AtomicU64,
    /// `--hold`: the held SAs that are up right now.
    up: AtomicU64,
    /// `--hold`: how many times a held SA went down or came back up (a home that went down
    /// and up again between two looks leaves `up` as it was).
    changes: AtomicU64,
    failed: AtomicU64,
    latencies_us: std::sync::Mutex<Vec<u64>>,
    /// `--hold`: the tasks keeping the established SAs.
    held: std::sync::Mutex<Vec<tokio::task::JoinHandle<HoldEnd>>>,
}

/// How one held SA ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HoldEnd {
    /// Still up when the hold ended, then deleted.
    Up,
    /// Went down while held (and was not up again at the end).
    Down,
}

/// Runs the benchmark and prints one line: `handshakes N ok K failed F seconds S rate R/s
/// p50 A ms p99 B ms`. With `--hold` it then prints `holding K SAs`, waits for SIGTERM or
/// SIGINT, deletes the SAs and prints `held K up at the end D went down`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.hold && (args.config.len() as u64) < args.count {
        anyhow::bail!(
            "--hold needs one client config per SA: {} configs for --count {}",
            args.config.len(),
            args.count
        );
    }
    let server = crate::tools::probe::parse_target(&args.addr)?;
    let local = crate::netconf::route_source(server)?;
    let materials = args
        .config
        .iter()
        .map(|path| Ok(Arc::new(Material::load(path, server, local)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let materials = Arc::new(materials);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicU64::new(0));
    let timeout = Duration::from_secs(args.timeout);
    let hold = args.hold;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let start = now().mono;
    runtime.block_on(async {
        let mut workers = Vec::new();
        for worker in 0..args.concurrency.max(1) {
            let materials = materials.clone();
            let (tally, next, stopped) = (tally.clone(), next.clone(), stopped.clone());
            let count = args.count;
            workers.push(tokio::spawn(async move {
                let mut spare = None;
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= count {
                        break;
                    }
                    // A held SA keeps its identity: one config per handshake then.
                    let pick = if hold { index } else { worker };
                    let material = materials[pick as usize % materials.len()].clone();
                    let began = now().mono;
                    let attempt = handshake(&material, hold, spare.take());
                    match tokio::time::timeout(timeout, attempt).await {
                        Ok(Ok(ended)) => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                            let us = now().mono.duration_since(began).as_micros() as u64;
                            lock(&tally.latencies_us).push(us);
                            match ended {
                                Ended::Deleted(kept) => spare = Some(kept),
                                Ended::Held(sa) => {
                                    tally.up.fetch_add(1, Ordering::Relaxed);
                                    let task =
                                        tokio::spawn(hold_sa(*sa, stopped.clone(), tally.clone()));
                                    lock(&tally.held).push(task);
                                }
                            }
                        }
                        Ok(Err(error)) => {
                            tally.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!("handshake failed: {error:#}");
                        }
                        Err(_) => {
                            tally.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!("handshake timed out after {timeout:?}");
                        }
                    }
                }
            }));
        }
        for worker in workers {
            let _ = worker.await;
        }
    });
    let seconds = now().mono.duration_since(start).as_secs_f64();
    report(&args, &tally, seconds);
    if tally.ok.load(Ordering::Relaxed) == 0 {
        anyhow::bail!("no handshake succeeded against {server}");
    }
    if hold {
        runtime.block_on(hold_until_signal(&tally, stop))?;
    }
    Ok(())
}

/// Prints the handshakes' line.
fn report(args: &BenchArgs, tally: &Tally, seconds: f64) {
    let ok = tally.ok.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    let mut latencies = lock(&tally.latencies_us).clone();
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i] as f64 / 1000.0
    };
    println!(
        "handshakes {} ok {ok} failed {failed} seconds {seconds:.3} rate {:.1}/s p50 {:.1} ms p99 {:.1} ms",
        args.count,
        ok as f64 / seconds,
        pct(0.5),
        pct(0.99)
    );
}

/// `--hold`: says how many SAs are held, then `up N at SECONDS` (Unix time, milliseconds) each
/// time a held SA went down or came back since the last look, every 50 ms (a restarted
/// responder: they go down and come back, maybe between two looks), waits for SIGTERM or SIGINT, ends every hold (each deletes its IKE SA) and
/// prints how they ended.
async fn hold_until_signal(
    tally: &Tally,
    stop: tokio::sync::watch::Sender<bool>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let tasks = std::mem::take(&mut *lock(&tally.held));
    println!("holding {} SAs", tasks.len());
    let mut shown = tally.changes.load(Ordering::Relaxed);
    let mut look = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = look.tick() => {
                // A line whenever an SA went down or up since the last look, even when as
                // many are up as before.
                let changes = tally.changes.load(Ordering::Relaxed);
                if changes != shown {
                    shown = changes;
                    let up = tally.up.load(Ordering::Relaxed);
                    let at = now()
                        .wall
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    println!("up {up} at {:.3}", at.as_secs_f64());
                }
            }
        }
    }
    let _ = stop.send(true);
    let (mut up, mut down) = (0u64, 0u64);
    for task in tasks {
        match task.await {
            Ok(HoldEnd::Up) => up += 1,
            Ok(HoldEnd::Down) | Err(_) => down += 1,
        }
    }
    println!("held {up} up at the end {down} went down");
    Ok(())
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An initiator endpoint with its socket: one IKE SA in the making or established.
struct Initiator {
    socket: UdpSocket,
    endpoint: Endpoint,
    local: SocketAddrV4,
    nat_port: u16,
    buf: Vec<u8>,
}

impl Initiator {
    /// Sends what the endpoint queued.
    async fn flush(&mut self) -> anyhow::Result<()> {
        send_all(&self.socket, &mut self.endpoint, self.nat_port).await
    }

    /// Waits for one datagram or the endpoint's next timer and hands it to the endpoint.
    async fn step(&mut self) -> anyhow::Result<()> {
        let mut rng = OsRandom;
        let deadline = self.endpoint.poll_timeout();
        let timer = async move {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = self.socket.recv_from(&mut self.buf) => {
                let (n, from) = received?;
                let SocketAddr::V4(remote) = from else { return Ok(()) };
                let nat_port = self.nat_port;
                let data = if remote.port() == nat_port {
                    match strip_non_esp_marker(&self.buf[..n]) { Some(d) => d, None => return Ok(()) }
                } else {
                    &self.buf[..n]
                };
                // Tell the endpoint the port its message came to, as the daemon would.
                let local = self.local;
                let to = if remote.port() == nat_port { SocketAddrV4::new(*local.ip(), nat_port) } else { local };
                self.endpoint.handle_datagram(now(), to, remote, data, &mut rng);
            }
            () = timer => self.endpoint.handle_timeout(now(), &mut rng),
        }
        Ok(())
    }

    /// Deletes the IKE SA and waits (2 s at most) for the answer: then the responder has done
    /// all its work.
    async fn delete(&mut self) -> anyhow::Result<()> {
        self.endpoint.close_now(now(), &mut OsRandom);
        self.flush().await?;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.socket.recv_from(&mut self.buf))
            .await;
        Ok(())
    }
}

/// What a handshake leaves behind.
enum Ended {
    /// `--hold`: the established SA, to be kept up.
    Held(Box<Initiator>),
    /// The IKE SA was deleted: its socket and buffer, for the worker's next handshake.
    Deleted(Spare),
}

/// A worker's socket and receive buffer, used again by its next handshake: binding a socket
/// and zeroing 64 KiB for each would spend CPU that the initiator shares with the responder.
/// A late datagram of the previous SA carries SPIs the next endpoint does not know; it
/// ignores them.
struct Spare {
    socket: UdpSocket,
    buf: Vec<u8>,
}

/// One handshake up to PeerUp, from the worker's `spare` socket if it has one; then DELETE
/// and its answer, or, with `hold`, the established initiator is handed back.
async fn handshake(material: &Material, hold: bool, spare: Option<Spare>) -> anyhow::Result<Ended> {
    let Spare { socket, buf } = match spare {
        Some(spare) => spare,
        None => Spare {
            socket: UdpSocket::bind((material.template.local_addr, 0)).await?,
            buf: vec![0u8; 65536],
        },
    };
    let port = socket.local_addr()?.port();
    let initiator = material.initiator(port);
    let nat_port = initiator.common.nat_port;
    let endpoint = Endpoint::initiator(initiator, now(), &mut OsRandom);
    let mut sa = Initiator {
        socket,
        endpoint,
        local: SocketAddrV4::new(material.template.local_addr, port),
        nat_port,
        buf,
    };
    loop {
        sa.flush().await?;
        while let Some(output) = sa.endpoint.poll_output() {
            match output {
                Output::PeerUp { .. } if hold => return Ok(Ended::Held(Box::new(sa))),
                Output::PeerUp { .. } => {
                    sa.delete().await?;
                    return Ok(Ended::Deleted(Spare {
                        socket: sa.socket,
                        buf: sa.buf,
                    }));
                }
                Output::Refused { reason, .. } => anyhow::bail!("refused: {reason}"),
                Output::PeerDown { reason, .. } => anyhow::bail!("peer down: {reason}"),
                Output::Notice(notice) => crate::driver::log_notice(&notice),
                Output::Forwarder(_) | Output::Rekeyed { .. } => {}
            }
        }
        sa.step().await?;
    }
}

/// `--hold`: keeps one established SA running (liveness checks answered and sent, a lost SA
/// re-established by the endpoint) until `stop`, then deletes it.
async fn hold_sa(
    mut sa: Initiator,
    mut stop: tokio::sync::watch::Receiver<bool>,
    tally: Arc<Tally>,
) -> HoldEnd {
    let mut up = true;
    loop {
        if let Err(error) = sa.flush().await {
            tracing::warn!("held SA: {error:#}");
        }
        while let Some(output) = sa.endpoint.poll_output() {
            match output {
                Output::PeerUp { .. } => {
                    if !up {
                        tally.up.fetch_add(1, Ordering::Relaxed);
                        tally.changes.fetch_add(1, Ordering::Relaxed);
                    }
                    up = true;
                }
                Output::PeerDown { reason, .. } => {
                    tracing::warn!("held SA went down: {reason}");
                    if up {
                        tally.up.fetch_sub(1, Ordering::Relaxed);
                        tally.changes.fetch_add(1, Ordering::Relaxed);
                    }
                    up = false;
                }
                Output::Refused { reason, .. } => tracing::warn!("held SA refused: {reason}"),
                Output::Notice(notice) => crate::driver::log_notice(&notice),
                Output::Forwarder(_) | Output::Rekeyed { .. } => {}
            }
        }
        tokio::select! {
            _ = stop.changed() => break,
            stepped = sa.step() => if let Err(error) = stepped {
                tracing::warn!("held SA: {error:#}");
                // A socket error would repeat at once: do not spin on it.
                tokio::time::sleep(Duration::from_millis(100)).await;
            },
        }
    }
    if let Err(error) = sa.delete().await {
        tracing::warn!("deleting a held SA: {error:#}");
    }
    if up { HoldEnd::Up } else { HoldEnd::Down }
}

/// Sends what the endpoint queued, all from our one socket (port 4500 messages get the
/// non-ESP marker, as they would from the forwarder).
async fn send_all(
    socket: &UdpSocket,
    endpoint: &mut Endpoint,
    nat_port: u16,
) -> anyhow::Result<()> {
    while let Some(t) = endpoint.poll_transmit() {
        let data = if t.local.port() == nat_port || t.remote.port() == nat_port {
            add_non_esp_marker(&t.data)
        } else {
            t.data
        };
        socket
            .send_to(&data, SocketAddr::V4(t.remote))
            .await
            .with_context(|| format!("sending to {}", t.remote))?;
    }
    Ok(())
}
