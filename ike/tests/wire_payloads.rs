//! Parse/emit of the header and every payload type on fixed byte arrays, and the errors each
//! kind of malformed input gives (and the Notify each maps to).

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hometun_control::Spi;
use hometun_ike::wire::*;

/// Hex with spaces and newlines to bytes.
fn h(text: &str) -> Vec<u8> {
    let digits: String = text.split_whitespace().collect();
    hex::decode(digits).unwrap()
}

/// A generic payload header + body.
fn payload(next: u8, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![next, flags];
    out.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// An IKE header followed by `payloads`, with the length filled in.
fn message(first: u8, exchange: u8, flags: u8, payloads: &[u8]) -> Vec<u8> {
    let mut out = h("0d22b5fe67250651 603c1b5a216acfd2");
    out.extend_from_slice(&[first, 0x20, exchange, flags]);
    out.extend_from_slice(&7u32.to_be_bytes());
    out.extend_from_slice(&((28 + payloads.len()) as u32).to_be_bytes());
    out.extend_from_slice(payloads);
    out
}

fn emit_body(len: usize, emit: impl FnOnce(&mut [u8]) -> Result<usize, WireError>) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let written = emit(&mut buf).unwrap();
    assert_eq!(
        written, len,
        "emit wrote a different length than buffer_len"
    );
    buf
}

#[test]
fn header_round_trip() {
    let bytes = h("0d22b5fe67250651 0000000000000000 21 20 22 08 00000000 000000e8");
    let header = Header::parse(&bytes).unwrap();
    assert_eq!(
        header,
        Header {
            spi_i: 0x0d22_b5fe_6725_0651,
            spi_r: 0,
            next_payload: PayloadType::SA,
            major_version: 2,
            minor_version: 0,
            exchange_type: ExchangeType::IKE_SA_INIT,
            flags: Flags(Flags::INITIATOR),
            message_id: 0,
            length: 232,
        }
    );
    assert!(header.flags.initiator() && !header.flags.response());
    assert_eq!(emit_body(HEADER_LEN, |b| header.emit(b)), bytes);

    // Minor version and reserved flag bits survive.
    let odd = h("0000000000000001 0000000000000002 00 2f 25 a1 ffffffff 0000001c");
    let header = Header::parse(&odd).unwrap();
    assert_eq!((header.major_version, header.minor_version), (2, 15));
    assert_eq!(header.flags.0, 0xa1);
    assert!(header.flags.response() && !header.flags.initiator());
    assert_eq!(header.message_id, u32::MAX);
    assert_eq!(emit_body(HEADER_LEN, |b| header.emit(b)), odd);

    assert!(matches!(
        Header::parse(&bytes[..27]),
        Err(WireError::Truncated {
            needed: 4,
            available: 3,
            ..
        })
    ));
    let mut small = [0u8; 27];
    assert!(matches!(
        header.emit(&mut small),
        Err(WireError::BufferTooSmall { .. })
    ));
}

#[test]
fn flags_constructor() {
    assert_eq!(Flags::new(true, false).0, 0x08);
    assert_eq!(Flags::new(false, true).0, 0x20);
    assert_eq!(Flags::new(true, true).to_string(), "I R");
    assert_eq!(Flags(0).to_string(), "-");
}

