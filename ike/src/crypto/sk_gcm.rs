//! The SK payload cipher: ENCR_AES_GCM_16 with an 8-byte explicit IV, a 4-byte salt from the
//! key material and a 16-byte ICV (RFC 5282 3, 5.1).
//!
//! The nonce is salt || IV. The IV must never repeat under one key: the caller makes it from a
//! per-SA counter (for instance the message ID and a retransmission-independent counter).

use std::fmt;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use hometun_control::AeadAlg;

use super::CryptoError;
use crate::wire::{SkCipher, SkError};

/// Explicit IV length in the SK payload.
pub const SK_IV_LEN: usize = 8;
/// ICV (GCM tag) length of ENCR_AES_GCM_16.
pub const SK_ICV_LEN: usize = 16;
/// Salt length at the end of SK_ei / SK_er.
pub const SK_SALT_LEN: usize = 4;

enum Gcm {
    // Boxed: the expanded AES key schedules are large; the cipher types zeroize on drop.
    Aes128(Box<Aes128Gcm>),
    Aes256(Box<Aes256Gcm>),
}

/// One direction's SK payload cipher (made from SK_ei or SK_er).
pub struct SkGcm {
    alg: AeadAlg,
    gcm: Gcm,
    salt: [u8; SK_SALT_LEN],
}

impl SkGcm {
    /// Builds the cipher from SK_ei or SK_er: the AES key followed by the 4-byte salt
    /// (RFC 5282 7.1), 20 bytes for AES-128, 36 for AES-256.
    pub fn new(alg: AeadAlg, key_and_salt: &[u8]) -> Result<Self, CryptoError> {
        let expected = alg.key_len() + SK_SALT_LEN;
        if key_and_salt.len() != expected {
            return Err(CryptoError::KeyMaterialLength {
                what: "SK payload AES-GCM",
                expected,
                got: key_and_salt.len(),
            });
        }
        let (key, salt) = key_and_salt.split_at(alg.key_len());
        let gcm = match alg {
            AeadAlg::AesGcm128 => Gcm::Aes128(Box::new(
                Aes128Gcm::new_from_slice(key).expect("length checked above"),
            )),
            AeadAlg::AesGcm256 => Gcm::Aes256(Box::new(
                Aes256Gcm::new_from_slice(key).expect("length checked above"),
            )),
        };
        let mut salt_bytes = [0u8; SK_SALT_LEN];
        salt_bytes.copy_from_slice(salt);
        Ok(SkGcm {
            alg,
            gcm,
            salt: salt_bytes,
        })
    }

    /// The algorithm.
    pub fn alg(&self) -> AeadAlg {
        self.alg
    }

    fn nonce(&self, iv: &[u8]) -> Result<[u8; 12], CryptoError> {
        if iv.len() != SK_IV_LEN {
            return Err(CryptoError::IvLength(iv.len()));
        }
        let mut nonce = [0u8; 12];
        nonce[..SK_SALT_LEN].copy_from_slice(&self.salt);
        nonce[SK_SALT_LEN..].copy_from_slice(iv);
        Ok(nonce)
    }

    /// Encrypts `buf` (the plaintext payloads, padding and pad length) in place and returns the
    /// ICV. `aad` is the IKE header and the SK payload's generic header (RFC 5282 5.1).
    pub fn seal_in_place(
        &self,
        iv: &[u8],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; SK_ICV_LEN], CryptoError> {
        let nonce = self.nonce(iv)?;
        let tag = match &self.gcm {
            Gcm::Aes128(c) => c.encrypt_inout_detached(&nonce.into(), aad, buf.into()),
            Gcm::Aes256(c) => c.encrypt_inout_detached(&nonce.into(), aad, buf.into()),
        }
        // aes-gcm fails only beyond 2^36 bytes of plaintext or AAD; an IKE message is < 64 KiB.
        .map_err(|_| CryptoError::InputTooLong)?;
        Ok(tag.into())
    }

