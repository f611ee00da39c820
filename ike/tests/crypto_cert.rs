//! Peer certificate checks: the strongSwan vectors' certificates against their CA at, before and
//! after their validity; certificates from other CAs (made here with rcgen, Ed25519 and P-256);
//! identity checks; CRLs; extended key usage; key files.

#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hometun_ike::crypto::auth::{self, SignatureScheme};
use hometun_ike::crypto::credentials::certificates_from_pem;
use hometun_ike::crypto::{
    CertError, CertificateVerifier, CryptoError, PeerIdentity, PeerPublicKey, PrivateKey,
};
use hometun_ike::wire::NotifyType;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData,
    RevocationReason, RevokedCertParams, SanType, SerialNumber, SignatureAlgorithm, date_time_ymd,
};

use hometun_lab::trace::vector_file;

fn at(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix as u64)
}

fn fqdn(name: &str) -> PeerIdentity {
    PeerIdentity::Fqdn(name.into())
}

/// (notBefore, notAfter) of a DER certificate, in Unix seconds.
fn validity(der: &[u8]) -> (i64, i64) {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    )
}

struct Vectors {
    verifier: CertificateVerifier,
    home: Vec<u8>,
    vps: Vec<u8>,
    /// Latest notBefore and earliest notAfter of CA and both end entities.
    window: (i64, i64),
}

fn vectors() -> Vectors {
    let ca = certificates_from_pem(&vector_file("ca.pem"))
        .unwrap()
        .remove(0);
    let home = certificates_from_pem(&vector_file("initiator-cert.pem"))
        .unwrap()
        .remove(0);
    let vps = certificates_from_pem(&vector_file("responder-cert.pem"))
        .unwrap()
        .remove(0);
    let window = [&ca, &home, &vps]
        .iter()
        .map(|d| validity(d))
        .fold((i64::MIN, i64::MAX), |(nb, na), (b, a)| {
            (nb.max(b), na.min(a))
        });
    assert!(window.0 < window.1);
    Vectors {
        verifier: CertificateVerifier::from_ca_pem(&vector_file("ca.pem")).unwrap(),
        home,
        vps,
        window,
    }
}

#[test]
fn strongswan_certificates_verify_inside_their_validity_only() {
    let v = vectors();
    let (not_before, not_after) = v.window;
    let inside = at((not_before + not_after) / 2);
    let home = v
        .verifier
        .verify(&v.home, &[], &fqdn("home.example"), inside)
        .unwrap();
    let vps = v
        .verifier
        .verify(&v.vps, &[], &fqdn("vps.example"), inside)
        .unwrap();
    assert!(matches!(home.public_key(), PeerPublicKey::Ed25519(_)));
    assert_ne!(home.public_key(), vps.public_key());
    // First and last second of validity are inside too.
    assert!(
        v.verifier
            .verify(&v.home, &[], &fqdn("home.example"), at(not_before))
            .is_ok()
    );
    assert!(
        v.verifier
            .verify(&v.home, &[], &fqdn("home.example"), at(not_after))
            .is_ok()
    );

    let before = v
        .verifier
        .verify(&v.home, &[], &fqdn("home.example"), at(not_before - 1))
        .unwrap_err();
    assert!(matches!(before, CertError::NotYetValid { .. }), "{before}");
    let after = v
        .verifier
        .verify(&v.vps, &[], &fqdn("vps.example"), at(not_after + 1))
        .unwrap_err();
    assert!(matches!(after, CertError::Expired { .. }), "{after}");
    println!("{before}\n{after}");
    // One line, with dates a person can read.
    for err in [&before, &after] {
        let line = err.to_string();
        assert!(!line.contains('\n') && line.contains(" UTC"), "{line}");
    }
    // Every certificate error answers AUTHENTICATION_FAILED.
    assert_eq!(
        CryptoError::from(after).notify_type(),
        Some(NotifyType::AUTHENTICATION_FAILED)
    );
}

#[test]
fn identity_must_match_the_certificate() {
    let v = vectors();
    let now = at(v.window.0 + 60);
    for wrong in [
        fqdn("vps.example"),
        fqdn("other.example"),
        PeerIdentity::Ipv4(Ipv4Addr::new(192, 0, 2, 2)),
    ] {
        let err = v.verifier.verify(&v.home, &[], &wrong, now).unwrap_err();
        assert!(matches!(err, CertError::IdentityMismatch(_)), "{err}");
        assert!(err.to_string().contains(&wrong.to_string()));
    }
    // ID_DER_ASN1_DN: the subject DN, compared as DER.
    let (_, cert) = x509_parser::parse_x509_certificate(&v.home).unwrap();
    let subject = cert.tbs_certificate.subject.as_raw().to_vec();
    let issuer = cert.tbs_certificate.issuer.as_raw().to_vec();
    assert!(
        v.verifier
            .verify(&v.home, &[], &PeerIdentity::DerAsn1Dn(subject), now)
            .is_ok()
    );
    let err = v
        .verifier
        .verify(&v.home, &[], &PeerIdentity::DerAsn1Dn(issuer), now)
        .unwrap_err();
    assert!(matches!(err, CertError::IdentityMismatch(_)), "{err}");
}

