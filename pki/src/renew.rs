//! `hometun renew`: the home renews its certificate before it expires (RFC 7030 4.2.2, simple
//! re-enrollment), so that no home reaches its certificate's expiry unattended.
//!
//! The home connects to the enrollment listener over TLS 1.3 with its current certificate as
//! the TLS client certificate: its current key signs the handshake, which proves possession
//! and binds the proof to this connection (a recorded request cannot be replayed, unlike a CSR
//! signed by the old key). Inside it sends a CSR for its name, signed by the new key (or the
//! current one): possession of that key. The server ([`crate::renewal`]) checks the certificate
//! and issues a new one for the same name and prefix.
//!
//! Files: with `renew.new_key` (the default) the new key is made as `client.key.next` (0600)
//! and kept there until the new certificate has arrived; a failed renewal leaves `client.key`
//! and `client.pem` as they were, and a retry uses the same new key (so that a lost answer can
//! be fetched again). On success `client.pem` is replaced first, then `client.key.next` is
//! renamed over `client.key` (both atomic); a crash between the two is finished by the next
//! run, which sees the new certificate with the pending key. The running daemon picks the new
//! files up on SIGHUP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hometun_config::ClientConfig;
use ipnet::Ipv6Net;
use rcgen::KeyPair;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::bundle::Bundle;
use crate::ca::{KeyType, certificate_public_key, fingerprint, pem_certificate};
use crate::csr::make_csr;
use crate::enroll::client::{ENROLL_TIMEOUT, ExchangeError, exchange};
use crate::enroll::protocol::{Message, RenewRequest};
use crate::{PkiError, files};
use hometun_certs::verify::describe;

/// What `hometun renew` may change from client.toml's `[renew]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenewOptions {
    /// Renew now, even if the certificate is not due yet.
    pub force: bool,
    /// Make a new key (`Some(true)`) or keep the current one (`Some(false)`); `None`:
    /// `renew.new_key`.
    pub new_key: Option<bool>,
}

/// A certificate renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewed {
    /// The home's name.
    pub name: String,
    /// Its prefix (the same as before).
    pub prefix: Ipv6Net,
    /// The new certificate's serial (hex).
    pub serial: String,
    /// When the new certificate expires (Unix seconds).
    pub not_after: i64,
    /// Whether the key is new.
    pub new_key: bool,
    /// The certificate file written.
    pub certificate: PathBuf,
}

/// What [`renew`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewOutcome {
    /// Nothing: the certificate is not due yet.
    NotDue {
        /// When it is due (Unix seconds).
        due: i64,
        /// When it expires (Unix seconds).
        not_after: i64,
    },
    /// A new certificate is in place.
    Renewed(Renewed),
}

/// The pending new key beside `key` (`client.key.next`).
pub fn next_key_path(key: &Path) -> PathBuf {
    let mut name = key.file_name().unwrap_or_default().to_os_string();
    name.push(".next");
    key.with_file_name(name)
}

/// (notBefore, notAfter) of a certificate, Unix seconds.
pub fn validity(der: &[u8]) -> Result<(i64, i64), PkiError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| PkiError::Verify(format!("certificate does not parse: {e}")))?;
    Ok((
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    ))
}

/// When the certificate of `config` is due for renewal and when it expires (Unix seconds):
/// what a timer in the client daemon waits for.
pub fn renewal_due(config: &ClientConfig) -> Result<(i64, i64), PkiError> {
    let cert = files::load_certificate(&config.client.certificate)?;
    let (not_before, not_after) = validity(&cert)?;
    Ok((config.renew.due(not_before, not_after), not_after))
}

fn load_key_pair(path: &Path) -> Result<KeyPair, PkiError> {
    let pem = zeroize::Zeroizing::new(files::read_to_string(path)?);
    KeyPair::from_pem(&pem).map_err(|e| PkiError::file(path, format!("not a usable key: {e}")))
}

/// Finishes a renewal that stopped between writing the certificate and moving the new key in:
/// if the pending key belongs to the certificate, it becomes the key.
fn finish_interrupted(config: &ClientConfig) -> Result<(), PkiError> {
    let key = &config.client.private_key;
    let next = next_key_path(key);
    if !next.exists() {
        return Ok(());
    }
    let cert = files::load_certificate(&config.client.certificate)?;
    if certificate_public_key(&cert)? == load_key_pair(&next)?.public_key_raw() {
        std::fs::rename(&next, key).map_err(|e| PkiError::io(key, e))?;
    }
    Ok(())
}

/// The key the new certificate is for: the pending new key (made if missing, 0600), or the
/// current one.
fn key_for_request(config: &ClientConfig, new_key: bool) -> Result<KeyPair, PkiError> {
    let current = load_key_pair(&config.client.private_key)?;
    if !new_key {
        return Ok(current);
    }
    let next = next_key_path(&config.client.private_key);
    if next.exists() {
        return load_key_pair(&next);
    }
    let key_type = if current.algorithm() == &rcgen::PKCS_ED25519 {
        KeyType::Ed25519
    } else {
        KeyType::P256
    };
    let key = key_type.generate()?;
    let pem = zeroize::Zeroizing::new(key.serialize_pem());
    files::write_new(&next, pem.as_bytes(), files::PRIVATE_MODE)?;
    Ok(key)
}

