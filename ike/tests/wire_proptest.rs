//! Generated messages: parse(emit(x)) == x and emit(parse(emit(x))) == emit(x); SK seal/open
//! with the null cipher; and no panic on arbitrary or mutated bytes.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hometun_ike::wire::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

fn attribute() -> impl Strategy<Value = TransformAttribute> {
    (
        0u16..0x8000,
        prop_oneof![
            any::<u16>().prop_map(AttributeValue::Short),
            bytes(8).prop_map(AttributeValue::Long)
        ],
    )
        .prop_map(|(t, value)| TransformAttribute {
            attribute_type: AttributeType(t),
            value,
        })
}

fn transform() -> impl Strategy<Value = Transform> {
    (any::<u8>(), any::<u16>(), vec(attribute(), 0..3)).prop_map(|(t, id, attributes)| Transform {
        transform_type: TransformType(t),
        transform_id: id,
        attributes,
    })
}

fn proposal() -> impl Strategy<Value = Proposal> {
    (any::<u8>(), any::<u8>(), bytes(8), vec(transform(), 0..5)).prop_map(
        |(number, protocol, spi, transforms)| {
            Proposal::new(number, ProtocolId(protocol), spi, transforms)
        },
    )
}

fn selector() -> impl Strategy<Value = TrafficSelector> {
    let ports = (any::<u8>(), any::<u16>(), any::<u16>());
    prop_oneof![
        (ports, any::<u32>(), any::<u32>()).prop_map(|((p, s, e), a, b)| {
            TrafficSelector::Address(AddressRange {
                ip_protocol: p,
                start_port: s,
                end_port: e,
                start: IpAddr::V4(Ipv4Addr::from(a)),
                end: IpAddr::V4(Ipv4Addr::from(b)),
            })
        }),
        (ports, any::<u128>(), any::<u128>()).prop_map(|((p, s, e), a, b)| {
            TrafficSelector::Address(AddressRange {
                ip_protocol: p,
                start_port: s,
                end_port: e,
                start: IpAddr::V6(Ipv6Addr::from(a)),
                end: IpAddr::V6(Ipv6Addr::from(b)),
            })
        }),
        (
            any::<u8>().prop_filter("address range types", |t| *t != 7 && *t != 8),
            any::<u8>(),
            bytes(12)
        )
            .prop_map(|(t, p, data)| TrafficSelector::Unknown {
                ts_type: TsType(t),
                ip_protocol: p,
                data,
            }),
    ]
}

fn delete() -> impl Strategy<Value = Delete> {
    prop_oneof![
        any::<u8>().prop_map(|p| Delete {
            protocol: ProtocolId(p),
            spi_size: 0,
            spis: vec![],
        }),
        (any::<u8>(), 1u8..9, 0usize..4).prop_flat_map(|(p, size, count)| {
            vec(vec(any::<u8>(), usize::from(size)), count).prop_map(move |spis| Delete {
                protocol: ProtocolId(p),
                spi_size: size,
                spis,
            })
        }),
    ]
}

/// Any payload but SK and SKF.
fn cleartext_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        vec(proposal(), 0..4).prop_map(|p| Payload::Sa(SecurityAssociation::new(p))),
        (any::<u16>(), bytes(64)).prop_map(|(g, d)| Payload::Ke(KeyExchange::new(DhGroup(g), d))),
        (any::<u8>(), bytes(32)).prop_map(|(t, d)| Payload::IdI(Identification::new(IdType(t), d))),
        (any::<u8>(), bytes(32)).prop_map(|(t, d)| Payload::IdR(Identification::new(IdType(t), d))),
        (any::<u8>(), bytes(64))
            .prop_map(|(e, d)| Payload::Cert(Certificate::new(CertEncoding(e), d))),
        (any::<u8>(), bytes(40))
            .prop_map(|(e, d)| { Payload::CertReq(CertificateRequest::new(CertEncoding(e), d)) }),
        (any::<u8>(), bytes(80))
            .prop_map(|(m, d)| Payload::Auth(Authentication::new(AuthMethod(m), d))),
        vec(any::<u8>(), 16..=256).prop_map(|d| Payload::Nonce(Nonce::new(d))),
        (any::<u8>(), bytes(8), any::<u16>(), bytes(32)).prop_map(|(p, spi, t, d)| {
            Payload::Notify(Notify::with_spi(ProtocolId(p), spi, NotifyType(t), d))
        }),
        delete().prop_map(Payload::Delete),
        bytes(20).prop_map(|d| Payload::VendorId(VendorId::new(d))),
        vec(selector(), 0..4).prop_map(|s| Payload::TsI(TrafficSelectors::new(s))),
        vec(selector(), 0..4).prop_map(|s| Payload::TsR(TrafficSelectors::new(s))),
        (any::<u8>(), vec((0u16..0x8000, bytes(18)), 0..4)).prop_map(|(t, attrs)| {
            Payload::Config(Configuration::new(
                ConfigType(t),
                attrs
                    .into_iter()
                    .map(|(a, value)| ConfigAttribute {
                        attribute_type: ConfigAttributeType(a),
                        value,
                    })
                    .collect(),
            ))
        }),
        (
            any::<u8>().prop_filter("unmodelled types", |t| *t != 0
                && !Payload::is_supported(PayloadType(*t))),
            bytes(16)
        )
            .prop_map(|(t, body)| Payload::Unknown(UnknownPayload {
                payload_type: PayloadType(t),
                critical: false,
                body,
            })),
    ]
}

