//! `hometun demo`: the whole story of hometun on one machine, in network namespaces.
//!
//! ```text
//!  home  eth0 198.51.100.2/24 ── home0 198.51.100.1  isp (a router)  vps0 203.0.113.1 ── eth0 203.0.113.2/24  vps
//!        (then 198.51.100.3)                                                             lo 2001:db8:100::1
//! ```
//!
//! It makes a CA on the VPS (`hometun pki init`), starts `hometun server` there, enrolls the
//! home online (`hometun pki token`, then `hometun enroll` against the server's enrollment
//! listener: the home's key never leaves it), starts `hometun client` at home, pings the home's
//! static IPv6 address from the VPS, changes the home's IPv4 address under a ping every 20 ms and
//! reports the outage, prints `hometun status`, and stops and removes everything it made: the
//! daemons (which send DELETE and remove their TUN devices), the namespaces and the temporary
//! directory, also when interrupted (SIGINT, SIGTERM) or when a step panics. Only
//! documentation addresses are used, only inside the namespaces it made.

#![cfg_attr(test, allow(clippy::unwrap_used))]
// An I/O driver: it reads the clock to report what it measures.
#![allow(clippy::disallowed_methods)]

pub mod lab;
pub mod ping;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};

use lab::{Daemon, Namespace, STOP_GRACE, check_stop, sleep, spawn_daemon, tail, wait_until};
use ping::Pinger;

/// Arguments of `hometun demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Milliseconds between the pings that measure the outage when the home's address changes.
    #[arg(long, value_name = "MS", default_value_t = 20)]
    pub ping_interval_ms: u64,
    /// Keep the temporary directory (CA, configs, daemon logs) and print its path; the
    /// namespaces and processes are removed all the same.
    #[arg(long)]
    pub keep_files: bool,
    /// Panic right after step N (testing the clean-up after a panic).
    #[arg(long, value_name = "N", hide = true)]
    pub panic_after: Option<usize>,
}

/// The home's outer address at first.
pub const HOME_FIRST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The home's outer address after the ISP changed it.
pub const HOME_SECOND: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
/// The ISP router on the home's side.
pub const ISP_HOME_SIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The ISP router on the VPS's side.
pub const ISP_VPS_SIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The VPS's static public address.
pub const VPS_ADDR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// The pool the homes' prefixes come from (its first /64 stays with the VPS).
pub const POOL: &str = "2001:db8:100::/48";
/// The VPS's own IPv6 address, inside the pool's first prefix.
pub const VPS_INNER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
/// The home's name (its IKE identity).
pub const HOME_NAME: &str = "home.example";

/// The steps, as they are told.
struct Narrator {
    started: Instant,
    step: usize,
    panic_after: Option<usize>,
}

impl Narrator {
    /// Tells a step of the story (`--panic-after N` counts these).
    fn say(&mut self, who: &str, text: impl AsRef<str>) {
        self.step += 1;
        self.note(who, text);
        if self.panic_after == Some(self.step) {
            panic!(
                "--panic-after {}: a deliberate panic, to show the clean-up",
                self.step
            );
        }
    }

    /// Tells something that is not a step of the story.
    fn note(&self, who: &str, text: impl AsRef<str>) {
        println!(
            "[{:6.2}s] {who:<5} {}",
            self.started.elapsed().as_secs_f64(),
            text.as_ref()
        );
    }
}

/// What the demo made. Dropping it removes everything (daemons first, then the namespaces,
/// then the files), and says so if that happens during a panic.
struct Lab {
    client: Option<Daemon>,
    server: Option<Daemon>,
    pinger: Option<Pinger>,
    namespaces: Vec<Namespace>,
    dir: Option<tempfile::TempDir>,
    keep_files: bool,
}

impl Lab {
    fn home(&self) -> &Namespace {
        &self.namespaces[0]
    }

    fn isp(&self) -> &Namespace {
        &self.namespaces[1]
    }

    fn vps(&self) -> &Namespace {
        &self.namespaces[2]
    }

    fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// Stops the daemons, deletes the namespaces and the files; one line saying what it did.
    fn remove(&mut self) -> String {
        let mut done = Vec::new();
        drop(self.pinger.take());
        for (daemon, name) in [
            (self.client.take(), "client"),
            (self.server.take(), "server"),
        ] {
            if let Some(mut daemon) = daemon {
                match daemon.terminate(STOP_GRACE) {
                    Ok(status) if status.success() => done.push(format!("{name} stopped")),
                    Ok(status) => done.push(format!("{name} exited with {status}")),
                    Err(error) => done.push(format!("{name}: {error}")),
                }
            }
        }
        let names: Vec<String> = self
            .namespaces
            .iter()
            .map(|n| n.name().to_string())
            .collect();
        self.namespaces.clear();
        let left = lab::our_namespaces();
        if left.is_empty() {
            if !names.is_empty() {
                done.push(format!("namespaces {} deleted", names.join(", ")));
            }
        } else {
            done.push(format!("namespaces LEFT: {}", left.join(", ")));
        }
        if let Some(dir) = self.dir.take() {
            if self.keep_files {
                done.push(format!("files kept in {}", dir.keep().display()));
            } else {
                let path = dir.path().display().to_string();
                match dir.close() {
                    Ok(()) => done.push(format!("{path} removed")),
                    Err(error) => done.push(format!("{path}: {error}")),
                }
            }
        }
        done.join(", ")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.dir.is_some() || !self.namespaces.is_empty() {
            let summary = self.remove();
            eprintln!("hometun demo: cleaned up: {summary}");
        }
    }
}

/// Runs the demo with `program` as the `hometun` binary (normally our own).
pub fn run_demo(args: &DemoArgs, program: &Path) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("hometun demo needs root: it makes network namespaces and TUN devices");
    }
    for tool in ["ip", "ping"] {
        if Command::new(tool).arg("-V").output().is_err() {
            bail!("hometun demo needs `{tool}` (scripts/install-deps.sh installs it)");
        }
    }
    lab::catch_stop_signals();
    let mut say = Narrator {
        started: Instant::now(),
        step: 0,
        panic_after: args.panic_after,
    };
    println!(
        "hometun demo: a home with a dynamic IPv4 address gets a static IPv6 prefix from a VPS, and keeps it when its address changes"
    );
    let stale = lab::remove_stale_namespaces();
    if !stale.is_empty() {
        say.note(
            "setup",
            format!(
                "removed namespaces of an earlier demo that was killed: {}",
                stale.join(", ")
            ),
        );
    }
    let mut lab = Lab {
        client: None,
        server: None,
        pinger: None,
        namespaces: Vec::new(),
        dir: Some(
            tempfile::Builder::new()
                .prefix("hometun-demo.")
                .tempdir()
                .context("making a temporary directory")?,
        ),
        keep_files: args.keep_files,
    };
    let result = story(&mut lab, &mut say, args, program);
    if let Err(error) = &result
        && error.downcast_ref::<lab::Interrupted>().is_none()
    {
        for (daemon, name) in [(&lab.server, "server"), (&lab.client, "client")] {
            if let Some(daemon) = daemon {
                eprintln!(
                    "hometun {name} log (last lines):\n{}",
                    tail(&daemon.log_text(), 12)
                );
            }
        }
    }
    let summary = lab.remove();
    say.note("done", format!("cleaned up: {summary}"));
    result
}

