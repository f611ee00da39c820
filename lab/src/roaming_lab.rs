//! The roaming lab (docs/ARCHITECTURE.md, "Roaming"): two `hometun forwarder --static`
//! processes with the roaming switches on, a home and a VPS with an ISP routing between two
//! documentation subnets, and an attacker attached to the ISP ([`RoamingNet`], which the lab
//! with the full daemons in [`crate::roaming_ike_lab`] shares).
//!
//! ```text
//!  home ns: hometun0 2001:db8:1::2    h0 198.51.100.2/24 ── ih 198.51.100.1 ┐
//!                                                                   isp ns (routes; NAT with
//!  vps ns:  hometun0 2001:db8:ffff::1 v0 203.0.113.2/24 ── iv 203.0.113.1 ┤  masquerade on iv)
//!                                                                        │
//!  attacker ns:                       a0 192.0.2.66/24  ── ia 192.0.2.1  ┘
//! ```
//!
//! The home's forwarder follows its local address; the VPS's accepts moves. Over raw ESP the
//! home's address changes on h0 (a second address, then the first deleted, with
//! `promote_secondaries`); behind NAT (ESP in UDP 4500) the NAT's public address changes on iv.
//! The VPS knows a second client (peer 2, 2001:db8:2::/64) that never runs: the target of the
//! "NA for another client" attack.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use hometun_control::{CounterReport, Endpoint, PeerId, Request, Response, RoamingReport};
use hometun_forwarder::server::ControlClient;

use crate::{Guarded, Netns, hometun_bin, veth, wait_for};

pub use crate::monotonic_ns;

/// The home's first outer address.
pub const HOME_FIRST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The ISP's address on the home's subnet (the home's gateway).
pub const ISP_HOME_SIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The ISP's address on the VPS's subnet (and the NAT's first public address).
pub const ISP_VPS_SIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The VPS's outer address.
pub const VPS_OUTER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// The attacker's address.
pub const ATTACKER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 66);
/// The ISP's address on the attacker's subnet.
pub const ISP_ATTACKER_SIDE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The home's inner (tunnel) address.
pub const HOME_INNER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// The VPS's inner address.
pub const VPS_INNER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
/// The second client's tunnel address (peer 2; it never runs).
pub const OTHER_CLIENT_INNER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
/// The home's peer id on the VPS.
pub const HOME_PEER: PeerId = PeerId(1);
/// The other client's peer id on the VPS.
pub const OTHER_PEER: PeerId = PeerId(2);
/// SPI of packets from home to the VPS (the VPS's inbound SPI of the home's pair).
pub const SPI_HOME_TO_VPS: u32 = 0x3001;
/// SPI of packets from the VPS to home.
pub const SPI_VPS_TO_HOME: u32 = 0x3002;
/// KEYMAT from home to the VPS.
pub const KEY_HOME_TO_VPS: &str = "101112131415161718191a1b1c1d1e1f3a3b3c3d";
/// KEYMAT from the VPS to home.
pub const KEY_VPS_TO_HOME: &str = "e0e1e2e3e4e5e6e7e8e9eaebecedeeef4a4b4c4d";

/// How the home reaches the VPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path4 {
    /// Routed, raw ESP (IP protocol 50).
    Routed,
    /// Behind the ISP's NAT (masquerade), ESP in UDP 4500.
    Nat,
}

/// Options of a lab.
#[derive(Debug, Clone, Copy)]
pub struct LabOptions {
    /// Routed (raw ESP) or behind NAT (UDP).
    pub path: Path4,
    /// Bind the home's sockets to its address (so a change needs a re-bind).
    pub bind_home: bool,
    /// Extra forwarder flags (e.g. `--no-offload`), for both.
    pub extra_args: &'static [&'static str],
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            path: Path4::Routed,
            bind_home: true,
            extra_args: &[],
        }
    }
}

/// The running lab; dropping it kills the forwarders and deletes the namespaces.
pub struct RoamingLab {
    // Fields drop in order: processes before the namespaces they run in.
    forwarders: Vec<Guarded>,
    /// The home namespace.
    pub home: Netns,
    /// The ISP namespace (router, NAT).
    pub isp: Netns,
    /// The VPS namespace.
    pub vps: Netns,
    /// The attacker's namespace.
    pub attacker: Netns,
    dir: tempfile::TempDir,
    options: LabOptions,
    home_address: Ipv4Addr,
    public_address: Ipv4Addr,
}

