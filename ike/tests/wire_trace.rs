//! Known answers from a real strongSwan 5.9.8 conversation (shared/vectors): every IKE message
//! parses and re-emits byte for byte, the cleartext IKE_SA_INIT decodes to what tshark shows,
//! and the SK payloads open with SK_ei/SK_er from the charon logs into the payloads the logs
//! list (and seal back into the same bytes).

#![allow(clippy::unwrap_used)]

use std::process::Command;

use hometun_control::AeadAlg;
use hometun_ike::crypto::SkGcm;
use hometun_ike::wire::*;
use hometun_lab::trace::*;

fn h(text: &str) -> Vec<u8> {
    hex::decode(text).unwrap()
}

/// Frame numbers of the ISAKMP packets, as `tshark -r trace.pcap` lists them.
const IKE_FRAMES: [usize; 18] = [
    1, 2, 3, 4, 11, 12, 13, 14, 15, 16, 17, 18, 25, 26, 27, 28, 33, 34,
];

#[test]
fn every_message_parses_and_re_emits_identically() {
    let messages = trace_messages();
    let frames: Vec<usize> = messages.iter().map(|(o, _)| o.packet).collect();
    assert_eq!(frames, IKE_FRAMES);
    for (origin, bytes) in &messages {
        let message =
            Message::parse(bytes).unwrap_or_else(|e| panic!("packet {}: {e}", origin.packet));
        assert_eq!(
            message.buffer_len(),
            bytes.len(),
            "packet {}",
            origin.packet
        );
        assert_eq!(
            &message.to_bytes().unwrap(),
            bytes,
            "packet {} re-emitted differently",
            origin.packet
        );
        // IKE_SA_INIT travels on 500, everything after on 4500 (MOBIKE floats at IKE_AUTH).
        let port = if message.header.exchange_type == ExchangeType::IKE_SA_INIT {
            500
        } else {
            4500
        };
        assert_eq!(origin.src.port(), port, "packet {}", origin.packet);
    }
}

fn notify_data(payloads: &[Payload], t: NotifyType) -> &[u8] {
    &payloads.notify(t).unwrap_or_else(|| panic!("no {t}")).data
}

/// The values `tshark -r trace.pcap -V` prints for frame 1.
#[test]
fn ike_sa_init_request_decodes_as_tshark_shows() {
    let (_, bytes) = &trace_messages()[0];
    let m = Message::parse(bytes).unwrap();
    assert_eq!(m.header.spi_i, 0x0d22_b5fe_6725_0651);
    assert_eq!(m.header.spi_r, 0);
    assert_eq!(m.header.exchange_type, ExchangeType::IKE_SA_INIT);
    assert_eq!(m.header.flags, Flags(0x08));
    assert_eq!(m.header.message_id, 0);
    assert_eq!(m.header.length, 232);
    assert_eq!((m.header.major_version, m.header.minor_version), (2, 0));

    let Payload::Sa(sa) = &m.payloads[0] else {
        panic!("first payload is not SA")
    };
    assert_eq!(
        sa.proposals,
        vec![Proposal::new(
            1,
            ProtocolId::IKE,
            vec![],
            vec![
                Transform::encr(EncrId::ENCR_AES_GCM_16, Some(128)),
                Transform::prf(PrfId::PRF_HMAC_SHA2_256),
                Transform::dh(DhGroup::CURVE25519),
            ],
        )]
    );
    let Payload::Ke(ke) = &m.payloads[1] else {
        panic!("second payload is not KE")
    };
    assert_eq!(ke.group, DhGroup(31));
    assert_eq!(
        ke.data,
        h("761d432b50fd152416c1d5cb4ba5fceb807bc2b2cb466ca4d745ee6418efd518")
    );
    let Payload::Nonce(nonce) = &m.payloads[2] else {
        panic!("third payload is not a nonce")
    };
    assert_eq!(
        nonce.data,
        h("773f41013ee80a8084d433376b257c3c7b5a414093b30ba0108cc02837f34d2f")
    );
    let notify_types: Vec<u16> = m.notifies().map(|n| n.notify_type.0).collect();
    assert_eq!(notify_types, [16388, 16389, 16430, 16431, 16406]);
    assert_eq!(
        notify_data(&m.payloads, NotifyType::NAT_DETECTION_SOURCE_IP),
        h("9bfe3497848106761029742e91e95346a1edc3cf")
    );
    assert_eq!(
        notify_data(&m.payloads, NotifyType::NAT_DETECTION_DESTINATION_IP),
        h("b1ab904248b88def046154c18b36016294289612")
    );
    let hashes = m.notify(NotifyType::SIGNATURE_HASH_ALGORITHMS).unwrap();
    assert_eq!(
        hashes.hash_algorithms().collect::<Vec<_>>(),
        [
            HashAlgorithm::SHA2_256,
            HashAlgorithm::SHA2_384,
            HashAlgorithm::SHA2_512,
            HashAlgorithm::IDENTITY
        ]
    );
    for n in m.notifies() {
        assert_eq!(n.protocol, ProtocolId::NONE);
        assert!(n.spi.is_empty());
    }
}

