//! The home's directory and the operations on it: `pki request`, `pki import`, and the local
//! half of `hometun enroll`.
//!
//! Files in the directory (D):
//!
//! | file | what |
//! |---|---|
//! | `client.key` | the home's private key (mode 0600; never leaves the machine) |
//! | `client.csr` | the certificate signing request to carry to the server |
//! | `client.pem`, `ca.pem` | the home's certificate and the CA's, from the bundle |
//! | `client.toml` | the client daemon's config, ready to run |

use std::path::{Path, PathBuf};

use std::net::Ipv4Addr;

use hometun_config::{ClientConfig, ClientSection, OneOrMore, TunnelSection};
use rcgen::KeyPair;
use rustls_pki_types::UnixTime;

use crate::bundle::Bundle;
use crate::ca::{KeyType, pem_certificate};
use crate::csr::make_csr;
use crate::{PkiError, files};

/// The home's link-local address on the tunnel.
pub const CLIENT_LINK_LOCAL: &str = "fe80::2/64";

/// The home's directory.
#[derive(Debug, Clone)]
pub struct ClientDir {
    dir: PathBuf,
}

impl ClientDir {
    /// The directory `dir`.
    pub fn new(dir: &Path) -> Self {
        ClientDir {
            dir: dir.to_path_buf(),
        }
    }
    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// `client.key`.
    pub fn key(&self) -> PathBuf {
        self.dir.join("client.key")
    }
    /// `client.csr`.
    pub fn csr(&self) -> PathBuf {
        self.dir.join("client.csr")
    }
    /// `client.pem`.
    pub fn cert(&self) -> PathBuf {
        self.dir.join("client.pem")
    }
    /// `ca.pem`.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// `client.toml`.
    pub fn client_toml(&self) -> PathBuf {
        self.dir.join("client.toml")
    }

    /// The home's key: the existing `client.key`, or a new one of `key_type` (mode 0600).
    /// An existing key is never replaced, so a certificate issued for it stays usable.
    pub fn key_pair(&self, key_type: KeyType) -> Result<(KeyPair, bool), PkiError> {
        let path = self.key();
        if path.exists() {
            let pem = files::read_to_string(&path)?;
            let key = KeyPair::from_pem(&pem)
                .map_err(|e| PkiError::file(&path, format!("not a usable key: {e}")))?;
            return Ok((key, false));
        }
        files::ensure_dir(&self.dir)?;
        let key = key_type.generate()?;
        files::write_new(&path, key.serialize_pem().as_bytes(), files::PRIVATE_MODE)?;
        Ok((key, true))
    }

    /// `pki request`: the key (made if missing) and a CSR for `name` in `client.csr`.
    /// Returns the CSR (PEM) and whether a new key was made.
    pub fn request(&self, name: &str, key_type: KeyType) -> Result<(String, bool), PkiError> {
        let (key, created) = self.key_pair(key_type)?;
        let csr = make_csr(&key, name)?;
        files::write_atomic(&self.csr(), csr.as_bytes(), files::PUBLIC_MODE)?;
        Ok((csr, created))
    }

    /// `pki import`: checks the bundle (its certificate chains to its CA at `now` and belongs
    /// to `client.key`), then writes `client.pem`, `ca.pem` and `client.toml`. An existing
    /// client.toml keeps its other settings (tunnel, limits, ike, local address).
    pub fn import(&self, bundle: &Bundle, now: UnixTime) -> Result<ClientConfig, PkiError> {
        self.install(bundle, now, None, None)
    }

    /// [`ClientDir::import`], also writing the enrollment listener the home renews with
    /// (`renew.server`; `None` keeps what client.toml has).
    pub fn import_for_renewal(
        &self,
        bundle: &Bundle,
        now: UnixTime,
        renew_server: Option<std::net::SocketAddr>,
    ) -> Result<ClientConfig, PkiError> {
        self.install(bundle, now, renew_server, None)
    }

    /// `hometun enroll`, once the server answered: [`ClientDir::import`] of a bundle issued for
    /// `new_key`, which replaces `client.key` only now that its certificate is here (a failed
    /// enrollment leaves the directory as it was), also writing the enrollment listener the
    /// home renews with (`renew.server`).
    pub fn import_enrolled(
        &self,
        bundle: &Bundle,
        now: UnixTime,
        renew_server: std::net::SocketAddr,
        new_key: &KeyPair,
    ) -> Result<ClientConfig, PkiError> {
        self.install(bundle, now, Some(renew_server), Some(new_key))
    }

