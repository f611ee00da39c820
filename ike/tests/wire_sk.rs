//! SK payload framing (RFC 7296 3.14, RFC 5282) with the null cipher, a recording cipher that
//! shows what the AEAD is given, and the real AES-GCM cipher of ike/crypto.

#![allow(clippy::unwrap_used)]

use std::cell::RefCell;

use hometun_control::{AeadAlg, Spi};
use hometun_ike::crypto::SkGcm;
use hometun_ike::wire::*;

fn header() -> Header {
    Header::new(
        ExchangeType::INFORMATIONAL,
        0x0d22_b5fe_6725_0651,
        0x603c_1b5a_216a_cfd2,
        Flags::new(true, false),
        3,
    )
}

fn inner() -> Vec<Payload> {
    vec![
        Payload::Notify(Notify::new(NotifyType::UPDATE_SA_ADDRESSES, vec![])),
        Payload::Notify(Notify::new(NotifyType::COOKIE2, vec![0xc6; 16])),
        Payload::Delete(Delete::esp(&[Spi(0xd345_3a9c)])),
    ]
}

#[test]
fn null_cipher_seal_then_open() {
    let message = ProtectedMessage::new(header(), inner());
    for pad_len in [0u8, 1, 7, 255] {
        let bytes = message.seal(&NullCipher, &[1; 8], pad_len).unwrap();
        assert_eq!(bytes.len(), message.sealed_len(&NullCipher, pad_len));
        // The outer view: header with SK as first payload and the final length.
        let outer = Message::parse(&bytes).unwrap();
        assert_eq!(outer.header.next_payload, PayloadType::SK);
        assert_eq!(outer.header.length as usize, bytes.len());
        let sk = outer.encrypted().unwrap();
        assert_eq!(sk.first_inner, PayloadType::NOTIFY);
        assert_eq!(
            sk.data.len(),
            8 + payloads_len(&message.inner) + usize::from(pad_len) + 1 + 16
        );
        // The null cipher leaves the plaintext: inner payloads, zero padding, pad length.
        let plain = &sk.data[8..sk.data.len() - 16];
        assert_eq!(plain.last(), Some(&pad_len));
        assert!(
            plain[plain.len() - 1 - usize::from(pad_len)..plain.len() - 1]
                .iter()
                .all(|&b| b == 0)
        );

        let opened = ProtectedMessage::open(&bytes, &NullCipher).unwrap();
        assert_eq!(opened.inner, message.inner);
        assert!(opened.outer.is_empty());
        assert_eq!(opened.header.length as usize, bytes.len());
        assert_eq!(opened.header.exchange_type, ExchangeType::INFORMATIONAL);
    }
}

#[test]
fn empty_informational() {
    // A liveness check: an SK payload with nothing inside, first inner type NONE.
    let message = ProtectedMessage::new(header(), vec![]);
    let bytes = message.seal(&NullCipher, &[0; 8], 0).unwrap();
    assert_eq!(bytes.len(), 28 + 4 + 8 + 1 + 16);
    let outer = Message::parse(&bytes).unwrap();
    assert_eq!(outer.encrypted().unwrap().first_inner, PayloadType::NONE);
    assert_eq!(
        ProtectedMessage::open(&bytes, &NullCipher).unwrap().inner,
        vec![]
    );
}

#[test]
fn outer_payloads_before_sk() {
    let mut message = ProtectedMessage::new(header(), inner());
    message.outer = vec![Payload::VendorId(VendorId::new(b"hometun".to_vec()))];
    let bytes = message.seal(&NullCipher, &[0; 8], 0).unwrap();
    let outer = Message::parse(&bytes).unwrap();
    assert_eq!(outer.header.next_payload, PayloadType::VENDOR_ID);
    assert!(matches!(outer.payloads[1], Payload::Encrypted(_)));
    let opened = ProtectedMessage::open(&bytes, &NullCipher).unwrap();
    assert_eq!(opened.outer, message.outer);
    assert_eq!(opened.inner, message.inner);

    message.outer.push(Payload::Encrypted(Encrypted {
        first_inner: PayloadType::NONE,
        data: vec![],
    }));
    assert!(matches!(
        message.seal(&NullCipher, &[0; 8], 0),
        Err(SkError::Malformed(WireError::EncryptedNotLast(_)))
    ));
}