fn home_file(options: &LabOptions) -> String {
    let bind = if options.bind_home {
        format!("bind_ipv4 = \"{HOME_FIRST}\"\n")
    } else {
        String::new()
    };
    let encap = match options.path {
        Path4::Routed => "encap = \"raw\"\n".to_string(),
        Path4::Nat => "encap = \"udp\"\nnat_keepalive_seconds = 1\n".to_string(),
    };
    format!(
        r#"[interface]
addresses = ["fe80::2/64", "{HOME_INNER}/64"]
{bind}
[roaming]
follow_local_address = true

[[sa]]
peer = 1
spi_in = {SPI_VPS_TO_HOME}
spi_out = {SPI_HOME_TO_VPS}
alg = "aes128gcm16"
key_in = "{KEY_VPS_TO_HOME}"
key_out = "{KEY_HOME_TO_VPS}"
local_ts = ["2001:db8:1::/64"]
remote_ts = ["::/0"]
local = "{HOME_FIRST}"
remote = "{VPS_OUTER}"
{encap}"#
    )
}

fn vps_file(options: &LabOptions) -> String {
    let (remote, encap) = match options.path {
        Path4::Routed => (HOME_FIRST, "encap = \"raw\"\n"),
        Path4::Nat => (ISP_VPS_SIDE, "encap = \"udp\"\n"),
    };
    format!(
        r#"[interface]
addresses = ["fe80::1/64", "{VPS_INNER}/128"]
bind_ipv4 = "{VPS_OUTER}"

[roaming]
accept_moves = true

[[sa]]
peer = 1
spi_in = {SPI_HOME_TO_VPS}
spi_out = {SPI_VPS_TO_HOME}
alg = "aes128gcm16"
key_in = "{KEY_HOME_TO_VPS}"
key_out = "{KEY_VPS_TO_HOME}"
local_ts = ["::/0"]
remote_ts = ["2001:db8:1::/64"]
local = "{VPS_OUTER}"
remote = "{remote}"
{encap}
[[sa]]
peer = 2
spi_in = 0x4001
spi_out = 0x4002
alg = "aes128gcm16"
key_in = "2021222324252627282920212223242526272829"
key_out = "3031323334353637383930313233343536373839"
local_ts = ["::/0"]
remote_ts = ["2001:db8:2::/64"]
local = "{VPS_OUTER}"
remote = "198.51.100.20"
encap = "raw"
"#
    )
}

/// The network of the roaming labs: home, ISP (routing, and NAT on its VPS side for
/// [`Path4::Nat`]), VPS and attacker, each in its namespace.
pub struct RoamingNet {
    /// The home.
    pub home: Netns,
    /// The ISP (router, NAT).
    pub isp: Netns,
    /// The VPS.
    pub vps: Netns,
    /// The attacker.
    pub attacker: Netns,
}

