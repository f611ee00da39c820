//! The responder's IKE_AUTH checks as the state machine will run them, on the strongSwan trace,
//! through `wire`'s parser: KE group and nonces from IKE_SA_INIT, SK keys, the IKE_AUTH request
//! opened with SK_ei, IDi -> identity, CERT -> certificate check, AUTH -> signature check.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod crypto_support;

use std::time::{Duration, UNIX_EPOCH};

use hometun_control::AeadAlg;
use hometun_ike::crypto::auth::{self, AuthRole};
use hometun_ike::crypto::{
    CertificateVerifier, CryptoError, DhGroup, IkeSaKeys, PeerIdentity, PrivateKey, SignatureScheme,
};
use hometun_ike::wire::{
    Authentication, CertEncoding, ExchangeType, Identification, Message, NotifyType, Payload,
    ProtectedMessage,
};

use hometun_lab::trace::{Datagram, log_dumps, log_text, single, trace_datagrams, vector_file};

fn id_body(id: &Identification) -> Vec<u8> {
    let mut body = vec![0; id.buffer_len()];
    let n = id.emit(&mut body).unwrap();
    body.truncate(n);
    body
}

#[test]
fn responder_checks_the_initiators_ike_auth_through_wire() {
    let datagrams = trace_datagrams();
    let raw: Vec<&[u8]> = datagrams.iter().filter_map(Datagram::ike_message).collect();
    let request = Message::parse(raw[0]).unwrap();
    let response = Message::parse(raw[1]).unwrap();
    assert_eq!(request.header.exchange_type, ExchangeType::IKE_SA_INIT);

    let nonce = |m: &Message| {
        m.payloads
            .iter()
            .find_map(|p| match p {
                Payload::Nonce(n) => Some(n.data.clone()),
                _ => None,
            })
            .unwrap()
    };
    let (ni, nr) = (nonce(&request), nonce(&response));
    let ke = request
        .payloads
        .iter()
        .find_map(|p| match p {
            Payload::Ke(ke) => Some(ke),
            _ => None,
        })
        .unwrap();
    let group = DhGroup::try_from(ke.group).unwrap();
    assert_eq!(group, DhGroup::Curve25519);
    assert_eq!(ke.data.len(), group.ke_len());

    // The responder's private value is not in the vectors: take g^ir from its log.
    let dumps = log_dumps(&log_text("responder-charon.log"));
    let g_ir = single(&dumps, "shared Diffie Hellman secret");
    let keys = IkeSaKeys::initial(
        AeadAlg::AesGcm128,
        &ni,
        &nr,
        g_ir,
        response.header.spi_i,
        response.header.spi_r,
    )
    .unwrap();

    let auth_msg = ProtectedMessage::open(raw[2], &keys.initiator_cipher().unwrap()).unwrap();
    assert_eq!(auth_msg.header.exchange_type, ExchangeType::IKE_AUTH);
    let mut idi = None;
    let mut cert = None;
    let mut auth_payload = None;
    for p in &auth_msg.inner {
        match p {
            Payload::IdI(id) => idi = Some(id),
            Payload::Cert(c) => cert = Some(c),
            Payload::Auth(a) => auth_payload = Some(a),
            _ => {}
        }
    }
    let (idi, cert, auth_payload) = (idi.unwrap(), cert.unwrap(), auth_payload.unwrap());

    let identity = PeerIdentity::from_identification(idi).unwrap();
    assert_eq!(identity, PeerIdentity::Fqdn("home.example".into()));
    assert_eq!(identity.to_identification(), *idi);
    assert_eq!(cert.encoding, CertEncoding::X509_SIGNATURE);

    let (_, parsed) = x509_parser::parse_x509_certificate(&cert.data).unwrap();
    let now =
        UNIX_EPOCH + Duration::from_secs(parsed.validity().not_before.timestamp() as u64 + 3600);
    let verifier = CertificateVerifier::from_ca_pem(&vector_file("ca.pem")).unwrap();
    let peer = verifier.verify(&cert.data, &[], &identity, now).unwrap();

    let octets = auth::auth_octets(AuthRole::Initiator, &keys, raw[0], &nr, &id_body(idi));
    assert_eq!(
        auth::verify_payload(peer.public_key(), &octets, auth_payload).unwrap(),
        SignatureScheme::Ed25519
    );

    // A payload with another method is refused before any signature check.
    let psk = Authentication::new(hometun_ike::wire::AuthMethod::SHARED_KEY_MIC, vec![0; 32]);
    let err = auth::verify_payload(peer.public_key(), &octets, &psk).unwrap_err();
    assert!(
        matches!(err, CryptoError::UnsupportedAuthMethod(2)),
        "{err}"
    );
    assert_eq!(err.notify_type(), Some(NotifyType::AUTHENTICATION_FAILED));

    // What we would send in its place parses back and verifies.
    let ours = PrivateKey::ed25519_from_seed(&[7; 32]).unwrap();
    let sent = auth::sign_payload(&ours, &octets);
    let mut body = vec![0; sent.buffer_len()];
    let n = sent.emit(&mut body).unwrap();
    let received = Authentication::parse(&body[..n]).unwrap();
    assert_eq!(
        auth::verify_payload(&ours.public_key(), &octets, &received).unwrap(),
        SignatureScheme::Ed25519
    );
}
