//! SIGHUP: the daemon reads its configuration file again, with the certificates, the key, the
//! CA and the CRL it names, and hands the endpoint what changed ([`Endpoint::reload`]).
//!
//! A new configuration is checked exactly as at start-up (the same one-line errors); a bad one
//! is refused and the running one stays. Keys that shape the daemon's sockets and interface
//! (identity, addresses, ports, paths, the `[tunnel]` table, the metrics address, `[enroll]`)
//! need a restart: a reload that changes one is refused with a line naming it. Everything else
//! (certificates, key, CA, CRL, `server.pool`, `[[clients]]`, `[limits]`, `[ike]`, `[dos]`)
//! applies to new IKE SAs and to the later exchanges of the established ones, which stay up.
//!
//! [`Endpoint::reload`]: hometun_ike::endpoint::Endpoint::reload

use std::path::{Path, PathBuf};

use hometun_config::{ClientConfig, ConfigError, ServerConfig, check_private_key_mode};
use serde::Serialize;

use crate::authorizer::ConfigAuthorizer;
use crate::registry_watch::RevokedSerials;
use crate::setup::{CredentialFiles, common_config, load_credentials};
use hometun_ike::crypto::{PeerIdentity, PeerUsage};
use hometun_ike::endpoint::CommonConfig;
use hometun_ike::endpoint::reload::{Reload, ResponderReload};

/// The configuration a daemon runs with, and the file it came from.
#[derive(Debug, Clone)]
pub struct ConfigReloader {
    path: PathBuf,
    running: Running,
    /// The shared registry's revoked serials, which every authorizer built here refuses.
    revoked: RevokedSerials,
}

#[derive(Debug, Clone)]
enum Running {
    Server(Box<ServerConfig>),
    Client(Box<ClientConfig>),
}

/// What a successful reload yields.
pub struct Reloaded {
    /// The endpoint's new settings.
    pub reload: Reload,
    /// One line for the log: what changed.
    pub summary: String,
    /// A server's `server.pool`, for the forwarder's check of grants (`None` on a client).
    pub peer_pool: Option<ipnet::Ipv6Net>,
}

/// The endpoint settings of a server config: our credentials and protocol settings, and the
/// responder's authorizer and limits. Errors are one line naming the file and key.
pub fn server_settings(
    config: &ServerConfig,
    config_path: &Path,
    revoked: &RevokedSerials,
) -> anyhow::Result<(CommonConfig, ResponderReload)> {
    let s = &config.server;
    check_private_key_mode(&s.private_key, "server.private_key", config_path)?;
    let credentials = load_credentials(
        &CredentialFiles {
            config: config_path,
            section: "server",
            certificate: &s.certificate,
            private_key: &s.private_key,
            ca: &s.ca,
            crl: s.crl.as_deref(),
        },
        PeerUsage::Home,
    )?;
    let common = common_config(
        credentials,
        PeerIdentity::Fqdn(s.name.clone()),
        &config.ike,
        &config.limits,
        s.ike_port,
        s.nat_port,
        config_path,
    )?;
    let responder = ResponderReload {
        authorizer: Box::new(
            ConfigAuthorizer::new(config.clients.clone(), s.pool).refusing(revoked.clone()),
        ),
        cookie_threshold: config.dos.cookie_threshold,
        half_open_per_source: config.dos.half_open_per_source,
        half_open_total: config.dos.half_open_total,
        new_ike_sas_per_identity: config.dos.new_ike_sas_per_identity,
    };
    Ok((common, responder))
}

/// Our IKE port as a client: the standard one (the server's may differ).
pub const CLIENT_IKE_PORT: u16 = 500;

/// The endpoint settings of a client config.
pub fn client_settings(config: &ClientConfig, config_path: &Path) -> anyhow::Result<CommonConfig> {
    let c = &config.client;
    check_private_key_mode(&c.private_key, "client.private_key", config_path)?;
    let credentials = load_credentials(
        &CredentialFiles {
            config: config_path,
            section: "client",
            certificate: &c.certificate,
            private_key: &c.private_key,
            ca: &c.ca,
            crl: None,
        },
        PeerUsage::Server,
    )?;
    Ok(common_config(
        credentials,
        PeerIdentity::Fqdn(c.name.clone()),
        &config.ike,
        &config.limits,
        CLIENT_IKE_PORT,
        c.nat_port,
        config_path,
    )?)
}

