//! Interoperability: strongSwan 5.9.8's real IKE_SA_INIT request (the trace in
//! shared/vectors) fed to our responder. Our answer must parse, choose the proposal
//! strongSwan's own responder chose, and carry what strongSwan expects (KE of group 31,
//! a 32-byte nonce, NAT detection, CERTREQ for our CA, SIGNATURE_HASH_ALGORITHMS). The rest
//! of that handshake cannot be replayed without strongSwan's private keys.

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::net::SocketAddrV4;
use std::time::Duration;

use hometun_ike::endpoint::{Endpoint, Random};
use hometun_ike::wire::{ExchangeType, HashAlgorithm, Message, NotifyType, Payload, ProtocolId};
use sim_support::*;

fn strongswan_request() -> (SocketAddrV4, SocketAddrV4, Vec<u8>) {
    let (origin, bytes) = hometun_lab::trace::trace_messages().remove(0);
    (origin.src, origin.dst, bytes)
}

fn strongswan_response() -> Vec<u8> {
    hometun_lab::trace::trace_messages().remove(1).1
}

fn our_responder(server_ike: Vec<&'static str>) -> (Endpoint, Clock, SeededRandom) {
    let setup = Setup {
        server_ike,
        ..Setup::default()
    };
    let pki = Pki::new(setup.alg);
    let clock = Clock::new();
    let mut rng = SeededRandom::new(11);
    let server = Endpoint::responder(server_config(&setup, &pki), clock.now(), &mut rng);
    (server, clock, rng)
}

#[test]
fn strongswan_ike_sa_init_request_is_answered_with_the_same_proposal() {
    let (src, dst, request) = strongswan_request();
    let request_message = Message::parse(&request).unwrap();
    // Our preferences put AES-256 and P-256 first: the choice must still fall on what
    // strongSwan offers (its proposal 1: AES_GCM_16_128 / PRF_HMAC_SHA2_256 / CURVE_25519).
    let (mut server, clock, mut rng) = our_responder(vec![
        "aes256gcm16-prfsha256-ecp256",
        "aes128gcm16-aes256gcm16-prfsha256-x25519-ecp256",
    ]);
    server.handle_datagram(clock.now(), dst, src, &request, &mut rng);
    let answer = server.poll_transmit().expect("an answer");
    assert!(server.poll_transmit().is_none());
    assert_eq!((answer.local, answer.remote), (dst, src));
    let ours = Message::parse(&answer.data).unwrap();
    let theirs = Message::parse(&strongswan_response()).unwrap();

    assert_eq!(ours.header.exchange_type, ExchangeType::IKE_SA_INIT);
    assert!(ours.header.flags.response() && !ours.header.flags.initiator());
    assert_eq!(ours.header.spi_i, request_message.header.spi_i);
    assert_ne!(ours.header.spi_r, 0);
    assert_eq!(ours.header.message_id, 0);

    let sa = |m: &Message| {
        m.payloads
            .iter()
            .find_map(|p| match p {
                Payload::Sa(sa) => Some(sa.clone()),
                _ => None,
            })
            .unwrap()
    };
    // The very proposal strongSwan's responder sent back, transform for transform.
    assert_eq!(sa(&ours), sa(&theirs));
    assert_eq!(sa(&ours).proposals[0].protocol, ProtocolId::IKE);

    let ke = ours
        .payloads
        .iter()
        .find_map(|p| match p {
            Payload::Ke(k) => Some(k),
            _ => None,
        })
        .unwrap();
    assert_eq!(ke.group.0, 31);
    assert_eq!(ke.data.len(), 32);
    let nonce = ours.payloads.iter().find_map(|p| match p {
        Payload::Nonce(n) => Some(n.data.len()),
        _ => None,
    });
    assert_eq!(nonce, Some(32));
    assert!(ours.notify(NotifyType::NAT_DETECTION_SOURCE_IP).is_some());
    assert!(
        ours.notify(NotifyType::NAT_DETECTION_DESTINATION_IP)
            .is_some()
    );
    let hashes: Vec<HashAlgorithm> = ours
        .notify(NotifyType::SIGNATURE_HASH_ALGORITHMS)
        .unwrap()
        .hash_algorithms()
        .collect();
    // strongSwan signs Ed25519 with "identity" and ECDSA with SHA-256.
    assert!(hashes.contains(&HashAlgorithm::IDENTITY));
    assert!(hashes.contains(&HashAlgorithm::SHA2_256));
    assert!(
        ours.payloads
            .iter()
            .any(|p| matches!(p, Payload::CertReq(c) if c.data.len() == 20))
    );
    // Payload order as strongSwan's responder: SA KE No N(NATD_S) N(NATD_D) CERTREQ ...
    let names: Vec<String> = ours.payloads.iter().map(ToString::to_string).collect();
    assert_eq!(
        &names[..6],
        [
            "SA",
            "KE",
            "No",
            "N(NAT_DETECTION_SOURCE_IP)",
            "N(NAT_DETECTION_DESTINATION_IP)",
            "CERTREQ"
        ]
    );

    // strongSwan (encap = yes) fakes its NAT_DETECTION_SOURCE_IP to force UDP encapsulation;
    // the request's notifies are what they are, and we keep a half-open SA for its IKE_AUTH.
    assert_eq!(server.counters().half_open, 1);
    // A retransmission of strongSwan's request gets our answer again, byte for byte.
    server.handle_datagram(clock.now(), dst, src, &request, &mut rng);
    assert_eq!(server.poll_transmit().unwrap().data, answer.data);
    assert_eq!(server.counters().half_open, 1);
}

