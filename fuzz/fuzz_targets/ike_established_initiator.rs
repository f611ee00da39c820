//! A hostile server against the home, after a real IKE_SA_INIT and IKE_AUTH: the server is
//! the real state machine, but the fuzzer changes the inner payloads (and now and then the
//! header) of every protected message it sends, IKE_AUTH included, and decides the order of
//! events. The home must never install selectors outside its own prefix, keep its status and
//! its forwarder in step, hold a bounded number of SAs, leave no timer in the past, and release
//! every SPI when it closes. Input format: `hometun_fuzz::established`.
#![no_main]

use hometun_fuzz::established::run;
use hometun_fuzz::ike_world::Side;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| run(data, Side::Home));
