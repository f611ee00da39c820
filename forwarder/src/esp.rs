//! ESP tunnel mode with AES-GCM-16 (RFC 4303 + RFC 4106): sealing an inner packet into an ESP
//! packet and opening one, in place, without allocating.
//!
//! ```text
//!  0       4       8              16                                   len-16      len
//!  | SPI   | Seq   | IV (8)       | inner packet | padding | pl | nh   | ICV (16)  |
//!                                 \______________ encrypted _________/
//!  \___ AAD (SPI || Seq, or SPI || Seq high || Seq low with ESN) ___/ (AAD = first 8 bytes
//!                                                                      plus the ESN high bits)
//! ```
//!
//! The nonce is the 4-byte salt from the key material followed by the 8-byte IV. The IV is the
//! 64-bit sequence number (XOR an optional per-SA mask, as strongSwan does), so one key never
//! sees the same IV twice as long as the caller never reuses a sequence number: the sealer
//! refuses 0 and, without ESN, anything above 2^32 - 1.
//!
//! The receive order is the caller's: `ReplayWindow::infer_seq` -> `ReplayWindow::check` ->
//! [`EspOpener::open`] -> `ReplayWindow::insert`.

use std::fmt;
use std::ops::Range;

use hometun_control::{AeadKey, KeyError, Spi};

use crate::aead::{AeadBackend, EspAead, NONCE_LEN, TAG_LEN, new_aead};
use crate::wire::esp::HEADER_LEN;

/// Length of the explicit IV that follows the ESP header (RFC 4106 3.1).
pub const IV_LEN: usize = 8;
/// Bytes in front of the inner packet in an ESP packet: SPI, sequence number, IV. A caller that
/// reads the inner packet straight into a buffer at this offset can use
/// [`EspSealer::seal_in_place`] and save a copy.
pub const HEADROOM: usize = HEADER_LEN + IV_LEN;
/// Length of the ICV (ENCR_AES_GCM_16).
pub const ICV_LEN: usize = TAG_LEN;
/// Pad length and next header bytes of the trailer.
const TRAILER_LEN: usize = 2;
/// The most ESP adds to an inner packet: header, IV, up to 3 bytes of padding, pad length,
/// next header, ICV.
pub const MAX_OVERHEAD: usize = HEADROOM + 3 + TRAILER_LEN + ICV_LEN;
/// Next header value of an IPv6 inner packet (tunnel mode).
pub const NEXT_HEADER_IPV6: u8 = 41;
/// Next header value of a dummy packet (RFC 4303 2.6), which a receiver must drop.
pub const NEXT_HEADER_NONE: u8 = 59;

/// Why an inner packet could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Sequence number 0 is never sent (RFC 4303 3.3.3: the first packet has 1).
    #[error("sequence number 0 is never sent")]
    ZeroSeq,
    /// Without ESN the sequence number must fit in 32 bits; past that the SA needs a rekey.
    #[error("sequence number space exhausted")]
    SeqExhausted,
    /// The output buffer is shorter than [`EspSealer::sealed_len`].
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// Why an ESP packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Shorter than header, IV, trailer and ICV.
    #[error("ESP packet too short")]
    Truncated,
    /// The packet's SPI is not this SA's.
    #[error("ESP packet for another SPI")]
    WrongSpi,
    /// The given sequence number does not end in the packet's 32 bits (or, without ESN, does
    /// not fit in 32 bits).
    #[error("sequence number does not match the packet")]
    SeqMismatch,
    /// The ICV did not verify: forged, corrupted, wrong key or wrong sequence number.
    #[error("ESP ICV check failed")]
    AuthFailed,
    /// Authentic, but the pad length runs past the payload or the padding is not 1, 2, 3, ...
    /// (RFC 4303 2.4).
    #[error("bad ESP padding")]
    BadPadding,
}

/// An opened ESP packet: where the inner packet lies in the buffer given to
/// [`EspOpener::open`], and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The ESP next header: 41 for IPv6 in tunnel mode, 59 for a dummy packet to drop.
    pub next_header: u8,
    /// The decrypted inner packet's position in the buffer.
    pub inner: Range<usize>,
}

/// Builds the AAD (RFC 4106 5) into `buf` and returns its length: SPI || seq low, or with ESN
/// SPI || seq high || seq low.
fn build_aad(spi: Spi, seq: u64, esn: bool, buf: &mut [u8; 12]) -> usize {
    buf[0..4].copy_from_slice(&spi.0.to_be_bytes());
    if esn {
        buf[4..12].copy_from_slice(&seq.to_be_bytes());
        12
    } else {
        buf[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        8
    }
}

fn build_nonce(salt: [u8; 4], iv: &[u8; IV_LEN]) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..4].copy_from_slice(&salt);
    nonce[4..].copy_from_slice(iv);
    nonce
}

