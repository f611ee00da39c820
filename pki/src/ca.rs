//! The certificate authority: key generation, the CA, server and client certificates, CRLs.
//! Certificates are made with rcgen; nothing here hand-rolls cryptography.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnet::Ipv6Net;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, PublicKeyData, RevocationReason, RevokedCertParams, SanType, SerialNumber,
    SignatureAlgorithm,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use crate::{PkiError, files};
use hometun_certs::addrblock::{self, OID_IP_ADDR_BLOCKS};

/// Validity of the CA certificate.
pub const CA_VALID_DAYS: i64 = 3650;
/// Validity of the server's certificate (IKE and enrollment TLS).
pub const SERVER_VALID_DAYS: i64 = 1825;
/// Default validity of a client certificate.
pub const CLIENT_VALID_DAYS: i64 = 730;
/// Certificates start this long before "now", so a peer whose clock lags still accepts them.
const BACKDATE: Duration = Duration::hours(1);

/// IKE intermediate EKU (1.3.6.1.5.5.8.2.2); Windows and macOS IKEv2 clients look for it on
/// the server certificate.
const EKU_IKE_INTERMEDIATE: &[u64] = &[1, 3, 6, 1, 5, 5, 8, 2, 2];

#[cfg(test)]
thread_local! {
    /// How many times this thread read a CA key (tests of the enrollment listener's order of
    /// checks: a request without a valid token must never get this far).
    pub(crate) static CA_KEY_LOADS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Key algorithm of a CA, server or client key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KeyType {
    /// Ed25519 (RFC 8410; IKE auth per RFC 8420).
    #[default]
    Ed25519,
    /// ECDSA on P-256 with SHA-256.
    P256,
}

impl KeyType {
    fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
            KeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }

    /// A fresh key pair from the system's secure random source.
    pub fn generate(self) -> Result<KeyPair, PkiError> {
        Ok(KeyPair::generate_for(self.algorithm())?)
    }
}

/// 16 random bytes as a positive serial number (RFC 5280: at most 20 octets, positive).
pub fn random_serial() -> Result<Vec<u8>, PkiError> {
    let mut serial = vec![0u8; 16];
    SystemRandom::new()
        .fill(&mut serial)
        .map_err(|_| PkiError::Invalid("the system random source failed".into()))?;
    // High bit clear (positive) and high byte non-zero (so DER keeps all 16 bytes).
    serial[0] = (serial[0] & 0x7f) | 0x01;
    Ok(serial)
}

