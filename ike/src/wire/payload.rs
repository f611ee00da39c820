//! The generic payload header (RFC 7296 3.2), the [`Payload`] enum over all payload types, and
//! payload chains that follow the Next Payload fields.

use std::fmt;

use super::codec::{Reader, Writer, impl_emit, len_u16};
use super::{
    Authentication, Certificate, CertificateRequest, Configuration, Delete, Encrypted,
    EncryptedFragment, Identification, KeyExchange, Nonce, Notify, NotifyType, PayloadType,
    SecurityAssociation, TrafficSelectors, WireError,
};

/// Length of the generic payload header.
pub const GENERIC_HEADER_LEN: usize = 4;
/// The critical bit of the generic payload header.
const CRITICAL: u8 = 0x80;

/// Vendor ID payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VendorId {
    /// The vendor's identifier (often a hash).
    pub data: Vec<u8>,
}

impl VendorId {
    /// A Vendor ID payload.
    pub fn new(data: Vec<u8>) -> Self {
        Self { data }
    }

    /// Parses a Vendor ID payload body.
    pub fn parse(body: &[u8]) -> Self {
        Self {
            data: body.to_vec(),
        }
    }

    /// Length of the emitted body.
    pub fn buffer_len(&self) -> usize {
        self.data.len()
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.bytes(&self.data)
    }
}
impl_emit!(VendorId);

/// A payload of a type this crate does not model (EAP, GSPM, unassigned numbers...), kept
/// whole. Only non-critical ones get here: a critical one fails the parse.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnknownPayload {
    /// The payload type; never one [`Payload::parse`] models, never NONE.
    pub payload_type: PayloadType,
    /// The critical bit as received.
    pub critical: bool,
    /// The body after the generic header.
    pub body: Vec<u8>,
}

/// One payload of an IKE message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Payload {
    /// SA (33).
    Sa(SecurityAssociation),
    /// KE (34).
    Ke(KeyExchange),
    /// IDi (35).
    IdI(Identification),
    /// IDr (36).
    IdR(Identification),
    /// CERT (37).
    Cert(Certificate),
    /// CERTREQ (38).
    CertReq(CertificateRequest),
    /// AUTH (39).
    Auth(Authentication),
    /// Ni or Nr (40).
    Nonce(Nonce),
    /// N (41).
    Notify(Notify),
    /// D (42).
    Delete(Delete),
    /// V (43).
    VendorId(VendorId),
    /// TSi (44).
    TsI(TrafficSelectors),
    /// TSr (45).
    TsR(TrafficSelectors),
    /// SK (46), still encrypted; always the last payload.
    Encrypted(Encrypted),
    /// SKF (53), still encrypted; always the last payload.
    EncryptedFragment(EncryptedFragment),
    /// CP (47).
    Config(Configuration),
    /// Any other type.
    Unknown(UnknownPayload),
}

impl Payload {
    /// Whether `payload_type` is one this crate parses into a typed payload; a critical payload
    /// of another type makes the message fail with UNSUPPORTED_CRITICAL_PAYLOAD.
    pub const fn is_supported(payload_type: PayloadType) -> bool {
        matches!(payload_type.0, 33..=47 | 53)
    }

