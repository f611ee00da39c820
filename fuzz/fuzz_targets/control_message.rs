//! SA channel frames from an untrusted controller: decoding must never panic, and neither must
//! the forwarder's control handler when it is fed whatever decodes (install, delete, endpoint
//! moves, IKE relay, counters, shutdown), in any order.
#![no_main]

use hometun_control::{
    Envelope, FrameDecoder, FromForwarder, InterfaceConfig, Request, decode_frame,
};
use hometun_forwarder::aead::AeadBackend;
use hometun_forwarder::requests::{RecordingPlatform, RequestHandler};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_frame::<Envelope>(data);
    let _ = decode_frame::<FromForwarder>(data);

    let (mut handler, events) =
        RequestHandler::new(RecordingPlatform::default(), AeadBackend::AwsLc);
    // Start configured, so that installs and the rest are reachable at once.
    let configured = handler.handle(Request::Configure(InterfaceConfig::for_tests(
        "fuzz0", None,
    )));
    assert!(configured.is_ok());
    let mut decoder = FrameDecoder::new();
    decoder.push(data);
    loop {
        match decoder.next_message::<Envelope>() {
            Ok(Some(envelope)) => {
                let _ = handler.handle(envelope.request);
                // Invariant: every route the platform holds belongs to an installed SA.
                let wanted = handler.sad().routed_prefixes();
                assert!(handler.platform().routes.iter().all(|r| wanted.contains(r)));
            }
            Ok(None) => break,
            Err(hometun_control::CodecError::TooLong(_)) => break,
            Err(_) => continue,
        }
    }
    drop(events);
});
