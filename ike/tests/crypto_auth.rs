//! RFC 7427 AUTH data: ECDSA P-256 (DER signatures, SHA-256 signing, SHA-384/512 verifying),
//! Ed25519, refusal of malformed or mismatched data, SIGNATURE_HASH_ALGORITHMS negotiation.

#![cfg_attr(test, allow(clippy::unwrap_used))]

use hometun_control::AeadAlg;
use hometun_ike::crypto::auth::{
    self, ACCEPTED_HASH_ALGORITHMS, AuthRole, check_peer_accepts, parse_signature_hash_algorithms,
    signature_hash_algorithms_data,
};
use hometun_ike::crypto::{CryptoError, IkeSaKeys, PeerPublicKey, PrivateKey, SignatureScheme};
use hometun_ike::wire::{HashAlgorithm, NotifyType};
use p256::ecdsa::signature::hazmat::PrehashSigner;
use sha2::{Digest, Sha256, Sha384, Sha512};

fn ed25519() -> PrivateKey {
    PrivateKey::ed25519_from_seed(&[0x21; 32]).unwrap()
}

fn p256_key() -> PrivateKey {
    PrivateKey::P256(p256::ecdsa::SigningKey::from_slice(&[0x31; 32]).unwrap())
}

const OCTETS: &[u8] = b"RealMessage1 | NonceRData | prf(SK_pi, IDi')";

/// The AlgorithmIdentifier prefix of RFC 7427 A.3: ecdsa-with-SHA{256,384,512}.
fn ecdsa_alg(last: u8) -> Vec<u8> {
    vec![
        12, 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, last,
    ]
}

#[test]
fn ecdsa_p256_sign_and_verify() {
    let key = p256_key();
    let data = auth::sign(&key, OCTETS);
    // Prefix: length 12 and ecdsa-with-SHA256, then a DER SEQUENCE of r and s.
    assert_eq!(data[..13], ecdsa_alg(2)[..]);
    assert_eq!(data[13], 0x30);
    let public = key.public_key();
    assert_eq!(
        auth::verify(&public, OCTETS, &data).unwrap(),
        SignatureScheme::EcdsaSha256
    );
    // RFC 6979: the same octets give the same signature (no randomness needed).
    assert_eq!(auth::sign(&key, OCTETS), data);
    let mut other = OCTETS.to_vec();
    other[0] ^= 1;
    assert!(matches!(
        auth::verify(&public, &other, &data),
        Err(CryptoError::BadSignature)
    ));
    // The signature checked independently: DER ECDSA over SHA-256 of the octets.
    let sig = p256::ecdsa::Signature::from_der(&data[13..]).unwrap();
    let PrivateKey::P256(signing) = &key else {
        unreachable!()
    };
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    signing
        .verifying_key()
        .verify_prehash(&Sha256::digest(OCTETS), &sig)
        .unwrap();
}

#[test]
fn ecdsa_sha384_and_sha512_signatures_verify() {
    let PrivateKey::P256(signing) = p256_key() else {
        unreachable!()
    };
    let public = p256_key().public_key();
    for (last, digest, scheme) in [
        (
            3u8,
            Sha384::digest(OCTETS).to_vec(),
            SignatureScheme::EcdsaSha384,
        ),
        (
            4,
            Sha512::digest(OCTETS).to_vec(),
            SignatureScheme::EcdsaSha512,
        ),
    ] {
        let sig: p256::ecdsa::Signature = signing.sign_prehash(&digest).unwrap();
        let mut data = ecdsa_alg(last);
        data.extend_from_slice(&sig.to_der().to_bytes());
        assert_eq!(auth::verify(&public, OCTETS, &data).unwrap(), scheme);
        // The same signature announced as SHA-256 does not verify.
        let mut wrong = ecdsa_alg(2);
        wrong.extend_from_slice(&sig.to_der().to_bytes());
        assert!(matches!(
            auth::verify(&public, OCTETS, &wrong),
            Err(CryptoError::BadSignature)
        ));
    }
}