#[test]
fn sa_payload_of_ike_sa_init() {
    // strongSwan's proposal: aes128gcm16-prfsha256-curve25519.
    let body = h("00000024 01010003
                  0300000c 01000014 800e0080
                  03000008 02000005
                  00000008 0400001f");
    let sa = SecurityAssociation::parse(&body).unwrap();
    let expected = SecurityAssociation::new(vec![Proposal::new(
        1,
        ProtocolId::IKE,
        vec![],
        vec![
            Transform::encr(EncrId::ENCR_AES_GCM_16, Some(128)),
            Transform::prf(PrfId::PRF_HMAC_SHA2_256),
            Transform::dh(DhGroup::CURVE25519),
        ],
    )]);
    assert_eq!(sa, expected);
    assert_eq!(sa.proposals[0].transforms[0].key_length(), Some(128));
    assert_eq!(
        sa.proposals[0].to_string(),
        "#1 IKE ENCR_AES_GCM_16/128 PRF_HMAC_SHA2_256 CURVE25519"
    );
    assert_eq!(emit_body(sa.buffer_len(), |b| sa.emit(b)), body);
}

#[test]
fn sa_payload_two_esp_proposals_with_tlv_attribute_and_unknown_ids() {
    let body = h("02000020 01030402 11223344
                  0300000c 01000014 800e0100
                  00000008 05000000
                  0000001b 02030401 11223344
                  0000000f 0100beef 00990003 616263");
    let sa = SecurityAssociation::parse(&body).unwrap();
    assert_eq!(sa.proposals.len(), 2);
    let second = &sa.proposals[1];
    assert_eq!(second.number, 2);
    assert_eq!(second.spi, h("11223344"));
    assert_eq!(second.transforms[0].transform_id, 0xbeef);
    assert_eq!(second.transforms[0].id_name(), None);
    assert_eq!(
        second.transforms[0].attributes[0],
        TransformAttribute {
            attribute_type: AttributeType(0x99),
            value: AttributeValue::Long(b"abc".to_vec()),
        }
    );
    assert_eq!(
        sa.proposals[0]
            .transforms_of(TransformType::ESN)
            .map(|t| t.transform_id)
            .collect::<Vec<_>>(),
        vec![0]
    );
    assert_eq!(emit_body(sa.buffer_len(), |b| sa.emit(b)), body);
}

#[test]
fn sa_payload_errors() {
    // Last proposal says "more follow".
    let more = h("02000010 01010001 00000008 0400001f");
    assert!(matches!(
        SecurityAssociation::parse(&more),
        Err(WireError::Truncated { .. })
    ));
    // First proposal says "last" but another follows.
    let mut two = h("00000010 01010001 00000008 0400001f");
    two.extend_from_slice(&two.clone());
    assert_eq!(
        SecurityAssociation::parse(&two),
        Err(WireError::TrailingBytes(16))
    );
    // Transform count 2, one transform.
    let count = h("00000010 01010002 00000008 0400001f");
    assert!(SecurityAssociation::parse(&count).is_err());
    // Transform count 1 but the transform says more follow.
    let substruc = h("00000010 01010001 03000008 0400001f");
    assert!(matches!(
        SecurityAssociation::parse(&substruc),
        Err(WireError::InvalidValue { .. })
    ));
    // Proposal length shorter than its header.
    let short = h("00000004 01010001");
    assert!(matches!(
        SecurityAssociation::parse(&short),
        Err(WireError::InvalidLength { length: 4, .. })
    ));
    // Bytes left inside a proposal after its transforms.
    let extra = h("00000012 01010001 00000008 0400001f 0000");
    assert!(matches!(
        SecurityAssociation::parse(&extra),
        Err(WireError::InvalidLength { .. })
    ));
    // A TLV attribute overrunning its transform.
    let attr = h("00000010 01010001 0000000c 01000014 00990009");
    assert!(matches!(
        SecurityAssociation::parse(&attr),
        Err(WireError::Truncated { .. })
    ));
    // Unknown Last Substruc value.
    let weird = h("07000010 01010001 00000008 0400001f");
    assert!(matches!(
        SecurityAssociation::parse(&weird),
        Err(WireError::InvalidValue { value: 7, .. })
    ));
    for bad in [
        &more, &two, &count, &substruc, &short, &extra, &attr, &weird,
    ] {
        let e = SecurityAssociation::parse(bad).unwrap_err();
        assert_eq!(e.notify_type(), Some(NotifyType::INVALID_SYNTAX), "{e}");
    }
}

#[test]
fn ke_and_nonce() {
    let body = h("001f0000 761d432b50fd152416c1d5cb4ba5fceb807bc2b2cb466ca4d745ee6418efd518");
    let ke = KeyExchange::parse(&body).unwrap();
    assert_eq!(ke.group, DhGroup::CURVE25519);
    assert_eq!(ke.data.len(), 32);
    assert_eq!(emit_body(ke.buffer_len(), |b| ke.emit(b)), body);
    assert!(KeyExchange::parse(&h("001f00")).is_err());

    for len in [16usize, 32, 256] {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let nonce = Nonce::parse(&data).unwrap();
        assert_eq!(emit_body(nonce.buffer_len(), |b| nonce.emit(b)), data);
    }
    for len in [0usize, 15, 257] {
        assert_eq!(
            Nonce::parse(&vec![1; len]),
            Err(WireError::InvalidLength {
                what: "nonce",
                length: len
            })
        );
        let mut buf = vec![0; len];
        assert!(Nonce::new(vec![1; len]).emit(&mut buf).is_err());
    }
}

#[test]
fn identification_cert_certreq_auth() {
    let body = h("02000000 686f6d652e6578616d706c65");
    let id = Identification::parse(&body).unwrap();
    assert_eq!(id, Identification::fqdn("home.example"));
    assert_eq!(emit_body(id.buffer_len(), |b| id.emit(b)), body);
    assert_eq!(
        Identification::ipv4(Ipv4Addr::new(192, 0, 2, 1)).data,
        vec![192, 0, 2, 1]
    );
    assert!(Identification::parse(&h("020000")).is_err());

    let body = h("04 3082 0148 0102");
    let cert = Certificate::parse(&body).unwrap();
    assert_eq!(cert, Certificate::x509(h("3082 0148 0102")));
    assert_eq!(emit_body(cert.buffer_len(), |b| cert.emit(b)), body);
    assert!(Certificate::parse(&[]).is_err());

    let ca = h("ef9b275ecc3ff67bc53217fa84225370b329576d");
    let mut body = vec![4];
    body.extend_from_slice(&ca);
    body.extend_from_slice(&ca);
    let req = CertificateRequest::parse(&body).unwrap();
    assert_eq!(req.encoding, CertEncoding::X509_SIGNATURE);
    assert_eq!(
        req.authorities().collect::<Vec<_>>(),
        vec![&ca[..], &ca[..]]
    );
    let hash: [u8; 20] = ca.as_slice().try_into().unwrap();
    assert_eq!(req, CertificateRequest::x509(&[hash, hash]));
    assert_eq!(emit_body(req.buffer_len(), |b| req.emit(b)), body);

    // RFC 7427 AUTH with the Ed25519 AlgorithmIdentifier.
    let signature = [0x5a; 64];
    let mut body = h("0e000000 07 300506032b6570");
    body.extend_from_slice(&signature);
    let auth = Authentication::parse(&body).unwrap();
    assert_eq!(auth.method, AuthMethod::DIGITAL_SIGNATURE);
    let parts = auth.digital_signature().unwrap();
    assert_eq!(parts.algorithm, h("300506032b6570").as_slice());
    assert_eq!(parts.signature, &signature[..]);
    assert_eq!(
        Authentication::new_digital_signature(&h("300506032b6570"), &signature).unwrap(),
        auth
    );
    assert_eq!(emit_body(auth.buffer_len(), |b| auth.emit(b)), body);
    // The AlgorithmIdentifier length overruns the data.
    let overrun = Authentication::new(AuthMethod::DIGITAL_SIGNATURE, h("09 3005"));
    assert!(overrun.digital_signature().is_err());
    let psk = Authentication::new(AuthMethod::SHARED_KEY_MIC, vec![1; 32]);
    assert!(psk.digital_signature().is_err());
}

#[test]
fn notify_payloads() {
    let body = h("00004004 9bfe3497848106761029742e91e95346a1edc3cf");
    let natd = Notify::parse(&body).unwrap();
    assert_eq!(
        natd,
        Notify::new(
            NotifyType::NAT_DETECTION_SOURCE_IP,
            h("9bfe3497848106761029742e91e95346a1edc3cf")
        )
    );
    assert_eq!(emit_body(natd.buffer_len(), |b| natd.emit(b)), body);

    let body = h("03044009 d3453a9c");
    let rekey = Notify::parse(&body).unwrap();
    assert_eq!(
        rekey,
        Notify::with_spi(ProtocolId::ESP, h("d3453a9c"), NotifyType::REKEY_SA, vec![])
    );
    assert_eq!(emit_body(rekey.buffer_len(), |b| rekey.emit(b)), body);

    let body = h("0000402f 0002000300040005");
    let hashes = Notify::parse(&body).unwrap();
    assert_eq!(
        hashes.hash_algorithms().collect::<Vec<_>>(),
        vec![
            HashAlgorithm::SHA2_256,
            HashAlgorithm::SHA2_384,
            HashAlgorithm::SHA2_512,
            HashAlgorithm::IDENTITY
        ]
    );
    assert_eq!(
        Notify::signature_hash_algorithms(&[
            HashAlgorithm::SHA2_256,
            HashAlgorithm::SHA2_384,
            HashAlgorithm::SHA2_512,
            HashAlgorithm::IDENTITY
        ]),
        hashes
    );

    // An unknown notify type survives.
    let body = h("0000ffff 0102");
    let unknown = Notify::parse(&body).unwrap();
    assert_eq!(unknown.notify_type, NotifyType(0xffff));
    assert_eq!(emit_body(unknown.buffer_len(), |b| unknown.emit(b)), body);

    // SPI size larger than the body.
    assert!(Notify::parse(&h("03084009 d3453a9c")).is_err());
}

#[test]
fn delete_payloads() {
    let body = h("03040002 d3453a9c 84f7a06a");
    let delete = Delete::parse(&body).unwrap();
    let spis = [Spi(0xd345_3a9c), Spi(0x84f7_a06a)];
    assert_eq!(delete, Delete::esp(&spis));
    assert_eq!(delete.esp_spis().collect::<Vec<_>>(), spis);
    assert_eq!(emit_body(delete.buffer_len(), |b| delete.emit(b)), body);

    let body = h("01000000");
    let ike = Delete::parse(&body).unwrap();
    assert_eq!(ike, Delete::ike());
    assert_eq!(emit_body(ike.buffer_len(), |b| ike.emit(b)), body);

    // Seven bytes of SPIs for two four-byte SPIs; SPI count with SPI size zero.
    assert!(Delete::parse(&h("03040002 d3453a9c 84f7a0")).is_err());
    assert!(Delete::parse(&h("01000001")).is_err());
    let mut bad = Delete::esp(&[Spi(1)]);
    bad.spis.push(vec![1, 2, 3]);
    assert!(bad.emit(&mut [0; 64]).is_err());
}

#[test]
fn traffic_selectors() {
    let body = h("02000000
                  08000028 0000ffff 20010db8000100000000000000000002 20010db8000100000000000000000002
                  07110010 01f401f4 c0000201 c0000202");
    let ts = TrafficSelectors::parse(&body).unwrap();
    let host: Ipv6Addr = "2001:db8:1::2".parse().unwrap();
    assert_eq!(
        ts.selectors,
        vec![
            TrafficSelector::Address(AddressRange::ipv6_prefix(host, 128)),
            TrafficSelector::Address(AddressRange {
                ip_protocol: 17,
                start_port: 500,
                end_port: 500,
                start: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                end: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
            }),
        ]
    );
    assert_eq!(ts.ranges().count(), 2);
    assert_eq!(emit_body(ts.buffer_len(), |b| ts.emit(b)), body);

    let any = AddressRange::ipv6_prefix(Ipv6Addr::UNSPECIFIED, 0);
    assert_eq!(any.end, IpAddr::V6(Ipv6Addr::from(u128::MAX)));
    let net = AddressRange::ipv6_prefix("2001:db8:1::77".parse().unwrap(), 64);
    assert_eq!(net.start, "2001:db8:1::".parse::<IpAddr>().unwrap());
    assert_eq!(
        net.end,
        "2001:db8:1:0:ffff:ffff:ffff:ffff"
            .parse::<IpAddr>()
            .unwrap()
    );
    let v4 = AddressRange::ipv4_prefix(Ipv4Addr::new(198, 51, 100, 7), 24);
    assert_eq!(v4.start, IpAddr::V4(Ipv4Addr::new(198, 51, 100, 0)));
    assert_eq!(v4.end, IpAddr::V4(Ipv4Addr::new(198, 51, 100, 255)));

    // An unknown selector type is kept whole.
    let body = h("01000000 0a070008 aabbccdd");
    let ts = TrafficSelectors::parse(&body).unwrap();
    assert_eq!(
        ts.selectors,
        vec![TrafficSelector::Unknown {
            ts_type: TsType::TS_SECLABEL,
            ip_protocol: 7,
            data: h("aabbccdd"),
        }]
    );
    assert_eq!(emit_body(ts.buffer_len(), |b| ts.emit(b)), body);

    // IPv4 selector with the IPv6 length; count larger than the selectors; bytes after them.
    assert!(TrafficSelectors::parse(&h("01000000 07000028 0000ffff c0000201 c0000201")).is_err());
    assert!(TrafficSelectors::parse(&h("02000000 07000010 0000ffff c0000201 c0000201")).is_err());
    assert_eq!(
        TrafficSelectors::parse(&h("01000000 07000010 0000ffff c0000201 c0000201 00")),
        Err(WireError::TrailingBytes(1))
    );
    // Mixed families cannot be emitted.
    let mixed = TrafficSelectors::new(vec![TrafficSelector::Address(AddressRange::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ))]);
    assert!(mixed.emit(&mut [0; 64]).is_err());
}

#[test]
fn configuration_vendor_id_and_fragment() {
    let body = h("01000000 00080000 000a0000 00080011 20010db8000100000000000000000002 40");
    let cp = Configuration::parse(&body).unwrap();
    assert_eq!(cp.cfg_type, ConfigType::CFG_REQUEST);
    assert_eq!(
        cp.attributes
            .iter()
            .map(|a| a.attribute_type)
            .collect::<Vec<_>>(),
        vec![
            ConfigAttributeType::INTERNAL_IP6_ADDRESS,
            ConfigAttributeType::INTERNAL_IP6_DNS,
            ConfigAttributeType::INTERNAL_IP6_ADDRESS
        ]
    );
    assert_eq!(cp.attributes[2].value.len(), 17);
    assert_eq!(emit_body(cp.buffer_len(), |b| cp.emit(b)), body);
    assert!(Configuration::parse(&h("01000000 00080005 0000")).is_err());

    let v = VendorId::parse(&h("882fe56d6fd20dbc2251613b2ebe5beb"));
    assert_eq!(
        emit_body(v.buffer_len(), |b| v.emit(b)),
        h("882fe56d6fd20dbc2251613b2ebe5beb")
    );

    let body = h("00010003 0102030405");
    let skf = EncryptedFragment::parse(PayloadType::IDI, &body).unwrap();
    assert_eq!((skf.fragment_number, skf.total_fragments), (1, 3));
    assert_eq!(skf.first_inner, PayloadType::IDI);
    assert_eq!(emit_body(skf.buffer_len(), |b| skf.emit(b)), body);
    assert!(EncryptedFragment::parse(PayloadType::NONE, &h("000100")).is_err());
}

#[test]
fn message_with_every_cleartext_payload_type_round_trips() {
    let mut chain = Vec::new();
    chain.extend(payload(
        34,
        0,
        &h("00000024 01010003 0300000c 01000014 800e0080 03000008 02000005 00000008 0400001f"),
    ));
    chain.extend(payload(
        40,
        0,
        &h("001f0000 761d432b50fd152416c1d5cb4ba5fceb807bc2b2cb466ca4d745ee6418efd518"),
    ));
    chain.extend(payload(35, 0, &[0x77; 32]));
    chain.extend(payload(36, 0, &h("02000000 686f6d652e6578616d706c65")));
    chain.extend(payload(37, 0, &h("02000000 7670732e6578616d706c65")));
    chain.extend(payload(38, 0, &h("04 3082")));
    chain.extend(payload(
        39,
        0,
        &h("04 ef9b275ecc3ff67bc53217fa84225370b329576d"),
    ));
    chain.extend(payload(41, 0, &h("0e000000 07 300506032b6570 0102")));
    chain.extend(payload(42, 0, &h("00004006 0102")));
    chain.extend(payload(43, 0, &h("03040001 d3453a9c")));
    chain.extend(payload(44, 0, &h("aabb")));
    chain.extend(payload(
        45,
        0,
        &h("01000000 07000010 0000ffff c0000201 c0000201"),
    ));
    chain.extend(payload(
        47,
        0,
        &h("01000000 07000010 0000ffff c0000201 c0000201"),
    ));
    chain.extend(payload(48, 0, &h("01000000 00080000")));
    chain.extend(payload(0, 0, &h("0102030405")));
    let bytes = message(33, 34, 0x08, &chain);
    let msg = Message::parse(&bytes).unwrap();
    let types: Vec<u8> = msg.payloads.iter().map(|p| p.payload_type().0).collect();
    assert_eq!(
        types,
        vec![33, 34, 40, 35, 36, 37, 38, 39, 41, 42, 43, 44, 45, 47, 48]
    );
    assert_eq!(
        msg.payloads.last(),
        Some(&Payload::Unknown(UnknownPayload {
            payload_type: PayloadType::EAP,
            critical: false,
            body: h("0102030405"),
        }))
    );
    assert_eq!(msg.to_bytes().unwrap(), bytes);
    assert_eq!(msg.buffer_len(), bytes.len());
    assert!(msg.notify(NotifyType::COOKIE).is_some());
    assert_eq!(msg.notifies().count(), 1);
    assert!(msg.encrypted().is_none());
}

#[test]
fn message_with_sk_round_trips_and_sk_must_be_last() {
    let sk_body = [0xab; 40];
    let bytes = message(46, 35, 0x08, &payload(35, 0, &sk_body));
    let msg = Message::parse(&bytes).unwrap();
    assert_eq!(
        msg.payloads,
        vec![Payload::Encrypted(Encrypted {
            first_inner: PayloadType::IDI,
            data: sk_body.to_vec(),
        })]
    );
    assert_eq!(msg.to_bytes().unwrap(), bytes);

    // SK followed by a Notify: its Next Payload names the inner payload, so the only way
    // another payload can follow is as trailing bytes.
    let mut chain = payload(35, 0, &sk_body);
    chain.extend(payload(0, 0, &h("00004006")));
    let e = Message::parse(&message(46, 35, 0x08, &chain)).unwrap_err();
    assert_eq!(e, WireError::EncryptedNotLast(PayloadType::SK));
    assert_eq!(e.notify_type(), Some(NotifyType::INVALID_SYNTAX));

    // Emitting SK anywhere but last fails.
    let header = Header::new(ExchangeType::IKE_AUTH, 1, 2, Flags::new(true, false), 1);
    let wrong = Message::new(
        header,
        vec![
            Payload::Encrypted(Encrypted {
                first_inner: PayloadType::NONE,
                data: vec![0; 25],
            }),
            Payload::Notify(Notify::new(NotifyType::COOKIE, vec![1])),
        ],
    );
    assert_eq!(
        wrong.to_bytes(),
        Err(WireError::EncryptedNotLast(PayloadType::SK))
    );
}

#[test]
fn unknown_payloads_and_the_critical_bit() {
    // A non-critical unknown payload is kept, critical bit and all.
    let mut chain = payload(99, 0, &h("00004006 01"));
    chain.extend(payload(0, 0, &h("cafe")));
    let bytes = message(41, 37, 0x20, &chain);
    let msg = Message::parse(&bytes).unwrap();
    assert_eq!(
        msg.payloads[1],
        Payload::Unknown(UnknownPayload {
            payload_type: PayloadType(99),
            critical: false,
            body: h("cafe"),
        })
    );
    assert_eq!(msg.to_bytes().unwrap(), bytes);

    // The same payload with the critical bit: UNSUPPORTED_CRITICAL_PAYLOAD with its type.
    let mut chain = payload(99, 0, &h("00004006 01"));
    chain.extend(payload(0, 0x80, &h("cafe")));
    let e = Message::parse(&message(41, 37, 0x20, &chain)).unwrap_err();
    assert_eq!(e, WireError::UnsupportedCriticalPayload(PayloadType(99)));
    assert_eq!(
        e.notify_type(),
        Some(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD)
    );
    assert_eq!(e.notify_data(), vec![99]);

    // EAP is not modelled: critical EAP is refused the same way.
    let e = Message::parse(&message(48, 35, 0x08, &payload(0, 0x80, &h("01")))).unwrap_err();
    assert_eq!(e, WireError::UnsupportedCriticalPayload(PayloadType::EAP));

    // A critical bit on a payload type we know is ignored (RFC 7296 2.5), and not re-sent.
    let bytes = message(41, 37, 0x20, &payload(0, 0x80, &h("00004006 01")));
    let msg = Message::parse(&bytes).unwrap();
    assert!(matches!(msg.payloads[0], Payload::Notify(_)));
    let mut expected = bytes.clone();
    expected[29] = 0;
    assert_eq!(msg.to_bytes().unwrap(), expected);

    // An "unknown" payload with a type we model, or NONE, cannot be emitted.
    for t in [PayloadType::NONCE, PayloadType::NONE] {
        let bogus = Payload::Unknown(UnknownPayload {
            payload_type: t,
            critical: false,
            body: vec![],
        });
        assert!(bogus.emit(PayloadType::NONE, &mut [0; 8]).is_err());
    }
}

#[test]
fn chain_and_message_errors() {
    let good = message(41, 37, 0x20, &payload(0, 0, &h("00004006 01")));
    assert!(Message::parse(&good).is_ok());

    // Major version 1: INVALID_MAJOR_VERSION.
    let mut v1 = good.clone();
    v1[17] = 0x10;
    let e = Message::parse(&v1).unwrap_err();
    assert_eq!(e, WireError::UnsupportedMajorVersion(1));
    assert_eq!(e.notify_type(), Some(NotifyType::INVALID_MAJOR_VERSION));
    // ... but the header still parses, so a responder can answer.
    assert_eq!(Header::parse(&v1).unwrap().major_version, 1);

    // Header length differs from the datagram.
    let mut long = good.clone();
    long.push(0);
    assert!(matches!(
        Message::parse(&long),
        Err(WireError::LengthMismatch {
            declared: 37,
            actual: 38
        })
    ));
    assert!(matches!(
        Message::parse(&good[..good.len() - 1]),
        Err(WireError::LengthMismatch { .. })
    ));

    // Payload length below the generic header; beyond the message.
    let mut short = good.clone();
    short[31] = 3;
    assert!(matches!(
        Message::parse(&short),
        Err(WireError::InvalidLength { length: 3, .. })
    ));
    let mut over = good.clone();
    over[31] = 10;
    assert!(matches!(
        Message::parse(&over),
        Err(WireError::Truncated { .. })
    ));

    // Next Payload NONE with bytes after; Next Payload set with nothing after.
    let mut chain = payload(0, 0, &h("00004006"));
    chain.extend(h("00000004"));
    assert_eq!(
        Message::parse(&message(41, 37, 0x20, &chain)),
        Err(WireError::TrailingBytes(4))
    );
    assert!(matches!(
        Message::parse(&message(41, 37, 0x20, &payload(41, 0, &h("00004006")))),
        Err(WireError::Truncated { .. })
    ));
    // A header whose first payload is NONE but bytes follow.
    assert_eq!(
        Message::parse(&message(0, 37, 0x20, &h("00000004"))),
        Err(WireError::TrailingBytes(4))
    );
    // Empty message: header only.
    let empty = message(0, 37, 0x20, &[]);
    assert_eq!(Message::parse(&empty).unwrap().payloads, vec![]);
}

#[test]
fn non_esp_marker() {
    let ike = message(0, 37, 0x20, &[]);
    let datagram = add_non_esp_marker(&ike);
    assert_eq!(&datagram[..4], &NON_ESP_MARKER);
    assert_eq!(strip_non_esp_marker(&datagram), Some(&ike[..]));
    assert_eq!(classify_port_4500(&datagram), Ok(Port4500::Ike(&ike[..])));
    let esp = h("d3453a9c 00000001 aabbcc");
    assert_eq!(strip_non_esp_marker(&esp), None);
    assert_eq!(classify_port_4500(&esp), Ok(Port4500::Esp(&esp[..])));
    assert_eq!(classify_port_4500(&[0xff]), Ok(Port4500::NatKeepalive));
    assert!(classify_port_4500(&[0, 0]).is_err());
}

#[test]
fn building_a_message_from_types() {
    let header = Header::new(
        ExchangeType::IKE_SA_INIT,
        0x1122,
        0,
        Flags::new(true, false),
        0,
    );
    let msg = Message::new(
        header,
        vec![
            Payload::Sa(SecurityAssociation::new(vec![Proposal::new(
                1,
                ProtocolId::IKE,
                vec![],
                vec![
                    Transform::encr(EncrId::ENCR_AES_GCM_16, Some(256)),
                    Transform::prf(PrfId::PRF_HMAC_SHA2_256),
                    Transform::dh(DhGroup::CURVE25519),
                    Transform::dh(DhGroup::ECP_256),
                ],
            )])),
            Payload::Ke(KeyExchange::new(DhGroup::CURVE25519, vec![9; 32])),
            Payload::Nonce(Nonce::new(vec![7; 32])),
            Payload::Notify(Notify::signature_hash_algorithms(&[
                HashAlgorithm::IDENTITY,
            ])),
        ],
    );
    let bytes = msg.to_bytes().unwrap();
    let parsed = Message::parse(&bytes).unwrap();
    // Next Payload and Length were filled in on emit.
    assert_eq!(parsed.header.next_payload, PayloadType::SA);
    assert_eq!(parsed.header.length as usize, bytes.len());
    assert_eq!(parsed.payloads, msg.payloads);
    assert_eq!(
        parsed
            .payloads
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec!["SA", "KE", "No", "N(SIGNATURE_HASH_ALGORITHMS)"]
    );
}

#[test]
fn payload_list_lookups() {
    let message = Message::new(
        Header::new(ExchangeType::IKE_AUTH, 1, 2, Flags::new(true, false), 1),
        vec![
            Payload::Notify(Notify::new(NotifyType::INITIAL_CONTACT, vec![])),
            Payload::IdI(Identification::fqdn("home.example")),
            Payload::Cert(Certificate::x509(vec![1])),
            Payload::Cert(Certificate::x509(vec![2])),
            Payload::Notify(Notify::new(NotifyType::TS_UNACCEPTABLE, vec![])),
            Payload::TsR(TrafficSelectors::default()),
            Payload::Delete(Delete::ike()),
        ],
    );
    // On a Vec, through deref to the slice.
    let payloads = &message.payloads;
    assert_eq!(payloads.id_i(), Some(&Identification::fqdn("home.example")));
    assert_eq!(payloads.id_r(), None);
    assert_eq!(payloads.sa(), None);
    assert_eq!(payloads.ts_r(), Some(&TrafficSelectors::default()));
    assert_eq!(
        payloads
            .certificates()
            .map(|c| c.data[0])
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(payloads.notifies().count(), 2);
    assert!(payloads.notify(NotifyType::INITIAL_CONTACT).is_some());
    assert_eq!(
        payloads.error_notify().map(|n| n.notify_type),
        Some(NotifyType::TS_UNACCEPTABLE)
    );
    assert_eq!(payloads.deletes().count(), 1);
    assert_eq!(payloads.certificate_requests().count(), 0);
    assert!(payloads[..1].error_notify().is_none());

    // IDi' for the AUTH octets: the ID payload body.
    let id = Identification::fqdn("home.example");
    let mut emitted = vec![0; id.buffer_len()];
    id.emit(&mut emitted).unwrap();
    assert_eq!(id.body(), emitted);
    assert_eq!(&id.body()[..4], &[2, 0, 0, 0]);
}
