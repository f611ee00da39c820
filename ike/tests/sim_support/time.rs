//! Randomness and time: a seeded generator and the virtual clock.

use super::*;

/// SplitMix64: seeded, reproducible.
pub struct SeededRandom(u64);

impl SeededRandom {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Random for SeededRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_be_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// The virtual clock: a fixed base Instant plus an offset; wall time 2028-01-01 plus the same.
#[derive(Clone, Copy)]
pub struct Clock {
    base: Instant,
    wall: SystemTime,
    pub offset: Duration,
}

impl Clock {
    pub fn new() -> Self {
        // The base is read once; every later time is base + offset (no clock inside).
        #[allow(clippy::disallowed_methods)]
        let base = Instant::now();
        Self {
            base,
            wall: wall_2028(),
            offset: Duration::ZERO,
        }
    }

    pub fn now(&self) -> Now {
        Now {
            mono: self.base + self.offset,
            wall: self.wall + self.offset,
        }
    }

    pub fn at(&self, mono: Instant) -> Duration {
        mono.saturating_duration_since(self.base)
    }
}

pub fn wall_2028() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(date_time_ymd(2028, 1, 1).unix_timestamp() as u64)
}
