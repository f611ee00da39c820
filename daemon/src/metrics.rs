//! The Prometheus endpoint (`server.metrics` / `client.metrics`): the figures of
//! `hometun status` in the Prometheus text format (version 0.0.4), over plain HTTP on a local
//! address.
//!
//! Each scrape asks the driver for a fresh status (the same answer the status socket gives,
//! with the forwarder's counters fetched for it) and renders it: one series per peer and per
//! CHILD SA pair, labelled with the peer's identity and the pair's inbound SPI. There is no
//! authentication: bind it to a loopback or management address.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use hometun_control::{CounterReport, Encapsulation, SaCounters};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::homes::Totals;
use crate::status::{StatusRequest, StatusView};

/// The path scraped (`/` answers too).
pub const METRICS_PATH: &str = "/metrics";

/// Binds `addr` and serves scrapes from a task; each one sends a request to the driver on
/// `requests`. Returns the bound address. A bind error is one line naming the address.
pub async fn serve(
    addr: SocketAddr,
    requests: mpsc::Sender<StatusRequest>,
) -> anyhow::Result<SocketAddr> {
    let listener = crate::port_wait::bind("metrics", || TcpListener::bind(addr))
        .await
        .with_context(|| format!("metrics: cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(answer(stream, requests.clone()));
                }
                Err(error) => {
                    tracing::warn!("metrics: accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(bound)
}

/// Reads one HTTP request and answers it; the connection closes after the answer.
async fn answer(mut stream: TcpStream, requests: mpsc::Sender<StatusRequest>) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        true
    })
    .await;
    if !matches!(read, Ok(true)) {
        return;
    }
    let text = String::from_utf8_lossy(&head);
    let mut words = text.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, content_type, body) = if method != "GET" && method != "HEAD" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        )
    } else if path != METRICS_PATH && path != "/" {
        (
            "404 Not Found",
            "text/plain",
            format!("see {METRICS_PATH}\n"),
        )
    } else {
        match scrape(&requests).await {
            Ok(body) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body),
            Err(error) => (
                "503 Service Unavailable",
                "text/plain",
                format!("{error:#}\n"),
            ),
        }
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        response.push_str(&body);
    }
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn scrape(requests: &mpsc::Sender<StatusRequest>) -> anyhow::Result<String> {
    let (tx, rx) = oneshot::channel();
    requests
        .send(tx)
        .await
        .map_err(|_| anyhow::anyhow!("the daemon is stopping"))?;
    let json = rx
        .await
        .map_err(|_| anyhow::anyhow!("the daemon is stopping"))?;
    let view: StatusView = serde_json::from_str(&json).context("the daemon's status")?;
    Ok(render(&view))
}