/// The values `tshark -r trace.pcap -V` prints for frame 2.
#[test]
fn ike_sa_init_response_decodes_as_tshark_shows() {
    let (_, bytes) = &trace_messages()[1];
    let m = Message::parse(bytes).unwrap();
    assert_eq!(m.header.spi_r, 0x603c_1b5a_216a_cfd2);
    assert_eq!(m.header.flags, Flags(0x20));
    assert_eq!(m.header.length, 265);
    let types: Vec<PayloadType> = m.payloads.iter().map(Payload::payload_type).collect();
    use PayloadType as P;
    assert_eq!(
        types,
        [
            P::SA,
            P::KE,
            P::NONCE,
            P::NOTIFY,
            P::NOTIFY,
            P::CERTREQ,
            P::NOTIFY,
            P::NOTIFY,
            P::NOTIFY,
            P::NOTIFY
        ]
    );
    let Payload::CertReq(req) = &m.payloads[5] else {
        panic!("no CERTREQ")
    };
    assert_eq!(req.encoding, CertEncoding::X509_SIGNATURE);
    assert_eq!(
        req.authorities().collect::<Vec<_>>(),
        [h("ef9b275ecc3ff67bc53217fa84225370b329576d").as_slice()]
    );
    let notify_types: Vec<u16> = m.notifies().map(|n| n.notify_type.0).collect();
    assert_eq!(notify_types, [16388, 16389, 16430, 16431, 16418, 16404]);
    let Payload::Ke(ke) = &m.payloads[1] else {
        panic!("no KE")
    };
    assert_eq!(
        ke.data,
        h("03e818a4a6d4a6b9c2eec9416a852280c80bbc452ff902a9140e78404b6d7135")
    );
}

fn strongswan_name(payload: &Payload) -> String {
    match payload {
        Payload::Notify(n) => format!("N({})", strongswan_notify_name(&n.notify_type.to_string())),
        other => other.to_string(),
    }
}

#[test]
fn sk_payloads_open_with_logged_keys_into_the_logged_payloads_and_seal_back() {
    let ei = SkGcm::new(AeadAlg::AesGcm128, &sk_ei()).unwrap();
    let er = SkGcm::new(AeadAlg::AesGcm128, &sk_er()).unwrap();
    let logged = logged_messages();
    let mut compared = 0;
    let mut opened = 0;
    for (origin, bytes) in trace_messages() {
        let header = Header::parse(&bytes).unwrap();
        let from_initiator = header.flags.initiator();
        let payloads = if header.exchange_type == ExchangeType::IKE_SA_INIT {
            Message::parse(&bytes).unwrap().payloads
        } else {
            let cipher = if from_initiator { &ei } else { &er };
            let opened_message = ProtectedMessage::open(&bytes, cipher)
                .unwrap_or_else(|e| panic!("packet {}: {e}", origin.packet));
            assert!(opened_message.outer.is_empty());
            assert_eq!(opened_message.header, header);
            opened += 1;

            // Seal the payloads again with the same IV and padding: the same bytes come out.
            let message = Message::parse(&bytes).unwrap();
            let sk = message.encrypted().unwrap();
            let iv = &sk.data[..8];
            let pad_len = sk.data.len() - 8 - 16 - 1 - payloads_len(&opened_message.inner);
            let resealed = opened_message
                .seal(cipher, iv, u8::try_from(pad_len).unwrap())
                .unwrap();
            assert_eq!(
                resealed, bytes,
                "packet {} sealed differently",
                origin.packet
            );

            // The other direction's key fails the integrity check.
            let wrong = if from_initiator { &er } else { &ei };
            assert_eq!(
                ProtectedMessage::open(&bytes, wrong),
                Err(SkError::IntegrityCheckFailed)
            );
            opened_message.inner
        };
        let ours: Vec<String> = payloads.iter().map(strongswan_name).collect();
        let matching: Vec<&LoggedMessage> = logged
            .iter()
            .filter(|l| {
                l.exchange == header.exchange_type.to_string()
                    && l.response == header.flags.response()
                    && l.message_id == header.message_id
                    && l.from_initiator == from_initiator
            })
            .collect();
        for l in &matching {
            assert_eq!(ours, l.payloads, "packet {}", origin.packet);
        }
        if !matching.is_empty() {
            compared += 1;
        }
    }
    assert_eq!(opened, 16);
    // The charon logs end before the responder logs its answer to the final DELETE.
    assert!(compared >= 17, "only {compared} messages found in the logs");
}

