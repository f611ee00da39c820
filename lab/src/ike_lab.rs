//! The lab of the IKE daemon tests: a "wan" namespace with a bridge, the VPS and one or more
//! homes attached to it (192.0.2.0/24), a PKI made with `hometun pki`, and the daemons.
//!
//! ```text
//!  vps ns:   eth0 192.0.2.1, lo 2001:db8:100::1 ──┐
//!  home ns:  eth0 192.0.2.2 ──────────────────── br0 (wan ns: watch here)
//!  home2 ns: eth0 192.0.2.3 ──────────────────────┘
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, bail};
use hometun_config::{ClientConfig, ServerConfig};

use crate::{Guarded, Netns, hometun_bin, run, veth, wait_for};

/// The IPv6 pool of the lab's PKI.
pub const POOL: &str = "2001:db8:100::/48";
/// The VPS's inner address (the pool's first prefix stays with the server), on its loopback.
pub const VPS_INNER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
/// The server's outer address.
pub const VPS_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The server's IKE identity (what `hometun pki init` puts in its certificate).
pub const VPS_NAME: &str = "vps.example";

/// One namespace on the wan bridge.
pub struct Node {
    /// Its namespace.
    pub ns: Netns,
    /// Its outer address.
    pub addr: Ipv4Addr,
}

/// The namespaces. Dropping it kills what still runs in them and deletes them.
pub struct IkeLab {
    /// The VPS.
    pub vps: Node,
    /// The homes: 192.0.2.2, 192.0.2.3, ...
    pub homes: Vec<Node>,
    /// The namespace with the bridge.
    pub wan: Netns,
    /// NAT routers put in front of homes ([`IkeLab::put_behind_nat`]).
    pub routers: Vec<Node>,
    dir: tempfile::TempDir,
}

/// The LAN behind a NAT router: the router's inside address.
pub const NAT_LAN_ROUTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The home's address on that LAN.
pub const NAT_LAN_HOME: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

impl IkeLab {
    /// The VPS and `homes` homes on one bridge; the VPS's inner address on its loopback.
    pub fn new(homes: usize) -> anyhow::Result<Self> {
        let wan = Netns::new("w")?;
        wan.ip(&["link", "add", "br0", "type", "bridge"])?;
        wan.ip(&["link", "set", "br0", "up"])?;
        let attach = |tag: &str, index: u8| -> anyhow::Result<Node> {
            let ns = Netns::new(tag)?;
            let addr = Ipv4Addr::new(192, 0, 2, index);
            let port = format!("p{index}");
            veth(&ns, "eth0", &wan, &port)?;
            wan.ip(&["link", "set", &port, "master", "br0"])?;
            wan.ip(&["link", "set", &port, "up"])?;
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
            ns.ip(&["link", "set", "eth0", "up"])?;
            Ok(Node { ns, addr })
        };
        let vps = attach("v", 1)?;
        vps.ns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{VPS_INNER}/128"),
            "dev",
            "lo",
        ])?;
        let homes = (0..homes)
            .map(|i| attach(&format!("h{i}"), 2 + i as u8))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(IkeLab {
            vps,
            homes,
            wan,
            routers: Vec::new(),
            dir: tempfile::tempdir()?,
        })
    }

    /// Puts home `i` behind a NAT router (nftables masquerade): the router takes over the
    /// home's address on the bridge, the home moves to 198.51.100.2/24 behind it.
    pub fn put_behind_nat(&mut self, i: usize) -> anyhow::Result<()> {
        let outside = self.homes[i].addr;
        let home = &self.homes[i].ns;
        // Deleting the home's veth removes its bridge port too.
        home.ip(&["link", "del", "eth0"])?;
        let router = Netns::new(&format!("r{i}"))?;
        let port = format!("n{i}");
        veth(&router, "eth0", &self.wan, &port)?;
        self.wan.ip(&["link", "set", &port, "master", "br0"])?;
        self.wan.ip(&["link", "set", &port, "up"])?;
        router.ip(&["addr", "add", &format!("{outside}/24"), "dev", "eth0"])?;
        router.ip(&["link", "set", "eth0", "up"])?;
        veth(&router, "lan0", home, "eth0")?;
        router.ip(&[
            "addr",
            "add",
            &format!("{NAT_LAN_ROUTER}/24"),
            "dev",
            "lan0",
        ])?;
        router.ip(&["link", "set", "lan0", "up"])?;
        home.ip(&["addr", "add", &format!("{NAT_LAN_HOME}/24"), "dev", "eth0"])?;
        home.ip(&["link", "set", "eth0", "up"])?;
        home.ip(&[
            "route",
            "add",
            "default",
            "via",
            &NAT_LAN_ROUTER.to_string(),
        ])?;
        router.sysctl("net.ipv4.ip_forward=1")?;
        router.nft(
            "table ip nat {\n chain post {\n  type nat hook postrouting priority 100; policy accept;\n  oifname \"eth0\" masquerade\n }\n}\n",
        )?;
        self.homes[i].addr = NAT_LAN_HOME;
        self.routers.push(Node {
            ns: router,
            addr: outside,
        });
        Ok(())
    }

    /// The lab's scratch directory (PKI, configs, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The first home.
    pub fn home(&self) -> &Node {
        &self.homes[0]
    }
}

