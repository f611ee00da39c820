//! `hometun status`: the daemon's status socket (one request, one JSON answer) and the table
//! the command prints from that answer. (The SA channel to the forwarder is another socket:
//! docs/ARCHITECTURE.md, "The SA channel".)
//!
//! Protocol: the client connects to the Unix socket named by `control_socket` in the config,
//! writes the line `status`, and reads one JSON document ([`StatusReport`]) up to end of file.
//! The same socket takes the operator's commands ([`crate::operator`]).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use hometun_control::{CounterReport, DropReason, Encapsulation, Limits, SaCounters};
use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::homes::{HomeStatus, NO_WORKING_PAIR, carries_traffic};
use crate::operator::{Command, CommandRequest};
use hometun_ike::endpoint::{EndpointCounters, PeerStatus};

/// The request line a client sends.
pub const STATUS_REQUEST: &str = "status";

/// What a daemon answers on its status socket: the endpoint's view of its peers and the
/// forwarder's counters, fetched for the answer.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// `server` or `client`.
    pub role: String,
    /// Our IKE identity.
    pub identity: String,
    /// Our outer IPv4 address.
    pub local: Ipv4Addr,
    /// The TUN device.
    pub interface: String,
    /// Seconds since the daemon started.
    pub uptime_seconds: u64,
    /// Every IKE SA, with its CHILD SAs.
    pub peers: Vec<PeerStatus>,
    /// The endpoint's own counts: IKE SAs held, half-open, cookies, dropped messages.
    pub endpoint: EndpointCounters,
    /// The forwarder's counters (`None` only if the forwarder refused to give them).
    pub counters: Option<CounterReport>,
    /// Every peer known, up or down: when it was last seen, why it went down, its
    /// certificate, its traffic since the start.
    pub homes: Vec<HomeStatus>,
    /// Unix time of this answer, which the homes' times are relative to.
    pub time: u64,
}

/// [`StatusReport`] as `hometun status` reads it back (the same JSON).
#[derive(Debug, Clone, Deserialize)]
pub struct StatusView {
    /// `server` or `client`.
    pub role: String,
    /// The daemon's IKE identity.
    pub identity: String,
    /// Its outer IPv4 address.
    pub local: Ipv4Addr,
    /// Its TUN device.
    pub interface: String,
    /// Seconds since it started.
    pub uptime_seconds: u64,
    /// Its peers.
    pub peers: Vec<PeerView>,
    /// The endpoint's counts.
    #[serde(default)]
    pub endpoint: Option<EndpointView>,
    /// The forwarder's counters.
    pub counters: Option<CounterReport>,
    /// Every peer known, up or down.
    #[serde(default)]
    pub homes: Vec<HomeStatus>,
    /// Unix time of the answer.
    #[serde(default)]
    pub time: u64,
}

/// The endpoint's counts in [`StatusView`] (the fields of [`EndpointCounters`]).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EndpointView {
    /// IKE SAs held in any state.
    pub ike_sas: u64,
    /// Half-open IKE SAs.
    pub half_open: u64,
    /// IKE_SA_INIT requests answered with a COOKIE.
    pub cookies_sent: u64,
    /// IKE_SA_INIT requests dropped over the half-open bounds.
    pub dropped_half_open_bound: u64,
    /// Datagrams that did not parse.
    pub dropped_unparsable: u64,
    /// Datagrams for no IKE SA we hold.
    pub dropped_unknown_spi: u64,
    /// CHILD SA rekeys completed.
    #[serde(default)]
    pub child_rekeys: u64,
    /// Our CHILD SA rekeys refused or failed (each try).
    #[serde(default)]
    pub child_rekeys_failed: u64,
    /// CHILD SAs that reached a hard limit before a successor.
    #[serde(default)]
    pub child_sas_expired: u64,
    /// IKE SA rekey exchanges completed.
    #[serde(default)]
    pub ike_rekeys: u64,
    /// Pairs the forwarder refused to install.
    #[serde(default)]
    pub installs_refused: u64,
    /// Unprotected notifications sent about SAs we do not have (after a restart).
    #[serde(default)]
    pub restart_hints_sent: u64,
    /// Unprotected hints received that named one of our SAs.
    #[serde(default)]
    pub restart_hints_received: u64,
    /// Hint checks the peer did not answer (its IKE SA was made again).
    #[serde(default)]
    pub restart_checks_failed: u64,
}

