//! Diffie-Hellman known answers (RFC 7748 5.2 and 6.1 for X25519, RFC 5903 8.1 for P-256) and
//! the checks on the peer's KE data.

#![cfg_attr(test, allow(clippy::unwrap_used))]

use hometun_ike::crypto::dh::PRIVATE_RANDOM_LEN;
use hometun_ike::crypto::{CryptoError, DhGroup, KeyExchange};
use hometun_ike::wire::{self, NotifyType};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace([' ', '\n'], "")).unwrap()
}

fn h32(s: &str) -> [u8; 32] {
    h(s).try_into().unwrap()
}

#[test]
fn x25519_rfc7748_section_5_2_vectors() {
    // X25519(k, u): our KeyExchange takes k as its random bytes and u as the peer's KE data.
    let cases = [
        (
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
            "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
        ),
        (
            "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
            "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
        ),
    ];
    for (k, u, out) in cases {
        let kx = KeyExchange::new(DhGroup::Curve25519, &h32(k)).unwrap();
        assert_eq!(kx.shared_secret(&h(u)).unwrap().as_slice(), h(out));
    }
}

#[test]
fn x25519_rfc7748_section_6_1_exchange() {
    let alice = KeyExchange::new(
        DhGroup::Curve25519,
        &h32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"),
    )
    .unwrap();
    let bob = KeyExchange::new(
        DhGroup::Curve25519,
        &h32("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"),
    )
    .unwrap();
    assert_eq!(
        alice.public_ke_data(),
        h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    );
    assert_eq!(
        bob.public_ke_data(),
        h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    );
    let k = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    assert_eq!(*alice.shared_secret(bob.public_ke_data()).unwrap(), k);
    assert_eq!(*bob.shared_secret(alice.public_ke_data()).unwrap(), k);
}

#[test]
fn p256_rfc5903_section_8_1_exchange() {
    let i = KeyExchange::new(
        DhGroup::Ecp256,
        &h32("C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433"),
    )
    .unwrap();
    let r = KeyExchange::new(
        DhGroup::Ecp256,
        &h32("C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53"),
    )
    .unwrap();
    // KE data is gx || gy (RFC 5903 7), 64 bytes.
    assert_eq!(
        i.public_ke_data(),
        h(
            "DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180
           5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3"
        )
    );
    assert_eq!(
        r.public_ke_data(),
        h(
            "D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63
           56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB"
        )
    );
    // The shared secret is the x coordinate girx only (RFC 5903 7, 9).
    let girx = h("D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE");
    assert_eq!(*i.shared_secret(r.public_ke_data()).unwrap(), girx);
    assert_eq!(*r.shared_secret(i.public_ke_data()).unwrap(), girx);
}

#[test]
fn both_groups_agree_on_random_keys() {
    for group in [DhGroup::Curve25519, DhGroup::Ecp256] {
        for seed in 1u8..=5 {
            let a = KeyExchange::new(group, &[seed; PRIVATE_RANDOM_LEN]).unwrap();
            let b = KeyExchange::new(group, &[seed.wrapping_mul(31); PRIVATE_RANDOM_LEN]).unwrap();
            assert_eq!(a.public_ke_data().len(), group.ke_len());
            let ab = a.shared_secret(b.public_ke_data()).unwrap();
            let ba = b.shared_secret(a.public_ke_data()).unwrap();
            assert_eq!(ab, ba);
            assert_eq!(ab.len(), group.shared_secret_len());
        }
    }
}

#[test]
fn wrong_lengths_are_refused_with_invalid_syntax() {
    for group in [DhGroup::Curve25519, DhGroup::Ecp256] {
        let kx = KeyExchange::new(group, &[3; 32]).unwrap();
        for len in [0, 1, 31, 33, 63, 65, 97, 133] {
            if len == group.ke_len() {
                continue;
            }
            let err = kx.shared_secret(&vec![9u8; len]).unwrap_err();
            assert!(
                matches!(err, CryptoError::KeLength { group: g, expected, got }
                    if g == group.id() && expected == group.ke_len() && got == len),
                "{group} {len}: {err}"
            );
            assert_eq!(err.notify_type(), Some(NotifyType::INVALID_SYNTAX));
        }
    }
}