fn encrypted_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        (any::<u8>(), bytes(64)).prop_map(|(t, data)| Payload::Encrypted(Encrypted {
            first_inner: PayloadType(t),
            data,
        })),
        (any::<u8>(), any::<u16>(), any::<u16>(), bytes(64)).prop_map(|(t, n, total, data)| {
            Payload::EncryptedFragment(EncryptedFragment {
                first_inner: PayloadType(t),
                fragment_number: n,
                total_fragments: total,
                data,
            })
        }),
    ]
}

fn header() -> impl Strategy<Value = Header> {
    (
        any::<u64>(),
        any::<u64>(),
        0u8..16,
        any::<u8>(),
        any::<u8>(),
        any::<u32>(),
    )
        .prop_map(|(spi_i, spi_r, minor, exchange, flags, message_id)| {
            let mut header = Header::new(
                ExchangeType(exchange),
                spi_i,
                spi_r,
                Flags(flags),
                message_id,
            );
            header.minor_version = minor;
            header
        })
}

fn message() -> impl Strategy<Value = Message> {
    (
        header(),
        vec(cleartext_payload(), 0..8),
        proptest::option::of(encrypted_payload()),
    )
        .prop_map(|(header, mut payloads, last)| {
            payloads.extend(last);
            Message::new(header, payloads)
        })
}

proptest! {
    #[test]
    fn emit_parse_emit(message in message()) {
        let bytes = message.to_bytes().unwrap();
        prop_assert_eq!(bytes.len(), message.buffer_len());
        let parsed = Message::parse(&bytes).unwrap();
        prop_assert_eq!(&parsed.payloads, &message.payloads);
        prop_assert_eq!(parsed.header.length as usize, bytes.len());
        prop_assert_eq!(parsed.header.next_payload, first_payload_type(&message.payloads));
        prop_assert_eq!(parsed.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn sealed_payloads_open_again(
        header in header(),
        inner in vec(cleartext_payload(), 0..6),
        iv in any::<[u8; 8]>(),
        pad_len in any::<u8>(),
    ) {
        let message = ProtectedMessage::new(header, inner);
        let bytes = message.seal(&NullCipher, &iv, pad_len).unwrap();
        prop_assert_eq!(bytes.len(), message.sealed_len(&NullCipher, pad_len));
        let opened = ProtectedMessage::open(&bytes, &NullCipher).unwrap();
        prop_assert_eq!(opened.inner, message.inner);
        prop_assert_eq!(opened.header.length as usize, bytes.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in bytes(300)) {
        if let Ok(message) = Message::parse(&data) {
            let again = message.to_bytes().unwrap();
            prop_assert_eq!(Message::parse(&again).unwrap(), message);
        }
        let _ = ProtectedMessage::open(&data, &NullCipher);
        if let Some((&first, rest)) = data.split_first() {
            let _ = parse_decrypted(PayloadType(first), rest);
        }
    }

    #[test]
    fn mutated_messages_never_panic(message in message(), at in any::<usize>(), xor in 1u8..) {
        let mut bytes = message.to_bytes().unwrap();
        let i = at % bytes.len();
        bytes[i] ^= xor;
        if let Ok(parsed) = Message::parse(&bytes) {
            let again = parsed.to_bytes().unwrap();
            prop_assert_eq!(Message::parse(&again).unwrap(), parsed);
        }
    }
}