/// One peer of [`StatusView`] (the fields of [`PeerStatus`]).
#[derive(Debug, Clone, Deserialize)]
pub struct PeerView {
    /// The peer's number.
    pub peer: hometun_control::PeerId,
    /// Its identity.
    pub name: String,
    /// Our IKE address and port.
    pub local: SocketAddrV4,
    /// Its IKE address and port.
    pub remote: SocketAddrV4,
    /// A NAT between us.
    pub nat: bool,
    /// ESP in UDP without a NAT, as the client's configuration forces it.
    #[serde(default)]
    pub udp_forced: bool,
    /// IKE SPIs (initiator's, responder's) in hex.
    pub ike_spis: (String, String),
    /// The IKE SA's algorithms.
    pub ike_proposal: String,
    /// Seconds since the IKE SA came up.
    pub established_seconds: u64,
    /// Seconds since its endpoint last moved.
    pub last_moved_seconds_ago: Option<u64>,
    /// How often its endpoint moved.
    #[serde(default)]
    pub moves: u64,
    /// Its inner prefixes.
    pub prefixes: Vec<Ipv6Net>,
    /// Its CHILD SAs.
    pub children: Vec<ChildView>,
}

/// One CHILD SA of [`PeerView`].
#[derive(Debug, Clone, Deserialize)]
pub struct ChildView {
    /// Our inbound SPI.
    pub spi_in: hometun_control::Spi,
    /// Our outbound SPI.
    pub spi_out: hometun_control::Spi,
    /// Its algorithm.
    pub proposal: String,
    /// Our traffic selectors.
    pub local_ts: Vec<Ipv6Net>,
    /// The peer's traffic selectors.
    pub remote_ts: Vec<Ipv6Net>,
    /// `active`, `rekeying`, `replaced`, `deleting` or `expired`.
    #[serde(default)]
    pub state: String,
}

/// A status request from a socket client to the driver, answered with the JSON text.
pub type StatusRequest = oneshot::Sender<String>;

