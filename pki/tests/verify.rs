//! The chain checks of hometun-certs with certificates a real hometun CA issues.

#![allow(clippy::unwrap_used)]

use hometun_certs::verify::*;
use hometun_pki::ca::{Ca, KeyType, Revoked};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateRevocationListDer, UnixTime};
use time::{Duration, OffsetDateTime};
use webpki::{EndEntityCert, KeyUsage};

fn at(t: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(t.unix_timestamp()).unwrap(),
    ))
}

fn crl_der(pem: &str) -> Vec<u8> {
    CertificateRevocationListDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// The revocation policy every hometun verifier shares: no CRL, no check; a CRL from
/// another issuer only is "unknown" and refused; a CRL past its nextUpdate still revokes
/// what it lists and still clears what it does not.
#[test]
fn chain_verifier_crl_policy() {
    let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    let (ca, _) = Ca::create("vps.example", KeyType::Ed25519, t0).unwrap();
    let (other, _) = Ca::create("other.example", KeyType::Ed25519, t0).unwrap();
    let key = KeyType::Ed25519.generate().unwrap();
    let serial = [0x11, 0x22, 0x33];
    let prefix = "2001:db8:100:1::/64".parse().unwrap();
    let cert = ca
        .issue_client(&key, "home.example", prefix, &serial, t0, 90)
        .unwrap();
    let ee = EndEntityCert::try_from(&cert).unwrap();
    let later = at(t0 + Duration::days(30));
    let verifier = |crls: &[String]| {
        let mut v = ChainVerifier::new(std::slice::from_ref(ca.cert_der())).unwrap();
        for crl in crls {
            v.add_crl(&crl_der(crl)).unwrap();
        }
        v
    };

    assert_eq!(
        verifier(&[]).verify(&ee, &[], later, KeyUsage::client_auth()),
        Ok(())
    );
    let foreign = other.crl(&[], 1, t0, 365).unwrap();
    assert_eq!(
        verifier(&[foreign]).verify(&ee, &[], later, KeyUsage::client_auth()),
        Err(webpki::Error::UnknownRevocationStatus)
    );
    // Both CRLs were valid for one day only, 29 days before `later`.
    let listed = Revoked {
        serial: serial.to_vec(),
        at: t0,
        key_compromise: false,
    };
    let stale_listing = ca.crl(&[listed], 2, t0, 1).unwrap();
    assert_eq!(
        verifier(&[stale_listing]).verify(&ee, &[], later, KeyUsage::client_auth()),
        Err(webpki::Error::CertRevoked)
    );
    let stale_clear = ca.crl(&[], 3, t0, 1).unwrap();
    assert_eq!(
        verifier(&[stale_clear]).verify(&ee, &[], later, KeyUsage::client_auth()),
        Ok(())
    );
    // A home's certificate never passes as the server's.
    assert!(matches!(
        verifier(&[]).verify(&ee, &[], later, KeyUsage::required(EKU_SERVER_AUTH)),
        Err(webpki::Error::RequiredEkuNotFoundContext(_))
    ));
}

/// What hometun-certs remembers of a certificate's bytes (its prefixes, its serial) belongs to
/// those bytes alone: two homes of one key get their own prefix and serial, a second read gives
/// what the first did, and a damaged copy of a certificate already read is still refused.
#[test]
fn what_is_remembered_of_a_certificate_belongs_to_its_bytes() {
    use hometun_certs::addrblock::prefixes_from_certificate;
    let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    let (ca, _) = Ca::create("vps.example", KeyType::Ed25519, t0).unwrap();
    let key = KeyType::Ed25519.generate().unwrap();
    let homes = [
        ("2001:db8:100:1::/64", [0x01, 0x01]),
        ("2001:db8:100:2::/64", [0x02, 0x02]),
    ];
    let certs: Vec<_> = homes
        .iter()
        .map(|(prefix, serial)| {
            ca.issue_client(
                &key,
                "home.example",
                prefix.parse().unwrap(),
                serial,
                t0,
                90,
            )
            .unwrap()
        })
        .collect();
    for _ in 0..2 {
        for (cert, (prefix, serial)) in certs.iter().zip(&homes) {
            let prefix: ipnet::Ipv6Net = prefix.parse().unwrap();
            assert_eq!(prefixes_from_certificate(cert).unwrap(), [prefix]);
            assert_eq!(hometun_certs::verify::serial(cert).unwrap(), serial);
            assert_eq!(describe(cert).unwrap().serial, serial);
        }
    }
    let damaged = &certs[0][..certs[0].len() - 1];
    assert!(prefixes_from_certificate(damaged).is_err());
    assert!(hometun_certs::verify::serial(damaged).is_err());
}
