//! A CERT payload's bytes the way IKE_AUTH takes them on `hometun server`: the daemon's
//! `CertificateVerifier` (rustls-webpki against the CA, its CRL, the identity from IDi), then,
//! for a certificate it accepts, the server's authorizer (`[[clients]]`, else the RFC 3779
//! prefixes through `hometun_certs::addrblock::prefixes_from_certificate`, inside the pool).
//! Also the CA's own check (`TrustStore::verify_client`) and the prefix reader on the raw
//! bytes. Never a panic; what the authorizer grants lies in the pool; a certificate the CRL
//! lists is never accepted.
//!
//! Input: a mode byte, then an edit list (3 header bytes: position high and low, then length L
//! and kind: bit 7 set = insert, else overwrite; then L & 0x1f data bytes). Mode bits 0-1:
//! 0 = the rest is the certificate itself; 1 = edit a certificate hometun's CA issued (the
//! signature breaks: exercises parsing before and during path building); 2, 3 = edit its
//! TBSCertificate and sign it again with the CA's key (a correctly signed certificate with
//! hostile contents: reaches everything behind the signature check). Bits 2-3: which template
//! (a home with a prefix, a revoked home, a home known by `[[clients]]`, a home without an
//! address block). Bits 4-5: the identity claimed in IDi. Bit 6: the CA certificate also sent as
//! an intermediate. Bit 7: no CRL configured.
#![no_main]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hometun_certs::verify::TrustStore;
use hometun_config::StaticClient;
use hometun_daemon::authorizer::ConfigAuthorizer;
use hometun_ike::crypto::{CertError, CertificateVerifier, PeerIdentity};
use hometun_pki::ca::{Ca, Revoked, pem_certificate};
use ipnet::Ipv6Net;
use libfuzzer_sys::fuzz_target;
use ring::signature::Ed25519KeyPair;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};

const POOL: &str = "2001:db8:100::/48";
/// Issued at, and checked a month after.
const ISSUED: i64 = 1_800_000_000;
const CHECKED: u64 = 1_802_592_000;
const CA_SEED: [u8; 32] = [0x43; 32];
const HOME_SEED: [u8; 32] = [0x48; 32];

struct Lab {
    ca_der: Vec<u8>,
    ca_signer: Ed25519KeyPair,
    /// (certificate DER, its TBSCertificate range) per template.
    templates: Vec<(Vec<u8>, std::ops::Range<usize>)>,
    with_crl: CertificateVerifier,
    without_crl: CertificateVerifier,
    store: TrustStore,
    authorizer: ConfigAuthorizer,
}

/// PKCS#8 v1 (RFC 8410) of an Ed25519 seed.
fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    der
}

/// The header length and content length of the DER element at the start of `der`.
fn element(der: &[u8]) -> Option<(usize, usize)> {
    let first = *der.get(1)?;
    if first < 0x80 {
        return Some((2, usize::from(first)));
    }
    let n = usize::from(first & 0x7f);
    let bytes = der.get(2..2 + n)?;
    let len = bytes.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b));
    Some((2 + n, len))
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// Certificate ::= SEQUENCE { tbs, Ed25519 AlgorithmIdentifier, BIT STRING signature }.
fn signed(tbs: &[u8], signer: &Ed25519KeyPair) -> Vec<u8> {
    let mut body = tbs.to_vec();
    body.extend_from_slice(&[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70]);
    let mut bits = vec![0];
    bits.extend_from_slice(signer.sign(tbs).as_ref());
    body.extend(tlv(0x03, &bits));
    tlv(0x30, &body)
}

fn edited(original: &[u8], mut edits: &[u8]) -> Vec<u8> {
    let mut out = original.to_vec();
    while let [hi, lo, kind, rest @ ..] = edits {
        let len = usize::from(kind & 0x1f).min(rest.len());
        let (data, tail) = rest.split_at(len);
        let pos = usize::from(u16::from_be_bytes([*hi, *lo])) % (out.len() + 1);
        if kind & 0x80 != 0 {
            out.splice(pos..pos, data.iter().copied());
        } else {
            let end = (pos + data.len()).min(out.len());
            out.splice(pos..end, data.iter().copied());
        }
        edits = tail;
    }
    out
}

