//! The AES-GCM primitive behind ESP, as a small trait so the backend can be swapped and measured
//! (`benches/aead.rs`). Three backends: aws-lc, `ring` and RustCrypto's `aes-gcm` (about half as
//! fast as `ring`). Which of aws-lc and `ring` is faster depends on the CPU: aws-lc's AVX-512
//! code takes about 0.7x `ring`'s time where the CPU has AVX-512 with VAES, but without AVX-512
//! aws-lc falls back to older code that takes about 1.45x `ring`'s (VAES with AVX2). So the
//! forwarder times both when it starts and uses the faster ([`AeadBackend::fastest`]).
//!
//! This layer knows nothing of ESP: the caller builds the 12-byte nonce (salt || IV, RFC 4106)
//! and the AAD. Tags are detached because ESP carries the ICV after the padding trailer.

use std::time::Duration;

use aes_gcm::aead::{AeadInOut, KeyInit};
use hometun_control::{AeadAlg, AeadKey, KeyError};

/// Length of the GCM nonce (RFC 4106: 4-byte salt and 8-byte explicit IV).
pub const NONCE_LEN: usize = 12;
/// Length of the GCM tag (ENCR_AES_GCM_16).
pub const TAG_LEN: usize = 16;

/// The ciphertext, the AAD or the tag did not authenticate under this key and nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("AEAD authentication failed")]
pub struct AuthFailed;

/// AES-GCM with a detached 16-byte tag, encrypting and decrypting in place.
///
/// Inputs are limited by GCM itself to just under 2^36 bytes of plaintext, far more than any
/// packet; implementations may panic beyond that limit.
pub trait EspAead: Send + Sync {
    /// Encrypts `in_out` in place and returns the tag over `aad` and the ciphertext.
    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> [u8; TAG_LEN];

    /// Checks `tag` over `aad` and the ciphertext in `in_out`, and decrypts it in place. On
    /// failure the contents of `in_out` are unspecified and must not be used.
    fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthFailed>;
}

/// Which AES-GCM implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AeadBackend {
    /// aws-lc's assembly AES-GCM (VAES with AVX-512 where the CPU has it, else AES-NI).
    AwsLc,
    /// `ring`'s assembly AES-GCM (VAES with AVX2, else AES-NI).
    Ring,
    /// RustCrypto's `aes-gcm` crate.
    RustCrypto,
}

impl AeadBackend {
    /// Every backend, for tests and benchmarks that compare them.
    pub const ALL: [AeadBackend; 3] = [
        AeadBackend::AwsLc,
        AeadBackend::Ring,
        AeadBackend::RustCrypto,
    ];

    /// Its name, as `--aead` takes it.
    pub fn name(self) -> &'static str {
        match self {
            AeadBackend::AwsLc => "aws-lc",
            AeadBackend::Ring => "ring",
            AeadBackend::RustCrypto => "rustcrypto",
        }
    }

    /// The faster of aws-lc and `ring` on this CPU, and what each took to seal and open one
    /// 1400-byte packet: a few hundred packets each, in alternating rounds, the best round of
    /// each counted (about a millisecond in all).
    pub fn fastest() -> (AeadBackend, [(AeadBackend, Duration); 2]) {
        let mut best = [
            (AeadBackend::AwsLc, Duration::MAX),
            (AeadBackend::Ring, Duration::MAX),
        ];
        for _ in 0..TIMING_ROUNDS {
            for (backend, least) in &mut best {
                *least = (*least).min(time_per_packet(*backend));
            }
        }
        (faster(&best), best)
    }
}

/// Rounds of [`AeadBackend::fastest`] (the best of each backend counts).
const TIMING_ROUNDS: usize = 3;
/// Packets sealed and opened per round.
const TIMING_PACKETS: u32 = 200;

/// The backend with the least time (the first of equals).
fn faster(timings: &[(AeadBackend, Duration)]) -> AeadBackend {
    timings
        .iter()
        .min_by_key(|(_, time)| *time)
        .map_or(AeadBackend::Ring, |(backend, _)| *backend)
}

