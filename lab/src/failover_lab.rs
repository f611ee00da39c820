//! The lab of a home that fails over between two servers whose routes BGP carries: a LAN host
//! behind the home, two VPSes (A and B, each with hometun and BIRD), a core router running BIRD
//! with a BGP session to each VPS, and an Internet host behind the core. Both servers' configs
//! lie in the CA directory, so they share its registry file (which server holds the home), or
//! they share a PostgreSQL registry (`[registry] url`).
//!
//! ```text
//!  lan ns ── lan0 home ns eth0 198.51.100.2 ── isp ns ─┬─ 203.0.113.2  eth0 vps-a up0 ─┐
//!  (SLAAC)                                              └─ 203.0.113.18 eth0 vps-b up0 ─┤
//!                               2001:db8:ff:a::2/64 (AS 65001) ── to-a core (AS 65000) ┤
//!                               2001:db8:ff:b::2/64 (AS 65002) ── to-b core            │
//!                      Internet host 2001:db8:ff::2/64 ── n0 core 2001:db8:ff::1/64 ────┘
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use hometun_config::LanSection;
use ipnet::Ipv6Net;

use crate::bird::{Bird, vps_config};
use crate::ike_lab::{Daemon, Pki, edit_client, edit_server, hometun, write_private};
use crate::lan_lab::{LAN_INTERFACE, ip_text, sysctl};
use crate::{Netns, wait_for, workspace_root};

/// The home's outer address.
pub const HOME_OUTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The ISP's address towards the home.
pub const ISP_HOME_SIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The pool both servers serve.
pub const POOL: &str = "2001:db8:100::/48";
/// The Internet host.
pub const INTERNET_HOST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 2);
/// The core router's address towards the Internet host.
pub const CORE_INTERNET_SIDE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1);
/// The core router's AS.
pub const CORE_AS: u32 = 65000;

/// One of the two servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vps {
    /// The first server of the home's list.
    A,
    /// The second.
    B,
}

impl Vps {
    /// Its IKE identity.
    pub fn name(self) -> &'static str {
        match self {
            Vps::A => "a.example",
            Vps::B => "b.example",
        }
    }

    /// Its outer IPv4 address.
    pub fn outer(self) -> Ipv4Addr {
        match self {
            Vps::A => Ipv4Addr::new(203, 0, 113, 2),
            Vps::B => Ipv4Addr::new(203, 0, 113, 18),
        }
    }

    /// The ISP's address towards it (a /28 each).
    fn isp_side(self) -> Ipv4Addr {
        match self {
            Vps::A => Ipv4Addr::new(203, 0, 113, 1),
            Vps::B => Ipv4Addr::new(203, 0, 113, 17),
        }
    }

    /// Its address on the link to the core router.
    pub fn link_address(self) -> Ipv6Addr {
        match self {
            Vps::A => Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0xa, 0, 0, 0, 2),
            Vps::B => Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0xb, 0, 0, 0, 2),
        }
    }

    /// The core router's address on that link.
    pub fn core_address(self) -> Ipv6Addr {
        match self {
            Vps::A => Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0xa, 0, 0, 0, 1),
            Vps::B => Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0xb, 0, 0, 0, 1),
        }
    }

    /// Its AS.
    pub fn asn(self) -> u32 {
        match self {
            Vps::A => 65001,
            Vps::B => 65002,
        }
    }

    /// The core router's BGP protocol name for it.
    pub fn protocol(self) -> &'static str {
        match self {
            Vps::A => "a",
            Vps::B => "b",
        }
    }

    /// Its server.toml in the CA directory (beside the other's: one registry file).
    fn config_name(self) -> &'static str {
        match self {
            Vps::A => "server-a.toml",
            Vps::B => "server-b.toml",
        }
    }
}

