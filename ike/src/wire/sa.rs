//! The Security Association payload (RFC 7296 3.3): proposals, transforms, attributes.

use std::fmt;

use super::codec::{Reader, Writer, impl_emit, len_u8, len_u16};
use super::{
    AttributeType, DhGroup, EncrId, EsnId, IntegId, PrfId, ProtocolId, TransformType, WireError,
};

/// "Last Substruc" value of a proposal that another proposal follows.
const MORE_PROPOSALS: u8 = 2;
/// "Last Substruc" value of a transform that another transform follows.
const MORE_TRANSFORMS: u8 = 3;
/// The Attribute Format bit: set for TV (a 16-bit value), clear for TLV.
const ATTRIBUTE_TV: u16 = 0x8000;
const PROPOSAL_HEADER_LEN: usize = 8;
const TRANSFORM_HEADER_LEN: usize = 8;

/// SA payload: the proposals, in order of preference (a response carries exactly one).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SecurityAssociation {
    /// The proposals.
    pub proposals: Vec<Proposal>,
}

/// One proposal: a protocol, its SPI, and the transforms offered for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Proposal {
    /// Proposal number (1 for the first; a response echoes the number it accepts).
    pub number: u8,
    /// IKE, ESP or AH.
    pub protocol: ProtocolId,
    /// The sender's SPI: empty in IKE_SA_INIT, 4 octets for ESP, 8 for an IKE SA rekey.
    pub spi: Vec<u8>,
    /// The transforms; several of one type are alternatives, one of each type is chosen.
    pub transforms: Vec<Transform>,
}

/// One transform: an algorithm of some transform type, with its attributes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Transform {
    /// ENCR, PRF, INTEG, DH, ESN...
    pub transform_type: TransformType,
    /// The algorithm, from the registry of `transform_type` ([`EncrId`], [`PrfId`]...).
    pub transform_id: u16,
    /// Attributes; in practice only KEY_LENGTH for AES.
    pub attributes: Vec<TransformAttribute>,
}

/// A transform attribute (RFC 7296 3.3.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransformAttribute {
    /// The type, without the format bit.
    pub attribute_type: AttributeType,
    /// The value, whose variant decides the format bit.
    pub value: AttributeValue,
}

/// The value of a transform attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttributeValue {
    /// TV format: a 16-bit value in the attribute header.
    Short(u16),
    /// TLV format: a length and that many octets.
    Long(Vec<u8>),
}

impl SecurityAssociation {
    /// An SA payload with the given proposals.
    pub fn new(proposals: Vec<Proposal>) -> Self {
        Self { proposals }
    }

    /// Parses an SA payload body.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "SA payload");
        let mut proposals = Vec::new();
        while !r.is_empty() {
            let last_substruc = r.u8()?;
            r.skip(1)?;
            let length = usize::from(r.u16()?);
            if length < PROPOSAL_HEADER_LEN {
                return Err(WireError::InvalidLength {
                    what: "proposal",
                    length,
                });
            }
            proposals.push(Proposal::parse_after_length(r.take(length - 4)?)?);
            match last_substruc {
                0 if r.is_empty() => {}
                MORE_PROPOSALS if !r.is_empty() => {}
                0 => return Err(WireError::TrailingBytes(r.remaining())),
                MORE_PROPOSALS => {
                    return Err(WireError::Truncated {
                        what: "SA payload (another proposal announced)",
                        needed: PROPOSAL_HEADER_LEN,
                        available: 0,
                    });
                }
                other => {
                    return Err(WireError::InvalidValue {
                        field: "proposal Last Substruc",
                        value: u64::from(other),
                    });
                }
            }
        }
        Ok(Self { proposals })
    }

    /// Length of the emitted body.
    pub fn buffer_len(&self) -> usize {
        self.proposals.iter().map(Proposal::buffer_len).sum()
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        let count = self.proposals.len();
        for (i, proposal) in self.proposals.iter().enumerate() {
            proposal.write(w, i + 1 == count)?;
        }
        Ok(())
    }
}
impl_emit!(SecurityAssociation);

impl Proposal {
    /// A proposal.
    pub fn new(number: u8, protocol: ProtocolId, spi: Vec<u8>, transforms: Vec<Transform>) -> Self {
        Self {
            number,
            protocol,
            spi,
            transforms,
        }
    }