/// A cipher that records the AAD and plaintext it is given, and marks the ICV.
#[derive(Default)]
struct Recording {
    aad: RefCell<Vec<u8>>,
    plaintext: RefCell<Vec<u8>>,
}

impl SkCipher for Recording {
    fn iv_len(&self) -> usize {
        8
    }
    fn icv_len(&self) -> usize {
        16
    }
    fn seal(&self, _iv: &[u8], aad: &[u8], buf: &mut [u8]) -> Result<Vec<u8>, SkError> {
        *self.aad.borrow_mut() = aad.to_vec();
        *self.plaintext.borrow_mut() = buf.to_vec();
        for b in buf.iter_mut() {
            *b ^= 0x5a;
        }
        Ok(vec![0xee; 16])
    }
    fn open(&self, _iv: &[u8], aad: &[u8], buf: &mut [u8], icv: &[u8]) -> Result<(), SkError> {
        if icv != [0xee; 16] || *self.aad.borrow() != aad {
            return Err(SkError::IntegrityCheckFailed);
        }
        for b in buf.iter_mut() {
            *b ^= 0x5a;
        }
        Ok(())
    }
}

#[test]
fn aad_is_the_header_and_the_sk_generic_header_with_final_lengths() {
    let cipher = Recording::default();
    let message = ProtectedMessage::new(header(), inner());
    let bytes = message.seal(&cipher, &[9; 8], 2).unwrap();
    let aad = cipher.aad.borrow().clone();
    assert_eq!(aad.len(), 28 + 4);
    assert_eq!(aad, bytes[..32]);
    // The length fields inside the AAD are already final.
    assert_eq!(
        u32::from_be_bytes(aad[24..28].try_into().unwrap()) as usize,
        bytes.len()
    );
    assert_eq!(
        u16::from_be_bytes(aad[30..32].try_into().unwrap()) as usize,
        bytes.len() - 28
    );
    // The IV follows the AAD in the clear; then the ciphertext and the ICV.
    assert_eq!(bytes[32..40], [9; 8]);
    assert_eq!(bytes[bytes.len() - 16..], [0xee; 16]);
    let plaintext = cipher.plaintext.borrow().clone();
    assert_eq!(plaintext.len(), payloads_len(&message.inner) + 2 + 1);
    assert_eq!(plaintext[plaintext.len() - 3..], [0, 0, 2]);
    let mut expected_inner = vec![0; payloads_len(&message.inner)];
    emit_payloads(&message.inner, &mut expected_inner).unwrap();
    assert_eq!(plaintext[..expected_inner.len()], expected_inner);
    // Opening gives the AAD back to the cipher the same way.
    assert_eq!(
        ProtectedMessage::open(&bytes, &cipher).unwrap().inner,
        message.inner
    );
}