    /// The payload's type.
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Payload::Sa(_) => PayloadType::SA,
            Payload::Ke(_) => PayloadType::KE,
            Payload::IdI(_) => PayloadType::IDI,
            Payload::IdR(_) => PayloadType::IDR,
            Payload::Cert(_) => PayloadType::CERT,
            Payload::CertReq(_) => PayloadType::CERTREQ,
            Payload::Auth(_) => PayloadType::AUTH,
            Payload::Nonce(_) => PayloadType::NONCE,
            Payload::Notify(_) => PayloadType::NOTIFY,
            Payload::Delete(_) => PayloadType::DELETE,
            Payload::VendorId(_) => PayloadType::VENDOR_ID,
            Payload::TsI(_) => PayloadType::TSI,
            Payload::TsR(_) => PayloadType::TSR,
            Payload::Encrypted(_) => PayloadType::SK,
            Payload::EncryptedFragment(_) => PayloadType::SKF,
            Payload::Config(_) => PayloadType::CP,
            Payload::Unknown(u) => u.payload_type,
        }
    }

    /// Parses one payload body of type `payload_type`. `next_payload` and `critical` come from
    /// its generic header: the first is the first inner type of SK and SKF, the second is
    /// checked for types this crate does not model.
    pub fn parse(
        payload_type: PayloadType,
        next_payload: PayloadType,
        critical: bool,
        body: &[u8],
    ) -> Result<Self, WireError> {
        Ok(match payload_type {
            PayloadType::SA => Payload::Sa(SecurityAssociation::parse(body)?),
            PayloadType::KE => Payload::Ke(KeyExchange::parse(body)?),
            PayloadType::IDI => Payload::IdI(Identification::parse(body)?),
            PayloadType::IDR => Payload::IdR(Identification::parse(body)?),
            PayloadType::CERT => Payload::Cert(Certificate::parse(body)?),
            PayloadType::CERTREQ => Payload::CertReq(CertificateRequest::parse(body)?),
            PayloadType::AUTH => Payload::Auth(Authentication::parse(body)?),
            PayloadType::NONCE => Payload::Nonce(Nonce::parse(body)?),
            PayloadType::NOTIFY => Payload::Notify(Notify::parse(body)?),
            PayloadType::DELETE => Payload::Delete(Delete::parse(body)?),
            PayloadType::VENDOR_ID => Payload::VendorId(VendorId::parse(body)),
            PayloadType::TSI => Payload::TsI(TrafficSelectors::parse(body)?),
            PayloadType::TSR => Payload::TsR(TrafficSelectors::parse(body)?),
            PayloadType::SK => Payload::Encrypted(Encrypted::parse(next_payload, body)),
            PayloadType::SKF => {
                Payload::EncryptedFragment(EncryptedFragment::parse(next_payload, body)?)
            }
            PayloadType::CP => Payload::Config(Configuration::parse(body)?),
            PayloadType::NONE => {
                return Err(WireError::InvalidValue {
                    field: "payload type",
                    value: 0,
                });
            }
            other if critical => return Err(WireError::UnsupportedCriticalPayload(other)),
            other => Payload::Unknown(UnknownPayload {
                payload_type: other,
                critical,
                body: body.to_vec(),
            }),
        })
    }

    /// Length of the emitted body, without the generic header.
    pub fn body_len(&self) -> usize {
        match self {
            Payload::Sa(p) => p.buffer_len(),
            Payload::Ke(p) => p.buffer_len(),
            Payload::IdI(p) | Payload::IdR(p) => p.buffer_len(),
            Payload::Cert(p) => p.buffer_len(),
            Payload::CertReq(p) => p.buffer_len(),
            Payload::Auth(p) => p.buffer_len(),
            Payload::Nonce(p) => p.buffer_len(),
            Payload::Notify(p) => p.buffer_len(),
            Payload::Delete(p) => p.buffer_len(),
            Payload::VendorId(p) => p.buffer_len(),
            Payload::TsI(p) | Payload::TsR(p) => p.buffer_len(),
            Payload::Encrypted(p) => p.buffer_len(),
            Payload::EncryptedFragment(p) => p.buffer_len(),
            Payload::Config(p) => p.buffer_len(),
            Payload::Unknown(p) => p.body.len(),
        }
    }

    /// Length of the emitted payload, generic header included.
    pub fn buffer_len(&self) -> usize {
        GENERIC_HEADER_LEN + self.body_len()
    }

    /// Whether this is SK or SKF, which must end a chain.
    pub fn is_encrypted(&self) -> bool {
        matches!(self, Payload::Encrypted(_) | Payload::EncryptedFragment(_))
    }

    /// Writes the payload with its generic header; `following` is the type of the payload after
    /// it (ignored by SK and SKF, whose Next Payload names their first inner payload).
    pub fn emit(&self, following: PayloadType, buf: &mut [u8]) -> Result<usize, WireError> {
        let mut w = Writer::new(buf);
        self.write(following, &mut w)?;
        Ok(w.position())
    }

    pub(crate) fn write(
        &self,
        following: PayloadType,
        w: &mut Writer<'_>,
    ) -> Result<(), WireError> {
        let (next, critical) = match self {
            Payload::Encrypted(p) => (p.first_inner, false),
            Payload::EncryptedFragment(p) => (p.first_inner, false),
            Payload::Unknown(p) => {
                if p.payload_type == PayloadType::NONE || Self::is_supported(p.payload_type) {
                    return Err(WireError::InvalidValue {
                        field: "type of an unknown payload",
                        value: u64::from(p.payload_type.0),
                    });
                }
                (following, p.critical)
            }
            _ => (following, false),
        };
        w.u8(next.0)?;
        w.u8(if critical { CRITICAL } else { 0 })?;
        w.u16(len_u16(self.buffer_len(), "payload")?)?;
        match self {
            Payload::Sa(p) => p.write(w),
            Payload::Ke(p) => p.write(w),
            Payload::IdI(p) | Payload::IdR(p) => p.write(w),
            Payload::Cert(p) => p.write(w),
            Payload::CertReq(p) => p.write(w),
            Payload::Auth(p) => p.write(w),
            Payload::Nonce(p) => p.write(w),
            Payload::Notify(p) => p.write(w),
            Payload::Delete(p) => p.write(w),
            Payload::VendorId(p) => p.write(w),
            Payload::TsI(p) | Payload::TsR(p) => p.write(w),
            Payload::Encrypted(p) => p.write(w),
            Payload::EncryptedFragment(p) => p.write(w),
            Payload::Config(p) => p.write(w),
            Payload::Unknown(p) => w.bytes(&p.body),
        }
    }
}

