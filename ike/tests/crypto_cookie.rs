//! COOKIE (RFC 7296 2.6): format, verification, secret rotation.

#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::net::IpAddr;

use hometun_ike::crypto::CookieGenerator;
use hometun_ike::crypto::cookie::COOKIE_LEN;
use sha2::{Digest, Sha256};

const NI: &[u8] = &[0xa5; 32];
const SPI_I_BYTES: [u8; 8] = [0x0d, 0x22, 0xb5, 0xfe, 0x67, 0x25, 0x06, 0x51];
const SPI_I: u64 = u64::from_be_bytes(SPI_I_BYTES);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn cookie_is_version_then_hash_of_ni_ip_spi_secret() {
    let secret = [0x3c; 32];
    let cookies = CookieGenerator::new(secret);
    for addr in [ip("192.0.2.2"), ip("2001:db8::2")] {
        let cookie = cookies.cookie(NI, addr, SPI_I);
        assert_eq!(cookie.len(), COOKIE_LEN);
        assert!((1..=64).contains(&cookie.len()));
        let ip_bytes = match addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        let hash = Sha256::digest([NI, &ip_bytes, &SPI_I_BYTES, &secret].concat());
        assert_eq!(cookie[..4], [0, 0, 0, 0]);
        assert_eq!(cookie[4..], hash[..]);
        assert!(cookies.verify(&cookie, NI, addr, SPI_I));
    }
}

#[test]
fn cookie_is_bound_to_ni_address_and_spi() {
    let cookies = CookieGenerator::new([1; 32]);
    let addr = ip("198.51.100.9");
    let cookie = cookies.cookie(NI, addr, SPI_I);
    assert!(!cookies.verify(&cookie, &[0xa4; 32], addr, SPI_I));
    assert!(!cookies.verify(&cookie, NI, ip("198.51.100.10"), SPI_I));
    assert!(!cookies.verify(&cookie, NI, addr, 0));
    let mut flipped = cookie;
    flipped[20] ^= 1;
    assert!(!cookies.verify(&flipped, NI, addr, SPI_I));
    assert!(!cookies.verify(&cookie[..COOKIE_LEN - 1], NI, addr, SPI_I));
    assert!(!cookies.verify(&[], NI, addr, SPI_I));
    assert!(!cookies.verify(&[0, 0, 0], NI, addr, SPI_I));
    // Another secret does not accept it.
    assert!(!CookieGenerator::new([2; 32]).verify(&cookie, NI, addr, SPI_I));
}

#[test]
fn rotation_keeps_the_previous_secret_for_one_period() {
    let addr = ip("203.0.113.4");
    let mut cookies = CookieGenerator::new([1; 32]);
    let first = cookies.cookie(NI, addr, SPI_I);
    cookies.rotate([2; 32]);
    let second = cookies.cookie(NI, addr, SPI_I);
    assert_ne!(first, second);
    assert_eq!(second[..4], [0, 0, 0, 1]);
    assert!(cookies.verify(&first, NI, addr, SPI_I));
    assert!(cookies.verify(&second, NI, addr, SPI_I));
    cookies.rotate([3; 32]);
    assert!(!cookies.verify(&first, NI, addr, SPI_I));
    assert!(cookies.verify(&second, NI, addr, SPI_I));
    // The secret never shows in Debug.
    assert_eq!(
        format!("{cookies:?}"),
        "CookieGenerator(version 2, <redacted>)"
    );
}
