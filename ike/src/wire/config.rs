//! The Configuration payload CP (RFC 7296 3.15), kept simple: a type and raw attributes.

use super::codec::{Reader, Writer, impl_emit, len_u16};
use super::{ConfigAttributeType, ConfigType, WireError};

/// The reserved high bit of a configuration attribute type.
const ATTRIBUTE_RESERVED_BIT: u16 = 0x8000;

/// CP payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Configuration {
    /// CFG_REQUEST, CFG_REPLY, CFG_SET or CFG_ACK.
    pub cfg_type: ConfigType,
    /// The attributes, in order.
    pub attributes: Vec<ConfigAttribute>,
}

/// One configuration attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConfigAttribute {
    /// The attribute type (15 bits).
    pub attribute_type: ConfigAttributeType,
    /// The value; empty in a request for "any".
    pub value: Vec<u8>,
}

impl Configuration {
    /// A CP payload.
    pub fn new(cfg_type: ConfigType, attributes: Vec<ConfigAttribute>) -> Self {
        Self {
            cfg_type,
            attributes,
        }
    }

    /// Parses a CP payload body.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "CP payload");
        let cfg_type = ConfigType(r.u8()?);
        r.skip(3)?;
        let mut attributes = Vec::new();
        while !r.is_empty() {
            let attribute_type = ConfigAttributeType(r.u16()? & !ATTRIBUTE_RESERVED_BIT);
            let length = usize::from(r.u16()?);
            attributes.push(ConfigAttribute {
                attribute_type,
                value: r.take(length)?.to_vec(),
            });
        }
        Ok(Self {
            cfg_type,
            attributes,
        })
    }

    /// Length of the emitted body.
    pub fn buffer_len(&self) -> usize {
        4 + self
            .attributes
            .iter()
            .map(|a| 4 + a.value.len())
            .sum::<usize>()
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u8(self.cfg_type.0)?;
        w.zeros(3)?;
        for attribute in &self.attributes {
            if attribute.attribute_type.0 & ATTRIBUTE_RESERVED_BIT != 0 {
                return Err(WireError::InvalidValue {
                    field: "configuration attribute type (reserved bit set)",
                    value: u64::from(attribute.attribute_type.0),
                });
            }
            w.u16(attribute.attribute_type.0)?;
            w.u16(len_u16(attribute.value.len(), "configuration attribute")?)?;
            w.bytes(&attribute.value)?;
        }
        Ok(())
    }
}
impl_emit!(Configuration);
