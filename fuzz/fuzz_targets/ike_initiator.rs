//! The home's IKE_SA_INIT answered by anyone on the path: structured answers built around the
//! real request (its SPI, group, nonce, addresses), raw bytes behind its SPIs, the real
//! server's answer changed, replays and reflections, time and address changes. The home must
//! install only what the real server made, stay inside its prefix, hold a bounded number of
//! IKE SAs, leave no timer in the past, and release everything when it closes.
//! Input format: `hometun_fuzz::initiator`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hometun_fuzz::initiator::run(data));