fn story(lab: &mut Lab, say: &mut Narrator, args: &DemoArgs, program: &Path) -> anyhow::Result<()> {
    build_network(lab)?;
    say.say(
        "net",
        format!(
            "namespaces: home {HOME_FIRST} -- isp (router {ISP_HOME_SIDE} / {ISP_VPS_SIDE}) -- vps {VPS_ADDR}"
        ),
    );

    // The CA and the server.
    let ca = lab.dir().join("vps");
    let hometun = |args: &[&str]| -> Command {
        let mut c = Command::new(program);
        c.args(args);
        c
    };
    let ca_arg = path(&ca)?;
    lab::run(
        &mut hometun(&[
            "pki",
            "init",
            "--dir",
            ca_arg,
            "--server-ipv4",
            &VPS_ADDR.to_string(),
            "--pool",
            POOL,
        ]),
        "hometun pki init",
    )?;
    say.say(
        "vps",
        format!(
            "hometun pki init: a CA, the server's certificate (vps.example), pool {POOL}, {}",
            ca.join("server.toml").display()
        ),
    );
    let server_toml = ca.join("server.toml");
    let mut server = lab.vps().command(program);
    server.args(["server", "--config", path(&server_toml)?]);
    lab.server = Some(spawn_daemon(
        server,
        "hometun server",
        &lab.dir().join("server.log"),
    )?);
    wait_log(lab.server.as_mut(), "IKE on", Duration::from_secs(20))?;
    say.say(
        "vps",
        format!("hometun server: IKE on {VPS_ADDR}:500, enrollment listener on {VPS_ADDR}:8443"),
    );

    // Online enrollment: a one-time token, the home makes its key and gets its certificate.
    let token = lab::run(
        &mut hometun(&["pki", "token", "--dir", ca_arg, "--name", HOME_NAME]),
        "hometun pki token",
    )?;
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    say.say(
        "vps",
        format!("hometun pki token --name {HOME_NAME}: a one-time token for the home"),
    );
    let home_dir = lab.dir().join("home");
    lab::run(
        lab.home()
            .command(program)
            .args(["enroll", "--dir", path(&home_dir)?, "--token", &token]),
        "hometun enroll",
    )?;
    let client_toml = home_dir.join("client.toml");
    let (prefix, home_addr) = client_prefix(&client_toml)?;
    say.say(
        "home",
        format!("hometun enroll: {HOME_NAME} holds {prefix}; its private key never left the home"),
    );

    // The tunnel.
    let mut client = lab.home().command(program);
    client.args(["client", "--config", path(&client_toml)?]);
    let began = Instant::now();
    lab.client = Some(spawn_daemon(
        client,
        "hometun client",
        &lab.dir().join("client.log"),
    )?);
    let mut status = serde_json::Value::Null;
    wait_daemons(
        lab,
        Duration::from_secs(30),
        "the tunnel did not come up",
        |_| {
            status = server_status(program, &server_toml).unwrap_or_default();
            status["counters"]["sas"]
                .as_array()
                .is_some_and(|sas| !sas.is_empty())
        },
    )?;
    let up = began.elapsed();
    let peer = &status["peers"][0];
    let outer = match status["counters"]["sas"][0]["endpoint"]["encap"].as_str() {
        Some("raw") => "ESP as IP protocol 50",
        _ => "ESP in UDP 4500",
    };
    say.say(
        "home",
        format!(
            "hometun client: tunnel up in {:.2} s ({}, {outer}); the server sees the home at {}",
            up.as_secs_f64(),
            peer["ike_proposal"].as_str().unwrap_or("?"),
            peer["remote"].as_str().unwrap_or("?"),
        ),
    );

    // The home's static address, from the VPS side.
    let ping = lab::run(
        lab.vps().command("ping").args([
            "-6",
            "-n",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            &home_addr.to_string(),
        ]),
        "ping from the VPS to the home",
    )?;
    say.say(
        "vps",
        format!(
            "ping {home_addr} (the home's static address): {}",
            ping_summary(&String::from_utf8_lossy(&ping.stdout))
        ),
    );

    // The ISP changes the home's address while the VPS pings it.
    let interval = Duration::from_millis(args.ping_interval_ms.max(2));
    lab.pinger = Some(Pinger::start(
        lab.vps(),
        home_addr,
        interval,
        &lab.dir().join("ping.log"),
    )?);
    say.say(
        "vps",
        format!("pinging {home_addr} every {} ms", interval.as_millis()),
    );
    sleep(Duration::from_secs(1))?;
    lab.home()
        .ip(&["addr", "add", &format!("{HOME_SECOND}/24"), "dev", "eth0"])?;
    lab.home()
        .ip(&["addr", "del", &format!("{HOME_FIRST}/24"), "dev", "eth0"])?;
    let changed = unix_now();
    let change_began = Instant::now();
    say.say(
        "home",
        format!("the ISP changes the home's address: {HOME_FIRST} -> {HOME_SECOND}"),
    );
    let second = HOME_SECOND.to_string();
    let mut moved_after = None;
    wait_daemons(
        lab,
        Duration::from_secs(30),
        "the tunnel did not recover after the address change",
        |lab| {
            if moved_after.is_none() {
                let status = server_status(program, &server_toml).unwrap_or_default();
                if status["peers"][0]["remote"]
                    .as_str()
                    .is_some_and(|r| r.starts_with(&format!("{second}:")))
                {
                    moved_after = Some(change_began.elapsed());
                }
            }
            moved_after.is_some()
                && lab
                    .pinger
                    .as_ref()
                    .is_some_and(|p| p.report().answered_after(changed) >= 5)
        },
    )?;
    say.say(
        "vps",
        format!(
            "the server moved {HOME_NAME} to {HOME_SECOND} {:.0} ms after the change (ESP from the new address, the override NA or the first packet, then a return-routability check)",
            moved_after.unwrap_or_default().as_secs_f64() * 1000.0
        ),
    );
    sleep(Duration::from_millis(500))?;
    let report = lab
        .pinger
        .take()
        .map(Pinger::stop)
        .context("the ping went away")?;
    say.say(
        "vps",
        format!(
            "tunnel recovered: {} of {} pings lost, outage {:.0} ms (longest gap between replies; {} ms is none)",
            report.lost(),
            report.sent,
            report.longest_gap().as_secs_f64() * 1000.0,
            interval.as_millis()
        ),
    );

    let table = lab::run(
        &mut hometun(&["status", "--config", path(&server_toml)?]),
        "hometun status",
    )?;
    say.say("vps", "hometun status:");
    for line in String::from_utf8_lossy(&table.stdout).lines() {
        println!("           {line}");
    }

    // The home leaves: its DELETE reaches the server, which forgets it.
    let status = lab
        .client
        .take()
        .map(|mut c| c.terminate(STOP_GRACE))
        .transpose()?
        .context("no client")?;
    if !status.success() {
        bail!("hometun client exited with {status}");
    }
    wait_daemons(
        lab,
        Duration::from_secs(10),
        "the server kept the home after its DELETE",
        |_| {
            server_status(program, &server_toml)
                .is_some_and(|s| s["peers"].as_array().is_some_and(|p| p.is_empty()))
        },
    )?;
    say.say(
        "home",
        "hometun client stopped (SIGTERM): DELETE sent, the server forgot the home, TUN device removed",
    );
    check_stop()
}

