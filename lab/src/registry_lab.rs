//! Several servers of one CA on one PostgreSQL registry: the CA directory (the enrollment
//! machine, which holds the CA key) made with the registry in the database, and the directory
//! of another server, which has its own certificate from `pki server-cert`, the CA
//! certificate, a CRL, and the database, but no CA key.

use std::path::{Path, PathBuf};

use anyhow::Context;
use hometun_config::{RegistrySection, ServerConfig};
use hometun_pki::ca::KeyType;
use hometun_pki::server_dir::{DEFAULT_ENROLL_PORT, InitOptions, ServerDir};

use crate::ike_lab::{POOL, VPS_ADDR, VPS_NAME};

/// `pki init` of the lab's VPS in `dir`, its registry in the database at `url`.
pub fn init_shared_ca(dir: &Path, url: &str) -> anyhow::Result<ServerDir> {
    let ca = ServerDir::with_registry_url(dir, Some(url.to_string()));
    ca.init(
        &InitOptions {
            server_ipv4: VPS_ADDR,
            server_name: VPS_NAME.into(),
            pool: POOL.parse()?,
            prefix_len: 64,
            key: KeyType::Ed25519,
            grace_days: 30,
            enroll_port: DEFAULT_ENROLL_PORT,
        },
        time::OffsetDateTime::now_utc(),
    )
    .map_err(|e| anyhow::anyhow!("pki init: {e}"))?;
    Ok(ca)
}

/// Another server of the CA in `ca`, in `out`: `pki server-cert` for `name` at `ipv4`, a copy
/// of the CA's current CRL, and a server.toml like the CA's but with these files, its own
/// state directory, no enrollment (which needs the CA key) and the shared registry. Returns
/// its server.toml.
pub fn second_server(
    ca: &ServerDir,
    out: &Path,
    name: &str,
    ipv4: std::net::Ipv4Addr,
    url: &str,
) -> anyhow::Result<PathBuf> {
    ca.issue_server_cert(
        name,
        ipv4,
        KeyType::Ed25519,
        out,
        time::OffsetDateTime::now_utc(),
    )
    .map_err(|e| anyhow::anyhow!("pki server-cert: {e}"))?;
    std::fs::copy(ca.default_crl(), out.join("crl.pem")).context("copying the CRL")?;
    let mut config = ServerConfig::load(&ca.server_toml())?;
    config.server.name = name.to_string();
    config.server.listen = ipv4;
    config.server.certificate = out.join("server.pem");
    config.server.private_key = out.join("server.key");
    config.server.ca = out.join("ca.pem");
    config.server.crl = Some(out.join("crl.pem"));
    config.server.state_dir = out.join("state");
    config.server.status_socket = out.join("state/control.sock");
    config.enroll = None;
    config.registry = Some(RegistrySection {
        url: url.to_string(),
        password_file: None,
    });
    let path = out.join("server.toml");
    std::fs::write(&path, config.to_toml())?;
    Ok(path)
}

/// Where `pki server-cert` put nothing: the CA key, which a second server must not need.
pub fn has_ca_key(dir: &Path) -> bool {
    dir.join("ca.key").exists()
}