/// One metric family being written: HELP and TYPE once, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Label values: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics text of one status answer.
pub fn render(status: &StatusView) -> String {
    let mut out = String::new();
    let local = status.local.to_string();
    Family::new(
        &mut out,
        "hometun_info",
        "gauge",
        "The daemon: role, IKE identity, tunnel interface, outer address (always 1).",
    )
    .sample(
        "hometun_info",
        &[
            ("role", &status.role),
            ("identity", &status.identity),
            ("interface", &status.interface),
            ("local", &local),
        ],
        1,
    );
    Family::new(
        &mut out,
        "hometun_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
    )
    .sample("hometun_uptime_seconds", &[], status.uptime_seconds);
    Family::new(
        &mut out,
        "hometun_peers",
        "gauge",
        "Peers with an established IKE SA.",
    )
    .sample("hometun_peers", &[], status.peers.len());
    if let Some(e) = &status.endpoint {
        Family::new(
            &mut out,
            "hometun_ike_sas",
            "gauge",
            "IKE SAs held in any state.",
        )
        .sample("hometun_ike_sas", &[], e.ike_sas);
        Family::new(
            &mut out,
            "hometun_ike_half_open",
            "gauge",
            "Half-open IKE SAs (IKE_SA_INIT answered, IKE_AUTH not yet).",
        )
        .sample("hometun_ike_half_open", &[], e.half_open);
        Family::new(
            &mut out,
            "hometun_ike_cookies_sent_total",
            "counter",
            "IKE_SA_INIT requests answered with a COOKIE.",
        )
        .sample("hometun_ike_cookies_sent_total", &[], e.cookies_sent);
        for (name, help, value) in [
            (
                "hometun_child_rekeys_total",
                "CHILD SA rekeys completed, in either role.",
                e.child_rekeys,
            ),
            (
                "hometun_child_rekeys_failed_total",
                "Our CHILD SA rekeys that were refused or failed (each try).",
                e.child_rekeys_failed,
            ),
            (
                "hometun_child_sas_expired_total",
                "CHILD SAs that reached a hard limit before a successor took over.",
                e.child_sas_expired,
            ),
            (
                "hometun_ike_rekeys_total",
                "IKE SA rekey exchanges completed, in either role.",
                e.ike_rekeys,
            ),
            (
                "hometun_installs_refused_total",
                "CHILD SA pairs the forwarder refused to install.",
                e.installs_refused,
            ),
            (
                "hometun_restart_hints_sent_total",
                "Unprotected INVALID_SPI / INVALID_IKE_SPI sent about SAs we do not have (RFC 7296 2.21.4).",
                e.restart_hints_sent,
            ),
            (
                "hometun_restart_hints_received_total",
                "Unprotected hints received that named one of our SAs.",
                e.restart_hints_received,
            ),
            (
                "hometun_restart_checks_failed_total",
                "Liveness checks started by a hint that the peer did not answer.",
                e.restart_checks_failed,
            ),
        ] {
            Family::new(&mut out, name, "counter", help).sample(name, &[], value);
        }
        let mut f = Family::new(
            &mut out,
            "hometun_ike_dropped_total",
            "counter",
            "IKE datagrams dropped, by reason.",
        );
        for (why, n) in [
            ("unparsable", e.dropped_unparsable),
            ("unknown_spi", e.dropped_unknown_spi),
            ("half_open_bound", e.dropped_half_open_bound),
        ] {
            f.sample("hometun_ike_dropped_total", &[("reason", why)], n);
        }
    }
    render_peers(&mut out, status);
    let empty = CounterReport::default();
    let counters = status.counters.as_ref().unwrap_or(&empty);
    render_pairs_by_peer(&mut out, status, counters);
    render_roaming(&mut out, status, counters);
    let mut f = Family::new(
        &mut out,
        "hometun_drops_total",
        "counter",
        "Packets the forwarder dropped outside any SA (unknown SPI, no route into the tunnel, malformed), by reason.",
    );
    for (why, n) in &counters.global_drops {
        f.sample("hometun_drops_total", &[("reason", why.name())], n);
    }
    out
}

/// The forwarder's roaming counts of each peer that roamed or tried (server role): accepted
/// override NAs, and refused ones by the check that refused them.
fn render_roaming(out: &mut String, status: &StatusView, counters: &CounterReport) {
    let name_of = |id| status.peers.iter().find(|p| p.peer == id).map(|p| &p.name);
    let mut f = Family::new(
        out,
        "hometun_peer_override_nas_total",
        "counter",
        "Override Neighbor Advertisements from the peer that passed every check.",
    );
    for r in &counters.roaming {
        if let Some(name) = name_of(r.peer) {
            f.sample(
                "hometun_peer_override_nas_total",
                &[("peer", name)],
                r.nas_accepted,
            );
        }
    }
    let mut f = Family::new(
        out,
        "hometun_peer_roaming_refused_total",
        "counter",
        "Override NAs and return-routability answers from the peer that a check refused, by that check.",
    );
    for r in &counters.roaming {
        if let Some(name) = name_of(r.peer) {
            for (reason, n) in &r.refusals {
                f.sample(
                    "hometun_peer_roaming_refused_total",
                    &[("peer", name), ("reason", reason.name())],
                    n,
                );
            }
        }
    }
}

