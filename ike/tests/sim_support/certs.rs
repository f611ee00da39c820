//! Certificates made with rcgen: a CA and its leaves, Ed25519 or P-256, and the server's static authorizer.

use super::*;

pub struct Ca {
    pub params: CertificateParams,
    pub key: KeyPair,
    pub der: Vec<u8>,
    pub alg: &'static SignatureAlgorithm,
}

pub struct Leaf {
    pub der: Vec<u8>,
    pub key_der: Vec<u8>,
}

impl Leaf {
    pub fn private_key(&self) -> PrivateKey {
        PrivateKey::from_der(&self.key_der).unwrap()
    }
}

/// Validity of a leaf.
#[derive(Clone, Copy, Debug)]
pub enum Validity {
    /// 2026..2031 (valid in 2028).
    Good,
    /// 2020..2025.
    Expired,
    /// 2029..2031.
    NotYetValid,
    /// 2020..2035 (valid for real-clock tests too).
    Wide,
    /// 2026 until this day of 2028 (the simulation's wall clock starts at 2028-01-01).
    Until2028 { month: u8, day: u8 },
}

impl Ca {
    pub fn new(alg: &'static SignatureAlgorithm, cn: &str) -> Self {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2035, 1, 1);
        let der = params.self_signed(&key).unwrap().der().to_vec();
        Self {
            params,
            key,
            der,
            alg,
        }
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// A home's certificate (clientAuth, as `hometun pki` issues it).
    pub fn leaf(&self, dns: &str, serial: u64, validity: Validity) -> Leaf {
        self.leaf_with_usage(
            dns,
            serial,
            validity,
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    /// The server's certificate (serverAuth, as `hometun pki` issues it).
    pub fn server_leaf(&self, dns: &str, serial: u64, validity: Validity) -> Leaf {
        self.leaf_with_usage(
            dns,
            serial,
            validity,
            vec![ExtendedKeyUsagePurpose::ServerAuth],
        )
    }

    /// A certificate with these extended key usages (none: no extension).
    pub fn leaf_with_usage(
        &self,
        dns: &str,
        serial: u64,
        validity: Validity,
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Leaf {
        let key = KeyPair::generate_for(self.alg).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::DnsName(dns.try_into().unwrap())];
        params.distinguished_name.push(DnType::CommonName, dns);
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = usages;
        let (nb, na) = match validity {
            Validity::Good => ((2026, 1, 1), (2031, 1, 1)),
            Validity::Expired => ((2020, 1, 1), (2025, 1, 1)),
            Validity::NotYetValid => ((2029, 1, 1), (2031, 1, 1)),
            Validity::Wide => ((2020, 1, 1), (2035, 1, 1)),
            Validity::Until2028 { month, day } => ((2026, 1, 1), (2028, month, day)),
        };
        params.not_before = date_time_ymd(nb.0, nb.1, nb.2);
        params.not_after = date_time_ymd(na.0, na.1, na.2);
        let der = params
            .signed_by(&key, &self.issuer())
            .unwrap()
            .der()
            .to_vec();
        Leaf {
            der,
            key_der: key.serialize_der(),
        }
    }

    pub fn crl(&self, revoked: &[u64]) -> Vec<u8> {
        CertificateRevocationListParams {
            this_update: date_time_ymd(2027, 12, 1),
            next_update: date_time_ymd(2028, 2, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(*serial),
                    revocation_time: date_time_ymd(2027, 12, 1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer())
        .unwrap()
        .der()
        .to_vec()
    }

    /// Trusts this CA for peers of any role.
    pub fn verifier(&self) -> CertificateVerifier {
        CertificateVerifier::from_ca_der(&[&self.der]).unwrap()
    }

    /// Trusts this CA for homes, as the server does (`PeerUsage::Home`).
    pub fn home_verifier(&self) -> CertificateVerifier {
        self.verifier().require(PeerUsage::Home)
    }

    /// Trusts this CA for the server, as a home does (`PeerUsage::Server`).
    pub fn server_verifier(&self) -> CertificateVerifier {
        self.verifier().require(PeerUsage::Server)
    }
}

/// The static `[[clients]]` policy of a server: identity -> prefixes.
pub struct StaticAuthorizer(pub Vec<(String, Vec<Ipv6Net>)>);

impl Authorizer for StaticAuthorizer {
    fn prefixes(
        &self,
        identity: &PeerIdentity,
        _peer: &VerifiedPeer,
    ) -> Result<Vec<Ipv6Net>, PrefixRefusal> {
        let name = identity.to_string();
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| PrefixRefusal::NoPrefix(identity.clone()))
    }
}