/// Runs `hometun ARGS...` (outside any namespace) and fails with its output if it fails.
pub fn hometun(args: &[&str]) -> anyhow::Result<Output> {
    let bin = hometun_bin()?;
    let bin = bin.to_str().context("binary path is not UTF-8")?;
    run(bin, args)
}

/// A CA made with `hometun pki init` for the lab's VPS.
pub struct Pki {
    /// The CA directory (ca.pem, server.pem, server.key, server.toml, crl.pem, ...).
    pub dir: PathBuf,
}

impl Pki {
    /// `hometun pki init` in `dir`, for the lab's server address and pool.
    pub fn init(dir: &Path) -> anyhow::Result<Self> {
        hometun(&[
            "pki",
            "init",
            "--dir",
            path(dir)?,
            "--server-ipv4",
            &VPS_ADDR.to_string(),
            "--pool",
            POOL,
            "--server-name",
            VPS_NAME,
        ])?;
        Ok(Pki {
            dir: dir.to_path_buf(),
        })
    }

    /// The server's config as `pki init` wrote it.
    pub fn server_toml(&self) -> PathBuf {
        self.dir.join("server.toml")
    }

    /// A home enrolled the offline way: `pki request` in `dir`, `pki sign` here, `pki import`
    /// there. Returns its client.toml.
    pub fn client(&self, dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
        hometun(&["pki", "request", "--dir", path(dir)?, "--name", name])?;
        let bundle = dir.join("bundle.toml");
        hometun(&[
            "pki",
            "sign",
            "--dir",
            path(&self.dir)?,
            "--csr",
            path(&dir.join("client.csr"))?,
            "--out",
            path(&bundle)?,
        ])?;
        hometun(&["pki", "import", "--dir", path(dir)?, path(&bundle)?])?;
        Ok(dir.join("client.toml"))
    }

    /// A client certificate of this CA for `name` and `prefix` that expired a month ago, with
    /// a fresh key, written into `dir` next to a client.toml copied from `template` (a working
    /// client's). Returns the new client.toml.
    pub fn expired_client(
        &self,
        dir: &Path,
        name: &str,
        prefix: &str,
        template: &Path,
    ) -> anyhow::Result<PathBuf> {
        use hometun_pki::ca::{Ca, KeyType, pem_certificate, random_serial};
        std::fs::create_dir_all(dir)?;
        let ca = Ca::load(&self.dir.join("ca.pem"), &self.dir.join("ca.key"))
            .map_err(|e| anyhow::anyhow!("loading the lab CA: {e}"))?;
        let key = KeyType::Ed25519
            .generate()
            .map_err(|e| anyhow::anyhow!("key: {e}"))?;
        // Issued 40 days ago for 10 days: expired 30 days ago.
        let issued = time::OffsetDateTime::now_utc() - time::Duration::days(40);
        let serial = random_serial().map_err(|e| anyhow::anyhow!("{e}"))?;
        let cert = ca
            .issue_client(&key, name, prefix.parse()?, &serial, issued, 10)
            .map_err(|e| anyhow::anyhow!("issuing: {e}"))?;
        write_private(&dir.join("client.key"), key.serialize_pem().as_bytes())?;
        std::fs::write(dir.join("client.pem"), pem_certificate(&cert))?;
        std::fs::copy(self.dir.join("ca.pem"), dir.join("ca.pem"))?;
        let config = dir.join("client.toml");
        let mut c = ClientConfig::load(template)?;
        c.client.name = name.to_string();
        c.client.prefix = prefix.parse()?;
        c.client.certificate = dir.join("client.pem");
        c.client.private_key = dir.join("client.key");
        c.client.ca = dir.join("ca.pem");
        c.client.state_dir = dir.join("state");
        c.client.status_socket = dir.join("state/control.sock");
        std::fs::write(&config, c.to_toml())?;
        Ok(config)
    }
}

