//! A hostile, authenticated home against the server, after a real IKE_SA_INIT and IKE_AUTH:
//! the home is the real state machine, but the fuzzer changes the inner payloads (and now and
//! then the header) of every protected message it sends, IKE_AUTH included, and decides the
//! order of events (delivery, loss, duplicates, replays, time, limits, rekeys, moves, counters,
//! refused installs, restarts). The server must never install selectors outside the home's
//! prefix, keep its status and its forwarder in step, hold a bounded number of CHILD and IKE
//! SAs, leave no timer in the past, and release every SPI when it closes.
//! Input format: `hometun_fuzz::established`.
#![no_main]

use hometun_fuzz::established::run;
use hometun_fuzz::ike_world::Side;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| run(data, Side::Server));