/// The namespaces, the PKI, the configs and the BIRDs. Dropping it stops the BIRDs and deletes
/// the namespaces with everything still in them.
pub struct FailoverLab {
    /// BIRD on the core router and on each VPS (first: they stop before their namespaces go).
    pub core_bird: Bird,
    /// BIRD on VPS A.
    pub bird_a: Bird,
    /// BIRD on VPS B.
    pub bird_b: Bird,
    /// The LAN host.
    pub lan: Netns,
    /// The home router.
    pub home: Netns,
    /// The ISP between the home and the VPSes.
    pub isp: Netns,
    /// VPS A.
    pub vps_a: Netns,
    /// VPS B.
    pub vps_b: Netns,
    /// The core router.
    pub core: Netns,
    /// The Internet host.
    pub inet: Netns,
    /// The home's client.toml.
    pub client_toml: PathBuf,
    /// The home's prefix (from its certificate).
    pub home_prefix: Ipv6Net,
    /// The CA directory (both server configs and, without a database, the registry).
    pub pki_dir: PathBuf,
    /// The registry's database, if the servers share one instead of the file.
    pub registry_url: Option<String>,
    dir: tempfile::TempDir,
}

impl FailoverLab {
    /// Builds the lab: namespaces and links, a CA with a certificate for each server, the
    /// home's certificate and client.toml listing A then B, and BIRD on the core and both VPSes
    /// with their BGP sessions established. `registry_url`: a PostgreSQL database for the
    /// registry instead of the CA directory's file. `client_ike` sets the home's liveness
    /// settings.
    pub fn new(
        registry_url: Option<&str>,
        client_ike: impl FnOnce(&mut hometun_config::IkeSection),
    ) -> anyhow::Result<Self> {
        let namespaces = Namespaces::new()?;
        let dir = tempfile::tempdir()?;
        let pki_dir = dir.path().join("ca");
        let outer = Vps::A.outer().to_string();
        let mut init = vec!["pki", "init", "--dir", arg(&pki_dir)?];
        if let Some(url) = registry_url {
            init.extend(["--registry", url]);
        }
        init.extend([
            "--server-ipv4",
            &outer,
            "--pool",
            POOL,
            "--prefix-len",
            "56",
            "--server-name",
            Vps::A.name(),
        ]);
        hometun(&init)?;
        server_configs(&pki_dir)?;
        let pki = Pki {
            dir: pki_dir.clone(),
        };
        let client_toml = pki.client(&dir.path().join("home"), "home.example")?;
        let mut home_prefix = None;
        edit_client(&client_toml, |c| {
            home_prefix = Some(c.client.prefix);
            c.client.server = hometun_config::OneOrMore::many(vec![Vps::A.outer(), Vps::B.outer()])
                .expect("two servers");
            c.client.server_name = hometun_config::OneOrMore::many(vec![
                Vps::A.name().to_string(),
                Vps::B.name().to_string(),
            ])
            .expect("two names");
            client_ike(&mut c.ike);
            c.lan.push(LanSection {
                interface: LAN_INTERFACE.into(),
                subnet: 0,
                dns: Vec::new(),
                search: Vec::new(),
                advertise: true,
            });
        })?;
        let home_prefix = home_prefix.context("client.toml has no prefix")?;
        let birds = dir.path().join("bird");
        std::fs::create_dir_all(&birds)?;
        let core_bird = Bird::start(&namespaces.core, &birds, "core", &core_config())?;
        let example = std::fs::read_to_string(workspace_root().join("examples/bird/bird-vps.conf"))
            .context("reading examples/bird/bird-vps.conf")?;
        let bird_a = Bird::start(
            &namespaces.vps_a,
            &birds,
            "vps-a",
            &vps_bird(&example, Vps::A)?,
        )?;
        let bird_b = Bird::start(
            &namespaces.vps_b,
            &birds,
            "vps-b",
            &vps_bird(&example, Vps::B)?,
        )?;
        if !wait_for(Duration::from_secs(30), || {
            core_bird.established(Vps::A.protocol()) && core_bird.established(Vps::B.protocol())
        }) {
            bail!(
                "the BGP sessions did not come up:\n{}\n--- core:\n{}\n--- vps-a:\n{}\n--- vps-b:\n{}",
                core_bird.birdc(&["show", "protocols"]).unwrap_or_default(),
                core_bird.log_text(),
                bird_a.log_text(),
                bird_b.log_text()
            );
        }
        let Namespaces {
            lan,
            home,
            isp,
            vps_a,
            vps_b,
            core,
            inet,
        } = namespaces;
        Ok(FailoverLab {
            core_bird,
            bird_a,
            bird_b,
            lan,
            home,
            isp,
            vps_a,
            vps_b,
            core,
            inet,
            client_toml,
            home_prefix,
            pki_dir,
            registry_url: registry_url.map(str::to_string),
            dir,
        })
    }