/// Writes a private key file, readable by its owner only.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, bytes)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

fn path(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("path is not UTF-8")
}

/// Loads a server.toml, lets `edit` change it, writes it back (paths become absolute).
pub fn edit_server(file: &Path, edit: impl FnOnce(&mut ServerConfig)) -> anyhow::Result<()> {
    let mut config = ServerConfig::load(file)?;
    edit(&mut config);
    std::fs::write(file, config.to_toml())?;
    Ok(())
}

/// Loads a client.toml, lets `edit` change it, writes it back (paths become absolute).
pub fn edit_client(file: &Path, edit: impl FnOnce(&mut ClientConfig)) -> anyhow::Result<()> {
    let mut config = ClientConfig::load(file)?;
    edit(&mut config);
    std::fs::write(file, config.to_toml())?;
    Ok(())
}

/// A `hometun server` or `hometun client` in a namespace, its output in a log file. Killed
/// (with its forwarder, which stops when its SA channel closes) when dropped.
pub struct Daemon {
    child: Option<Guarded>,
    /// Its config file.
    pub config: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    what: String,
}

/// The logs of `daemons`, each under a header with its path: what a failed assertion prints.
pub fn logs(daemons: &[&Daemon]) -> String {
    daemons
        .iter()
        .map(|d| format!("--- {}:\n{}", d.log.display(), d.log_text()))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Daemon {
    /// Starts `hometun ROLE --config CONFIG` in `ns` (with `-v`: protocol detail in the log).
    pub fn start(ns: &Netns, role: &str, config: &Path, log: &Path) -> anyhow::Result<Self> {
        let mut command = ns.command(&hometun_bin()?);
        command.args(["-v", role, "--config"]).arg(config);
        // No NO_COLOR: a log written to a file must come without colour codes by itself.
        let what = format!("hometun {role} in {}", ns.name());
        let child = Guarded::spawn(command, &what, log)?;
        Ok(Daemon {
            child: Some(child),
            config: config.to_path_buf(),
            log: log.to_path_buf(),
            what,
        })
    }

    /// Its log so far, without colour codes.
    pub fn log_text(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Waits until its log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_for(timeout, || self.log_text().contains(needle))
    }

    /// `hometun status --config CONFIG --json`, parsed.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        let output = hometun(&["status", "--config", path(&self.config)?, "--json"])?;
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// `hometun status --config CONFIG` (the table).
    pub fn status_table(&self) -> anyhow::Result<String> {
        let output = hometun(&["status", "--config", path(&self.config)?])?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Sends SIGTERM (harmless if it already exited) and waits for the exit; returns the exit
    /// status.
    pub fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let child = self.child.take().context("already stopped")?;
        child.signal(libc::SIGTERM);
        let output = child
            .wait(Duration::from_secs(15))
            .with_context(|| format!("{} did not stop on SIGTERM", self.what))?;
        Ok(output.status)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Guarded::id)
    }

    /// Waits, at most `timeout`, for it to exit on its own; returns the exit status.
    pub fn wait_exit(mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let child = self.child.take().context("already stopped")?;
        let output = child
            .wait(timeout)
            .with_context(|| format!("{} did not exit within {timeout:?}", self.what))?;
        Ok(output.status)
    }
}

/// Where `hometun status` looks without `--config` (as the daemon crate has them).
pub const DEFAULT_CONFIGS: [&str; 2] = ["/etc/hometun/server.toml", "/etc/hometun/client.toml"];

/// Removes ANSI colour sequences from log text.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `ping -6` from `ns` to `addr`: true if all `count` replies came.
pub fn ping6(ns: &Netns, addr: Ipv6Addr, count: u32) -> anyhow::Result<bool> {
    let output = ns.output(
        "ping",
        &[
            "-6",
            "-c",
            &count.to_string(),
            "-i",
            "0.2",
            "-W",
            "2",
            &addr.to_string(),
        ],
    )?;
    Ok(output.status.success())
}