impl RoamingNet {
    /// Namespaces tagged `<prefix>h`, `<prefix>i`, `<prefix>v`, `<prefix>a`, their links,
    /// addresses and routes, and the NAT for [`Path4::Nat`].
    pub fn build(prefix: &str, path: Path4) -> anyhow::Result<Self> {
        let home = Netns::new(&format!("{prefix}h"))?;
        let isp = Netns::new(&format!("{prefix}i"))?;
        let vps = Netns::new(&format!("{prefix}v"))?;
        let attacker = Netns::new(&format!("{prefix}a"))?;
        veth(&home, "h0", &isp, "ih")?;
        veth(&vps, "v0", &isp, "iv")?;
        veth(&attacker, "a0", &isp, "ia")?;
        for (ns, dev, address) in [
            (&home, "h0", format!("{HOME_FIRST}/24")),
            (&isp, "ih", format!("{ISP_HOME_SIDE}/24")),
            (&isp, "iv", format!("{ISP_VPS_SIDE}/24")),
            (&isp, "ia", format!("{ISP_ATTACKER_SIDE}/24")),
            (&vps, "v0", format!("{VPS_OUTER}/24")),
            (&attacker, "a0", format!("{ATTACKER}/24")),
        ] {
            ns.ip(&["addr", "add", &address, "dev", dev])?;
            ns.ip(&["link", "set", dev, "up"])?;
        }
        // A second address on the same subnet must take over when the first goes.
        home.sysctl("net.ipv4.conf.h0.promote_secondaries=1")?;
        isp.sysctl("net.ipv4.conf.iv.promote_secondaries=1")?;
        isp.sysctl("net.ipv4.ip_forward=1")?;
        // The attacker sends with forged sources: no reverse-path filter at the ISP.
        for dev in ["all", "default", "ia", "ih", "iv"] {
            isp.sysctl(&format!("net.ipv4.conf.{dev}.rp_filter=0"))?;
        }
        home.ip(&["route", "add", "default", "via", &ISP_HOME_SIDE.to_string()])?;
        vps.ip(&["route", "add", "default", "via", &ISP_VPS_SIDE.to_string()])?;
        attacker.ip(&[
            "route",
            "add",
            "default",
            "via",
            &ISP_ATTACKER_SIDE.to_string(),
        ])?;
        if path == Path4::Nat {
            isp.nft("table ip nat {\n chain postrouting {\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname \"iv\" ip saddr 198.51.100.0/24 masquerade\n }\n}\n")?;
        }
        Ok(RoamingNet {
            home,
            isp,
            vps,
            attacker,
        })
    }
}

impl RoamingLab {
    /// Builds the namespaces, links, routes (and the NAT), and starts both forwarders.
    pub fn start(options: LabOptions) -> anyhow::Result<Self> {
        let RoamingNet {
            home,
            isp,
            vps,
            attacker,
        } = RoamingNet::build("r", options.path)?;
        let dir = tempfile::tempdir()?;
        let mut lab = RoamingLab {
            forwarders: Vec::new(),
            home,
            isp,
            vps,
            attacker,
            dir,
            options,
            home_address: HOME_FIRST,
            public_address: ISP_VPS_SIDE,
        };
        lab.start_forwarder("vps", &vps_file(&options))?;
        lab.start_forwarder("home", &home_file(&options))?;
        Ok(lab)
    }

