//! Configuration of both peers, as a scenario varies it.

use super::*;

/// What a scenario varies.
#[derive(Clone)]
pub struct Setup {
    pub alg: &'static SignatureAlgorithm,
    pub client_ike: Vec<&'static str>,
    pub server_ike: Vec<&'static str>,
    pub client_esp: Vec<&'static str>,
    pub server_esp: Vec<&'static str>,
    pub client_prefixes: Vec<Ipv6Net>,
    pub server_allows: Vec<Ipv6Net>,
    pub nat: bool,
    /// The client acts as if a NAT were in front of it (ESP in UDP without one).
    pub force_udp_encapsulation: bool,
    pub dpd: Option<Duration>,
    pub server_dpd: Option<Duration>,
    pub cookie_threshold: u32,
    pub half_open_per_source: u32,
    pub half_open_total: u32,
    pub new_ike_sas_per_identity: u32,
    pub retransmit_base: Duration,
    pub retransmit_tries: u32,
    /// The client's longest wait between two connection attempts.
    pub reconnect_max: Duration,
    pub seed: u64,
    /// When each side rekeys its IKE SA (the daemon's default: after every CHILD SA rekey).
    pub ike_rekey: IkeRekeyPolicy,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            alg: &rcgen::PKCS_ED25519,
            client_ike: vec!["aes128gcm16-prfsha256-x25519"],
            server_ike: vec![
                "aes128gcm16-prfsha256-x25519",
                "aes256gcm16-prfsha256-ecp256",
            ],
            client_esp: vec!["aes128gcm16"],
            server_esp: vec!["aes128gcm16", "aes256gcm16"],
            client_prefixes: vec![client_prefix()],
            server_allows: vec![client_prefix()],
            nat: false,
            force_udp_encapsulation: false,
            dpd: Some(Duration::from_secs(30)),
            server_dpd: None,
            cookie_threshold: 10,
            half_open_per_source: 5,
            half_open_total: 50,
            new_ike_sas_per_identity: 5,
            retransmit_base: Duration::from_secs(1),
            retransmit_tries: 4,
            reconnect_max: Duration::from_secs(30),
            seed: 7,
            ike_rekey: IkeRekeyPolicy::default(),
        }
    }
}

pub struct Pki {
    pub ca: Ca,
    pub client: Leaf,
    pub server: Leaf,
    /// A CRL the server checks client certificates against.
    pub server_crl: Option<Vec<u8>>,
    /// The CA the client trusts, if not `ca` (a server from another CA).
    pub client_trusts: Option<CertificateVerifierSource>,
}

/// Where a verifier's CA comes from.
pub enum CertificateVerifierSource {
    Der(Vec<u8>),
}

impl Pki {
    pub fn new(alg: &'static SignatureAlgorithm) -> Self {
        let ca = Ca::new(alg, "hometun test CA");
        let client = ca.leaf(CLIENT_NAME, 100, Validity::Good);
        let server = ca.server_leaf(SERVER_NAME, 101, Validity::Good);
        Self {
            ca,
            client,
            server,
            server_crl: None,
            client_trusts: None,
        }
    }
}

pub fn limits() -> Limits {
    Limits {
        soft_bytes: Some(1 << 31),
        hard_bytes: Some(3 << 30),
        soft_packets: Some(1 << 30),
        hard_packets: Some(3 << 29),
        soft_seconds: None,
        hard_seconds: None,
    }
}

#[allow(clippy::too_many_arguments)]
pub fn common(
    setup: &Setup,
    chain: Vec<Vec<u8>>,
    key: PrivateKey,
    name: &str,
    verifier: CertificateVerifier,
    ike: &[&str],
    esp: &[&str],
    dpd: Option<Duration>,
) -> CommonConfig {
    CommonConfig {
        chain,
        key: std::sync::Arc::new(key),
        identity: PeerIdentity::Fqdn(name.into()),
        verifier: std::sync::Arc::new(verifier),
        ike_proposals: ike.iter().map(|p| IkeProposal::parse(p).unwrap()).collect(),
        esp_proposals: esp.iter().map(|p| EspProposal::parse(p).unwrap()).collect(),
        limits: limits(),
        ike_rekey: setup.ike_rekey,
        replay_window: 1024,
        nat_keepalive_seconds: 20,
        retransmit_base: setup.retransmit_base,
        retransmit_tries: setup.retransmit_tries,
        dpd,
        reconnect_max: setup.reconnect_max,
        ike_port: 500,
        nat_port: 4500,
    }
}

pub fn server_config(setup: &Setup, pki: &Pki) -> ResponderConfig {
    ResponderConfig {
        common: common(
            setup,
            vec![pki.server.der.clone()],
            pki.server.private_key(),
            SERVER_NAME,
            {
                let mut verifier = pki.ca.home_verifier();
                if let Some(crl) = &pki.server_crl {
                    verifier.add_crls(crl).unwrap();
                }
                verifier
            },
            &setup.server_ike,
            &setup.server_esp,
            setup.server_dpd,
        ),
        local_addr: SERVER_ADDR,
        authorizer: Box::new(StaticAuthorizer(vec![(
            CLIENT_NAME.into(),
            setup.server_allows.clone(),
        )])),
        cookie_threshold: setup.cookie_threshold,
        half_open_per_source: setup.half_open_per_source,
        half_open_total: setup.half_open_total,
        new_ike_sas_per_identity: setup.new_ike_sas_per_identity,
    }
}

pub fn client_config(setup: &Setup, pki: &Pki) -> InitiatorConfig {
    InitiatorConfig {
        common: common(
            setup,
            vec![pki.client.der.clone()],
            pki.client.private_key(),
            CLIENT_NAME,
            match &pki.client_trusts {
                Some(CertificateVerifierSource::Der(der)) => {
                    CertificateVerifier::from_ca_der(&[der])
                        .unwrap()
                        .require(PeerUsage::Server)
                }
                None => pki.ca.server_verifier(),
            },
            &setup.client_ike,
            &setup.client_esp,
            setup.dpd,
        ),
        server: SocketAddrV4::new(SERVER_ADDR, 500),
        server_identity: PeerIdentity::Fqdn(SERVER_NAME.into()),
        fallback_servers: Vec::new(),
        local_addr: if setup.nat {
            CLIENT_PRIVATE
        } else {
            CLIENT_ADDR
        },
        local_prefixes: setup.client_prefixes.clone(),
        force_udp_encapsulation: setup.force_udp_encapsulation,
    }
}