    /// The server the registry says holds `home`, if any.
    pub fn holder(&self, home: &str) -> anyhow::Result<Option<String>> {
        use hometun_pki::registry::Registry;
        let registry = match &self.registry_url {
            Some(url) => Registry::open(url)?,
            None => Registry::at(&self.pki_dir.join("registry.json")),
        };
        Ok(registry.holder(home)?.map(|h| h.server))
    }

    /// The server holding `home` once it is `expected`, or the last one seen after `timeout`:
    /// a server records a claim shortly after the home authenticated (its holder task
    /// gathers the claims of 50 ms into one registry change).
    pub fn wait_holder(
        &self,
        home: &str,
        expected: &str,
        timeout: std::time::Duration,
    ) -> anyhow::Result<Option<String>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let holder = self.holder(home)?;
            if holder.as_deref() == Some(expected) || std::time::Instant::now() >= deadline {
                return Ok(holder);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The lab's scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The namespace of `vps`.
    pub fn vps(&self, vps: Vps) -> &Netns {
        match vps {
            Vps::A => &self.vps_a,
            Vps::B => &self.vps_b,
        }
    }

    /// The server config of `vps`.
    pub fn server_toml(&self, vps: Vps) -> PathBuf {
        self.pki_dir.join(vps.config_name())
    }

    /// Starts the server on `vps` (its log `server-a.log`, `server-a-2.log` for a second run,
    /// ...); waits until it listens.
    pub fn start_server(&self, vps: Vps, run: u32) -> anyhow::Result<Daemon> {
        let log = self.dir().join(format!(
            "server-{}{}.log",
            vps.protocol(),
            if run > 1 {
                format!("-{run}")
            } else {
                String::new()
            }
        ));
        let daemon = Daemon::start(self.vps(vps), "server", &self.server_toml(vps), &log)?;
        if !daemon.wait_log("IKE on", Duration::from_secs(20)) {
            bail!(
                "server {} did not come up:\n{}",
                vps.name(),
                daemon.log_text()
            );
        }
        Ok(daemon)
    }

    /// Starts the home's client.
    pub fn start_client(&self) -> anyhow::Result<Daemon> {
        Daemon::start(
            &self.home,
            "client",
            &self.client_toml,
            &self.dir().join("client.log"),
        )
    }

    /// SIGKILL to every hometun process on `vps` (the server and its forwarder): a crash.
    pub fn kill_hometun(&self, vps: Vps) -> anyhow::Result<usize> {
        let mut killed = 0;
        for pid in self.vps(vps).pids() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "hometun" {
                // SAFETY: kill on a pid of a process this lab started.
                if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                    killed += 1;
                }
            }
        }
        if killed == 0 {
            bail!("no hometun process on {}", vps.name());
        }
        Ok(killed)
    }

    /// The LAN host's address in the LAN's /64 (SLAAC from the home's advertisements), waiting
    /// at most `timeout`.
    pub fn wait_lan_host_address(&self, timeout: Duration) -> anyhow::Result<Ipv6Addr> {
        let subnet = Ipv6Net::new(self.home_prefix.network(), 64)?;
        let mut found = None;
        wait_for(timeout, || {
            let text = ip_text(
                &self.lan,
                &["-6", "addr", "show", "dev", "eth0", "scope", "global"],
            );
            found = text.lines().find_map(|line| {
                let rest = line.trim().strip_prefix("inet6 ")?;
                let address: Ipv6Addr = rest.split('/').next()?.parse().ok()?;
                subnet.contains(&address).then_some(address)
            });
            found.is_some()
        });
        found.with_context(|| format!("the LAN host has no address in {subnet}"))
    }

    /// The BGP neighbours through which the core router's BIRD has the home's prefix, the best
    /// first (`a`, `b`).
    pub fn core_routes(&self) -> anyhow::Result<Vec<String>> {
        self.core_bird.routes(&self.home_prefix.to_string())
    }

    /// The core router's kernel route for the home's prefix (`ip -6 route show PREFIX`).
    pub fn core_kernel_route(&self) -> String {
        ip_text(
            &self.core,
            &["-6", "route", "show", &self.home_prefix.to_string()],
        )
    }

    /// The home's route on `vps`, as the kernel shows it (empty if none).
    pub fn vps_route(&self, vps: Vps) -> String {
        ip_text(
            self.vps(vps),
            &["-6", "route", "show", &self.home_prefix.to_string()],
        )
    }
}