#[test]
fn strongswan_request_without_a_common_proposal_is_refused_statelessly() {
    let (src, dst, request) = strongswan_request();
    let (mut server, clock, mut rng) = our_responder(vec!["aes256gcm16-prfsha256-x25519"]);
    server.handle_datagram(clock.now(), dst, src, &request, &mut rng);
    let answer = Message::parse(&server.poll_transmit().unwrap().data).unwrap();
    assert_eq!(answer.header.spi_r, 0);
    assert_eq!(answer.payloads.len(), 1);
    assert!(answer.notify(NotifyType::NO_PROPOSAL_CHOSEN).is_some());
    assert_eq!(server.counters().ike_sas, 0);
}

#[test]
fn strongswan_ke_group_is_honoured_when_we_prefer_another() {
    let (src, dst, request) = strongswan_request();
    // We take P-256 only: INVALID_KE_PAYLOAD would need strongSwan to offer it; it offers
    // only curve25519, so this is NO_PROPOSAL_CHOSEN. With both groups offered by us but
    // P-256 preferred, strongSwan's KE (x25519) is honoured without a round trip.
    let (mut server, clock, mut rng) = our_responder(vec!["aes128gcm16-prfsha256-ecp256-x25519"]);
    server.handle_datagram(clock.now(), dst, src, &request, &mut rng);
    let answer = Message::parse(&server.poll_transmit().unwrap().data).unwrap();
    assert!(answer.notify(NotifyType::INVALID_KE_PAYLOAD).is_none());
    assert_ne!(answer.header.spi_r, 0);
}

// ---------------------------------------------------------------------------------------------
// A scripted initiator that sends what strongSwan 5.9.8 sends (payloads, order, notifies, as
// in the trace's logs), with our test certificates, so the whole handshake and a rekey run
// against our responder.

mod stock {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use hometun_ike::crypto::auth::{self, AuthRole, auth_octets};
    use hometun_ike::crypto::{DhGroup, IkeSaKeys, KeyExchange, PrivateKey, natd_hash};
    use hometun_ike::endpoint::{Endpoint, Random};
    use hometun_ike::proposal::{EspProposal, IkeProposal};
    use hometun_ike::wire::{
        self, AddressRange, Certificate, CertificateRequest, ExchangeType, Flags, Header,
        Identification, Message, Notify, NotifyType, Payload, ProtectedMessage, TrafficSelector,
        TrafficSelectors,
    };

    use super::sim_support::*;

    pub struct StockInitiator {
        pub spi_i: u64,
        pub spi_r: u64,
        pub keys: Option<IkeSaKeys>,
        pub ni: Vec<u8>,
        pub nr: Vec<u8>,
        pub init: Vec<u8>,
        pub server_init: Vec<u8>,
        pub esp_spi: hometun_control::Spi,
        iv: u64,
    }

    pub fn to(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(SERVER_ADDR, port)
    }

    fn notify(t: NotifyType) -> Payload {
        Payload::Notify(Notify::new(t, Vec::new()))
    }

    pub fn v6(prefix: &str, len: u8) -> TrafficSelector {
        TrafficSelector::Address(AddressRange::ipv6_prefix(prefix.parse().unwrap(), len))
    }

    pub fn v4_any() -> TrafficSelector {
        TrafficSelector::Address(AddressRange::ipv4_prefix(Ipv4Addr::UNSPECIFIED, 0))
    }

