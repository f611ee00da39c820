//! The IKEv2 key schedule with PRF_HMAC_SHA2_256 (RFC 7296 2.13, 2.14, 2.17, 2.18).
//!
//! With an HMAC PRF, `prf(Ni | Nr, g^ir)` is exactly HKDF-Extract(salt = Ni | Nr, IKM = g^ir)
//! and `prf+(K, S)` is exactly HKDF-Expand(PRK = K, info = S) (RFC 5869 2.3 builds
//! T(n) = HMAC(PRK, T(n-1) | info | n) just as RFC 7296 2.13 does), so both come from `hkdf`.
//! The known-answer test against strongSwan's logged keys (tests/crypto_kat_strongswan.rs)
//! and the comparison with a direct HMAC prf+ (tests/crypto_keys.rs) prove it.

use std::fmt;

use hkdf::{Hkdf, HkdfExtract};
use hmac::{Hmac, KeyInit, Mac};
use hometun_control::{AeadAlg, AeadKey};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use super::CryptoError;
use super::sk_gcm::SkGcm;

/// Output and preferred key size of PRF_HMAC_SHA2_256 (RFC 4868): SK_d, SK_pi, SK_pr length.
pub const PRF_LEN: usize = 32;

/// Most bytes prf+ can give: 255 blocks (RFC 7296 2.13 and RFC 5869 2.3 agree).
pub const PRF_PLUS_MAX: usize = 255 * PRF_LEN;

/// Shortest and longest nonce (RFC 7296 3.9; at least half the PRF key size, 16 bytes).
pub const NONCE_LEN_RANGE: std::ops::RangeInclusive<usize> = 16..=256;

/// The IKEv2 PRF, HMAC-SHA-256, over the concatenation of `parts`.
pub fn prf(key: &[u8], parts: &[&[u8]]) -> [u8; PRF_LEN] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// prf+ (RFC 7296 2.13) as HKDF-Expand: `len` bytes from `key` and the seed `S`, given as the
/// parts of its concatenation. `key` is always a full PRF output here (SKEYSEED or SK_d).
pub fn prf_plus(
    key: &[u8; PRF_LEN],
    seed: &[&[u8]],
    len: usize,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if len > PRF_PLUS_MAX {
        return Err(CryptoError::PrfPlusTooLong(len));
    }
    let hkdf = Hkdf::<Sha256>::from_prk(key).expect("a 32-byte PRK is HashLen long");
    let mut okm = Zeroizing::new(vec![0u8; len]);
    hkdf.expand_multi_info(seed, &mut okm)
        .map_err(|_| CryptoError::PrfPlusTooLong(len))?;
    Ok(okm)
}

/// Refuses a nonce outside RFC 7296 2.10's 16 to 256 bytes.
pub fn check_nonce(nonce: &[u8]) -> Result<(), CryptoError> {
    if NONCE_LEN_RANGE.contains(&nonce.len()) {
        Ok(())
    } else {
        Err(CryptoError::NonceLength(nonce.len()))
    }
}

fn extract(salt: &[u8], ikm: &[&[u8]]) -> Zeroizing<[u8; PRF_LEN]> {
    let mut extract = HkdfExtract::<Sha256>::new(Some(salt));
    for part in ikm {
        extract.input_ikm(part);
    }
    let (mut prk, _) = extract.finalize();
    let mut out = Zeroizing::new([0u8; PRF_LEN]);
    out.copy_from_slice(&prk);
    prk.as_mut_slice().zeroize();
    out
}

/// SKEYSEED of an IKE SA. Wiped on drop; only needed until [`Skeyseed::derive_ike_keys`].
pub struct Skeyseed(Zeroizing<[u8; PRF_LEN]>);

impl Skeyseed {
    /// SKEYSEED of a new IKE SA: prf(Ni | Nr, g^ir) (RFC 7296 2.14), as
    /// HKDF-Extract(salt = Ni | Nr, IKM = g^ir).
    pub fn initial(ni: &[u8], nr: &[u8], g_ir: &[u8]) -> Result<Self, CryptoError> {
        check_nonce(ni)?;
        check_nonce(nr)?;
        let mut salt = Zeroizing::new(Vec::with_capacity(ni.len() + nr.len()));
        salt.extend_from_slice(ni);
        salt.extend_from_slice(nr);
        Ok(Skeyseed(extract(&salt, &[g_ir])))
    }