impl fmt::Display for Payload {
    /// The payload's short name as in message summaries: `SA`, `KE`, `N(COOKIE)`, `D`...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Notify(n) => write!(f, "N({})", n.notify_type),
            Payload::Unknown(u) => write!(f, "{}", u.payload_type),
            other => write!(f, "{}", other.payload_type()),
        }
    }
}

/// The type of the first payload of a chain, NONE for an empty one.
pub fn first_payload_type(payloads: &[Payload]) -> PayloadType {
    payloads
        .first()
        .map_or(PayloadType::NONE, Payload::payload_type)
}

/// Parses a payload chain that starts with a payload of type `first` and covers all of
/// `bytes`. An SK or SKF payload must be the last one.
pub fn parse_payloads(first: PayloadType, bytes: &[u8]) -> Result<Vec<Payload>, WireError> {
    parse_chain(first, bytes, false)
}

/// Parses a chain; `inside_encrypted` forbids SK and SKF (they do not nest).
pub(crate) fn parse_chain(
    first: PayloadType,
    bytes: &[u8],
    inside_encrypted: bool,
) -> Result<Vec<Payload>, WireError> {
    let mut r = Reader::new(bytes, "payload");
    let mut payloads = Vec::new();
    let mut current = first;
    while current != PayloadType::NONE {
        let next = PayloadType(r.u8()?);
        let critical = r.u8()? & CRITICAL != 0;
        let length = usize::from(r.u16()?);
        if length < GENERIC_HEADER_LEN {
            return Err(WireError::InvalidLength {
                what: "payload",
                length,
            });
        }
        let body = r.take(length - GENERIC_HEADER_LEN)?;
        let payload = Payload::parse(current, next, critical, body)?;
        if payload.is_encrypted() {
            if inside_encrypted {
                return Err(WireError::NestedEncrypted(current));
            }
            if !r.is_empty() {
                return Err(WireError::EncryptedNotLast(current));
            }
            payloads.push(payload);
            return Ok(payloads);
        }
        payloads.push(payload);
        current = next;
    }
    if !r.is_empty() {
        return Err(WireError::TrailingBytes(r.remaining()));
    }
    Ok(payloads)
}

/// Length of an emitted payload chain.
pub fn payloads_len(payloads: &[Payload]) -> usize {
    payloads.iter().map(Payload::buffer_len).sum()
}

/// Writes a payload chain into the front of `buf`; returns the bytes written.
pub fn emit_payloads(payloads: &[Payload], buf: &mut [u8]) -> Result<usize, WireError> {
    let mut w = Writer::new(buf);
    write_chain(payloads, PayloadType::NONE, &mut w)?;
    Ok(w.position())
}