#[test]
fn open_errors() {
    let message = ProtectedMessage::new(header(), inner());
    let bytes = message.seal(&NullCipher, &[1; 8], 0).unwrap();

    // A flipped ICV byte.
    let mut tampered = bytes.clone();
    *tampered.last_mut().unwrap() ^= 1;
    let e = ProtectedMessage::open(&tampered, &NullCipher).unwrap_err();
    assert_eq!(e, SkError::IntegrityCheckFailed);
    assert_eq!(e.notify_type(), None);

    // No SK payload.
    let plain = Message::new(header(), inner()).to_bytes().unwrap();
    assert_eq!(
        ProtectedMessage::open(&plain, &NullCipher),
        Err(SkError::NoEncryptedPayload)
    );

    // An SKF fragment.
    let fragment = Message::new(
        header(),
        vec![Payload::EncryptedFragment(EncryptedFragment {
            first_inner: PayloadType::NOTIFY,
            fragment_number: 1,
            total_fragments: 2,
            data: vec![0; 40],
        })],
    )
    .to_bytes()
    .unwrap();
    assert_eq!(
        ProtectedMessage::open(&fragment, &NullCipher),
        Err(SkError::Fragment)
    );

    // An SK body too short for IV, ICV and the pad length octet.
    let short = Message::new(
        header(),
        vec![Payload::Encrypted(Encrypted {
            first_inner: PayloadType::NONE,
            data: vec![0; 24],
        })],
    )
    .to_bytes()
    .unwrap();
    assert_eq!(
        ProtectedMessage::open(&short, &NullCipher),
        Err(SkError::TooShort(24))
    );

    // Outer garbage: malformed, no notify (not authenticated).
    let e = ProtectedMessage::open(&bytes[..40], &NullCipher).unwrap_err();
    assert!(matches!(e, SkError::Malformed(_)));
    assert_eq!(e.notify_type(), None);

    // Wrong IV length on seal.
    assert_eq!(
        message.seal(&NullCipher, &[1; 7], 0),
        Err(SkError::IvLength {
            expected: 8,
            actual: 7
        })
    );
}

#[test]
fn decrypted_content_errors() {
    // Pad length pointing before the start of the plaintext.
    let e = parse_decrypted(PayloadType::NONE, &[0, 0, 5]).unwrap_err();
    assert_eq!(
        e,
        SkError::InvalidPadLength {
            pad_len: 5,
            available: 2
        }
    );
    assert_eq!(e.notify_type(), Some(NotifyType::INVALID_SYNTAX));
    assert_eq!(
        parse_decrypted(PayloadType::NONE, &[]),
        Err(SkError::TooShort(0))
    );

    // SK inside SK.
    let nested = [0, 0, 0, 4, 0];
    let e = parse_decrypted(PayloadType::SK, &nested).unwrap_err();
    assert_eq!(
        e,
        SkError::InnerMalformed(WireError::NestedEncrypted(PayloadType::SK))
    );
    assert_eq!(e.notify_type(), Some(NotifyType::INVALID_SYNTAX));

    // A critical unknown payload inside: UNSUPPORTED_CRITICAL_PAYLOAD, which may be answered
    // now that the message is authenticated.
    let critical = [0, 0x80, 0, 4, 0];
    let e = parse_decrypted(PayloadType(200), &critical).unwrap_err();
    assert_eq!(
        e.notify_type(),
        Some(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD)
    );

    // Padding and pad length are stripped before the chain is parsed.
    let mut plaintext = vec![0u8; payloads_len(&inner())];
    emit_payloads(&inner(), &mut plaintext).unwrap();
    plaintext.extend_from_slice(&[0xaa, 0xbb, 2]);
    assert_eq!(
        parse_decrypted(PayloadType::NOTIFY, &plaintext).unwrap(),
        inner()
    );
}

#[test]
fn aes_gcm_seal_then_open_and_tamper() {
    for (alg, key_len) in [(AeadAlg::AesGcm128, 20), (AeadAlg::AesGcm256, 36)] {
        let key: Vec<u8> = (0..key_len).map(|i| i as u8 * 7).collect();
        let gcm = SkGcm::new(alg, &key).unwrap();
        let message = ProtectedMessage::new(header(), inner());
        let bytes = message.seal(&gcm, &3u64.to_be_bytes(), 0).unwrap();
        let opened = ProtectedMessage::open(&bytes, &gcm).unwrap();
        assert_eq!(opened.inner, message.inner);
        // The plaintext does not show through.
        let mut plain = vec![0; payloads_len(&message.inner)];
        emit_payloads(&message.inner, &mut plain).unwrap();
        assert!(!bytes.windows(plain.len()).any(|w| w == plain));
        // The header is authenticated: change the message ID and the check fails.
        let mut moved = bytes.clone();
        moved[23] ^= 1;
        assert_eq!(
            ProtectedMessage::open(&moved, &gcm),
            Err(SkError::IntegrityCheckFailed)
        );
    }
}