/// A CA made with rcgen, able to issue end-entity certificates and CRLs.
struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    der: Vec<u8>,
}

fn validity_2026_2031(params: &mut CertificateParams) {
    params.not_before = date_time_ymd(2026, 1, 1);
    params.not_after = date_time_ymd(2031, 1, 1);
}

/// 2028-01-01, inside every rcgen certificate's validity.
fn now_2028() -> SystemTime {
    at(date_time_ymd(2028, 1, 1).unix_timestamp())
}

fn make_ca(alg: &'static SignatureAlgorithm, cn: &str) -> TestCa {
    let key = KeyPair::generate_for(alg).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity_2026_2031(&mut params);
    let der = params.self_signed(&key).unwrap().der().to_vec();
    TestCa { params, key, der }
}

impl TestCa {
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    fn issue(
        &self,
        alg: &'static SignatureAlgorithm,
        sans: Vec<SanType>,
        serial: u64,
        eku: Vec<ExtendedKeyUsagePurpose>,
    ) -> (Vec<u8>, KeyPair) {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.distinguished_name.push(DnType::CommonName, "leaf");
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = eku;
        validity_2026_2031(&mut params);
        let der = params
            .signed_by(&key, &self.issuer())
            .unwrap()
            .der()
            .to_vec();
        (der, key)
    }

    fn intermediate(&self, alg: &'static SignatureAlgorithm, cn: &str) -> TestCa {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity_2026_2031(&mut params);
        let der = params
            .signed_by(&key, &self.issuer())
            .unwrap()
            .der()
            .to_vec();
        TestCa { params, key, der }
    }

