//! Certificate signing requests: made on the client (the key never leaves), checked on the
//! server (parsed and its self-signature verified by rcgen/x509-parser).

use rcgen::{CertificateParams, CertificateSigningRequestParams, KeyPair, SanType};
use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject;

use crate::PkiError;
use crate::ca::pem_encode;
use crate::names::normalize_dns_name;

/// A CSR (PEM) for `name` in lower case (SAN dNSName and CN), signed by `key`.
pub fn make_csr(key: &KeyPair, name: &str) -> Result<String, PkiError> {
    let name = normalize_dns_name(name)?;
    let name = name.as_str();
    let mut params = CertificateParams::new(vec![name.to_string()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let csr = params.serialize_request(key)?;
    Ok(pem_encode("CERTIFICATE REQUEST", csr.der()))
}

/// A checked CSR: its signature verified, its one DNS name extracted.
#[derive(Debug, Clone)]
pub struct CheckedCsr {
    /// The client's name (the CSR's only dNSName), in lower case.
    pub name: String,
    /// The public key to certify.
    pub public_key: rcgen::PublicKey,
}

/// Parses a CSR given as PEM or DER, verifies its self-signature and extracts the name.
pub fn check_csr(bytes: &[u8]) -> Result<CheckedCsr, PkiError> {
    let der = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        CertificateSigningRequestDer::from_pem_slice(bytes)
            .map_err(|e| PkiError::Csr(format!("not a PEM certificate request: {e}")))?
    } else {
        CertificateSigningRequestDer::from(bytes.to_vec())
    };
    check_csr_der(&der)
}

#[cfg(test)]
thread_local! {
    /// How many CSRs this thread checked (tests of the enrollment listener's order of checks).
    pub(crate) static CSR_CHECKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// [`check_csr`] on DER.
pub fn check_csr_der(der: &CertificateSigningRequestDer<'_>) -> Result<CheckedCsr, PkiError> {
    #[cfg(test)]
    CSR_CHECKS.with(|n| n.set(n.get() + 1));
    // from_der verifies the request's signature with its own key (proof of possession).
    let parsed = CertificateSigningRequestParams::from_der(der).map_err(|e| match e {
        rcgen::Error::InvalidCertificationRequestSignature => {
            PkiError::Csr("its signature does not verify".into())
        }
        other => PkiError::Csr(other.to_string()),
    })?;
    let names: Vec<String> = parsed
        .params
        .subject_alt_names
        .iter()
        .filter_map(|san| match san {
            SanType::DnsName(n) => Some(n.as_str().to_string()),
            _ => None,
        })
        .collect();
    let name = match names.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(PkiError::Csr(
                "it has no subjectAltName dNSName (the client's name)".into(),
            ));
        }
        _ => {
            return Err(PkiError::Csr(format!(
                "it has {} dNSNames; exactly one is the client's name",
                names.len()
            )));
        }
    };
    let name = normalize_dns_name(&name).map_err(|e| PkiError::Csr(e.to_string()))?;
    let alg = parsed.public_key.algorithm();
    if alg != &rcgen::PKCS_ED25519 && alg != &rcgen::PKCS_ECDSA_P256_SHA256 {
        return Err(PkiError::Csr(
            "its key is neither Ed25519 nor ECDSA P-256".into(),
        ));
    }
    Ok(CheckedCsr {
        name,
        public_key: parsed.public_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::KeyType;

    #[test]
    fn csr_round_trips_and_names_the_client() {
        for kt in [KeyType::Ed25519, KeyType::P256] {
            let key = kt.generate().unwrap();
            let pem = make_csr(&key, "home.example").unwrap();
            assert!(pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
            let checked = check_csr(pem.as_bytes()).unwrap();
            assert_eq!(checked.name, "home.example");
            assert_eq!(
                rcgen::PublicKeyData::der_bytes(&checked.public_key),
                key.public_key_raw()
            );
        }
    }

    #[test]
    fn tampered_csr_is_refused() {
        let key = KeyType::Ed25519.generate().unwrap();
        let pem = make_csr(&key, "home.example").unwrap();
        let mut der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec();
        // Flip a byte inside the name: the signature no longer covers what is there.
        let pos = der
            .windows(4)
            .position(|w| w == b"home")
            .expect("name in CSR");
        der[pos] = b'H';
        let e = check_csr(&der).unwrap_err().to_string();
        assert!(e.contains("signature does not verify"), "{e}");
        assert!(check_csr(b"garbage").is_err());
        assert!(check_csr(&[0x30, 0x82, 0xff]).is_err());
    }

    #[test]
    fn bad_names_are_refused() {
        let key = KeyType::Ed25519.generate().unwrap();
        assert!(make_csr(&key, "not a name").is_err());
        assert!(make_csr(&key, "").is_err());
    }
}