    /// The transforms of one type, in order.
    pub fn transforms_of(&self, transform_type: TransformType) -> impl Iterator<Item = &Transform> {
        self.transforms
            .iter()
            .filter(move |t| t.transform_type == transform_type)
    }

    /// Parses what follows the proposal's length field.
    fn parse_after_length(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "proposal");
        let number = r.u8()?;
        let protocol = ProtocolId(r.u8()?);
        let spi_size = usize::from(r.u8()?);
        let transform_count = usize::from(r.u8()?);
        let spi = r.take(spi_size)?.to_vec();
        // Each transform takes at least 8 bytes, which bounds the allocation.
        let mut transforms = Vec::with_capacity(transform_count.min(r.remaining() / 8));
        for i in 0..transform_count {
            let last_substruc = r.u8()?;
            let is_last = i + 1 == transform_count;
            match (last_substruc, is_last) {
                (0, true) | (MORE_TRANSFORMS, false) => {}
                (other, _) => {
                    return Err(WireError::InvalidValue {
                        field: "transform Last Substruc",
                        value: u64::from(other),
                    });
                }
            }
            r.skip(1)?;
            let length = usize::from(r.u16()?);
            if length < TRANSFORM_HEADER_LEN {
                return Err(WireError::InvalidLength {
                    what: "transform",
                    length,
                });
            }
            transforms.push(Transform::parse_after_length(r.take(length - 4)?)?);
        }
        if !r.is_empty() {
            return Err(WireError::InvalidLength {
                what: "proposal (bytes after its transforms)",
                length: body.len() + 4,
            });
        }
        Ok(Self {
            number,
            protocol,
            spi,
            transforms,
        })
    }

    /// Length of the emitted proposal substructure.
    pub fn buffer_len(&self) -> usize {
        PROPOSAL_HEADER_LEN
            + self.spi.len()
            + self
                .transforms
                .iter()
                .map(Transform::buffer_len)
                .sum::<usize>()
    }

    fn write(&self, w: &mut Writer<'_>, last: bool) -> Result<(), WireError> {
        w.u8(if last { 0 } else { MORE_PROPOSALS })?;
        w.u8(0)?;
        w.u16(len_u16(self.buffer_len(), "proposal")?)?;
        w.u8(self.number)?;
        w.u8(self.protocol.0)?;
        w.u8(len_u8(self.spi.len(), "proposal SPI")?)?;
        w.u8(len_u8(self.transforms.len(), "proposal transform count")?)?;
        w.bytes(&self.spi)?;
        let count = self.transforms.len();
        for (i, transform) in self.transforms.iter().enumerate() {
            transform.write(w, i + 1 == count)?;
        }
        Ok(())
    }
}

impl Transform {
    /// A transform without attributes.
    pub fn new(transform_type: TransformType, transform_id: u16) -> Self {
        Self {
            transform_type,
            transform_id,
            attributes: Vec::new(),
        }
    }

    /// An encryption transform, with a KEY_LENGTH attribute (in bits) if given.
    pub fn encr(id: EncrId, key_bits: Option<u16>) -> Self {
        let mut t = Self::new(TransformType::ENCR, id.0);
        if let Some(bits) = key_bits {
            t.attributes.push(TransformAttribute {
                attribute_type: AttributeType::KEY_LENGTH,
                value: AttributeValue::Short(bits),
            });
        }
        t
    }

    /// A pseudorandom function transform.
    pub fn prf(id: PrfId) -> Self {
        Self::new(TransformType::PRF, id.0)
    }

    /// An integrity algorithm transform.
    pub fn integ(id: IntegId) -> Self {
        Self::new(TransformType::INTEG, id.0)
    }

    /// A Diffie-Hellman group transform.
    pub fn dh(group: DhGroup) -> Self {
        Self::new(TransformType::DH, group.0)
    }

    /// An extended sequence numbers transform.
    pub fn esn(id: EsnId) -> Self {
        Self::new(TransformType::ESN, id.0)
    }

