//! Checking a peer's certificate (the CERT payload) in IKE_AUTH: the chain to the configured
//! CA, validity dates at a given time and optional CRLs (`hometun_certs::verify::ChainVerifier`,
//! the rustls-webpki path validation all of hometun shares), then what IKE adds: the
//! extended key usages IKE peers carry, and the peer's identity (IDi/IDr) against the
//! certificate.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{SystemTime, UNIX_EPOCH};

use hometun_certs::verify::ChainVerifier;
use rustls_pki_types::{CertificateDer, DnsName, ServerName, UnixTime};
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeId, KeyPurposeIdIter};

use super::CryptoError;
use super::credentials::{PeerPublicKey, certificates_from_pem, crls_from_pem_or_der};

/// Why a peer certificate was refused. Every variant means AUTHENTICATION_FAILED on the wire;
/// the Display is the one-line log message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// No path to the configured CA (another CA issued it, or an intermediate is missing).
    #[error("certificate is not issued by the configured CA")]
    UnknownIssuer,
    /// An issuer with the CA's name but not its key signed the certificate.
    #[error("certificate signature does not verify with the configured CA's key")]
    BadChainSignature,
    /// A certificate of the chain has expired.
    #[error("certificate expired at {} (now {})", utc(*.not_after), utc(*.now))]
    Expired {
        /// notAfter, seconds since the Unix epoch.
        not_after: u64,
        /// The verification time.
        now: u64,
    },
    /// A certificate of the chain is not valid yet.
    #[error("certificate not valid before {} (now {})", utc(*.not_before), utc(*.now))]
    NotYetValid {
        /// notBefore, seconds since the Unix epoch.
        not_before: u64,
        /// The verification time.
        now: u64,
    },
    /// The certificate does not name the identity the peer claims in its ID payload.
    #[error("certificate does not match the peer's identity {0}")]
    IdentityMismatch(String),
    /// A CRL lists the certificate.
    #[error("certificate is revoked")]
    Revoked,
    /// CRLs are configured but none is from the certificate's issuer.
    #[error("certificate revocation status unknown: no CRL from its issuer")]
    RevocationUnknown,
    /// The certificate's key is neither Ed25519 nor ECDSA P-256.
    #[error("certificate key is not supported (only Ed25519 and ECDSA P-256)")]
    UnsupportedKey,
    /// A signature in the chain uses an algorithm other than Ed25519 / ECDSA P-256.
    #[error("certificate signature algorithm is not supported (only Ed25519 and ECDSA P-256)")]
    UnsupportedSignatureAlgorithm,
    /// The extended key usage extension excludes IKE.
    #[error("certificate extended key usage does not allow IKE")]
    WrongUsage,
    /// The extended key usage does not allow the role the peer has here ([`PeerUsage`]).
    #[error("{0}")]
    WrongRole(&'static str),
    /// The certificate could not be parsed.
    #[error("malformed certificate: {0}")]
    Malformed(String),
    /// Any other rejection by the path validator.
    #[error("certificate rejected: {0}")]
    Other(String),
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil-from-days (proleptic Gregorian), days counted from 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

// The unit variants are deprecated in favour of the *Context ones but may still be returned.
#[allow(deprecated)]
fn map_webpki(err: webpki::Error) -> CertError {
    use webpki::Error as W;
    match err {
        W::UnknownIssuer => CertError::UnknownIssuer,
        W::InvalidSignatureForPublicKey => CertError::BadChainSignature,
        W::CertExpired { time, not_after } => CertError::Expired {
            not_after: not_after.as_secs(),
            now: time.as_secs(),
        },
        W::CertNotValidYet { time, not_before } => CertError::NotYetValid {
            not_before: not_before.as_secs(),
            now: time.as_secs(),
        },
        W::CertRevoked => CertError::Revoked,
        W::UnknownRevocationStatus => CertError::RevocationUnknown,
        W::UnsupportedSignatureAlgorithm
        | W::UnsupportedSignatureAlgorithmContext(_)
        | W::UnsupportedSignatureAlgorithmForPublicKey
        | W::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            CertError::UnsupportedSignatureAlgorithm
        }
        W::RequiredEkuNotFound | W::RequiredEkuNotFoundContext(_) => CertError::WrongUsage,
        W::BadDer | W::BadDerTime | W::TrailingData(_) => CertError::Malformed(format!("{err:?}")),
        other => CertError::Other(format!("{other:?}")),
    }
}

