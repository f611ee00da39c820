//! Diffie-Hellman for the KE payload: group 31 (X25519, RFC 8031) and group 19 (P-256,
//! RFC 5903). The private value comes from the caller's random bytes (no randomness in here).
//!
//! X25519 is aws-lc's (its x86-64 assembly with ADX/BMI2 where the CPU has them): 2.2x faster
//! than x25519-dalek's serial Montgomery ladder for a key pair and shared secret, and the
//! responder does one of each per handshake (README, "Crates chosen, and why").

use std::fmt;

use aws_lc_rs::agreement;
use zeroize::Zeroizing;

use super::CryptoError;

/// Bytes of randomness [`KeyExchange::new`] takes, for either group.
pub const PRIVATE_RANDOM_LEN: usize = 32;

/// A Diffie-Hellman group we implement, by its IKEv2 transform type 4 ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// Group 19, 256-bit random ECP group (NIST P-256), RFC 5903.
    Ecp256,
    /// Group 31, Curve25519 (X25519), RFC 8031.
    Curve25519,
}

impl DhGroup {
    /// The transform ID (the "DH Group Num" of the KE payload).
    pub const fn id(self) -> u16 {
        match self {
            DhGroup::Ecp256 => 19,
            DhGroup::Curve25519 => 31,
        }
    }

    /// The group with transform ID `id`, if we implement it.
    pub const fn from_id(id: u16) -> Option<Self> {
        match id {
            19 => Some(DhGroup::Ecp256),
            31 => Some(DhGroup::Curve25519),
            _ => None,
        }
    }

    /// The group as the wire registry value.
    pub const fn to_wire(self) -> crate::wire::DhGroup {
        crate::wire::DhGroup(self.id())
    }

    /// The group of a wire registry value, if we implement it.
    pub const fn from_wire(group: crate::wire::DhGroup) -> Option<Self> {
        Self::from_id(group.0)
    }

    /// Length of the KE payload's key exchange data: x || y for P-256 (RFC 5903 7), the
    /// u-coordinate for X25519 (RFC 8031 2).
    pub const fn ke_len(self) -> usize {
        match self {
            DhGroup::Ecp256 => 64,
            DhGroup::Curve25519 => 32,
        }
    }

    /// Length of the shared secret g^ir.
    pub const fn shared_secret_len(self) -> usize {
        32
    }
}

/// A KE payload's group we do not implement is [`CryptoError::UnsupportedGroup`], which
/// answers INVALID_KE_PAYLOAD.
impl TryFrom<crate::wire::DhGroup> for DhGroup {
    type Error = CryptoError;

    fn try_from(group: crate::wire::DhGroup) -> Result<Self, CryptoError> {
        Self::from_wire(group).ok_or(CryptoError::UnsupportedGroup(group.0))
    }
}

impl fmt::Display for DhGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DhGroup::Ecp256 => f.write_str("ecp256 (19)"),
            DhGroup::Curve25519 => f.write_str("curve25519 (31)"),
        }
    }
}

enum PrivateValue {
    /// Freed (and wiped) by aws-lc when dropped.
    X25519(aws_lc_rs::agreement::PrivateKey),
    P256(p256::SecretKey),
}

/// Our half of one Diffie-Hellman exchange: the private value (wiped on drop) and the public KE
/// data. Use one per exchange; [`KeyExchange::shared_secret`] may be called more than once
/// (e.g. when the peer retransmits).
pub struct KeyExchange {
    group: DhGroup,
    private: PrivateValue,
    public: Vec<u8>,
}