    impl StockInitiator {
        /// IKE_SA_INIT: [ SA KE No N(NATD_S_IP) N(NATD_D_IP) N(FRAG_SUP) N(HASH_ALG)
        /// N(REDIR_SUP) ], with a faked NATD_S_IP as strongSwan's `encap = yes` does.
        pub fn start(rng: &mut SeededRandom) -> (Self, KeyExchange, Vec<u8>) {
            let mut b = [0u8; 8];
            rng.fill(&mut b);
            let spi_i = u64::from_be_bytes(b);
            let mut ni = vec![0u8; 32];
            rng.fill(&mut ni);
            let mut r = [0u8; 32];
            rng.fill(&mut r);
            let ke = KeyExchange::new(DhGroup::Curve25519, &r).unwrap();
            let fake = natd_hash(spi_i, 0, "192.0.2.99".parse().unwrap(), 500);
            let real_d = natd_hash(spi_i, 0, SERVER_ADDR.into(), 500);
            let payloads = vec![
                Payload::Sa(IkeProposal::sa_payload(
                    &[IkeProposal::parse("aes128gcm16-prfsha256-x25519").unwrap()],
                    &[],
                )),
                Payload::Ke(wire::KeyExchange::new(
                    wire::DhGroup::CURVE25519,
                    ke.public_ke_data().to_vec(),
                )),
                Payload::Nonce(wire::Nonce::new(ni.clone())),
                Payload::Notify(Notify::new(
                    NotifyType::NAT_DETECTION_SOURCE_IP,
                    fake.to_vec(),
                )),
                Payload::Notify(Notify::new(
                    NotifyType::NAT_DETECTION_DESTINATION_IP,
                    real_d.to_vec(),
                )),
                notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED),
                Payload::Notify(Notify::new(
                    NotifyType::SIGNATURE_HASH_ALGORITHMS,
                    vec![0, 2, 0, 3, 0, 4, 0, 5],
                )),
                notify(NotifyType::REDIRECT_SUPPORTED),
            ];
            let init = sa_init_bytes(spi_i, payloads);
            let me = Self {
                spi_i,
                spi_r: 0,
                keys: None,
                ni,
                nr: Vec::new(),
                init: init.clone(),
                server_init: Vec::new(),
                esp_spi: hometun_control::Spi(0xbfcb_014d),
                iv: 0,
            };
            (me, ke, init)
        }

        pub fn accept_init(&mut self, ke: &KeyExchange, response: &[u8]) {
            let m = Message::parse(response).unwrap();
            self.spi_r = m.header.spi_r;
            let mut theirs = None;
            for p in &m.payloads {
                match p {
                    Payload::Nonce(n) => self.nr = n.data.clone(),
                    Payload::Ke(k) => theirs = Some(k.data.clone()),
                    _ => {}
                }
            }
            let g = ke.shared_secret(&theirs.unwrap()).unwrap();
            self.keys = Some(
                IkeSaKeys::initial(
                    hometun_control::AeadAlg::AesGcm128,
                    &self.ni,
                    &self.nr,
                    &g,
                    self.spi_i,
                    self.spi_r,
                )
                .unwrap(),
            );
            self.server_init = response.to_vec();
        }

        pub fn seal(
            &mut self,
            exchange: ExchangeType,
            id: u32,
            response: bool,
            payloads: Vec<Payload>,
        ) -> Vec<u8> {
            self.iv += 1;
            let keys = self.keys.as_ref().unwrap();
            ProtectedMessage::new(
                Header::new(
                    exchange,
                    self.spi_i,
                    self.spi_r,
                    Flags::new(true, response),
                    id,
                ),
                payloads,
            )
            .seal(&keys.initiator_cipher().unwrap(), &self.iv.to_be_bytes(), 0)
            .unwrap()
        }

        /// NAT_DETECTION_SOURCE_IP (faked, as strongSwan's `encap = yes` does, whatever our
        /// address) and _DESTINATION_IP of a message to the server's port 4500.
        pub fn natd(&self) -> [Payload; 2] {
            let fake = natd_hash(self.spi_i, self.spi_r, "192.0.2.99".parse().unwrap(), 4500);
            let real_d = natd_hash(self.spi_i, self.spi_r, SERVER_ADDR.into(), 4500);
            [
                Payload::Notify(Notify::new(
                    NotifyType::NAT_DETECTION_SOURCE_IP,
                    fake.to_vec(),
                )),
                Payload::Notify(Notify::new(
                    NotifyType::NAT_DETECTION_DESTINATION_IP,
                    real_d.to_vec(),
                )),
            ]
        }

        pub fn open(&self, data: &[u8]) -> ProtectedMessage {
            let keys = self.keys.as_ref().unwrap();
            ProtectedMessage::open(data, &keys.responder_cipher().unwrap()).unwrap()
        }

