//! Certificate chains, verified with rustls-webpki.
//!
//! [`ChainVerifier`] is the one place hometun calls rustls-webpki's path validation: trust
//! anchors, CRLs, the signature algorithms hometun's keys use (Ed25519, ECDSA P-256) and the
//! revocation policy. Each purpose adds its own rules on top:
//!
//! - IKE_AUTH: `hometun_ike::crypto::CertificateVerifier` (the peer's ID payload against the
//!   certificate, the EKUs stock IKE peers carry, CERTREQ hashes, one log line per refusal);
//!   the server's authorizer then reads the client's prefix with
//!   [`crate::addrblock::prefixes_from_certificate`].
//! - The CA's own checks: [`TrustStore`] (a home certificate must carry clientAuth and a
//!   prefix inside the CA's address blocks and the pool; the server's, serverAuth and its
//!   name), used when a bundle is imported ([`crate::bundle::Bundle::verify`]) and by the
//!   enrollment client to accept the enrollment server
//!   ([`crate::enroll::client::PinnedCaVerifier`]).
//!
//! ```no_run
//! # use hometun_certs::verify::TrustStore;
//! # fn f(ca: rustls_pki_types::CertificateDer<'static>, crl: &[rustls_pki_types::CertificateRevocationListDer<'_>], cert: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! let store = TrustStore::new(ca, crl)?.with_pool("2001:db8:100::/48".parse()?);
//! let now = rustls_pki_types::UnixTime::now();
//! let home = store.verify_client(cert, &[], now)?; // Err(VerifyError::Revoked) if on the CRL
//! // home.names: its DNS names; home.prefixes: its RFC 3779 prefixes, inside the pool.
//! # Ok(()) }
//! ```

use std::net::IpAddr;

use ipnet::Ipv6Net;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, ServerName, SignatureVerificationAlgorithm,
    TrustAnchor, UnixTime,
};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, ExtendedKeyUsageValidator, KeyUsage,
    OwnedCertRevocationList, RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::addrblock::{self, AddrBlockError};
use crate::memo::{self, Memo};
use crate::signature_memo::Remembered;

const OID_ED25519: &str = "1.3.101.112";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";

/// Signature algorithms accepted on certificates and CRLs: those of the keys hometun issues
/// and IKE authenticates with (Ed25519, RFC 8420; ECDSA P-256, RFC 7427), each remembering
/// the signatures it verified ([`crate::signature_memo`]: the CRL's on every path, a home
/// certificate's on each of its handshakes).
pub static SIGNATURE_ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    &Remembered(webpki::ring::ED25519),
    &Remembered(webpki::ring::ECDSA_P256_SHA256),
    &Remembered(webpki::ring::ECDSA_P256_SHA384),
];

/// Trust anchors and CRLs, and the chain check every hometun verifier builds on (rustls-webpki
/// path validation with [`SIGNATURE_ALGS`]). Once any CRL is added, an end-entity certificate
/// passes only if a CRL from its issuer is present and does not list it.
pub struct ChainVerifier {
    anchors: Vec<TrustAnchor<'static>>,
    crls: Vec<CertRevocationList<'static>>,
}

impl std::fmt::Debug for ChainVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainVerifier")
            .field("anchors", &self.anchors.len())
            .field("crls", &self.crls.len())
            .finish()
    }
}

impl ChainVerifier {
    /// Trusts the CA certificates `ca_certs` (DER).
    pub fn new(ca_certs: &[CertificateDer<'_>]) -> Result<Self, webpki::Error> {
        let anchors = ca_certs
            .iter()
            .map(|der| webpki::anchor_from_trusted_cert(der).map(|a| a.to_owned()))
            .collect::<Result<_, _>>()?;
        Ok(ChainVerifier {
            anchors,
            crls: Vec::new(),
        })
    }

    /// Adds a CRL (DER).
    pub fn add_crl(&mut self, der: &[u8]) -> Result<(), webpki::Error> {
        self.crls
            .push(OwnedCertRevocationList::from_der(der)?.into());
        Ok(())
    }

    /// The trust anchors, in the order given.
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// Checks `end_entity` with the `intermediates` its peer sent: a path to an anchor, every
    /// signature, validity at `now`, the extended key usage `usage` wants, and (with CRLs) that
    /// it is not revoked. The caller checks what the certificate is for: names, identities,
    /// prefixes.
    pub fn verify(
        &self,
        end_entity: &EndEntityCert<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: impl ExtendedKeyUsageValidator,
    ) -> Result<(), webpki::Error> {
        let crl_refs: Vec<&CertRevocationList<'_>> = self.crls.iter().collect();
        // No CRL at all: the builder refuses an empty list, and there is nothing to check.
        let revocation = RevocationOptionsBuilder::new(&crl_refs).ok().map(|b| {
            // hometun CAs sign end entities only; the CA's CRL speaks for all of them. A CRL
            // past its nextUpdate still counts: what it lists stays revoked, and a late
            // `pki crl` must not lock every home out.
            b.with_depth(RevocationCheckDepth::EndEntity)
                .with_status_policy(UnknownStatusPolicy::Deny)
                .with_expiration_policy(ExpirationPolicy::Ignore)
                .build()
        });
        end_entity
            .verify_for_usage(
                SIGNATURE_ALGS,
                &self.anchors,
                intermediates,
                now,
                usage,
                revocation,
                None,
            )
            .map(|_| ())
    }
}

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

/// A certificate's public key (the raw key bytes, to compare with a private key's).
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
}