/// Writes a chain whose last Next Payload is `terminator` (NONE, or SK when an SK payload
/// follows the chain).
pub(crate) fn write_chain(
    payloads: &[Payload],
    terminator: PayloadType,
    w: &mut Writer<'_>,
) -> Result<(), WireError> {
    for (i, payload) in payloads.iter().enumerate() {
        let following = payloads.get(i + 1).map(Payload::payload_type);
        if payload.is_encrypted() && (following.is_some() || terminator != PayloadType::NONE) {
            return Err(WireError::EncryptedNotLast(payload.payload_type()));
        }
        payload.write(following.unwrap_or(terminator), w)?;
    }
    Ok(())
}

/// Lookups over a payload list (a message's payloads, or the inner payloads of SK): the first
/// payload of a type, or all of them. Implemented for `[Payload]`, so it works on a `Vec` too:
/// `message.payloads.nonce()`.
pub trait PayloadList {
    /// The first SA payload.
    fn sa(&self) -> Option<&SecurityAssociation>;
    /// The first KE payload.
    fn ke(&self) -> Option<&KeyExchange>;
    /// The first Nonce payload.
    fn nonce(&self) -> Option<&Nonce>;
    /// The first IDi payload.
    fn id_i(&self) -> Option<&Identification>;
    /// The first IDr payload.
    fn id_r(&self) -> Option<&Identification>;
    /// The first AUTH payload.
    fn auth(&self) -> Option<&Authentication>;
    /// The first TSi payload.
    fn ts_i(&self) -> Option<&TrafficSelectors>;
    /// The first TSr payload.
    fn ts_r(&self) -> Option<&TrafficSelectors>;
    /// The first CP payload.
    fn config(&self) -> Option<&Configuration>;
    /// The CERT payloads, in order (end entity first, by convention).
    fn certificates(&self) -> impl Iterator<Item = &Certificate>;
    /// The CERTREQ payloads.
    fn certificate_requests(&self) -> impl Iterator<Item = &CertificateRequest>;
    /// The Delete payloads.
    fn deletes(&self) -> impl Iterator<Item = &Delete>;
    /// The Notify payloads.
    fn notifies(&self) -> impl Iterator<Item = &Notify>;
    /// The first Notify of a type.
    fn notify(&self, notify_type: NotifyType) -> Option<&Notify> {
        self.notifies().find(|n| n.notify_type == notify_type)
    }
    /// The first Notify of an error type (below 16384).
    fn error_notify(&self) -> Option<&Notify> {
        self.notifies().find(|n| n.notify_type.is_error())
    }
}

/// `first!(payloads, Variant)`: the contents of the first payload of that variant.
macro_rules! first {
    ($payloads:expr, $variant:ident) => {
        $payloads.iter().find_map(|p| match p {
            Payload::$variant(inner) => Some(inner),
            _ => None,
        })
    };
}

/// `all!(payloads, Variant)`: the contents of every payload of that variant.
macro_rules! all {
    ($payloads:expr, $variant:ident) => {
        $payloads.iter().filter_map(|p| match p {
            Payload::$variant(inner) => Some(inner),
            _ => None,
        })
    };
}

impl PayloadList for [Payload] {
    fn sa(&self) -> Option<&SecurityAssociation> {
        first!(self, Sa)
    }
    fn ke(&self) -> Option<&KeyExchange> {
        first!(self, Ke)
    }
    fn nonce(&self) -> Option<&Nonce> {
        first!(self, Nonce)
    }
    fn id_i(&self) -> Option<&Identification> {
        first!(self, IdI)
    }
    fn id_r(&self) -> Option<&Identification> {
        first!(self, IdR)
    }
    fn auth(&self) -> Option<&Authentication> {
        first!(self, Auth)
    }
    fn ts_i(&self) -> Option<&TrafficSelectors> {
        first!(self, TsI)
    }
    fn ts_r(&self) -> Option<&TrafficSelectors> {
        first!(self, TsR)
    }
    fn config(&self) -> Option<&Configuration> {
        first!(self, Config)
    }
    fn certificates(&self) -> impl Iterator<Item = &Certificate> {
        all!(self, Cert)
    }
    fn certificate_requests(&self) -> impl Iterator<Item = &CertificateRequest> {
        all!(self, CertReq)
    }
    fn deletes(&self) -> impl Iterator<Item = &Delete> {
        all!(self, Delete)
    }
    fn notifies(&self) -> impl Iterator<Item = &Notify> {
        all!(self, Notify)
    }
}
