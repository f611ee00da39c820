//! `hometun server` and `hometun client`: read and check the configuration, load the
//! credentials, build the endpoint's configuration and start the driver. Also the tools that
//! talk to daemons and servers: `status`, `ike probe`, `ike bench`.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use hometun_config::{
    ClientConfig, ConfigError, IkeSection, LimitsSection, ServerConfig, TunnelSection,
};
use hometun_control::InterfaceConfig;
use ipnet::Ipv6Net;

use crate::driver::{self, DriverConfig, ForwarderSource, Role};
use crate::homes::KnownPeers;
use crate::registry_watch::RegistryWatch;
use crate::reload::ConfigReloader;
use crate::site::SitePlan;
use hometun_ike::crypto::credentials::certificates_from_pem;
use hometun_ike::crypto::{CertificateVerifier, PeerIdentity, PeerUsage, PrivateKey};
use hometun_ike::endpoint::{CommonConfig, InitiatorConfig, ResponderConfig};
use hometun_ike::proposal::{EspProposal, IkeProposal};

/// Our certificate chain, key and the verifier for the peer's chain, loaded from files.
pub struct Credentials {
    /// Our chain (DER), end-entity first.
    pub chain: Vec<Vec<u8>>,
    /// Our key.
    pub key: PrivateKey,
    /// Trusts the configured CA (and CRL).
    pub verifier: CertificateVerifier,
}

/// The credential files a config names, and where: every error names the config, the key and
/// the file (`server.toml: server.certificate: /etc/hometun/servr.pem: not found`).
pub struct CredentialFiles<'a> {
    /// The config file.
    pub config: &'a Path,
    /// Its table: `server` or `client`.
    pub section: &'static str,
    /// `certificate`.
    pub certificate: &'a Path,
    /// `private_key`.
    pub private_key: &'a Path,
    /// `ca`.
    pub ca: &'a Path,
    /// `crl`, if any.
    pub crl: Option<&'a Path>,
}

impl CredentialFiles<'_> {
    fn read(&self, key: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
        std::fs::read(path).map_err(|e| {
            let key = format!("{}.{key}", self.section);
            hometun_config::file_error(self.config, &key, path, &e).into()
        })
    }

    fn error(&self, key: &str, path: &Path, problem: impl std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!(
            "{}: {}.{key}: {}: {problem}",
            self.config.display(),
            self.section,
            path.display()
        )
    }
}

/// Loads the credentials; every error is one line naming the config, the key, the file and the
/// problem. The peer's certificate must fit `peer_usage`: a client requires the server's
/// serverAuth, the server refuses a server-only certificate as a home's.
pub fn load_credentials(
    files: &CredentialFiles<'_>,
    peer_usage: PeerUsage,
) -> anyhow::Result<Credentials> {
    let (certificate, private_key, ca) = (files.certificate, files.private_key, files.ca);
    let chain = certificates_from_pem(&files.read("certificate", certificate)?)
        .map_err(|e| files.error("certificate", certificate, e))?;
    let first = chain
        .first()
        .ok_or_else(|| files.error("certificate", certificate, "no certificate in the file"))?;
    let key = PrivateKey::from_pem(&files.read("private_key", private_key)?)
        .map_err(|e| files.error("private_key", private_key, e))?;
    key.check_matches_certificate(first).map_err(|e| {
        files.error(
            "private_key",
            private_key,
            format!("{e} ({})", certificate.display()),
        )
    })?;
    let mut verifier = CertificateVerifier::from_ca_pem(&files.read("ca", ca)?)
        .map_err(|e| files.error("ca", ca, e))?
        .require(peer_usage);
    if let Some(crl) = files.crl {
        verifier
            .add_crls(&files.read("crl", crl)?)
            .map_err(|e| files.error("crl", crl, e))?;
    }
    Ok(Credentials {
        chain,
        key,
        verifier,
    })
}

fn file_error(path: &Path, problem: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{}: {problem}", path.display())
}

