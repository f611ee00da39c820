//! IKE payloads built from the fuzzer's choices, aimed at what the state machine decides on:
//! traffic selectors that cross the home's prefix, proposals with other protocols and
//! transforms, key exchanges of other groups or degenerate points, nonces of odd lengths,
//! notifies the exchanges react to, DELETEs naming SPIs that exist, certificates and
//! identities of others.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hometun_control::Spi;
use hometun_ike::wire::{
    self, AddressRange, AttributeType, AttributeValue, AuthMethod, CertEncoding, Certificate,
    CertificateRequest, Delete, DhGroup, EncrId, EsnId, IdType, Identification, NotifyType,
    Payload, PayloadType, PrfId, Proposal, ProtocolId, SecurityAssociation, TrafficSelector,
    TrafficSelectors, Transform, TransformAttribute, TransformType, UnknownPayload,
};

use crate::choices::Choices;
use crate::credentials::credentials;

/// What a hostile peer knows when it builds a payload: SPIs and values it saw.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// ESP SPIs in use (either side's).
    pub esp_spis: Vec<u32>,
    /// IKE SPIs in use.
    pub ike_spis: Vec<u64>,
    /// The last COOKIE2 the victim sent.
    pub cookie2: Option<Vec<u8>>,
    /// The last nonce the victim sent.
    pub nonce: Option<Vec<u8>>,
    /// The last KE payload the victim sent.
    pub ke: Option<wire::KeyExchange>,
}

/// An IPv6 prefix meant to cross lines: the home's, inside it, its neighbour's, wider ones,
/// the default route, link-local, multicast, or any.
pub fn prefix(c: &mut Choices<'_>) -> Option<(Ipv6Addr, u8)> {
    let a = |s: &str| s.parse::<Ipv6Addr>().expect("literal");
    Some(match c.byte()? % 12 {
        0 => (a("2001:db8:1::"), 64),
        1 => (a("2001:db8:1::"), 64 + c.byte()? % 65),
        2 => (a("2001:db8:2::"), 64),
        3 => (a("2001:db8::"), 32),
        4 => (a("::"), 0),
        5 => (a("2001:db8:999::"), 64),
        6 => (a("2001:db8:1::1"), 128),
        7 => (a("fe80::"), 10),
        8 => (a("2001:db8:1::"), 63),
        9 => (a("ff02::"), 16),
        10 => (a("2001:db8:1:0:8000::"), 65),
        _ => (Ipv6Addr::from(u128::from(c.u64()?) << 64), c.byte()? % 129),
    })
}

/// A TSi or TSr: up to three selectors, mostly IPv6 prefixes, sometimes a raw range (reversed,
/// unaligned), an IPv4 range, ports and protocols, or a selector of an unknown type.
pub fn selectors(c: &mut Choices<'_>) -> Option<TrafficSelectors> {
    let count = c.byte()? % 4;
    let mut selectors = Vec::new();
    for _ in 0..count {
        let kind = c.byte()?;
        let selector = match kind % 8 {
            0..=4 => {
                let (address, len) = prefix(c)?;
                TrafficSelector::Address(AddressRange::ipv6_prefix(address, len))
            }
            5 => {
                let (start, _) = prefix(c)?;
                let (end, _) = prefix(c)?;
                TrafficSelector::Address(AddressRange::new(IpAddr::V6(start), IpAddr::V6(end)))
            }
            6 => TrafficSelector::Address(AddressRange::ipv4_prefix(
                Ipv4Addr::new(192, 0, 2, c.byte()?),
                c.byte()? % 33,
            )),
            _ => TrafficSelector::Unknown {
                ts_type: wire::TsType(c.byte()?),
                ip_protocol: c.byte()?,
                data: c.bytes(40)?.to_vec(),
            },
        };
        let selector = match (selector, kind & 0x80 != 0) {
            (TrafficSelector::Address(mut range), true) => {
                range.ip_protocol = c.byte()?;
                range.start_port = c.u16()?;
                range.end_port = c.u16()?;
                TrafficSelector::Address(range)
            }
            (selector, _) => selector,
        };
        selectors.push(selector);
    }
    Some(TrafficSelectors::new(selectors))
}