/// Keys a server cannot change without a restart (dotted paths; a table name covers its keys).
const SERVER_RESTART_KEYS: [&str; 12] = [
    "server.name",
    "server.listen",
    "server.ike_port",
    "server.nat_port",
    "server.state_dir",
    "server.control_socket",
    "server.metrics",
    "server.forwarder_socket",
    "tunnel",
    "enroll",
    // Forwarding, the NDP proxy and the upstream routes are set up once at start.
    "upstream",
    // The registry's connection and subscription are made once at start.
    "registry",
];

/// Keys a client cannot change without a restart.
const CLIENT_RESTART_KEYS: [&str; 16] = [
    "client.name",
    "client.server",
    "client.server_name",
    "client.server_port",
    "client.local",
    "client.nat_port",
    "client.force_udp_encapsulation",
    "client.prefix",
    "client.address",
    "client.state_dir",
    "client.control_socket",
    "client.metrics",
    "client.forwarder_socket",
    "tunnel",
    // The LANs' addresses, Router Advertisements and the hook are set up once at start.
    "client.updown",
    "lan",
];

impl ConfigReloader {
    /// A server running with `config`, loaded from `path`.
    pub fn server(path: &Path, config: ServerConfig) -> Self {
        ConfigReloader {
            path: path.to_path_buf(),
            running: Running::Server(Box::new(config)),
            revoked: RevokedSerials::default(),
        }
    }

    /// A client running with `config`, loaded from `path`.
    pub fn client(path: &Path, config: ClientConfig) -> Self {
        ConfigReloader {
            path: path.to_path_buf(),
            running: Running::Client(Box::new(config)),
            revoked: RevokedSerials::default(),
        }
    }

    /// A server's reloader whose authorizers also refuse what `revoked` holds.
    pub fn refusing(mut self, revoked: RevokedSerials) -> Self {
        self.revoked = revoked;
        self
    }

    /// The configuration file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The CRL file a server runs with (`server.crl`), if any.
    pub fn crl(&self) -> Option<&Path> {
        match &self.running {
            Running::Server(config) => config.server.crl.as_deref(),
            Running::Client(_) => None,
        }
    }

    /// Reads the file (and the files it names) again. On success the new configuration becomes
    /// the running one; on an error (one line) nothing changed.
    pub fn reload(&mut self) -> anyhow::Result<Reloaded> {
        let path = self.path.clone();
        match &self.running {
            Running::Server(running) => {
                let new = ServerConfig::load(&path)?;
                let changed = changed_keys(running.as_ref(), &new);
                refuse_restart_keys(&path, &changed, &SERVER_RESTART_KEYS)?;
                let (common, responder) = server_settings(&new, &path, &self.revoked)?;
                let summary = summary(
                    &changed,
                    if new.server.crl.is_some() {
                        "certificates, key, CA and CRL read again"
                    } else {
                        "certificates, key and CA read again"
                    },
                );
                let peer_pool = Some(new.server.pool);
                self.running = Running::Server(Box::new(new));
                Ok(Reloaded {
                    reload: Reload {
                        common,
                        responder: Some(responder),
                    },
                    summary,
                    peer_pool,
                })
            }
            Running::Client(running) => {
                let new = ClientConfig::load(&path)?;
                let changed = changed_keys(running.as_ref(), &new);
                refuse_restart_keys(&path, &changed, &CLIENT_RESTART_KEYS)?;
                let common = client_settings(&new, &path)?;
                let summary = summary(&changed, "certificates, key and CA read again");
                self.running = Running::Client(Box::new(new));
                Ok(Reloaded {
                    reload: Reload {
                        common,
                        responder: None,
                    },
                    summary,
                    peer_pool: None,
                })
            }
        }
    }
}

