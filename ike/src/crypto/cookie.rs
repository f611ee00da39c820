//! Stateless COOKIE (RFC 7296 2.6): Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi |
//! <secret>), with SHA-256 and a caller-supplied secret. The responder keeps the current
//! secret and the one before, so cookies handed out just before a rotation still verify.

use std::fmt;
use std::net::IpAddr;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Length of a cookie: 4-byte secret version and a SHA-256 hash (within RFC 7296's 1..=64).
pub const COOKIE_LEN: usize = 4 + 32;

struct CookieSecret {
    version: u32,
    secret: Zeroizing<[u8; 32]>,
}

impl CookieSecret {
    fn cookie(&self, ni: &[u8], ip_i: IpAddr, spi_i: u64) -> [u8; COOKIE_LEN] {
        let mut h = Sha256::new();
        h.update(ni);
        match ip_i {
            IpAddr::V4(a) => h.update(a.octets()),
            IpAddr::V6(a) => h.update(a.octets()),
        }
        h.update(spi_i.to_be_bytes());
        h.update(self.secret.as_slice());
        let mut cookie = [0u8; COOKIE_LEN];
        cookie[..4].copy_from_slice(&self.version.to_be_bytes());
        cookie[4..].copy_from_slice(&h.finalize());
        cookie
    }
}

/// Makes and checks COOKIE notification data.
pub struct CookieGenerator {
    current: CookieSecret,
    previous: Option<CookieSecret>,
}

impl CookieGenerator {
    /// Starts with `secret` (32 random bytes from the caller) as version 0.
    pub fn new(secret: [u8; 32]) -> Self {
        CookieGenerator {
            current: CookieSecret {
                version: 0,
                secret: Zeroizing::new(secret),
            },
            previous: None,
        }
    }

    /// Replaces the secret (call this periodically with fresh random bytes). Cookies made with
    /// the secret before keep verifying until the next rotation.
    pub fn rotate(&mut self, secret: [u8; 32]) {
        let next = CookieSecret {
            version: self.current.version.wrapping_add(1),
            secret: Zeroizing::new(secret),
        };
        self.previous = Some(std::mem::replace(&mut self.current, next));
    }

    /// The COOKIE notification data for an initiator's IKE_SA_INIT request (SPIi as in the
    /// IKE header).
    pub fn cookie(&self, ni: &[u8], ip_i: IpAddr, spi_i: u64) -> [u8; COOKIE_LEN] {
        self.current.cookie(ni, ip_i, spi_i)
    }

    /// Whether `cookie` (returned by the initiator) was made by us for this Ni, IPi and SPIi
    /// with the current or the previous secret. Compares in constant time.
    pub fn verify(&self, cookie: &[u8], ni: &[u8], ip_i: IpAddr, spi_i: u64) -> bool {
        let Some(version) = cookie.get(..4) else {
            return false;
        };
        let version = u32::from_be_bytes([version[0], version[1], version[2], version[3]]);
        let secret = if version == self.current.version {
            &self.current
        } else {
            match &self.previous {
                Some(prev) if prev.version == version => prev,
                _ => return false,
            }
        };
        let expected = secret.cookie(ni, ip_i, spi_i);
        cookie.len() == expected.len()
            && cookie
                .iter()
                .zip(expected.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl fmt::Debug for CookieGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CookieGenerator(version {}, <redacted>)",
            self.current.version
        )
    }
}
