//! The shared description of an ESP SA pair, as the IKE daemon negotiates it and the forwarder
//! installs it.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::ControlError;

/// An ESP Security Parameter Index. Zero is reserved (RFC 4303 2.1) and never names an SA.
/// Readable formats (the status JSON) spell it as the table and the logs do, eight hex digits;
/// the SA channel's binary encoding keeps the number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Spi(pub u32);

impl Serialize for Spi {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&format!("{:08x}", self.0))
        } else {
            serializer.serialize_u32(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Spi {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HexOrNumber;
        impl serde::de::Visitor<'_> for HexOrNumber {
            type Value = Spi;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an SPI: eight hex digits, or a number")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Spi, E> {
                let digits = text.strip_prefix("0x").unwrap_or(text);
                u32::from_str_radix(digits, 16)
                    .map(Spi)
                    .map_err(|_| E::custom(format!("{text:?} is not an SPI in hex")))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Spi, E> {
                u32::try_from(n)
                    .map(Spi)
                    .map_err(|_| E::custom(format!("{n} is larger than an SPI")))
            }
            fn visit_u32<E: serde::de::Error>(self, n: u32) -> Result<Spi, E> {
                Ok(Spi(n))
            }
        }
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(HexOrNumber)
        } else {
            deserializer.deserialize_u32(HexOrNumber)
        }
    }
}

impl Spi {
    /// The SPI as it travels in ESP headers and IKE payloads (network byte order).
    pub fn to_bytes(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }

    /// An SPI from a payload's SPI field; `None` unless it is exactly four octets.
    pub fn from_bytes(bytes: &[u8]) -> Option<Spi> {
        <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| Spi(u32::from_be_bytes(b)))
    }
}

impl fmt::Debug for Spi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl fmt::Display for Spi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl fmt::LowerHex for Spi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

/// Names one peer: a client on the server, the server on a client. Chosen by the IKE daemon; all
/// CHILD SAs of one peer share its outer [`Endpoint`] and move together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer{}", self.0)
    }
}

/// ESP AEAD transform: AES-GCM with a 16-byte ICV (RFC 4106, ENCR_AES_GCM_16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AeadAlg {
    /// AES-128-GCM, 16-byte key.
    AesGcm128,
    /// AES-256-GCM, 32-byte key.
    AesGcm256,
}

impl AeadAlg {
    /// Length of the AES key, without the 4-byte salt.
    pub fn key_len(self) -> usize {
        match self {
            AeadAlg::AesGcm128 => 16,
            AeadAlg::AesGcm256 => 32,
        }
    }

    /// Key length in bits, as IKEv2's Key Length attribute gives it.
    pub fn key_bits(self) -> u16 {
        (self.key_len() * 8) as u16
    }

    /// Name as strongSwan and `ip xfrm` print it.
    pub fn name(self) -> &'static str {
        match self {
            AeadAlg::AesGcm128 => "aes128gcm16",
            AeadAlg::AesGcm256 => "aes256gcm16",
        }
    }
}

/// Why a key could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum KeyError {
    /// KEYMAT for AES-GCM is the key followed by a 4-byte salt (RFC 4106 8.1).
    #[error("{alg} needs {expected} bytes of key material (key + 4-byte salt), got {got}", alg = .alg.name())]
    WrongLength {
        /// The algorithm the key was meant for.
        alg: AeadAlg,
        /// Bytes it needs.
        expected: usize,
        /// Bytes it got.
        got: usize,
    },
}

/// One direction's AEAD key and salt. The bytes are wiped when dropped and never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct AeadKey {
    #[zeroize(skip)]
    alg: AeadAlg,
    key: Vec<u8>,
    salt: [u8; 4],
}

impl AeadKey {
    /// Builds a key from KEYMAT as RFC 4106 8.1 lays it out: the AES key, then the 4-byte salt.
    pub fn from_keymat(alg: AeadAlg, keymat: &[u8]) -> Result<Self, KeyError> {
        let expected = alg.key_len() + 4;
        if keymat.len() != expected {
            return Err(KeyError::WrongLength {
                alg,
                expected,
                got: keymat.len(),
            });
        }
        let (key, salt) = keymat.split_at(alg.key_len());
        let mut salt_bytes = [0u8; 4];
        salt_bytes.copy_from_slice(salt);
        Ok(AeadKey {
            alg,
            key: key.to_vec(),
            salt: salt_bytes,
        })
    }

    /// Checks a key that arrived over the channel: its length must match its algorithm.
    pub fn validate(&self) -> Result<(), KeyError> {
        if self.key.len() == self.alg.key_len() {
            Ok(())
        } else {
            Err(KeyError::WrongLength {
                alg: self.alg,
                expected: self.alg.key_len() + 4,
                got: self.key.len() + 4,
            })
        }
    }

    /// The algorithm.
    pub fn alg(&self) -> AeadAlg {
        self.alg
    }