/// Seals and opens a 1400-byte packet [`TIMING_PACKETS`] times under a throwaway key (a fixed
/// one: nothing sealed here leaves the function); the time per packet.
// Reading the clock here decides nothing about peers or packets: it only picks the faster of two
// implementations of the same function, once, at start.
#[allow(clippy::disallowed_methods)]
fn time_per_packet(backend: AeadBackend) -> Duration {
    let key = AeadKey::from_keymat(AeadAlg::AesGcm128, &[0x42; 20])
        .expect("a 20-byte keymat is an AES-128-GCM key");
    let Ok(aead) = new_aead(&key, backend) else {
        return Duration::MAX;
    };
    let mut packet = [0x5a_u8; 1400];
    let aad = [0u8; 8];
    let start = std::time::Instant::now();
    for n in 0..TIMING_PACKETS {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[8..].copy_from_slice(&n.to_be_bytes());
        let tag = aead.seal_in_place(&nonce, &aad, &mut packet);
        if aead.open_in_place(&nonce, &aad, &mut packet, &tag).is_err() {
            return Duration::MAX;
        }
    }
    start.elapsed() / TIMING_PACKETS
}

/// Builds the AEAD for `key` (the key bytes only: the salt belongs to the nonce, which the ESP
/// layer builds). Fails if the key's length does not match its algorithm, which can happen for a
/// key that arrived over the SA channel.
pub fn new_aead(key: &AeadKey, backend: AeadBackend) -> Result<Box<dyn EspAead>, KeyError> {
    key.validate()?;
    let wrong_length = || KeyError::WrongLength {
        alg: key.alg(),
        expected: key.alg().key_len() + 4,
        got: key.key().len() + 4,
    };
    Ok(match backend {
        AeadBackend::Ring => {
            let alg = match key.alg() {
                AeadAlg::AesGcm128 => &ring::aead::AES_128_GCM,
                AeadAlg::AesGcm256 => &ring::aead::AES_256_GCM,
            };
            let unbound =
                ring::aead::UnboundKey::new(alg, key.key()).map_err(|_| wrong_length())?;
            Box::new(RingAead(std::mem::ManuallyDrop::new(
                ring::aead::LessSafeKey::new(unbound),
            )))
        }
        AeadBackend::AwsLc => {
            let alg = match key.alg() {
                AeadAlg::AesGcm128 => &aws_lc_rs::aead::AES_128_GCM,
                AeadAlg::AesGcm256 => &aws_lc_rs::aead::AES_256_GCM,
            };
            let unbound =
                aws_lc_rs::aead::UnboundKey::new(alg, key.key()).map_err(|_| wrong_length())?;
            Box::new(AwsLcAead(aws_lc_rs::aead::LessSafeKey::new(unbound)))
        }
        AeadBackend::RustCrypto => match key.alg() {
            AeadAlg::AesGcm128 => Box::new(RustCryptoAead(
                aes_gcm::Aes128Gcm::new_from_slice(key.key()).map_err(|_| wrong_length())?,
            )),
            AeadAlg::AesGcm256 => Box::new(RustCryptoAead(
                aes_gcm::Aes256Gcm::new_from_slice(key.key()).map_err(|_| wrong_length())?,
            )),
        },
    })
}

/// `ring` backend. ring's key schedule is not wiped when dropped (its first AES round key is
/// the key itself): this wrapper wipes it (docs/ARCHITECTURE.md, "Keys and forward secrecy").
struct RingAead(std::mem::ManuallyDrop<ring::aead::LessSafeKey>);

impl Drop for RingAead {
    fn drop(&mut self) {
        let key: *mut ring::aead::LessSafeKey = &mut *self.0;
        // SAFETY: `LessSafeKey` holds its key schedule and a `&'static Algorithm` inline: no heap
        // allocation and no `Drop` of its own (ring 0.17). Its bytes are overwritten only here,
        // when nothing can use it any more, and it is never dropped afterwards
        // (`ManuallyDrop`), so the zeroed value is never read and nothing leaks.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                key.cast::<u8>(),
                std::mem::size_of::<ring::aead::LessSafeKey>(),
            )
        };
        zeroize::Zeroize::zeroize(bytes);
    }
}

impl EspAead for RingAead {
    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let tag = self
            .0
            .seal_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(*nonce),
                ring::aead::Aad::from(aad),
                in_out,
            )
            .expect("ring refuses only inputs beyond GCM's 2^36-byte limit");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthFailed> {
        self.0
            .open_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(*nonce),
                ring::aead::Aad::from(aad),
                ring::aead::Tag::from(*tag),
                in_out,
                0..,
            )
            .map(|_| ())
            .map_err(|_| AuthFailed)
    }
}

/// aws-lc backend. Its key schedule lives in a block aws-lc allocated, which it wipes when it
/// frees it (`OPENSSL_free` cleanses every block before `free`; `tests/key_wiping.rs` scans it).
struct AwsLcAead(aws_lc_rs::aead::LessSafeKey);

