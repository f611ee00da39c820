//! Helpers of the PKI tests (`integration/tests/pki_*.rs`): the `hometun pki` / `hometun
//! enroll` commands run the way an operator runs them (the home's inside its namespace, so
//! that enrollment really crosses the lab's wire), `pki list --json`, the addresses the
//! daemon put on the tunnel, and the checks of a refused client.

use std::net::Ipv6Addr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use anyhow::{Context, bail};
use ipnet::Ipv6Net;

use crate::ike_lab::{Daemon, hometun};
use crate::{Netns, hometun_bin};

pub use crate::ike_lab::logs;
pub use crate::printed;

/// `hometun ARGS...` inside `ns`; the output whether it succeeded or not.
pub fn hometun_in(ns: &Netns, args: &[&str]) -> anyhow::Result<Output> {
    let bin = hometun_bin()?;
    ns.output(bin.to_str().context("binary path is not UTF-8")?, args)
}

/// Path as `&str` for command lines.
pub fn arg(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("path is not UTF-8")
}

/// One line of `hometun pki list --json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Client name.
    pub name: String,
    /// Its prefix.
    pub prefix: Ipv6Net,
    /// `active`, `revoked`, ...
    pub status: String,
}

/// `hometun pki list --dir CA --json`, parsed: each name's latest certificate.
pub fn pki_list(ca: &Path) -> anyhow::Result<Vec<Listed>> {
    pki_list_args(ca, &[])
}

/// `hometun pki list --dir CA --json --all`, parsed: every certificate ever issued.
pub fn pki_list_all(ca: &Path) -> anyhow::Result<Vec<Listed>> {
    pki_list_args(ca, &["--all"])
}

fn pki_list_args(ca: &Path, extra: &[&str]) -> anyhow::Result<Vec<Listed>> {
    let mut args = vec!["pki", "list", "--dir", arg(ca)?, "--json"];
    args.extend_from_slice(extra);
    let output = hometun(&args)?;
    let value: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("pki list --json is not JSON")?;
    let entries = value.as_array().context("pki list --json is not a list")?;
    entries
        .iter()
        .map(|e| {
            let text = |key: &str| {
                e[key]
                    .as_str()
                    .map(str::to_string)
                    .with_context(|| format!("pki list entry without {key}: {e}"))
            };
            Ok(Listed {
                name: text("name")?,
                prefix: text("prefix")?.parse()?,
                status: text("status")?,
            })
        })
        .collect()
}

/// The prefix `pki list` shows for `name`'s active certificate.
pub fn listed_prefix(ca: &Path, name: &str) -> anyhow::Result<Ipv6Net> {
    pki_list(ca)?
        .into_iter()
        .find(|l| l.name == name && l.status == "active")
        .map(|l| l.prefix)
        .with_context(|| format!("pki list has no active certificate for {name}"))
}

/// The global IPv6 addresses on device `dev` in `ns` (`ip -6 -o addr show dev DEV scope
/// global`).
pub fn global_addresses(ns: &Netns, dev: &str) -> anyhow::Result<Vec<Ipv6Addr>> {
    let output = ns.output(
        "ip",
        &["-6", "-o", "addr", "show", "dev", dev, "scope", "global"],
    )?;
    if !output.status.success() {
        bail!("ip addr show dev {dev}: {}", printed(&output));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    // "5: hometun0    inet6 2001:db8:100:1::1/128 scope global ..."
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet6")?;
            words.next()?.split('/').next().map(str::to_string)
        })
        .map(|a| a.parse().context("address in ip's output"))
        .collect()
}

/// The first line of `text` that contains every one of `needles`.
pub fn line_with(text: &str, needles: &[&str]) -> Option<String> {
    text.lines()
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_string)
}

/// Waits (at most `timeout`) until the server logged a refusal of `name` and returns that
/// line (`refused NAME at ADDR: REASON`).
pub fn wait_refusal(server: &Daemon, name: &str, timeout: Duration) -> Option<String> {
    let mut found = None;
    crate::wait_for(timeout, || {
        found = line_with(&server.log_text(), &["refused", name]);
        found.is_some()
    });
    found
}

/// From the server's `hometun status --json`: no IKE SA for `name`, and every CHILD SA in its
/// forwarder belongs to a peer that has one (nothing was installed for a refused client).
pub fn nothing_installed_for(status: &serde_json::Value, name: &str) -> anyhow::Result<()> {
    let peers = status["peers"].as_array().context("status without peers")?;
    if peers.iter().any(|p| p["name"] == name) {
        bail!("{name} has an IKE SA: {status:#}");
    }
    let known: Vec<u64> = peers.iter().filter_map(|p| p["peer"].as_u64()).collect();
    let sas = status["counters"]["sas"]
        .as_array()
        .context("status without counters.sas")?;
    if let Some(sa) = sas
        .iter()
        .find(|sa| !sa["peer"].as_u64().is_some_and(|p| known.contains(&p)))
    {
        bail!("an SA of no established peer (refused {name}?): {sa}\n{status:#}");
    }
    Ok(())
}