/// Namespaces, links, addresses, routes.
fn build_network(lab: &mut Lab) -> anyhow::Result<()> {
    for role in ["home", "isp", "vps"] {
        lab.namespaces.push(lab::create_namespace(role)?);
    }
    let (home, isp, vps) = (lab.home(), lab.isp(), lab.vps());
    for (ns, peer) in [(home, "home0"), (vps, "vps0")] {
        check_stop()?;
        hometun_lab::veth(ns, "eth0", isp, peer)?;
    }
    // The home keeps its routes when its first address goes (the second is promoted).
    home.sysctl("net.ipv4.conf.all.promote_secondaries=1")?;
    home.sysctl("net.ipv4.conf.eth0.promote_secondaries=1")?;
    isp.sysctl("net.ipv4.ip_forward=1")?;
    for (ns, dev, addr) in [
        (home, "eth0", HOME_FIRST),
        (isp, "home0", ISP_HOME_SIDE),
        (isp, "vps0", ISP_VPS_SIDE),
        (vps, "eth0", VPS_ADDR),
    ] {
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", dev])?;
        ns.ip(&["link", "set", dev, "up"])?;
    }
    home.ip(&["route", "add", "default", "via", &ISP_HOME_SIDE.to_string()])?;
    vps.ip(&["route", "add", "default", "via", &ISP_VPS_SIDE.to_string()])?;
    vps.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{VPS_INNER}/128"),
        "dev",
        "lo",
    ])?;
    Ok(())
}