/// Renews the certificate of the home whose client.toml is `config_path`, at `now`, if it is
/// due (or `options.force`). See the module documentation for the protocol and the files.
pub async fn renew(
    config_path: &Path,
    options: &RenewOptions,
    now: UnixTime,
) -> Result<RenewOutcome, PkiError> {
    let config = ClientConfig::load(config_path)?;
    finish_interrupted(&config)?;
    let c = &config.client;
    let cert = files::load_certificate(&c.certificate)?;
    let (not_before, not_after) = validity(&cert)?;
    let due = config.renew.due(not_before, not_after);
    let t = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if t < due && !options.force {
        return Ok(RenewOutcome::NotDue { due, not_after });
    }
    let new_key = options.new_key.unwrap_or(config.renew.new_key);
    let key = key_for_request(&config, new_key)?;
    let csr_pem = make_csr(&key, &c.name)?;
    let csr_der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| PkiError::Csr(e.to_string()))?;
    let ca = files::load_certificate(&c.ca)?;
    // Renewal goes to the first server unless renew.server names the listener.
    let server = config.renew.server_or_default(*c.server.first());
    let request = Message::Renew(RenewRequest {
        csr_der: csr_der.as_ref().to_vec(),
    });
    let client_auth = (
        vec![CertificateDer::from(cert.to_vec())],
        files::load_private_key(&c.private_key)?,
    );
    let fail = |problem: String| PkiError::Enrollment { server, problem };
    let answer = tokio::time::timeout(
        ENROLL_TIMEOUT,
        exchange(fingerprint(&ca), server, &request, Some(client_auth)),
    )
    .await
    .unwrap_or(Err(ExchangeError::TimedOut))
    .map_err(|e| fail(e.to_string()))?;
    let bundle = match answer {
        Message::Bundle(text) => Bundle::parse(text.as_bytes())?,
        Message::Refused(r) => {
            return Err(PkiError::Refused {
                code: r.code,
                message: r.message,
            });
        }
        other => return Err(fail(format!("unexpected answer {other:?}"))),
    };
    check_bundle(&bundle, &config, &ca, &key, server, now)?;
    let new_cert = bundle.certificate_der()?;
    files::write_atomic(
        &c.certificate,
        pem_certificate(&new_cert).as_bytes(),
        files::PUBLIC_MODE,
    )?;
    if new_key {
        let next = next_key_path(&c.private_key);
        std::fs::rename(&next, &c.private_key).map_err(|e| PkiError::io(&c.private_key, e))?;
    }
    let peer = describe(&new_cert).map_err(|e| PkiError::Verify(e.to_string()))?;
    Ok(RenewOutcome::Renewed(Renewed {
        name: bundle.name,
        prefix: bundle.prefix,
        serial: crate::ca::serial_hex(&peer.serial),
        not_after: peer.not_after,
        new_key,
        certificate: c.certificate.clone(),
    }))
}

/// What comes back must be for this home, from its CA, with its prefix and the requested key.
fn check_bundle(
    bundle: &Bundle,
    config: &ClientConfig,
    ca: &[u8],
    key: &KeyPair,
    server: SocketAddr,
    now: UnixTime,
) -> Result<(), PkiError> {
    let fail = |problem: String| PkiError::Enrollment { server, problem };
    if fingerprint(&bundle.ca_der()?) != fingerprint(ca) {
        return Err(fail("the new certificate is from another CA".into()));
    }
    if bundle.name != config.client.name {
        return Err(fail(format!(
            "the new certificate is for {}, not {}",
            bundle.name, config.client.name
        )));
    }
    if bundle.prefix != config.client.prefix {
        return Err(fail(format!(
            "the new certificate carries {}, not this home's {}; keeping the current one",
            bundle.prefix, config.client.prefix
        )));
    }
    bundle.verify(now)?;
    if certificate_public_key(&bundle.certificate_der()?)? != key.public_key_raw() {
        return Err(fail(
            "the new certificate is not for the key this home sent".into(),
        ));
    }
    Ok(())
}

/// Shared with `hometun enroll`: the connection's TLS client settings.
pub(crate) fn client_config(
    ca_fingerprint: [u8; 32],
    client_auth: Option<(
        Vec<CertificateDer<'static>>,
        rustls_pki_types::PrivateKeyDer<'static>,
    )>,
) -> Result<rustls::ClientConfig, ExchangeError> {
    let builder = rustls::ClientConfig::builder_with_provider(crate::enroll::server::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(ExchangeError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(crate::enroll::client::PinnedCaVerifier::new(
            ca_fingerprint,
        )));
    match client_auth {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(ExchangeError::ClientCertificate),
    }
}