/// One changed key: its dotted path, the running value and the new one (as TOML-ish text).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    key: String,
    old: String,
    new: String,
}

/// The keys whose values differ between two configs, as dotted paths down to the first level
/// inside each table (`limits.rekey_bytes`); arrays of tables compare whole (`clients`).
fn changed_keys<T: Serialize>(old: &T, new: &T) -> Vec<Change> {
    let (Ok(old), Ok(new)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        return Vec::new();
    };
    let mut changes = Vec::new();
    let null = serde_json::Value::Null;
    let empty = serde_json::Map::new();
    let old_tables = old.as_object().unwrap_or(&empty);
    let new_tables = new.as_object().unwrap_or(&empty);
    let mut tables: Vec<&String> = old_tables.keys().chain(new_tables.keys()).collect();
    tables.sort();
    tables.dedup();
    for table in tables {
        let a = old_tables.get(table).unwrap_or(&null);
        let b = new_tables.get(table).unwrap_or(&null);
        if a == b {
            continue;
        }
        match (a.as_object(), b.as_object()) {
            (Some(a), Some(b)) => {
                let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
                keys.sort();
                keys.dedup();
                for key in keys {
                    let (x, y) = (a.get(key).unwrap_or(&null), b.get(key).unwrap_or(&null));
                    if x != y {
                        changes.push(Change {
                            key: format!("{table}.{key}"),
                            old: shown(x),
                            new: shown(y),
                        });
                    }
                }
            }
            _ => changes.push(Change {
                key: table.clone(),
                old: shown(a),
                new: shown(b),
            }),
        }
    }
    changes
}

fn shown(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "(unset)".to_string(),
        serde_json::Value::Array(items) if items.iter().any(|i| i.is_object()) => {
            format!("{} entries", items.len())
        }
        serde_json::Value::Object(_) => "(a table)".to_string(),
        other => other.to_string(),
    }
}

fn refuse_restart_keys(path: &Path, changes: &[Change], restart: &[&str]) -> anyhow::Result<()> {
    for change in changes {
        let needs_restart = restart.iter().any(|r| {
            change.key == *r
                || change
                    .key
                    .strip_prefix(r)
                    .is_some_and(|rest| rest.starts_with('.'))
        });
        if needs_restart {
            return Err(ConfigError::new(
                path,
                change.key.clone(),
                format!(
                    "changed from {} to {}, which needs a restart (hometun reads it only at start-up)",
                    change.old, change.new
                ),
            )
            .into());
        }
    }
    Ok(())
}