        /// IKE_AUTH: [ IDi CERT N(INIT_CONTACT) CERTREQ IDr AUTH SA TSi TSr N(MOBIKE_SUP)
        /// N(NO_ADD_ADDR) N(MULT_AUTH) N(EAP_ONLY) N(MSG_ID_SYN_SUP) ] (+ extra notifies).
        pub fn auth(
            &mut self,
            pki: &Pki,
            tsi: Vec<TrafficSelector>,
            tsr: Vec<TrafficSelector>,
            extra: Vec<Payload>,
        ) -> Vec<u8> {
            let idi = Identification::fqdn(CLIENT_NAME);
            let mut idi_body = vec![2, 0, 0, 0];
            idi_body.extend_from_slice(CLIENT_NAME.as_bytes());
            let octets = auth_octets(
                AuthRole::Initiator,
                self.keys.as_ref().unwrap(),
                &self.init,
                &self.nr,
                &idi_body,
            );
            let key: PrivateKey = pki.client.private_key();
            let mut payloads = vec![
                Payload::IdI(idi),
                Payload::Cert(Certificate::x509(pki.client.der.clone())),
                notify(NotifyType::INITIAL_CONTACT),
                Payload::CertReq(CertificateRequest::x509(&pki.ca.verifier().ca_key_hashes())),
                Payload::IdR(Identification::fqdn(SERVER_NAME)),
                Payload::Auth(auth::sign_payload(&key, &octets)),
                Payload::Sa(EspProposal::sa_payload(
                    &[EspProposal::parse("aes128gcm16").unwrap()],
                    self.esp_spi,
                    false,
                )),
                Payload::TsI(TrafficSelectors::new(tsi)),
                Payload::TsR(TrafficSelectors::new(tsr)),
                notify(NotifyType::MOBIKE_SUPPORTED),
                notify(NotifyType::NO_ADDITIONAL_ADDRESSES),
                notify(NotifyType::MULTIPLE_AUTH_SUPPORTED),
                notify(NotifyType::EAP_ONLY_AUTHENTICATION),
                notify(NotifyType::IKEV2_MESSAGE_ID_SYNC_SUPPORTED),
            ];
            payloads.extend(extra);
            self.seal(ExchangeType::IKE_AUTH, 1, false, payloads)
        }
    }

    /// Sends one datagram to the server endpoint; returns its answers.
    pub fn exchange(
        server: &mut Endpoint,
        clock: &Clock,
        rng: &mut SeededRandom,
        local_port: u16,
        data: &[u8],
    ) -> Vec<Vec<u8>> {
        let src = SocketAddrV4::new(CLIENT_ADDR, local_port);
        server.handle_datagram(clock.now(), to(local_port), src, data, rng);
        let mut out = Vec::new();
        while let Some(t) = server.poll_transmit() {
            assert_eq!(t.remote, src);
            assert_eq!(t.local, to(local_port));
            out.push(t.data);
        }
        out
    }
}

fn stock_handshake(
    tsi: Vec<hometun_ike::wire::TrafficSelector>,
    extra: Vec<Payload>,
) -> (
    Endpoint,
    Clock,
    SeededRandom,
    stock::StockInitiator,
    hometun_ike::wire::ProtectedMessage,
    Pki,
) {
    let setup = Setup::default();
    let pki = Pki::new(setup.alg);
    let clock = Clock::new();
    let mut rng = SeededRandom::new(21);
    let mut server = Endpoint::responder(server_config(&setup, &pki), clock.now(), &mut rng);
    let (mut client, ke, init) = stock::StockInitiator::start(&mut rng);
    let answers = stock::exchange(&mut server, &clock, &mut rng, 500, &init);
    assert_eq!(answers.len(), 1);
    client.accept_init(&ke, &answers[0]);
    let request = client.auth(&pki, tsi, vec![stock::v6("::", 0), stock::v4_any()], extra);
    // strongSwan floats to 4500 (its faked NATD made both sides see a NAT).
    let answers = stock::exchange(&mut server, &clock, &mut rng, 4500, &request);
    assert_eq!(answers.len(), 1);
    let response = client.open(&answers[0]);
    (server, clock, rng, client, response, pki)
}