/// The namespaces and links, before anything runs in them.
struct Namespaces {
    lan: Netns,
    home: Netns,
    isp: Netns,
    vps_a: Netns,
    vps_b: Netns,
    core: Netns,
    inet: Netns,
}

impl Namespaces {
    fn new() -> anyhow::Result<Self> {
        let ns = Namespaces {
            lan: Netns::new("l")?,
            home: Netns::new("h")?,
            isp: Netns::new("i")?,
            vps_a: Netns::new("a")?,
            vps_b: Netns::new("b")?,
            core: Netns::new("c")?,
            inet: Netns::new("n")?,
        };
        let all = [
            &ns.lan, &ns.home, &ns.isp, &ns.vps_a, &ns.vps_b, &ns.core, &ns.inet,
        ];
        // DAD would hold each new address back a second or more; nothing here duplicates one.
        for n in all {
            sysctl(n, "net.ipv6.conf.all.accept_dad", "0")?;
            sysctl(n, "net.ipv6.conf.default.accept_dad", "0")?;
        }
        veth(&ns.lan, "eth0", &ns.home, LAN_INTERFACE)?;
        sysctl(&ns.lan, "net.ipv6.conf.eth0.accept_ra", "2")?;
        veth(&ns.home, "eth0", &ns.isp, "h0")?;
        ns.home
            .ip(&["addr", "add", &format!("{HOME_OUTER}/24"), "dev", "eth0"])?;
        ns.home
            .ip(&["route", "add", "default", "via", &ISP_HOME_SIDE.to_string()])?;
        ns.isp
            .ip(&["addr", "add", &format!("{ISP_HOME_SIDE}/24"), "dev", "h0"])?;
        sysctl(&ns.isp, "net.ipv4.ip_forward", "1")?;
        sysctl(&ns.core, "net.ipv6.conf.all.forwarding", "1")?;
        for (vps, n) in [(Vps::A, &ns.vps_a), (Vps::B, &ns.vps_b)] {
            let isp_side = format!("v{}", vps.protocol());
            veth(&ns.isp, &isp_side, n, "eth0")?;
            ns.isp.ip(&[
                "addr",
                "add",
                &format!("{}/28", vps.isp_side()),
                "dev",
                &isp_side,
            ])?;
            n.ip(&["addr", "add", &format!("{}/28", vps.outer()), "dev", "eth0"])?;
            n.ip(&[
                "route",
                "add",
                "default",
                "via",
                &vps.isp_side().to_string(),
            ])?;
            // The upstream link: the VPS's way to the Internet and its BGP session.
            let core_side = format!("to-{}", vps.protocol());
            veth(n, "up0", &ns.core, &core_side)?;
            n.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{}/64", vps.link_address()),
                "dev",
                "up0",
            ])?;
            n.ip(&[
                "-6",
                "route",
                "add",
                "default",
                "via",
                &vps.core_address().to_string(),
            ])?;
            ns.core.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{}/64", vps.core_address()),
                "dev",
                &core_side,
            ])?;
        }
        veth(&ns.core, "n0", &ns.inet, "eth0")?;
        ns.core.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{CORE_INTERNET_SIDE}/64"),
            "dev",
            "n0",
        ])?;
        ns.inet.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{INTERNET_HOST}/64"),
            "dev",
            "eth0",
        ])?;
        ns.inet.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &CORE_INTERNET_SIDE.to_string(),
        ])?;
        // Links come up with their link-local addresses a moment later: wait, so that the BGP
        // sessions and SLAAC start from a settled lab.
        for (n, device) in [
            (&ns.lan, "eth0"),
            (&ns.home, LAN_INTERFACE),
            (&ns.vps_a, "up0"),
            (&ns.vps_b, "up0"),
            (&ns.core, "n0"),
            (&ns.inet, "eth0"),
        ] {
            if !wait_for(Duration::from_secs(5), || {
                ip_text(n, &["-6", "addr", "show", "dev", device, "scope", "link"])
                    .contains("fe80:")
            }) {
                bail!("{device} in {} has no link-local address", n.name());
            }
        }
        Ok(ns)
    }
}

