//! Two `hometun forwarder --static` processes in two namespaces ("home" and "vps"), joined by
//! veth pairs to a bridge in a third namespace ("tap"), where a test can watch and replay frames.
//!
//! ```text
//!  home ns: hometun0 (2001:db8:1::2)   ha 192.0.2.2 ── th ┐
//!                                                          br0 (tap ns)
//!  vps ns:  hometun0 (2001:db8:ffff::1) va 192.0.2.1 ── tv ┘
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use hometun_control::{CounterReport, Request, Response};
use hometun_forwarder::server::ControlClient;

use crate::{Guarded, Netns, hometun_bin, veth, wait_for};

/// The VPS side's outer address.
pub const VPS_OUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The home side's outer address.
pub const HOME_OUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// The home side's inner address.
pub const HOME_INNER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// The VPS side's inner address.
pub const VPS_INNER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
/// SPI of packets from home to the VPS (the VPS's inbound SPI).
pub const SPI_HOME_TO_VPS: u32 = 0x2001;
/// SPI of packets from the VPS to home.
pub const SPI_VPS_TO_HOME: u32 = 0x2002;
/// KEYMAT (AES-128 key and salt) from home to the VPS.
pub const KEY_HOME_TO_VPS: &str = "000102030405060708090a0b0c0d0e0f1a1b1c1d";
/// KEYMAT from the VPS to home.
pub const KEY_VPS_TO_HOME: &str = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff2a2b2c2d";

/// Which outer transport the pair uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    /// IP protocol 50.
    Raw,
    /// UDP port 4500 (RFC 3948).
    Udp,
}

impl Encap {
    /// The name the static file and the forge tool use.
    pub fn name(self) -> &'static str {
        match self {
            Encap::Raw => "raw",
            Encap::Udp => "udp",
        }
    }
}

/// How to stop the forwarders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `Request::Shutdown` over the control socket.
    Request,
    /// SIGTERM.
    Signal,
}

/// Which forwarder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The home (client) side.
    Home,
    /// The VPS (server) side.
    Vps,
}

/// The running lab. Dropping it kills the forwarders and deletes the namespaces.
pub struct ForwarderLab {
    // Fields drop in order: processes before the namespaces they run in.
    forwarders: Vec<(Side, Guarded)>,
    /// The home namespace.
    pub home: Netns,
    /// The VPS namespace.
    pub vps: Netns,
    /// The namespace with the bridge between them.
    pub tap: Netns,
    dir: tempfile::TempDir,
    encap: Encap,
}

fn static_file(side: Side, encap: Encap) -> String {
    let (tun_address, local, remote, spi_in, spi_out, key_in, key_out, local_ts, remote_ts, bind) =
        match side {
            Side::Home => (
                "2001:db8:1::2/64",
                HOME_OUTER,
                VPS_OUTER,
                SPI_VPS_TO_HOME,
                SPI_HOME_TO_VPS,
                KEY_VPS_TO_HOME,
                KEY_HOME_TO_VPS,
                "2001:db8:1::/64",
                "::/0",
                HOME_OUTER,
            ),
            Side::Vps => (
                "2001:db8:ffff::1/128",
                VPS_OUTER,
                HOME_OUTER,
                SPI_HOME_TO_VPS,
                SPI_VPS_TO_HOME,
                KEY_HOME_TO_VPS,
                KEY_VPS_TO_HOME,
                "::/0",
                "2001:db8:1::/64",
                VPS_OUTER,
            ),
        };
    let link_local = match side {
        Side::Home => "fe80::2/64",
        Side::Vps => "fe80::1/64",
    };
    let ports = match encap {
        Encap::Raw => String::new(),
        Encap::Udp => "local_port = 4500\nremote_port = 4500\nnat_keepalive_seconds = 1\n".into(),
    };
    format!(
        r#"[interface]
tun_name = "hometun0"
mtu = 1400
addresses = ["{link_local}", "{tun_address}"]
bind_ipv4 = "{bind}"
udp_port = 4500
raw_esp = true

[[sa]]
peer = 1
spi_in = {spi_in}
spi_out = {spi_out}
alg = "aes128gcm16"
key_in = "{key_in}"
key_out = "{key_out}"
local_ts = ["{local_ts}"]
remote_ts = ["{remote_ts}"]
local = "{local}"
remote = "{remote}"
encap = "{encap}"
{ports}"#,
        encap = encap.name()
    )
}