    /// The AES key bytes (without salt).
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The 4-byte salt that forms the first part of every GCM nonce.
    pub fn salt(&self) -> [u8; 4] {
        self.salt
    }
}

impl fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AeadKey({}, <redacted>)", self.alg.name())
    }
}

/// How ESP packets travel between the two outer IPv4 addresses. Spelled `raw` and `udp` in
/// readable formats, as in the static SA configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encapsulation {
    /// ESP directly in IPv4, protocol 50 (what the draft specifies; used when no NAT is seen).
    Raw,
    /// ESP in UDP (RFC 3948), normally port 4500 on both sides; the remote port is whatever the
    /// NAT mapped it to.
    Udp {
        /// Our UDP port (the forwarder's ESP-in-UDP socket).
        local_port: u16,
        /// The peer's UDP port as we see it.
        remote_port: u16,
    },
}

/// The outer addresses of one peer's SAs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    /// Our outer IPv4 address.
    pub local: Ipv4Addr,
    /// The peer's outer IPv4 address as we see it (behind NAT: the NAT's public address).
    pub remote: Ipv4Addr,
    /// Raw ESP or ESP in UDP.
    pub encap: Encapsulation,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.encap {
            Encapsulation::Raw => write!(f, "{} -> {} (esp)", self.local, self.remote),
            Encapsulation::Udp {
                local_port,
                remote_port,
            } => write!(
                f,
                "{}:{} -> {}:{} (udp)",
                self.local, local_port, self.remote, remote_port
            ),
        }
    }
}

/// Byte and packet lifetimes of one SA (docs/ARCHITECTURE.md, "Rekeys"). `None` means no limit.
/// Each direction of the pair counts on its own; the soft limit asks for a rekey, the hard limit
/// stops the SA. Time limits exist only when configured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes (inner packets) after which a rekey is asked for.
    pub soft_bytes: Option<u64>,
    /// Bytes after which the SA carries nothing more.
    pub hard_bytes: Option<u64>,
    /// Packets after which a rekey is asked for.
    pub soft_packets: Option<u64>,
    /// Packets after which the SA carries nothing more.
    pub hard_packets: Option<u64>,
    /// Seconds after install after which a rekey is asked for (off by default).
    pub soft_seconds: Option<u64>,
    /// Seconds after install after which the SA carries nothing more (off by default).
    pub hard_seconds: Option<u64>,
}

/// A CHILD SA pair as the forwarder installs it: one inbound and one outbound ESP SA, their
/// traffic selectors and the peer's endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildSa {
    /// The peer this pair belongs to.
    pub peer: PeerId,
    /// SPI of the inbound SA (chosen by us); also names the pair in [`crate::Request::Delete`].
    pub spi_in: Spi,
    /// Key for packets we receive.
    pub key_in: AeadKey,
    /// SPI of the outbound SA (chosen by the peer).
    pub spi_out: Spi,
    /// Key for packets we send.
    pub key_out: AeadKey,
    /// Our side's inner prefixes (TSi on the initiator).
    pub local_ts: Vec<Ipv6Net>,
    /// The peer's inner prefixes: inner sources accepted from it (ingress filter, RFC 4891) and
    /// inner destinations routed to it (longest match).
    pub remote_ts: Vec<Ipv6Net>,
    /// Outer addresses and encapsulation.
    pub endpoint: Endpoint,
    /// Lifetimes, per direction.
    pub limits: Limits,
    /// 64-bit extended sequence numbers (RFC 4303 2.2.1).
    pub esn: bool,
    /// Anti-replay window in packets; at least 1024 (smaller values are raised to 1024).
    pub replay_window: u32,
    /// Send NAT keepalives (RFC 3948 2.3) this often, in seconds, when encapsulated in UDP.
    pub nat_keepalive_seconds: Option<u32>,
}

/// Largest MTU of the TUN device: the inner packet plus outer headers must fit a 64 KiB datagram.
pub const MAX_MTU: u32 = 65_000;

/// Largest anti-replay window a pair may ask for, in packets.
pub const MAX_REPLAY_WINDOW: u32 = 1 << 20;

