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

/// The OS generator's bytes, read [`BATCH`] at a time: a handshake draws four times (our
/// nonce, our IKE and ESP SPIs, our Diffie-Hellman private key), and a system call for each was
/// a measurable part of the server's driver (bench/README.md, "handshakes.sh"). Each byte is
/// handed out once and wiped from the buffer as it goes: the buffer holds only bytes still to
/// come, never one a key was made from.
pub struct BatchedOsRandom {
    buf: zeroize::Zeroizing<Vec<u8>>,
    /// Bytes of `buf` handed out (and wiped).
    used: usize,
}

/// How many bytes [`BatchedOsRandom`] reads at once.
pub const BATCH: usize = 4096;

impl BatchedOsRandom {
    /// Empty: the first draw reads the OS generator.
    pub fn new() -> Self {
        BatchedOsRandom {
            buf: zeroize::Zeroizing::new(vec![0; BATCH]),
            used: BATCH,
        }
    }
}

impl Default for BatchedOsRandom {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for BatchedOsRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BatchedOsRandom({} bytes left)", BATCH - self.used)
    }
}

impl Random for BatchedOsRandom {
    fn fill(&mut self, out: &mut [u8]) {
        if out.len() > BATCH {
            return OsRandom.fill(out);
        }
        if BATCH - self.used < out.len() {
            OsRandom.fill(&mut self.buf[..]);
            self.used = 0;
        }
        let taken = &mut self.buf[self.used..self.used + out.len()];
        out.copy_from_slice(taken);
        zeroize::Zeroize::zeroize(taken);
        self.used += out.len();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_bytes_are_handed_out_once_and_wiped() {
        let mut rng = BatchedOsRandom::new();
        let mut draws = Vec::new();
        // Across a refill, and one draw larger than the batch.
        for len in [32, 8, 4, 32, BATCH - 60, 100, BATCH + 1] {
            let mut out = vec![0u8; len];
            rng.fill(&mut out);
            assert!(out.iter().any(|&b| b != 0), "{len} bytes all zero");
            draws.push(out);
        }
        let mut seen = std::collections::HashSet::new();
        for draw in &draws {
            for chunk in draw.chunks_exact(16) {
                assert!(seen.insert(chunk.to_vec()), "a 16-byte run came out twice");
            }
        }
        // Everything handed out is wiped; what is left is still to come.
        assert!(rng.buf[..rng.used].iter().all(|&b| b == 0));
        assert!(rng.buf[rng.used..].iter().any(|&b| b != 0));
    }
}