fn transform(c: &mut Choices<'_>) -> Option<Transform> {
    Some(match c.byte()? % 10 {
        0 => Transform::encr(EncrId::ENCR_AES_GCM_16, Some(128)),
        1 => Transform::encr(EncrId::ENCR_AES_GCM_16, Some(256)),
        2 => Transform::encr(EncrId::ENCR_AES_GCM_16, Some(c.u16()?)),
        3 => Transform::encr(EncrId(u16::from(c.byte()?)), None),
        4 => Transform::prf(PrfId::PRF_HMAC_SHA2_256),
        5 => Transform::dh(DhGroup::CURVE25519),
        6 => Transform::dh(DhGroup(u16::from(c.byte()? % 40))),
        7 => Transform::esn(EsnId(u16::from(c.byte()? % 3))),
        8 => {
            let mut t = Transform::new(TransformType(c.byte()? % 14), c.u16()?);
            t.attributes.push(TransformAttribute {
                attribute_type: AttributeType(c.u16()? & 0x7fff),
                value: AttributeValue::Long(c.bytes(8)?.to_vec()),
            });
            t
        }
        _ => Transform::dh(DhGroup::ECP_256),
    })
}

/// An SA payload: one or two proposals of a chosen protocol, an SPI from those in use (or of
/// another length), and transforms from a menu.
pub fn security_association(c: &mut Choices<'_>, known: &Known) -> Option<SecurityAssociation> {
    let count = 1 + c.byte()? % 2;
    let mut proposals = Vec::new();
    for i in 0..count {
        let protocol = match c.byte()? % 5 {
            0 | 1 => ProtocolId::ESP,
            2 => ProtocolId::IKE,
            3 => ProtocolId::AH,
            _ => ProtocolId(c.byte()?),
        };
        let spi = match c.byte()? % 6 {
            0 => pick(c, &known.esp_spis)?.to_be_bytes().to_vec(),
            1 => pick(c, &known.ike_spis)?.to_be_bytes().to_vec(),
            2 => Vec::new(),
            3 => c.u32()?.to_be_bytes().to_vec(),
            4 => c.u64()?.to_be_bytes().to_vec(),
            _ => c.bytes(9)?.to_vec(),
        };
        let mut transforms = Vec::new();
        for _ in 0..c.byte()? % 6 {
            transforms.push(transform(c)?);
        }
        proposals.push(Proposal::new(
            i + 1 + c.byte()? % 2,
            protocol,
            spi,
            transforms,
        ));
    }
    Some(SecurityAssociation::new(proposals))
}

/// One of `items`, or zero when there is none.
pub fn pick<T: Copy + Default>(c: &mut Choices<'_>, items: &[T]) -> Option<T> {
    let i = c.byte()?;
    Some(if items.is_empty() {
        T::default()
    } else {
        items[usize::from(i) % items.len()]
    })
}

/// A KE payload: the victim's own (a reflection), a group we may not offer, all-zero and
/// low-order points, or any bytes.
pub fn key_exchange(c: &mut Choices<'_>, known: &Known) -> Option<wire::KeyExchange> {
    let group = match c.byte()? % 5 {
        0 | 1 => DhGroup::CURVE25519,
        2 => DhGroup::ECP_256,
        3 => DhGroup::MODP_2048,
        _ => DhGroup(c.u16()?),
    };
    let data = match c.byte()? % 6 {
        0 => match &known.ke {
            Some(ke) => return Some(ke.clone()),
            None => vec![9; 32],
        },
        1 => vec![0; 32],
        2 => {
            // A point of order 8 on Curve25519.
            let mut p = vec![0u8; 32];
            p[0] = 1;
            p
        }
        3 => vec![0x04; 65],
        4 => c.bytes(70)?.to_vec(),
        _ => {
            let mut p = vec![0x11u8; 32];
            p[0] = c.byte()?;
            p
        }
    };
    Some(wire::KeyExchange::new(group, data))
}

/// A nonce: of 0 to 300 bytes, or the victim's own.
pub fn nonce(c: &mut Choices<'_>, known: &Known) -> Option<wire::Nonce> {
    Some(wire::Nonce::new(match c.byte()? % 4 {
        0 => known.nonce.clone().unwrap_or_default(),
        1 => vec![c.byte()?; usize::from(c.byte()?)],
        2 => vec![0; 16],
        _ => c.bytes(64)?.to_vec(),
    }))
}