fn checked_at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(CHECKED)
}

/// A CA like `hometun pki init` makes (fixed key, so that every run sees the same bytes),
/// loaded through `Ca::load`; the templates come from its `issue_client`.
fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let issued = time::OffsetDateTime::from_unix_timestamp(ISSUED).expect("time");
        let ca_key = rcgen::KeyPair::try_from(ed25519_pkcs8(&CA_SEED).as_slice()).expect("key");
        let mut p = rcgen::CertificateParams::default();
        p.not_before = issued - time::Duration::days(1);
        p.not_after = issued + time::Duration::days(3650);
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x01, 0xca]));
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "hometun CA vps.example");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let everything =
            hometun_certs::addrblock::encode_ipv6_prefixes(&[Ipv6Net::default()]).expect("::/0");
        let mut ext = rcgen::CustomExtension::from_oid_content(
            hometun_certs::addrblock::OID_IP_ADDR_BLOCKS,
            everything,
        );
        ext.set_criticality(false);
        p.custom_extensions = vec![ext];
        let ca_cert = p.self_signed(&ca_key).expect("CA certificate");
        let ca_der = ca_cert.der().to_vec();

        let dir =
            std::env::temp_dir().join(format!("hometun-fuzz-ike-cert-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = |name: &str| -> PathBuf { dir.join(name) };
        std::fs::write(path("ca.pem"), pem_certificate(&ca_der)).expect("write");
        std::fs::write(path("ca.key"), ca_key.serialize_pem()).expect("write");
        // Ca::load refuses a key others can read, as a real CA directory must not have one.
        std::fs::set_permissions(
            path("ca.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod");
        let ca = Ca::load(&path("ca.pem"), &path("ca.key")).expect("Ca::load");
        let _ = std::fs::remove_dir_all(&dir);

        let home = rcgen::KeyPair::try_from(ed25519_pkcs8(&HOME_SEED).as_slice()).expect("key");
        let issue = |name: &str, prefix: &str, serial: &[u8]| -> Vec<u8> {
            ca.issue_client(
                &home,
                name,
                prefix.parse().expect("prefix"),
                serial,
                issued,
                365,
            )
            .expect("issue")
            .to_vec()
        };
        let mut certs = vec![
            issue("home.example", "2001:db8:100:1::/64", &[0x11]),
            issue("gone.example", "2001:db8:100:2::/64", &[0x22]),
            issue("static.example", "2001:db8:100:5::/64", &[0x33]),
        ];
        // A home without an address block (strongSwan's pki makes those).
        let mut bare = rcgen::CertificateParams::new(vec!["bare.example".to_string()]).expect("p");
        bare.not_before = issued;
        bare.not_after = issued + time::Duration::days(365);
        bare.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x44]));
        let issuer = rcgen::Issuer::from_params(&p, &ca_key);
        certs.push(bare.signed_by(&home, &issuer).expect("bare").der().to_vec());
        let templates = certs
            .into_iter()
            .map(|der| {
                let (outer, _) = element(&der).expect("certificate");
                let (header, len) = element(&der[outer..]).expect("tbs");
                (der, outer..outer + header + len)
            })
            .collect();

        let crl_pem = ca
            .crl(
                &[Revoked {
                    serial: vec![0x22],
                    at: issued,
                    key_compromise: true,
                }],
                1,
                issued,
                365,
            )
            .expect("CRL");
        let mut with_crl = CertificateVerifier::from_ca_der(&[&ca_der]).expect("verifier");
        with_crl.add_crls(crl_pem.as_bytes()).expect("CRL");
        let without_crl = CertificateVerifier::from_ca_der(&[&ca_der]).expect("verifier");
        let crl_der = hometun_ike::crypto::credentials::crls_from_pem_or_der(crl_pem.as_bytes())
            .expect("CRL PEM");
        let crls: Vec<CertificateRevocationListDer<'_>> = crl_der
            .iter()
            .map(|c| CertificateRevocationListDer::from(c.as_slice()))
            .collect();
        let store = TrustStore::new(CertificateDer::from(ca_der.clone()), &crls)
            .expect("store")
            .with_pool(POOL.parse().expect("pool"));
        let authorizer = ConfigAuthorizer::new(
            vec![StaticClient {
                name: "static.example".into(),
                prefix: "2001:db8:100:5::/64".parse().expect("prefix"),
            }],
            POOL.parse().expect("pool"),
        );
        let lab = Lab {
            ca_der,
            ca_signer: Ed25519KeyPair::from_seed_unchecked(&CA_SEED).expect("seed"),
            templates,
            with_crl,
            without_crl,
            store,
            authorizer,
        };
        // The templates must do what they stand for, or the fuzzer explores nothing real.
        let home_id = PeerIdentity::Fqdn("home.example".into());
        let home = &lab.templates[0].0;
        let peer = lab
            .with_crl
            .verify(home, &[], &home_id, checked_at())
            .expect("the home template verifies");
        assert_eq!(
            lab.authorizer.decide(&home_id, peer.certificate_der()),
            Ok(vec!["2001:db8:100:1::/64".parse().expect("prefix")])
        );
        let gone = PeerIdentity::Fqdn("gone.example".into());
        assert_eq!(
            lab.with_crl
                .verify(&lab.templates[1].0, &[], &gone, checked_at())
                .map(|_| ()),
            Err(CertError::Revoked)
        );
        let (der, tbs) = &lab.templates[0];
        assert_eq!(&signed(&der[tbs.clone()], &lab.ca_signer), der);
        lab
    })
}