#[test]
fn ike_auth_request_inner_payloads() {
    let ei = SkGcm::new(AeadAlg::AesGcm128, &sk_ei()).unwrap();
    let (_, bytes) = &trace_messages()[2];
    let inner = ProtectedMessage::open(bytes, &ei).unwrap().inner;
    let Payload::IdI(idi) = &inner[0] else {
        panic!("first inner payload is not IDi")
    };
    assert_eq!(*idi, Identification::fqdn("home.example"));
    let Payload::Auth(auth) = &inner[5] else {
        panic!("sixth inner payload is not AUTH")
    };
    let signature = auth.digital_signature().unwrap();
    // Ed25519 AlgorithmIdentifier (RFC 8420), 64-byte signature.
    assert_eq!(signature.algorithm, h("300506032b6570").as_slice());
    assert_eq!(signature.signature.len(), 64);
    let Payload::Sa(sa) = &inner[6] else {
        panic!("no SA")
    };
    assert_eq!(
        sa.proposals,
        [Proposal::new(
            1,
            ProtocolId::ESP,
            h("bfcb014d"),
            vec![
                Transform::encr(EncrId::ENCR_AES_GCM_16, Some(128)),
                Transform::esn(EsnId::NO_ESN)
            ]
        )]
    );
    let (Payload::TsI(tsi), Payload::TsR(tsr)) = (&inner[7], &inner[8]) else {
        panic!("no TSi/TSr")
    };
    assert_eq!(
        tsi.selectors,
        [TrafficSelector::Address(AddressRange::ipv6_prefix(
            "2001:db8:1::2".parse().unwrap(),
            128
        ))]
    );
    assert_eq!(
        tsr.selectors,
        [TrafficSelector::Address(AddressRange::ipv6_prefix(
            "::".parse().unwrap(),
            0
        ))]
    );
}

/// tshark, run now, agrees with our parse of every cleartext field it decodes.
#[test]
fn tshark_agrees_on_the_cleartext_fields() {
    // Read the trace first: a missing trace must fail, not look like a missing tshark.
    let messages = trace_messages();
    let fields = [
        "frame.number",
        "isakmp.ispi",
        "isakmp.rspi",
        "isakmp.exchangetype",
        "isakmp.typepayload",
        "isakmp.notify.msgtype",
        "isakmp.key_exchange.dh_group",
        "isakmp.key_exchange.data",
        "isakmp.nonce",
        "isakmp.ike2.attr.key_length",
    ];
    let mut command = Command::new("tshark");
    command
        .arg("-r")
        .arg(trace_path())
        .args(["-Y", "isakmp", "-T", "fields"]);
    command.args(["-E", "separator=|", "-E", "aggregator=,"]);
    for f in fields {
        command.args(["-e", f]);
    }
    let output = match command.output() {
        Ok(output) if output.status.success() => output,
        other => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "tshark is needed (scripts/install-deps.sh installs it): {other:?}"
            );
            eprintln!("skipping: tshark did not run: {other:?}");
            return;
        }
    };
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), messages.len());
    for (line, (origin, bytes)) in lines.iter().zip(&messages) {
        let cols: Vec<&str> = line.split('|').collect();
        let m = Message::parse(bytes).unwrap();
        assert_eq!(cols[0], origin.packet.to_string());
        assert_eq!(cols[1], format!("{:016x}", m.header.spi_i));
        assert_eq!(cols[2], format!("{:016x}", m.header.spi_r));
        assert_eq!(cols[3], m.header.exchange_type.0.to_string());
        // tshark lists proposal (2) and transform (3) substructures among the payloads.
        let theirs: Vec<&str> = cols[4]
            .split(',')
            .filter(|t| *t != "2" && *t != "3")
            .collect();
        let ours: Vec<String> = m
            .payloads
            .iter()
            .map(|p| p.payload_type().0.to_string())
            .collect();
        assert_eq!(theirs, ours, "packet {}", origin.packet);
        let ours: Vec<String> = m.notifies().map(|n| n.notify_type.0.to_string()).collect();
        assert_eq!(cols[5], ours.join(","), "packet {}", origin.packet);
        let ke = m.payloads.iter().find_map(|p| match p {
            Payload::Ke(ke) => Some(ke),
            _ => None,
        });
        assert_eq!(
            cols[6],
            ke.map(|k| k.group.0.to_string()).unwrap_or_default()
        );
        assert_eq!(
            cols[7],
            ke.map(|k| hex::encode(&k.data)).unwrap_or_default()
        );
        let nonce = m.payloads.iter().find_map(|p| match p {
            Payload::Nonce(n) => Some(hex::encode(&n.data)),
            _ => None,
        });
        assert_eq!(cols[8], nonce.unwrap_or_default());
        let key_lengths: Vec<String> = m
            .payloads
            .iter()
            .filter_map(|p| match p {
                Payload::Sa(sa) => Some(sa),
                _ => None,
            })
            .flat_map(|sa| sa.proposals.iter().flat_map(|p| p.transforms.iter()))
            .filter_map(|t| t.key_length().map(|k| k.to_string()))
            .collect();
        assert_eq!(cols[9], key_lengths.join(","));
    }
}
