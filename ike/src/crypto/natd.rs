//! NAT detection (RFC 7296 2.23): the NAT_DETECTION_SOURCE_IP / _DESTINATION_IP notification
//! data, SHA-1(SPIi | SPIr | IP address | port).

use std::net::IpAddr;

use sha1::{Digest, Sha1};

/// Length of the NAT detection hash (SHA-1).
pub const NATD_HASH_LEN: usize = 20;

/// The NAT detection hash of one address and UDP port, with the SPIs as in the IKE header
/// (`spi_r` is zero in the IKE_SA_INIT request). IPv4 addresses are hashed as 4 bytes, IPv6 as
/// 16.
pub fn natd_hash(spi_i: u64, spi_r: u64, addr: IpAddr, port: u16) -> [u8; NATD_HASH_LEN] {
    let mut h = Sha1::new();
    h.update(spi_i.to_be_bytes());
    h.update(spi_r.to_be_bytes());
    match addr {
        IpAddr::V4(a) => h.update(a.octets()),
        IpAddr::V6(a) => h.update(a.octets()),
    }
    h.update(port.to_be_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_changes_the_hash() {
        let base = natd_hash(1, 2, "192.0.2.1".parse().unwrap(), 500);
        assert_ne!(base, natd_hash(9, 2, "192.0.2.1".parse().unwrap(), 500));
        assert_ne!(base, natd_hash(1, 0, "192.0.2.1".parse().unwrap(), 500));
        assert_ne!(base, natd_hash(1, 2, "192.0.2.2".parse().unwrap(), 500));
        assert_ne!(base, natd_hash(1, 2, "192.0.2.1".parse().unwrap(), 4500));
        assert_ne!(
            base,
            natd_hash(1, 2, "::ffff:192.0.2.1".parse().unwrap(), 500)
        );
    }
}
