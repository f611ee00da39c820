//! Certificates and keys for the IKE harnesses, made once per process from fixed seeds (the
//! same bytes in every run, so that a crash reproduces): a CA, the home (`home.example`, its
//! prefix 2001:db8:1::/64), the server (`vps.example`, serverAuth), and certificates a hostile
//! peer may put in a CERT payload instead of its own (another home's, an expired one, one of
//! another CA, the server's).

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hometun_ike::crypto::{CertificateVerifier, PeerUsage, PrivateKey};
use ipnet::Ipv6Net;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber, date_time_ymd,
};

/// The home's name.
pub const HOME_NAME: &str = "home.example";
/// Another enrolled home.
pub const OTHER_NAME: &str = "other.example";
/// The server's name.
pub const SERVER_NAME: &str = "vps.example";

/// The home's prefix, as its certificate and the server's policy give it.
pub fn home_prefix() -> Ipv6Net {
    Ipv6Net::new(std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0), 64).expect("a /64")
}

/// The other home's prefix.
pub fn other_prefix() -> Ipv6Net {
    Ipv6Net::new(std::net::Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0), 64).expect("a /64")
}

/// The simulation's wall clock at its start: 2028-01-01 (every leaf but the expired one is
/// valid then).
pub fn wall_start() -> SystemTime {
    static START: OnceLock<SystemTime> = OnceLock::new();
    *START.get_or_init(|| {
        UNIX_EPOCH + Duration::from_secs(date_time_ymd(2028, 1, 1).unix_timestamp() as u64)
    })
}

/// A certificate and its private key (PKCS#8 DER).
pub struct Leaf {
    /// The certificate.
    pub der: Vec<u8>,
    /// Its key.
    pub key_der: Vec<u8>,
}

impl Leaf {
    /// The key for [`hometun_ike::endpoint::CommonConfig`].
    pub fn private_key(&self) -> PrivateKey {
        PrivateKey::from_der(&self.key_der).expect("a key rcgen made")
    }
}

/// Everything made once.
pub struct Credentials {
    /// The CA both sides trust.
    pub ca_der: Vec<u8>,
    /// The home's certificate.
    pub home: Leaf,
    /// The server's certificate.
    pub server: Leaf,
    /// Another home's certificate (same CA).
    pub other_home: Leaf,
    /// The home's name, expired in 2025.
    pub expired_home: Leaf,
    /// The home's name from a CA nobody trusts.
    pub foreign_home: Leaf,
}

impl Credentials {
    /// The server's verifier: the CA, homes only (as `hometun server` checks them).
    pub fn server_verifier(&self) -> CertificateVerifier {
        CertificateVerifier::from_ca_der(&[&self.ca_der])
            .expect("the CA")
            .require(PeerUsage::Home)
    }

    /// The home's verifier: the CA, the server's certificate only.
    pub fn home_verifier(&self) -> CertificateVerifier {
        CertificateVerifier::from_ca_der(&[&self.ca_der])
            .expect("the CA")
            .require(PeerUsage::Server)
    }

    /// Certificates a hostile peer may send instead of its own, by index.
    pub fn substitutes(&self) -> [&[u8]; 6] {
        [
            &self.home.der,
            &self.server.der,
            &self.other_home.der,
            &self.expired_home.der,
            &self.foreign_home.der,
            &self.ca_der,
        ]
    }
}

/// PKCS#8 v1 (RFC 8410) of an Ed25519 seed.
fn ed25519_key(seed: u8) -> KeyPair {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&[seed; 32]);
    KeyPair::try_from(der.as_slice()).expect("an Ed25519 PKCS#8 key")
}

fn ca(seed: u8, name: &str) -> (CertificateParams, KeyPair, Vec<u8>) {
    let key = ed25519_key(seed);
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2035, 1, 1);
    params.serial_number = Some(SerialNumber::from(1u64));
    let der = params.self_signed(&key).expect("CA").der().to_vec();
    (params, key, der)
}

struct LeafSpec<'a> {
    name: &'a str,
    seed: u8,
    serial: u64,
    usage: ExtendedKeyUsagePurpose,
    valid: ((i32, u8, u8), (i32, u8, u8)),
}

fn leaf(issuer: &Issuer<'_, &KeyPair>, spec: LeafSpec<'_>) -> Leaf {
    let key = ed25519_key(spec.seed);
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = vec![SanType::DnsName(spec.name.try_into().expect("a DNS name"))];
    params
        .distinguished_name
        .push(DnType::CommonName, spec.name);
    params.serial_number = Some(SerialNumber::from(spec.serial));
    params.extended_key_usages = vec![spec.usage];
    let ((y0, m0, d0), (y1, m1, d1)) = spec.valid;
    params.not_before = date_time_ymd(y0, m0, d0);
    params.not_after = date_time_ymd(y1, m1, d1);
    let der = params.signed_by(&key, issuer).expect("leaf").der().to_vec();
    Leaf {
        der,
        key_der: key.serialize_der(),
    }
}

/// The credentials of this process.
pub fn credentials() -> &'static Credentials {
    static CREDENTIALS: OnceLock<Credentials> = OnceLock::new();
    CREDENTIALS.get_or_init(|| {
        let (params, key, ca_der) = ca(0x43, "hometun fuzz CA");
        let issuer = Issuer::from_params(&params, &key);
        let good = ((2026, 1, 1), (2031, 1, 1));
        let home = leaf(
            &issuer,
            LeafSpec {
                name: HOME_NAME,
                seed: 0x48,
                serial: 100,
                usage: ExtendedKeyUsagePurpose::ClientAuth,
                valid: good,
            },
        );
        let server = leaf(
            &issuer,
            LeafSpec {
                name: SERVER_NAME,
                seed: 0x53,
                serial: 101,
                usage: ExtendedKeyUsagePurpose::ServerAuth,
                valid: good,
            },
        );
        let other_home = leaf(
            &issuer,
            LeafSpec {
                name: OTHER_NAME,
                seed: 0x4f,
                serial: 102,
                usage: ExtendedKeyUsagePurpose::ClientAuth,
                valid: good,
            },
        );
        let expired_home = leaf(
            &issuer,
            LeafSpec {
                name: HOME_NAME,
                seed: 0x48,
                serial: 103,
                usage: ExtendedKeyUsagePurpose::ClientAuth,
                valid: ((2020, 1, 1), (2025, 1, 1)),
            },
        );
        let (foreign_params, foreign_key, _) = ca(0x46, "another CA");
        let foreign_issuer = Issuer::from_params(&foreign_params, &foreign_key);
        let foreign_home = leaf(
            &foreign_issuer,
            LeafSpec {
                name: HOME_NAME,
                seed: 0x48,
                serial: 104,
                usage: ExtendedKeyUsagePurpose::ClientAuth,
                valid: good,
            },
        );
        Credentials {
            ca_der,
            home,
            server,
            other_home,
            expired_home,
            foreign_home,
        }
    })
}
