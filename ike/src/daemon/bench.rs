//! `hometun ike bench` (hidden): a concurrent IKE initiator for `bench/handshakes.sh`. Each
//! handshake is a fresh [`Endpoint`] initiator on its own UDP port, with the credentials of a
//! client config: IKE_SA_INIT, IKE_AUTH with certificates, then DELETE of the IKE SA (its
//! answer awaited), so any IKEv2 responder that accepts that client can be measured.
//!
//! Give one client config per handshake in flight (`--config` repeated): the initiator sends
//! INITIAL_CONTACT, so concurrent handshakes of one identity would replace each other at a
//! responder that honours it, which measures that rule rather than handshakes.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use hometun_config::ClientConfig;
use tokio::net::UdpSocket;

use crate::crypto::PeerIdentity;
use crate::driver::clock::{OsRandom, now};
use crate::endpoint::{Endpoint, InitiatorConfig, Output};
use crate::wire::{add_non_esp_marker, strip_non_esp_marker};

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
}

/// The credentials' bytes, read once; each handshake parses its own copy (the key types are
/// not `Clone`, and parsing costs microseconds against a handshake's milliseconds).
struct Material {
    config: ClientConfig,
    config_path: PathBuf,
    server: SocketAddrV4,
    local: Ipv4Addr,
}

impl Material {
    fn initiator(&self, port: u16) -> anyhow::Result<InitiatorConfig> {
        let c = &self.config.client;
        let credentials = super::load_credentials(&c.certificate, &c.private_key, &c.ca, None)?;
        let common = super::common_config(
            credentials,
            PeerIdentity::Fqdn(c.name.clone()),
            &self.config.ike,
            &self.config.limits,
            // Our NAT detection hashes must name the port we really send from.
            port,
            c.nat_port,
            &self.config_path,
        )?;
        Ok(InitiatorConfig {
            common,
            server: self.server,
            server_identity: PeerIdentity::Fqdn(c.server_name.clone()),
            local_addr: self.local,
            local_prefixes: vec![c.prefix],
        })
    }
}

/// What one run measured.
#[derive(Debug, Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    latencies_us: std::sync::Mutex<Vec<u64>>,
}

/// Runs the benchmark and prints one line: `handshakes N ok K failed F seconds S rate R/s
/// p50 A ms p99 B ms`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let server = super::probe::parse_target(&args.addr)?;
    let local = super::route_source(server)?;
    let materials = args
        .config
        .iter()
        .map(|path| {
            let material = Material {
                config: ClientConfig::load(path)?,
                config_path: path.clone(),
                server,
                local,
            };
            // Fail early, with the file named, if the credentials do not load.
            material.initiator(500)?;
            Ok(Arc::new(material))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicU64::new(0));
    let timeout = Duration::from_secs(args.timeout);
    let start = now().mono;
    runtime.block_on(async {
        let mut workers = Vec::new();
        for worker in 0..args.concurrency.max(1) {
            let material = materials[worker as usize % materials.len()].clone();
            let (tally, next) = (tally.clone(), next.clone());
            let count = args.count;
            workers.push(tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let began = now().mono;
                    match tokio::time::timeout(timeout, handshake(&material)).await {
                        Ok(Ok(())) => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                            let us = now().mono.duration_since(began).as_micros() as u64;
                            lock(&tally.latencies_us).push(us);
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
    if ok == 0 {
        anyhow::bail!("no handshake succeeded against {server}");
    }
    Ok(())
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One handshake: up to PeerUp, then DELETE and its answer.
async fn handshake(material: &Material) -> anyhow::Result<()> {
    let socket = UdpSocket::bind((material.local, 0)).await?;
    let port = socket.local_addr()?.port();
    let mut rng = OsRandom;
    let initiator = material.initiator(port)?;
    let nat_port = initiator.common.nat_port;
    let mut endpoint = Endpoint::initiator(initiator, now(), &mut rng);
    let mut buf = vec![0u8; 65536];
    let local = SocketAddrV4::new(material.local, port);
    loop {
        send_all(&socket, &mut endpoint, nat_port).await?;
        while let Some(output) = endpoint.poll_output() {
            match output {
                Output::PeerUp { .. } => {
                    endpoint.close(now(), &mut rng);
                    send_all(&socket, &mut endpoint, nat_port).await?;
                    // The DELETE's answer: the responder has done all its work.
                    let _ =
                        tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf))
                            .await;
                    return Ok(());
                }
                Output::Refused { reason, .. } => anyhow::bail!("refused: {reason}"),
                Output::PeerDown { reason, .. } => anyhow::bail!("peer down: {reason}"),
                Output::Forwarder(_) | Output::Rekeyed { .. } => {}
            }
        }
        let deadline = endpoint.poll_timeout();
        let timer = async move {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (n, from) = received?;
                let SocketAddr::V4(remote) = from else { continue };
                let data = if remote.port() == nat_port {
                    match strip_non_esp_marker(&buf[..n]) { Some(d) => d, None => continue }
                } else {
                    &buf[..n]
                };
                // Tell the endpoint the port its message came to, as the daemon would.
                let to = if remote.port() == nat_port { SocketAddrV4::new(*local.ip(), nat_port) } else { local };
                endpoint.handle_datagram(now(), to, remote, data, &mut rng);
            }
            () = timer => endpoint.handle_timeout(now(), &mut rng),
        }
    }
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
