//! examples/config/server.toml and client.toml load with the real loader, and every key they
//! show commented out is a real key whose value loads too: the defaults they state are the
//! loader's defaults.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use hometun_config::{ClientConfig, ServerConfig};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/config")
        .join(name)
}

/// The file with every commented-out key and table header (`# key = value`, `# [table]`)
/// made live, written next to a copy in a temporary directory.
fn uncommented(path: &Path, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(path).unwrap();
    let mut live = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if is_toml_line(rest) => {
                live += 1;
                rest.to_string()
            }
            _ => line.to_string(),
        })
        .collect();
    assert!(live > 20, "{}: only {live} commented keys", path.display());
    let out = dir.join(path.file_name().unwrap());
    std::fs::write(&out, lines.join("\n")).unwrap();
    out
}

fn is_toml_line(line: &str) -> bool {
    if line.starts_with('[') && line.trim_end().ends_with(']') {
        return true;
    }
    match line.split_once(" = ") {
        Some((key, _)) => key.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
        None => false,
    }
}

#[test]
fn the_sample_server_config_loads_and_states_the_defaults() {
    let path = example("server.toml");
    let config = ServerConfig::load(&path).unwrap();
    assert_eq!(config.server.name, "vps.example");
    let dir = path.parent().unwrap();
    assert_eq!(config.server.certificate, dir.join("server.pem"));
    assert_eq!(
        config.server.forwarder_socket.as_deref(),
        Some(Path::new("/run/hometun-server-forwarder/control.sock"))
    );
    assert!(config.clients.is_empty() && config.enroll.is_none());

    let scratch = tempfile::tempdir().unwrap();
    let all = ServerConfig::load(&uncommented(&path, scratch.path())).unwrap();
    // The examples of optional keys are not defaults; everything else is.
    assert_eq!(all.clients.len(), 1);
    assert!(all.enroll.is_some() && all.server.metrics.is_some());
    let mut limits = all.limits.clone();
    assert!(limits.rekey_seconds.is_some() && limits.hard_seconds.is_some());
    assert!(limits.ike_rekey_seconds.is_some());
    (limits.rekey_seconds, limits.hard_seconds) = (None, None);
    limits.ike_rekey_seconds = None;
    assert_eq!(limits, config.limits);
    assert_eq!(all.ike, config.ike);
    assert_eq!(all.dos, config.dos);
    assert_eq!(all.tunnel, config.tunnel);
    assert_eq!(all.upstream, config.upstream);
    assert_eq!(all.server.ike_port, config.server.ike_port);
    assert_eq!(all.server.nat_port, config.server.nat_port);
}

#[test]
fn the_sample_client_config_loads_and_states_the_defaults() {
    let path = example("client.toml");
    let config = ClientConfig::load(&path).unwrap();
    assert_eq!(config.client.server_name.as_slice(), ["vps.example"]);
    assert_eq!(
        config.client.local, None,
        "the sample follows the home's address"
    );
    assert_eq!(
        config.client.forwarder_socket.as_deref(),
        Some(Path::new("/run/hometun-client-forwarder/control.sock"))
    );

    let scratch = tempfile::tempdir().unwrap();
    let all = ClientConfig::load(&uncommented(&path, scratch.path())).unwrap();
    assert!(all.client.local.is_some() && all.client.metrics.is_some());
    assert!(all.client.updown.is_some() && config.client.updown.is_none());
    assert_eq!((all.lan.len(), config.lan.len()), (1, 0));
    assert_eq!(all.tunnel_address(), config.tunnel_address());
    let mut limits = all.limits.clone();
    (limits.rekey_seconds, limits.hard_seconds) = (None, None);
    limits.ike_rekey_seconds = None;
    assert_eq!(limits, config.limits);
    assert_eq!(all.ike, config.ike);
    assert_eq!(all.tunnel, config.tunnel);
    assert_eq!(all.client.server_port, config.client.server_port);
    assert_eq!(all.client.nat_port, config.client.nat_port);
    assert!(all.renew.server.is_some() && all.renew.after_percent.is_some());
    assert_eq!(
        (all.renew.before_days, all.renew.new_key),
        (config.renew.before_days, config.renew.new_key)
    );
    assert_eq!(config.renew, hometun_config::RenewSection::default());
}
