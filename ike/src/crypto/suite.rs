//! Which negotiated transforms the crypto layer implements, and their wire registry values:
//! ENCR_AES_GCM_16 with 128- or 256-bit keys (SK payload and ESP), PRF_HMAC_SHA2_256.

use hometun_control::AeadAlg;

use super::CryptoError;
use crate::wire::{EncrId, PrfId};

/// The AEAD of an ENCR transform with its Key Length attribute (in bits). Anything but
/// ENCR_AES_GCM_16 with 128 or 256 bits is [`CryptoError::UnsupportedTransform`]
/// (NO_PROPOSAL_CHOSEN). AES-GCM requires the attribute (RFC 5282 8).
pub fn aead_alg(encr: EncrId, key_bits: Option<u16>) -> Result<AeadAlg, CryptoError> {
    match (encr, key_bits) {
        (EncrId::ENCR_AES_GCM_16, Some(128)) => Ok(AeadAlg::AesGcm128),
        (EncrId::ENCR_AES_GCM_16, Some(256)) => Ok(AeadAlg::AesGcm256),
        (encr, Some(bits)) => Err(CryptoError::UnsupportedTransform(format!(
            "{encr} with a {bits}-bit key"
        ))),
        (encr, None) => Err(CryptoError::UnsupportedTransform(format!(
            "{encr} without a key length"
        ))),
    }
}

/// The ENCR transform ID and Key Length attribute (bits) that offer `alg`.
pub fn encr_transform(alg: AeadAlg) -> (EncrId, u16) {
    (EncrId::ENCR_AES_GCM_16, alg.key_bits())
}

/// The only PRF: PRF_HMAC_SHA2_256.
pub const PRF: PrfId = PrfId::PRF_HMAC_SHA2_256;

/// Accepts PRF_HMAC_SHA2_256 only.
pub fn check_prf(prf: PrfId) -> Result<(), CryptoError> {
    if prf == PRF {
        Ok(())
    } else {
        Err(CryptoError::UnsupportedTransform(format!("{prf}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::NotifyType;

    #[test]
    fn gcm_128_and_256_only() {
        for alg in [AeadAlg::AesGcm128, AeadAlg::AesGcm256] {
            let (encr, bits) = encr_transform(alg);
            assert_eq!(aead_alg(encr, Some(bits)).unwrap(), alg);
        }
        for (encr, bits) in [
            (EncrId::ENCR_AES_GCM_16, Some(192)),
            (EncrId::ENCR_AES_GCM_16, None),
            (EncrId::ENCR_AES_CBC, Some(128)),
            (EncrId::ENCR_CHACHA20_POLY1305, None),
        ] {
            let err = aead_alg(encr, bits).unwrap_err();
            assert_eq!(err.notify_type(), Some(NotifyType::NO_PROPOSAL_CHOSEN));
        }
        assert!(check_prf(PrfId::PRF_HMAC_SHA2_256).is_ok());
        let err = check_prf(PrfId::PRF_HMAC_SHA1).unwrap_err();
        assert_eq!(err.to_string(), "transform PRF_HMAC_SHA1 is not supported");
    }
}