/// Outbound ESP for one SA. `Send + Sync`: one sealer may serve several threads, each passing
/// its own sequence number taken from the SA's atomic counter.
pub struct EspSealer {
    spi: Spi,
    salt: [u8; 4],
    esn: bool,
    iv_mask: u64,
    aead: Box<dyn EspAead>,
}

impl Drop for EspSealer {
    fn drop(&mut self) {
        // The salt is key material too (RFC 4106 8.1); the AEAD wipes its own key.
        zeroize::Zeroize::zeroize(&mut self.salt);
    }
}

impl fmt::Debug for EspSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EspSealer")
            .field("spi", &self.spi)
            .field("esn", &self.esn)
            .finish_non_exhaustive()
    }
}

impl EspSealer {
    /// A sealer for SPI `spi` with `key` (AES key and salt). Fails if the key's length does not
    /// match its algorithm.
    pub fn new(spi: Spi, key: &AeadKey, esn: bool, backend: AeadBackend) -> Result<Self, KeyError> {
        Ok(EspSealer {
            spi,
            salt: key.salt(),
            esn,
            iv_mask: 0,
            aead: new_aead(key, backend)?,
        })
    }

    /// Makes the IV `seq XOR mask` instead of `seq`. Still unique per sequence number;
    /// strongSwan's sealer does this with a random per-SA mask, and known-answer tests against
    /// its packets need it.
    pub fn with_iv_mask(mut self, mask: u64) -> Self {
        self.iv_mask = mask;
        self
    }

    /// The SPI this sealer writes.
    pub fn spi(&self) -> Spi {
        self.spi
    }

    /// Length of the ESP packet (SPI to ICV) for an inner packet of `inner_len` bytes: the
    /// payload and trailer padded to a multiple of 4 bytes (RFC 4303 2.4).
    pub const fn sealed_len(inner_len: usize) -> usize {
        HEADROOM + (inner_len + TRAILER_LEN).next_multiple_of(4) + ICV_LEN
    }

    /// The longest inner packet whose ESP packet fits in `esp_len` bytes (for the tunnel MTU).
    pub const fn max_inner_len(esp_len: usize) -> usize {
        let room = esp_len.saturating_sub(HEADROOM + ICV_LEN);
        (room - room % 4).saturating_sub(TRAILER_LEN)
    }

    fn check_seq(&self, seq: u64) -> Result<(), SealError> {
        if seq == 0 {
            Err(SealError::ZeroSeq)
        } else if !self.esn && seq > u64::from(u32::MAX) {
            Err(SealError::SeqExhausted)
        } else {
            Ok(())
        }
    }

    /// Seals `inner` with sequence number `seq` into `out` (SPI to ICV) and returns the length
    /// written, [`Self::sealed_len`]`(inner.len())`.
    pub fn seal(
        &self,
        seq: u64,
        inner: &[u8],
        next_header: u8,
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        self.check_seq(seq)?;
        let total = Self::sealed_len(inner.len());
        if out.len() < total {
            return Err(SealError::BufferTooSmall);
        }
        out[HEADROOM..HEADROOM + inner.len()].copy_from_slice(inner);
        self.seal_in_place(seq, out, inner.len(), next_header)
    }

