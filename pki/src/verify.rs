//! What the IKE daemon calls in IKE_AUTH: verify a peer's certificate chain against the CA
//! (rustls-webpki), check it against the CRL, and read what the certificate grants: names
//! (IKE identities), the RFC 3779 prefixes (traffic selectors, ingress filter), and the public
//! key that must have signed the AUTH payload.
//!
//! ```no_run
//! # use hometun_pki::verify::TrustStore;
//! # fn f(ca: &std::path::Path, crl: &std::path::Path, cert: &[u8]) -> anyhow::Result<()> {
//! let store = TrustStore::from_files(ca, Some(crl))?.with_pool("2001:db8:100::/48".parse()?);
//! let now = rustls_pki_types::UnixTime::now();
//! let peer = store.verify_client(cert, &[], now)?; // Err(VerifyError::Revoked) if on the CRL
//! // peer.names: check the IDi (ID_FQDN) is one of them; peer.prefixes: the client's TS
//! // must satisfy hometun_pki::addrblock::range_within(&peer.prefixes, start, end), else
//! // answer TS_UNACCEPTABLE; peer.public_key verifies the AUTH signature.
//! # Ok(()) }
//! ```
//!
//! Re-read the CRL (SIGHUP) by building a new `TrustStore`.

use std::net::IpAddr;
use std::path::Path;

use ipnet::Ipv6Net;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, ServerName, TrustAnchor, UnixTime,
};
use webpki::{
    CertRevocationList, EndEntityCert, KeyUsage, OwnedCertRevocationList, RevocationCheckDepth,
    RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::addrblock::{self, AddrBlockError};
use crate::{PkiError, files};

const OID_ED25519: &str = "1.3.101.112";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";

/// Why a peer certificate is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a parseable certificate.
    #[error("certificate does not parse: {0}")]
    Parse(String),
    /// On the CA's CRL.
    #[error("certificate is revoked")]
    Revoked,
    /// Chain, validity period, key usage or signature problem (rustls-webpki's verdict).
    #[error("certificate chain: {0}")]
    Chain(String),
    /// The server certificate is not valid for the expected name.
    #[error("certificate is not valid for {0}")]
    WrongName(String),
    /// The address block extension is malformed.
    #[error("{0}")]
    AddrBlock(#[from] AddrBlockError),
    /// A prefix lies outside what the CA certificate's address blocks allow (RFC 3779 nesting).
    #[error("certificate prefix {0} is outside the CA's address blocks")]
    NotNested(Ipv6Net),
    /// A prefix lies outside the server's pool.
    #[error("certificate prefix {prefix} is outside the pool {pool}")]
    OutsidePool {
        /// The certificate's prefix.
        prefix: Ipv6Net,
        /// The pool from server.toml.
        pool: Ipv6Net,
    },
    /// A key type IKE cannot use here.
    #[error("certificate key is neither Ed25519 nor ECDSA P-256")]
    UnsupportedKey,
    /// The CA certificate or a CRL could not be loaded.
    #[error("trust store: {0}")]
    Store(String),
}

/// A verified peer's public key, in the form the IKE signature check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerPublicKey {
    /// Ed25519 public key (RFC 8420).
    Ed25519([u8; 32]),
    /// ECDSA P-256 public key as a SEC1 point (uncompressed, 65 bytes, or compressed, 33).
    EcdsaP256(Vec<u8>),
}

/// What a verified certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// subjectAltName dNSNames: the IKE identities (ID_FQDN) the peer may use.
    pub names: Vec<String>,
    /// subjectAltName iPAddresses.
    pub ip_addresses: Vec<IpAddr>,
    /// The RFC 3779 IPv6 prefixes (empty if the certificate has none).
    pub prefixes: Vec<Ipv6Net>,
    /// Serial number bytes.
    pub serial: Vec<u8>,
    /// Expiry (Unix seconds).
    pub not_after: i64,
    /// The subject public key.
    pub public_key: PeerPublicKey,
    /// The whole SubjectPublicKeyInfo (DER), for verifiers that take that form.
    pub spki_der: Vec<u8>,
}

/// The CA certificate, its CRLs, and optionally the pool client prefixes must lie in.
#[derive(Debug)]
pub struct TrustStore {
    ca_der: CertificateDer<'static>,
    anchor: TrustAnchor<'static>,
    ca_blocks: Option<Vec<Ipv6Net>>,
    crls: Vec<CertRevocationList<'static>>,
    pool: Option<Ipv6Net>,
}