#[test]
fn a_strongswan_like_initiator_completes_ike_auth() {
    use hometun_control::{Encapsulation, Request};
    use hometun_ike::endpoint::Output;

    let (mut server, clock, mut rng, mut client, response, pki) = stock_handshake(
        vec![stock::v6("2001:db8:1::2", 128), stock::v4_any()],
        vec![],
    );
    let names: Vec<String> = response.inner.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        [
            "IDr",
            "CERT",
            "AUTH",
            "SA",
            "TSi",
            "TSr",
            "N(MOBIKE_SUPPORTED)"
        ]
    );
    // Our AUTH verifies with our certificate over RealMessage2 | Ni | prf(SK_pr, IDr').
    let auth = response
        .inner
        .iter()
        .find_map(|p| match p {
            Payload::Auth(a) => Some(a.clone()),
            _ => None,
        })
        .unwrap();
    let mut idr_body = vec![2, 0, 0, 0];
    idr_body.extend_from_slice(SERVER_NAME.as_bytes());
    let octets = hometun_ike::crypto::auth::auth_octets(
        hometun_ike::crypto::AuthRole::Responder,
        client.keys.as_ref().unwrap(),
        &client.server_init,
        &client.ni,
        &idr_body,
    );
    let key = hometun_ike::crypto::credentials::certificate_public_key(&pki.server.der).unwrap();
    hometun_ike::crypto::auth::verify_payload(&key, &octets, &auth).unwrap();
    // TSi narrowed to strongSwan's /128 (inside the client's /64), IPv4 entries dropped.
    let tsi = response
        .inner
        .iter()
        .find_map(|p| match p {
            Payload::TsI(t) => Some(t.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(tsi.selectors, [stock::v6("2001:db8:1::2", 128)]);
    // The CHILD SA: UDP encapsulated (strongSwan faked a NAT), our SPI in the answer.
    let mut install = None;
    while let Some(o) = server.poll_output() {
        if let Output::Forwarder(Request::Install(sa)) = o {
            install = Some(sa);
        }
    }
    let sa = install.expect("installed");
    assert_eq!(sa.spi_out, client.esp_spi);
    assert_eq!(
        sa.endpoint.encap,
        Encapsulation::Udp {
            local_port: 4500,
            remote_port: 4500
        }
    );
    assert_eq!(sa.remote_ts, vec![net("2001:db8:1::2/128")]);
    assert_eq!(sa.local_ts, vec![net("::/0")]);
    let keys = client
        .keys
        .as_ref()
        .unwrap()
        .child_sa_keys(
            hometun_control::AeadAlg::AesGcm128,
            None,
            &client.ni,
            &client.nr,
        )
        .unwrap();
    assert_eq!(sa.key_in, keys.initiator_to_responder);
    assert_eq!(sa.key_out, keys.responder_to_initiator);

    // strongSwan's CHILD SA rekey: [ N(REKEY_SA) SA No TSi TSr ], REKEY_SA naming its own
    // inbound SPI; our answer [ SA No TSi TSr ]; then its DELETE of the old SPI, answered
    // with ours.
    let mut ni = vec![0u8; 32];
    rng.fill(&mut ni);
    let rekey = client.seal(
        ExchangeType::CREATE_CHILD_SA,
        2,
        false,
        vec![
            Payload::Notify(hometun_ike::wire::Notify::with_spi(
                ProtocolId::ESP,
                client.esp_spi.to_bytes().to_vec(),
                NotifyType::REKEY_SA,
                vec![],
            )),
            Payload::Sa(hometun_ike::proposal::EspProposal::sa_payload(
                &[hometun_ike::proposal::EspProposal::parse("aes128gcm16").unwrap()],
                hometun_control::Spi(0x6236_6dc4),
                false,
            )),
            Payload::Nonce(hometun_ike::wire::Nonce::new(ni)),
            Payload::TsI(hometun_ike::wire::TrafficSelectors::new(vec![stock::v6(
                "2001:db8:1::2",
                128,
            )])),
            Payload::TsR(hometun_ike::wire::TrafficSelectors::new(vec![stock::v6(
                "::", 0,
            )])),
        ],
    );
    let answers = stock::exchange(&mut server, &clock, &mut rng, 4500, &rekey);
    let answer = client.open(&answers[0]);
    let names: Vec<String> = answer.inner.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["SA", "No", "TSi", "TSr"]);
    let delete = client.seal(
        ExchangeType::INFORMATIONAL,
        3,
        false,
        vec![Payload::Delete(hometun_ike::wire::Delete::esp(&[
            client.esp_spi
        ]))],
    );
    let answers = stock::exchange(&mut server, &clock, &mut rng, 4500, &delete);
    let answer = client.open(&answers[0]);
    assert_eq!(
        answer.inner,
        [Payload::Delete(hometun_ike::wire::Delete::esp(
            &[sa.spi_in]
        ))]
    );
    let status = server.status(clock.now());
    assert_eq!(status[0].children.len(), 1);
    assert_eq!(status[0].children[0].spi_out.0, 0x6236_6dc4);
    // MOBIKE's UPDATE_SA_ADDRESSES (from the same address here: nothing moves) is answered
    // with NAT detection and the COOKIE2 echo.
    let mut payloads = vec![Payload::Notify(hometun_ike::wire::Notify::new(
        NotifyType::UPDATE_SA_ADDRESSES,
        vec![],
    ))];
    payloads.extend(client.natd());
    payloads.push(Payload::Notify(hometun_ike::wire::Notify::new(
        NotifyType::COOKIE2,
        vec![7; 16],
    )));
    let update = client.seal(ExchangeType::INFORMATIONAL, 4, false, payloads);
    let answers = stock::exchange(&mut server, &clock, &mut rng, 4500, &update);
    let answer = client.open(&answers[0]);
    let names: Vec<String> = answer.inner.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        [
            "N(NAT_DETECTION_SOURCE_IP)",
            "N(NAT_DETECTION_DESTINATION_IP)",
            "N(COOKIE2)"
        ]
    );
}

