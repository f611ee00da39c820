//! The five-namespace lab of the home's LAN: a LAN host behind the home router, an ISP between
//! the home and the VPS, and an Internet host beyond the VPS, in either upstream mode.
//!
//! ```text
//!  lan ns: eth0 (SLAAC) ── lan0 home ns eth0 198.51.100.2 ── isp ns ── 203.0.113.1 eth0 vps ns
//!                                                                                up0
//!  routed:    vps up0 2001:db8:ff::2/64, Internet host 2001:db8:ff::1/64,          │
//!             which routes the pool 2001:db8:100::/48 to the VPS                   │
//!  ndp-proxy: the provider's link holds 2001:db8:200::/64 (the pool, one home);    │
//!             vps up0 2001:db8:200::2/128, gateway fe80::1,                        │
//!             Internet host 2001:db8:ff::1 on its loopback ─────────────── eth0 inet ns
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hometun_config::{LanSection, UpstreamMode};
use ipnet::Ipv6Net;

use crate::ike_lab::{Daemon, Pki, edit_client, edit_server, hometun};
use crate::{Netns, run, wait_for};

/// The VPS's outer address.
pub const VPS_OUTER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The ISP's address towards the VPS.
pub const ISP_VPS_SIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// The home's outer address.
pub const HOME_OUTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The ISP's address towards the home.
pub const ISP_HOME_SIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The Internet host's address.
pub const INTERNET_HOST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1);
/// The VPS's address in routed mode (on the link to the Internet host).
pub const VPS_ROUTED: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 2);
/// The VPS's address in ndp-proxy mode (a /128 of the provider's /64).
pub const VPS_PROXIED: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 2);
/// The provider's gateway in ndp-proxy mode.
pub const GATEWAY: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// The LAN interface on the home router.
pub const LAN_INTERFACE: &str = "lan0";
/// The DNS server the LAN is told about.
pub const LAN_DNS: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x53, 0, 0, 0, 0, 0x53);

/// How the provider reaches the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The provider routes `2001:db8:100::/48` to the VPS; homes get /56s.
    Routed,
    /// The provider's link holds `2001:db8:200::/64`, which goes whole to the one home.
    NdpProxy,
}

impl Mode {
    /// The pool.
    pub fn pool(self) -> Ipv6Net {
        match self {
            Mode::Routed => "2001:db8:100::/48",
            Mode::NdpProxy => "2001:db8:200::/64",
        }
        .parse()
        .expect("literal")
    }

    fn prefix_len(self) -> u8 {
        match self {
            Mode::Routed => 56,
            Mode::NdpProxy => 64,
        }
    }

    /// The home's prefix (the first the PKI hands out).
    pub fn home_prefix(self) -> Ipv6Net {
        match self {
            Mode::Routed => "2001:db8:100:100::/56",
            Mode::NdpProxy => "2001:db8:200::/64",
        }
        .parse()
        .expect("literal")
    }

    /// The LAN's /64 (subnet 0 of the home's prefix).
    pub fn lan_subnet(self) -> Ipv6Net {
        Ipv6Net::new(self.home_prefix().network(), 64).expect("64 is a valid length")
    }

    /// The VPS's global address.
    pub fn vps_address(self) -> Ipv6Addr {
        match self {
            Mode::Routed => VPS_ROUTED,
            Mode::NdpProxy => VPS_PROXIED,
        }
    }
}

/// The namespaces, the PKI and the configs. Dropping it kills what still runs and deletes the
/// namespaces.
pub struct LanLab {
    /// The LAN host.
    pub lan: Netns,
    /// The home router.
    pub home: Netns,
    /// The ISP between home and VPS.
    pub isp: Netns,
    /// The VPS.
    pub vps: Netns,
    /// The Internet host (and, in ndp-proxy mode, the provider's router).
    pub inet: Netns,
    /// The upstream mode.
    pub mode: Mode,
    /// server.toml.
    pub server_toml: PathBuf,
    /// client.toml.
    pub client_toml: PathBuf,
    dir: tempfile::TempDir,
}

fn veth(a: &Netns, a_name: &str, b: &Netns, b_name: &str) -> anyhow::Result<()> {
    run(
        "ip",
        &[
            "link",
            "add",
            a_name,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            b_name,
            "netns",
            b.name(),
        ],
    )?;
    a.ip(&["link", "set", a_name, "up"])?;
    b.ip(&["link", "set", b_name, "up"])?;
    Ok(())
}