    /// Like [`Self::seal`], for an inner packet already in `buf[HEADROOM..HEADROOM + inner_len]`
    /// (saves a copy when the packet is read straight into place). `buf` must be at least
    /// [`Self::sealed_len`]`(inner_len)` long; the ESP packet is written from `buf[0]`.
    pub fn seal_in_place(
        &self,
        seq: u64,
        buf: &mut [u8],
        inner_len: usize,
        next_header: u8,
    ) -> Result<usize, SealError> {
        self.check_seq(seq)?;
        let total = Self::sealed_len(inner_len);
        let packet = buf.get_mut(..total).ok_or(SealError::BufferTooSmall)?;
        let iv = (seq ^ self.iv_mask).to_be_bytes();
        packet[0..4].copy_from_slice(&self.spi.0.to_be_bytes());
        packet[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        packet[HEADER_LEN..HEADROOM].copy_from_slice(&iv);

        let icv_at = total - ICV_LEN;
        let pad_at = HEADROOM + inner_len;
        let pad_len = icv_at - TRAILER_LEN - pad_at;
        for (i, byte) in packet[pad_at..pad_at + pad_len].iter_mut().enumerate() {
            // Padding is 1, 2, 3, ... (RFC 4303 2.4); at most 3 bytes.
            *byte = i as u8 + 1;
        }
        packet[icv_at - 2] = pad_len as u8;
        packet[icv_at - 1] = next_header;

        let mut aad = [0u8; 12];
        let aad_len = build_aad(self.spi, seq, self.esn, &mut aad);
        let nonce = build_nonce(self.salt, &iv);
        let (body, icv) = packet.split_at_mut(icv_at);
        let tag = self
            .aead
            .seal_in_place(&nonce, &aad[..aad_len], &mut body[HEADROOM..]);
        icv.copy_from_slice(&tag);
        Ok(total)
    }
}

/// Inbound ESP for one SA. `Send + Sync`; opening takes `&self`.
pub struct EspOpener {
    spi: Spi,
    salt: [u8; 4],
    esn: bool,
    aead: Box<dyn EspAead>,
}

impl Drop for EspOpener {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.salt);
    }
}

impl fmt::Debug for EspOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EspOpener")
            .field("spi", &self.spi)
            .field("esn", &self.esn)
            .finish_non_exhaustive()
    }
}

impl EspOpener {
    /// An opener for SPI `spi` with `key` (AES key and salt). Fails if the key's length does
    /// not match its algorithm.
    pub fn new(spi: Spi, key: &AeadKey, esn: bool, backend: AeadBackend) -> Result<Self, KeyError> {
        Ok(EspOpener {
            spi,
            salt: key.salt(),
            esn,
            aead: new_aead(key, backend)?,
        })
    }

    /// The SPI this opener accepts.
    pub fn spi(&self) -> Spi {
        self.spi
    }

    /// Authenticates and decrypts, in place, the ESP packet `packet` (from the SPI to the end
    /// of the ICV) whose full sequence number is `seq` (from `ReplayWindow::infer_seq`).
    /// Nothing in `packet` is to be trusted unless this returns `Ok`.
    pub fn open(&self, seq: u64, packet: &mut [u8]) -> Result<Opened, OpenError> {
        if packet.len() < HEADROOM + TRAILER_LEN + ICV_LEN {
            return Err(OpenError::Truncated);
        }
        let wire_spi = u32::from_be_bytes([packet[0], packet[1], packet[2], packet[3]]);
        if wire_spi != self.spi.0 {
            return Err(OpenError::WrongSpi);
        }
        let wire_seq = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        if wire_seq != seq as u32 || (!self.esn && seq > u64::from(u32::MAX)) {
            return Err(OpenError::SeqMismatch);
        }

        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&packet[HEADER_LEN..HEADROOM]);
        let nonce = build_nonce(self.salt, &iv);
        let mut aad = [0u8; 12];
        let aad_len = build_aad(self.spi, seq, self.esn, &mut aad);
        let icv_at = packet.len() - ICV_LEN;
        let (body, icv) = packet.split_at_mut(icv_at);
        let mut tag = [0u8; ICV_LEN];
        tag.copy_from_slice(icv);
        self.aead
            .open_in_place(&nonce, &aad[..aad_len], &mut body[HEADROOM..], &tag)
            .map_err(|_| OpenError::AuthFailed)?;