/// What a peer's certificate must say it is for. Every role needs a certificate that allows
/// IKE: no extended key usage extension (strongSwan's pki default), or one listing id-kp-ipsecIKE
/// (RFC 4945 5.1.3.12), anyExtendedKeyUsage, serverAuth or clientAuth, which stock clients put
/// on VPN certificates. The roles add to that: the CA that signs the server's certificate signs
/// the homes' too, so the server must prove it is the server and a home must not be able to
/// pass the server's own certificate off as a home's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerUsage {
    /// Anything that allows IKE (the default; tests and tools).
    #[default]
    Ike,
    /// The server, as its clients check it: serverAuth required (`hometun pki` issues it to the
    /// server only; homes get clientAuth).
    Server,
    /// A home, as the server checks it: no extension, or one that allows a client (clientAuth,
    /// ipsecIKE, anyExtendedKeyUsage); a server-only certificate (serverAuth without any of
    /// those) is refused.
    Home,
}

impl PeerUsage {
    /// The refusal when the certificate's usages do not fit the role.
    fn refusal(self) -> CertError {
        match self {
            PeerUsage::Ike => CertError::WrongUsage,
            PeerUsage::Server => CertError::WrongRole(
                "certificate is not a server certificate (no serverAuth extended key usage)",
            ),
            PeerUsage::Home => CertError::WrongRole(
                "certificate is a server certificate, not a home's (serverAuth without clientAuth)",
            ),
        }
    }
}

const EKU_IPSEC_IKE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x11];
const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
const EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
const EKU_ANY: &[u8] = &[0x55, 0x1d, 0x25, 0x00];

impl ExtendedKeyUsageValidator for PeerUsage {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let mut listed = Vec::new();
        for id in iter {
            listed.push(id?);
        }
        let has = |oid: &[u8]| listed.iter().any(|id| *id == KeyPurposeId::new(oid));
        let allows_ike = listed.is_empty()
            || [EKU_IPSEC_IKE, EKU_ANY, EKU_SERVER_AUTH, EKU_CLIENT_AUTH]
                .iter()
                .any(|oid| has(oid));
        let fits_role = match self {
            PeerUsage::Ike => true,
            PeerUsage::Server => has(EKU_SERVER_AUTH),
            PeerUsage::Home => {
                listed.is_empty()
                    || [EKU_CLIENT_AUTH, EKU_IPSEC_IKE, EKU_ANY]
                        .iter()
                        .any(|oid| has(oid))
            }
        };
        if allows_ike && fits_role {
            Ok(())
        } else {
            // The *Context variant cannot be built outside webpki.
            #[allow(deprecated)]
            Err(webpki::Error::RequiredEkuNotFound)
        }
    }
}

/// The identity a peer claims in its IDi / IDr payload, as far as it can be checked against a
/// certificate.
///
/// DNS names compare without case (RFC 4343), as certificate name matching does: an ID_FQDN
/// is read in lower case, two FQDNs are equal whatever their case, and Display (the key under
/// which the endpoint knows a peer, e.g. for INITIAL_CONTACT) prints the lower-case form. So
/// `HOME.example` is `home.example`, never a second home beside it.
#[derive(Debug, Clone)]
pub enum PeerIdentity {
    /// ID_IPV4_ADDR (1): must be an iPAddress subjectAltName.
    Ipv4(Ipv4Addr),
    /// ID_FQDN (2): must be a dNSName subjectAltName (compared without case).
    Fqdn(String),
    /// ID_IPV6_ADDR (5): must be an iPAddress subjectAltName.
    Ipv6(Ipv6Addr),
    /// ID_DER_ASN1_DN (9): must equal the certificate's subject (DER comparison).
    DerAsn1Dn(Vec<u8>),
}