impl KeyExchange {
    /// Makes a key pair from 32 random bytes. X25519 clamps them (RFC 7748 5); P-256 takes them
    /// as the big-endian scalar and returns [`CryptoError::BadRandom`] in the rare case that is
    /// zero or not below the group order.
    pub fn new(group: DhGroup, random: &[u8; PRIVATE_RANDOM_LEN]) -> Result<Self, CryptoError> {
        match group {
            DhGroup::Curve25519 => {
                // aws-lc clamps the 32 bytes when it multiplies (RFC 7748 5).
                let secret = agreement::PrivateKey::from_private_key(&agreement::X25519, random)
                    .map_err(|_| CryptoError::BadRandom)?;
                let public = secret
                    .compute_public_key()
                    .map_err(|_| CryptoError::BadRandom)?
                    .as_ref()
                    .to_vec();
                Ok(KeyExchange {
                    group,
                    private: PrivateValue::X25519(secret),
                    public,
                })
            }
            DhGroup::Ecp256 => {
                let secret =
                    p256::SecretKey::from_slice(random).map_err(|_| CryptoError::BadRandom)?;
                let point = secret.public_key().to_sec1_bytes();
                // Uncompressed SEC1 is 0x04 || x || y; the KE payload carries x || y.
                let public = point.get(1..).map(<[u8]>::to_vec).unwrap_or_default();
                Ok(KeyExchange {
                    group,
                    private: PrivateValue::P256(secret),
                    public,
                })
            }
        }
    }

    /// The group.
    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// Our key exchange data for the KE payload.
    pub fn public_ke_data(&self) -> &[u8] {
        &self.public
    }

    /// Refuses peer KE data of the wrong length for the group (the check
    /// [`KeyExchange::shared_secret`] starts with, for a caller that computes it later).
    pub fn check_peer_ke(&self, peer_ke_data: &[u8]) -> Result<(), CryptoError> {
        if peer_ke_data.len() == self.group.ke_len() {
            Ok(())
        } else {
            Err(CryptoError::KeLength {
                group: self.group.id(),
                expected: self.group.ke_len(),
                got: peer_ke_data.len(),
            })
        }
    }

    /// The shared secret g^ir from the peer's KE data: the X25519 output, or the x coordinate of
    /// the P-256 point (RFC 5903 7). Rejects a wrong length, a P-256 value not on the curve
    /// (RFC 6989) and an all-zero X25519 result (RFC 8031 2).
    pub fn shared_secret(&self, peer_ke_data: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.check_peer_ke(peer_ke_data)?;
        match &self.private {
            PrivateValue::X25519(secret) => {
                let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, peer_ke_data);
                // With the length checked above, aws-lc refuses only an all-zero result (a
                // low-order point, RFC 7748 6.1), which it tests in constant time.
                agreement::agree(secret, peer, CryptoError::AllZeroSharedSecret, |shared| {
                    Ok(Zeroizing::new(shared.to_vec()))
                })
            }
            PrivateValue::P256(secret) => {
                let mut sec1 = [0u8; 65];
                sec1[0] = 0x04;
                sec1[1..].copy_from_slice(peer_ke_data);
                // from_sec1_bytes checks the point is on the curve and not the identity.
                let peer = p256::PublicKey::from_sec1_bytes(&sec1)
                    .map_err(|_| CryptoError::PointNotOnCurve)?;
                let shared = secret.diffie_hellman(&peer);
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
        }
    }
}

impl fmt::Debug for KeyExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyExchange")
            .field("group", &self.group)
            .field("public", &HexBytes(&self.public))
            .finish_non_exhaustive()
    }
}

struct HexBytes<'a>(&'a [u8]);

impl fmt::Debug for HexBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_round_trip() {
        for g in [DhGroup::Ecp256, DhGroup::Curve25519] {
            assert_eq!(DhGroup::from_id(g.id()), Some(g));
        }
        assert_eq!(DhGroup::from_id(14), None);
    }

    #[test]
    fn p256_zero_scalar_is_bad_random() {
        assert!(matches!(
            KeyExchange::new(DhGroup::Ecp256, &[0u8; 32]),
            Err(CryptoError::BadRandom)
        ));
        // The group order n and above are not valid scalars either.
        assert!(matches!(
            KeyExchange::new(DhGroup::Ecp256, &[0xff; 32]),
            Err(CryptoError::BadRandom)
        ));
    }

    #[test]
    fn debug_does_not_print_private_value() {
        let kx = KeyExchange::new(DhGroup::Curve25519, &[7u8; 32]).unwrap();
        let text = format!("{kx:?}");
        assert!(text.contains("Curve25519"));
        assert!(!text.contains("0707070707"));
    }
}