    fn crl(&self, revoked: &[u64]) -> rcgen::CertificateRevocationList {
        CertificateRevocationListParams {
            this_update: date_time_ymd(2027, 1, 1),
            next_update: date_time_ymd(2027, 2, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(*serial),
                    revocation_time: date_time_ymd(2027, 1, 1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer())
        .unwrap()
    }
}

fn dns(name: &str) -> SanType {
    SanType::DnsName(name.try_into().unwrap())
}

const ALGS: [(&str, &SignatureAlgorithm); 2] = [
    ("Ed25519", &rcgen::PKCS_ED25519),
    ("P-256", &rcgen::PKCS_ECDSA_P256_SHA256),
];

#[test]
fn other_cas_are_refused_and_their_own_ca_accepts() {
    let v = vectors();
    for (name, alg) in ALGS {
        let other = make_ca(alg, &format!("Other {name} CA"));
        let (leaf, key) = other.issue(alg, vec![dns("home.example")], 7, vec![]);
        // Against the strongSwan vectors' CA, at a time inside every certificate's validity.
        let err = v
            .verifier
            .verify(&leaf, &[], &fqdn("home.example"), at(v.window.0 + 60))
            .unwrap_err();
        assert_eq!(err, CertError::UnknownIssuer, "{name}");
        println!("{name}: {err}");

        // Its own CA accepts it, and the key it returns checks signatures of the leaf's key.
        let own = CertificateVerifier::from_ca_der(&[&other.der]).unwrap();
        let peer = own
            .verify(&leaf, &[], &fqdn("home.example"), now_2028())
            .unwrap();
        let private = PrivateKey::from_pem(key.serialize_pem().as_bytes()).unwrap();
        assert_eq!(&private.public_key(), peer.public_key(), "{name}");
        let octets = b"octets to sign";
        let signed = auth::sign(&private, octets);
        let scheme = auth::verify(peer.public_key(), octets, &signed).unwrap();
        assert_eq!(
            scheme,
            if name == "Ed25519" {
                SignatureScheme::Ed25519
            } else {
                SignatureScheme::EcdsaSha256
            }
        );
    }
}

#[test]
fn a_ca_with_the_same_name_but_another_key_is_refused() {
    let real = make_ca(&rcgen::PKCS_ED25519, "Lab CA");
    let impostor = make_ca(&rcgen::PKCS_ED25519, "Lab CA");
    let (leaf, _) = impostor.issue(&rcgen::PKCS_ED25519, vec![dns("home.example")], 9, vec![]);
    let verifier = CertificateVerifier::from_ca_der(&[&real.der]).unwrap();
    let err = verifier
        .verify(&leaf, &[], &fqdn("home.example"), now_2028())
        .unwrap_err();
    assert!(
        matches!(err, CertError::BadChainSignature | CertError::UnknownIssuer),
        "{err}"
    );
}

#[test]
fn intermediates_from_the_cert_payloads_complete_the_chain() {
    for (name, alg) in ALGS {
        let root = make_ca(alg, "Root");
        let sub = root.intermediate(alg, "Sub");
        let (leaf, _) = sub.issue(alg, vec![dns("home.example")], 11, vec![]);
        let verifier = CertificateVerifier::from_ca_der(&[&root.der]).unwrap();
        assert!(
            verifier
                .verify(&leaf, &[&sub.der], &fqdn("home.example"), now_2028())
                .is_ok(),
            "{name}"
        );
        assert_eq!(
            verifier
                .verify(&leaf, &[], &fqdn("home.example"), now_2028())
                .unwrap_err(),
            CertError::UnknownIssuer,
            "{name}"
        );
    }
}

#[test]
fn revoked_serials_are_refused() {
    for (name, alg) in ALGS {
        let ca = make_ca(alg, "CRL CA");
        let (good, _) = ca.issue(alg, vec![dns("good.example")], 100, vec![]);
        let (bad, _) = ca.issue(alg, vec![dns("bad.example")], 101, vec![]);
        let crl = ca.crl(&[101, 555]);

        for crl_bytes in [crl.der().to_vec(), crl.pem().unwrap().into_bytes()] {
            let mut verifier = CertificateVerifier::from_ca_der(&[&ca.der]).unwrap();
            verifier.add_crls(&crl_bytes).unwrap();
            assert!(
                verifier
                    .verify(&good, &[], &fqdn("good.example"), now_2028())
                    .is_ok(),
                "{name}"
            );
            let err = verifier
                .verify(&bad, &[], &fqdn("bad.example"), now_2028())
                .unwrap_err();
            assert_eq!(err, CertError::Revoked, "{name}");
        }

        // A CRL from another CA only: the status is unknown, which is refused.
        let other = make_ca(alg, "Other");
        let mut verifier = CertificateVerifier::from_ca_der(&[&ca.der]).unwrap();
        verifier.add_crls(other.crl(&[]).der()).unwrap();
        assert_eq!(
            verifier
                .verify(&good, &[], &fqdn("good.example"), now_2028())
                .unwrap_err(),
            CertError::RevocationUnknown,
            "{name}"
        );
    }
}

#[test]
fn ip_address_identities_need_an_ip_san() {
    let ca = make_ca(&rcgen::PKCS_ECDSA_P256_SHA256, "IP CA");
    let addr = Ipv4Addr::new(198, 51, 100, 7);
    let (leaf, _) = ca.issue(
        &rcgen::PKCS_ECDSA_P256_SHA256,
        vec![SanType::IpAddress(IpAddr::V4(addr))],
        3,
        vec![],
    );
    let verifier = CertificateVerifier::from_ca_der(&[&ca.der]).unwrap();
    assert!(
        verifier
            .verify(&leaf, &[], &PeerIdentity::Ipv4(addr), now_2028())
            .is_ok()
    );
    for wrong in [
        PeerIdentity::Ipv4(Ipv4Addr::new(198, 51, 100, 8)),
        fqdn("198.51.100.7"),
        PeerIdentity::Ipv6("2001:db8::7".parse().unwrap()),
    ] {
        assert!(matches!(
            verifier.verify(&leaf, &[], &wrong, now_2028()),
            Err(CertError::IdentityMismatch(_))
        ));
    }
}

#[test]
fn extended_key_usage_is_optional_but_must_allow_ike_when_present() {
    let ca = make_ca(&rcgen::PKCS_ED25519, "EKU CA");
    let verifier = CertificateVerifier::from_ca_der(&[&ca.der]).unwrap();
    let cases = [
        (vec![], true),
        (vec![ExtendedKeyUsagePurpose::ServerAuth], true),
        (vec![ExtendedKeyUsagePurpose::ClientAuth], true),
        (
            vec![ExtendedKeyUsagePurpose::Other(vec![
                1, 3, 6, 1, 5, 5, 7, 3, 17,
            ])],
            true,
        ),
        (vec![ExtendedKeyUsagePurpose::CodeSigning], false),
        (vec![ExtendedKeyUsagePurpose::EmailProtection], false),
    ];
    for (i, (eku, ok)) in cases.into_iter().enumerate() {
        let label = format!("{eku:?}");
        let (leaf, _) = ca.issue(
            &rcgen::PKCS_ED25519,
            vec![dns("h.example")],
            20 + i as u64,
            eku,
        );
        let result = verifier.verify(&leaf, &[], &fqdn("h.example"), now_2028());
        if ok {
            assert!(result.is_ok(), "{label}: {result:?}");
        } else {
            assert_eq!(result.unwrap_err(), CertError::WrongUsage, "{label}");
        }
    }
}

#[test]
fn certificate_names_match_identities_without_case() {
    let ca = make_ca(&rcgen::PKCS_ED25519, "Case CA");
    let verifier = CertificateVerifier::from_ca_der(&[&ca.der]).unwrap();
    let (leaf, _) = ca.issue(&rcgen::PKCS_ED25519, vec![dns("Home.Example")], 40, vec![]);
    for claimed in [&b"home.example"[..], b"HOME.EXAMPLE", b"Home.Example"] {
        let id = PeerIdentity::from_id(PeerIdentity::ID_FQDN, claimed).unwrap();
        let result = verifier.verify(&leaf, &[], &id, now_2028());
        assert!(result.is_ok(), "{id}: {result:?}");
    }
    let (lower_leaf, _) = ca.issue(&rcgen::PKCS_ED25519, vec![dns("home.example")], 41, vec![]);
    let result = verifier.verify(&lower_leaf, &[], &fqdn("HOME.example"), now_2028());
    assert!(result.is_ok(), "{result:?}");
}

/// What the client requires of the server and the server of its homes: the same CA signs both,
/// so the server's certificate must say serverAuth, and a server-only certificate is no home's.
#[test]
fn roles_require_their_extended_key_usage() {
    use hometun_ike::crypto::PeerUsage;
    let ca = make_ca(&rcgen::PKCS_ED25519, "Role CA");
    let ike_intermediate = ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 5, 5, 8, 2, 2]);
    let ipsec_ike = ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 17]);
    // (EKUs, accepted as the server, accepted as a home)
    let cases = [
        (vec![], false, true),
        (vec![ExtendedKeyUsagePurpose::ServerAuth], true, false),
        (
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ike_intermediate.clone(),
            ],
            true,
            false,
        ),
        (vec![ExtendedKeyUsagePurpose::ClientAuth], false, true),
        (
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            true,
            true,
        ),
        (vec![ipsec_ike], false, true),
        (vec![ExtendedKeyUsagePurpose::Any], false, true),
        (vec![ExtendedKeyUsagePurpose::CodeSigning], false, false),
    ];
    let server = CertificateVerifier::from_ca_der(&[&ca.der])
        .unwrap()
        .require(PeerUsage::Server);
    let home = CertificateVerifier::from_ca_der(&[&ca.der])
        .unwrap()
        .require(PeerUsage::Home);
    for (i, (eku, as_server, as_home)) in cases.into_iter().enumerate() {
        let label = format!("{eku:?}");
        let (leaf, _) = ca.issue(
            &rcgen::PKCS_ED25519,
            vec![dns("peer.example")],
            60 + i as u64,
            eku,
        );
        let id = fqdn("peer.example");
        let result = server.verify(&leaf, &[], &id, now_2028());
        assert_eq!(result.is_ok(), as_server, "server {label}: {result:?}");
        if !as_server {
            let e = result.unwrap_err();
            assert!(
                matches!(e, CertError::WrongRole(_) | CertError::WrongUsage),
                "{e}"
            );
        }
        let result = home.verify(&leaf, &[], &id, now_2028());
        assert_eq!(result.is_ok(), as_home, "home {label}: {result:?}");
    }
    let (home_only, _) = ca.issue(
        &rcgen::PKCS_ED25519,
        vec![dns("vps.example")],
        90,
        vec![ExtendedKeyUsagePurpose::ClientAuth],
    );
    assert_eq!(
        server
            .verify(&home_only, &[], &fqdn("vps.example"), now_2028())
            .unwrap_err()
            .to_string(),
        "certificate is not a server certificate (no serverAuth extended key usage)"
    );
}