fn render_peers(out: &mut String, status: &StatusView) {
    let mut f = Family::new(
        out,
        "hometun_peer_info",
        "gauge",
        "Each peer with an IKE SA: identity, prefixes, outer endpoint, NAT, encapsulation and \
algorithms (always 1).",
    );
    let counters = status.counters.as_ref();
    for p in &status.peers {
        let prefixes: Vec<String> = p.prefixes.iter().map(ToString::to_string).collect();
        let (endpoint, nat) = (p.remote.to_string(), p.nat.to_string());
        let pair = counters.and_then(|c| c.sas.iter().find(|sa| sa.peer == p.peer));
        let encap = match pair.map(|sa| sa.endpoint.encap) {
            Some(Encapsulation::Raw) => "esp",
            Some(Encapsulation::Udp { .. }) => "udp",
            None => "none",
        };
        let alg = pair.map_or("none", |sa| sa.alg.as_str());
        f.sample(
            "hometun_peer_info",
            &[
                ("peer", &p.name),
                ("prefix", &prefixes.join(",")),
                ("endpoint", &endpoint),
                ("nat", &nat),
                ("encap", encap),
                ("ike_proposal", &p.ike_proposal),
                ("esp_proposal", alg),
            ],
            1,
        );
    }
    let mut f = Family::new(
        out,
        "hometun_peer_established_seconds",
        "gauge",
        "Seconds since the peer's IKE SA came up.",
    );
    for p in &status.peers {
        f.sample(
            "hometun_peer_established_seconds",
            &[("peer", &p.name)],
            p.established_seconds,
        );
    }
    let mut f = Family::new(
        out,
        "hometun_peer_last_moved_seconds",
        "gauge",
        "Seconds since the peer's outer endpoint last moved (absent if it never did).",
    );
    for p in &status.peers {
        if let Some(s) = p.last_moved_seconds_ago {
            f.sample("hometun_peer_last_moved_seconds", &[("peer", &p.name)], s);
        }
    }
}

/// The peer name of a pair: its IKE SA's identity, else the forwarder's peer number.
fn peer_name(status: &StatusView, sa: &SaCounters) -> String {
    status
        .peers
        .iter()
        .find(|p| p.peer == sa.peer)
        .map(|p| p.name.clone())
        .unwrap_or_else(|| sa.peer.to_string())
}