    fn start_forwarder(&mut self, name: &str, config: &str) -> anyhow::Result<()> {
        let file = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, config)?;
        let socket = self.socket(name);
        let ns = if name == "home" {
            &self.home
        } else {
            &self.vps
        };
        let mut command = ns.command(&hometun_bin()?);
        // The roaming report lines the lab reads are debug lines.
        command
            .env("RUST_LOG", "info,hometun_forwarder::roaming=debug")
            .arg("forwarder")
            .arg("--control")
            .arg(&socket)
            .arg("--static")
            .arg(&file)
            .args(self.options.extra_args);
        let child = Guarded::spawn(command, name, &self.log(name))?;
        self.forwarders.push(child);
        if !wait_for(Duration::from_secs(10), || {
            ControlClient::connect(&socket).is_ok()
        }) {
            bail!(
                "forwarder {name} did not come up: {}",
                std::fs::read_to_string(self.log(name)).unwrap_or_default()
            );
        }
        Ok(())
    }

    /// The control socket of "home" or "vps".
    pub fn socket(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.sock"))
    }

    /// The log file of "home" or "vps".
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// The lab's scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Both logs, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- home log:\n{}\n--- vps log:\n{}",
            std::fs::read_to_string(self.log("home")).unwrap_or_default(),
            std::fs::read_to_string(self.log("vps")).unwrap_or_default()
        )
    }

    /// The home's current outer address (behind NAT: its private one).
    pub fn home_address(&self) -> Ipv4Addr {
        self.home_address
    }

    /// Where the VPS sees the home now: its address, or behind NAT the NAT's public one.
    pub fn home_seen_from_vps(&self) -> Ipv4Addr {
        match self.options.path {
            Path4::Routed => self.home_address,
            Path4::Nat => self.public_address,
        }
    }

    /// Counters of "home" or "vps" over the control socket.
    pub fn counters(&self, name: &str) -> anyhow::Result<CounterReport> {
        let stream = std::os::unix::net::UnixStream::connect(self.socket(name))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut client = ControlClient::from_stream(stream);
        match client.request(Request::GetCounters)?.0 {
            Ok(Response::Counters(report)) => Ok(report),
            other => bail!("GetCounters: {other:?}"),
        }
    }

    /// The VPS's endpoint for a peer.
    pub fn vps_endpoint(&self, peer: PeerId) -> anyhow::Result<Endpoint> {
        self.counters("vps")?
            .sas
            .iter()
            .find(|s| s.peer == peer)
            .map(|s| s.endpoint)
            .context("no SA of that peer on the VPS")
    }

    /// The newest roaming report a forwarder logged (the forwarder logs one whenever its
    /// roaming counters change; `CounterReport` does not carry them yet).
    pub fn roaming_report(&self, name: &str) -> Option<RoamingReport> {
        let log = std::fs::read_to_string(self.log(name)).ok()?;
        log.lines()
            .filter_map(|line| line.split_once("roaming: report ").map(|(_, json)| json))
            .next_back()
            .and_then(|json| serde_json::from_str(json.trim()).ok())
    }

    /// Waits until the newest roaming report of `name` satisfies `condition`.
    pub fn wait_report(
        &self,
        name: &str,
        timeout: Duration,
        condition: impl Fn(&RoamingReport) -> bool,
    ) -> Option<RoamingReport> {
        let mut last = None;
        wait_for(timeout, || {
            last = self.roaming_report(name);
            last.as_ref().is_some_and(&condition)
        });
        last.filter(|r| condition(r))
    }

    /// The home's address changes to `new` (same subnet): added, then the old one deleted, so
    /// the kernel promotes the new one (`promote_secondaries`). Returns CLOCK_MONOTONIC (ns)
    /// just before the deletion, the moment the old address stops working.
    pub fn change_home_address(&mut self, new: Ipv4Addr) -> anyhow::Result<u64> {
        let old = self.home_address;
        self.home
            .ip(&["addr", "add", &format!("{new}/24"), "dev", "h0"])?;
        let at = monotonic_ns();
        self.home
            .ip(&["addr", "del", &format!("{old}/24"), "dev", "h0"])?;
        self.home_address = new;
        Ok(at)
    }

    /// The NAT's public address changes to `new`: added on the ISP's VPS side, then the old one
    /// deleted (masquerade forgets the mappings of a deleted address, and the new one is
    /// promoted). The home sees nothing. Returns CLOCK_MONOTONIC (ns) before the deletion.
    pub fn change_public_address(&mut self, new: Ipv4Addr) -> anyhow::Result<u64> {
        let old = self.public_address;
        self.isp
            .ip(&["addr", "add", &format!("{new}/24"), "dev", "iv"])?;
        let at = monotonic_ns();
        self.isp
            .ip(&["addr", "del", &format!("{old}/24"), "dev", "iv"])?;
        self.public_address = new;
        Ok(at)
    }
}

/// What a ping run around an address change shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Outage {
    /// Echo Requests sent.
    pub sent: usize,
    /// Requests without a reply (the last second's excluded: still in flight at the end).
    pub lost: usize,
    /// Milliseconds between the last reply received before the change and the first after.
    pub gap_ms: f64,
    /// The largest round-trip time of a reply, in ms.
    pub max_rtt_ms: f64,
}

impl std::fmt::Display for Outage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} lost of {} pings; {:.1} ms between the last reply before the change and the first after; max RTT {:.1} ms",
            self.lost, self.sent, self.gap_ms, self.max_rtt_ms
        )
    }
}

/// Reads `hometun-roamtool ping` output and measures the outage around `change_ns`.
pub fn outage(output: &str, change_ns: u64) -> anyhow::Result<Outage> {
    let mut sent = None;
    let mut replies: Vec<(usize, u64, u64)> = Vec::new();
    for line in output.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["sent", n] => sent = Some(n.parse::<usize>()?),
            ["reply", seq, sent_ns, received_ns] => {
                replies.push((seq.parse()?, sent_ns.parse()?, received_ns.parse()?))
            }
            _ => {}
        }
    }
    let sent = sent.context("no `sent` line from the pinger")?;
    let mut answered = vec![false; sent];
    for (seq, _, _) in &replies {
        if let Some(slot) = answered.get_mut(*seq) {
            *slot = true;
        }
    }
    let lost = answered.iter().filter(|a| !**a).count();
    let before = replies
        .iter()
        .filter(|r| r.2 <= change_ns)
        .map(|r| r.2)
        .max()
        .context("no reply before the change")?;
    let after = replies
        .iter()
        .filter(|r| r.2 > change_ns)
        .map(|r| r.2)
        .min()
        .context("no reply after the change")?;
    let max_rtt = replies.iter().map(|r| r.2 - r.1).max().unwrap_or(0);
    Ok(Outage {
        sent,
        lost,
        gap_ms: (after - before) as f64 / 1e6,
        max_rtt_ms: max_rtt as f64 / 1e6,
    })
}