#[test]
fn x25519_low_order_points_give_the_all_zero_error() {
    let kx = KeyExchange::new(DhGroup::Curve25519, &[0x55; 32]).unwrap();
    let mut p_minus_1 = [0xffu8; 32];
    p_minus_1[0] = 0xec;
    p_minus_1[31] = 0x7f;
    let mut p = p_minus_1;
    p[0] = 0xed;
    // u = 0, u = 1, u = p - 1 (order 2), u = p (a non-canonical 0): all give 0 (RFC 7748 6.1).
    for u in [[0u8; 32], one(), p_minus_1, p] {
        let err = kx.shared_secret(&u).unwrap_err();
        assert!(matches!(err, CryptoError::AllZeroSharedSecret), "{err}");
        assert_eq!(err.notify_type(), Some(NotifyType::INVALID_SYNTAX));
    }

    fn one() -> [u8; 32] {
        let mut u = [0u8; 32];
        u[0] = 1;
        u
    }
}

#[test]
fn p256_points_off_the_curve_are_refused() {
    let kx = KeyExchange::new(DhGroup::Ecp256, &[0x11; 32]).unwrap();
    let peer = KeyExchange::new(DhGroup::Ecp256, &[0x22; 32]).unwrap();
    let mut off = peer.public_ke_data().to_vec();
    off[63] ^= 1; // y + 1 (or - 1): no longer on the curve
    for bad in [off, vec![0u8; 64], vec![0xff; 64]] {
        let err = kx.shared_secret(&bad).unwrap_err();
        assert!(matches!(err, CryptoError::PointNotOnCurve), "{err}");
        assert_eq!(err.notify_type(), Some(NotifyType::INVALID_SYNTAX));
    }
    assert!(kx.shared_secret(peer.public_ke_data()).is_ok());
}

#[test]
fn groups_map_to_the_wire_registry() {
    assert_eq!(DhGroup::Curve25519.to_wire(), wire::DhGroup::CURVE25519);
    assert_eq!(DhGroup::Ecp256.to_wire(), wire::DhGroup::ECP_256);
    assert_eq!(
        DhGroup::from_wire(wire::DhGroup::CURVE25519),
        Some(DhGroup::Curve25519)
    );
    assert_eq!(DhGroup::from_wire(wire::DhGroup::MODP_2048), None);
    let err = DhGroup::try_from(wire::DhGroup::MODP_2048).unwrap_err();
    assert!(matches!(err, CryptoError::UnsupportedGroup(14)));
    assert_eq!(err.notify_type(), Some(NotifyType::INVALID_KE_PAYLOAD));
    assert_eq!(
        DhGroup::try_from(wire::DhGroup::ECP_256).unwrap(),
        DhGroup::Ecp256
    );
}

#[test]
fn x25519_agrees_with_a_second_implementation_on_random_and_edge_inputs() {
    // x25519-dalek as the reference, over keys and peer values from a fixed-seed generator,
    // with the top bit of u set (ignored, RFC 7748 5) and non-canonical u >= p among them.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut random32 = || {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&next().to_le_bytes());
        }
        out
    };
    let mut p_plus_9 = [0xffu8; 32];
    p_plus_9[0] = 0xed + 9;
    p_plus_9[31] = 0x7f;
    for round in 0..200 {
        let k = random32();
        let u = match round {
            0 => p_plus_9,
            1 => x25519_dalek::X25519_BASEPOINT_BYTES,
            _ => random32(),
        };
        let kx = KeyExchange::new(DhGroup::Curve25519, &k).unwrap();
        let reference_public = x25519_dalek::x25519(k, x25519_dalek::X25519_BASEPOINT_BYTES);
        assert_eq!(
            kx.public_ke_data(),
            reference_public,
            "public, round {round}"
        );
        let reference_shared = x25519_dalek::x25519(k, u);
        assert_eq!(
            kx.shared_secret(&u).unwrap().as_slice(),
            reference_shared,
            "shared, round {round}"
        );
    }
}