fuzz_target!(|data: &[u8]| {
    let lab = lab();
    let Some((&mode, edits)) = data.split_first() else {
        return;
    };
    let (template, tbs) = &lab.templates[usize::from(mode >> 2) % lab.templates.len()];
    let cert = match mode & 3 {
        0 => edits.to_vec(),
        1 => edited(template, edits),
        _ => signed(&edited(&template[tbs.clone()], edits), &lab.ca_signer),
    };
    let identity = match (mode >> 4) & 3 {
        0 => PeerIdentity::Fqdn("home.example".into()),
        1 => PeerIdentity::Fqdn("static.example".into()),
        2 => PeerIdentity::Fqdn("gone.example".into()),
        _ => PeerIdentity::Ipv4(Ipv4Addr::new(192, 0, 2, 2)),
    };
    let intermediates: &[&[u8]] = if mode & 0x40 != 0 {
        &[lab.ca_der.as_slice()]
    } else {
        &[]
    };
    let verifier = if mode & 0x80 != 0 {
        &lab.without_crl
    } else {
        &lab.with_crl
    };

    // IKE_AUTH: the chain, then the authorizer on what passed.
    if let Ok(peer) = verifier.verify(&cert, intermediates, &identity, checked_at()) {
        assert!(
            mode & 0x80 != 0
                || !hometun_certs::verify::describe(&cert).is_ok_and(|c| c.serial == [0x22]),
            "a certificate the CRL lists passed"
        );
        if let Ok(prefixes) = lab.authorizer.decide(&identity, peer.certificate_der()) {
            let pool: Ipv6Net = POOL.parse().expect("pool");
            assert!(!prefixes.is_empty());
            assert!(prefixes.iter().all(|p| pool.contains(p)), "{prefixes:?}");
        }
    }
    // The CA's own check and the prefix reader, on the same bytes.
    let now = UnixTime::since_unix_epoch(Duration::from_secs(CHECKED));
    if let Ok(home) = lab.store.verify_client(&cert, intermediates, now) {
        let pool: Ipv6Net = POOL.parse().expect("pool");
        assert!(home.prefixes.iter().all(|p| pool.contains(p)));
        assert_ne!(home.serial, [0x22], "a certificate the CRL lists passed");
    }
    let _ = hometun_certs::addrblock::prefixes_from_certificate(&cert);
});