impl PartialEq for PeerIdentity {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PeerIdentity::Fqdn(a), PeerIdentity::Fqdn(b)) => a.eq_ignore_ascii_case(b),
            (PeerIdentity::Ipv4(a), PeerIdentity::Ipv4(b)) => a == b,
            (PeerIdentity::Ipv6(a), PeerIdentity::Ipv6(b)) => a == b,
            (PeerIdentity::DerAsn1Dn(a), PeerIdentity::DerAsn1Dn(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for PeerIdentity {}

impl PeerIdentity {
    /// An ID_FQDN identity, in lower case.
    pub fn fqdn(name: &str) -> Self {
        PeerIdentity::Fqdn(name.to_ascii_lowercase())
    }

    /// ID type ID_IPV4_ADDR.
    pub const ID_IPV4_ADDR: u8 = 1;
    /// ID type ID_FQDN.
    pub const ID_FQDN: u8 = 2;
    /// ID type ID_IPV6_ADDR.
    pub const ID_IPV6_ADDR: u8 = 5;
    /// ID type ID_DER_ASN1_DN.
    pub const ID_DER_ASN1_DN: u8 = 9;

    /// Reads an identity from an ID payload's type and identification data.
    pub fn from_id(id_type: u8, data: &[u8]) -> Result<Self, CryptoError> {
        match id_type {
            Self::ID_IPV4_ADDR => <[u8; 4]>::try_from(data)
                .map(|a| PeerIdentity::Ipv4(Ipv4Addr::from(a)))
                .map_err(|_| CryptoError::MalformedId("ID_IPV4_ADDR is not 4 bytes")),
            Self::ID_IPV6_ADDR => <[u8; 16]>::try_from(data)
                .map(|a| PeerIdentity::Ipv6(Ipv6Addr::from(a)))
                .map_err(|_| CryptoError::MalformedId("ID_IPV6_ADDR is not 16 bytes")),
            Self::ID_FQDN => {
                if data.is_empty() || !data.is_ascii() {
                    return Err(CryptoError::MalformedId("ID_FQDN is empty or not ASCII"));
                }
                let name = String::from_utf8(data.to_vec())
                    .map_err(|_| CryptoError::MalformedId("ID_FQDN is not ASCII"))?;
                Ok(PeerIdentity::fqdn(&name))
            }
            Self::ID_DER_ASN1_DN => {
                if der_sequence_contents(data).is_none() {
                    return Err(CryptoError::MalformedId(
                        "ID_DER_ASN1_DN is not a DER SEQUENCE",
                    ));
                }
                Ok(PeerIdentity::DerAsn1Dn(data.to_vec()))
            }
            other => Err(CryptoError::UnsupportedIdType(other)),
        }
    }

    /// Reads an identity from an ID payload body (IDx' of RFC 7296 2.15: ID type, 3 reserved
    /// bytes, identification data).
    pub fn from_id_body(body: &[u8]) -> Result<Self, CryptoError> {
        match body {
            [id_type, _, _, _, data @ ..] => Self::from_id(*id_type, data),
            _ => Err(CryptoError::MalformedId(
                "ID payload body shorter than 4 bytes",
            )),
        }
    }

    /// Reads an identity from a parsed IDi / IDr payload.
    pub fn from_identification(id: &crate::wire::Identification) -> Result<Self, CryptoError> {
        Self::from_id(id.id_type.0, &id.data)
    }

    /// The IDi / IDr payload that states this identity.
    pub fn to_identification(&self) -> crate::wire::Identification {
        crate::wire::Identification::new(crate::wire::IdType(self.id_type()), self.id_data())
    }

    /// The ID type.
    pub fn id_type(&self) -> u8 {
        match self {
            PeerIdentity::Ipv4(_) => Self::ID_IPV4_ADDR,
            PeerIdentity::Fqdn(_) => Self::ID_FQDN,
            PeerIdentity::Ipv6(_) => Self::ID_IPV6_ADDR,
            PeerIdentity::DerAsn1Dn(_) => Self::ID_DER_ASN1_DN,
        }
    }

    /// The identification data.
    pub fn id_data(&self) -> Vec<u8> {
        match self {
            PeerIdentity::Ipv4(a) => a.octets().to_vec(),
            PeerIdentity::Fqdn(n) => n.as_bytes().to_vec(),
            PeerIdentity::Ipv6(a) => a.octets().to_vec(),
            PeerIdentity::DerAsn1Dn(dn) => dn.clone(),
        }
    }

    /// The ID payload body (IDx'): type, three zero bytes, data. Our own IDx' for AUTH.
    pub fn to_id_body(&self) -> Vec<u8> {
        let mut body = vec![self.id_type(), 0, 0, 0];
        body.extend_from_slice(&self.id_data());
        body
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerIdentity::Ipv4(a) => write!(f, "{a}"),
            PeerIdentity::Fqdn(n) => f.write_str(&n.to_ascii_lowercase()),
            PeerIdentity::Ipv6(a) => write!(f, "{a}"),
            PeerIdentity::DerAsn1Dn(dn) => {
                f.write_str("DN ")?;
                for b in dn {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
    }
}

/// The contents of a DER SEQUENCE that spans all of `der`, or `None`.
fn der_sequence_contents(der: &[u8]) -> Option<&[u8]> {
    let (&tag, rest) = der.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    (rest.len() == len).then_some(rest)
}

/// A peer certificate that passed [`CertificateVerifier::verify`].
#[derive(Debug, Clone)]
pub struct VerifiedPeer {
    der: Vec<u8>,
    public_key: PeerPublicKey,
}

impl VerifiedPeer {
    /// The key to check the peer's AUTH payload with.
    pub fn public_key(&self) -> &PeerPublicKey {
        &self.public_key
    }

    /// The end-entity certificate's DER, to read further extensions (e.g. RFC 3779 prefixes).
    pub fn certificate_der(&self) -> &[u8] {
        &self.der
    }
}

/// Verifies peer certificates against the configured CA certificates and CRLs, for the role
/// the peer has ([`PeerUsage`]).
pub struct CertificateVerifier {
    chain: ChainVerifier,
    usage: PeerUsage,
}

impl fmt::Debug for CertificateVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateVerifier")
            .field("chain", &self.chain)
            .field("usage", &self.usage)
            .finish()
    }
}

impl CertificateVerifier {
    /// Trusts the given CA certificates (DER).
    pub fn from_ca_der(ca_certs: &[&[u8]]) -> Result<Self, CryptoError> {
        if ca_certs.is_empty() {
            return Err(CryptoError::Credentials(
                "no CA certificate configured".into(),
            ));
        }
        let ders: Vec<CertificateDer<'_>> = ca_certs
            .iter()
            .map(|der| CertificateDer::from(*der))
            .collect();
        let chain = ChainVerifier::new(&ders)
            .map_err(|e| CryptoError::Credentials(format!("bad CA certificate: {e:?}")))?;
        Ok(CertificateVerifier {
            chain,
            usage: PeerUsage::default(),
        })
    }

    /// Requires of every peer certificate what `usage` says (the server's clients require
    /// [`PeerUsage::Server`], the server requires [`PeerUsage::Home`] of its homes).
    pub fn require(mut self, usage: PeerUsage) -> Self {
        self.usage = usage;
        self
    }

    /// What peer certificates must allow.
    pub fn usage(&self) -> PeerUsage {
        self.usage
    }

    /// Trusts every certificate in a PEM file.
    pub fn from_ca_pem(pem: &[u8]) -> Result<Self, CryptoError> {
        let certs = certificates_from_pem(pem)?;
        let refs: Vec<&[u8]> = certs.iter().map(Vec::as_slice).collect();
        Self::from_ca_der(&refs)
    }

    /// Adds CRLs (one DER CRL, or PEM with any number). Once any CRL is configured, an
    /// end-entity certificate is accepted only if a CRL from its issuer is present and does
    /// not list it.
    pub fn add_crls(&mut self, der_or_pem: &[u8]) -> Result<(), CryptoError> {
        for der in crls_from_pem_or_der(der_or_pem)? {
            self.chain
                .add_crl(&der)
                .map_err(|e| CryptoError::Credentials(format!("bad CRL: {e:?}")))?;
        }
        Ok(())
    }

    /// SHA-1 hashes of the configured CAs' SubjectPublicKeyInfo (DER), the "Certification
    /// Authority" data of an X.509 CERTREQ (RFC 7296 3.7), in configuration order.
    pub fn ca_key_hashes(&self) -> Vec<[u8; 20]> {
        use sha1::{Digest, Sha1};
        self.chain
            .anchors()
            .iter()
            .map(|anchor| Sha1::digest(webpki::spki_for_anchor(anchor).as_ref()).into())
            .collect()
    }

    /// Checks the peer's end-entity certificate (CERT payload data, DER) with any intermediate
    /// certificates it sent, against the CA at time `now`, the CRLs, and the identity from its
    /// ID payload. Returns the certificate's public key for the AUTH check.
    pub fn verify(
        &self,
        end_entity: &[u8],
        intermediates: &[&[u8]],
        identity: &PeerIdentity,
        now: SystemTime,
    ) -> Result<VerifiedPeer, CertError> {
        let ee_der = CertificateDer::from(end_entity);
        let ee = EndEntityCert::try_from(&ee_der).map_err(map_webpki)?;
        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|der| CertificateDer::from(*der))
            .collect();
        // A clock before 1970 is a broken clock; 0 makes every certificate "not yet valid".
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let time = UnixTime::since_unix_epoch(since_epoch);
        self.chain
            .verify(&ee, &intermediates, time, self.usage)
            .map_err(|e| match map_webpki(e) {
                CertError::WrongUsage => self.usage.refusal(),
                other => other,
            })?;
        check_identity(&ee, identity)?;
        let public_key = PeerPublicKey::from_spki_der(ee.subject_public_key_info().as_ref())
            .ok_or(CertError::UnsupportedKey)?;
        Ok(VerifiedPeer {
            der: end_entity.to_vec(),
            public_key,
        })
    }
}

fn check_identity(ee: &EndEntityCert<'_>, identity: &PeerIdentity) -> Result<(), CertError> {
    let mismatch = || CertError::IdentityMismatch(identity.to_string());
    match identity {
        PeerIdentity::Fqdn(name) => {
            // A DNS name only: ServerName::try_from would also take "192.0.2.1" as an IP.
            let dns = DnsName::try_from(name.as_str()).map_err(|_| mismatch())?;
            ee.verify_is_valid_for_subject_name(&ServerName::DnsName(dns))
                .map_err(|_| mismatch())
        }
        PeerIdentity::Ipv4(a) => ee
            .verify_is_valid_for_subject_name(&ServerName::IpAddress(IpAddr::V4(*a).into()))
            .map_err(|_| mismatch()),
        PeerIdentity::Ipv6(a) => ee
            .verify_is_valid_for_subject_name(&ServerName::IpAddress(IpAddr::V6(*a).into()))
            .map_err(|_| mismatch()),
        PeerIdentity::DerAsn1Dn(dn) => {
            // webpki gives the subject without its outer SEQUENCE header.
            match der_sequence_contents(dn) {
                Some(contents) if contents == ee.subject() => Ok(()),
                _ => Err(mismatch()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_798_107_454), "2026-12-24 10:17:34 UTC");
    }

    #[test]
    fn id_bodies_round_trip() {
        let ids = [
            PeerIdentity::Ipv4(Ipv4Addr::new(192, 0, 2, 1)),
            PeerIdentity::Fqdn("vps.example".into()),
            PeerIdentity::Ipv6("2001:db8::1".parse().unwrap()),
            PeerIdentity::DerAsn1Dn(vec![0x30, 0x03, 0x31, 0x01, 0x00]),
        ];
        for id in ids {
            assert_eq!(PeerIdentity::from_id_body(&id.to_id_body()).unwrap(), id);
        }
        assert!(matches!(
            PeerIdentity::from_id_body(&[1, 0, 0, 0, 192, 0, 2]),
            Err(CryptoError::MalformedId(_))
        ));
        assert!(matches!(
            PeerIdentity::from_id_body(&[3, 0, 0, 0, b'a']),
            Err(CryptoError::UnsupportedIdType(3))
        ));
        assert!(matches!(
            PeerIdentity::from_id_body(&[9, 0, 0, 0, 0x30, 0x05, 0x00]),
            Err(CryptoError::MalformedId(_))
        ));
        assert!(PeerIdentity::from_id_body(&[2, 0, 0]).is_err());
    }

    #[test]
    fn fqdn_identities_compare_without_case() {
        let upper = PeerIdentity::from_id(PeerIdentity::ID_FQDN, b"HOME.example").unwrap();
        let lower = PeerIdentity::from_id(PeerIdentity::ID_FQDN, b"home.example").unwrap();
        assert_eq!(upper, lower);
        // Also when built from a name as typed: equality and the key the endpoint files
        // peers under (Display) are the lower-case form.
        assert_eq!(PeerIdentity::Fqdn("Home.Example".into()), lower);
        assert_eq!(upper.to_string(), "home.example");
        assert_eq!(
            PeerIdentity::Fqdn("HOME.EXAMPLE".into()).to_string(),
            "home.example"
        );
        assert_eq!(upper.id_data(), b"home.example");
        assert_ne!(upper, PeerIdentity::fqdn("other.example"));
        assert_ne!(
            PeerIdentity::fqdn("192.0.2.1"),
            PeerIdentity::Ipv4(Ipv4Addr::new(192, 0, 2, 1))
        );
    }

    #[test]
    fn der_sequence_long_form_length() {
        let mut der = vec![0x30, 0x81, 0x80];
        der.extend(std::iter::repeat_n(0u8, 0x80));
        assert_eq!(der_sequence_contents(&der).map(<[u8]>::len), Some(0x80));
        der.push(0);
        assert_eq!(der_sequence_contents(&der), None);
    }
}