fn path(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("a temporary path is not UTF-8")
}

/// The prefix in the home's client.toml and the address put on its tunnel.
fn client_prefix(client_toml: &Path) -> anyhow::Result<(String, Ipv6Addr)> {
    let config = hometun_config::ClientConfig::load(client_toml)?;
    Ok((config.client.prefix.to_string(), config.tunnel_address()))
}

/// `hometun status --json` of the server, parsed (`None` while it does not answer).
fn server_status(program: &Path, config: &Path) -> Option<serde_json::Value> {
    let output = Command::new(program)
        .args(["status", "--json", "--config"])
        .arg(config)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    serde_json::from_slice(&output.stdout).ok()
}

/// Waits for a log line of a daemon, failing early if it exits.
fn wait_log(daemon: Option<&mut Daemon>, needle: &str, timeout: Duration) -> anyhow::Result<()> {
    let daemon = daemon.context("no daemon")?;
    let mut failed = None;
    let result = wait_until(timeout, &format!("no {needle:?} in the log"), || {
        if let Err(error) = daemon.check_running() {
            failed = Some(error);
            return true;
        }
        daemon.log_text().contains(needle)
    });
    match failed {
        Some(error) => Err(error),
        None => result,
    }
}

/// Waits for `condition`, failing early if a daemon exits.
fn wait_daemons(
    lab: &mut Lab,
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut(&mut Lab) -> bool,
) -> anyhow::Result<()> {
    let mut failed = None;
    let result = wait_until(timeout, what, || {
        for daemon in [lab.server.as_mut(), lab.client.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Err(error) = daemon.check_running() {
                failed = Some(error);
                return true;
            }
        }
        condition(lab)
    });
    match failed {
        Some(error) => Err(error),
        None => result,
    }
}

/// `3/3 answered, rtt 0.12 ms` from ping's summary lines.
fn ping_summary(text: &str) -> String {
    let received = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .and_then(|l| {
            let mut words = l.split(", ");
            let sent = words.next()?.split_whitespace().next()?;
            let got = words.next()?.split_whitespace().next()?;
            Some(format!("{got}/{sent} answered"))
        })
        .unwrap_or_else(|| "answered".to_string());
    let rtt = text
        .lines()
        .find(|l| l.starts_with("rtt"))
        .and_then(|l| l.split(" = ").nth(1))
        .and_then(|v| v.split('/').nth(1))
        .map(|avg| format!(", average round trip {avg} ms"))
        .unwrap_or_default();
    format!("{received}{rtt}")
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The binary `hometun demo` runs: the running one.
pub fn current_program() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding our own binary")
}

/// Runs `hometun demo`.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    run_demo(args, &current_program()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_prefix_reads_the_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.toml");
        std::fs::write(
            &path,
            "[client]\nname = \"home.example\"\nserver = \"203.0.113.2\"\nserver_name = \"vps.example\"\ncertificate = \"c.pem\"\nprivate_key = \"c.key\"\nca = \"ca.pem\"\nprefix = \"2001:db8:100:1::/64\"\n\n[tunnel]\nlink_local = \"fe80::2/64\"\n",
        )
        .unwrap();
        let (prefix, addr) = client_prefix(&path).unwrap();
        assert_eq!(prefix, "2001:db8:100:1::/64");
        assert_eq!(addr, "2001:db8:100:1::1".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn ping_summaries() {
        let text = "3 packets transmitted, 3 received, 0% packet loss, time 402ms\nrtt min/avg/max/mdev = 0.080/0.101/0.120/0.016 ms\n";
        assert_eq!(
            ping_summary(text),
            "3/3 answered, average round trip 0.101 ms"
        );
    }
}
