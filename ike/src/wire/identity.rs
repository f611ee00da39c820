//! The payloads that say who a peer is and prove it: IDi/IDr (RFC 7296 3.5), CERT (3.6),
//! CERTREQ (3.7) and AUTH (3.8, RFC 7427).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::codec::{Reader, Writer, impl_emit};
use super::{AuthMethod, CertEncoding, IdType, WireError};

/// Length of one CA key hash in an X.509 CERTREQ (SHA-1).
pub const CA_HASH_LEN: usize = 20;

/// IDi or IDr payload: an identity of the given type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identification {
    /// How `data` is to be read.
    pub id_type: IdType,
    /// The identity: an address, a name, a DER-encoded distinguished name...
    pub data: Vec<u8>,
}

impl Identification {
    /// An identity.
    pub fn new(id_type: IdType, data: Vec<u8>) -> Self {
        Self { id_type, data }
    }

    /// An ID_FQDN identity.
    pub fn fqdn(name: &str) -> Self {
        Self::new(IdType::ID_FQDN, name.as_bytes().to_vec())
    }

    /// An ID_IPV4_ADDR identity.
    pub fn ipv4(addr: Ipv4Addr) -> Self {
        Self::new(IdType::ID_IPV4_ADDR, addr.octets().to_vec())
    }

    /// An ID_IPV6_ADDR identity.
    pub fn ipv6(addr: Ipv6Addr) -> Self {
        Self::new(IdType::ID_IPV6_ADDR, addr.octets().to_vec())
    }

    /// An ID_DER_ASN1_DN identity from a DER-encoded Name (a certificate's subject).
    pub fn der_dn(der: Vec<u8>) -> Self {
        Self::new(IdType::ID_DER_ASN1_DN, der)
    }

    /// The payload body (ID type, three reserved octets, data): IDi' / IDr', the bytes the
    /// AUTH octets take the prf of (RFC 7296 2.15).
    pub fn body(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.buffer_len());
        body.push(self.id_type.0);
        body.extend_from_slice(&[0; 3]);
        body.extend_from_slice(&self.data);
        body
    }

    /// Parses an IDi/IDr payload body.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "ID payload");
        let id_type = IdType(r.u8()?);
        r.skip(3)?;
        Ok(Self {
            id_type,
            data: r.rest().to_vec(),
        })
    }

    /// Length of the emitted body.
    pub fn buffer_len(&self) -> usize {
        4 + self.data.len()
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u8(self.id_type.0)?;
        w.zeros(3)?;
        w.bytes(&self.data)
    }
}
impl_emit!(Identification);

/// CERT payload: one certificate (or CRL...) in the given encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Certificate {
    /// Encoding of `data`; X509_SIGNATURE for a DER X.509 certificate.
    pub encoding: CertEncoding,
    /// The certificate.
    pub data: Vec<u8>,
}

impl Certificate {
    /// A CERT payload.
    pub fn new(encoding: CertEncoding, data: Vec<u8>) -> Self {
        Self { encoding, data }
    }

    /// A CERT payload carrying a DER X.509 certificate.
    pub fn x509(der: Vec<u8>) -> Self {
        Self::new(CertEncoding::X509_SIGNATURE, der)
    }

    /// Parses a CERT payload body.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "CERT payload");
        let encoding = CertEncoding(r.u8()?);
        Ok(Self {
            encoding,
            data: r.rest().to_vec(),
        })
    }

    /// Length of the emitted body.
    pub fn buffer_len(&self) -> usize {
        1 + self.data.len()
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u8(self.encoding.0)?;
        w.bytes(&self.data)
    }
}
impl_emit!(Certificate);

/// CERTREQ payload: the certificate authorities the sender trusts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertificateRequest {
    /// Encoding asked for; X509_SIGNATURE for X.509.
    pub encoding: CertEncoding,
    /// For X.509: concatenated SHA-1 hashes of the CAs' SubjectPublicKeyInfo (may be empty).
    pub data: Vec<u8>,
}

