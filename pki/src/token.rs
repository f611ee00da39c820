//! One-time enrollment tokens.
//!
//! A token is the text `hometun1.` followed by unpadded base64url of:
//!
//! ```text
//! ca_sha256[32] | secret[32] | family u8 (4 or 6) | address[4 or 16] | port u16 | name_len u8 | name
//! ```
//!
//! `ca_sha256` pins the CA for the TLS connection, `address:port` is the enrollment server,
//! `name` the client it enrolls, and `secret` proves the holder may enroll: the registry keeps
//! only its SHA-256, marks it used on first use, and refuses it after it expires.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};

use crate::PkiError;
use crate::names::normalize_dns_name;

/// What every token starts with.
pub const TOKEN_PREFIX: &str = "hometun1.";
/// Longest token text accepted (a 253-byte name with an IPv6 address is well below).
pub const MAX_TOKEN_LEN: usize = 512;

/// An enrollment token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// SHA-256 of the CA certificate the enrollment server's chain must lead to.
    pub ca_fingerprint: [u8; 32],
    /// The one-time secret.
    pub secret: [u8; 32],
    /// The enrollment server.
    pub server: SocketAddr,
    /// The client name it enrolls (lower case).
    pub name: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Token")
            .field("server", &self.server)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Why token text does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Missing `hometun1.` or too long.
    #[error("not a hometun enrollment token (it starts with {TOKEN_PREFIX})")]
    NotAToken,
    /// Not base64url.
    #[error("token is damaged (not base64url)")]
    Encoding,
    /// Wrong length or field.
    #[error("token is damaged ({0})")]
    Field(&'static str),
}

/// Why the enrollment server refused a token. Each maps to a wire code of the enrollment
/// protocol, so the client shows the same reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// No token with this secret (wrong, mistyped, or from another CA).
    #[error("unknown token (wrong or mistyped secret)")]
    Unknown,
    /// Already used once.
    #[error("token was already used at {}", unix_text(*at))]
    Used {
        /// When it was used (Unix seconds).
        at: i64,
    },
    /// Past its expiry.
    #[error("token expired at {}", unix_text(*at))]
    Expired {
        /// When it expired (Unix seconds).
        at: i64,
    },
    /// The CSR names another client than the token.
    #[error("token is for {token}, the request is for {csr}")]
    NameMismatch {
        /// The token's name.
        token: String,
        /// The CSR's name.
        csr: String,
    },
}

/// A Unix time as RFC 3339 text (UTC).
pub fn unix_text(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{at}"))
}

impl Token {
    /// A token with a fresh random secret.
    pub fn generate(
        ca_fingerprint: [u8; 32],
        server: SocketAddr,
        name: &str,
    ) -> Result<Token, PkiError> {
        let name = normalize_dns_name(name)?;
        let mut secret = [0u8; 32];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| PkiError::Invalid("the system random source failed".into()))?;
        Ok(Token {
            ca_fingerprint,
            secret,
            server,
            name,
        })
    }

    /// SHA-256 of the secret, lower-case hex: what the registry stores.
    pub fn secret_sha256(secret: &[u8; 32]) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, secret);
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The token as text.
    pub fn encode(&self) -> String {
        let mut payload = Vec::with_capacity(100);
        payload.extend_from_slice(&self.ca_fingerprint);
        payload.extend_from_slice(&self.secret);
        match self.server.ip() {
            IpAddr::V4(a) => {
                payload.push(4);
                payload.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                payload.push(6);
                payload.extend_from_slice(&a.octets());
            }
        }
        payload.extend_from_slice(&self.server.port().to_be_bytes());
        // Names are checked DNS names: at most 253 bytes, so the length fits a byte.
        payload.push(self.name.len() as u8);
        payload.extend_from_slice(self.name.as_bytes());
        format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(payload))
    }

    /// Parses token text (surrounding whitespace is ignored).
    pub fn parse(text: &str) -> Result<Token, TokenError> {
        let text = text.trim();
        if text.len() > MAX_TOKEN_LEN {
            return Err(TokenError::NotAToken);
        }
        let body = text
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(TokenError::NotAToken)?;
        let payload = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TokenError::Encoding)?;
        let mut r = Cursor(&payload);
        let ca_fingerprint = r.array::<32>().ok_or(TokenError::Field("fingerprint"))?;
        let secret = r.array::<32>().ok_or(TokenError::Field("secret"))?;
        let ip = match r.byte().ok_or(TokenError::Field("address family"))? {
            4 => IpAddr::V4(Ipv4Addr::from(
                r.array::<4>().ok_or(TokenError::Field("address"))?,
            )),
            6 => IpAddr::V6(Ipv6Addr::from(
                r.array::<16>().ok_or(TokenError::Field("address"))?,
            )),
            _ => return Err(TokenError::Field("address family")),
        };
        let port = u16::from_be_bytes(r.array::<2>().ok_or(TokenError::Field("port"))?);
        let len = usize::from(r.byte().ok_or(TokenError::Field("name"))?);
        let name = r.take(len).ok_or(TokenError::Field("name"))?;
        if !r.0.is_empty() {
            return Err(TokenError::Field("trailing bytes"));
        }
        let name = std::str::from_utf8(name).map_err(|_| TokenError::Field("name"))?;
        // A token of an older version may carry the name as it was typed.
        let name = normalize_dns_name(name).map_err(|_| TokenError::Field("name"))?;
        Ok(Token {
            ca_fingerprint,
            secret,
            server: SocketAddr::new(ip, port),
            name,
        })
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let head = self.0.get(..n)?;
        self.0 = &self.0[n..];
        Some(head)
    }
    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_for_both_families() {
        for server in ["192.0.2.1:8443", "[2001:db8::1]:443"] {
            let t = Token::generate([7; 32], server.parse().unwrap(), "home.example").unwrap();
            let text = t.encode();
            assert!(text.starts_with(TOKEN_PREFIX));
            assert_eq!(Token::parse(&format!("  {text}\n")).unwrap(), t);
        }
    }

    #[test]
    fn fixed_token_decodes() {
        let t = Token {
            ca_fingerprint: [1; 32],
            secret: [2; 32],
            server: "192.0.2.1:8443".parse().unwrap(),
            name: "h.example".into(),
        };
        let text = t.encode();
        let mut payload = vec![1u8; 32];
        payload.extend([2u8; 32]);
        payload.extend([4, 192, 0, 2, 1, 0x20, 0xfb, 9]);
        payload.extend(b"h.example");
        assert_eq!(
            text,
            format!("hometun1.{}", URL_SAFE_NO_PAD.encode(&payload))
        );
    }

    #[test]
    fn damaged_tokens_are_refused() {
        let good = Token::generate([7; 32], "192.0.2.1:8443".parse().unwrap(), "h.example")
            .unwrap()
            .encode();
        assert_eq!(Token::parse("hello"), Err(TokenError::NotAToken));
        assert_eq!(Token::parse("hometun1.!!!"), Err(TokenError::Encoding));
        assert!(Token::parse(&good[..good.len() - 3]).is_err());
        assert!(Token::parse(&format!("{good}AA")).is_err());
        assert_eq!(
            Token::parse(&format!("hometun1.{}", URL_SAFE_NO_PAD.encode([0u8; 64]))),
            Err(TokenError::Field("address family"))
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let t = Token::generate([7; 32], "192.0.2.1:1".parse().unwrap(), "h.example").unwrap();
        assert!(!format!("{t:?}").contains("secret"));
    }
}