/// The roaming tests' load across an address change: a TCP transfer from `home` to the VPS
/// (`hometun-roamtool tcp-send` into `hometun-nettool tcp-recv` on port 5001, SHA-256 on both
/// ends) and `hometun-roamtool ping` every 20 ms beside it.
pub struct TransferUnderPing {
    receiver: Guarded,
    sender: Guarded,
    pinger: Guarded,
}

/// What the transfer and the ping saw.
pub struct TransferOutcome {
    /// The pinger's output, for [`outage`].
    pub pings: String,
    /// `BYTES SHA256` as the sender counted.
    pub sent: String,
    /// `BYTES SHA256` as the receiver counted.
    pub received: String,
}

/// The tools the roaming tests run, by path (each test crate knows its own binaries).
pub struct RoamingTools<'a> {
    /// `hometun-nettool`.
    pub nettool: &'a Path,
    /// `hometun-roamtool`.
    pub roamtool: &'a Path,
}

impl TransferUnderPing {
    /// Starts the receiver in `vps`, then the sender (`bytes` at `mbit` Mbit/s) and `pings`
    /// pings to `to` in `home`; returns once all are running.
    pub fn start(
        tools: &RoamingTools<'_>,
        home: &Netns,
        vps: &Netns,
        to: Ipv6Addr,
        (bytes, mbit): (u64, u64),
        pings: u32,
    ) -> anyhow::Result<Self> {
        let mut command = vps.command(tools.nettool);
        command.args(["tcp-recv", "5001"]);
        let mut receiver = Guarded::spawn_piped(command, "tcp-recv")?;
        anyhow::ensure!(receiver.read_line()? == "ready", "tcp-recv did not start");
        let mut command = home.command(tools.roamtool);
        command.args([
            "tcp-send",
            &to.to_string(),
            "5001",
            &bytes.to_string(),
            &mbit.to_string(),
        ]);
        let sender = Guarded::spawn_piped(command, "tcp-send")?;
        let mut command = home.command(tools.roamtool);
        command.args(["ping", &to.to_string(), "20", &pings.to_string()]);
        let mut pinger = Guarded::spawn_piped(command, "ping")?;
        anyhow::ensure!(pinger.read_line()? == "ready", "ping did not start");
        Ok(Self {
            receiver,
            sender,
            pinger,
        })
    }

    /// Waits for the pinger, then the sender (at most `send_timeout`), then the receiver.
    pub fn finish(self, send_timeout: Duration) -> anyhow::Result<TransferOutcome> {
        let pings = self.pinger.wait(Duration::from_secs(15))?;
        let sent = self
            .sender
            .wait(send_timeout)
            .context("tcp-send did not finish")?;
        anyhow::ensure!(sent.status.success(), "tcp-send failed: {sent:?}");
        let received = self.receiver.wait(Duration::from_secs(30))?;
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_string();
        Ok(TransferOutcome {
            pings: String::from_utf8_lossy(&pings.stdout).into_owned(),
            sent: text(&sent.stdout),
            received: text(&received.stdout),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outage_from_ping_lines() {
        let ms = 1_000_000u64;
        let text = format!(
            "ready\nsent 5\nreply 0 {} {}\nreply 1 {} {}\nreply 3 {} {}\nreply 4 {} {}\n",
            0,
            ms,
            20 * ms,
            21 * ms,
            60 * ms,
            62 * ms,
            80 * ms,
            81 * ms
        );
        let o = outage(&text, 30 * ms).unwrap();
        assert_eq!(o.sent, 5);
        assert_eq!(o.lost, 1);
        assert!((o.gap_ms - 41.0).abs() < 1e-9);
        assert!((o.max_rtt_ms - 2.0).abs() < 1e-9);
        assert!(outage("sent 1\n", 0).is_err());
    }
}
