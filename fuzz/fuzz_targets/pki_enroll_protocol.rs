//! Enrollment frames and tokens from untrusted peers: decoding must never panic, and a
//! decoded message must emit the same frame back (parse/emit symmetry).
#![no_main]

use hometun_pki::enroll::protocol::{Message, decode_frame};
use hometun_pki::token::Token;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((message, used)) = decode_frame(data) {
        let frame = message.to_frame().expect("a decoded message fits a frame");
        assert_eq!(frame, &data[..used]);
        assert_eq!(message.buffer_len() + 4, used);
    }
    let _ = Message::parse(data);
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(token) = Token::parse(text)
    {
        assert_eq!(Token::parse(&token.encode()).expect("re-parses"), token);
    }
});
