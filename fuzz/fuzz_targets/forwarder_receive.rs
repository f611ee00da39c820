//! The forwarder's receive path (`hometun_forwarder::inbound`: UDP 4500 and raw ESP
//! demultiplexing, `SaPair::open`, `Roaming::after_open`) over several pairs, both AEAD
//! backends, AES-128/256 and ESN, with packets the harness seals with the pairs' keys at
//! sequence numbers the fuzzer picks: traffic, override NAs, probes and their answers, dummies,
//! any plaintext, corrupted packets and any bytes, from addresses the fuzzer picks, against
//! one stateful `Roaming` on a clock the fuzzer moves. A model beside each pair says what must
//! become of every packet: the window never moves on a packet that failed the ICV, every
//! datagram is counted exactly once, and an endpoint moves only on an authentic answer to a
//! probe, from where the probe went. Input format: `hometun_fuzz::receive`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hometun_fuzz::receive::run(data));
