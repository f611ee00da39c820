//! Temporary ESP seal/open used until the codec's `esp` module lands (same signatures).
#![allow(missing_docs)]

use std::ops::Range;

use hometun_control::{AeadKey, KeyError, Spi};

use crate::aead::{AeadBackend, EspAead, NONCE_LEN, TAG_LEN, new_aead};

pub struct EspSealer {
    spi: Spi,
    salt: [u8; 4],
    esn: bool,
    aead: Box<dyn EspAead>,
}

#[derive(Debug)]
pub struct SealError;
#[derive(Debug)]
pub struct OpenError;

pub struct Opened {
    pub next_header: u8,
    pub inner: Range<usize>,
}

fn aad(spi: u32, seq: u64, esn: bool, out: &mut [u8; 12]) -> usize {
    out[..4].copy_from_slice(&spi.to_be_bytes());
    if esn {
        out[4..8].copy_from_slice(&((seq >> 32) as u32).to_be_bytes());
        out[8..12].copy_from_slice(&(seq as u32).to_be_bytes());
        12
    } else {
        out[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        8
    }
}

impl EspSealer {
    pub fn new(spi: Spi, key: &AeadKey, esn: bool, backend: AeadBackend) -> Result<Self, KeyError> {
        Ok(EspSealer {
            spi,
            salt: key.salt(),
            esn,
            aead: new_aead(key, backend)?,
        })
    }

    pub fn sealed_len(inner_len: usize) -> usize {
        16 + (inner_len + 2).div_ceil(4) * 4 + TAG_LEN
    }

    pub fn seal(
        &self,
        seq: u64,
        inner: &[u8],
        next_header: u8,
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        let total = Self::sealed_len(inner.len());
        let out = out.get_mut(..total).ok_or(SealError)?;
        out[..4].copy_from_slice(&self.spi.0.to_be_bytes());
        out[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        out[8..16].copy_from_slice(&seq.to_be_bytes());
        let body_end = total - TAG_LEN;
        out[16..16 + inner.len()].copy_from_slice(inner);
        let pad = body_end - 2 - 16 - inner.len();
        for i in 0..pad {
            out[16 + inner.len() + i] = (i + 1) as u8;
        }
        out[body_end - 2] = pad as u8;
        out[body_end - 1] = next_header;
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..4].copy_from_slice(&self.salt);
        nonce[4..].copy_from_slice(&seq.to_be_bytes());
        let mut a = [0u8; 12];
        let alen = aad(self.spi.0, seq, self.esn, &mut a);
        let tag = self
            .aead
            .seal_in_place(&nonce, &a[..alen], &mut out[16..body_end]);
        out[body_end..].copy_from_slice(&tag);
        Ok(total)
    }
}

pub struct EspOpener {
    spi: Spi,
    salt: [u8; 4],
    esn: bool,
    aead: Box<dyn EspAead>,
}

impl EspOpener {
    pub fn new(spi: Spi, key: &AeadKey, esn: bool, backend: AeadBackend) -> Result<Self, KeyError> {
        Ok(EspOpener {
            spi,
            salt: key.salt(),
            esn,
            aead: new_aead(key, backend)?,
        })
    }

    pub fn open(&self, seq: u64, packet: &mut [u8]) -> Result<Opened, OpenError> {
        if packet.len() < 16 + 4 + TAG_LEN {
            return Err(OpenError);
        }
        let body_end = packet.len() - TAG_LEN;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&packet[body_end..]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..4].copy_from_slice(&self.salt);
        nonce[4..].copy_from_slice(&packet[8..16]);
        let mut a = [0u8; 12];
        let alen = aad(self.spi.0, seq, self.esn, &mut a);
        self.aead
            .open_in_place(&nonce, &a[..alen], &mut packet[16..body_end], &tag)
            .map_err(|_| OpenError)?;
        let pad = packet[body_end - 2] as usize;
        let next_header = packet[body_end - 1];
        let end = (body_end - 2)
            .checked_sub(pad)
            .filter(|e| *e >= 16)
            .ok_or(OpenError)?;
        Ok(Opened {
            next_header,
            inner: 16..end,
        })
    }
}