#[test]
fn garbage_certificates_are_errors_not_panics() {
    let v = vectors();
    let now = now_2028();
    for bad in [&b""[..], &[0x30], &[0x30, 0x82, 0xff, 0xff], &v.home[..100]] {
        assert!(matches!(
            v.verifier.verify(bad, &[], &fqdn("home.example"), now),
            Err(CertError::Malformed(_) | CertError::Other(_))
        ));
    }
    let mut flipped = v.home.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1; // the CA's signature
    assert!(
        v.verifier
            .verify(&flipped, &[], &fqdn("home.example"), at(v.window.0 + 10))
            .is_err()
    );
    assert!(CertificateVerifier::from_ca_der(&[]).is_err());
    assert!(CertificateVerifier::from_ca_pem(b"no pem here").is_err());
}

#[test]
fn private_keys_load_from_pkcs8_and_sec1_pem() {
    // PKCS#8 from rcgen, both key types.
    for (name, alg) in ALGS {
        let key = KeyPair::generate_for(alg).unwrap();
        let private = PrivateKey::from_pem(key.serialize_pem().as_bytes()).unwrap();
        let spki = PeerPublicKey::from_spki_der(&key.subject_public_key_info()).unwrap();
        assert_eq!(private.public_key(), spki, "{name}");
        assert!(!format!("{private:?}").contains(&key.serialize_pem()[40..60]));
    }
    // SEC1 "EC PRIVATE KEY", as `openssl ecparam -genkey` writes it.
    let secret = p256::SecretKey::from_slice(&[0x17; 32]).unwrap();
    let sec1 = secret.to_sec1_pem(p256::pkcs8::LineEnding::LF).unwrap();
    assert!(sec1.starts_with("-----BEGIN EC PRIVATE KEY-----"));
    let private = PrivateKey::from_pem(sec1.as_bytes()).unwrap();
    assert_eq!(
        private.public_key(),
        PeerPublicKey::P256(secret.public_key().into())
    );
    // Not a key.
    assert!(matches!(
        PrivateKey::from_pem(&vector_file("ca.pem")),
        Err(CryptoError::Credentials(_))
    ));
    assert!(PrivateKey::from_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
}

/// A public key read from its SubjectPublicKeyInfo bytes: the same bytes read twice give the
/// same key, other keys their own, and bytes that are no key are refused.
#[test]
fn a_public_key_read_from_its_spki_belongs_to_those_bytes() {
    for (name, alg) in ALGS {
        let keys = [
            KeyPair::generate_for(alg).unwrap(),
            KeyPair::generate_for(alg).unwrap(),
        ];
        let read =
            |key: &KeyPair| PeerPublicKey::from_spki_der(&key.subject_public_key_info()).unwrap();
        let first = [read(&keys[0]), read(&keys[1])];
        assert_ne!(first[0], first[1], "{name}");
        for (key, expected) in keys.iter().zip(&first) {
            assert_eq!(&read(key), expected, "{name}");
            let private = PrivateKey::from_pem(key.serialize_pem().as_bytes()).unwrap();
            assert_eq!(&private.public_key(), expected, "{name}");
        }
        let mut damaged = keys[0].subject_public_key_info();
        damaged.pop();
        assert!(PeerPublicKey::from_spki_der(&damaged).is_none(), "{name}");
    }
}

#[test]
fn key_and_certificate_must_belong_together() {
    for (name, alg) in ALGS {
        let ca = make_ca(alg, "Pair CA");
        let (leaf, key) = ca.issue(alg, vec![dns("home.example")], 5, vec![]);
        let private = PrivateKey::from_pem(key.serialize_pem().as_bytes()).unwrap();
        private.check_matches_certificate(&leaf).unwrap();
        assert_eq!(
            hometun_ike::crypto::credentials::certificate_public_key(&leaf).unwrap(),
            private.public_key(),
            "{name}"
        );
        let other = PrivateKey::from_pem(
            KeyPair::generate_for(alg)
                .unwrap()
                .serialize_pem()
                .as_bytes(),
        )
        .unwrap();
        assert!(matches!(
            other.check_matches_certificate(&leaf),
            Err(CryptoError::Credentials(_))
        ));
        // The CA certificate is not the leaf's either.
        assert!(private.check_matches_certificate(&ca.der).is_err());
    }
}

/// The CERTREQ of strongSwan's IKE_SA_INIT response in the trace names the CA by this hash:
/// SHA-1 of the CA's whole SubjectPublicKeyInfo (RFC 7296 3.7).
#[test]
fn ca_key_hash_matches_strongswans_certreq() {
    let verifier = CertificateVerifier::from_ca_pem(&vector_file("ca.pem")).unwrap();
    assert_eq!(
        verifier.ca_key_hashes(),
        [
            <[u8; 20]>::try_from(hex::decode("ef9b275ecc3ff67bc53217fa84225370b329576d").unwrap())
                .unwrap()
        ]
    );
}