fn summary(changes: &[Change], reread: &str) -> String {
    if changes.is_empty() {
        format!("no key changed; {reread}")
    } else {
        let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
        format!("changed {}; {reread}", keys.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hometun_config::minimal::{CLIENT_TOML as CLIENT, SERVER_TOML as SERVER};

    fn server(text: &str) -> ServerConfig {
        ServerConfig::from_toml(Path::new("server.toml"), text).unwrap()
    }

    #[test]
    fn changes_are_named_by_dotted_key() {
        let old = server(SERVER);
        let new = server(&format!(
            "{SERVER}\n[limits]\nrekey_bytes = 1000\nhard_bytes = 2000\n"
        ));
        let keys: Vec<String> = changed_keys(&old, &new)
            .into_iter()
            .map(|c| c.key)
            .collect();
        assert_eq!(keys, ["limits.hard_bytes", "limits.rekey_bytes"]);
        assert!(changed_keys(&old, &old).is_empty());
    }

    #[test]
    fn clients_compare_as_a_whole() {
        let old = server(SERVER);
        let new = server(&format!(
            "{SERVER}\n[[clients]]\nname = \"a.example\"\nprefix = \"2001:db8:100:7::/64\"\n"
        ));
        let changes = changed_keys(&old, &new);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].key, "clients");
        assert_eq!(changes[0].new, "1 entries");
    }

    /// What a reload would not apply is refused, never accepted and ignored: the LANs, the
    /// updown hook, the upstream set-up.
    #[test]
    fn lans_the_hook_and_the_upstream_need_a_restart() {
        let client = |text: &str| ClientConfig::from_toml(Path::new("client.toml"), text).unwrap();
        let old = client(CLIENT);
        for (new, key) in [
            (format!("{CLIENT}\n[[lan]]\ninterface = \"eth1\"\n"), "lan"),
            (
                CLIENT.replace("prefix =", "updown = \"/usr/local/bin/hook\"\nprefix ="),
                "client.updown",
            ),
        ] {
            let error = refuse_restart_keys(
                Path::new("client.toml"),
                &changed_keys(&old, &client(&new)),
                &CLIENT_RESTART_KEYS,
            )
            .unwrap_err()
            .to_string();
            assert!(
                error.starts_with(&format!("client.toml: {key}: changed from")),
                "{error}"
            );
            assert!(error.ends_with("which needs a restart (hometun reads it only at start-up)"));
        }
        let old = server(SERVER);
        let new = server(&format!("{SERVER}\n[upstream]\nforwarding = false\n"));
        let error = refuse_restart_keys(
            Path::new("server.toml"),
            &changed_keys(&old, &new),
            &SERVER_RESTART_KEYS,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("server.toml: upstream.forwarding: changed from true to false"),
            "{error}"
        );
    }

    #[test]
    fn restart_keys_are_refused_with_one_line() {
        let old = server(SERVER);
        let new = server(&SERVER.replace("[tunnel]", "[tunnel]\ninterface = \"ht9\""));
        let changes = changed_keys(&old, &new);
        let error = refuse_restart_keys(Path::new("server.toml"), &changes, &SERVER_RESTART_KEYS)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "server.toml: tunnel.interface: changed from \"hometun0\" to \"ht9\", which needs a restart (hometun reads it only at start-up)"
        );
        let new = server(&SERVER.replace("192.0.2.1", "192.0.2.5"));
        let error = refuse_restart_keys(
            Path::new("server.toml"),
            &changed_keys(&old, &new),
            &SERVER_RESTART_KEYS,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with(
                "server.toml: server.listen: changed from \"192.0.2.1\" to \"192.0.2.5\""
            ),
            "{error}"
        );
        // The pool and the limits may change.
        let new = server(&SERVER.replace("2001:db8:100::/48", "2001:db8:200::/48"));
        assert!(
            refuse_restart_keys(
                Path::new("server.toml"),
                &changed_keys(&old, &new),
                &SERVER_RESTART_KEYS
            )
            .is_ok()
        );
    }

    /// Writes a CA, the server's and a home's certificate and key, and both minimal configs.
    fn write_credentials(dir: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
        for (stem, name) in [("server", "vps.example"), ("client", "home.example")] {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
            let leaf = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
            let cert = leaf.signed_by(&key, &issuer).unwrap();
            std::fs::write(dir.join(format!("{stem}.pem")), cert.pem()).unwrap();
            let key_path = dir.join(format!("{stem}.key"));
            std::fs::write(&key_path, key.serialize_pem()).unwrap();
            std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::write(dir.join("server.toml"), SERVER).unwrap();
        std::fs::write(dir.join("client.toml"), CLIENT).unwrap();
    }

    /// The same CA signs the server and the homes: the server's settings require a home's
    /// usage of every peer, a home's require the server's serverAuth (start-up and every
    /// reload build them here).
    #[test]
    fn each_role_requires_the_others_extended_key_usage() {
        let dir = tempfile::tempdir().unwrap();
        write_credentials(dir.path());
        let path = dir.path().join("server.toml");
        let config = ServerConfig::load(&path).unwrap();
        let (common, _) = server_settings(&config, &path, &RevokedSerials::default()).unwrap();
        assert_eq!(common.verifier.usage(), PeerUsage::Home);
        let path = dir.path().join("client.toml");
        let config = ClientConfig::load(&path).unwrap();
        let common = client_settings(&config, &path).unwrap();
        assert_eq!(common.verifier.usage(), PeerUsage::Server);
    }
}
