//! The server side of certificate renewal (RFC 7030 4.2.2, simple re-enrollment): a home that
//! authenticated with its current certificate (the TLS client certificate of the enrollment
//! connection, whose key signed the handshake) sends a CSR for the same name and gets a new
//! certificate for the same name and the same prefix.
//!
//! Checks, in order: the certificate chains to the CA, has not expired and is not revoked (the
//! CRL of server.toml and the registry), carries clientAuth and a prefix inside the pool; the
//! registry knows its serial; the CSR is for a name of that certificate, its signature verifies.
//!
//! The replaced certificate is recorded as superseded, not revoked: it stays valid until its
//! own expiry, so a home whose answer was lost still has a working certificate. It can no
//! longer renew, except to fetch again the very certificate its renewal produced (same new
//! key), which makes a retry after a lost answer safe and issues nothing new.

use rcgen::PublicKeyData;
use time::OffsetDateTime;

use crate::ca;
use crate::csr::check_csr;
use crate::registry::Supersession;
use crate::server_dir::{Issued, ServerDir, new_record};
use crate::token::unix_text;
use crate::{PkiError, files};
use hometun_certs::verify::{PeerPublicKey, VerifyError, describe};

/// Why a renewal was refused. Each maps to a wire code of the enrollment protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenewalRefusal {
    /// No client certificate on the connection.
    #[error("renewal needs the current certificate as TLS client certificate")]
    NotAuthenticated,
    /// The presented certificate does not verify (revoked, expired, another CA, ...).
    #[error("the presented certificate is refused: {0}")]
    Certificate(String),
    /// The registry has no record of the presented certificate.
    #[error("the presented certificate (serial {0}) is not in the registry")]
    Unknown(String),
    /// A renewal already replaced the presented certificate.
    #[error(
        "the presented certificate (serial {serial}) was replaced by {by}; renew with that one"
    )]
    NotCurrent {
        /// The presented certificate's serial.
        serial: String,
        /// Its successor's serial.
        by: String,
    },
    /// The CSR names another client than the certificate.
    #[error("the certificate is for {certificate}, the request for {csr}")]
    NameMismatch {
        /// The certificate's name.
        certificate: String,
        /// The CSR's name.
        csr: String,
    },
}

impl ServerDir {
    /// Renews the certificate `presented` (DER; its holder proved possession of its key in the
    /// TLS handshake) with the CSR `csr` at `now`: a new certificate for the same name and
    /// prefix, recorded in the registry, the old one marked superseded.
    pub fn renew(
        &self,
        presented: &[u8],
        csr: &[u8],
        now: OffsetDateTime,
    ) -> Result<Issued, PkiError> {
        let config = self.config()?;
        let store = crate::files::trust_store(&config.server.ca, config.server.crl.as_deref())?
            .with_pool(config.server.pool);
        let unix = u64::try_from(now.unix_timestamp()).unwrap_or_default();
        let at = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(unix));
        let peer = store
            .verify_client(presented, &[], at)
            .map_err(|e| refusal(certificate_problem(presented, e)))?;
        let serial = ca::serial_hex(&peer.serial);
        let csr = check_csr(csr)?;
        if !peer.names.iter().any(|n| n.eq_ignore_ascii_case(&csr.name)) {
            return Err(refusal(RenewalRefusal::NameMismatch {
                certificate: peer.names.join(", ").to_ascii_lowercase(),
                csr: csr.name,
            }));
        }
        let ca_pem = self.ca_pem()?;
        let t = now.unix_timestamp();
        let record = self.registry()?.update(|data| {
            self.check_pool(&config, data)?;
            let index = data
                .clients
                .iter()
                .position(|c| c.serial == serial)
                .ok_or_else(|| refusal(RenewalRefusal::Unknown(serial.clone())))?;
            let old = data.clients[index].clone();
            if old.revoked.is_some() {
                return Err(refusal(RenewalRefusal::Certificate(
                    "certificate is revoked".into(),
                )));
            }
            if old.name != csr.name {
                return Err(refusal(RenewalRefusal::NameMismatch {
                    certificate: old.name,
                    csr: csr.name.clone(),
                }));
            }
            if let Some(superseded) = &old.superseded {
                // A retry after a lost answer: the successor, if it certifies this CSR's key.
                return data
                    .clients
                    .iter()
                    .find(|c| {
                        c.serial == superseded.by
                            && c.revoked.is_none()
                            && c.superseded.is_none()
                            && certifies(c, &csr.public_key)
                    })
                    .cloned()
                    .ok_or_else(|| {
                        refusal(RenewalRefusal::NotCurrent {
                            serial: old.serial.clone(),
                            by: superseded.by.clone(),
                        })
                    });
            }
            self.refuse_reserved(&config, &csr.name)?;
            // Same name, same prefix: a renewal never moves a home.
            // The CA key, for this signing only, once everything else said yes.
            let record = new_record(
                data,
                &self.ca()?,
                &csr,
                old.prefix,
                now,
                ca::CLIENT_VALID_DAYS,
            )?;
            data.clients[index].superseded = Some(Supersession {
                at: t,
                by: record.serial.clone(),
            });
            data.clients.push(record.clone());
            Ok(record)
        })?;
        let bundle = self.bundle_for(&config, &ca_pem, &record);
        Ok(Issued { record, bundle })
    }
}

fn refusal(r: RenewalRefusal) -> PkiError {
    PkiError::Renewal(r)
}

/// The refusal for a certificate the trust store refused, in words an operator reads.
fn certificate_problem(presented: &[u8], e: VerifyError) -> RenewalRefusal {
    let expired = describe(presented)
        .ok()
        .filter(|_| matches!(&e, VerifyError::Chain(text) if text.contains("CertExpired")))
        .map(|peer| format!("certificate expired at {}", unix_text(peer.not_after)));
    let problem = match (&e, expired) {
        (_, Some(expired)) => expired,
        (VerifyError::Chain(text), None)
            if text.contains("UnknownIssuer") || text.contains("InvalidSignatureForPublicKey") =>
        {
            "certificate is not issued by this CA".into()
        }
        _ => e.to_string(),
    };
    RenewalRefusal::Certificate(problem)
}

/// Whether the record's certificate is for `key`.
fn certifies(record: &crate::registry::ClientRecord, key: &rcgen::PublicKey) -> bool {
    let Ok(certs) = files::certificates_from_pem(record.certificate.as_bytes()) else {
        return false;
    };
    let Some(Ok(peer)) = certs.first().map(|der| describe(der)) else {
        return false;
    };
    let raw: &[u8] = match &peer.public_key {
        PeerPublicKey::Ed25519(k) => k,
        PeerPublicKey::EcdsaP256(k) => k,
    };
    raw == key.der_bytes()
}
