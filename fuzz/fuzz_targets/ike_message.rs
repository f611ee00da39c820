//! IKE messages from the network: parsing must never panic, and whatever parses must emit and
//! parse again to the same message (and the same bytes). The decoder's printer runs on it too.
#![no_main]

use hometun_daemon::tools::decode::{DecodeKeys, describe_message};
use hometun_ike::wire::{Header, Message, classify_port_4500};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Header::parse(data);
    let _ = classify_port_4500(data);
    if let Ok(message) = Message::parse(data) {
        let bytes = message.to_bytes().expect("a parsed message emits");
        let again = Message::parse(&bytes).expect("an emitted message parses");
        assert_eq!(again, message);
        assert_eq!(again.to_bytes().expect("emits again"), bytes);
    }
    let mut text = String::new();
    let _ = describe_message(data, None, &DecodeKeys::default(), &mut text);
});