impl ForwarderLab {
    /// Builds the namespaces and the links, writes both static files and starts both forwarders.
    pub fn start(encap: Encap) -> anyhow::Result<Self> {
        let home = Netns::new("h")?;
        let vps = Netns::new("v")?;
        let tap = Netns::new("t")?;
        tap.ip(&["link", "add", "br0", "type", "bridge"])?;
        tap.ip(&["link", "set", "br0", "up"])?;
        for (ns, inner, outer, address) in [
            (&home, "ha", "th", "192.0.2.2/24"),
            (&vps, "va", "tv", "192.0.2.1/24"),
        ] {
            veth(ns, inner, &tap, outer)?;
            tap.ip(&["link", "set", outer, "master", "br0"])?;
            tap.ip(&["link", "set", outer, "up"])?;
            ns.ip(&["addr", "add", address, "dev", inner])?;
            ns.ip(&["link", "set", inner, "up"])?;
        }
        let dir = tempfile::tempdir()?;
        let mut lab = ForwarderLab {
            forwarders: Vec::new(),
            home,
            vps,
            tap,
            dir,
            encap,
        };
        lab.start_forwarder(Side::Vps)?;
        lab.start_forwarder(Side::Home)?;
        Ok(lab)
    }

    fn netns(&self, side: Side) -> &Netns {
        match side {
            Side::Home => &self.home,
            Side::Vps => &self.vps,
        }
    }

    fn name(side: Side) -> &'static str {
        match side {
            Side::Home => "home",
            Side::Vps => "vps",
        }
    }

    /// The control socket of a side's forwarder.
    pub fn socket(&self, side: Side) -> PathBuf {
        self.dir.path().join(format!("{}.sock", Self::name(side)))
    }

    /// The log file of a side's forwarder.
    pub fn log(&self, side: Side) -> PathBuf {
        self.dir.path().join(format!("{}.log", Self::name(side)))
    }

    /// The lab's scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn start_forwarder(&mut self, side: Side) -> anyhow::Result<()> {
        let file = self.dir.path().join(format!("{}.toml", Self::name(side)));
        std::fs::write(&file, static_file(side, self.encap))?;
        let socket = self.socket(side);
        let mut command = self.netns(side).command(&hometun_bin()?);
        command
            .arg("forwarder")
            .arg("--control")
            .arg(&socket)
            .arg("--static")
            .arg(&file);
        let child = Guarded::spawn(command, Self::name(side), &self.log(side))?;
        self.forwarders.push((side, child));
        if !wait_for(Duration::from_secs(10), || {
            ControlClient::connect(&socket).is_ok()
        }) {
            bail!(
                "forwarder {} did not come up: {}",
                Self::name(side),
                std::fs::read_to_string(self.log(side)).unwrap_or_default()
            );
        }
        Ok(())
    }

    /// A side's counters, over its control socket.
    pub fn counters(&self, side: Side) -> anyhow::Result<CounterReport> {
        let stream = std::os::unix::net::UnixStream::connect(self.socket(side))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut client = ControlClient::from_stream(stream);
        match client.request(Request::GetCounters)?.0 {
            Ok(Response::Counters(report)) => Ok(report),
            other => bail!("GetCounters: {other:?}"),
        }
    }

    /// `ping -6` from home to the VPS's inner address; true if every reply came.
    pub fn ping(&self, count: u32) -> anyhow::Result<bool> {
        let output = self.home.output(
            "ping",
            &[
                "-6",
                "-c",
                &count.to_string(),
                "-i",
                "0.2",
                "-W",
                "2",
                &VPS_INNER.to_string(),
            ],
        )?;
        Ok(output.status.success())
    }

    /// Stops both forwarders, with `Request::Shutdown` or with SIGTERM, and checks that they
    /// exit 0 and remove their TUN devices, routes and control sockets.
    pub fn shutdown(mut self, how: Stop) -> anyhow::Result<()> {
        for (side, child) in std::mem::take(&mut self.forwarders) {
            match how {
                Stop::Request => {
                    let mut client = ControlClient::connect(&self.socket(side))?;
                    let (result, _) = client.request(Request::Shutdown)?;
                    result.context("Shutdown refused")?;
                }
                Stop::Signal => child.signal(libc::SIGTERM),
            }
            let output = child.wait(Duration::from_secs(10))?;
            if !output.status.success() {
                bail!(
                    "forwarder {} exited with {}",
                    Self::name(side),
                    output.status
                );
            }
            let link = self
                .netns(side)
                .output("ip", &["link", "show", "hometun0"])?;
            if link.status.success() {
                bail!(
                    "TUN device still there after shutdown of {}",
                    Self::name(side)
                );
            }
            let routes = self
                .netns(side)
                .ip(&["-6", "route", "show", "dev", "hometun0"]);
            if routes.is_ok_and(|o| !o.stdout.is_empty()) {
                bail!(
                    "routes through hometun0 left behind by {}",
                    Self::name(side)
                );
            }
            if self.socket(side).exists() {
                bail!("control socket left behind by {}", Self::name(side));
            }
        }
        Ok(())
    }
}
