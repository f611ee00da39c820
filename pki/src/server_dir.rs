//! The server's PKI directory and the operations on it: `pki init`, `sign`, `export`,
//! `token`, `revoke`, `crl`, `list`, and the enrollment server's signing step.
//!
//! Files in the directory (D):
//!
//! | file | what |
//! |---|---|
//! | `ca.pem`, `ca.key` | the CA certificate and key (key mode 0600) |
//! | `server.pem`, `server.key` | the server's certificate (IKE and enrollment TLS) and key (0600) |
//! | `server.toml` | the server daemon's config, ready to run |
//! | `crl.pem` | the CRL (the path `server.crl` in server.toml names) |
//! | `registry.json`, `registry.lock` | issued certificates, prefixes, revocations, tokens |

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use hometun_config::{EnrollSection, RegistrySection, ServerConfig, ServerSection, TunnelSection};
use ipnet::Ipv6Net;
use time::OffsetDateTime;

use crate::bundle::{BUNDLE_FORMAT, Bundle};
use crate::ca::{self, Ca, KeyType};
use crate::csr::{CheckedCsr, check_csr};
use crate::names::normalize_dns_name;
use crate::registry::{ClientRecord, Registry, RegistryData, Revocation, TokenRecord};
use crate::token::{Token, TokenRefusal};
use crate::{PkiError, files};

/// Default port of the enrollment listener.
pub const DEFAULT_ENROLL_PORT: u16 = 8443;
/// Default revocation grace period: a revoked home's prefix is not handed out again before.
pub const DEFAULT_GRACE_DAYS: u32 = 30;
/// How long a published CRL says it is valid; `hometun pki crl` publishes a fresh one.
pub const CRL_VALID_DAYS: i64 = 365;
/// Default validity of an enrollment token.
pub const DEFAULT_TOKEN_HOURS: u32 = 24;
/// The server's link-local address on the tunnel.
pub const SERVER_LINK_LOCAL: &str = "fe80::1/64";

/// What `pki init` needs.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The server's public IPv4 address.
    pub server_ipv4: Ipv4Addr,
    /// The server's IKE identity (a DNS name in its certificate).
    pub server_name: String,
    /// The pool client prefixes come from.
    pub pool: Ipv6Net,
    /// Length of each client's prefix.
    pub prefix_len: u8,
    /// Key type of the CA and the server.
    pub key: KeyType,
    /// Revocation grace period in days.
    pub grace_days: u32,
    /// Port of the enrollment listener.
    pub enroll_port: u16,
}

/// A certificate just issued, with its bundle.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The registry record.
    pub record: ClientRecord,
    /// The bundle for the home.
    pub bundle: Bundle,
}

/// One line of `pki tokens`: a token that can still enroll.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenEntry {
    /// The name it enrolls.
    pub name: String,
    /// When it was made (RFC 3339).
    pub created: String,
    /// When it stops working (RFC 3339).
    pub expires: String,
}

/// One line of `pki list`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListEntry {
    /// Client name.
    pub name: String,
    /// Its prefix.
    pub prefix: Ipv6Net,
    /// Certificate serial (hex).
    pub serial: String,
    /// Certificate expiry (RFC 3339).
    pub expires: String,
    /// `active`, `superseded` (a renewal replaced it; valid until it expires), `expired`,
    /// `revoked` or `revoked, prefix free`.
    pub status: String,
    /// When revoked (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// When a revoked prefix becomes free (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_free_at: Option<String>,
}

/// The server's PKI directory.
#[derive(Debug, Clone)]
pub struct ServerDir {
    dir: PathBuf,
    /// `--registry URL`, over server.toml's `[registry]`.
    registry_url: Option<String>,
    /// The registry once opened (a database connects and migrates once per handle).
    registry: Arc<OnceLock<Registry>>,
}

impl ServerDir {
    /// The directory `dir`; its registry is the one server.toml's `[registry]` names, else the
    /// file `registry.json` in it.
    pub fn new(dir: &Path) -> Self {
        ServerDir {
            dir: dir.to_path_buf(),
            registry_url: None,
            registry: Arc::new(OnceLock::new()),
        }
    }