/// `sysctl -w KEY=VALUE` in `ns`.
pub fn sysctl(ns: &Netns, key: &str, value: &str) -> anyhow::Result<()> {
    let output = ns.output("sysctl", &["-q", "-w", &format!("{key}={value}")])?;
    if !output.status.success() {
        bail!(
            "sysctl {key}={value} in {}: {}",
            ns.name(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// `sysctl -n KEY` in `ns`.
pub fn sysctl_value(ns: &Netns, key: &str) -> anyhow::Result<String> {
    let output = ns.output("sysctl", &["-n", key])?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// `ip ARGS` in `ns`, its standard output as text (empty on failure).
pub fn ip_text(ns: &Netns, args: &[&str]) -> String {
    ns.output("ip", args)
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// What a router's daemon may change in `ns`, as text to compare before and after: global
/// addresses, routes other than the kernel's, and the sysctls named in `sysctls` (link-local
/// addresses come and go with the links, not with the daemons).
pub fn network_state(ns: &Netns, sysctls: &[&str]) -> String {
    let mut text = String::new();
    text += &ip_text(ns, &["-6", "-o", "addr", "show"])
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() > 3 && !w[3].starts_with("fe80:"))
        .map(|w| format!("{} {}\n", w[1], w[3]))
        .collect::<String>();
    text += &ip_text(ns, &["-6", "route", "show", "table", "all"])
        .lines()
        .filter(|l| {
            !l.contains("proto kernel") && !l.starts_with("local") && !l.starts_with("multicast")
        })
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    for key in sysctls {
        text += &format!("{key}={}\n", sysctl_value(ns, key).unwrap_or_default());
    }
    text
}

impl LanLab {
    /// The namespaces, links and addresses of `mode`; a PKI; the server's config with
    /// `[upstream]` for `mode` and the home's with one `[[lan]]` on `lan0` (RDNSS
    /// 2001:db8:53::53, DNSSL home.example).
    pub fn new(mode: Mode) -> anyhow::Result<Self> {
        let lan = Netns::new("l")?;
        let home = Netns::new("h")?;
        let isp = Netns::new("i")?;
        let vps = Netns::new("v")?;
        let inet = Netns::new("n")?;
        // DAD would hold each new address back a second or more; nothing here duplicates one.
        for ns in [&lan, &home, &isp, &vps, &inet] {
            sysctl(ns, "net.ipv6.conf.all.accept_dad", "0")?;
            sysctl(ns, "net.ipv6.conf.default.accept_dad", "0")?;
        }
        veth(&lan, "eth0", &home, LAN_INTERFACE)?;
        veth(&home, "eth0", &isp, "h0")?;
        veth(&isp, "v0", &vps, "eth0")?;
        veth(&vps, "up0", &inet, "eth0")?;
        // The LAN host: SLAAC from the home's advertisements, as a host that forwards would
        // also take them (accept_ra 2).
        sysctl(&lan, "net.ipv6.conf.eth0.accept_ra", "2")?;
        // IPv4 outside: home -- isp -- vps.
        home.ip(&["addr", "add", &format!("{HOME_OUTER}/24"), "dev", "eth0"])?;
        home.ip(&["route", "add", "default", "via", &ISP_HOME_SIDE.to_string()])?;
        isp.ip(&["addr", "add", &format!("{ISP_HOME_SIDE}/24"), "dev", "h0"])?;
        isp.ip(&["addr", "add", &format!("{ISP_VPS_SIDE}/24"), "dev", "v0"])?;
        sysctl(&isp, "net.ipv4.ip_forward", "1")?;
        vps.ip(&["addr", "add", &format!("{VPS_OUTER}/24"), "dev", "eth0"])?;
        vps.ip(&["route", "add", "default", "via", &ISP_VPS_SIDE.to_string()])?;
        // IPv6 upstream.
        let pool = mode.pool().to_string();
        match mode {
            Mode::Routed => {
                vps.ip(&[
                    "-6",
                    "addr",
                    "add",
                    &format!("{VPS_ROUTED}/64"),
                    "dev",
                    "up0",
                ])?;
                vps.ip(&[
                    "-6",
                    "route",
                    "add",
                    "default",
                    "via",
                    &INTERNET_HOST.to_string(),
                ])?;
                inet.ip(&[
                    "-6",
                    "addr",
                    "add",
                    &format!("{INTERNET_HOST}/64"),
                    "dev",
                    "eth0",
                ])?;
                inet.ip(&["-6", "route", "add", &pool, "via", &VPS_ROUTED.to_string()])?;
            }
            Mode::NdpProxy => {
                inet.ip(&["-6", "addr", "add", &format!("{GATEWAY}/64"), "dev", "eth0"])?;
                inet.ip(&[
                    "-6",
                    "addr",
                    "add",
                    &format!("{INTERNET_HOST}/128"),
                    "dev",
                    "lo",
                ])?;
                inet.ip(&["-6", "route", "add", &pool, "dev", "eth0"])?;
                vps.ip(&[
                    "-6",
                    "addr",
                    "add",
                    &format!("{VPS_PROXIED}/128"),
                    "dev",
                    "up0",
                ])?;
                vps.ip(&[
                    "-6",
                    "route",
                    "add",
                    "default",
                    "via",
                    &GATEWAY.to_string(),
                    "dev",
                    "up0",
                ])?;
            }
        }
        // Links come up with their link-local addresses a moment later (the kernel batches
        // carrier changes): wait, so that what the tests compare starts from a settled lab.
        for (ns, device) in [
            (&lan, "eth0"),
            (&home, LAN_INTERFACE),
            (&vps, "up0"),
            (&inet, "eth0"),
        ] {
            if !wait_for(Duration::from_secs(5), || {
                ip_text(ns, &["-6", "addr", "show", "dev", device, "scope", "link"])
                    .contains("fe80:")
            }) {
                bail!("{device} in {} has no link-local address", ns.name());
            }
        }
        let dir = tempfile::tempdir()?;
        let pki_dir = dir.path().join("ca");
        hometun(&[
            "pki",
            "init",
            "--dir",
            path(&pki_dir)?,
            "--server-ipv4",
            &VPS_OUTER.to_string(),
            "--pool",
            &pool,
            "--prefix-len",
            &mode.prefix_len().to_string(),
            "--server-name",
            "vps.example",
        ])?;
        let pki = Pki {
            dir: pki_dir.clone(),
        };
        let client_toml = pki.client(&dir.path().join("home"), "home.example")?;
        let server_toml = pki.server_toml();
        edit_server(&server_toml, |c| {
            // No enrollment listener in this lab.
            c.enroll = None;
            if mode == Mode::NdpProxy {
                c.upstream.mode = UpstreamMode::NdpProxy;
                c.upstream.interface = Some("up0".into());
            }
        })?;
        edit_client(&client_toml, |c| {
            c.lan.push(LanSection {
                interface: LAN_INTERFACE.into(),
                subnet: 0,
                dns: vec![LAN_DNS],
                search: vec!["home.example".into()],
                advertise: true,
            });
        })?;
        Ok(LanLab {
            lan,
            home,
            isp,
            vps,
            inet,
            mode,
            server_toml,
            client_toml,
            dir,
        })
    }

    /// The lab's scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the server; waits until it listens.
    pub fn start_server(&self) -> anyhow::Result<Daemon> {
        let daemon = Daemon::start(
            &self.vps,
            "server",
            &self.server_toml,
            &self.dir().join("server.log"),
        )?;
        if !daemon.wait_log("IKE on", Duration::from_secs(20)) {
            bail!("the server did not come up:\n{}", daemon.log_text());
        }
        Ok(daemon)
    }

    /// Starts the client.
    pub fn start_client(&self) -> anyhow::Result<Daemon> {
        Daemon::start(
            &self.home,
            "client",
            &self.client_toml,
            &self.dir().join("client.log"),
        )
    }

    /// The LAN host's addresses in the LAN's /64, with whether each is deprecated.
    pub fn lan_host_addresses(&self) -> Vec<(Ipv6Addr, bool)> {
        let text = ip_text(
            &self.lan,
            &["-6", "addr", "show", "dev", "eth0", "scope", "global"],
        );
        let subnet = self.mode.lan_subnet();
        text.lines()
            .filter_map(|line| {
                let line = line.trim();
                let rest = line.strip_prefix("inet6 ")?;
                let address: Ipv6Addr = rest.split('/').next()?.parse().ok()?;
                subnet
                    .contains(&address)
                    .then_some((address, line.contains("deprecated")))
            })
            .collect()
    }

    /// Waits for the LAN host's SLAAC address in the LAN's /64 (not deprecated, not
    /// tentative); returns it and how long it took from `since`.
    pub fn wait_slaac(
        &self,
        since: Instant,
        timeout: Duration,
    ) -> anyhow::Result<(Ipv6Addr, Duration)> {
        let mut found = None;
        wait_for(timeout, || {
            found = self
                .lan_host_addresses()
                .into_iter()
                .find(|(_, deprecated)| !deprecated)
                .map(|(a, _)| a);
            found.is_some()
        });
        let address = found.with_context(|| {
            format!(
                "the LAN host has no address in {} after {timeout:?}:\n{}",
                self.mode.lan_subnet(),
                ip_text(&self.lan, &["-6", "addr", "show", "dev", "eth0"])
            )
        })?;
        Ok((address, since.elapsed()))
    }
}

fn path(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("path is not UTF-8")
}

/// `ping` from `ns` to `addr` with `size` bytes of payload, the DF bit set, one try: its
/// output (success or not).
pub fn ping_output(ns: &Netns, addr: Ipv6Addr, size: usize) -> anyhow::Result<String> {
    let output = ns.output(
        "ping",
        &[
            "-6",
            "-c",
            "1",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            &size.to_string(),
            &addr.to_string(),
        ],
    )?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}