    /// Checks `icv` and decrypts `buf` in place. On failure `buf` is left encrypted and the
    /// message must be dropped.
    pub fn open_in_place(
        &self,
        iv: &[u8],
        aad: &[u8],
        buf: &mut [u8],
        icv: &[u8],
    ) -> Result<(), CryptoError> {
        let nonce = self.nonce(iv)?;
        let tag: [u8; SK_ICV_LEN] = icv
            .try_into()
            .map_err(|_| CryptoError::IcvLength(icv.len()))?;
        match &self.gcm {
            Gcm::Aes128(c) => c.decrypt_inout_detached(&nonce.into(), aad, buf.into(), &tag.into()),
            Gcm::Aes256(c) => c.decrypt_inout_detached(&nonce.into(), aad, buf.into(), &tag.into()),
        }
        .map_err(|_| CryptoError::IntegrityCheckFailed)
    }
}

/// The SK payload framing of `wire::sk` drives the cipher through this trait.
impl SkCipher for SkGcm {
    fn iv_len(&self) -> usize {
        SK_IV_LEN
    }

    fn icv_len(&self) -> usize {
        SK_ICV_LEN
    }

    fn seal(&self, iv: &[u8], aad: &[u8], buf: &mut [u8]) -> Result<Vec<u8>, SkError> {
        self.seal_in_place(iv, aad, buf)
            .map(|icv| icv.to_vec())
            .map_err(to_sk_error)
    }

    fn open(&self, iv: &[u8], aad: &[u8], buf: &mut [u8], icv: &[u8]) -> Result<(), SkError> {
        self.open_in_place(iv, aad, buf, icv).map_err(to_sk_error)
    }
}

fn to_sk_error(err: CryptoError) -> SkError {
    match err {
        CryptoError::IvLength(actual) => SkError::IvLength {
            expected: SK_IV_LEN,
            actual,
        },
        CryptoError::IcvLength(actual) => SkError::IcvLength {
            expected: SK_ICV_LEN,
            actual,
        },
        CryptoError::IntegrityCheckFailed => SkError::IntegrityCheckFailed,
        _ => SkError::Cipher("AES-GCM input too long"),
    }
}

impl fmt::Debug for SkGcm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SkGcm({}, <redacted>)", self.alg.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_and_tamper() {
        for (alg, len) in [(AeadAlg::AesGcm128, 20), (AeadAlg::AesGcm256, 36)] {
            let key: Vec<u8> = (0..len as u8).collect();
            let gcm = SkGcm::new(alg, &key).unwrap();
            let iv = [9u8; 8];
            let aad = b"header+sk header";
            let mut buf = *b"payloads, padding and pad length";
            let plain = buf;
            let icv = gcm.seal_in_place(&iv, aad, &mut buf).unwrap();
            assert_ne!(buf, plain);
            let sealed = buf;
            gcm.open_in_place(&iv, aad, &mut buf, &icv).unwrap();
            assert_eq!(buf, plain);

            let mut flipped = sealed;
            flipped[3] ^= 1;
            assert!(matches!(
                gcm.open_in_place(&iv, aad, &mut flipped, &icv),
                Err(CryptoError::IntegrityCheckFailed)
            ));
            let mut other = sealed;
            assert!(matches!(
                gcm.open_in_place(&iv, b"other aad", &mut other, &icv),
                Err(CryptoError::IntegrityCheckFailed)
            ));
            assert!(matches!(
                gcm.open_in_place(&[0; 7], aad, &mut other, &icv),
                Err(CryptoError::IvLength(7))
            ));
            assert!(matches!(
                gcm.open_in_place(&iv, aad, &mut other, &icv[..15]),
                Err(CryptoError::IcvLength(15))
            ));
        }
    }

    #[test]
    fn wrong_key_length_is_refused() {
        assert!(matches!(
            SkGcm::new(AeadAlg::AesGcm128, &[0; 16]),
            Err(CryptoError::KeyMaterialLength {
                expected: 20,
                got: 16,
                ..
            })
        ));
    }
}