    fn install(
        &self,
        bundle: &Bundle,
        now: UnixTime,
        renew_server: Option<std::net::SocketAddr>,
        new_key: Option<&KeyPair>,
    ) -> Result<ClientConfig, PkiError> {
        bundle.verify(now)?;
        let key_path = self.key();
        let on_disk;
        let key = match new_key {
            Some(key) => key,
            None => {
                let pem = files::read_to_string(&key_path)?;
                on_disk = KeyPair::from_pem(&pem)
                    .map_err(|e| PkiError::file(&key_path, format!("not a usable key: {e}")))?;
                &on_disk
            }
        };
        let peer = hometun_certs::verify::describe(&bundle.certificate_der()?)
            .map_err(|e| PkiError::Verify(e.to_string()))?;
        let cert_key: &[u8] = match &peer.public_key {
            hometun_certs::verify::PeerPublicKey::Ed25519(k) => k,
            hometun_certs::verify::PeerPublicKey::EcdsaP256(k) => k,
        };
        if cert_key != key.public_key_raw() {
            return Err(PkiError::KeyMismatch {
                what: format!("the bundle's certificate for {}", bundle.name),
                key: key_path,
            });
        }

        let mut section = ClientSection::new(
            bundle.name.clone(),
            bundle.server,
            bundle.server_name.clone(),
            "client.pem".into(),
            "client.key".into(),
            "ca.pem".into(),
            bundle.prefix,
        );
        section.server_port = bundle.server_port;
        let path = self.client_toml();
        let config = match files::read_to_string(&path)
            .ok()
            .and_then(|text| ClientConfig::from_toml(&path, &text).ok())
        {
            Some(mut old) => {
                // What the bundle says replaces its keys; every other setting of the file
                // stays, the servers to fail over to too.
                let (server, server_name) = servers_with(&old, bundle);
                old.client = ClientSection {
                    name: section.name,
                    server,
                    server_name,
                    server_port: section.server_port,
                    certificate: section.certificate,
                    private_key: section.private_key,
                    ca: section.ca,
                    prefix: section.prefix,
                    // A kept address must still lie in the (possibly new) prefix.
                    address: old.client.address.filter(|a| bundle.prefix.contains(a)),
                    ..old.client
                };
                old
            }
            None => ClientConfig {
                client: section,
                tunnel: TunnelSection::new(
                    CLIENT_LINK_LOCAL
                        .parse()
                        .expect("constant link-local address parses"),
                ),
                limits: Default::default(),
                ike: Default::default(),
                renew: Default::default(),
                lan: Vec::new(),
            },
        };
        let mut config = config;
        if renew_server.is_some() {
            config.renew.server = renew_server;
        }
        let text = format!(
            "# hometun client config, written by `hometun {}`. Paths are relative to this file.\n{}",
            if new_key.is_some() {
                "enroll"
            } else {
                "pki import"
            },
            config.to_toml()
        );
        ClientConfig::from_toml(&path, &text)?;
        if let Some(key) = new_key {
            files::ensure_dir(&self.dir)?;
            files::write_atomic(
                &key_path,
                key.serialize_pem().as_bytes(),
                files::PRIVATE_MODE,
            )?;
        }
        files::write_atomic(
            &self.cert(),
            pem_certificate(&bundle.certificate_der()?).as_bytes(),
            files::PUBLIC_MODE,
        )?;
        files::write_atomic(
            &self.ca(),
            pem_certificate(&bundle.ca_der()?).as_bytes(),
            files::PUBLIC_MODE,
        )?;
        files::write_atomic(&path, text.as_bytes(), files::PUBLIC_MODE)?;
        Ok(ClientConfig::load(&path)?)
    }
}

/// The servers of a rewritten `client.toml`: the file's own list (its failover order) when it
/// already names the bundle's server with the bundle's identity; otherwise the bundle's server
/// first, then the file's others.
fn servers_with(old: &ClientConfig, bundle: &Bundle) -> (OneOrMore<Ipv4Addr>, OneOrMore<String>) {
    let bundle_name = bundle.server_name.clone();
    let targets = old.servers();
    if targets
        .iter()
        .any(|t| t.address == bundle.server && t.name == bundle_name)
    {
        return (old.client.server.clone(), old.client.server_name.clone());
    }
    let (addresses, names): (Vec<Ipv4Addr>, Vec<String>) =
        std::iter::once((bundle.server, bundle_name))
            .chain(
                targets
                    .into_iter()
                    .filter(|t| t.address != bundle.server)
                    .map(|t| (t.address, t.name)),
            )
            .unzip();
    let name = if names.iter().all(|n| *n == names[0]) {
        OneOrMore::one(names[0].clone())
    } else {
        OneOrMore::many(names).expect("the bundle's server is in the list")
    };
    (
        OneOrMore::many(addresses).expect("the bundle's server is in the list"),
        name,
    )
}
