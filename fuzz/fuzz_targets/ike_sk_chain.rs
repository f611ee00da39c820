//! The decrypted content of an SK payload (inner payloads, padding, pad length), reached with
//! the null cipher: the first byte is the first inner payload type, the rest the plaintext.
//! Opening must never panic; what opens must seal and open again to the same payloads.
#![no_main]

use hometun_daemon::tools::decode::describe_payload;
use hometun_ike::wire::{
    ExchangeType, Flags, Header, NullCipher, PayloadType, ProtectedMessage, SkCipher,
    parse_decrypted,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, plaintext)) = data.split_first() else {
        return;
    };
    let _ = parse_decrypted(PayloadType(first), plaintext);

    // The same plaintext inside a whole message under the null cipher.
    let iv = [0x11u8; 8];
    let sk_len = 4 + iv.len() + plaintext.len() + NullCipher.icv_len();
    let Ok(sk_len16) = u16::try_from(sk_len) else {
        return;
    };
    let mut header = Header::new(
        ExchangeType::INFORMATIONAL,
        1,
        2,
        Flags::new(true, false),
        7,
    );
    header.next_payload = PayloadType::SK;
    header.length = (28 + sk_len) as u32;
    let mut bytes = vec![0u8; 28];
    header.emit(&mut bytes).expect("28-byte buffer");
    bytes.extend_from_slice(&[first, 0]);
    bytes.extend_from_slice(&sk_len16.to_be_bytes());
    bytes.extend_from_slice(&iv);
    bytes.extend_from_slice(plaintext);
    bytes.extend_from_slice(&[0; 16]);

    if let Ok(opened) = ProtectedMessage::open(&bytes, &NullCipher) {
        let mut text = String::new();
        for payload in &opened.inner {
            describe_payload(payload, "  ", &mut text);
        }
        let resealed = opened
            .seal(&NullCipher, &iv, 0)
            .expect("opened payloads seal again");
        let again = ProtectedMessage::open(&resealed, &NullCipher).expect("sealed opens again");
        assert_eq!(again.inner, opened.inner);
    }
});