/// The CA's own view of its certificates: its CA certificate and CRLs ([`ChainVerifier`]),
/// its address blocks, and optionally the pool home prefixes must lie in.
#[derive(Debug)]
pub struct TrustStore {
    ca_der: CertificateDer<'static>,
    chain: ChainVerifier,
    ca_blocks: Option<Vec<Ipv6Net>>,
    pool: Option<Ipv6Net>,
}

impl TrustStore {
    /// A store for the CA certificate `ca_der` and its CRLs (DER).
    pub fn new(
        ca_der: CertificateDer<'static>,
        crls: &[CertificateRevocationListDer<'_>],
    ) -> Result<Self, VerifyError> {
        let mut chain = ChainVerifier::new(std::slice::from_ref(&ca_der))
            .map_err(|e| VerifyError::Store(format!("CA certificate: {e}")))?;
        for crl in crls {
            chain
                .add_crl(crl)
                .map_err(|e| VerifyError::Store(format!("CRL: {e}")))?;
        }
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
        Ok(TrustStore {
            ca_der,
            chain,
            ca_blocks,
            pool: None,
        })
    }

    /// Also require home prefixes to lie inside `pool` (server.toml's `server.pool`).
    pub fn with_pool(mut self, pool: Ipv6Net) -> Self {
        self.pool = Some(pool);
        self
    }

    /// The CA certificate.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// Verifies a home's certificate: chain to the CA, validity at `now`, EKU clientAuth if
    /// the certificate lists EKUs, not revoked, prefixes inside the CA's blocks and the pool.
    pub fn verify_client(
        &self,
        end_entity: &[u8],
        intermediates: &[&[u8]],
        now: UnixTime,
    ) -> Result<PeerCertificate, VerifyError> {
        let peer = self.verify(
            end_entity,
            intermediates,
            now,
            KeyUsage::client_auth(),
            None,
        )?;
        if let Some(pool) = self.pool
            && let Some(&prefix) = peer.prefixes.iter().find(|p| !pool.contains(*p))
        {
            return Err(VerifyError::OutsidePool { prefix, pool });
        }
        Ok(peer)
    }

    /// Verifies the server's certificate: chain, validity, the serverAuth EKU (required: the
    /// CA signs homes too, and a home must not pass as the server), not revoked, and, given a
    /// `server_name` (a DNS name or an IP address), valid for it. Enrollment passes `None`:
    /// its token pins the CA and names an address that may be a port forward's.
    pub fn verify_server(
        &self,
        end_entity: &[u8],
        intermediates: &[&[u8]],
        server_name: Option<&str>,
        now: UnixTime,
    ) -> Result<PeerCertificate, VerifyError> {
        let usage = KeyUsage::required(EKU_SERVER_AUTH);
        self.verify(end_entity, intermediates, now, usage, server_name)
    }

    fn verify(
        &self,
        end_entity: &[u8],
        intermediates: &[&[u8]],
        now: UnixTime,
        usage: KeyUsage,
        name: Option<&str>,
    ) -> Result<PeerCertificate, VerifyError> {
        let der = CertificateDer::from(end_entity);
        let cert = EndEntityCert::try_from(&der).map_err(|e| VerifyError::Parse(e.to_string()))?;
        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(*c))
            .collect();
        self.chain
            .verify(&cert, &intermediates, now, usage)
            .map_err(|e| match e {
                webpki::Error::CertRevoked => VerifyError::Revoked,
                other => VerifyError::Chain(format!("{other:?}")),
            })?;
        if let Some(name) = name {
            let wrong = || VerifyError::WrongName(name.to_string());
            let server_name = ServerName::try_from(name).map_err(|_| wrong())?;
            cert.verify_is_valid_for_subject_name(&server_name)
                .map_err(|_| wrong())?;
        }
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

/// DER contents of the serverAuth EKU OID (1.3.6.1.5.5.7.3.1, RFC 5280 4.2.1.12).
pub const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];

/// A certificate's serial number. Does not verify it.
///
/// What a certificate's bytes give is remembered ([`crate::memo`]): with revoked serials, the
/// server reads each home's serial on every handshake. A failure is not remembered.
pub fn serial(der: &[u8]) -> Result<Vec<u8>, VerifyError> {
    static SERIALS: Memo<Vec<u8>> = Memo::new();
    SERIALS.remember(memo::digest(&[der]), || {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| VerifyError::Parse(e.to_string()))?;
        Ok(cert.raw_serial().to_vec())
    })
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
    })
}
