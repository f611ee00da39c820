//! The roaming lab with the full daemons (docs/ARCHITECTURE.md, "Roaming"): `hometun server` on a VPS and
//! `hometun client` (or a strongSwan client) at home, certificates from `hometun pki`, an ISP
//! that routes between them and can NAT, and an attacker attached to the ISP.
//!
//! ```text
//!  home ns:  h0 198.51.100.2/24 ── ih 198.51.100.1 ┐
//!                                                   isp ns (routes; NAT with masquerade on iv)
//!  vps ns:   v0 203.0.113.2/24  ── iv 203.0.113.1  ┤
//!            lo 2001:db8:100::1 (the VPS's inner address)
//!  attacker: a0 192.0.2.66/24   ── ia 192.0.2.1    ┘
//! ```
//!
//! The client follows its outer address (no `client.local`): its forwarder learns a change from
//! netlink, re-binds and sends the override NA; the server's forwarder checks it and probes the
//! new address; both IKE SAs follow. Behind NAT the NAT's public address changes instead (the
//! home sees nothing; the server follows the NAT rebinding). A strongSwan client roams with
//! MOBIKE. Outages are measured with `hometun-roamtool ping` (the helpers of
//! [`crate::roaming_lab`]).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::ike_lab::{Daemon, POOL, Pki, VPS_NAME, hometun};
use crate::roaming_lab::{Path4, RoamingNet};
use crate::{Netns, monotonic_ns, wait_for};

pub use crate::roaming_lab::{
    ATTACKER, HOME_FIRST, ISP_ATTACKER_SIDE, ISP_HOME_SIDE, ISP_VPS_SIDE, VPS_OUTER,
};

/// The home's address after the change (same subnet).
pub const HOME_SECOND: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
/// The NAT's public address after the change.
pub const PUBLIC_SECOND: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
/// The VPS's inner address (the pool's first prefix stays with the server), on its loopback.
pub const VPS_INNER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
/// The home's prefix (the first the PKI hands out) and its tunnel address.
pub const HOME_PREFIX: &str = "2001:db8:100:1::/64";
/// The home's tunnel address (its prefix's `::1`).
pub const HOME_INNER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 1, 0, 0, 0, 1);
/// The home's identity.
pub const HOME_NAME: &str = "home.example";

/// The namespaces, the PKI and the configs. Dropping it kills what still runs in the namespaces
/// and deletes them (start daemons after it, so that they drop first).
pub struct IkeRoamingLab {
    /// The home.
    pub home: Netns,
    /// The ISP (router, NAT).
    pub isp: Netns,
    /// The VPS.
    pub vps: Netns,
    /// The attacker.
    pub attacker: Netns,
    /// The CA made with `hometun pki init`.
    pub pki: Pki,
    /// The server's config.
    pub server_toml: PathBuf,
    /// The home's client config (`pki request/sign/import`).
    pub client_toml: PathBuf,
    path: Path4,
    home_address: Ipv4Addr,
    public_address: Ipv4Addr,
    dir: tempfile::TempDir,
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("path is not UTF-8")
}