impl TrustStore {
    /// A store for the CA certificate `ca_der` and its CRLs (DER).
    pub fn new(
        ca_der: CertificateDer<'static>,
        crls: &[CertificateRevocationListDer<'_>],
    ) -> Result<Self, VerifyError> {
        let anchor = webpki::anchor_from_trusted_cert(&ca_der)
            .map_err(|e| VerifyError::Store(format!("CA certificate: {e}")))?
            .to_owned();
        let (_, parsed) = X509Certificate::from_der(&ca_der)
            .map_err(|e| VerifyError::Store(format!("CA certificate: {e}")))?;
        let has_blocks = parsed
            .extensions()
            .iter()
            .any(|e| e.oid.to_id_string() == addrblock::OID_IP_ADDR_BLOCKS_STR);
        let ca_blocks = if has_blocks {
            Some(addrblock::prefixes_from_parsed(&parsed)?)
        } else {
            None
        };
        let crls = crls
            .iter()
            .map(|c| {
                OwnedCertRevocationList::from_der(c)
                    .map(CertRevocationList::from)
                    .map_err(|e| VerifyError::Store(format!("CRL: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(TrustStore {
            ca_der,
            anchor,
            ca_blocks,
            crls,
            pool: None,
        })
    }

    /// Loads the CA certificate (PEM) and, if given, the CRL file (PEM; may hold no CRL).
    pub fn from_files(ca: &Path, crl: Option<&Path>) -> Result<Self, PkiError> {
        let ca_der = files::load_certificate(ca)?;
        let crls = match crl {
            Some(path) => files::load_crls(path)?,
            None => Vec::new(),
        };
        TrustStore::new(ca_der, &crls).map_err(|e| PkiError::Verify(e.to_string()))
    }

    /// Also require client prefixes to lie inside `pool` (server.toml's `server.pool`).
    pub fn with_pool(mut self, pool: Ipv6Net) -> Self {
        self.pool = Some(pool);
        self
    }

    /// The CA certificate.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// Verifies a client (home) certificate: chain to the CA, validity at `now`, EKU
    /// clientAuth if the certificate lists EKUs, not revoked, prefixes inside the CA's blocks
    /// and the pool.
    pub fn verify_client(
        &self,
        end_entity: &[u8],
        intermediates: &[&[u8]],
        now: UnixTime,
    ) -> Result<PeerCertificate, VerifyError> {
        let peer = self.verify(end_entity, intermediates, now, KeyUsage::client_auth())?;
        if let Some(pool) = self.pool
            && let Some(&prefix) = peer.prefixes.iter().find(|p| !pool.contains(*p))
        {
            return Err(VerifyError::OutsidePool { prefix, pool });
        }
        Ok(peer)
    }

    /// Verifies the server's certificate (on the home side): chain, validity, EKU serverAuth
    /// if listed, not revoked, and valid for `server_name` (a DNS name or an IP address).
    pub fn verify_server(
        &self,
        end_entity: &[u8],
        intermediates: &[&[u8]],
        server_name: &str,
        now: UnixTime,
    ) -> Result<PeerCertificate, VerifyError> {
        let peer = self.verify(end_entity, intermediates, now, KeyUsage::server_auth())?;
        let name = ServerName::try_from(server_name)
            .map_err(|_| VerifyError::WrongName(server_name.to_string()))?;
        let der = CertificateDer::from(end_entity);
        let cert = EndEntityCert::try_from(&der).map_err(|e| VerifyError::Parse(e.to_string()))?;
        cert.verify_is_valid_for_subject_name(&name)
            .map_err(|_| VerifyError::WrongName(server_name.to_string()))?;
        Ok(peer)
    }

    fn verify(
        &self,
        end_entity: &[u8],
        intermediates: &[&[u8]],
        now: UnixTime,
        usage: KeyUsage,
    ) -> Result<PeerCertificate, VerifyError> {
        let der = CertificateDer::from(end_entity);
        let cert = EndEntityCert::try_from(&der).map_err(|e| VerifyError::Parse(e.to_string()))?;
        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(*c))
            .collect();
        let crl_refs: Vec<&CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = RevocationOptionsBuilder::new(&crl_refs).ok().map(|b| {
            // Our CA signs end entities only; its CRL speaks for all of them.
            b.with_depth(RevocationCheckDepth::EndEntity)
                .with_status_policy(UnknownStatusPolicy::Deny)
                .build()
        });
        cert.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            std::slice::from_ref(&self.anchor),
            &intermediates,
            now,
            usage,
            revocation,
            None,
        )
        .map_err(|e| match e {
            webpki::Error::CertRevoked => VerifyError::Revoked,
            other => VerifyError::Chain(format!("{other:?}")),
        })?;
        let peer = describe(end_entity)?;
        if let Some(blocks) = &self.ca_blocks
            && let Some(&p) = peer
                .prefixes
                .iter()
                .find(|p| !blocks.iter().any(|b| b.contains(*p)))
        {
            return Err(VerifyError::NotNested(p));
        }
        Ok(peer)
    }
}

/// Reads names, prefixes, serial, expiry and key from a certificate. Does not verify it.
pub fn describe(der: &[u8]) -> Result<PeerCertificate, VerifyError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| VerifyError::Parse(e.to_string()))?;
    let mut names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => names.push((*n).to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => {
                        ip_addresses.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default()))
                    }
                    16 => ip_addresses
                        .push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let prefixes = addrblock::prefixes_from_parsed(&cert)?;
    let spki = cert.public_key();
    let key_bytes: &[u8] = spki.subject_public_key.data.as_ref();
    let public_key = match spki.algorithm.algorithm.to_id_string().as_str() {
        OID_ED25519 => PeerPublicKey::Ed25519(
            key_bytes
                .try_into()
                .map_err(|_| VerifyError::UnsupportedKey)?,
        ),
        OID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            if curve.as_deref() != Some(OID_P256) {
                return Err(VerifyError::UnsupportedKey);
            }
            PeerPublicKey::EcdsaP256(key_bytes.to_vec())
        }
        _ => return Err(VerifyError::UnsupportedKey),
    };
    Ok(PeerCertificate {
        names,
        ip_addresses,
        prefixes,
        serial: cert.raw_serial().to_vec(),
        not_after: cert.validity().not_after.timestamp(),
        public_key,
        spki_der: spki.raw.to_vec(),
    })
}