/// The forwarder's interface: the TUN device and the outer sockets. Sent once, first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceConfig {
    /// TUN device name, e.g. `hometun0`.
    pub tun_name: String,
    /// MTU of the TUN device; leave room for the outer headers (the default 1400 does).
    pub mtu: u32,
    /// IPv6 addresses put on the TUN device (at least a link-local one), with prefix length.
    pub addresses: Vec<Ipv6Net>,
    /// Outer IPv4 address to bind the sockets to; `None` binds to any.
    pub bind_ipv4: Option<Ipv4Addr>,
    /// UDP port for ESP in UDP and IKE with the non-ESP marker (normally 4500); 0 = none.
    pub udp_port: u16,
    /// Open a raw socket for IP protocol 50.
    pub raw_esp: bool,
    /// Add a route through the TUN device for each SA's remote traffic selector.
    pub manage_routes: bool,
    /// Metric of those routes.
    pub route_metric: u32,
    /// Routing protocol number of those routes (`rtm_protocol`): a BGP daemon on a server
    /// exports the homes' routes by it (the config's `tunnel.route_protocol`).
    pub route_protocol: u8,
    /// Where every peer's prefixes must lie (the server's `server.pool`). When set, an Install
    /// is refused unless its peer was granted its remote selectors by `Request::AllowPeer`;
    /// `None` (a client, whose one peer routes `::/0`) leaves grants optional.
    #[serde(default)]
    pub peer_pool: Option<Ipv6Net>,
    /// Lower the MSS option of TCP SYNs crossing the tunnel, both directions, to what fits
    /// `mtu` (for hosts whose path MTU discovery a filter breaks).
    #[serde(default)]
    pub clamp_mss: bool,
    /// Source of the ICMPv6 errors the forwarder sends (Packet Too Big); `None`: the first
    /// non-link-local address of `addresses`. A server sets a global address of its own: a
    /// link-local source would not be forwarded to the Internet host that needs the error.
    #[serde(default)]
    pub icmp_source: Option<std::net::Ipv6Addr>,
}

impl InterfaceConfig {
    /// Checks what the forwarder cannot work with: a TUN name the kernel refuses, an MTU
    /// outside 1280..=[`MAX_MTU`], no outer socket at all.
    pub fn validate(&self) -> Result<(), ControlError> {
        if self.tun_name.is_empty() || self.tun_name.len() > 15 {
            return Err(ControlError::BadTunName(self.tun_name.clone()));
        }
        if !(1280..=MAX_MTU).contains(&self.mtu) {
            return Err(ControlError::BadMtu {
                mtu: self.mtu,
                max: MAX_MTU,
            });
        }
        if !self.raw_esp && self.udp_port == 0 {
            return Err(ControlError::NoOuterSocket);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::DropReason;

    #[test]
    fn readable_formats_spell_spis_reasons_and_encapsulation_as_the_table_does() {
        let json = serde_json::to_string(&(Spi(0xc0ffee01), Encapsulation::Raw, DropReason::NoSa))
            .unwrap();
        assert_eq!(json, r#"["c0ffee01","raw","no-sa"]"#);
        let udp = serde_json::to_value(Encapsulation::Udp {
            local_port: 4500,
            remote_port: 31000,
        })
        .unwrap();
        assert_eq!(udp["udp"]["remote_port"], 31000);
        for reason in DropReason::ALL {
            let json = serde_json::to_value(reason).unwrap();
            assert_eq!(json, reason.name(), "{reason:?}");
            assert_eq!(serde_json::from_value::<DropReason>(json).unwrap(), reason);
        }
        // Read back: hex as written, and the number older answers carried.
        assert_eq!(
            serde_json::from_str::<Spi>(r#""c0ffee01""#).unwrap(),
            Spi(0xc0ffee01)
        );
        assert_eq!(
            serde_json::from_str::<Spi>("3237998081").unwrap(),
            Spi(0xc0ffee01)
        );
        assert!(serde_json::from_str::<Spi>(r#""zz""#).is_err());
        assert!(serde_json::from_str::<Spi>("4294967296").is_err());
        // The SA channel keeps the number (a varint in postcard, not a string).
        let bytes = postcard::to_stdvec(&Spi(0xc0ffee01)).unwrap();
        assert_eq!(bytes.len(), 5);
        assert_eq!(
            postcard::from_bytes::<Spi>(&bytes).unwrap(),
            Spi(0xc0ffee01)
        );
    }

    #[test]
    fn keymat_splits_into_key_and_salt() {
        let keymat: Vec<u8> = (0u8..20).collect();
        let key = AeadKey::from_keymat(AeadAlg::AesGcm128, &keymat).unwrap();
        assert_eq!(key.key(), &keymat[..16]);
        assert_eq!(key.salt(), [16, 17, 18, 19]);
        assert!(key.validate().is_ok());
    }

    #[test]
    fn keymat_of_wrong_length_is_refused() {
        let err = AeadKey::from_keymat(AeadAlg::AesGcm256, &[0u8; 20]).unwrap_err();
        assert_eq!(
            err,
            KeyError::WrongLength {
                alg: AeadAlg::AesGcm256,
                expected: 36,
                got: 20
            }
        );
        assert!(err.to_string().contains("aes256gcm16 needs 36 bytes"));
    }

    #[test]
    fn debug_never_prints_key_bytes() {
        let key = AeadKey::from_keymat(AeadAlg::AesGcm128, &[0xab; 20]).unwrap();
        let printed = format!("{key:?}");
        assert!(
            !printed.contains("ab") && !printed.contains("171"),
            "{printed}"
        );
    }
}
