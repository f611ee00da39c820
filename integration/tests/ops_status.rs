//! `hometun status` (table and JSON) and the Prometheus endpoint against known traffic:
//! N pings of a known size from the home to the VPS; both daemons' counters of the
//! CHILD SA pair grow by exactly N packets and N times the inner packet's size each way, the
//! table shows the peer's identity, prefix, endpoint, SPIs, algorithms, bytes and packets each
//! way, what is left before the rekey and when the last packet came, and a scrape of
//! `server.metrics` / `client.metrics` carries the same figures with HELP and TYPE lines.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::time::Duration;

use hometun_lab::ike_lab::{
    Daemon, HOME_INNER, HOME_PREFIX, Setup, VPS_INNER, edit_client, edit_server, logs, wait_ping,
};
use hometun_lab::{Netns, require_root};

const PINGS: u64 = 25;
/// ICMPv6 echo data bytes (`ping -s`).
const PAYLOAD: u64 = 200;
/// The inner packet: IPv6 header, ICMPv6 echo header, data.
const INNER: u64 = 40 + 8 + PAYLOAD;
const REKEY_BYTES: u64 = 50_000_000;
const REKEY_PACKETS: u64 = 1_000_000;
const METRICS: &str = "127.0.0.1:9469";

/// The forwarder's counters of the pair that is the first peer's current CHILD SA:
/// (rx packets, rx bytes, tx packets, tx bytes).
fn pair(status: &serde_json::Value) -> (u64, u64, u64, u64) {
    let spi = hometun_lab::ike_lab::spi(&status["peers"][0]["children"][0]["spi_in"]).unwrap();
    let sa = status["counters"]["sas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|sa| hometun_lab::ike_lab::spi(&sa["spi_in"]) == Some(spi))
        .unwrap_or_else(|| panic!("no counters for {spi:08x}: {status:#}"));
    let n = |k: &str| sa[k].as_u64().unwrap();
    (
        n("rx_packets"),
        n("rx_bytes"),
        n("tx_packets"),
        n("tx_bytes"),
    )
}

fn delta(after: (u64, u64, u64, u64), before: (u64, u64, u64, u64)) -> (u64, u64, u64, u64) {
    (
        after.0 - before.0,
        after.1 - before.1,
        after.2 - before.2,
        after.3 - before.3,
    )
}

/// Bytes as `hometun status` prints them (binary units, two decimals).
fn binary_bytes(n: u64) -> String {
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

/// Scrapes the metrics endpoint from inside `ns` (with curl).
fn scrape(ns: &Netns) -> String {
    let output = ns
        .output(
            "curl",
            &[
                "-sS",
                "--max-time",
                "5",
                &format!("http://{METRICS}/metrics"),
            ],
        )
        .unwrap();
    assert!(
        output.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The value of the sample `name{labels}` whose labels contain all of `want`.
fn sample(text: &str, name: &str, want: &[&str]) -> Option<u64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| want.iter().all(|w| l.contains(w)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Stray packets (multicast listener reports of a fresh interface) stop within seconds; wait
/// until both counters hold still for a second.
fn settle(server: &Daemon, client: &Daemon) {
    let mut last = (
        pair(&server.status().unwrap()),
        pair(&client.status().unwrap()),
    );
    for _ in 0..15 {
        std::thread::sleep(Duration::from_millis(1000));
        let now = (
            pair(&server.status().unwrap()),
            pair(&client.status().unwrap()),
        );
        if now == last {
            return;
        }
        last = now;
    }
}

#[test]
fn status_and_metrics_count_known_traffic() {
    if !require_root("status_and_metrics_count_known_traffic") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    let lab = &setup.lab;
    let metrics: SocketAddr = METRICS.parse().unwrap();
    edit_server(&setup.server_toml, |c| {
        c.server.metrics = Some(metrics);
        c.limits.rekey_bytes = REKEY_BYTES;
        c.limits.rekey_packets = REKEY_PACKETS;
    })
    .unwrap();
    edit_client(&setup.client_tomls[0], |c| c.client.metrics = Some(metrics)).unwrap();
    let server = setup.start_server().unwrap();
    assert!(
        server.wait_log(
            &format!("metrics on http://{METRICS}/metrics"),
            Duration::from_secs(5)
        ),
        "{}",
        logs(&[&server])
    );
    let client = setup.start_client(0).unwrap();
    assert!(
        wait_ping(&lab.home().ns, VPS_INNER, Duration::from_secs(30)),
        "the tunnel did not come up\n{}",
        logs(&[&server, &client])
    );
    settle(&server, &client);
    let server_before = pair(&server.status().unwrap());
    let client_before = pair(&client.status().unwrap());

    let ping = lab
        .home()
        .ns
        .output(
            "ping",
            &[
                "-6",
                "-c",
                &PINGS.to_string(),
                "-i",
                "0.02",
                "-s",
                &PAYLOAD.to_string(),
                "-W",
                "2",
                &VPS_INNER.to_string(),
            ],
        )
        .unwrap();
    assert!(
        ping.status.success(),
        "ping lost packets: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    let server_status = server.status().unwrap();
    let client_status = client.status().unwrap();
    let expected = (PINGS, PINGS * INNER, PINGS, PINGS * INNER);
    assert_eq!(
        delta(pair(&server_status), server_before),
        expected,
        "server: (rx packets, rx bytes, tx packets, tx bytes) grew by other than {PINGS} pings of {INNER} bytes\n{server_status:#}"
    );
    assert_eq!(
        delta(pair(&client_status), client_before),
        expected,
        "client: counters grew by other than {PINGS} pings of {INNER} bytes\n{client_status:#}"
    );
    let (rx_packets, rx_bytes, tx_packets, tx_bytes) = pair(&server_status);

    // The table: every field the issue lists.
    let table = server.status_table().unwrap();
    eprintln!("{table}");
    let peer = &server_status["peers"][0];
    let spi_in = hometun_lab::ike_lab::spi(&peer["children"][0]["spi_in"]).unwrap();
    let spi_out = hometun_lab::ike_lab::spi(&peer["children"][0]["spi_out"]).unwrap();
    for expected in [
        "server vps.example: hometun0 (192.0.2.1), 1 peer".to_string(),
        "peer: home.example (peer1)".to_string(),
        format!("prefix: {HOME_PREFIX}"),
        "endpoint: 192.0.2.2:500 (IKE from 192.0.2.1:500, no NAT)".to_string(),
        format!(
            "ike sa: aes128gcm16-prfsha256-x25519 spi {}/{}",
            peer["ike_spis"][0].as_str().unwrap(),
            peer["ike_spis"][1].as_str().unwrap()
        ),
        format!("child sa: in {spi_in:08x} out {spi_out:08x} aes128gcm16  ::/0 <-> {HOME_PREFIX}"),
        "outer: 192.0.2.1 <-> 192.0.2.2 ESP (protocol 50)".to_string(),
        format!("{rx_packets} packets (last "),
        "sent: ".to_string(),
        format!(
            "rekey after: {} or {} packets",
            binary_bytes(REKEY_BYTES - rx_bytes.max(tx_bytes)),
            REKEY_PACKETS - rx_packets.max(tx_packets)
        ),
    ] {
        assert!(
            table.contains(&expected),
            "missing {expected:?} in\n{table}"
        );
    }
    let sa = server_status["counters"]["sas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|sa| hometun_lab::ike_lab::spi(&sa["spi_in"]) == Some(spi_in))
        .unwrap();
    assert_eq!(sa["limits"]["soft_bytes"], REKEY_BYTES, "{sa:#}");
    assert!(sa["last_rx_seconds_ago"].as_u64().unwrap() <= 2, "{sa:#}");
    assert!(sa["drops"].is_array(), "{sa:#}");
    let client_table = client.status_table().unwrap();
    assert!(
        client_table.contains("peer: vps.example (peer1)"),
        "{client_table}"
    );

    // Metrics: the same figures. Scraping asks for fresh counters, so nothing moved since.
    let text = scrape(&lab.vps.ns);
    for family in [
        "hometun_peer_bytes_total",
        "hometun_peer_packets_total",
        "hometun_peer_rekey_bytes_left",
        "hometun_peer_up",
        "hometun_peer_info",
        "hometun_drops_total",
    ] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family}\n{text}"
        );
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family}\n{text}"
        );
    }
    // Labelled by the peer's name only: no SPI, which every rekey changes.
    assert!(!text.contains("spi_in"), "{text}");
    let labels = ["peer=\"home.example\"".to_string()];
    let with = |dir: &'static str| -> Vec<&str> {
        let mut v: Vec<&str> = labels.iter().map(String::as_str).collect();
        v.push(dir);
        v
    };
    let scraped = (
        sample(
            &text,
            "hometun_peer_packets_total",
            &with("direction=\"in\""),
        )
        .unwrap(),
        sample(&text, "hometun_peer_bytes_total", &with("direction=\"in\"")).unwrap(),
        sample(
            &text,
            "hometun_peer_packets_total",
            &with("direction=\"out\""),
        )
        .unwrap(),
        sample(
            &text,
            "hometun_peer_bytes_total",
            &with("direction=\"out\""),
        )
        .unwrap(),
    );
    assert_eq!(scraped, pair(&server.status().unwrap()), "{text}");
    let left: Vec<&str> = labels.iter().map(String::as_str).collect();
    assert_eq!(
        sample(&text, "hometun_peer_rekey_packets_left", &left),
        Some(REKEY_PACKETS - scraped.0.max(scraped.2)),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "prefix=\"{HOME_PREFIX}\",endpoint=\"192.0.2.2:500\",nat=\"false\""
        )),
        "{text}"
    );
    assert_eq!(sample(&text, "hometun_peers", &[]), Some(1), "{text}");
    // The client has its own endpoint in its namespace.
    let text = scrape(&lab.home().ns);
    assert!(
        text.contains("hometun_info{role=\"client\",identity=\"home.example\""),
        "{text}"
    );
    assert!(
        sample(&text, "hometun_peer_packets_total", &["direction=\"out\""]).unwrap() >= PINGS,
        "{text}"
    );
    // The reverse direction is counted too: pings from the VPS to the home.
    let before = pair(&client.status().unwrap());
    assert!(hometun_lab::ike_lab::ping6(&lab.vps.ns, HOME_INNER, 3).unwrap());
    let grown = delta(pair(&client.status().unwrap()), before);
    assert!(grown.0 >= 3 && grown.2 >= 3, "{grown:?}");
    assert!(client.stop().unwrap().success());
    assert!(server.stop().unwrap().success());
}

