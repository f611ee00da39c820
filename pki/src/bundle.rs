//! The bundle: everything a home needs from the server, in one TOML file.
//!
//! ```toml
//! # hometun bundle: on the home, `hometun pki import --dir DIR THIS_FILE`
//! format = "hometun-bundle-1"
//! name = "home.example"              # the client's name (IKE identity, certificate dNSName)
//! prefix = "2001:db8:100:1::/64"     # its prefix (the certificate's RFC 3779 block)
//! server = "192.0.2.1"               # the server's IPv4 address
//! server_name = "vps.example"        # the server's IKE identity
//! server_port = 500                  # the server's IKE port
//! certificate = """                  # the client certificate (PEM)
//! -----BEGIN CERTIFICATE-----
//! ...
//! """
//! ca_certificate = """               # the CA certificate (PEM)
//! ...
//! """
//! ```
//!
//! [`Bundle::parse`] takes untrusted bytes: size-limited, unknown keys refused, and the fields
//! checked against the certificate (the prefix must be the certificate's, the name one of its
//! dNSNames, the certificate issued by the CA's subject). [`Bundle::verify`] then checks the
//! chain cryptographically.

use std::net::Ipv4Addr;

use ipnet::Ipv6Net;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::files::certificates_from_pem;
use crate::names::normalize_dns_name;
use hometun_certs::addrblock;
use hometun_certs::verify::{PeerCertificate, TrustStore};

/// The `format` value of this version.
pub const BUNDLE_FORMAT: &str = "hometun-bundle-1";
/// Largest bundle accepted.
pub const MAX_BUNDLE_LEN: usize = 64 * 1024;

/// Why a bundle is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Larger than [`MAX_BUNDLE_LEN`].
    #[error("larger than {MAX_BUNDLE_LEN} bytes")]
    TooLarge,
    /// Not UTF-8 or not TOML of the expected shape.
    #[error("not a hometun bundle: {0}")]
    Syntax(String),
    /// Another format version.
    #[error("format {0:?} is not {BUNDLE_FORMAT:?}")]
    Format(String),
    /// A field is unusable.
    #[error("{field}: {problem}")]
    Field {
        /// The key.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The certificate does not say what the bundle says.
    #[error("certificate does not match the bundle: {0}")]
    Mismatch(String),
    /// The certificate does not verify against the bundle's CA.
    #[error("certificate does not verify against the bundle's CA: {0}")]
    Chain(String),
}

fn field(field: &'static str, problem: impl Into<String>) -> BundleError {
    BundleError::Field {
        field,
        problem: problem.into(),
    }
}

fn default_port() -> u16 {
    500
}

/// A bundle's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// [`BUNDLE_FORMAT`].
    pub format: String,
    /// The client's name.
    pub name: String,
    /// The client's prefix.
    pub prefix: Ipv6Net,
    /// The server's IPv4 address.
    pub server: Ipv4Addr,
    /// The server's IKE identity.
    pub server_name: String,
    /// The server's IKE port.
    #[serde(default = "default_port")]
    pub server_port: u16,
    /// Client certificate, PEM.
    pub certificate: String,
    /// CA certificate, PEM.
    pub ca_certificate: String,
}

impl Bundle {
    /// Parses and checks a bundle from untrusted bytes (see the module docs).
    pub fn parse(bytes: &[u8]) -> Result<Bundle, BundleError> {
        if bytes.len() > MAX_BUNDLE_LEN {
            return Err(BundleError::TooLarge);
        }
        let text =
            std::str::from_utf8(bytes).map_err(|_| BundleError::Syntax("not UTF-8 text".into()))?;
        let mut bundle: Bundle = toml::from_str(text).map_err(|e| {
            BundleError::Syntax(e.message().lines().next().unwrap_or("").to_string())
        })?;
        bundle.check()?;
        // Names in lower case, the one form hometun compares (crate::names).
        bundle.name = bundle.name.to_ascii_lowercase();
        bundle.server_name = bundle.server_name.to_ascii_lowercase();
        Ok(bundle)
    }

    /// Checks the fields against each other and against the certificate (no signature check).
    pub fn check(&self) -> Result<(), BundleError> {
        if self.format != BUNDLE_FORMAT {
            return Err(BundleError::Format(self.format.clone()));
        }
        normalize_dns_name(&self.name).map_err(|e| field("name", e.to_string()))?;
        normalize_dns_name(&self.server_name).map_err(|e| field("server_name", e.to_string()))?;
        if self.prefix != self.prefix.trunc() {
            return Err(field("prefix", "host bits set"));
        }
        let cert = self.certificate_der()?;
        let ca = self.ca_der()?;
        let (_, parsed) = X509Certificate::from_der(&cert)
            .map_err(|e| field("certificate", format!("does not parse: {e}")))?;
        let (_, ca_parsed) = X509Certificate::from_der(&ca)
            .map_err(|e| field("ca_certificate", format!("does not parse: {e}")))?;
        let prefixes = addrblock::prefixes_from_parsed(&parsed)
            .map_err(|e| field("certificate", e.to_string()))?;
        if prefixes != [self.prefix] {
            return Err(BundleError::Mismatch(format!(
                "prefix {} but the certificate grants {prefixes:?}",
                self.prefix
            )));
        }
        let names = hometun_certs::verify::describe(&cert)
            .map_err(|e| field("certificate", e.to_string()))?
            .names;
        if !names.iter().any(|n| n.eq_ignore_ascii_case(&self.name)) {
            return Err(BundleError::Mismatch(format!(
                "name {} but the certificate is for {names:?}",
                self.name
            )));
        }
        if parsed.issuer().as_raw() != ca_parsed.subject().as_raw() {
            return Err(BundleError::Mismatch(
                "the certificate was not issued by the bundle's CA".into(),
            ));
        }
        Ok(())
    }

    /// The client certificate (DER).
    pub fn certificate_der(&self) -> Result<CertificateDer<'static>, BundleError> {
        one_certificate(&self.certificate, "certificate")
    }

    /// The CA certificate (DER).
    pub fn ca_der(&self) -> Result<CertificateDer<'static>, BundleError> {
        one_certificate(&self.ca_certificate, "ca_certificate")
    }

    /// Verifies the certificate's chain to the bundle's CA at `now` (rustls-webpki).
    pub fn verify(&self, now: UnixTime) -> Result<PeerCertificate, BundleError> {
        let store =
            TrustStore::new(self.ca_der()?, &[]).map_err(|e| BundleError::Chain(e.to_string()))?;
        store
            .verify_client(&self.certificate_der()?, &[], now)
            .map_err(|e| BundleError::Chain(e.to_string()))
    }

    /// The bundle as TOML text, with a header comment saying what to do with it.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("bundle fields are strings and addresses");
        format!("# hometun bundle: on the home, `hometun pki import --dir DIR THIS_FILE`\n{body}")
    }
}

fn one_certificate(pem: &str, name: &'static str) -> Result<CertificateDer<'static>, BundleError> {
    let certs = certificates_from_pem(pem.as_bytes()).map_err(|e| field(name, e.to_string()))?;
    match <[_; 1]>::try_from(certs) {
        Ok([cert]) => Ok(cert),
        Err(certs) => Err(field(
            name,
            format!("holds {} certificates, not one", certs.len()),
        )),
    }
}