    /// The KEY_LENGTH attribute in bits, if present in TV format.
    pub fn key_length(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a.value {
            AttributeValue::Short(v) if a.attribute_type == AttributeType::KEY_LENGTH => Some(v),
            _ => None,
        })
    }

    /// The registry name of the transform ID, looked up in the registry of its type.
    pub fn id_name(&self) -> Option<&'static str> {
        let id = self.transform_id;
        match self.transform_type {
            TransformType::ENCR => EncrId(id).name(),
            TransformType::PRF => PrfId(id).name(),
            TransformType::INTEG => IntegId(id).name(),
            TransformType::DH
            | TransformType::ADDKE1
            | TransformType::ADDKE2
            | TransformType::ADDKE3
            | TransformType::ADDKE4
            | TransformType::ADDKE5
            | TransformType::ADDKE6
            | TransformType::ADDKE7 => DhGroup(id).name(),
            TransformType::ESN => EsnId(id).name(),
            _ => None,
        }
    }

    /// Parses what follows the transform's length field.
    fn parse_after_length(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "transform");
        let transform_type = TransformType(r.u8()?);
        r.skip(1)?;
        let transform_id = r.u16()?;
        let mut attributes = Vec::new();
        while !r.is_empty() {
            let raw_type = r.u16()?;
            let attribute_type = AttributeType(raw_type & !ATTRIBUTE_TV);
            let value = if raw_type & ATTRIBUTE_TV != 0 {
                AttributeValue::Short(r.u16()?)
            } else {
                let length = usize::from(r.u16()?);
                AttributeValue::Long(r.take(length)?.to_vec())
            };
            attributes.push(TransformAttribute {
                attribute_type,
                value,
            });
        }
        Ok(Self {
            transform_type,
            transform_id,
            attributes,
        })
    }

    /// Length of the emitted transform substructure.
    pub fn buffer_len(&self) -> usize {
        TRANSFORM_HEADER_LEN
            + self
                .attributes
                .iter()
                .map(TransformAttribute::buffer_len)
                .sum::<usize>()
    }

    fn write(&self, w: &mut Writer<'_>, last: bool) -> Result<(), WireError> {
        w.u8(if last { 0 } else { MORE_TRANSFORMS })?;
        w.u8(0)?;
        w.u16(len_u16(self.buffer_len(), "transform")?)?;
        w.u8(self.transform_type.0)?;
        w.u8(0)?;
        w.u16(self.transform_id)?;
        for attribute in &self.attributes {
            attribute.write(w)?;
        }
        Ok(())
    }
}

impl TransformAttribute {
    /// Length of the emitted attribute.
    pub fn buffer_len(&self) -> usize {
        match &self.value {
            AttributeValue::Short(_) => 4,
            AttributeValue::Long(v) => 4 + v.len(),
        }
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        if self.attribute_type.0 & ATTRIBUTE_TV != 0 {
            return Err(WireError::InvalidValue {
                field: "transform attribute type (format bit set)",
                value: u64::from(self.attribute_type.0),
            });
        }
        match &self.value {
            AttributeValue::Short(v) => {
                w.u16(self.attribute_type.0 | ATTRIBUTE_TV)?;
                w.u16(*v)
            }
            AttributeValue::Long(v) => {
                w.u16(self.attribute_type.0)?;
                w.u16(len_u16(v.len(), "transform attribute")?)?;
                w.bytes(v)
            }
        }
    }
}

impl fmt::Display for Transform {
    /// `ENCR_AES_GCM_16/128`-style: the algorithm name (or type and number), then the key
    /// length and any other attribute.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id_name() {
            Some(name) => f.write_str(name)?,
            None => write!(f, "{}:{}", self.transform_type, self.transform_id)?,
        }
        for attribute in &self.attributes {
            match (&attribute.value, attribute.attribute_type) {
                (AttributeValue::Short(bits), AttributeType::KEY_LENGTH) => write!(f, "/{bits}")?,
                (AttributeValue::Short(v), t) => write!(f, " [{t}={v}]")?,
                (AttributeValue::Long(v), t) => write!(f, " [{t}={} bytes]", v.len())?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for Proposal {
    /// `#1 IKE spi=... ENCR_AES_GCM_16/128 PRF_HMAC_SHA2_256 CURVE25519`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {}", self.number, self.protocol)?;
        if !self.spi.is_empty() {
            f.write_str(" spi=")?;
            for b in &self.spi {
                write!(f, "{b:02x}")?;
            }
        }
        for t in &self.transforms {
            write!(f, " {t}")?;
        }
        Ok(())
    }
}