/// Removes the status socket file when dropped.
#[derive(Debug)]
pub struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Binds the status socket (refusing to take over one a running daemon still answers on) and
/// serves it: each connection's request goes to `requests` (status) or `commands` (the
/// operator's), where the driver answers it.
pub async fn serve(
    path: &Path,
    requests: mpsc::Sender<StatusRequest>,
    commands: mpsc::Sender<CommandRequest>,
) -> anyhow::Result<SocketFile> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            anyhow::bail!(
                "status socket {}: another daemon is running on it",
                path.display()
            );
        }
        // Left behind by a daemon that did not stop cleanly.
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("status socket {}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        // Status shows identities and addresses of every peer: for the administrator only.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    let guard = SocketFile(path.to_path_buf());
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(answer(stream, requests.clone(), commands.clone()));
                }
                Err(error) => {
                    tracing::warn!("status socket: accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(guard)
}

async fn answer(
    stream: UnixStream,
    requests: mpsc::Sender<StatusRequest>,
    commands: mpsc::Sender<CommandRequest>,
) {
    let (reader, mut writer) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(reader).take(1024);
    let read = tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await;
    let reply = match read {
        Ok(Ok(_)) if line.trim() == STATUS_REQUEST => {
            let (tx, rx) = oneshot::channel();
            if requests.send(tx).await.is_err() {
                return;
            }
            match rx.await {
                Ok(json) => json,
                Err(_) => return,
            }
        }
        Ok(Ok(_)) => match Command::parse(&line) {
            Some(command) => {
                let (reply, answer) = oneshot::channel();
                if commands
                    .send(CommandRequest { command, reply })
                    .await
                    .is_err()
                {
                    return;
                }
                match answer.await {
                    Ok(answer) => crate::operator::answer_json(&answer),
                    Err(_) => return,
                }
            }
            None => format!(
                "{}\n",
                serde_json::json!({ "error": format!("unknown request {:?}", line.trim()) })
            ),
        },
        _ => return,
    };
    let _ = writer.write_all(reply.as_bytes()).await;
    let _ = writer.shutdown().await;
}

use tokio::io::AsyncReadExt as _;

/// Asks the daemon at `socket` for its status; returns the JSON text.
pub fn query(socket: &Path) -> anyhow::Result<String> {
    crate::status_client::ask(socket, STATUS_REQUEST)
}

/// The table `hometun status` prints, in the manner of `wg show`.
pub fn render(status: &StatusView) -> String {
    let mut out = String::new();
    let peers = status.peers.len();
    let _ = writeln!(
        out,
        "{} {}: {} ({}), {} peer{}, up {}",
        status.role,
        status.identity,
        status.interface,
        status.local,
        peers,
        if peers == 1 { "" } else { "s" },
        duration(status.uptime_seconds)
    );
    if let Some(e) = &status.endpoint {
        let mut line = format!(
            "  ike: {} SA{} ({} half-open)",
            e.ike_sas,
            if e.ike_sas == 1 { "" } else { "s" },
            e.half_open
        );
        if e.cookies_sent > 0 {
            let _ = write!(line, ", {} cookies sent", e.cookies_sent);
        }
        if e.child_rekeys + e.ike_rekeys > 0 {
            let _ = write!(
                line,
                "; rekeys: {} child, {} ike",
                e.child_rekeys, e.ike_rekeys
            );
        }
        if e.restart_hints_sent + e.restart_hints_received > 0 {
            let _ = write!(
                line,
                "; restart hints: {} sent, {} received, {} checks unanswered",
                e.restart_hints_sent, e.restart_hints_received, e.restart_checks_failed
            );
        }
        let trouble: Vec<String> = [
            ("child rekeys failed", e.child_rekeys_failed),
            ("child SAs expired", e.child_sas_expired),
            ("installs refused", e.installs_refused),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{what} {n}"))
        .collect();
        if !trouble.is_empty() {
            let _ = write!(line, " ({})", trouble.join(", "));
        }
        let dropped: Vec<String> = [
            ("unparsable", e.dropped_unparsable),
            ("unknown SPI", e.dropped_unknown_spi),
            ("over the half-open bound", e.dropped_half_open_bound),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{what} {n}"))
        .collect();
        if !dropped.is_empty() {
            let _ = write!(line, "; dropped: {}", dropped.join(", "));
        }
        let _ = writeln!(out, "{line}");
    }
    let empty = CounterReport::default();
    let counters = status.counters.as_ref().unwrap_or(&empty);
    if status.counters.is_none() {
        let _ = writeln!(out, "  (no counters from the forwarder yet)");
    }
    for peer in &status.peers {
        let home = status.homes.iter().find(|h| h.name == peer.name);
        render_peer(&mut out, peer, home, counters);
    }
    // Pairs the forwarder holds for no IKE SA we know (should be none).
    for sa in counters
        .sas
        .iter()
        .filter(|sa| !status.peers.iter().any(|p| p.peer == sa.peer))
    {
        let _ = writeln!(out, "\n{} (no IKE SA)", sa.peer);
        render_sa(&mut out, sa, None, "");
    }
    render_homes_not_up(&mut out, &status.homes, status.time);
    if !counters.global_drops.is_empty() {
        let _ = writeln!(
            out,
            "\ndrops outside any SA: {}\n  (packets for an SPI or a destination no pair holds: sent before a tunnel \
was up, or late for a pair already deleted)",
            drops(&counters.global_drops)
        );
    }
    out
}

/// The peers without an IKE SA: when they were last seen and why they went down, like
/// `wg show`'s latest handshake, with their certificate when the registry knows it.
fn render_homes_not_up(out: &mut String, homes: &[HomeStatus], now: u64) {
    let ago = |t: u64| format!("{} ago", duration(now.saturating_sub(t)));
    // A peer with an IKE SA (up, or without a working pair) is shown with its IKE SA.
    for home in homes
        .iter()
        .filter(|h| h.state != "up" && h.state != NO_WORKING_PAIR)
    {
        let state = if home.state == "down" {
            "down"
        } else {
            "not connected"
        };
        let _ = writeln!(out, "\npeer: {} ({state})", home.name);
        let seen = match home.last_seen {
            Some(t) => format!("last seen {}", ago(t)),
            None => "not seen since the start".to_string(),
        };
        let why = match (&home.down_reason, home.since) {
            (Some(reason), Some(t)) => format!("; down {}: {reason}", ago(t)),
            _ => String::new(),
        };
        let _ = writeln!(out, "  {seen}{why}");
        if let (Some(state), Some(expires)) = (&home.certificate, &home.certificate_expires) {
            let _ = writeln!(out, "  certificate: {state}, expires {expires}");
        }
    }
}

fn render_peer(
    out: &mut String,
    peer: &PeerView,
    home: Option<&HomeStatus>,
    counters: &CounterReport,
) {
    // Not up while nothing can cross: said first, so that nobody reads on as if it were.
    let working = match home {
        Some(h) => h.state != NO_WORKING_PAIR,
        None => peer.children.iter().any(|c| carries_traffic(&c.state)),
    };
    let _ = writeln!(
        out,
        "\npeer: {} ({}){}",
        peer.name,
        peer.peer,
        if working {
            ""
        } else {
            " NO WORKING PAIR: nothing crosses the tunnel until a pair is re-made"
        }
    );
    let prefixes: Vec<String> = peer.prefixes.iter().map(ToString::to_string).collect();
    let _ = writeln!(out, "  prefix: {}", or_none(&prefixes.join(", ")));
    if let Some(expires) = home.and_then(|h| h.certificate_expires.as_deref()) {
        let _ = writeln!(out, "  certificate: expires {expires}");
    }
    let moved = peer
        .last_moved_seconds_ago
        .map(|s| format!(", moved {}x, last {} ago", peer.moves, duration(s)))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  endpoint: {} (IKE from {}{}{})",
        peer.remote,
        peer.local,
        match (peer.nat, peer.udp_forced) {
            (true, _) => ", NAT",
            (false, true) => ", no NAT, ESP in UDP as configured",
            (false, false) => ", no NAT",
        },
        moved
    );
    if let Some(roaming) = counters.roaming.iter().find(|r| r.peer == peer.peer)
        && !roaming.refusals.is_empty()
    {
        // Which check refused its override NAs or probe answers (README.md, "Address changes").
        let refused: Vec<String> = roaming
            .refusals
            .iter()
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "  roaming refused: {} (override NAs accepted: {})",
            refused.join(", "),
            roaming.nas_accepted
        );
    }
    let _ = writeln!(
        out,
        "  ike sa: {} spi {}/{}, up {}",
        peer.ike_proposal,
        peer.ike_spis.0,
        peer.ike_spis.1,
        duration(peer.established_seconds)
    );
    let ours: Vec<&SaCounters> = counters
        .sas
        .iter()
        .filter(|s| s.peer == peer.peer)
        .collect();
    for child in &peer.children {
        let sa = ours.iter().find(|s| s.spi_in == child.spi_in).copied();
        let state = match child.state.as_str() {
            "" | "active" => String::new(),
            "expired" => "  EXPIRED: hard limit reached, carries nothing until re-made".into(),
            other => format!("  ({other})"),
        };
        let title = format!(
            "  child sa: in {} out {} {}  {} <-> {}{state}",
            child.spi_in,
            child.spi_out,
            child.proposal,
            list(&child.local_ts),
            list(&child.remote_ts)
        );
        let _ = writeln!(out, "{title}");
        match sa {
            Some(sa) => render_sa(out, sa, Some(child), "    "),
            None => {
                let _ = writeln!(out, "    (not in the forwarder's counters yet)");
            }
        }
    }
    // Pairs still installed but no longer the peer's children: rekeyed, awaiting deletion.
    for sa in ours
        .iter()
        .filter(|s| !peer.children.iter().any(|c| c.spi_in == s.spi_in))
    {
        let _ = writeln!(
            out,
            "  old child sa: in {} out {} {} (rekeyed, deleted once its successor carries traffic)",
            sa.spi_in, sa.spi_out, sa.alg
        );
        render_sa(out, sa, None, "    ");
    }
}

fn render_sa(out: &mut String, sa: &SaCounters, child: Option<&ChildView>, indent: &str) {
    if child.is_none() && indent.is_empty() {
        let _ = writeln!(out, "  sa: in {} out {} {}", sa.spi_in, sa.spi_out, sa.alg);
    }
    let _ = writeln!(out, "{indent}outer: {}", outer(sa));
    let last = sa
        .last_rx_seconds_ago
        .map(|s| format!("{} ago", duration(s)))
        .unwrap_or_else(|| "never".to_string());
    let _ = writeln!(
        out,
        "{indent}received: {}, {} packets (last {last})",
        bytes(sa.rx_bytes),
        sa.rx_packets
    );
    let _ = writeln!(
        out,
        "{indent}sent: {}, {} packets",
        bytes(sa.tx_bytes),
        sa.tx_packets
    );
    let _ = writeln!(out, "{indent}rekey after: {}", left(sa, &sa.limits));
    if !sa.drops.is_empty() {
        let _ = writeln!(out, "{indent}drops: {}", drops(&sa.drops));
    }
}

fn outer(sa: &SaCounters) -> String {
    let e = &sa.endpoint;
    match e.encap {
        Encapsulation::Raw => format!("{} <-> {} ESP (protocol 50)", e.local, e.remote),
        Encapsulation::Udp {
            local_port,
            remote_port,
        } => format!(
            "{}:{local_port} <-> {}:{remote_port} ESP in UDP",
            e.local, e.remote
        ),
    }
}

/// What is left before the soft limits, counting the busier direction.
fn left(sa: &SaCounters, limits: &Limits) -> String {
    let mut parts = Vec::new();
    if let Some(soft) = limits.soft_bytes {
        let used = sa.rx_bytes.max(sa.tx_bytes);
        parts.push(bytes(soft.saturating_sub(used)));
    }
    if let Some(soft) = limits.soft_packets {
        let used = sa.rx_packets.max(sa.tx_packets);
        parts.push(format!("{} packets", soft.saturating_sub(used)));
    }
    if let Some(soft) = limits.soft_seconds {
        parts.push(duration(soft.saturating_sub(sa.age_seconds)));
    }
    if parts.is_empty() {
        "no limit".to_string()
    } else {
        parts.join(" or ")
    }
}

fn drops(list: &[(DropReason, u64)]) -> String {
    list.iter()
        .map(|(reason, n)| format!("{} {n}", DropReason::name(*reason)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn list(nets: &[Ipv6Net]) -> String {
    let items: Vec<String> = nets.iter().map(ToString::to_string).collect();
    or_none(&items.join(",")).to_string()
}

fn or_none(text: &str) -> &str {
    if text.is_empty() { "(none)" } else { text }
}

/// Bytes in binary units, e.g. `1.50 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

/// Seconds as `3d 4h`, `5h 6m`, `7m 8s` or `9s`.
pub fn duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hometun_control::{Endpoint, PeerId, Spi};
    use hometun_ike::endpoint::ChildStatus;

    fn report() -> StatusReport {
        let limits = Limits {
            soft_bytes: Some(1000),
            hard_bytes: Some(2000),
            soft_packets: Some(100),
            hard_packets: Some(200),
            soft_seconds: None,
            hard_seconds: None,
        };
        let endpoint = Endpoint {
            local: "192.0.2.1".parse().unwrap(),
            remote: "192.0.2.2".parse().unwrap(),
            encap: Encapsulation::Raw,
        };
        let counters = |spi_in: u32, spi_out: u32, rx: u64| SaCounters {
            peer: PeerId(7),
            spi_in: Spi(spi_in),
            spi_out: Spi(spi_out),
            endpoint,
            alg: "aes128gcm16".into(),
            rx_packets: 10,
            rx_bytes: rx,
            tx_packets: 4,
            tx_bytes: 300,
            drops: vec![(DropReason::Replay, 2)],
            limits,
            last_rx_seconds_ago: Some(1),
            age_seconds: 65,
        };
        StatusReport {
            role: "server".into(),
            identity: "vps.example".into(),
            local: "192.0.2.1".parse().unwrap(),
            interface: "hometun0".into(),
            uptime_seconds: 3725,
            peers: vec![PeerStatus {
                peer: PeerId(7),
                name: "home.example".into(),
                local: "192.0.2.1:500".parse().unwrap(),
                remote: "192.0.2.2:500".parse().unwrap(),
                nat: false,
                udp_forced: false,
                ike_spis: ("0011223344556677".into(), "8899aabbccddeeff".into()),
                ike_proposal: "aes128gcm16-prfsha256-x25519".into(),
                established_seconds: 61,
                last_moved_seconds_ago: None,
                moves: 0,
                prefixes: vec!["2001:db8:1::/64".parse().unwrap()],
                children: vec![ChildStatus {
                    spi_in: Spi(0xc0ffee01),
                    spi_out: Spi(0xbeef0002),
                    proposal: "aes128gcm16".into(),
                    local_ts: vec!["::/0".parse().unwrap()],
                    remote_ts: vec!["2001:db8:1::/64".parse().unwrap()],
                    state: "active".into(),
                }],
            }],
            endpoint: EndpointCounters {
                ike_sas: 1,
                half_open: 0,
                cookies_sent: 0,
                dropped_half_open_bound: 0,
                dropped_unparsable: 2,
                dropped_unknown_spi: 0,
                ..EndpointCounters::default()
            },
            counters: Some(CounterReport {
                sas: vec![
                    counters(0xc0ffee01, 0xbeef0002, 700),
                    counters(0x0badcafe, 0x1, 5000),
                ],
                global_drops: vec![(DropReason::NoSa, 3)],
                events_dropped: 0,
                roaming: vec![hometun_control::PeerRoaming {
                    peer: PeerId(7),
                    moves: 0,
                    last_move_ms: None,
                    nas_accepted: 0,
                    probes_sent: 0,
                    rebinding_rounds: 0,
                    refusals: vec![(hometun_control::MoveRefusal::ForeignTarget, 2)],
                }],
            }),
            time: NOW,
            homes: vec![
                HomeStatus {
                    name: "gone.example".into(),
                    state: "down".into(),
                    since: Some(NOW - 60),
                    last_seen: Some(NOW - 125),
                    down_reason: Some("liveness check failed".into()),
                    certificate: Some("revoked".into()),
                    certificate_expires: Some("2027-06-01T00:00:00Z".into()),
                    totals: Default::default(),
                },
                HomeStatus {
                    name: "home.example".into(),
                    state: "up".into(),
                    since: Some(NOW - 61),
                    last_seen: Some(NOW - 1),
                    down_reason: None,
                    certificate: Some("active".into()),
                    certificate_expires: Some("2027-12-01T00:00:00Z".into()),
                    totals: Default::default(),
                },
                HomeStatus {
                    name: "new.example".into(),
                    state: "never".into(),
                    since: None,
                    last_seen: None,
                    down_reason: None,
                    certificate: None,
                    certificate_expires: None,
                    totals: Default::default(),
                },
            ],
        }
    }

    /// The daemon's clock at the answer.
    const NOW: u64 = 1_800_000_000;

    #[test]
    fn homes_without_an_ike_sa_say_when_they_were_seen_and_why_they_went() {
        let json = serde_json::to_string(&report()).unwrap();
        let view: StatusView = serde_json::from_str(&json).unwrap();
        let table = render(&view);
        for expected in [
            "peer: home.example (peer7)\n  prefix: 2001:db8:1::/64\n  certificate: expires 2027-12-01T00:00:00Z\n",
            "peer: gone.example (down)\n  last seen 2m 5s ago; down 1m 0s ago: liveness check failed\n  certificate: revoked, expires 2027-06-01T00:00:00Z\n",
            "peer: new.example (not connected)\n  not seen since the start\n",
        ] {
            assert!(table.contains(expected), "missing {expected:?} in\n{table}");
        }
        assert!(!table.contains("peer: home.example (down)"), "{table}");
    }

    #[test]
    fn report_json_reads_back_as_view() {
        let json = serde_json::to_string(&report()).unwrap();
        let view: StatusView = serde_json::from_str(&json).unwrap();
        assert_eq!(view.peers[0].name, "home.example");
        assert_eq!(view.peers[0].children[0].spi_in, Spi(0xc0ffee01));
        assert_eq!(view.peers[0].remote, "192.0.2.2:500".parse().unwrap());
        assert_eq!(view.counters.unwrap().sas.len(), 2);
    }

    #[test]
    fn table_shows_spis_bytes_limits_and_drops() {
        let json = serde_json::to_string(&report()).unwrap();
        let view: StatusView = serde_json::from_str(&json).unwrap();
        let table = render(&view);
        assert!(
            table.starts_with("server vps.example: hometun0 (192.0.2.1), 1 peer, up 1h 2m\n"),
            "{table}"
        );
        assert!(table.contains("peer: home.example (peer7)"), "{table}");
        assert!(
            table.contains("  ike: 1 SA (0 half-open); dropped: unparsable 2\n"),
            "{table}"
        );
        assert!(table.contains("prefix: 2001:db8:1::/64"), "{table}");
        assert!(
            table.contains(
                "child sa: in c0ffee01 out beef0002 aes128gcm16  ::/0 <-> 2001:db8:1::/64"
            ),
            "{table}"
        );
        assert!(
            table.contains("received: 700 B, 10 packets (last 1s ago)"),
            "{table}"
        );
        // 1000 - max(700, 300) bytes, 100 - max(10, 4) packets.
        assert!(
            table.contains("rekey after: 300 B or 90 packets"),
            "{table}"
        );
        assert!(table.contains("drops: replay 2"), "{table}");
        assert!(
            table.contains("  roaming refused: foreign-target 2 (override NAs accepted: 0)\n"),
            "{table}"
        );
        // The second pair is no child any more: shown as the old one of a rekey.
        assert!(
            table.contains("old child sa: in 0badcafe out 00000001"),
            "{table}"
        );
        assert!(table.contains("rekey after: 0 B or 90 packets"), "{table}");
        assert!(table.contains("drops outside any SA: no-sa 3"), "{table}");
        assert!(
            table.contains("192.0.2.1 <-> 192.0.2.2 ESP (protocol 50)"),
            "{table}"
        );
    }

    /// The endpoint line says whether a NAT is between us, or ESP goes in UDP without one as the
    /// client's configuration forces it.
    #[test]
    fn the_endpoint_line_tells_a_nat_from_forced_udp() {
        for (nat, udp_forced, shown) in [
            (false, false, "(IKE from 192.0.2.1:500, no NAT)"),
            (true, false, "(IKE from 192.0.2.1:500, NAT)"),
            (
                false,
                true,
                "(IKE from 192.0.2.1:500, no NAT, ESP in UDP as configured)",
            ),
        ] {
            let mut report = report();
            report.peers[0].nat = nat;
            report.peers[0].udp_forced = udp_forced;
            let json = serde_json::to_string(&report).unwrap();
            let table = render(&serde_json::from_str(&json).unwrap());
            assert!(
                table.contains(&format!("  endpoint: 192.0.2.2:500 {shown}")),
                "{table}"
            );
        }
    }

    /// A peer whose only pair reached its hard limit (as the driver reports it: the child
    /// `expired`, the home `no-working-pair`): the table says so at the peer and at the pair,
    /// and the JSON carries both states.
    #[test]
    fn an_expired_pair_is_shown_expired_and_its_peer_not_up() {
        let mut report = report();
        report.peers[0].children[0].state = "expired".into();
        report.homes[1].state = NO_WORKING_PAIR.into();
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["peers"][0]["children"][0]["state"], "expired",
            "{json:#}"
        );
        assert_eq!(json["homes"][1]["name"], "home.example");
        assert_eq!(json["homes"][1]["state"], "no-working-pair", "{json:#}");
        let view: StatusView = serde_json::from_value(json).unwrap();
        assert_eq!(view.peers[0].children[0].state, "expired");
        let table = render(&view);
        for expected in [
            "peer: home.example (peer7) NO WORKING PAIR: nothing crosses the tunnel until a pair is re-made\n",
            "  child sa: in c0ffee01 out beef0002 aes128gcm16  ::/0 <-> 2001:db8:1::/64  EXPIRED: hard limit reached, carries nothing until re-made\n",
        ] {
            assert!(table.contains(expected), "missing {expected:?} in\n{table}");
        }
        // Shown once, with its IKE SA, not again among the homes without one.
        assert_eq!(table.matches("peer: home.example").count(), 1, "{table}");
        // Without the homes (an older answer), the children alone tell.
        let mut view = view;
        view.homes.clear();
        assert!(render(&view).contains("(peer7) NO WORKING PAIR"));
        view.peers[0].children[0].state = "rekeying".into();
        assert!(!render(&view).contains("NO WORKING PAIR"));
    }

    #[test]
    fn units() {
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(3 << 30), "3.00 GiB");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(61), "1m 1s");
        assert_eq!(duration(90_061), "1d 1h");
    }
}