impl CertificateRequest {
    /// A CERTREQ payload.
    pub fn new(encoding: CertEncoding, data: Vec<u8>) -> Self {
        Self { encoding, data }
    }

    /// An X.509 CERTREQ listing the given CA key hashes.
    pub fn x509(authorities: &[[u8; CA_HASH_LEN]]) -> Self {
        Self::new(CertEncoding::X509_SIGNATURE, authorities.concat())
    }

    /// The CA key hashes of an X.509 CERTREQ (a trailing partial hash is left out).
    pub fn authorities(&self) -> impl Iterator<Item = &[u8]> {
        self.data.chunks_exact(CA_HASH_LEN)
    }

    /// Parses a CERTREQ payload body.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "CERTREQ payload");
        let encoding = CertEncoding(r.u8()?);
        Ok(Self {
            encoding,
            data: r.rest().to_vec(),
        })
    }

    /// Length of the emitted body.
    pub fn buffer_len(&self) -> usize {
        1 + self.data.len()
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u8(self.encoding.0)?;
        w.bytes(&self.data)
    }
}
impl_emit!(CertificateRequest);

/// AUTH payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authentication {
    /// How `data` proves the identity; DIGITAL_SIGNATURE in the hometun profile.
    pub method: AuthMethod,
    /// The authentication data; see [`Authentication::digital_signature`] for method 14.
    pub data: Vec<u8>,
}

/// The data of a DIGITAL_SIGNATURE (14) AUTH payload (RFC 7427 3), borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigitalSignature<'a> {
    /// The DER-encoded AlgorithmIdentifier of the signature algorithm.
    pub algorithm: &'a [u8],
    /// The signature.
    pub signature: &'a [u8],
}

impl Authentication {
    /// An AUTH payload.
    pub fn new(method: AuthMethod, data: Vec<u8>) -> Self {
        Self { method, data }
    }

    /// A DIGITAL_SIGNATURE AUTH payload: the AlgorithmIdentifier's length (one octet), the
    /// AlgorithmIdentifier, the signature. Fails if the AlgorithmIdentifier exceeds 255 octets.
    pub fn new_digital_signature(algorithm: &[u8], signature: &[u8]) -> Result<Self, WireError> {
        let len = u8::try_from(algorithm.len())
            .map_err(|_| WireError::TooLong("signature AlgorithmIdentifier"))?;
        let mut data = Vec::with_capacity(1 + algorithm.len() + signature.len());
        data.push(len);
        data.extend_from_slice(algorithm);
        data.extend_from_slice(signature);
        Ok(Self::new(AuthMethod::DIGITAL_SIGNATURE, data))
    }

    /// Splits the data of a DIGITAL_SIGNATURE AUTH payload into AlgorithmIdentifier and
    /// signature. Fails for another method or if the length octet overruns the data.
    pub fn digital_signature(&self) -> Result<DigitalSignature<'_>, WireError> {
        if self.method != AuthMethod::DIGITAL_SIGNATURE {
            return Err(WireError::InvalidValue {
                field: "AUTH method for a digital signature",
                value: u64::from(self.method.0),
            });
        }
        let mut r = Reader::new(&self.data, "RFC 7427 signature data");
        let len = usize::from(r.u8()?);
        let algorithm = r.take(len)?;
        Ok(DigitalSignature {
            algorithm,
            signature: r.rest(),
        })
    }

    /// Parses an AUTH payload body.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "AUTH payload");
        let method = AuthMethod(r.u8()?);
        r.skip(3)?;
        Ok(Self {
            method,
            data: r.rest().to_vec(),
        })
    }

    /// Length of the emitted body.
    pub fn buffer_len(&self) -> usize {
        4 + self.data.len()
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u8(self.method.0)?;
        w.zeros(3)?;
        w.bytes(&self.data)
    }
}
impl_emit!(Authentication);