/// Pings once a second until a reply comes, at most `timeout`.
pub fn wait_ping(ns: &Netns, addr: Ipv6Addr, timeout: Duration) -> bool {
    wait_for(timeout, || {
        ns.output("ping", &["-6", "-c", "1", "-W", "1", &addr.to_string()])
            .is_ok_and(|o| o.status.success())
    })
}

/// Sends `bytes` of TCP from `sender` to `[addr]:port` (where `receiver` listens) with the
/// nettool; returns both ends' `BYTES SHA256` lines.
pub fn tcp_transfer(
    nettool: &Path,
    receiver: &Netns,
    sender: &Netns,
    addr: Ipv6Addr,
    port: u16,
    bytes: u64,
) -> anyhow::Result<(String, String)> {
    let mut command = receiver.command(nettool);
    command.args(["tcp-recv", &port.to_string()]);
    let mut listening = Guarded::spawn_piped(command, "tcp-recv")?;
    let ready = listening.read_line()?;
    if ready != "ready" {
        bail!("tcp-recv said {ready:?}");
    }
    let sent = sender.output(
        path(nettool)?,
        &[
            "tcp-send",
            &addr.to_string(),
            &port.to_string(),
            &bytes.to_string(),
        ],
    )?;
    if !sent.status.success() {
        bail!(
            "tcp-send failed: {}",
            String::from_utf8_lossy(&sent.stderr).trim()
        );
    }
    let received = listening.wait(Duration::from_secs(120))?;
    Ok((
        String::from_utf8_lossy(&sent.stdout).trim().to_string(),
        String::from_utf8_lossy(&received.stdout).trim().to_string(),
    ))
}

/// Counts, with nftables in `ns`, the IPv4 packets arriving as ESP (protocol 50) and as UDP to
/// port 4500.
pub struct OuterCounters;

impl OuterCounters {
    /// Installs the counting rules in `ns`.
    pub fn install(ns: &Netns) -> anyhow::Result<Self> {
        ns.nft("table ip htcount {\n chain input {\n  type filter hook input priority -10; policy accept;\n  ip protocol esp counter\n  udp dport 4500 counter\n }\n}\n")?;
        Ok(OuterCounters)
    }

    /// What arrived so far. Bytes are the measure of volume: a sender using UDP GSO hands the
    /// path one large packet for many segments, and a forwarding hop may keep it whole, so
    /// packet counts there are counts of super-packets.
    pub fn read(&self, ns: &Netns) -> anyhow::Result<Outer> {
        let output = ns.output("nft", &["list", "chain", "ip", "htcount", "input"])?;
        let text = String::from_utf8_lossy(&output.stdout);
        let count = |marker: &str| -> (u64, u64) {
            let Some(line) = text.lines().find(|l| l.contains(marker)) else {
                return (0, 0);
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |key: &str| {
                words
                    .iter()
                    .position(|w| *w == key)
                    .and_then(|i| words.get(i + 1))
                    .and_then(|w| w.parse().ok())
                    .unwrap_or(0)
            };
            (after("packets"), after("bytes"))
        };
        let (esp_packets, esp_bytes) = count("ip protocol esp");
        let (udp_packets, udp_bytes) = count("udp dport 4500");
        Ok(Outer {
            esp_packets,
            esp_bytes,
            udp_packets,
            udp_bytes,
        })
    }
}

/// Outer packets counted by [`OuterCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    /// IP protocol 50 packets.
    pub esp_packets: u64,
    /// Their bytes (IP headers included).
    pub esp_bytes: u64,
    /// UDP packets to port 4500 (ESP in UDP and IKE).
    pub udp_packets: u64,
    /// Their bytes.
    pub udp_bytes: u64,
}

/// Whether `ns` has a network device named `name`.
pub fn has_link(ns: &Netns, name: &str) -> bool {
    ns.has_link(name)
}

/// Asserts that nothing of a stopped daemon's tunnel is left in `ns` (`what` names it): no TUN
/// device, no route through it, and, within 5 s, no process.
pub fn assert_nothing_left(ns: &Netns, what: &str) {
    assert!(!has_link(ns, "hometun0"), "{what}: TUN device left");
    let routes = ns
        .output("ip", &["-6", "route", "show"])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        !routes.contains("hometun0"),
        "{what}: routes left:\n{routes}"
    );
    assert!(
        wait_for(Duration::from_secs(5), || ns.pids().is_empty()),
        "{what}: processes left: {:?}",
        ns.pids()
    );
}

