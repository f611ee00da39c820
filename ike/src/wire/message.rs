//! A whole IKE message: header and payload chain.

use super::codec::Writer;
use super::header::{HEADER_LEN, MAJOR_VERSION};
use super::payload::{PayloadList, first_payload_type, parse_payloads, payloads_len, write_chain};
use super::{Encrypted, Header, Notify, NotifyType, Payload, PayloadType, WireError};

/// An IKE message as it travels: header and payloads (an SK payload still encrypted; see
/// [`ProtectedMessage`](super::ProtectedMessage) for the payloads inside).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    /// The header. [`Message::emit`] fills in its `next_payload` and `length`.
    pub header: Header,
    /// The payloads in order.
    pub payloads: Vec<Payload>,
}

impl Message {
    /// A message.
    pub fn new(header: Header, payloads: Vec<Payload>) -> Self {
        Self { header, payloads }
    }

    /// Parses one IKE message (without the non-ESP marker): the header's major version must be
    /// 2, its length must equal `bytes.len()`, and the payload chain must cover the rest.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let header = Header::parse(bytes)?;
        if header.major_version != MAJOR_VERSION {
            return Err(WireError::UnsupportedMajorVersion(header.major_version));
        }
        if usize::try_from(header.length).ok() != Some(bytes.len()) {
            return Err(WireError::LengthMismatch {
                declared: header.length,
                actual: bytes.len(),
            });
        }
        let body = bytes.get(HEADER_LEN..).unwrap_or_default();
        let payloads = parse_payloads(header.next_payload, body)?;
        Ok(Self { header, payloads })
    }

    /// Length of the emitted message.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + payloads_len(&self.payloads)
    }

    /// Writes the message into the front of `buf`, with the header's Next Payload and Length
    /// computed from the payloads; returns the bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let length = u32::try_from(self.buffer_len()).map_err(|_| WireError::TooLong("message"))?;
        let header = Header {
            next_payload: first_payload_type(&self.payloads),
            length,
            ..self.header.clone()
        };
        let mut w = Writer::new(buf);
        header.write(&mut w)?;
        write_chain(&self.payloads, PayloadType::NONE, &mut w)?;
        Ok(w.position())
    }

    /// The emitted message in a new buffer of exactly [`buffer_len`](Self::buffer_len) bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut buf = vec![0; self.buffer_len()];
        self.emit(&mut buf)?;
        Ok(buf)
    }

    /// The SK payload, if the message has one.
    pub fn encrypted(&self) -> Option<&Encrypted> {
        self.payloads.iter().find_map(|p| match p {
            Payload::Encrypted(e) => Some(e),
            _ => None,
        })
    }

    /// The Notify payloads.
    pub fn notifies(&self) -> impl Iterator<Item = &Notify> {
        PayloadList::notifies(self.payloads.as_slice())
    }

    /// The first Notify payload of a type.
    pub fn notify(&self, notify_type: NotifyType) -> Option<&Notify> {
        self.notifies().find(|n| n.notify_type == notify_type)
    }
}