/// Serial number as lower-case hex, the form the registry and `pki list` show.
pub fn serial_hex(serial: &[u8]) -> String {
    serial.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a certificate's DER: what an enrollment token pins.
pub fn fingerprint(cert_der: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert_der);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn addrblock_extension(prefixes: &[Ipv6Net]) -> Result<CustomExtension, PkiError> {
    let value =
        addrblock::encode_ipv6_prefixes(prefixes).map_err(|e| PkiError::Invalid(e.to_string()))?;
    let mut ext = CustomExtension::from_oid_content(OID_IP_ADDR_BLOCKS, value);
    // NON-critical on purpose: rustls-webpki (the IKE daemon's chain verifier) rejects any
    // certificate with a critical extension it does not implement, and it does not implement
    // RFC 3779. strongSwan writes and reads it non-critical as well.
    ext.set_criticality(false);
    Ok(ext)
}

/// `::/0`: what the CA and the server certificate carry in their address blocks.
///
/// strongSwan's addrblock plugin (loaded by default) insists that an issuer's blocks contain
/// its subjects' (so the CA needs blocks containing every client prefix), rejects a
/// certificate without blocks under an issuer with blocks (so the server certificate needs
/// them too), and narrows the peer's traffic selectors to the peer certificate's blocks (so a
/// strongSwan client would only reach the pool unless the server's certificate says `::/0`).
fn everything() -> Ipv6Net {
    Ipv6Net::default()
}

fn dns_san(name: &str) -> Result<SanType, PkiError> {
    Ok(SanType::DnsName(name.to_string().try_into().map_err(
        |_| PkiError::Invalid(format!("{name:?} is not a DNS name")),
    )?))
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

fn end_entity_params(
    name: &str,
    serial: &[u8],
    now: OffsetDateTime,
    valid_days: i64,
) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::default();
    p.not_before = now - BACKDATE;
    p.not_after = now + Duration::days(valid_days);
    p.serial_number = Some(SerialNumber::from_slice(serial));
    p.distinguished_name = common_name(name);
    p.subject_alt_names = vec![dns_san(name)?];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

/// One revoked certificate, as the CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// Serial number bytes.
    pub serial: Vec<u8>,
    /// When it was revoked.
    pub at: OffsetDateTime,
    /// Whether the key is known or feared to be compromised (else: cessation of operation).
    pub key_compromise: bool,
}

/// A loaded CA: its certificate and the issuer (key) that signs with it.
pub struct Ca {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    key_id: Vec<u8>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("fingerprint", &serial_hex(&self.fingerprint()))
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Makes a new self-signed CA. Returns it and its private key (PEM, PKCS#8).
    pub fn create(
        server_name: &str,
        key_type: KeyType,
        now: OffsetDateTime,
    ) -> Result<(Ca, String), PkiError> {
        let key = key_type.generate()?;
        let key_pem = key.serialize_pem();
        let mut p = CertificateParams::default();
        p.not_before = now - BACKDATE;
        p.not_after = now + Duration::days(CA_VALID_DAYS);
        p.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
        p.distinguished_name = common_name(&format!("hometun CA {server_name}"));
        // Path length 0: the CA signs end entities only.
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.custom_extensions = vec![addrblock_extension(&[everything()])?];
        let cert = p.self_signed(&key)?;
        let ca = Ca::from_parts(cert.der().clone(), key)?;
        Ok((ca, key_pem))
    }

    /// Loads the CA from its certificate and key files. The key's text is wiped from memory
    /// once parsed (rcgen's own copy of the key is freed, not wiped, when the `Ca` drops):
    /// callers load the CA for one signing step and drop it.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Ca, PkiError> {
        #[cfg(test)]
        CA_KEY_LOADS.with(|n| n.set(n.get() + 1));
        let cert = files::load_certificate(cert_path)?;
        files::check_private_mode(key_path)?;
        let key_pem = zeroize::Zeroizing::new(files::read_to_string(key_path)?);
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| PkiError::file(key_path, format!("not a usable key: {e}")))?;
        let ca = Ca::from_parts(cert, key)?;
        if !ca.matches_key() {
            return Err(PkiError::KeyMismatch {
                what: format!("CA certificate {}", cert_path.display()),
                key: key_path.to_path_buf(),
            });
        }
        Ok(ca)
    }

    fn from_parts(cert_der: CertificateDer<'static>, key: KeyPair) -> Result<Ca, PkiError> {
        let (_, parsed) = X509Certificate::from_der(&cert_der)
            .map_err(|e| PkiError::Invalid(format!("CA certificate does not parse: {e}")))?;
        let key_id = parsed
            .extensions()
            .iter()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            })
            .unwrap_or_default();
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        let cert_pem = pem_certificate(&cert_der);
        Ok(Ca {
            cert_der,
            cert_pem,
            issuer,
            key_id,
        })
    }

    fn matches_key(&self) -> bool {
        X509Certificate::from_der(&self.cert_der).is_ok_and(|(_, c)| {
            c.public_key().subject_public_key.data.as_ref() == self.issuer.key().der_bytes()
        })
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the CA certificate.
    pub fn fingerprint(&self) -> [u8; 32] {
        fingerprint(&self.cert_der)
    }

    /// The server's certificate: SAN dNSName `name` and iPAddress `ipv4`, EKU serverAuth and
    /// IKE intermediate, address blocks `::/0`.
    pub fn issue_server(
        &self,
        key: &KeyPair,
        name: &str,
        ipv4: Ipv4Addr,
        now: OffsetDateTime,
    ) -> Result<CertificateDer<'static>, PkiError> {
        let mut p = end_entity_params(name, &random_serial()?, now, SERVER_VALID_DAYS)?;
        p.subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(ipv4)));
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::Other(EKU_IKE_INTERMEDIATE.to_vec()),
        ];
        p.custom_extensions = vec![addrblock_extension(&[everything()])?];
        Ok(p.signed_by(key, &self.issuer)?.der().clone())
    }

    /// A client certificate: SAN dNSName `name`, EKU clientAuth, and the RFC 3779 address
    /// block with `prefix`. `serial` comes from [`random_serial`] and is recorded by the caller.
    pub fn issue_client(
        &self,
        public_key: &impl PublicKeyData,
        name: &str,
        prefix: Ipv6Net,
        serial: &[u8],
        now: OffsetDateTime,
        valid_days: i64,
    ) -> Result<CertificateDer<'static>, PkiError> {
        let mut p = end_entity_params(name, serial, now, valid_days)?;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.custom_extensions = vec![addrblock_extension(&[prefix])?];
        Ok(p.signed_by(public_key, &self.issuer)?.der().clone())
    }

    /// A CRL (PEM) listing `revoked`, valid from `now` for `valid_days`.
    pub fn crl(
        &self,
        revoked: &[Revoked],
        number: u64,
        now: OffsetDateTime,
        valid_days: i64,
    ) -> Result<String, PkiError> {
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update: now + Duration::days(valid_days),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|r| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&r.serial),
                    revocation_time: r.at,
                    reason_code: Some(if r.key_compromise {
                        RevocationReason::KeyCompromise
                    } else {
                        RevocationReason::CessationOfOperation
                    }),
                    invalidity_date: None,
                })
                .collect(),
            // The CRL's authority key identifier must equal the CA certificate's.
            key_identifier_method: KeyIdMethod::PreSpecified(self.key_id.clone()),
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }
}

/// The raw public key a certificate (DER) certifies, as a key pair's `public_key_raw` gives it:
/// what tells whether a certificate and a key, or two certificates, share a key.
pub fn certificate_public_key(der: &[u8]) -> Result<Vec<u8>, PkiError> {
    use hometun_certs::verify::{PeerPublicKey, describe};
    let peer = describe(der).map_err(|e| PkiError::Verify(e.to_string()))?;
    Ok(match peer.public_key {
        PeerPublicKey::Ed25519(k) => k.to_vec(),
        PeerPublicKey::EcdsaP256(k) => k,
    })
}

/// PEM text of a DER certificate.
pub fn pem_certificate(der: &[u8]) -> String {
    pem_encode("CERTIFICATE", der)
}

/// PEM armour (RFC 7468), 64 columns.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