/// The settings both roles share, from the config's `[ike]` and `[limits]`.
pub fn common_config(
    credentials: Credentials,
    identity: PeerIdentity,
    ike: &IkeSection,
    limits: &LimitsSection,
    ike_port: u16,
    nat_port: u16,
    config_path: &Path,
) -> Result<CommonConfig, ConfigError> {
    let ike_proposals = ike
        .proposals
        .iter()
        .enumerate()
        .map(|(i, text)| {
            IkeProposal::parse(text).map_err(|e| {
                ConfigError::new(config_path, format!("ike.proposals[{i}]"), e.to_string())
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let esp_proposals = ike
        .esp_proposals
        .iter()
        .enumerate()
        .map(|(i, text)| {
            EspProposal::parse(text).map_err(|e| {
                ConfigError::new(
                    config_path,
                    format!("ike.esp_proposals[{i}]"),
                    e.to_string(),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CommonConfig {
        chain: credentials.chain,
        key: std::sync::Arc::new(credentials.key),
        identity,
        verifier: std::sync::Arc::new(credentials.verifier),
        ike_proposals,
        esp_proposals,
        limits: limits.to_limits(),
        ike_rekey: hometun_ike::settings::IkeRekeyPolicy {
            after_child_rekeys: limits.ike_rekey_child_rekeys,
            bytes: Some(limits.ike_rekey_bytes),
            seconds: limits.ike_rekey_seconds,
        },
        replay_window: ike.replay_window,
        nat_keepalive_seconds: ike.nat_keepalive_seconds,
        retransmit_base: Duration::from_millis(ike.retransmit_ms),
        retransmit_tries: ike.retransmit_tries,
        dpd: (ike.dpd_seconds > 0).then(|| Duration::from_secs(ike.dpd_seconds)),
        reconnect_max: Duration::from_secs(ike.reconnect_max_seconds),
        ike_port,
        nat_port,
    })
}

/// The forwarder's interface. `peer_pool`: on a server, where every home's prefix must lie
/// (the forwarder then installs a home's pairs only inside the prefixes granted to it).
fn interface(
    tunnel: &TunnelSection,
    extra: Option<Ipv6Net>,
    bind: Option<Ipv4Addr>,
    nat_port: u16,
    peer_pool: Option<Ipv6Net>,
) -> InterfaceConfig {
    let mut addresses = vec![tunnel.link_local];
    addresses.extend(extra);
    InterfaceConfig {
        tun_name: tunnel.interface.clone(),
        mtu: tunnel.mtu,
        addresses,
        bind_ipv4: bind,
        udp_port: nat_port,
        raw_esp: true,
        manage_routes: tunnel.manage_routes,
        route_metric: tunnel.route_metric,
        route_protocol: tunnel.route_protocol,
        peer_pool,
        clamp_mss: tunnel.clamp_mss,
        icmp_source: None,
    }
}

/// The forwarder at `socket` (a `forwarder_socket` key) if set, else our own binary as a child
/// with `args`.
fn forwarder_source(socket: Option<&Path>, args: Vec<String>) -> anyhow::Result<ForwarderSource> {
    Ok(match socket {
        Some(path) => ForwarderSource::Connect(path.to_path_buf()),
        None => ForwarderSource::Spawn {
            program: std::env::current_exe()
                .context("finding our own binary to start the forwarder")?,
            args,
        },
    })
}

fn create_state_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        file_error(
            dir,
            format!("cannot create: {}", hometun_config::io_problem(&e)),
        )
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Everything `hometun server` needs, checked, before anything touches the network.
pub fn prepare_server(
    config_path: &Path,
) -> anyhow::Result<(DriverConfig, ResponderConfig, Option<RegistryWatch>)> {
    let config = ServerConfig::load(config_path)?;
    let s = &config.server;
    let registry = crate::registry_watch::open(&config)
        .with_context(|| format!("{}: [registry]", config_path.display()))?;
    let revoked = registry
        .as_ref()
        .map(|watch| watch.revoked.clone())
        .unwrap_or_default();
    let (common, settings) = crate::reload::server_settings(&config, config_path, &revoked)?;
    let responder = ResponderConfig {
        common,
        local_addr: s.listen,
        authorizer: settings.authorizer,
        cookie_threshold: settings.cookie_threshold,
        half_open_per_source: settings.half_open_per_source,
        half_open_total: settings.half_open_total,
        new_ike_sas_per_identity: settings.new_ike_sas_per_identity,
    };
    // The enrolled homes and which server holds each: the enrollment listener's CA directory,
    // or where `pki init` put this config.
    let registry_dir = match &config.enroll {
        Some(enroll) => enroll.pki_dir.clone(),
        None => config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    let driver = DriverConfig {
        role_name: "server",
        identity: s.name.clone(),
        ike_bind: SocketAddrV4::new(s.listen, s.ike_port),
        local_addr: s.listen,
        nat_port: s.nat_port,
        interface: InterfaceConfig {
            // Packet Too Big and the like towards Internet hosts need a global source.
            icmp_source: crate::upstream::icmp_source(config.upstream.interface.as_deref(), s.pool),
            ..interface(
                &config.tunnel,
                None,
                Some(s.listen),
                s.nat_port,
                Some(s.pool),
            )
        },
        // A client's outer address may change (docs/ARCHITECTURE.md, "Roaming"): the
        // forwarder checks its override NA and probes the new address.
        forwarder: forwarder_source(s.forwarder_socket.as_deref(), vec!["--accept-moves".into()])?,
        status_socket: s.status_socket.clone(),
        metrics: s.metrics,
        reloader: Some(ConfigReloader::server(config_path, config.clone()).refusing(revoked)),
        renewal: None,
        peers_up: Some(s.state_dir.clone()),
        site: SitePlan::Vps(Box::new(config.clone())),
        known_peers: KnownPeers {
            configured: config.clients.iter().map(|c| c.name.clone()).collect(),
            registry_dir: Some(registry_dir.clone()),
        },
        holders: crate::holders::HolderRegistry::of_server(
            registry.as_ref().map(|watch| &watch.registry),
            &registry_dir,
            &s.name,
        ),
    };
    create_state_dir(&s.state_dir)?;
    Ok((driver, responder, registry))
}

/// Runs `hometun server --config FILE` (with the enrollment listener when it has `[enroll]`)
/// until SIGTERM/SIGINT.
pub fn run_server(config_path: &Path) -> anyhow::Result<()> {
    let (driver, responder, registry) = prepare_server(config_path)?;
    let enrollment = crate::enrollment::prepare(config_path)?;
    runtime()?.block_on(async move {
        if let Some(listener) = enrollment {
            listener.spawn()?;
        }
        let (requests, _socket_file) = serve_requests(&driver).await?;
        driver::run_with_registry(driver, Role::Responder(responder), requests, registry).await
    })
}

/// Starts the status socket and the metrics endpoint `driver` names, whose requests the driver
/// answers. The socket file is removed when the returned guard is dropped.
async fn serve_requests(
    driver: &DriverConfig,
) -> anyhow::Result<(driver::Requests, crate::status::SocketFile)> {
    let (status_tx, status) = tokio::sync::mpsc::channel(16);
    if let Some(addr) = driver.metrics {
        let bound = crate::metrics::serve(addr, status_tx.clone()).await?;
        tracing::info!("metrics on http://{bound}{}", crate::metrics::METRICS_PATH);
    }
    let (command_tx, commands) = tokio::sync::mpsc::channel(4);
    let socket_file = crate::status::serve(&driver.status_socket, status_tx, command_tx).await?;
    Ok((driver::Requests { status, commands }, socket_file))
}

/// `hometun server --check`: reads the config and the files it names (certificate, key, CA,
/// CRL, the enrollment CA directory) as start-up would, touching neither network nor disk.
pub fn check_server(config_path: &Path) -> anyhow::Result<()> {
    let config = ServerConfig::load(config_path)?;
    crate::reload::server_settings(&config, config_path, &Default::default())?;
    if let Some(enroll) = &config.enroll {
        hometun_pki::enroll::server::EnrollmentServer::new(&enroll.pki_dir).with_context(|| {
            format!(
                "{}: enroll.pki_dir {}",
                config_path.display(),
                enroll.pki_dir.display()
            )
        })?;
    }
    Ok(())
}

/// `hometun client --check`: reads the config and the files it names as start-up would.
pub fn check_client(config_path: &Path) -> anyhow::Result<()> {
    let config = ClientConfig::load(config_path)?;
    crate::reload::client_settings(&config, config_path)?;
    Ok(())
}

/// The route to the server may not exist yet (a home router boots before its uplink): ask the
/// routing table every few seconds until it answers.
fn wait_for_route(server: SocketAddrV4) -> Ipv4Addr {
    let mut logged = false;
    loop {
        match crate::netconf::route_source(server) {
            Ok(local) => return local,
            Err(error) if !logged => {
                tracing::warn!("{error:#}; waiting for a route (set client.local to skip this)");
                logged = true;
            }
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// Everything `hometun client` needs, checked, before anything touches the network.
pub fn prepare_client(config_path: &Path) -> anyhow::Result<(DriverConfig, InitiatorConfig)> {
    let config = ClientConfig::load(config_path)?;
    let c = &config.client;
    // Our side of IKE uses the standard port; the server's may differ.
    let ike_port = crate::reload::CLIENT_IKE_PORT;
    let common = crate::reload::client_settings(&config, config_path)?;
    // The first server is the one tried first; the others follow in the file's order when
    // the one in use stops answering (README.md, "Failover and BGP").
    let mut servers = config
        .servers()
        .into_iter()
        .map(|t| {
            (
                SocketAddrV4::new(t.address, c.server_port),
                PeerIdentity::Fqdn(t.name),
            )
        })
        .collect::<Vec<_>>();
    let (server, server_identity) = servers.remove(0);
    let local_addr = match c.local {
        Some(local) => local,
        None => wait_for_route(server),
    };
    let mut server_names: Vec<String> = c.server_name.as_slice().to_vec();
    server_names.dedup();
    let initiator = InitiatorConfig {
        common,
        server,
        server_identity,
        fallback_servers: servers,
        local_addr,
        local_prefixes: vec![c.prefix],
        force_udp_encapsulation: c.force_udp_encapsulation,
    };
    // The home's address goes on the tunnel as a /128: the prefix itself belongs to the LAN.
    let tunnel_address =
        Ipv6Net::new(config.tunnel_address(), 128).expect("128 is a valid IPv6 prefix length");
    let driver = DriverConfig {
        role_name: "client",
        identity: c.name.clone(),
        ike_bind: SocketAddrV4::new(c.local.unwrap_or(Ipv4Addr::UNSPECIFIED), ike_port),
        local_addr,
        nat_port: c.nat_port,
        interface: interface(
            &config.tunnel,
            Some(tunnel_address),
            c.local,
            c.nat_port,
            None,
        ),
        forwarder: forwarder_source(
            c.forwarder_socket.as_deref(),
            client_forwarder_args(c.local, config.tunnel_address()),
        )?,
        status_socket: c.status_socket.clone(),
        metrics: c.metrics,
        reloader: Some(ConfigReloader::client(config_path, config.clone())),
        renewal: Some(config_path.to_path_buf()),
        peers_up: None,
        site: SitePlan::Home(Box::new(config.clone())),
        known_peers: KnownPeers {
            configured: server_names,
            registry_dir: None,
        },
        holders: None,
    };
    create_state_dir(&c.state_dir)?;
    Ok((driver, initiator))
}

/// Without `client.local` the outer address is followed as it changes: the forwarder watches
/// it (netlink), re-binds and announces the new one with the override NA for our tunnel
/// address; the IKE SA follows its `EndpointMoved`.
fn client_forwarder_args(
    local: Option<Ipv4Addr>,
    tunnel_address: std::net::Ipv6Addr,
) -> Vec<String> {
    match local {
        Some(_) => Vec::new(),
        None => vec![
            "--follow-local-address".into(),
            "--announce-target".into(),
            tunnel_address.to_string(),
        ],
    }
}

/// Runs `hometun client --config FILE` until SIGTERM/SIGINT.
pub fn run_client(config_path: &Path) -> anyhow::Result<()> {
    let (driver, initiator) = prepare_client(config_path)?;
    runtime()?.block_on(async move {
        let (requests, _socket_file) = serve_requests(&driver).await?;
        driver::run(driver, Role::Initiator(initiator), requests).await
    })
}

/// Where `hometun status` looks without `--config`.
pub const DEFAULT_CONFIGS: [&str; 2] = ["/etc/hometun/server.toml", "/etc/hometun/client.toml"];

/// The status socket named by a server or client config. A config with errors still names its
/// socket: the daemon may be running on the last good one (a SIGHUP keeps it), so the errors are
/// told on stderr and the socket is asked anyway.
pub fn status_socket_of(config_path: &Path) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(config_path)
        .map_err(|e| file_error(config_path, hometun_config::io_problem(&e)))?;
    let is_server = text.lines().any(|l| l.trim() == "[server]");
    let loaded = if is_server {
        ServerConfig::load(config_path).map(|c| c.server.status_socket)
    } else {
        ClientConfig::load(config_path).map(|c| c.client.status_socket)
    };
    Ok(match loaded {
        Ok(socket) => socket,
        Err(error) => {
            let socket = hometun_config::status_socket_in(config_path, &text);
            eprintln!(
                "hometun: warning: {error} (a running daemon keeps its last good config; asking {})",
                socket.display()
            );
            socket
        }
    })
}

/// The status answer narrowed to the peer `name`, in the same JSON (fields this version does
/// not know stay): its IKE SA, its pairs' counters and its entry among the homes.
fn only_peer(mut value: serde_json::Value, name: &str) -> Option<serde_json::Value> {
    let named = |v: &serde_json::Value| v["name"] == name;
    let mut ids = Vec::new();
    if let Some(peers) = value["peers"].as_array_mut() {
        peers.retain(named);
        ids = peers.iter().map(|p| p["peer"].clone()).collect();
    }
    if let Some(homes) = value["homes"].as_array_mut() {
        homes.retain(named);
    }
    let known = [&value["peers"], &value["homes"]]
        .iter()
        .any(|list| list.as_array().is_some_and(|l| !l.is_empty()));
    if !known {
        return None;
    }
    if let Some(sas) = value["counters"]["sas"].as_array_mut() {
        sas.retain(|sa| ids.contains(&sa["peer"]));
    }
    if let Some(roaming) = value["counters"]["roaming"].as_array_mut() {
        roaming.retain(|peer| ids.contains(&peer["peer"]));
    }
    if let Some(drops) = value["counters"]["global_drops"].as_array_mut() {
        drops.clear();
    }
    Some(value)
}

/// Runs `hometun status [NAME] [--config F] [--json]`.
pub fn run_status(config: Option<&Path>, name: Option<&str>, json: bool) -> anyhow::Result<()> {
    let config_path = match config {
        Some(path) => path.to_path_buf(),
        None => {
            let found = DEFAULT_CONFIGS
                .iter()
                .map(Path::new)
                .find(|p| p.exists())
                .with_context(|| {
                    format!(
                        "no --config given and none of {} exists",
                        DEFAULT_CONFIGS.join(", ")
                    )
                })?;
            eprintln!("using {}", found.display());
            found.to_path_buf()
        }
    };
    let socket = status_socket_of(&config_path)?;
    let text = crate::status::query(&socket)?;
    if json && name.is_none() {
        print!("{text}");
        return Ok(());
    }
    let mut value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: the daemon's answer is not JSON", socket.display()))?;
    if let Some(error) = value.get("error") {
        anyhow::bail!("{}: {error}", socket.display());
    }
    if let Some(name) = name {
        value = only_peer(value, name)
            .with_context(|| format!("the daemon knows no peer named {name}"))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let view: crate::status::StatusView = serde_json::from_value(value)
        .with_context(|| format!("{}: unexpected status format", socket.display()))?;
    print!("{}", crate::status::render(&view));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::only_peer;

    #[test]
    fn one_peers_status_keeps_its_pairs_and_roaming_counts_only() {
        let all = serde_json::json!({
            "peers": [{ "peer": 1, "name": "a.example" }, { "peer": 2, "name": "b.example" }],
            "homes": [{ "name": "a.example" }, { "name": "b.example" }],
            "counters": {
                "sas": [{ "peer": 1, "spi_in": 10 }, { "peer": 2, "spi_in": 20 }],
                "global_drops": [["no-sa", 3]],
                "roaming": [{ "peer": 1, "moves": 1 }, { "peer": 2, "moves": 5 }],
            },
        });
        let one = only_peer(all.clone(), "b.example").unwrap();
        assert_eq!(
            one["peers"],
            serde_json::json!([{ "peer": 2, "name": "b.example" }])
        );
        assert_eq!(
            one["counters"]["sas"],
            serde_json::json!([{ "peer": 2, "spi_in": 20 }])
        );
        assert_eq!(
            one["counters"]["roaming"],
            serde_json::json!([{ "peer": 2, "moves": 5 }])
        );
        assert_eq!(one["counters"]["global_drops"], serde_json::json!([]));
        assert!(only_peer(all, "c.example").is_none());
    }
}