/// Every home the server knows is listed, connected or not: a home that stopped shows when it
/// was last seen and why it went down, an enrolled home that never came shows as such, each
/// with its certificate from the registry; `hometun status NAME` shows one home.
#[test]
fn status_lists_homes_that_are_down_and_filters_by_name() {
    if !require_root("status_lists_homes_that_are_down_and_filters_by_name") {
        return;
    }
    let setup = Setup::new(3).unwrap();
    let lab = &setup.lab;
    let server = setup.start_server().unwrap();
    let home = setup.start_client(0).unwrap();
    let home2 = setup.start_client(1).unwrap();
    let both_up = || {
        server
            .status()
            .is_ok_and(|s| s["peers"].as_array().is_some_and(|p| p.len() == 2))
    };
    assert!(
        hometun_lab::wait_for(Duration::from_secs(30), both_up),
        "the homes did not come up\n{}",
        logs(&[&server, &home, &home2])
    );
    assert!(wait_ping(
        &lab.home().ns,
        VPS_INNER,
        Duration::from_secs(10)
    ));
    // home2 stops: its client deletes the IKE SA.
    assert!(home2.stop().unwrap().success());
    let home2_down = || {
        server.status().is_ok_and(|s| {
            s["homes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["name"] == "home2.example" && h["state"] == "down")
        })
    };
    assert!(
        hometun_lab::wait_for(Duration::from_secs(10), home2_down),
        "{:#}",
        server.status().unwrap()
    );
    let status = server.status().unwrap();
    let homes = status["homes"].as_array().unwrap();
    let entry = |name: &str| homes.iter().find(|h| h["name"] == name).unwrap();
    assert_eq!(entry("home.example")["state"], "up", "{status:#}");
    assert_eq!(entry("home.example")["certificate"], "active", "{status:#}");
    let gone = entry("home2.example");
    assert!(gone["last_seen"].as_u64().is_some(), "{status:#}");
    assert!(gone["down_reason"].as_str().is_some(), "{status:#}");
    // Enrolled, never connected.
    assert_eq!(entry("home3.example")["state"], "never", "{status:#}");
    assert!(
        entry("home3.example")["certificate_expires"].is_string(),
        "{status:#}"
    );

    let table = server.status_table().unwrap();
    eprintln!("{table}");
    for expected in [
        "peer: home.example (peer",
        "peer: home2.example (down)\n  last seen ",
        "peer: home3.example (not connected)\n  not seen since the start\n  certificate: active, expires ",
    ] {
        assert!(table.contains(expected), "missing {expected:?} in\n{table}");
    }
    assert!(table.contains("; down "), "{table}");

    // One home: the others are left out of the table and of the JSON.
    let config = setup.server_toml.to_str().unwrap();
    let one =
        hometun_lab::ike_lab::hometun(&["status", "home2.example", "--config", config]).unwrap();
    let one = String::from_utf8_lossy(&one.stdout);
    assert!(one.contains("peer: home2.example (down)"), "{one}");
    assert!(
        !one.contains("home.example (") && !one.contains("home3"),
        "{one}"
    );
    let json =
        hometun_lab::ike_lab::hometun(&["status", "home.example", "--config", config, "--json"])
            .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["peers"].as_array().unwrap().len(), 1, "{json:#}");
    assert_eq!(json["homes"].as_array().unwrap().len(), 1, "{json:#}");
    assert_eq!(json["homes"][0]["name"], "home.example", "{json:#}");
    // A name nobody knows: exit 1 and one line.
    let unknown = std::process::Command::new(hometun_lab::hometun_bin().unwrap())
        .args(["status", "nobody.example", "--config", config])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    let error = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        error.contains("the daemon knows no peer named nobody.example"),
        "{error}"
    );
    assert!(home.stop().unwrap().success());
    // A log written to a file has no colour codes.
    let log = server.log_text();
    assert!(!log.contains('\u{1b}'), "{log:?}");
    assert!(server.stop().unwrap().success());
}