#[test]
fn transport_mode_is_refused_with_no_proposal_chosen() {
    let (server, _, _, _, response, _) = stock_handshake(
        vec![stock::v6("2001:db8:1::2", 128)],
        vec![Payload::Notify(hometun_ike::wire::Notify::new(
            NotifyType::USE_TRANSPORT_MODE,
            vec![],
        ))],
    );
    assert_eq!(response.inner.len(), 1);
    assert!(
        matches!(&response.inner[0], Payload::Notify(n) if n.notify_type == NotifyType::NO_PROPOSAL_CHOSEN)
    );
    assert_eq!(server.counters().ike_sas, 0);
}

#[test]
fn ipv4_only_selectors_are_ts_unacceptable() {
    let (server, _, _, _, response, _) = stock_handshake(vec![stock::v4_any()], vec![]);
    assert!(
        matches!(&response.inner[0], Payload::Notify(n) if n.notify_type == NotifyType::TS_UNACCEPTABLE)
    );
    assert_eq!(server.counters().ike_sas, 0);
}

// ---------------------------------------------------------------------------------------------
// MOBIKE (RFC 4555) as a roaming strongSwan client does it: UPDATE_SA_ADDRESSES from its new
// address (with NAT detection and COOKIE2); the server answers there, checks the new address
// with an INFORMATIONAL carrying its own COOKIE2 and moves the CHILD SAs on the answer.

/// Where the roaming stock client moves to.
const MOVED: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 0, 2, 77);

/// A datagram from `src` to the server's port 4500; returns what the server sends.
fn deliver(
    server: &mut Endpoint,
    clock: &Clock,
    rng: &mut SeededRandom,
    src: SocketAddrV4,
    data: &[u8],
) -> Vec<hometun_ike::endpoint::Transmit> {
    server.handle_datagram(clock.now(), stock::to(4500), src, data, rng);
    std::iter::from_fn(|| server.poll_transmit()).collect()
}