impl IkeRoamingLab {
    /// Builds the namespaces, links, routes (and the NAT for [`Path4::Nat`]), the PKI and the
    /// configs. Nothing runs yet.
    pub fn new(path: Path4) -> anyhow::Result<Self> {
        let RoamingNet {
            home,
            isp,
            vps,
            attacker,
        } = RoamingNet::build("k", path)?;
        vps.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{VPS_INNER}/128"),
            "dev",
            "lo",
        ])?;
        let dir = tempfile::tempdir()?;
        let ca = dir.path().join("ca");
        hometun(&[
            "pki",
            "init",
            "--dir",
            path_str(&ca)?,
            "--server-ipv4",
            &VPS_OUTER.to_string(),
            "--pool",
            POOL,
            "--server-name",
            VPS_NAME,
        ])?;
        let pki = Pki { dir: ca };
        let client_toml = pki.client(&dir.path().join("home"), HOME_NAME)?;
        Ok(IkeRoamingLab {
            home,
            isp,
            vps,
            attacker,
            server_toml: pki.server_toml(),
            client_toml,
            pki,
            path,
            home_address: HOME_FIRST,
            public_address: ISP_VPS_SIDE,
            dir,
        })
    }

    /// The lab's scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The home's directory (its key, certificate, CA and client.toml).
    pub fn home_dir(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Starts `hometun server` in the VPS namespace; waits until it listens.
    pub fn start_server(&self) -> anyhow::Result<Daemon> {
        let daemon = Daemon::start(
            &self.vps,
            "server",
            &self.server_toml,
            &self.dir.path().join("server.log"),
        )?;
        if !daemon.wait_log("IKE on", Duration::from_secs(20)) {
            bail!("the server did not come up:\n{}", daemon.log_text());
        }
        Ok(daemon)
    }

    /// Starts `hometun client` in the home namespace.
    pub fn start_client(&self) -> anyhow::Result<Daemon> {
        Daemon::start(
            &self.home,
            "client",
            &self.client_toml,
            &self.dir.path().join("client.log"),
        )
    }

    /// The home's current outer address (behind NAT: its private one).
    pub fn home_address(&self) -> Ipv4Addr {
        self.home_address
    }

    /// Where the VPS sees the home now: its address, or behind NAT the NAT's public one.
    pub fn home_seen_from_vps(&self) -> Ipv4Addr {
        match self.path {
            Path4::Routed => self.home_address,
            Path4::Nat => self.public_address,
        }
    }

    /// The change this lab makes: the home's own address ([`Path4::Routed`]) or the NAT's
    /// public one ([`Path4::Nat`]), to the next address of the pair. Returns CLOCK_MONOTONIC
    /// (ns) just before the old address is deleted, the moment it stops working.
    pub fn change_address(&mut self) -> anyhow::Result<u64> {
        match self.path {
            Path4::Routed => {
                let (old, new) = other(self.home_address, HOME_FIRST, HOME_SECOND);
                let at = swap_address(&self.home, "h0", old, new)?;
                self.home_address = new;
                Ok(at)
            }
            Path4::Nat => {
                let (old, new) = other(self.public_address, ISP_VPS_SIDE, PUBLIC_SECOND);
                let at = swap_address(&self.isp, "iv", old, new)?;
                self.public_address = new;
                Ok(at)
            }
        }
    }
}

/// The current address of a pair and the other one.
fn other(current: Ipv4Addr, a: Ipv4Addr, b: Ipv4Addr) -> (Ipv4Addr, Ipv4Addr) {
    if current == a { (a, b) } else { (b, a) }
}

/// Adds `new` on `dev`, then deletes `old` (with `promote_secondaries` the new one takes
/// over; masquerade forgets the mappings of a deleted address). Returns CLOCK_MONOTONIC (ns)
/// just before the deletion.
pub fn swap_address(ns: &Netns, dev: &str, old: Ipv4Addr, new: Ipv4Addr) -> anyhow::Result<u64> {
    ns.ip(&["addr", "add", &format!("{new}/24"), "dev", dev])?;
    let at = monotonic_ns();
    ns.ip(&["addr", "del", &format!("{old}/24"), "dev", dev])?;
    Ok(at)
}

/// Waits until `hometun status --json` of `daemon` satisfies `condition`; returns the last
/// status seen.
pub fn wait_status(
    daemon: &Daemon,
    timeout: Duration,
    condition: impl Fn(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    let mut last = None;
    wait_for(timeout, || {
        last = daemon.status().ok();
        last.as_ref().is_some_and(&condition)
    });
    last.filter(|s| condition(s))
}

/// Drops of one reason summed over the SAs of a status's forwarder counters.
pub fn drops(status: &serde_json::Value, reason: &str) -> u64 {
    status["counters"]["sas"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|sa| sa["drops"].as_array().cloned().unwrap_or_default())
        .filter(|d| d[0] == reason)
        .filter_map(|d| d[1].as_u64())
        .sum()
}

/// The inbound SPIs of the first peer's CHILD SAs in a status.
pub fn inbound_spis(status: &serde_json::Value) -> Vec<u64> {
    status["peers"][0]["children"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|c| crate::ike_lab::spi(&c["spi_in"]))
                .collect()
        })
        .unwrap_or_default()
}
