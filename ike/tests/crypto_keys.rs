//! The key schedule against a direct HMAC-SHA-256 implementation of RFC 7296's prf and prf+:
//! proves that HKDF-Extract / HKDF-Expand compute exactly SKEYSEED and prf+ (RFC 7296 2.14;
//! docs/ARCHITECTURE.md, "How a CHILD SA's keys travel"),
//! and that SK_* and KEYMAT are cut from the prf+ stream in RFC order.

#![cfg_attr(test, allow(clippy::unwrap_used))]

use hmac::{Hmac, KeyInit, Mac};
use hometun_control::AeadAlg;
use hometun_ike::crypto::keys::{PRF_PLUS_MAX, child_sa_keys, prf_plus};
use hometun_ike::crypto::{CryptoError, IkeSaKeys, Skeyseed};
use sha2::Sha256;

/// prf = HMAC-SHA-256, straight from RFC 2104 via the hmac crate.
fn direct_prf(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// prf+ exactly as RFC 7296 2.13 writes it: T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n).
fn direct_prf_plus(key: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut t: Vec<u8> = Vec::new();
    let mut n: u8 = 1;
    while out.len() < len {
        let mut input = t.clone();
        input.extend_from_slice(seed);
        input.push(n);
        t = direct_prf(key, &input);
        out.extend_from_slice(&t);
        n = n.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// Deterministic filler bytes.
fn bytes(len: usize, tag: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(tag))
        .collect()
}

#[test]
fn hkdf_expand_equals_rfc7296_prf_plus() {
    let mut compared = 0;
    for key_tag in [1u8, 2, 3] {
        let key: [u8; 32] = bytes(32, key_tag).try_into().unwrap();
        for seed_len in [0, 1, 32, 64, 80, 300] {
            let seed = bytes(seed_len, key_tag ^ 0x5a);
            for len in [1, 31, 32, 33, 64, 100, 144, 1000, PRF_PLUS_MAX] {
                // Split the seed in two parts to check the multi-part info too.
                let (a, b) = seed.split_at(seed_len / 3);
                let ours = prf_plus(&key, &[a, b], len).unwrap();
                assert_eq!(
                    ours.as_slice(),
                    direct_prf_plus(&key, &seed, len),
                    "key {key_tag} seed {seed_len} len {len}"
                );
                compared += 1;
            }
        }
    }
    println!("prf+ == HKDF-Expand in {compared} cases up to {PRF_PLUS_MAX} bytes");
}

#[test]
fn hkdf_extract_equals_prf_of_nonces_and_shared_secret() {
    for (ni_len, nr_len) in [(16, 16), (32, 32), (32, 64), (256, 256)] {
        let ni = bytes(ni_len, 7);
        let nr = bytes(nr_len, 9);
        let g_ir = bytes(32, 11);
        let skeyseed = Skeyseed::initial(&ni, &nr, &g_ir).unwrap();
        // SKEYSEED = prf(Ni | Nr, g^ir); with a 512-byte key HMAC hashes the key first, as
        // HKDF's HMAC does too.
        let expected = direct_prf(&[ni.as_slice(), nr.as_slice()].concat(), &g_ir);
        assert_eq!(
            skeyseed.as_bytes().as_slice(),
            expected,
            "{ni_len}/{nr_len}"
        );
    }
}

#[test]
fn rekeyed_skeyseed_is_prf_of_old_sk_d() {
    let old = IkeSaKeys::initial(
        AeadAlg::AesGcm128,
        &bytes(32, 1),
        &bytes(32, 2),
        &bytes(32, 3),
        1,
        2,
    )
    .unwrap();
    let (g_ir, ni, nr) = (bytes(32, 4), bytes(32, 5), bytes(48, 6));
    let rekeyed = Skeyseed::rekeyed(old.sk_d(), &g_ir, &ni, &nr).unwrap();
    let expected = direct_prf(old.sk_d(), &[g_ir.as_slice(), &ni, &nr].concat());
    assert_eq!(rekeyed.as_bytes().as_slice(), expected);

    // IkeSaKeys::rekey uses it with the new SPIs.
    let (spi_i, spi_r) = ([3u8; 8], [4u8; 8]);
    let new = old
        .rekey(
            AeadAlg::AesGcm256,
            &g_ir,
            &ni,
            &nr,
            u64::from_be_bytes(spi_i),
            u64::from_be_bytes(spi_r),
        )
        .unwrap();
    let stream = direct_prf_plus(
        &expected,
        &[ni.as_slice(), &nr, &spi_i, &spi_r].concat(),
        32 + 36 * 2 + 64,
    );
    assert_eq!(new.sk_d().as_slice(), &stream[..32]);
    assert_eq!(new.sk_ei(), &stream[32..68]);
    assert_ne!(new.sk_d(), old.sk_d());
}

#[test]
fn sk_keys_are_cut_from_prf_plus_in_rfc_order() {
    for (alg, e) in [(AeadAlg::AesGcm128, 20), (AeadAlg::AesGcm256, 36)] {
        let (ni, nr, g_ir) = (bytes(32, 21), bytes(32, 22), bytes(32, 23));
        let (spi_i, spi_r) = (
            [0x0d, 0x22, 0xb5, 0xfe, 0x67, 0x25, 0x06, 0x51],
            [0x60, 0x3c, 0x1b, 0x5a, 0x21, 0x6a, 0xcf, 0xd2],
        );
        let keys = IkeSaKeys::initial(
            alg,
            &ni,
            &nr,
            &g_ir,
            u64::from_be_bytes(spi_i),
            u64::from_be_bytes(spi_r),
        )
        .unwrap();
        let skeyseed = direct_prf(&[ni.as_slice(), &nr].concat(), &g_ir);
        // SK_d | SK_ai (0) | SK_ar (0) | SK_ei | SK_er | SK_pi | SK_pr
        let s = direct_prf_plus(
            &skeyseed,
            &[ni.as_slice(), &nr, &spi_i, &spi_r].concat(),
            32 + 2 * e + 64,
        );
        assert_eq!(keys.sk_d().as_slice(), &s[..32]);
        assert_eq!(keys.sk_ei(), &s[32..32 + e]);
        assert_eq!(keys.sk_er(), &s[32 + e..32 + 2 * e]);
        assert_eq!(keys.sk_pi().as_slice(), &s[32 + 2 * e..64 + 2 * e]);
        assert_eq!(keys.sk_pr().as_slice(), &s[64 + 2 * e..]);
        assert_eq!(keys.alg(), alg);
    }
}

#[test]
fn child_keymat_with_and_without_pfs() {
    let sk_d: [u8; 32] = bytes(32, 40).try_into().unwrap();
    let (ni, nr, g_ir) = (bytes(32, 41), bytes(32, 42), bytes(32, 43));
    for (alg, one) in [(AeadAlg::AesGcm128, 20), (AeadAlg::AesGcm256, 36)] {
        for pfs in [None, Some(g_ir.as_slice())] {
            let keys = child_sa_keys(&sk_d, alg, pfs, &ni, &nr).unwrap();
            let seed = [pfs.unwrap_or_default(), &ni, &nr].concat();
            let keymat = direct_prf_plus(&sk_d, &seed, 2 * one);
            let i2r = &keys.initiator_to_responder;
            let r2i = &keys.responder_to_initiator;
            assert_eq!([i2r.key(), &i2r.salt()].concat(), &keymat[..one]);
            assert_eq!([r2i.key(), &r2i.salt()].concat(), &keymat[one..]);
            assert_eq!(i2r.alg(), alg);
            assert_eq!(i2r.key().len(), alg.key_len());
        }
    }
}

#[test]
fn bad_nonces_are_refused_everywhere() {
    let sk_d = [0u8; 32];
    let short = [0u8; 15];
    let ok = [0u8; 16];
    assert!(matches!(
        child_sa_keys(&sk_d, AeadAlg::AesGcm128, None, &short, &ok),
        Err(CryptoError::NonceLength(15))
    ));
    assert!(matches!(
        Skeyseed::rekeyed(&sk_d, b"g", &ok, &[0u8; 300]),
        Err(CryptoError::NonceLength(300))
    ));
    assert!(matches!(
        IkeSaKeys::initial(AeadAlg::AesGcm128, &ok, &[], b"g", 0, 0),
        Err(CryptoError::NonceLength(0))
    ));
}