/// The series of each peer, labelled by its name only: a rekey or a reconnect makes new pairs
/// and new SPIs, and a label that changed with them would start a new series each time (the
/// SPIs are in `hometun status --json`). Counters are the peer's totals since the start, summed
/// over its pairs; gauges take the pair nearest its limit.
fn render_pairs_by_peer(out: &mut String, status: &StatusView, counters: &CounterReport) {
    let mut f = Family::new(
        out,
        "hometun_peer_up",
        "gauge",
        "Each peer the daemon knows (configured, enrolled or seen): 1 with an IKE SA and a CHILD SA \
pair that carries traffic, else 0 (also while every pair of its IKE SA expired: no working pair).",
    );
    for home in &status.homes {
        // `no-working-pair` is not up: nothing crosses the tunnel.
        let up = u8::from(home.state == "up");
        f.sample("hometun_peer_up", &[("peer", &home.name)], up);
    }
    let mut f = Family::new(
        out,
        "hometun_peer_last_seen_timestamp_seconds",
        "gauge",
        "Unix time the peer was last heard from (absent if not since the start).",
    );
    for home in &status.homes {
        if let Some(t) = home.last_seen {
            f.sample(
                "hometun_peer_last_seen_timestamp_seconds",
                &[("peer", &home.name)],
                t,
            );
        }
    }
    for (name, help, pick) in [
        (
            "hometun_peer_bytes_total",
            "Inner bytes carried for the peer since the start, by direction (in: received and accepted, out: sent).",
            (|t: &Totals| (t.rx_bytes, t.tx_bytes)) as fn(&Totals) -> (u64, u64),
        ),
        (
            "hometun_peer_packets_total",
            "Packets carried for the peer since the start, by direction.",
            |t: &Totals| (t.rx_packets, t.tx_packets),
        ),
    ] {
        let mut f = Family::new(out, name, "counter", help);
        for home in &status.homes {
            let (rx, tx) = pick(&home.totals);
            f.sample(name, &[("peer", &home.name), ("direction", "in")], rx);
            f.sample(name, &[("peer", &home.name), ("direction", "out")], tx);
        }
    }
    let mut f = Family::new(
        out,
        "hometun_peer_drops_total",
        "counter",
        "Packets of the peer's pairs dropped since the start, by reason (replay, auth_failed, ingress_filter, ...).",
    );
    for home in &status.homes {
        for (why, n) in &home.totals.drops {
            f.sample(
                "hometun_peer_drops_total",
                &[("peer", &home.name), ("reason", why.name())],
                n,
            );
        }
    }
    // The peer's pairs, by name.
    let mut by_peer: std::collections::BTreeMap<String, Vec<&SaCounters>> = Default::default();
    for sa in &counters.sas {
        by_peer.entry(peer_name(status, sa)).or_default().push(sa);
    }
    let mut f = Family::new(
        out,
        "hometun_peer_pairs",
        "gauge",
        "CHILD SA pairs installed for the peer (two while a rekey is under way).",
    );
    for (peer, sas) in &by_peer {
        f.sample("hometun_peer_pairs", &[("peer", peer)], sas.len());
    }
    type Left = fn(&SaCounters) -> Option<u64>;
    for (name, help, left) in [
        (
            "hometun_peer_rekey_bytes_left",
            "Bytes left before the soft limit (rekey) of the peer's pair nearest to it, counting its busier direction.",
            (|sa: &SaCounters| {
                let used = sa.rx_bytes.max(sa.tx_bytes);
                sa.limits.soft_bytes.map(|soft| soft.saturating_sub(used))
            }) as Left,
        ),
        (
            "hometun_peer_rekey_packets_left",
            "Packets left before the soft limit (rekey) of the peer's pair nearest to it, counting its busier direction.",
            |sa: &SaCounters| {
                let used = sa.rx_packets.max(sa.tx_packets);
                sa.limits.soft_packets.map(|soft| soft.saturating_sub(used))
            },
        ),
        (
            "hometun_peer_last_received_seconds",
            "Seconds since one of the peer's pairs last accepted a packet (absent if none did).",
            |sa: &SaCounters| sa.last_rx_seconds_ago,
        ),
    ] {
        let mut f = Family::new(out, name, "gauge", help);
        for (peer, sas) in &by_peer {
            if let Some(value) = sas.iter().filter_map(|sa| left(sa)).min() {
                f.sample(name, &[("peer", peer)], value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hometun_control::{DropReason, Endpoint, Limits, MoveRefusal, PeerId, PeerRoaming, Spi};

    fn view() -> StatusView {
        // Built from JSON, as `scrape` reads it: the view may grow fields.
        serde_json::from_value(serde_json::json!({
            "role": "server",
            "identity": "vps.example",
            "local": "192.0.2.1",
            "interface": "hometun0",
            "uptime_seconds": 99,
            "peers": [{
                "peer": 3,
                "name": "home \"one\".example",
                "local": "192.0.2.1:4500",
                "remote": "192.0.2.2:31000",
                "nat": true,
                "ike_spis": ["0011223344556677", "8899aabbccddeeff"],
                "ike_proposal": "aes128gcm16-prfsha256-x25519",
                "established_seconds": 61,
                "last_moved_seconds_ago": 7,
                "prefixes": ["2001:db8:100:1::/64"],
                "children": [{
                    "spi_in": 0xc0ffee01u32,
                    "spi_out": 0xbeef0002u32,
                    "proposal": "aes128gcm16",
                    "local_ts": ["::/0"],
                    "remote_ts": ["2001:db8:100:1::/64"],
                }],
            }],
            "endpoint": {
                "ike_sas": 1, "half_open": 0, "cookies_sent": 0, "dropped_half_open_bound": 0,
                "dropped_unparsable": 0, "dropped_unknown_spi": 5,
            },
            "counters": serde_json::to_value(CounterReport {
                sas: vec![SaCounters {
                    peer: PeerId(3),
                    spi_in: Spi(0xc0ffee01),
                    spi_out: Spi(0xbeef0002),
                    endpoint: Endpoint {
                        local: "192.0.2.1".parse().unwrap(),
                        remote: "192.0.2.2".parse().unwrap(),
                        encap: Encapsulation::Udp {
                            local_port: 4500,
                            remote_port: 31000,
                        },
                    },
                    alg: "aes128gcm16".into(),
                    rx_packets: 10,
                    rx_bytes: 1480,
                    tx_packets: 4,
                    tx_bytes: 300,
                    drops: vec![(DropReason::AuthFailed, 2)],
                    limits: Limits {
                        soft_bytes: Some(10_000),
                        hard_bytes: Some(20_000),
                        soft_packets: Some(100),
                        hard_packets: Some(200),
                        soft_seconds: None,
                        hard_seconds: None,
                    },
                    last_rx_seconds_ago: Some(1),
                    age_seconds: 65,
                }],
                global_drops: vec![(DropReason::NoSa, 3)],
                events_dropped: 0,
                roaming: vec![PeerRoaming {
                    peer: PeerId(3),
                    moves: 1,
                    last_move_ms: Some(40),
                    nas_accepted: 2,
                    probes_sent: 2,
                    rebinding_rounds: 0,
                    refusals: vec![(MoveRefusal::HopLimit, 3), (MoveRefusal::OlderNa, 1)],
                }],
            })
            .unwrap(),
            // Totals over a rekey: twice the current pair's figures.
            "homes": [{
                "name": "gone.example",
                "state": "down",
                "since": 1700000100u64,
                "last_seen": 1700000000u64,
                "down_reason": "liveness check failed",
                "totals": { "rx_packets": 0, "rx_bytes": 0, "tx_packets": 0, "tx_bytes": 0, "drops": {} },
            }, {
                "name": "home \"one\".example",
                "state": "up",
                "totals": {
                    "rx_packets": 20, "rx_bytes": 2960, "tx_packets": 8, "tx_bytes": 600,
                    "drops": { "auth-failed": 4 },
                },
            }],
        }))
        .unwrap()
    }

    #[test]
    fn every_family_has_help_and_type_and_samples_parse() {
        let text = render(&view());
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut words = rest.split(' ');
                declared.insert(words.next().unwrap().to_string());
                assert!(matches!(words.next(), Some("gauge" | "counter")), "{line}");
            } else if !line.starts_with("# HELP ") {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "{name} without TYPE: {line}");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
                if name.ends_with("_total") {
                    assert!(text.contains(&format!("# TYPE {name} counter")), "{name}");
                }
            }
        }
    }

    #[test]
    fn figures_and_labels() {
        let text = render(&view());
        let peer = r#"peer="home \"one\".example""#;
        for expected in [
            "hometun_info{role=\"server\",identity=\"vps.example\",interface=\"hometun0\",local=\"192.0.2.1\"} 1".to_string(),
            "hometun_peers 1".to_string(),
            "hometun_ike_dropped_total{reason=\"unknown_spi\"} 5".to_string(),
            format!("hometun_peer_bytes_total{{{peer},direction=\"in\"}} 2960"),
            format!("hometun_peer_packets_total{{{peer},direction=\"out\"}} 8"),
            format!("hometun_peer_drops_total{{{peer},reason=\"auth-failed\"}} 4"),
            format!("hometun_peer_up{{{peer}}} 1"),
            "hometun_peer_up{peer=\"gone.example\"} 0".to_string(),
            "hometun_peer_last_seen_timestamp_seconds{peer=\"gone.example\"} 1700000000".to_string(),
            format!("hometun_peer_pairs{{{peer}}} 1"),
            format!("hometun_peer_rekey_bytes_left{{{peer}}} 8520"),
            format!("hometun_peer_rekey_packets_left{{{peer}}} 90"),
            format!("hometun_peer_last_moved_seconds{{{peer}}} 7"),
            "hometun_drops_total{reason=\"no-sa\"} 3".to_string(),
            format!("hometun_peer_override_nas_total{{{peer}}} 2"),
            format!("hometun_peer_roaming_refused_total{{{peer},reason=\"hop-limit\"}} 3"),
            format!("hometun_peer_roaming_refused_total{{{peer},reason=\"older-na\"}} 1"),
            "prefix=\"2001:db8:100:1::/64\",endpoint=\"192.0.2.2:31000\",nat=\"true\",encap=\"udp\"".to_string(),
        ] {
            assert!(text.contains(&expected), "missing {expected}\n{text}");
        }
        // No label that a rekey or a reconnect changes.
        assert!(!text.contains("spi_"), "{text}");
    }

    #[test]
    fn failed_rekeys_and_expired_pairs_are_counted() {
        let mut view = view();
        let endpoint = view.endpoint.as_mut().unwrap();
        endpoint.child_rekeys = 4;
        endpoint.child_rekeys_failed = 3;
        endpoint.child_sas_expired = 1;
        let text = render(&view);
        for expected in [
            "# TYPE hometun_child_rekeys_failed_total counter\nhometun_child_rekeys_failed_total 3\n",
            "# TYPE hometun_child_sas_expired_total counter\nhometun_child_sas_expired_total 1\n",
            "hometun_child_rekeys_total 4\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?}\n{text}");
        }
    }

    /// A peer whose only pair reached its hard limit has an IKE SA but carries nothing: its
    /// `hometun_peer_up` is 0 (the book of peers says `no-working-pair`) until a pair works.
    #[test]
    fn a_peer_whose_only_pair_expired_is_not_up() {
        use crate::homes::{Homes, KnownPeers};
        use hometun_ike::endpoint::{ChildStatus, PeerStatus};
        let name = "home \"one\".example";
        let ike_sa = |state: &str| PeerStatus {
            peer: PeerId(3),
            name: name.into(),
            local: "192.0.2.1:4500".parse().unwrap(),
            remote: "192.0.2.2:31000".parse().unwrap(),
            nat: true,
            udp_forced: false,
            ike_spis: ("0011223344556677".into(), "8899aabbccddeeff".into()),
            ike_proposal: "aes128gcm16-prfsha256-x25519".into(),
            established_seconds: 61,
            last_moved_seconds_ago: None,
            moves: 0,
            prefixes: vec!["2001:db8:100:1::/64".parse().unwrap()],
            children: vec![ChildStatus {
                spi_in: Spi(0xc0ffee01),
                spi_out: Spi(0xbeef0002),
                proposal: "aes128gcm16".into(),
                local_ts: vec!["::/0".parse().unwrap()],
                remote_ts: vec!["2001:db8:100:1::/64".parse().unwrap()],
                state: state.into(),
            }],
        };
        let mut homes = Homes::new(KnownPeers::default());
        homes.up(
            name,
            std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        );
        let up_line = |state: &str| {
            let mut view = view();
            view.homes = homes.status(&[ike_sa(state)]);
            render(&view)
                .lines()
                .find(|l| l.starts_with("hometun_peer_up{") && l.contains("one"))
                .unwrap()
                .to_string()
        };
        assert_eq!(
            up_line("expired"),
            r#"hometun_peer_up{peer="home \"one\".example"} 0"#
        );
        assert_eq!(
            up_line("deleting"),
            r#"hometun_peer_up{peer="home \"one\".example"} 0"#
        );
        assert_eq!(
            up_line("active"),
            r#"hometun_peer_up{peer="home \"one\".example"} 1"#
        );
        assert_eq!(
            up_line("rekeying"),
            r#"hometun_peer_up{peer="home \"one\".example"} 1"#
        );
    }

    #[test]
    fn reasons_are_spelled_as_in_status() {
        let text = render(&view());
        assert!(text.contains("reason=\"no-sa\""), "{text}");
        assert!(text.contains("reason=\"auth-failed\""), "{text}");
    }
}