/// A veth pair, both ends up.
fn veth(a: &Netns, a_name: &str, b: &Netns, b_name: &str) -> anyhow::Result<()> {
    crate::veth(a, a_name, b, b_name)?;
    a.ip(&["link", "set", a_name, "up"])?;
    b.ip(&["link", "set", b_name, "up"])?;
    Ok(())
}

/// Both servers' configs in the CA directory: A's from `pki init`, B's with a certificate of
/// its own from the same CA. Each has its own state directory and status socket.
fn server_configs(pki_dir: &Path) -> anyhow::Result<()> {
    use hometun_pki::ca::{Ca, KeyType, pem_certificate};
    let ca = Ca::load(&pki_dir.join("ca.pem"), &pki_dir.join("ca.key"))
        .map_err(|e| anyhow::anyhow!("loading the lab CA: {e}"))?;
    let key = KeyType::Ed25519
        .generate()
        .map_err(|e| anyhow::anyhow!("key: {e}"))?;
    let cert = ca
        .issue_server(
            &key,
            Vps::B.name(),
            Vps::B.outer(),
            time::OffsetDateTime::now_utc(),
        )
        .map_err(|e| anyhow::anyhow!("issuing B's certificate: {e}"))?;
    write_private(
        &pki_dir.join("server-b.key"),
        key.serialize_pem().as_bytes(),
    )?;
    std::fs::write(pki_dir.join("server-b.pem"), pem_certificate(&cert))?;
    let written = pki_dir.join("server.toml");
    for vps in [Vps::A, Vps::B] {
        let config = pki_dir.join(vps.config_name());
        std::fs::copy(&written, &config)?;
        edit_server(&config, |c| {
            // No enrollment listener in this lab.
            c.enroll = None;
            c.server.name = vps.name().to_string();
            c.server.listen = vps.outer();
            let state = pki_dir.join(format!("state-{}", vps.protocol()));
            c.server.status_socket = state.join("control.sock");
            c.server.state_dir = state;
            if vps == Vps::B {
                c.server.certificate = pki_dir.join("server-b.pem");
                c.server.private_key = pki_dir.join("server-b.key");
            }
        })?;
    }
    // server.toml stays: `pki sign` reads the pool from it.
    Ok(())
}

/// The core router's BIRD: a BGP session to each VPS, their routes into its kernel.
fn core_config() -> String {
    let mut text = String::from(
        "router id 192.0.2.250;\n\
         protocol device { scan time 1; }\n\
         protocol kernel { ipv6 { import none; export all; }; }\n",
    );
    for vps in [Vps::A, Vps::B] {
        text.push_str(&format!(
            "protocol bgp {} {{\n  local {} as {CORE_AS};\n  neighbor {} as {};\n  \
             connect retry time 1;\n  ipv6 {{ import all; export none; }};\n}}\n",
            vps.protocol(),
            vps.core_address(),
            vps.link_address(),
            vps.asn()
        ));
    }
    text
}

/// examples/bird/bird-vps.conf with the lab's values for `vps`.
fn vps_bird(example: &str, vps: Vps) -> anyhow::Result<String> {
    let pool: Ipv6Net = POOL.parse()?;
    vps_config(
        example,
        &[
            (
                "HOME_PREFIXES",
                &format!("[ {pool}{{{},128}} ]", pool.prefix_len() + 1),
            ),
            ("LOCAL_ADDRESS", &vps.link_address().to_string()),
            ("LOCAL_AS", &vps.asn().to_string()),
            ("UPSTREAM_ADDRESS", &vps.core_address().to_string()),
            ("UPSTREAM_AS", &CORE_AS.to_string()),
        ],
        &vps.outer().to_string(),
    )
}

fn arg(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("path is not UTF-8")
}