/// Notify types the exchanges after IKE_AUTH react to, and error types.
const NOTIFY_TYPES: [NotifyType; 22] = [
    NotifyType::REKEY_SA,
    NotifyType::COOKIE2,
    NotifyType::UPDATE_SA_ADDRESSES,
    NotifyType::NO_NATS_ALLOWED,
    NotifyType::NAT_DETECTION_SOURCE_IP,
    NotifyType::NAT_DETECTION_DESTINATION_IP,
    NotifyType::MOBIKE_SUPPORTED,
    NotifyType::INITIAL_CONTACT,
    NotifyType::USE_TRANSPORT_MODE,
    NotifyType::ADDITIONAL_TS_POSSIBLE,
    NotifyType::INVALID_KE_PAYLOAD,
    NotifyType::NO_PROPOSAL_CHOSEN,
    NotifyType::TEMPORARY_FAILURE,
    NotifyType::CHILD_SA_NOT_FOUND,
    NotifyType::TS_UNACCEPTABLE,
    NotifyType::INVALID_SYNTAX,
    NotifyType::AUTHENTICATION_FAILED,
    NotifyType::NO_ADDITIONAL_SAS,
    NotifyType::INVALID_SPI,
    NotifyType::SINGLE_PAIR_REQUIRED,
    NotifyType::SIGNATURE_HASH_ALGORITHMS,
    NotifyType::COOKIE,
];

/// A notify of a type the state machine looks at, with data that fits it (or not).
pub fn notify(c: &mut Choices<'_>, known: &Known) -> Option<wire::Notify> {
    let index = c.byte()?;
    let notify_type = match NOTIFY_TYPES.get(usize::from(index)) {
        Some(known_type) => *known_type,
        None => NotifyType(c.u16()?),
    };
    let data = match notify_type {
        NotifyType::INVALID_KE_PAYLOAD => match c.byte()? % 4 {
            0 => 31u16.to_be_bytes().to_vec(),
            1 => 19u16.to_be_bytes().to_vec(),
            2 => 14u16.to_be_bytes().to_vec(),
            _ => c.bytes(3)?.to_vec(),
        },
        NotifyType::COOKIE2 => match (c.byte()? % 3, &known.cookie2) {
            (0, Some(cookie2)) => cookie2.clone(),
            (1, Some(cookie2)) => {
                let mut other = cookie2.clone();
                if let Some(first) = other.first_mut() {
                    *first ^= 1;
                }
                other
            }
            _ => c.bytes(70)?.to_vec(),
        },
        NotifyType::NO_NATS_ALLOWED => c.bytes(12)?.to_vec(),
        _ if c.byte()? % 4 == 0 => c.bytes(40)?.to_vec(),
        _ => Vec::new(),
    };
    Some(
        if notify_type == NotifyType::REKEY_SA || c.byte()? % 8 == 0 {
            let spi = match c.byte()? % 4 {
                0 | 1 => pick(c, &known.esp_spis)?.to_be_bytes().to_vec(),
                2 => c.u32()?.to_be_bytes().to_vec(),
                _ => c.bytes(9)?.to_vec(),
            };
            let protocol = if c.byte()? % 4 == 0 {
                ProtocolId(c.byte()? % 5)
            } else {
                ProtocolId::ESP
            };
            wire::Notify::with_spi(protocol, spi, notify_type, data)
        } else {
            wire::Notify::new(notify_type, data)
        },
    )
}

/// A DELETE: of the IKE SA, or of ESP SPIs in use (or not), with a wrong SPI size now and then.
pub fn delete(c: &mut Choices<'_>, known: &Known) -> Option<Delete> {
    Some(match c.byte()? % 5 {
        0 => Delete::ike(),
        1 | 2 => {
            let mut spis = Vec::new();
            for _ in 0..1 + c.byte()? % 3 {
                spis.push(if c.byte()? % 4 == 0 {
                    c.u32()?
                } else {
                    pick(c, &known.esp_spis)?
                });
            }
            Delete::esp(&spis.into_iter().map(Spi).collect::<Vec<_>>())
        }
        3 => Delete {
            protocol: ProtocolId(c.byte()? % 5),
            spi_size: 4,
            spis: vec![pick(c, &known.esp_spis)?.to_be_bytes().to_vec()],
        },
        _ => Delete {
            protocol: ProtocolId::ESP,
            spi_size: 8,
            spis: vec![pick(c, &known.ike_spis)?.to_be_bytes().to_vec()],
        },
    })
}

/// An identity: ours, another home's, the server's, in another case, an address, any bytes.
pub fn identification(c: &mut Choices<'_>) -> Option<Identification> {
    let fqdn = |s: &str| Identification::new(IdType::ID_FQDN, s.as_bytes().to_vec());
    Some(match c.byte()? % 7 {
        0 => fqdn("home.example"),
        1 => fqdn("Home.Example"),
        2 => fqdn("other.example"),
        3 => fqdn("vps.example"),
        4 => Identification::new(IdType::ID_IPV4_ADDR, vec![192, 0, 2, 2]),
        5 => fqdn(""),
        _ => Identification::new(IdType(c.byte()?), c.bytes(40)?.to_vec()),
    })
}