    /// The directory `dir` with the registry at `url` (a `postgresql://` URL) whatever
    /// server.toml says; `None` changes nothing.
    pub fn with_registry_url(dir: &Path, url: Option<String>) -> Self {
        ServerDir {
            registry_url: url,
            ..Self::new(dir)
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// `ca.pem`.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// `ca.key`.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    /// `server.pem`.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    /// `server.key`.
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    /// `server.toml`.
    pub fn server_toml(&self) -> PathBuf {
        self.dir.join("server.toml")
    }
    /// `crl.pem` (where init puts the CRL; server.toml's `server.crl` is what counts).
    pub fn default_crl(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }
    /// `registry.json`, the registry unless a database is named.
    pub fn registry_file(&self) -> PathBuf {
        self.dir.join("registry.json")
    }

    /// The registry: the database `--registry` or server.toml's `[registry] url` names (its
    /// password from `registry.password_file`), else `registry.json`. Opened once per handle.
    pub fn registry(&self) -> Result<Registry, PkiError> {
        if let Some(registry) = self.registry.get() {
            return Ok(registry.clone());
        }
        let section = if self.server_toml().exists() {
            self.config()?.registry
        } else {
            None
        };
        let registry = match (&self.registry_url, section) {
            (Some(url), _) => Registry::open(url)?,
            (None, Some(section)) => Registry::from_section(&section)?,
            (None, None) => Registry::at(&self.registry_file()),
        };
        Ok(self.registry.get_or_init(|| registry).clone())
    }

    /// `pki init`: CA, server key and certificate, server.toml, empty registry and CRL.
    /// Refuses if any of these files exists.
    pub fn init(&self, opts: &InitOptions, now: OffsetDateTime) -> Result<ServerConfig, PkiError> {
        let opts = &InitOptions {
            server_name: normalize_dns_name(&opts.server_name)?,
            ..opts.clone()
        };
        let data = RegistryData::new(opts.pool, opts.prefix_len, opts.grace_days)?;
        if self.ca_key().exists() || self.ca_cert().exists() {
            return Err(PkiError::CaExists(self.dir.clone()));
        }
        let database = self
            .registry_url
            .clone()
            .filter(|url| crate::registry::is_database_url(url));
        let mut paths = vec![
            self.server_cert(),
            self.server_key(),
            self.server_toml(),
            self.default_crl(),
        ];
        if database.is_none() {
            paths.push(self.registry_file());
        }
        for path in paths {
            if path.exists() {
                return Err(PkiError::file(
                    &path,
                    "already exists; pki init only fills an empty directory",
                ));
            }
        }
        files::ensure_dir(&self.dir)?;
        let (ca, ca_key_pem) = Ca::create(&opts.server_name, opts.key, now)?;
        // The key first, create-if-absent: a concurrent init loses here, before anything else.
        files::write_new(&self.ca_key(), ca_key_pem.as_bytes(), files::PRIVATE_MODE).map_err(
            |e| match e {
                PkiError::Io { ref error, .. }
                    if error.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    PkiError::CaExists(self.dir.clone())
                }
                other => other,
            },
        )?;
        files::write_new(
            &self.ca_cert(),
            ca.cert_pem().as_bytes(),
            files::PUBLIC_MODE,
        )?;

        let server_key = opts.key.generate()?;
        let server_cert = ca.issue_server(&server_key, &opts.server_name, opts.server_ipv4, now)?;
        files::write_new(
            &self.server_key(),
            server_key.serialize_pem().as_bytes(),
            files::PRIVATE_MODE,
        )?;
        files::write_new(
            &self.server_cert(),
            ca::pem_certificate(&server_cert).as_bytes(),
            files::PUBLIC_MODE,
        )?;

        self.registry()?.create(&data)?;
        let crl = ca.crl(&[], 0, now, CRL_VALID_DAYS)?;
        files::write_new(&self.default_crl(), crl.as_bytes(), files::PUBLIC_MODE)?;

        let mut server = ServerSection::new(
            opts.server_name.clone(),
            opts.server_ipv4,
            "server.pem".into(),
            "server.key".into(),
            "ca.pem".into(),
            data.pool,
        );
        server.crl = Some("crl.pem".into());
        let config = ServerConfig {
            server,
            tunnel: TunnelSection::new(
                SERVER_LINK_LOCAL
                    .parse()
                    .expect("constant link-local address parses"),
            ),
            limits: Default::default(),
            ike: Default::default(),
            dos: Default::default(),
            clients: Vec::new(),
            registry: database.map(|url| RegistrySection {
                url,
                password_file: None,
            }),
            enroll: Some(EnrollSection {
                listen: SocketAddr::new(opts.server_ipv4.into(), opts.enroll_port),
                address: None,
                pki_dir: ".".into(),
            }),
            upstream: Default::default(),
        };
        let text = format!(
            "# hometun server config, written by `hometun pki init`. Paths are relative to this file.\n{}",
            config.to_toml()
        );
        // Parse it back: what we write must be what the daemon accepts.
        ServerConfig::from_toml(&self.server_toml(), &text)?;
        files::write_new(&self.server_toml(), text.as_bytes(), files::PUBLIC_MODE)?;
        Ok(ServerConfig::load(&self.server_toml())?)
    }

    /// `pki server-cert`: a key and certificate for another server of this CA (same EKUs as
    /// the one `init` made), written to `out` as `server.key` (0600) and `server.pem`, with
    /// `ca.pem` beside them. The new server needs no CA key: it runs with these, the CRL and
    /// the shared registry. Refused for a name a home holds.
    pub fn issue_server_cert(
        &self,
        name: &str,
        ipv4: Ipv4Addr,
        key: KeyType,
        out: &Path,
        now: OffsetDateTime,
    ) -> Result<PathBuf, PkiError> {
        let name = normalize_dns_name(name)?;
        if let Some(home) = self.registry()?.load()?.active(&name) {
            return Err(PkiError::NameTaken {
                name: home.name.clone(),
                prefix: home.prefix,
                serial: home.serial.clone(),
            });
        }
        let ca = self.ca()?;
        let server_key = key.generate()?;
        let cert = ca.issue_server(&server_key, &name, ipv4, now)?;
        files::ensure_dir(out)?;
        files::write_new(
            &out.join("server.key"),
            server_key.serialize_pem().as_bytes(),
            files::PRIVATE_MODE,
        )?;
        let cert_path = out.join("server.pem");
        files::write_new(
            &cert_path,
            ca::pem_certificate(&cert).as_bytes(),
            files::PUBLIC_MODE,
        )?;
        files::write_atomic(
            &out.join("ca.pem"),
            ca.cert_pem().as_bytes(),
            files::PUBLIC_MODE,
        )?;
        Ok(cert_path)
    }

    /// Loads server.toml.
    pub fn config(&self) -> Result<ServerConfig, PkiError> {
        Ok(ServerConfig::load(&self.server_toml())?)
    }

    /// The names no home may have, in lower case: the server's IKE identity (`server.name`)
    /// and every dNSName of the server's certificates (the one server.toml names and this
    /// directory's `server.pem`). A home certificate with one of them would name the server.
    pub fn reserved_names(&self, config: &ServerConfig) -> Result<Vec<String>, PkiError> {
        let mut names = vec![config.server.name.to_ascii_lowercase()];
        let mut paths = vec![config.server.certificate.clone()];
        if self.server_cert() != config.server.certificate && self.server_cert().exists() {
            paths.push(self.server_cert());
        }
        for path in paths {
            for der in files::load_certificates(&path)? {
                let described = hometun_certs::verify::describe(&der)
                    .map_err(|e| PkiError::file(&path, e.to_string()))?;
                names.extend(described.names.iter().map(|n| n.to_ascii_lowercase()));
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    pub(crate) fn refuse_reserved(
        &self,
        config: &ServerConfig,
        name: &str,
    ) -> Result<(), PkiError> {
        if self.reserved_names(config)?.iter().any(|r| r == name) {
            return Err(PkiError::ReservedName {
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// Loads the CA.
    pub fn ca(&self) -> Result<Ca, PkiError> {
        Ca::load(&self.ca_cert(), &self.ca_key())
    }

    /// `pki sign`: checks the CSR, allocates the next free prefix and issues a certificate.
    pub fn sign(
        &self,
        csr: &[u8],
        valid_days: i64,
        now: OffsetDateTime,
    ) -> Result<Issued, PkiError> {
        let csr = check_csr(csr)?;
        self.issue(csr, None, valid_days, now)
    }

    /// The enrollment server's step: like [`ServerDir::sign`], but only with an unused,
    /// unexpired token for the CSR's name, which it uses up in the same registry change.
    ///
    /// The token is checked first, by a registry read and a comparison: a request with a wrong
    /// token costs no CSR parse, no signature check, no CA key and no registry lock. The lock
    /// then checks it again, so that two requests with one token cannot both succeed.
    pub fn sign_with_token(
        &self,
        csr: &[u8],
        secret: &[u8; 32],
        now: OffsetDateTime,
    ) -> Result<Issued, PkiError> {
        let hash = Token::secret_sha256(secret);
        let token_name = self
            .registry()?
            .load()?
            .check_token(&hash, now.unix_timestamp())?
            .name
            .clone();
        let csr = check_csr(csr)?;
        if csr.name != token_name {
            return Err(TokenRefusal::NameMismatch {
                token: token_name,
                csr: csr.name,
            }
            .into());
        }
        self.issue(csr, Some(&hash), ca::CLIENT_VALID_DAYS, now)
    }

    fn issue(
        &self,
        csr: CheckedCsr,
        token_hash: Option<&str>,
        valid_days: i64,
        now: OffsetDateTime,
    ) -> Result<Issued, PkiError> {
        if valid_days < 1 {
            return Err(PkiError::Invalid(
                "validity must be at least one day".into(),
            ));
        }
        let config = self.config()?;
        self.refuse_reserved(&config, &csr.name)?;
        let ca_pem = self.ca_pem()?;
        let registry = self.registry()?;
        let t = now.unix_timestamp();
        let record = registry.update(|data| {
            self.check_pool(&config, data)?;
            if let Some(hash) = token_hash {
                data.use_token(hash, &csr.name, t)?;
            }
            // A live certificate keeps its name; once the name's certificates have all expired
            // (renewals leave the replaced ones valid until their own expiry), the name hands
            // its prefix on to the new one and the old records are closed.
            let live: Vec<usize> = (0..data.clients.len())
                .filter(|&i| data.clients[i].name == csr.name && data.clients[i].revoked.is_none())
                .collect();
            if let Some(old) = live
                .iter()
                .map(|&i| &data.clients[i])
                .find(|c| c.not_after > t)
            {
                return Err(PkiError::NameTaken {
                    name: old.name.clone(),
                    prefix: old.prefix,
                    serial: old.serial.clone(),
                });
            }
            let prefix = match live.last() {
                Some(&last) => data.clients[last].prefix,
                // A name revoked within the grace period gets its own prefix back: the prefix
                // is held for exactly this (the promise is a static prefix per home).
                None => match data.held_prefix_of(&csr.name, t) {
                    Some(prefix) => prefix,
                    None => data.next_free_prefix(t)?,
                },
            };
            for &i in &live {
                data.clients[i].revoked = Some(Revocation {
                    at: t,
                    key_compromise: false,
                });
            }
            // The CA key, for this signing only, once everything else said yes.
            let record = new_record(data, &self.ca()?, &csr, prefix, now, valid_days)?;
            if let Some(hash) = token_hash
                && let Some(token) = data.tokens.iter_mut().find(|tk| tk.secret_sha256 == hash)
            {
                token.used_serial = Some(record.serial.clone());
            }
            data.clients.push(record.clone());
            Ok(record)
        })?;
        let bundle = self.bundle_for(&config, &ca_pem, &record);
        Ok(Issued { record, bundle })
    }

    /// Refuses a registry whose pool server.toml no longer contains.
    pub(crate) fn check_pool(
        &self,
        config: &ServerConfig,
        data: &RegistryData,
    ) -> Result<(), PkiError> {
        if config.server.pool.contains(&data.pool) {
            return Ok(());
        }
        Err(PkiError::Registry {
            path: self.registry()?.location(),
            problem: format!(
                "its pool {} is not inside server.pool {} of {}",
                data.pool,
                config.server.pool,
                self.server_toml().display()
            ),
        })
    }

    /// The CA certificate (PEM) as bundles carry it; reads no key.
    pub(crate) fn ca_pem(&self) -> Result<String, PkiError> {
        Ok(ca::pem_certificate(&files::load_certificate(
            &self.ca_cert(),
        )?))
    }

    pub(crate) fn bundle_for(
        &self,
        config: &ServerConfig,
        ca_pem: &str,
        record: &ClientRecord,
    ) -> Bundle {
        Bundle {
            format: BUNDLE_FORMAT.to_string(),
            name: record.name.clone(),
            prefix: record.prefix,
            server: config.server.listen,
            server_name: config.server.name.clone(),
            server_port: config.server.ike_port,
            certificate: record.certificate.clone(),
            ca_certificate: ca_pem.to_string(),
        }
    }

    /// `pki export`: the bundle of a client's current certificate again (after a lost file,
    /// or a crash between recording a certificate and writing its bundle).
    pub fn export(&self, name: &str) -> Result<Bundle, PkiError> {
        let name = &normalize_dns_name(name)?;
        let config = self.config()?;
        let ca_pem = self.ca_pem()?;
        let data = self.registry()?.load()?;
        let record = data
            .active(name)
            .ok_or_else(|| PkiError::UnknownClient(name.to_string()))?;
        Ok(self.bundle_for(&config, &ca_pem, record))
    }

    /// `pki token`: a one-time token for `name`, valid `valid_minutes`; `server` overrides the
    /// enrollment address from server.toml's `[enroll]`. Refused when the pool has no prefix
    /// left for the name (it would fail at enrollment, on the home, later).
    pub fn make_token(
        &self,
        name: &str,
        valid_minutes: u32,
        server: Option<SocketAddr>,
        now: OffsetDateTime,
    ) -> Result<Token, PkiError> {
        let name = &normalize_dns_name(name)?;
        if valid_minutes == 0 {
            return Err(PkiError::Invalid(
                "a token must be valid at least one minute".into(),
            ));
        }
        let config = self.config()?;
        self.refuse_reserved(&config, name)?;
        let server = match (server, &config.enroll) {
            (Some(s), _) => s,
            (None, Some(enroll)) => enroll.public_address(),
            (None, None) => {
                return Err(PkiError::Invalid(format!(
                    "{} has no [enroll] table: add one (listen = \"ADDR:PORT\") or pass --server",
                    self.server_toml().display()
                )));
            }
        };
        let ca = self.ca()?;
        let token = Token::generate(ca.fingerprint(), server, name)?;
        let t = now.unix_timestamp();
        self.registry()?.update(|data| {
            if let Some(c) = data.active(name)
                && c.not_after > t
            {
                return Err(PkiError::NameTaken {
                    name: c.name.clone(),
                    prefix: c.prefix,
                    serial: c.serial.clone(),
                });
            }
            if data.active(name).is_none() && data.held_prefix_of(name, t).is_none() {
                data.next_free_prefix(t)?;
            }
            data.tokens.push(TokenRecord {
                name: name.to_string(),
                secret_sha256: Token::secret_sha256(&token.secret),
                created: t,
                expires: t + i64::from(valid_minutes) * 60,
                used: None,
                used_serial: None,
            });
            Ok(())
        })?;
        Ok(token)
    }

    /// `pki tokens`: the tokens that can still enroll at `now` (unused, unexpired).
    pub fn pending_tokens(&self, now: OffsetDateTime) -> Result<Vec<TokenEntry>, PkiError> {
        let t = now.unix_timestamp();
        let text = crate::token::unix_text;
        Ok(self
            .registry()?
            .load()?
            .tokens
            .iter()
            .filter(|tk| tk.used.is_none() && tk.expires > t)
            .map(|tk| TokenEntry {
                name: tk.name.clone(),
                created: text(tk.created),
                expires: text(tk.expires),
            })
            .collect())
    }

    /// `pki tokens --revoke NAME`: every pending token of `name` stops working now. Returns how
    /// many there were.
    pub fn revoke_tokens(&self, name: &str, now: OffsetDateTime) -> Result<usize, PkiError> {
        let name = &normalize_dns_name(name)?;
        let t = now.unix_timestamp();
        self.registry()?.update(|data| {
            let mut revoked = 0;
            for token in data
                .tokens
                .iter_mut()
                .filter(|tk| tk.name == *name && tk.used.is_none() && tk.expires > t)
            {
                token.expires = t;
                revoked += 1;
            }
            if revoked == 0 {
                return Err(PkiError::Invalid(format!(
                    "{name} has no pending token (`hometun pki tokens` lists them)"
                )));
            }
            Ok(revoked)
        })
    }

    /// `pki revoke`: revokes the client's certificates (the current one and any a renewal
    /// replaced that has not expired) and publishes the CRL (before
    /// the registry records it, so a crash never leaves a revocation that is not published).
    /// The prefix stays held for the registry's grace period.
    pub fn revoke(
        &self,
        name: &str,
        key_compromise: bool,
        now: OffsetDateTime,
    ) -> Result<ClientRecord, PkiError> {
        let name = &normalize_dns_name(name)?;
        let config = self.config()?;
        let ca = self.ca()?;
        let crl_path = config
            .server
            .crl
            .clone()
            .unwrap_or_else(|| self.default_crl());
        let t = now.unix_timestamp();
        self.registry()?.update_with(
            |data| {
                // Every live certificate of the name: the current one and those a renewal
                // replaced, which stay valid until their own expiry unless revoked here.
                let live: Vec<usize> = (0..data.clients.len())
                    .filter(|&i| data.clients[i].name == *name && data.clients[i].revoked.is_none())
                    .collect();
                let &current = live
                    .last()
                    .ok_or_else(|| PkiError::UnknownClient(name.to_string()))?;
                for &i in &live {
                    data.clients[i].revoked = Some(Revocation {
                        at: t,
                        key_compromise,
                    });
                }
                data.crl_number += 1;
                Ok(data.clients[current].clone())
            },
            |data| write_crl(&ca, data, &crl_path, now),
        )
    }

    /// `pki crl`: publishes a fresh CRL (run it before the last one's nextUpdate).
    pub fn publish_crl(&self, now: OffsetDateTime) -> Result<PathBuf, PkiError> {
        let config = self.config()?;
        let ca = self.ca()?;
        let crl_path = config
            .server
            .crl
            .clone()
            .unwrap_or_else(|| self.default_crl());
        self.registry()?.update_with(
            |data| {
                data.crl_number += 1;
                Ok(())
            },
            |data| write_crl(&ca, data, &crl_path, now),
        )?;
        Ok(crl_path)
    }

    /// `pki list`: each name's latest certificate with its status at `now`, or with `all` every
    /// certificate ever issued (renewed, revoked and re-issued ones too).
    pub fn list(&self, now: OffsetDateTime, all: bool) -> Result<Vec<ListEntry>, PkiError> {
        let data = self.registry()?.load()?;
        let t = now.unix_timestamp();
        let text = crate::token::unix_text;
        let latest = |i: usize, c: &ClientRecord| {
            !data.clients[i + 1..]
                .iter()
                .any(|later| later.name == c.name)
        };
        Ok(data
            .clients
            .iter()
            .enumerate()
            .filter(|(i, c)| all || latest(*i, c))
            .map(|(_, c)| {
                let status = match &c.revoked {
                    None if c.not_after <= t => "expired",
                    None if c.superseded.is_some() => "superseded",
                    None => "active",
                    Some(_) if c.holds_prefix(t, data.grace_days) => "revoked",
                    Some(_) => "revoked, prefix free",
                };
                ListEntry {
                    name: c.name.clone(),
                    prefix: c.prefix,
                    serial: c.serial.clone(),
                    expires: text(c.not_after),
                    status: status.to_string(),
                    revoked_at: c.revoked.as_ref().map(|r| text(r.at)),
                    prefix_free_at: c.prefix_free_at(data.grace_days).map(text),
                }
            })
            .collect())
    }
}

/// A certificate for `csr` with `prefix` and a serial no record has, as a registry record
/// (not yet added).
pub(crate) fn new_record(
    data: &RegistryData,
    ca: &Ca,
    csr: &CheckedCsr,
    prefix: Ipv6Net,
    now: OffsetDateTime,
    valid_days: i64,
) -> Result<ClientRecord, PkiError> {
    // A revoked certificate's key may be why it was revoked: never certify it again, whoever
    // asks (a token's holder, `pki sign`, a renewal).
    use rcgen::PublicKeyData as _;
    let key = csr.public_key.der_bytes();
    // (Records closed when their certificate had expired count as revoked after their expiry:
    // not these.)
    if let Some(revoked) = data.clients.iter().find(|c| {
        c.revoked.as_ref().is_some_and(|r| r.at < c.not_after)
            && files::certificates_from_pem(c.certificate.as_bytes())
                .ok()
                .and_then(|certs| certs.into_iter().next())
                .and_then(|der| ca::certificate_public_key(&der).ok())
                .is_some_and(|k| k == key)
    }) {
        return Err(PkiError::KeyRevoked {
            name: revoked.name.clone(),
            serial: revoked.serial.clone(),
        });
    }
    let serial = loop {
        let s = ca::random_serial()?;
        if !data.clients.iter().any(|c| c.serial == ca::serial_hex(&s)) {
            break s;
        }
    };
    let cert = ca.issue_client(&csr.public_key, &csr.name, prefix, &serial, now, valid_days)?;
    Ok(ClientRecord {
        name: csr.name.clone(),
        prefix,
        serial: ca::serial_hex(&serial),
        issued: now.unix_timestamp(),
        not_after: (now + time::Duration::days(valid_days)).unix_timestamp(),
        certificate: ca::pem_certificate(&cert),
        revoked: None,
        superseded: None,
    })
}

fn write_crl(
    ca: &Ca,
    data: &RegistryData,
    path: &Path,
    now: OffsetDateTime,
) -> Result<(), PkiError> {
    let pem = ca.crl(&data.revoked(), data.crl_number, now, CRL_VALID_DAYS)?;
    files::write_atomic(path, pem.as_bytes(), files::PUBLIC_MODE)
}
