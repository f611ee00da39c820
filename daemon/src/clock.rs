//! The only places the daemon reads the clock and the OS random generator: the protocol code
//! gets both as arguments (docs/ARCHITECTURE.md, "The sans-IO contract").

use hometun_ike::endpoint::{Now, Random};

/// The operating system's random generator (getrandom).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        // Without entropy no key, nonce or SPI would be safe: stopping is the only sound
        // answer, and getrandom fails only on a broken system.
        getrandom::fill(buf).expect("the OS random generator failed");
    }
}

/// The time now, monotonic and wall clock.
// The I/O driver is where time is read; everything below takes it as an argument.
#[allow(clippy::disallowed_methods)]
pub fn now() -> Now {
    Now {
        mono: std::time::Instant::now(),
        wall: std::time::SystemTime::now(),
    }
}