    /// SKEYSEED of an IKE SA made by rekeying: prf(SK_d (old), g^ir (new) | Ni | Nr)
    /// (RFC 7296 2.18), as HKDF-Extract(salt = SK_d, IKM = g^ir | Ni | Nr). Ni and Nr are the
    /// nonces of the CREATE_CHILD_SA exchange.
    pub fn rekeyed(
        old_sk_d: &[u8; PRF_LEN],
        g_ir: &[u8],
        ni: &[u8],
        nr: &[u8],
    ) -> Result<Self, CryptoError> {
        check_nonce(ni)?;
        check_nonce(nr)?;
        Ok(Skeyseed(extract(old_sk_d, &[g_ir, ni, nr])))
    }

    /// The SKEYSEED bytes.
    pub fn as_bytes(&self) -> &[u8; PRF_LEN] {
        &self.0
    }

    /// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi |
    /// SPIr) (RFC 7296 2.14), the SPIs as in the IKE header (`wire::Header`). `alg` is the SK
    /// payload's AES-GCM; SK_ai and SK_ar are empty for an AEAD, SK_ei and SK_er are
    /// key || 4-byte salt (RFC 5282 7.1).
    pub fn derive_ike_keys(
        &self,
        alg: AeadAlg,
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<IkeSaKeys, CryptoError> {
        check_nonce(ni)?;
        check_nonce(nr)?;
        let e_len = alg.key_len() + 4;
        let total = PRF_LEN + 2 * e_len + 2 * PRF_LEN;
        let (spi_i, spi_r) = (spi_i.to_be_bytes(), spi_r.to_be_bytes());
        let okm = prf_plus(&self.0, &[ni, nr, &spi_i, &spi_r], total)?;
        let take32 = |at: usize| {
            let mut key = Zeroizing::new([0u8; PRF_LEN]);
            key.copy_from_slice(&okm[at..at + PRF_LEN]);
            key
        };
        let sk_d = take32(0);
        let ei_at = PRF_LEN;
        let er_at = ei_at + e_len;
        let pi_at = er_at + e_len;
        Ok(IkeSaKeys {
            alg,
            sk_d,
            sk_ei: Zeroizing::new(okm[ei_at..er_at].to_vec()),
            sk_er: Zeroizing::new(okm[er_at..pi_at].to_vec()),
            sk_pi: take32(pi_at),
            sk_pr: take32(pi_at + PRF_LEN),
        })
    }
}

impl fmt::Debug for Skeyseed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Skeyseed(<redacted>)")
    }
}

/// The keys of one IKE SA (AES-GCM SK payload, PRF_HMAC_SHA2_256). Wiped on drop.
pub struct IkeSaKeys {
    alg: AeadAlg,
    sk_d: Zeroizing<[u8; PRF_LEN]>,
    sk_ei: Zeroizing<Vec<u8>>,
    sk_er: Zeroizing<Vec<u8>>,
    sk_pi: Zeroizing<[u8; PRF_LEN]>,
    sk_pr: Zeroizing<[u8; PRF_LEN]>,
}

impl IkeSaKeys {
    /// SKEYSEED and all SK_* of a new IKE SA in one step (IKE_SA_INIT).
    pub fn initial(
        alg: AeadAlg,
        ni: &[u8],
        nr: &[u8],
        g_ir: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<Self, CryptoError> {
        Skeyseed::initial(ni, nr, g_ir)?.derive_ike_keys(alg, ni, nr, spi_i, spi_r)
    }

    /// The keys of the IKE SA that replaces this one (CREATE_CHILD_SA rekeying the IKE SA,
    /// RFC 7296 2.18): `ni`, `nr` are that exchange's nonces, `spi_i`, `spi_r` the new SA's.
    pub fn rekey(
        &self,
        alg: AeadAlg,
        g_ir: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<Self, CryptoError> {
        Skeyseed::rekeyed(&self.sk_d, g_ir, ni, nr)?.derive_ike_keys(alg, ni, nr, spi_i, spi_r)
    }

    /// The SK payload algorithm.
    pub fn alg(&self) -> AeadAlg {
        self.alg
    }

    /// SK_d, the key CHILD SA keys and a rekeyed IKE SA's SKEYSEED derive from.
    pub fn sk_d(&self) -> &[u8; PRF_LEN] {
        &self.sk_d
    }

    /// SK_ai: empty, AES-GCM has no separate integrity key.
    pub fn sk_ai(&self) -> &[u8] {
        &[]
    }

    /// SK_ar: empty, AES-GCM has no separate integrity key.
    pub fn sk_ar(&self) -> &[u8] {
        &[]
    }

    /// SK_ei: AES key || 4-byte salt protecting messages the original initiator sends.
    pub fn sk_ei(&self) -> &[u8] {
        &self.sk_ei
    }

    /// SK_er: AES key || 4-byte salt protecting messages the original responder sends.
    pub fn sk_er(&self) -> &[u8] {
        &self.sk_er
    }

    /// SK_pi, for the initiator's AUTH octets.
    pub fn sk_pi(&self) -> &[u8; PRF_LEN] {
        &self.sk_pi
    }

    /// SK_pr, for the responder's AUTH octets.
    pub fn sk_pr(&self) -> &[u8; PRF_LEN] {
        &self.sk_pr
    }

    /// The SK payload cipher for messages the original initiator sends (SK_ei).
    pub fn initiator_cipher(&self) -> Result<SkGcm, CryptoError> {
        SkGcm::new(self.alg, &self.sk_ei)
    }

    /// The SK payload cipher for messages the original responder sends (SK_er).
    pub fn responder_cipher(&self) -> Result<SkGcm, CryptoError> {
        SkGcm::new(self.alg, &self.sk_er)
    }

    /// The ESP keys of a CHILD SA created under this IKE SA; see [`child_sa_keys`].
    pub fn child_sa_keys(
        &self,
        alg: AeadAlg,
        g_ir: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
    ) -> Result<ChildSaKeys, CryptoError> {
        child_sa_keys(&self.sk_d, alg, g_ir, ni, nr)
    }
}

impl fmt::Debug for IkeSaKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IkeSaKeys({}, <redacted>)", self.alg.name())
    }
}

