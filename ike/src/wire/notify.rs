//! The Notify (RFC 7296 3.10) and Delete (3.11) payloads.

use super::codec::{Reader, Writer, impl_emit, len_u8, len_u16};
use hometun_control::Spi;

use super::{HashAlgorithm, NotifyType, ProtocolId, WireError};

/// Notify payload: an error or status, optionally about a CHILD SA named by its SPI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notify {
    /// NONE for notifications about the IKE SA, ESP/AH with `spi` for a CHILD SA.
    pub protocol: ProtocolId,
    /// The SPI the notification is about (usually empty).
    pub spi: Vec<u8>,
    /// What is being notified.
    pub notify_type: NotifyType,
    /// Type-specific data (a cookie, a NAT detection hash, the hash algorithm list...).
    pub data: Vec<u8>,
}

impl Notify {
    /// A notification about the IKE SA (protocol NONE, no SPI).
    pub fn new(notify_type: NotifyType, data: Vec<u8>) -> Self {
        Self {
            protocol: ProtocolId::NONE,
            spi: Vec::new(),
            notify_type,
            data,
        }
    }

    /// A notification about the SA of `protocol` with `spi` (for example REKEY_SA).
    pub fn with_spi(
        protocol: ProtocolId,
        spi: Vec<u8>,
        notify_type: NotifyType,
        data: Vec<u8>,
    ) -> Self {
        Self {
            protocol,
            spi,
            notify_type,
            data,
        }
    }

    /// SIGNATURE_HASH_ALGORITHMS listing `algorithms` (RFC 7427 4).
    pub fn signature_hash_algorithms(algorithms: &[HashAlgorithm]) -> Self {
        let data = algorithms.iter().flat_map(|a| a.0.to_be_bytes()).collect();
        Self::new(NotifyType::SIGNATURE_HASH_ALGORITHMS, data)
    }

    /// The data read as a list of 16-bit hash algorithm IDs (for SIGNATURE_HASH_ALGORITHMS);
    /// a trailing odd octet is left out.
    pub fn hash_algorithms(&self) -> impl Iterator<Item = HashAlgorithm> + '_ {
        self.data
            .chunks_exact(2)
            .map(|pair| HashAlgorithm(u16::from_be_bytes([pair[0], pair[1]])))
    }

    /// Parses a Notify payload body.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "Notify payload");
        let protocol = ProtocolId(r.u8()?);
        let spi_size = usize::from(r.u8()?);
        let notify_type = NotifyType(r.u16()?);
        let spi = r.take(spi_size)?.to_vec();
        Ok(Self {
            protocol,
            spi,
            notify_type,
            data: r.rest().to_vec(),
        })
    }

    /// Length of the emitted body.
    pub fn buffer_len(&self) -> usize {
        4 + self.spi.len() + self.data.len()
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u8(self.protocol.0)?;
        w.u8(len_u8(self.spi.len(), "Notify SPI")?)?;
        w.u16(self.notify_type.0)?;
        w.bytes(&self.spi)?;
        w.bytes(&self.data)
    }
}
impl_emit!(Notify);

/// Delete payload: the SAs of one protocol the sender has deleted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Delete {
    /// IKE (then `spi_size` is 0 and `spis` empty: the IKE SA of this message), ESP or AH.
    pub protocol: ProtocolId,
    /// Size of each SPI: 0 for IKE, 4 for ESP and AH.
    pub spi_size: u8,
    /// The SPIs (the sender's inbound SPIs for ESP), each `spi_size` octets.
    pub spis: Vec<Vec<u8>>,
}

impl Delete {
    /// Deletes the IKE SA the message belongs to.
    pub fn ike() -> Self {
        Self {
            protocol: ProtocolId::IKE,
            spi_size: 0,
            spis: Vec::new(),
        }
    }

    /// Deletes the ESP SAs with these (inbound) SPIs.
    pub fn esp(spis: &[Spi]) -> Self {
        Self {
            protocol: ProtocolId::ESP,
            spi_size: 4,
            spis: spis.iter().map(|spi| spi.to_bytes().to_vec()).collect(),
        }
    }

    /// The SPIs read as 32-bit ESP/AH SPIs (those of another size are left out).
    pub fn esp_spis(&self) -> impl Iterator<Item = Spi> + '_ {
        self.spis.iter().filter_map(|spi| Spi::from_bytes(spi))
    }

    /// Parses a Delete payload body.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "Delete payload");
        let protocol = ProtocolId(r.u8()?);
        let spi_size = r.u8()?;
        let count = usize::from(r.u16()?);
        if spi_size == 0 && count != 0 {
            return Err(WireError::InvalidValue {
                field: "Delete SPI count with SPI size 0",
                value: count as u64,
            });
        }
        let size = usize::from(spi_size);
        let needed = size * count;
        if needed != r.remaining() {
            return Err(WireError::InvalidLength {
                what: "Delete payload SPIs",
                length: r.remaining(),
            });
        }
        let spis = (0..count)
            .map(|_| r.take(size).map(<[u8]>::to_vec))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            protocol,
            spi_size,
            spis,
        })
    }

    /// Length of the emitted body.
    pub fn buffer_len(&self) -> usize {
        4 + self.spis.iter().map(Vec::len).sum::<usize>()
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        if self.spi_size == 0 && !self.spis.is_empty() {
            return Err(WireError::InvalidValue {
                field: "Delete SPI count with SPI size 0",
                value: self.spis.len() as u64,
            });
        }
        if let Some(bad) = self
            .spis
            .iter()
            .find(|s| s.len() != usize::from(self.spi_size))
        {
            return Err(WireError::InvalidValue {
                field: "Delete SPI length (differs from SPI size)",
                value: bad.len() as u64,
            });
        }
        w.u8(self.protocol.0)?;
        w.u8(self.spi_size)?;
        w.u16(len_u16(self.spis.len(), "Delete SPI count")?)?;
        for spi in &self.spis {
            w.bytes(spi)?;
        }
        Ok(())
    }
}
impl_emit!(Delete);
