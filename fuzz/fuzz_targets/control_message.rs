//! SA channel frames from an untrusted controller: decoding must never panic.
#![no_main]

use hometun_control::{Envelope, FrameDecoder, FromForwarder, decode_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_frame::<Envelope>(data);
    let _ = decode_frame::<FromForwarder>(data);
    let mut decoder = FrameDecoder::new();
    decoder.push(data);
    while let Ok(Some(_)) = decoder.next_message::<Envelope>() {}
});