/// A lab with a PKI: the server's config from `hometun pki init`, one client config per home
/// from `hometun pki request/sign/import` (homes `home.example`, `home2.example`, ...; the
/// first gets `2001:db8:100:1::/64`).
pub struct Setup {
    /// The namespaces.
    pub lab: IkeLab,
    /// The CA.
    pub pki: Pki,
    /// The server's config.
    pub server_toml: PathBuf,
    /// One client config per home.
    pub client_tomls: Vec<PathBuf>,
}

/// The home prefix the PKI hands out first.
pub const HOME_PREFIX: &str = "2001:db8:100:1::/64";
/// The first home's tunnel address (its prefix's `::1`).
pub const HOME_INNER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 1, 0, 0, 0, 1);

impl Setup {
    /// Namespaces for the VPS and `homes` homes, the PKI, and the configs.
    pub fn new(homes: usize) -> anyhow::Result<Self> {
        let lab = IkeLab::new(homes)?;
        let pki = Pki::init(&lab.dir().join("ca"))?;
        let server_toml = pki.server_toml();
        let mut client_tomls = Vec::new();
        for i in 0..homes {
            let name = if i == 0 {
                "home.example".to_string()
            } else {
                format!("home{}.example", i + 1)
            };
            client_tomls.push(pki.client(&lab.dir().join(format!("home{i}")), &name)?);
        }
        Ok(Setup {
            lab,
            pki,
            server_toml,
            client_tomls,
        })
    }

    /// Starts the server in the VPS namespace; waits until it listens.
    pub fn start_server(&self) -> anyhow::Result<Daemon> {
        let daemon = Daemon::start(
            &self.lab.vps.ns,
            "server",
            &self.server_toml,
            &self.lab.dir().join("server.log"),
        )?;
        if !daemon.wait_log("IKE on", Duration::from_secs(20)) {
            bail!("the server did not come up:\n{}", daemon.log_text());
        }
        Ok(daemon)
    }

    /// The first home's client config and `count - 1` more, each its own identity,
    /// certificate and /64 (`<stem>N.example`): for `hometun ike bench`, which takes one
    /// config per handshake in flight, or per SA held.
    pub fn identities(&self, stem: &str, count: usize) -> anyhow::Result<Vec<PathBuf>> {
        let mut configs = vec![self.client_tomls[0].clone()];
        for i in 1..count {
            let dir = self.lab.dir().join(format!("{stem}{i}"));
            configs.push(self.pki.client(&dir, &format!("{stem}{i}.example"))?);
        }
        Ok(configs)
    }

    /// `hometun ike bench` against the server from the first home's namespace, with these
    /// configs and `args` (`--count`, `--concurrency`, `--hold`), warnings only on stderr.
    pub fn ike_bench(&self, configs: &[PathBuf], args: &[&str]) -> anyhow::Result<Command> {
        let mut command = self.lab.homes[0].ns.command(&hometun_bin()?);
        command
            .env("RUST_LOG", "warn")
            .args(["ike", "bench", &VPS_ADDR.to_string()])
            .args(args);
        for config in configs {
            command.arg("--config").arg(config);
        }
        Ok(command)
    }

    /// Starts home `i`'s client in its namespace.
    pub fn start_client(&self, i: usize) -> anyhow::Result<Daemon> {
        Daemon::start(
            &self.lab.homes[i].ns,
            "client",
            &self.client_tomls[i],
            &self.lab.dir().join(format!("client{i}.log")),
        )
    }

    /// Starts the server and the first home's client, and waits (30 s at most) until the home
    /// pings the server's inner address through the tunnel; the error carries both logs.
    pub fn start_first_home_up(&self) -> anyhow::Result<(Daemon, Daemon)> {
        let server = self.start_server()?;
        let client = self.start_client(0)?;
        if !wait_ping(&self.lab.home().ns, VPS_INNER, Duration::from_secs(30)) {
            bail!("the tunnel did not come up\n{}", logs(&[&server, &client]));
        }
        Ok((server, client))
    }
}

/// An SPI of the status JSON (eight hex digits, as the table prints it) as a number.
pub fn spi(value: &serde_json::Value) -> Option<u64> {
    u32::from_str_radix(value.as_str()?, 16).ok().map(u64::from)
}