/// The server's forwarder requests so far.
fn forwarder_requests(server: &mut Endpoint) -> Vec<hometun_control::Request> {
    std::iter::from_fn(|| server.poll_output())
        .filter_map(|o| match o {
            hometun_ike::endpoint::Output::Forwarder(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// A connected stock client, and the server's view after IKE_AUTH (outputs drained).
fn mobike_ready() -> (Endpoint, Clock, SeededRandom, stock::StockInitiator) {
    let (mut server, clock, rng, client, _, _) =
        stock_handshake(vec![stock::v6("2001:db8:1::2", 128)], vec![]);
    let requests = forwarder_requests(&mut server);
    assert!(
        matches!(
            requests.as_slice(),
            [
                hometun_control::Request::AllowPeer { .. },
                hometun_control::Request::Install(_)
            ]
        ),
        "the grant, then the Install: {requests:?}"
    );
    (server, clock, rng, client)
}

fn update_sa_addresses(
    client: &mut stock::StockInitiator,
    id: u32,
    extra: Vec<Payload>,
) -> Vec<u8> {
    let mut payloads = vec![Payload::Notify(hometun_ike::wire::Notify::new(
        NotifyType::UPDATE_SA_ADDRESSES,
        vec![],
    ))];
    payloads.extend(client.natd());
    payloads.push(Payload::Notify(hometun_ike::wire::Notify::new(
        NotifyType::COOKIE2,
        vec![0x5a; 16],
    )));
    payloads.extend(extra);
    client.seal(ExchangeType::INFORMATIONAL, id, false, payloads)
}

fn cookie2_of(message: &hometun_ike::wire::ProtectedMessage) -> Option<Vec<u8>> {
    hometun_ike::wire::PayloadList::notifies(message.inner.as_slice())
        .find(|n| n.notify_type == NotifyType::COOKIE2)
        .map(|n| n.data.clone())
}

#[test]
fn mobike_update_moves_ike_at_once_and_the_child_sas_after_the_return_routability_check() {
    use hometun_control::{Encapsulation, Request};

    let (mut server, mut clock, mut rng, mut client) = mobike_ready();
    let new = SocketAddrV4::new(MOVED, 4500);
    let update = update_sa_addresses(&mut client, 2, vec![]);
    let sent = deliver(&mut server, &clock, &mut rng, new, &update);
    // The answer (NAT detection, our COOKIE2 echoed) and our check, both to the new address.
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(
        sent.iter()
            .all(|t| t.remote == new && t.local == stock::to(4500))
    );
    let answer = client.open(&sent[0].data);
    let names: Vec<String> = answer.inner.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        [
            "N(NAT_DETECTION_SOURCE_IP)",
            "N(NAT_DETECTION_DESTINATION_IP)",
            "N(COOKIE2)"
        ]
    );
    assert_eq!(cookie2_of(&answer), Some(vec![0x5a; 16]));
    let check = hometun_ike::wire::Header::parse(&sent[1].data).unwrap();
    assert_eq!(check.exchange_type, ExchangeType::INFORMATIONAL);
    assert!(!check.flags.response() && !check.flags.initiator());
    let check_body = client.open(&sent[1].data);
    let cookie = cookie2_of(&check_body).expect("a COOKIE2 in the check");
    assert!(cookie.len() >= 8);
    // The IKE SA is at the new address already; the CHILD SAs wait for the answer.
    let status = server.status(clock.now());
    assert_eq!(status[0].remote, new);
    assert_eq!(status[0].moves, 0);
    assert!(forwarder_requests(&mut server).is_empty(), "no move yet");

    // A retransmission of the check goes to the new address too.
    clock.offset += Duration::from_secs(2);
    server.handle_timeout(clock.now(), &mut rng);
    let again: Vec<_> = std::iter::from_fn(|| server.poll_transmit()).collect();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].data, sent[1].data);
    assert_eq!(again[0].remote, new);

    // The answer from the new address, our COOKIE2 echoed: the CHILD SAs move.
    let reply = client.seal(
        ExchangeType::INFORMATIONAL,
        check.message_id,
        true,
        vec![Payload::Notify(hometun_ike::wire::Notify::new(
            NotifyType::COOKIE2,
            cookie,
        ))],
    );
    assert!(deliver(&mut server, &clock, &mut rng, new, &reply).is_empty());
    let requests = forwarder_requests(&mut server);
    assert_eq!(requests.len(), 1, "{requests:?}");
    let Request::UpdateEndpoint { endpoint, .. } = requests[0] else {
        panic!("{requests:?}");
    };
    assert_eq!(endpoint.remote, MOVED);
    assert_eq!(endpoint.local, SERVER_ADDR);
    assert_eq!(
        endpoint.encap,
        Encapsulation::Udp {
            local_port: 4500,
            remote_port: 4500
        },
        "strongSwan's faked NAT detection keeps ESP in UDP"
    );
    let status = server.status(clock.now());
    assert_eq!(status[0].moves, 1);
    assert_eq!(status[0].last_moved_seconds_ago, Some(0));
    // The same update again (strongSwan retransmits when our answer is lost): the cached
    // answer, nothing moves twice.
    let sent = deliver(&mut server, &clock, &mut rng, new, &update);
    assert_eq!(sent.len(), 1);
    assert!(forwarder_requests(&mut server).is_empty());
}

#[test]
fn mobike_check_answered_without_our_cookie2_closes_the_ike_sa() {
    let (mut server, clock, mut rng, mut client) = mobike_ready();
    let new = SocketAddrV4::new(MOVED, 4500);
    let update = update_sa_addresses(&mut client, 2, vec![]);
    let sent = deliver(&mut server, &clock, &mut rng, new, &update);
    let check = hometun_ike::wire::Header::parse(&sent[1].data).unwrap();
    let reply = client.seal(
        ExchangeType::INFORMATIONAL,
        check.message_id,
        true,
        vec![Payload::Notify(hometun_ike::wire::Notify::new(
            NotifyType::COOKIE2,
            vec![1; 16],
        ))],
    );
    let sent = deliver(&mut server, &clock, &mut rng, new, &reply);
    let requests = forwarder_requests(&mut server);
    assert!(
        !requests
            .iter()
            .any(|r| matches!(r, hometun_control::Request::UpdateEndpoint { .. })),
        "{requests:?}"
    );
    // Its DELETE of the IKE SA goes out.
    assert_eq!(sent.len(), 1);
    let delete = client.open(&sent[0].data);
    assert!(
        matches!(&delete.inner[..], [Payload::Delete(d)] if d.protocol == hometun_ike::wire::ProtocolId::IKE),
        "{:?}",
        delete.inner
    );
}

#[test]
fn mobike_no_nats_allowed_with_other_addresses_is_refused() {
    let (mut server, clock, mut rng, mut client) = mobike_ready();
    let new = SocketAddrV4::new(MOVED, 4500);
    // The client says it sent from 192.0.2.2:4500; it arrives from 192.0.2.77:4500.
    let mut data = Vec::new();
    data.extend_from_slice(&CLIENT_ADDR.octets());
    data.extend_from_slice(&SERVER_ADDR.octets());
    data.extend_from_slice(&4500u16.to_be_bytes());
    data.extend_from_slice(&4500u16.to_be_bytes());
    let no_nats = Payload::Notify(hometun_ike::wire::Notify::new(
        NotifyType::NO_NATS_ALLOWED,
        data.clone(),
    ));
    let update = update_sa_addresses(&mut client, 2, vec![no_nats]);
    let sent = deliver(&mut server, &clock, &mut rng, new, &update);
    assert_eq!(sent.len(), 1, "the answer only, no check");
    let answer = client.open(&sent[0].data);
    let names: Vec<String> = answer.inner.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["N(UNEXPECTED_NAT_DETECTED)"]);
    let status = server.status(clock.now());
    assert_eq!(status[0].remote, SocketAddrV4::new(CLIENT_ADDR, 4500));
    assert!(forwarder_requests(&mut server).is_empty());

    // The same notify naming the addresses the packet really came with is fine.
    let mut data = Vec::new();
    data.extend_from_slice(&MOVED.octets());
    data.extend_from_slice(&SERVER_ADDR.octets());
    data.extend_from_slice(&4500u16.to_be_bytes());
    data.extend_from_slice(&4500u16.to_be_bytes());
    let no_nats = Payload::Notify(hometun_ike::wire::Notify::new(
        NotifyType::NO_NATS_ALLOWED,
        data,
    ));
    let update = update_sa_addresses(&mut client, 3, vec![no_nats]);
    let sent = deliver(&mut server, &clock, &mut rng, new, &update);
    assert_eq!(sent.len(), 2, "answer and check");
    assert_eq!(server.status(clock.now())[0].remote, new);
}