        // Authentic from here on; now the trailer may be believed.
        let next_header = body[icv_at - 1];
        let pad_len = usize::from(body[icv_at - 2]);
        let inner_end = (icv_at - TRAILER_LEN)
            .checked_sub(pad_len)
            .filter(|&end| end >= HEADROOM)
            .ok_or(OpenError::BadPadding)?;
        let padding_ok = body[inner_end..icv_at - TRAILER_LEN]
            .iter()
            .enumerate()
            .all(|(i, &byte)| usize::from(byte) == i + 1);
        if !padding_ok {
            return Err(OpenError::BadPadding);
        }
        Ok(Opened {
            next_header,
            inner: HEADROOM..inner_end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hometun_control::AeadAlg;

    const BACKENDS: [AeadBackend; 3] = AeadBackend::ALL;

    fn key128() -> AeadKey {
        let keymat: Vec<u8> = (0u8..20).collect();
        AeadKey::from_keymat(AeadAlg::AesGcm128, &keymat).unwrap()
    }

    fn key256() -> AeadKey {
        let keymat: Vec<u8> = (100u8..136).collect();
        AeadKey::from_keymat(AeadAlg::AesGcm256, &keymat).unwrap()
    }

    fn inner(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    fn pair(key: &AeadKey, esn: bool, backend: AeadBackend) -> (EspSealer, EspOpener) {
        (
            EspSealer::new(Spi(0x1234_5678), key, esn, backend).unwrap(),
            EspOpener::new(Spi(0x1234_5678), key, esn, backend).unwrap(),
        )
    }

    #[test]
    fn sealed_len_pads_to_four_bytes() {
        // inner + 2 rounded up to 4, plus 16 in front and 16 behind.
        assert_eq!(EspSealer::sealed_len(0), 36);
        assert_eq!(EspSealer::sealed_len(1), 36);
        assert_eq!(EspSealer::sealed_len(2), 36);
        assert_eq!(EspSealer::sealed_len(3), 40);
        assert_eq!(EspSealer::sealed_len(104), 140);
        assert_eq!(EspSealer::sealed_len(1400), 1436);
        for esp_len in 36..200 {
            let max = EspSealer::max_inner_len(esp_len);
            assert!(EspSealer::sealed_len(max) <= esp_len, "esp_len {esp_len}");
            assert!(
                EspSealer::sealed_len(max + 1) > esp_len,
                "esp_len {esp_len}"
            );
        }
        assert_eq!(EspSealer::max_inner_len(10), 0);
        assert!(EspSealer::sealed_len(1400) - 1400 <= MAX_OVERHEAD);
    }

    #[test]
    fn round_trip_all_lengths_and_backends() {
        for key in [key128(), key256()] {
            for backend in BACKENDS {
                for esn in [false, true] {
                    let (sealer, opener) = pair(&key, esn, backend);
                    for len in 0..70 {
                        let seq = 1000 + len as u64;
                        let plain = inner(len);
                        let mut buf = vec![0u8; EspSealer::sealed_len(len)];
                        let n = sealer.seal(seq, &plain, 41, &mut buf).unwrap();
                        assert_eq!(n, buf.len());
                        assert_eq!(n % 4, 0);
                        // Padding in the clear before encryption was 1, 2, 3.
                        let opened = opener.open(seq, &mut buf).unwrap();
                        assert_eq!(opened.next_header, 41);
                        assert_eq!(&buf[opened.inner.clone()], &plain[..]);
                    }
                }
            }
        }
    }

    #[test]
    fn header_iv_and_aad_layout() {
        let (sealer, _) = pair(&key128(), false, AeadBackend::Ring);
        let mut buf = [0u8; 64];
        let n = sealer.seal(0x0102_0304, &inner(10), 41, &mut buf).unwrap();
        assert_eq!(n, 44);
        assert_eq!(&buf[0..4], &[0x12, 0x34, 0x56, 0x78]);
        assert_eq!(&buf[4..8], &[1, 2, 3, 4]);
        // The IV is the 64-bit sequence number.
        assert_eq!(&buf[8..16], &[0, 0, 0, 0, 1, 2, 3, 4]);

        // With a mask, the IV is seq XOR mask and the packet still opens.
        let key = key128();
        let sealer = EspSealer::new(Spi(9), &key, false, AeadBackend::Ring)
            .unwrap()
            .with_iv_mask(0xff00_0000_0000_00ff);
        let opener = EspOpener::new(Spi(9), &key, false, AeadBackend::Ring).unwrap();
        sealer.seal(5, &inner(10), 41, &mut buf).unwrap();
        assert_eq!(&buf[8..16], &[0xff, 0, 0, 0, 0, 0, 0, 0xfa]);
        assert!(opener.open(5, &mut buf[..n]).is_ok());
    }

    #[test]
    fn esn_high_bits_are_authenticated_but_not_sent() {
        let key = key128();
        let (sealer, opener) = pair(&key, true, AeadBackend::Ring);
        let seq = (7u64 << 32) | 42;
        let mut buf = vec![0u8; EspSealer::sealed_len(20)];
        sealer.seal(seq, &inner(20), 41, &mut buf).unwrap();
        assert_eq!(&buf[4..8], &42u32.to_be_bytes());
        assert_eq!(&buf[8..16], &seq.to_be_bytes());
        let good = buf.clone();
        // Same low bits, other high bits: the AAD differs, so the ICV fails.
        assert_eq!(
            opener.open((6u64 << 32) | 42, &mut buf),
            Err(OpenError::AuthFailed)
        );
        let mut buf = good.clone();
        assert!(opener.open(seq, &mut buf).is_ok());
        // Low bits that do not match the packet are refused before any crypto.
        let mut buf = good;
        assert_eq!(
            opener.open((7u64 << 32) | 43, &mut buf),
            Err(OpenError::SeqMismatch)
        );
    }

    #[test]
    fn sequence_limits() {
        let key = key128();
        let mut out = [0u8; 64];
        let (plain, esn) = (
            pair(&key, false, AeadBackend::Ring),
            pair(&key, true, AeadBackend::Ring),
        );
        assert_eq!(plain.0.seal(0, &[1], 41, &mut out), Err(SealError::ZeroSeq));
        assert_eq!(esn.0.seal(0, &[1], 41, &mut out), Err(SealError::ZeroSeq));
        assert!(
            plain
                .0
                .seal(u64::from(u32::MAX), &[1], 41, &mut out)
                .is_ok()
        );
        assert_eq!(
            plain.0.seal(u64::from(u32::MAX) + 1, &[1], 41, &mut out),
            Err(SealError::SeqExhausted)
        );
        assert!(
            esn.0
                .seal(u64::from(u32::MAX) + 1, &[1], 41, &mut out)
                .is_ok()
        );
        assert!(esn.0.seal(u64::MAX, &[1], 41, &mut out).is_ok());
        // Without ESN the opener refuses a sequence number beyond 32 bits.
        let n = plain.0.seal(5, &[1], 41, &mut out).unwrap();
        assert_eq!(
            plain.1.open((1u64 << 32) | 5, &mut out[..n]),
            Err(OpenError::SeqMismatch)
        );
    }

    #[test]
    fn buffer_too_small() {
        let (sealer, _) = pair(&key128(), false, AeadBackend::Ring);
        let mut out = [0u8; 39];
        assert_eq!(
            sealer.seal(1, &inner(3), 41, &mut out),
            Err(SealError::BufferTooSmall)
        );
        assert_eq!(
            sealer.seal_in_place(1, &mut out, 3, 41),
            Err(SealError::BufferTooSmall)
        );
    }

    #[test]
    fn seal_in_place_matches_seal() {
        let (sealer, _) = pair(&key128(), false, AeadBackend::Ring);
        let plain = inner(101);
        let mut a = vec![0u8; 200];
        let na = sealer.seal(77, &plain, 41, &mut a).unwrap();
        let mut b = vec![0u8; 200];
        b[HEADROOM..HEADROOM + plain.len()].copy_from_slice(&plain);
        let nb = sealer.seal_in_place(77, &mut b, plain.len(), 41).unwrap();
        assert_eq!(&a[..na], &b[..nb]);
    }

    #[test]
    fn any_flipped_byte_fails_authentication() {
        for backend in BACKENDS {
            let (sealer, opener) = pair(&key128(), false, backend);
            let mut sealed = vec![0u8; EspSealer::sealed_len(60)];
            let n = sealer.seal(3, &inner(60), 41, &mut sealed).unwrap();
            for i in 0..n {
                for bit in [0x01u8, 0x80] {
                    let mut bad = sealed.clone();
                    bad[i] ^= bit;
                    let expected = match i {
                        0..4 => OpenError::WrongSpi,
                        4..8 => OpenError::SeqMismatch,
                        _ => OpenError::AuthFailed,
                    };
                    assert_eq!(
                        opener.open(3, &mut bad),
                        Err(expected),
                        "byte {i} {backend:?}"
                    );
                }
            }
            // An opener that believes the SPI or sequence number of a modified header still
            // fails on the ICV (the AAD covers them).
            let other_spi = EspOpener::new(Spi(0x1234_5679), &key128(), false, backend).unwrap();
            let mut bad = sealed.clone();
            bad[3] ^= 1;
            assert_eq!(other_spi.open(3, &mut bad), Err(OpenError::AuthFailed));
            let mut bad = sealed.clone();
            bad[7] ^= 1;
            assert_eq!(opener.open(2, &mut bad), Err(OpenError::AuthFailed));
        }
    }

    #[test]
    fn wrong_key_or_salt_fails() {
        let (sealer, _) = pair(&key128(), false, AeadBackend::Ring);
        let mut sealed = vec![0u8; EspSealer::sealed_len(30)];
        sealer.seal(9, &inner(30), 41, &mut sealed).unwrap();
        let mut keymat: Vec<u8> = (0u8..20).collect();
        keymat[0] ^= 1;
        let other_key = AeadKey::from_keymat(AeadAlg::AesGcm128, &keymat).unwrap();
        keymat[0] ^= 1;
        keymat[19] ^= 1;
        let other_salt = AeadKey::from_keymat(AeadAlg::AesGcm128, &keymat).unwrap();
        for key in [other_key, other_salt, key256()] {
            let opener = EspOpener::new(Spi(0x1234_5678), &key, false, AeadBackend::Ring).unwrap();
            let mut buf = sealed.clone();
            assert_eq!(opener.open(9, &mut buf), Err(OpenError::AuthFailed));
        }
    }

    #[test]
    fn truncated_packets() {
        let (sealer, opener) = pair(&key128(), false, AeadBackend::Ring);
        let mut sealed = vec![0u8; EspSealer::sealed_len(0)];
        let n = sealer.seal(1, &[], 41, &mut sealed).unwrap();
        assert_eq!(n, 36);
        for len in 0..34 {
            let mut buf = sealed[..len].to_vec();
            assert_eq!(
                opener.open(1, &mut buf),
                Err(OpenError::Truncated),
                "len {len}"
            );
        }
        // Cut off at the end: the ICV no longer matches.
        let mut buf = sealed[..35].to_vec();
        assert_eq!(opener.open(1, &mut buf), Err(OpenError::AuthFailed));
        let mut buf = sealed.clone();
        let opened = opener.open(1, &mut buf).unwrap();
        assert!(opened.inner.is_empty());
    }

    /// Seals a hand-made payload (inner packet, padding, pad length and next header given in
    /// full) the way a peer might, to check what the opener does with its trailer.
    fn seal_raw(key: &AeadKey, seq: u32, plaintext: &[u8]) -> Vec<u8> {
        let aead = new_aead(key, AeadBackend::Ring).unwrap();
        let mut packet = Vec::new();
        packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        packet.extend_from_slice(&seq.to_be_bytes());
        let iv = u64::from(seq).to_be_bytes();
        packet.extend_from_slice(&iv);
        packet.extend_from_slice(plaintext);
        let aad: Vec<u8> = packet[..8].to_vec();
        let nonce = build_nonce(key.salt(), &iv);
        let tag = aead.seal_in_place(&nonce, &aad, &mut packet[HEADROOM..]);
        packet.extend_from_slice(&tag);
        packet
    }

    #[test]
    fn padding_is_checked_after_authentication() {
        let key = key128();
        let (_, opener) = pair(&key, false, AeadBackend::Ring);
        let open = |plaintext: &[u8]| {
            let mut packet = seal_raw(&key, 4, plaintext);
            opener
                .open(4, &mut packet)
                .map(|o| (o.next_header, packet[o.inner].to_vec()))
        };
        // Good: 2 inner bytes, 2 padding bytes 1, 2, pad length 2, next header 41.
        assert_eq!(open(&[0xaa, 0xbb, 1, 2, 2, 41]), Ok((41, vec![0xaa, 0xbb])));
        // Longer padding than needed for alignment is allowed (RFC 4303 2.4, TFC).
        assert_eq!(
            open(&[0xaa, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 41]),
            Ok((41, vec![0xaa]))
        );
        // Padding bytes out of sequence.
        assert_eq!(open(&[0xaa, 0xbb, 2, 1, 2, 41]), Err(OpenError::BadPadding));
        assert_eq!(open(&[0xaa, 0xbb, 0, 0, 2, 41]), Err(OpenError::BadPadding));
        // Pad length past the start of the payload.
        assert_eq!(open(&[1, 2, 3, 41]), Err(OpenError::BadPadding));
        assert_eq!(open(&[255, 41]), Err(OpenError::BadPadding));
        // The whole payload is padding: an empty inner packet.
        assert_eq!(open(&[1, 2, 2, 59]), Ok((59, vec![])));
    }

    #[test]
    fn shared_across_threads() {
        let key = key128();
        let (sealer, opener) = pair(&key, false, AeadBackend::Ring);
        let sealer = std::sync::Arc::new(sealer);
        let opener = std::sync::Arc::new(opener);
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let sealer = sealer.clone();
                let opener = opener.clone();
                std::thread::spawn(move || {
                    for i in 1..=200u64 {
                        let seq = t * 1000 + i;
                        let plain = inner((seq % 97) as usize);
                        let mut buf = vec![0u8; EspSealer::sealed_len(plain.len())];
                        sealer.seal(seq, &plain, 41, &mut buf).unwrap();
                        let opened = opener.open(seq, &mut buf).unwrap();
                        assert_eq!(&buf[opened.inner], &plain[..]);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    }
}