/// The two ESP keys of a CHILD SA, named by direction relative to the *exchange* that created
/// it (for CREATE_CHILD_SA that is whoever sent the request, not the IKE SA's initiator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSaKeys {
    /// Protects packets from the exchange initiator to the responder.
    pub initiator_to_responder: AeadKey,
    /// Protects packets from the exchange responder to the initiator.
    pub responder_to_initiator: AeadKey,
}

/// CHILD SA KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) (RFC 7296 2.17), split as the ESP
/// initiator-to-responder key || salt, then responder-to-initiator key || salt (RFC 4106 8.1).
/// Ni and Nr are the nonces of the exchange (IKE_AUTH: those of IKE_SA_INIT); `g_ir` only when
/// the CREATE_CHILD_SA carried KE payloads (PFS).
pub fn child_sa_keys(
    sk_d: &[u8; PRF_LEN],
    alg: AeadAlg,
    g_ir: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
) -> Result<ChildSaKeys, CryptoError> {
    check_nonce(ni)?;
    check_nonce(nr)?;
    let one = alg.key_len() + 4;
    let keymat = match g_ir {
        Some(g_ir) => prf_plus(sk_d, &[g_ir, ni, nr], 2 * one)?,
        None => prf_plus(sk_d, &[ni, nr], 2 * one)?,
    };
    let key = |range: std::ops::Range<usize>| {
        AeadKey::from_keymat(alg, &keymat[range]).map_err(|_| CryptoError::KeyMaterialLength {
            what: "ESP AES-GCM",
            expected: one,
            got: keymat.len() / 2,
        })
    };
    Ok(ChildSaKeys {
        initiator_to_responder: key(0..one)?,
        responder_to_initiator: key(one..2 * one)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prf_plus_refuses_more_than_255_blocks() {
        let key = [1u8; PRF_LEN];
        assert_eq!(prf_plus(&key, &[b"s"], PRF_PLUS_MAX).unwrap().len(), 8160);
        assert!(matches!(
            prf_plus(&key, &[b"s"], PRF_PLUS_MAX + 1),
            Err(CryptoError::PrfPlusTooLong(8161))
        ));
    }

    #[test]
    fn short_and_long_nonces_are_refused() {
        let n = [0u8; 32];
        assert!(matches!(
            Skeyseed::initial(&[0u8; 15], &n, b"g"),
            Err(CryptoError::NonceLength(15))
        ));
        assert!(matches!(
            Skeyseed::initial(&n, &[0u8; 257], b"g"),
            Err(CryptoError::NonceLength(257))
        ));
    }

    #[test]
    fn key_lengths_follow_the_algorithm() {
        for (alg, e) in [(AeadAlg::AesGcm128, 20), (AeadAlg::AesGcm256, 36)] {
            let keys = IkeSaKeys::initial(alg, &[1; 32], &[2; 32], &[3; 32], 4, 5).unwrap();
            assert_eq!(keys.sk_ei().len(), e);
            assert_eq!(keys.sk_er().len(), e);
            assert!(keys.sk_ai().is_empty() && keys.sk_ar().is_empty());
            assert_ne!(keys.sk_ei(), keys.sk_er());
            assert_ne!(keys.sk_pi(), keys.sk_pr());
            let child = keys.child_sa_keys(alg, None, &[6; 32], &[7; 32]).unwrap();
            assert_eq!(child.initiator_to_responder.alg(), alg);
            assert_ne!(child.initiator_to_responder, child.responder_to_initiator);
        }
    }
}