#[test]
fn mobike_moving_again_during_the_check_checks_the_newest_address() {
    use hometun_control::Request;

    let (mut server, clock, mut rng, mut client) = mobike_ready();
    let first = SocketAddrV4::new(MOVED, 4500);
    let second = SocketAddrV4::new(std::net::Ipv4Addr::new(192, 0, 2, 78), 4500);
    let update = update_sa_addresses(&mut client, 2, vec![]);
    let sent = deliver(&mut server, &clock, &mut rng, first, &update);
    let first_check = hometun_ike::wire::Header::parse(&sent[1].data).unwrap();
    let first_cookie = cookie2_of(&client.open(&sent[1].data)).unwrap();
    let update = update_sa_addresses(&mut client, 3, vec![]);
    let sent = deliver(&mut server, &clock, &mut rng, second, &update);
    assert_eq!(sent.len(), 1, "the answer; the first check is still out");
    assert_eq!(sent[0].remote, second);
    // The answer to the first check (it reached the first address) moves nothing: the
    // second address gets its own check.
    let reply = client.seal(
        ExchangeType::INFORMATIONAL,
        first_check.message_id,
        true,
        vec![Payload::Notify(hometun_ike::wire::Notify::new(
            NotifyType::COOKIE2,
            first_cookie,
        ))],
    );
    let sent = deliver(&mut server, &clock, &mut rng, first, &reply);
    assert!(forwarder_requests(&mut server).is_empty());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].remote, second);
    let check = hometun_ike::wire::Header::parse(&sent[0].data).unwrap();
    let cookie = cookie2_of(&client.open(&sent[0].data)).unwrap();
    let reply = client.seal(
        ExchangeType::INFORMATIONAL,
        check.message_id,
        true,
        vec![Payload::Notify(hometun_ike::wire::Notify::new(
            NotifyType::COOKIE2,
            cookie,
        ))],
    );
    deliver(&mut server, &clock, &mut rng, second, &reply);
    let requests = forwarder_requests(&mut server);
    assert!(
        matches!(&requests[..], [Request::UpdateEndpoint { endpoint, .. }] if endpoint.remote == *second.ip()),
        "{requests:?}"
    );
    assert_eq!(server.status(clock.now())[0].moves, 1);
}