#[test]
fn mismatched_malformed_and_unknown_auth_data_is_refused() {
    let ed = ed25519();
    let ec = p256_key();
    let ed_data = auth::sign(&ed, OCTETS);
    let ec_data = auth::sign(&ec, OCTETS);

    // An Ed25519 signature against a P-256 certificate key and the other way round.
    for (key, data) in [(ec.public_key(), &ed_data), (ed.public_key(), &ec_data)] {
        let err = auth::verify(&key, OCTETS, data).unwrap_err();
        assert!(
            matches!(err, CryptoError::SignatureKeyMismatch { .. }),
            "{err}"
        );
        assert_eq!(err.notify_type(), Some(NotifyType::AUTHENTICATION_FAILED));
    }

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "empty"),
        (vec![40, 0x30], "AlgorithmIdentifier longer than the data"),
        (ed_data[..8].to_vec(), "no signature"),
        (ed_data[..40].to_vec(), "short Ed25519 signature"),
        ([&ec_data[..13], &[0x30, 0x02, 0x01]].concat(), "bad DER"),
        // sha256WithRSAEncryption: unsupported.
        (
            [
                &[
                    15u8, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01,
                    0x0b, 0x05, 0x00,
                ][..],
                &[0u8; 256],
            ]
            .concat(),
            "RSA",
        ),
    ];
    for (data, what) in cases {
        for key in [ed.public_key(), ec.public_key()] {
            let err = auth::verify(&key, OCTETS, &data).unwrap_err();
            assert!(
                matches!(
                    err,
                    CryptoError::MalformedAuth(_)
                        | CryptoError::UnsupportedSignatureAlgorithm(_)
                        | CryptoError::SignatureKeyMismatch { .. }
                ),
                "{what}: {err}"
            );
            assert_eq!(err.notify_type(), Some(NotifyType::AUTHENTICATION_FAILED));
        }
    }
}

#[test]
fn signature_hash_algorithms_negotiation() {
    // Ours: SHA2-256, SHA2-384, SHA2-512, Identity (what strongSwan sends too).
    assert_eq!(
        signature_hash_algorithms_data(),
        [0x00, 0x02, 0x00, 0x03, 0x00, 0x04, 0x00, 0x05]
    );
    assert_eq!(
        ACCEPTED_HASH_ALGORITHMS,
        [
            HashAlgorithm::SHA2_256,
            HashAlgorithm::SHA2_384,
            HashAlgorithm::SHA2_512,
            HashAlgorithm::IDENTITY
        ]
    );
    let only_sha256 = parse_signature_hash_algorithms(&[0, 2]).unwrap();
    let only_identity = parse_signature_hash_algorithms(&[0, 5]).unwrap();
    let unknown = parse_signature_hash_algorithms(&[0, 1, 0x12, 0x34]).unwrap();
    assert_eq!(unknown, [HashAlgorithm::SHA1, HashAlgorithm(0x1234)]);

    assert!(check_peer_accepts(&ed25519(), &only_identity).is_ok());
    assert!(check_peer_accepts(&p256_key(), &only_sha256).is_ok());
    for (key, list) in [(ed25519(), &only_sha256), (p256_key(), &only_identity)] {
        let err = check_peer_accepts(&key, list).unwrap_err();
        assert!(
            matches!(err, CryptoError::NoCommonHashAlgorithm { .. }),
            "{err}"
        );
    }
    assert!(check_peer_accepts(&ed25519(), &unknown).is_err());
    let err = parse_signature_hash_algorithms(&[0, 2, 0]).unwrap_err();
    assert_eq!(err.notify_type(), Some(NotifyType::INVALID_SYNTAX));
}

#[test]
fn auth_octets_use_sk_pi_for_the_initiator_and_sk_pr_for_the_responder() {
    let keys = IkeSaKeys::initial(AeadAlg::AesGcm128, &[1; 32], &[2; 32], &[3; 32], 4, 5).unwrap();
    let id = [2, 0, 0, 0, b'h', b'o', b'm', b'e'];
    let i = auth::auth_octets(AuthRole::Initiator, &keys, b"msg1", b"nonce-r", &id);
    let r = auth::auth_octets(AuthRole::Responder, &keys, b"msg1", b"nonce-r", &id);
    assert_eq!(
        i,
        auth::signed_octets(b"msg1", b"nonce-r", keys.sk_pi(), &id)
    );
    assert_eq!(
        r,
        auth::signed_octets(b"msg1", b"nonce-r", keys.sk_pr(), &id)
    );
    assert_ne!(i, r);
    assert_eq!(i.len(), 4 + 7 + 32);
    assert_eq!(auth::AUTH_METHOD.0, 14);
}

#[test]
fn ed25519_signatures_are_rfc8032_section_7_1_known_answers() {
    // TEST 1 (empty message) and TEST 2 (one byte): seed, public key, signature.
    let cases = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
    ];
    for (seed, public, message, signature) in cases {
        let seed: [u8; 32] = hex::decode(seed).unwrap().try_into().unwrap();
        let key = PrivateKey::ed25519_from_seed(&seed).unwrap();
        let PeerPublicKey::Ed25519(derived) = key.public_key() else {
            panic!("an Ed25519 seed gave {:?}", key.public_key());
        };
        assert_eq!(hex::encode(derived.as_bytes()), public);
        let message = hex::decode(message).unwrap();
        let data = auth::sign(&key, &message);
        // The AUTH data is the AlgorithmIdentifier, then the signature (RFC 7427 3).
        assert_eq!(hex::encode(&data[data.len() - 64..]), signature);
        auth::verify(&key.public_key(), &message, &data).unwrap();
    }
}