/// A CERT: another certificate of the fuzz PKI, or any bytes, or another encoding.
pub fn certificate(c: &mut Choices<'_>) -> Option<Certificate> {
    let substitutes = credentials().substitutes();
    let choice = usize::from(c.byte()?);
    Some(match substitutes.get(choice % 8) {
        Some(der) => Certificate::x509(der.to_vec()),
        None if choice % 2 == 0 => Certificate::x509(c.bytes(200)?.to_vec()),
        None => Certificate::new(CertEncoding(c.byte()?), c.bytes(40)?.to_vec()),
    })
}

/// An AUTH: another method, or the same method over other bytes.
pub fn authentication(c: &mut Choices<'_>) -> Option<wire::Authentication> {
    let method = match c.byte()? % 4 {
        0 | 1 => AuthMethod::DIGITAL_SIGNATURE,
        2 => AuthMethod::SHARED_KEY_MIC,
        _ => AuthMethod(c.byte()?),
    };
    Some(wire::Authentication::new(method, c.bytes(120)?.to_vec()))
}

/// Any payload, of a kind chosen by the fuzzer.
pub fn payload(c: &mut Choices<'_>, known: &Known) -> Option<Payload> {
    Some(match c.byte()? % 15 {
        0 => Payload::Sa(security_association(c, known)?),
        1 => Payload::Ke(key_exchange(c, known)?),
        2 => Payload::IdI(identification(c)?),
        3 => Payload::IdR(identification(c)?),
        4 => Payload::Cert(certificate(c)?),
        5 => Payload::CertReq(CertificateRequest::new(
            CertEncoding::X509_SIGNATURE,
            c.bytes(40)?.to_vec(),
        )),
        6 => Payload::Auth(authentication(c)?),
        7 => Payload::Nonce(nonce(c, known)?),
        8 | 9 => Payload::Notify(notify(c, known)?),
        10 => Payload::Delete(delete(c, known)?),
        11 => Payload::TsI(selectors(c)?),
        12 => Payload::TsR(selectors(c)?),
        13 => Payload::VendorId(wire::VendorId::new(c.bytes(20)?.to_vec())),
        _ => Payload::Unknown(UnknownPayload {
            // Not one this crate models (33..=47 and 53 are).
            payload_type: PayloadType(54 + c.byte()? % 200),
            critical: c.byte()? % 2 == 0,
            body: c.bytes(20)?.to_vec(),
        }),
    })
}

/// A payload of the same kind as `like`, built anew (a TS for a TS, an SA for an SA...).
pub fn same_kind(c: &mut Choices<'_>, like: &Payload, known: &Known) -> Option<Payload> {
    Some(match like {
        Payload::Sa(_) => Payload::Sa(security_association(c, known)?),
        Payload::Ke(_) => Payload::Ke(key_exchange(c, known)?),
        Payload::IdI(_) => Payload::IdI(identification(c)?),
        Payload::IdR(_) => Payload::IdR(identification(c)?),
        Payload::Cert(_) => Payload::Cert(certificate(c)?),
        Payload::Auth(_) => Payload::Auth(authentication(c)?),
        Payload::Nonce(_) => Payload::Nonce(nonce(c, known)?),
        Payload::Notify(_) => Payload::Notify(notify(c, known)?),
        Payload::Delete(_) => Payload::Delete(delete(c, known)?),
        Payload::TsI(_) => Payload::TsI(selectors(c)?),
        Payload::TsR(_) => Payload::TsR(selectors(c)?),
        _ => payload(c, known)?,
    })
}

/// `like` emitted, up to three of its body bytes changed, parsed again as its type (a
/// mutation that keeps the payload's structure where it can). `None` if it no longer parses.
pub fn mutated(c: &mut Choices<'_>, like: &Payload) -> Option<Option<Payload>> {
    let mut bytes = vec![0u8; like.buffer_len()];
    if like.emit(PayloadType::NONE, &mut bytes).is_err() || bytes.len() <= 4 {
        return Some(None);
    }
    for _ in 0..1 + c.byte()? % 3 {
        let at = 4 + usize::from(c.u16()?) % (bytes.len() - 4);
        bytes[at] = match c.byte()? {
            0 => bytes[at].wrapping_add(1),
            1 => bytes[at].wrapping_sub(1),
            v => v,
        };
    }
    Some(Payload::parse(like.payload_type(), PayloadType::NONE, false, &bytes[4..]).ok())
}
