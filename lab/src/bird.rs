//! BIRD 2 in a lab namespace: started with its own configuration and control socket in a
//! temporary directory, asked with `birdc`, killed when dropped. The VPS configuration is the
//! shipped example (examples/bird/bird-vps.conf) with its defines set for the lab, so that the
//! lab tests what users install.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::{Guarded, Netns, wait_for};

/// A running `bird` in a namespace.
pub struct Bird {
    /// The control socket `birdc -s` talks to.
    pub socket: PathBuf,
    /// Its log (stderr, with `log stderr all`).
    pub log: PathBuf,
    namespace: String,
    _process: Guarded,
}

impl Bird {
    /// Starts `bird -f -c CONFIG -s SOCKET` in `ns` with `config` (text) written into `dir`
    /// as `NAME.conf`; waits until it answers on its socket.
    pub fn start(ns: &Netns, dir: &Path, name: &str, config: &str) -> anyhow::Result<Self> {
        let conf = dir.join(format!("{name}.conf"));
        let socket = dir.join(format!("{name}.ctl"));
        let log = dir.join(format!("{name}.log"));
        // Its messages go to stderr, which the guard writes to the log file.
        std::fs::write(&conf, format!("log stderr all;\n{config}"))?;
        let mut command = ns.command("bird");
        command
            .args(["-f", "-c"])
            .arg(&conf)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(dir.join(format!("{name}.pid")));
        let process = Guarded::spawn(command, &format!("bird {name} in {}", ns.name()), &log)?;
        let bird = Bird {
            socket,
            log,
            namespace: ns.name().to_string(),
            _process: process,
        };
        if !wait_for(Duration::from_secs(10), || {
            bird.birdc(&["show", "status"])
                .is_ok_and(|text| text.contains("Daemon is up and running"))
        }) {
            bail!(
                "bird {name} did not come up:\n{}",
                std::fs::read_to_string(&bird.log).unwrap_or_default()
            );
        }
        Ok(bird)
    }

    /// `birdc -s SOCKET ARGS...`: its output.
    pub fn birdc(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = std::process::Command::new("ip")
            .args(["netns", "exec", &self.namespace, "birdc", "-s"])
            .arg(&self.socket)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .context("running birdc")?;
        if !output.status.success() {
            bail!("birdc {}: {}", args.join(" "), crate::printed(&output));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether BGP session `protocol` is established.
    pub fn established(&self, protocol: &str) -> bool {
        self.birdc(&["show", "protocols", protocol])
            .is_ok_and(|text| text.contains("Established"))
    }

    /// The routes BIRD holds for `prefix`, as the protocols they came from, the best first
    /// (from `show route PREFIX`: `PREFIX unicast [PROTOCOL TIME] * ...`).
    pub fn routes(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let text = self.birdc(&["show", "route", prefix])?;
        Ok(parse_routes(&text))
    }
}

/// The protocol of each route in `birdc show route` output, the primary (`*`) first.
pub fn parse_routes(text: &str) -> Vec<String> {
    let mut routes: Vec<(bool, String)> = text
        .lines()
        .filter_map(|line| {
            let open = line.find(" [")?;
            let rest = &line[open + 2..];
            let protocol = rest.split_whitespace().next()?.to_string();
            let after = &rest[rest.find(']')? + 1..];
            Some((after.trim_start().starts_with('*'), protocol))
        })
        .collect();
    routes.sort_by_key(|(primary, _)| !primary);
    routes.into_iter().map(|(_, protocol)| protocol).collect()
}

/// The example configuration of a server's BIRD with its defines and router id replaced by
/// `defines` (`NAME`, value) and `router_id`. Every name must be defined in the example: the
/// lab then breaks when the example changes under it, rather than testing something else.
pub fn vps_config(
    example: &str,
    defines: &[(&str, &str)],
    router_id: &str,
) -> anyhow::Result<String> {
    let mut text = String::new();
    let mut found = Vec::new();
    for line in example.lines() {
        let replaced = defines.iter().find_map(|(name, value)| {
            line.starts_with(&format!("define {name} =")).then(|| {
                found.push(*name);
                format!("define {name} = {value};")
            })
        });
        let line = match replaced {
            Some(line) => line,
            None if line.starts_with("router id ") => format!("router id {router_id};"),
            None => line.to_string(),
        };
        text.push_str(&line);
        text.push('\n');
    }
    if let Some((missing, _)) = defines.iter().find(|(name, _)| !found.contains(name)) {
        bail!("the example BIRD configuration has no `define {missing}`");
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_route_comes_first() {
        let text = "BIRD 2.0.12 ready.\nTable master6:\n\
            2001:db8:100:100::/56 unicast [b 17:20:01.123] * (100) [AS65002i]\n\
            \tvia 2001:db8:ff:b::2 on b0\n\
            \x20                    unicast [a 17:19:00.000] (100) [AS65001i]\n\
            \tvia 2001:db8:ff:a::2 on a0\n";
        assert_eq!(parse_routes(text), ["b", "a"]);
        assert!(parse_routes("BIRD 2.0.12 ready.\nNetwork not found\n").is_empty());
    }

    #[test]
    fn the_example_takes_the_lab_s_values() {
        let example = "define A = 1;\nrouter id 203.0.113.2;\nprotocol device {}\n";
        let text = vps_config(example, &[("A", "2")], "203.0.113.18").unwrap();
        assert_eq!(
            text,
            "define A = 2;\nrouter id 203.0.113.18;\nprotocol device {}\n"
        );
        assert!(vps_config(example, &[("B", "2")], "192.0.2.9").is_err());
    }
}