impl EspAead for AwsLcAead {
    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let tag = self
            .0
            .seal_in_place_separate_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(*nonce),
                aws_lc_rs::aead::Aad::from(aad),
                in_out,
            )
            .expect("aws-lc refuses only inputs beyond GCM's 2^36-byte limit");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthFailed> {
        self.0
            .open_in_place_separate_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(*nonce),
                aws_lc_rs::aead::Aad::from(aad),
                tag,
                in_out,
            )
            .map(|_| ())
            .map_err(|_| AuthFailed)
    }
}

/// RustCrypto `aes-gcm` backend, for AES-128 or AES-256.
struct RustCryptoAead<C>(C);

impl<C> EspAead for RustCryptoAead<C>
where
    C: AeadInOut<NonceSize = aes_gcm::aead::consts::U12, TagSize = aes_gcm::aead::consts::U16>
        + Send
        + Sync,
{
    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let tag = self
            .0
            .encrypt_inout_detached(&(*nonce).into(), aad, in_out.into())
            .expect("aes-gcm refuses only inputs beyond GCM's 2^36-byte limit");
        tag.into()
    }

    fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthFailed> {
        self.0
            .decrypt_inout_detached(&(*nonce).into(), aad, in_out.into(), &(*tag).into())
            .map_err(|_| AuthFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_faster_backend_is_the_one_that_took_less_time() {
        let ms = Duration::from_millis;
        let timings = [(AeadBackend::AwsLc, ms(3)), (AeadBackend::Ring, ms(2))];
        assert_eq!(faster(&timings), AeadBackend::Ring);
        let timings = [(AeadBackend::AwsLc, ms(1)), (AeadBackend::Ring, ms(2))];
        assert_eq!(faster(&timings), AeadBackend::AwsLc);
        // A backend that failed to build or to open its own packet is never chosen.
        let timings = [
            (AeadBackend::AwsLc, Duration::MAX),
            (AeadBackend::Ring, ms(9)),
        ];
        assert_eq!(faster(&timings), AeadBackend::Ring);
        let (chosen, measured) = AeadBackend::fastest();
        assert!(
            measured.iter().all(|(_, time)| *time < ms(1)),
            "{measured:?}"
        );
        assert_eq!(chosen, faster(&measured));
    }

    /// One test case of McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", appendix B
    /// (the cases with 96-bit IVs).
    struct Vector {
        name: &'static str,
        key: &'static str,
        iv: &'static str,
        plaintext: &'static str,
        aad: &'static str,
        ciphertext: &'static str,
        tag: &'static str,
    }

    const P64: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                       1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
    const P60: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                       1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
    const AAD20: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
    const K128: &str = "feffe9928665731c6d6a8f9467308308";
    const K256: &str = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
    const IV: &str = "cafebabefacedbaddecaf888";

    const VECTORS: &[Vector] = &[
        Vector {
            name: "test case 1",
            key: "00000000000000000000000000000000",
            iv: "000000000000000000000000",
            plaintext: "",
            aad: "",
            ciphertext: "",
            tag: "58e2fccefa7e3061367f1d57a4e7455a",
        },
        Vector {
            name: "test case 2",
            key: "00000000000000000000000000000000",
            iv: "000000000000000000000000",
            plaintext: "00000000000000000000000000000000",
            aad: "",
            ciphertext: "0388dace60b6a392f328c2b971b2fe78",
            tag: "ab6e47d42cec13bdf53a67b21257bddf",
        },
        Vector {
            name: "test case 3",
            key: K128,
            iv: IV,
            plaintext: P64,
            aad: "",
            ciphertext: "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
                         21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
            tag: "4d5c2af327cd64a62cf35abd2ba6fab4",
        },
        Vector {
            name: "test case 4",
            key: K128,
            iv: IV,
            plaintext: P60,
            aad: AAD20,
            ciphertext: "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
                         21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
            tag: "5bc94fbc3221a5db94fae95ae7121a47",
        },
        Vector {
            name: "test case 13",
            key: "0000000000000000000000000000000000000000000000000000000000000000",
            iv: "000000000000000000000000",
            plaintext: "",
            aad: "",
            ciphertext: "",
            tag: "530f8afbc74536b9a963b4f1c4cb738b",
        },
        Vector {
            name: "test case 14",
            key: "0000000000000000000000000000000000000000000000000000000000000000",
            iv: "000000000000000000000000",
            plaintext: "00000000000000000000000000000000",
            aad: "",
            ciphertext: "cea7403d4d606b6e074ec5d3baf39d18",
            tag: "d0d1c8a799996bf0265b98b5d48ab919",
        },
        Vector {
            name: "test case 15",
            key: K256,
            iv: IV,
            plaintext: P64,
            aad: "",
            ciphertext: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                         8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
            tag: "b094dac5d93471bdec1a502270e3cc6c",
        },
        Vector {
            name: "test case 16",
            key: K256,
            iv: IV,
            plaintext: P60,
            aad: AAD20,
            ciphertext: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                         8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
            tag: "76fc6ece0f4e1768cddf8853bb2d551b",
        },
    ];

    const BACKENDS: [AeadBackend; 3] = AeadBackend::ALL;

    fn key_for(hex_key: &str) -> AeadKey {
        let mut keymat = hex::decode(hex_key).unwrap();
        let alg = if keymat.len() == 16 {
            AeadAlg::AesGcm128
        } else {
            AeadAlg::AesGcm256
        };
        // The salt is not used at this layer; any value will do.
        keymat.extend_from_slice(&[0xa5; 4]);
        AeadKey::from_keymat(alg, &keymat).unwrap()
    }

    #[test]
    fn gcm_spec_vectors_seal() {
        for backend in BACKENDS {
            for v in VECTORS {
                let aead = new_aead(&key_for(v.key), backend).unwrap();
                let nonce: [u8; 12] = hex::decode(v.iv).unwrap().try_into().unwrap();
                let mut buf = hex::decode(v.plaintext).unwrap();
                let tag = aead.seal_in_place(&nonce, &hex::decode(v.aad).unwrap(), &mut buf);
                assert_eq!(hex::encode(&buf), v.ciphertext, "{} {backend:?}", v.name);
                assert_eq!(hex::encode(tag), v.tag, "{} {backend:?}", v.name);
            }
        }
    }

    #[test]
    fn gcm_spec_vectors_open() {
        for backend in BACKENDS {
            for v in VECTORS {
                let aead = new_aead(&key_for(v.key), backend).unwrap();
                let nonce: [u8; 12] = hex::decode(v.iv).unwrap().try_into().unwrap();
                let aad = hex::decode(v.aad).unwrap();
                let tag: [u8; 16] = hex::decode(v.tag).unwrap().try_into().unwrap();
                let mut buf = hex::decode(v.ciphertext).unwrap();
                aead.open_in_place(&nonce, &aad, &mut buf, &tag).unwrap();
                assert_eq!(hex::encode(&buf), v.plaintext, "{} {backend:?}", v.name);

                // Any flipped bit in the tag, the AAD or the ciphertext fails.
                let mut bad_tag = tag;
                bad_tag[15] ^= 1;
                let mut buf = hex::decode(v.ciphertext).unwrap();
                assert_eq!(
                    aead.open_in_place(&nonce, &aad, &mut buf, &bad_tag),
                    Err(AuthFailed),
                    "{} {backend:?}",
                    v.name
                );
                if !aad.is_empty() {
                    let mut bad_aad = aad.clone();
                    bad_aad[0] ^= 0x80;
                    let mut buf = hex::decode(v.ciphertext).unwrap();
                    assert_eq!(
                        aead.open_in_place(&nonce, &bad_aad, &mut buf, &tag),
                        Err(AuthFailed)
                    );
                }
                if !v.ciphertext.is_empty() {
                    let mut buf = hex::decode(v.ciphertext).unwrap();
                    let last = buf.len() - 1;
                    buf[last] ^= 0x01;
                    assert_eq!(
                        aead.open_in_place(&nonce, &aad, &mut buf, &tag),
                        Err(AuthFailed)
                    );
                }
            }
        }
    }

    #[test]
    fn backends_agree_on_packet_sizes() {
        let key = key_for("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
        let aeads: Vec<_> = AeadBackend::ALL
            .iter()
            .map(|&backend| (backend, new_aead(&key, backend).unwrap()))
            .collect();
        let nonce = [7u8; 12];
        let aad = [1u8, 2, 3, 4, 5, 6, 7, 8];
        for len in [0usize, 1, 15, 16, 17, 63, 64, 65, 255, 1400, 1500] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let (_, first) = &aeads[0];
            let mut expected = plain.clone();
            let expected_tag = first.seal_in_place(&nonce, &aad, &mut expected);
            for (backend, aead) in &aeads {
                let mut sealed = plain.clone();
                let tag = aead.seal_in_place(&nonce, &aad, &mut sealed);
                assert_eq!(sealed, expected, "{backend:?} len {len}");
                assert_eq!(tag, expected_tag, "{backend:?} len {len}");
                // Each backend opens the first one's output.
                let mut opened = expected.clone();
                aead.open_in_place(&nonce, &aad, &mut opened, &expected_tag)
                    .unwrap();
                assert_eq!(opened, plain, "{backend:?} len {len}");
            }
        }
    }
}
