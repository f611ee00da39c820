//! The enrollment protocol, inside TLS 1.3: the home sends one request, the server answers
//! with one message, and closes. A first enrollment proves itself with a one-time token's
//! secret; a renewal (RFC 7030 4.2.2, "simple re-enrollment") with the home's current
//! certificate, presented as the TLS client certificate, whose key signs the handshake.
//!
//! Every message is a frame: a 4-byte big-endian body length (1 to [`MAX_FRAME`]) and the
//! body. The body's first byte is its type:
//!
//! ```text
//! 1 Request:  version u8 (= 1) | secret [32] | CSR (DER, rest of the body, not empty)
//! 2 Bundle:   the bundle (UTF-8 TOML, rest of the body; see crate::bundle)
//! 3 Refused:  code u8 | message (UTF-8, rest of the body, at most 1024 bytes)
//! 4 Renew:    version u8 (= 1) | CSR (DER, rest of the body, not empty); only over a TLS
//!             connection with the current certificate as client certificate
//! ```
//!
//! Refusal codes are an open set ([`RefusalCode`]): a newer server's code reaches an older
//! client as "code N" with the server's message.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame body.
pub const MAX_FRAME: usize = 64 * 1024;
/// Longest refusal message.
pub const MAX_MESSAGE: usize = 1024;
/// Protocol version of requests.
pub const VERSION: u8 = 1;

const TYPE_REQUEST: u8 = 1;
const TYPE_BUNDLE: u8 = 2;
const TYPE_REFUSED: u8 = 3;
const TYPE_RENEW: u8 = 4;

/// Why a refusal happened, as it travels on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RefusalCode(pub u8);

impl RefusalCode {
    /// No token with this secret.
    pub const UNKNOWN_TOKEN: RefusalCode = RefusalCode(1);
    /// The token was already used.
    pub const TOKEN_USED: RefusalCode = RefusalCode(2);
    /// The token expired.
    pub const TOKEN_EXPIRED: RefusalCode = RefusalCode(3);
    /// The CSR's name is not the token's.
    pub const NAME_MISMATCH: RefusalCode = RefusalCode(4);
    /// The CSR is malformed or its signature does not verify.
    pub const BAD_CSR: RefusalCode = RefusalCode(5);
    /// The name already has a live certificate.
    pub const NAME_TAKEN: RefusalCode = RefusalCode(6);
    /// No prefix left.
    pub const POOL_EXHAUSTED: RefusalCode = RefusalCode(7);
    /// The request does not parse.
    pub const BAD_REQUEST: RefusalCode = RefusalCode(8);
    /// Something failed on the server (details in its log only).
    pub const INTERNAL: RefusalCode = RefusalCode(9);
    /// The name is the server's.
    pub const RESERVED_NAME: RefusalCode = RefusalCode(10);
    /// A renewal without a client certificate.
    pub const NOT_AUTHENTICATED: RefusalCode = RefusalCode(11);
    /// The certificate a renewal presents is revoked, expired, or not the CA's.
    pub const CERTIFICATE_REFUSED: RefusalCode = RefusalCode(12);
    /// The certificate a renewal presents is not the name's current one (a renewal replaced it).
    pub const NOT_CURRENT: RefusalCode = RefusalCode(13);
    /// The request's key is the key of a revoked certificate.
    pub const KEY_REVOKED: RefusalCode = RefusalCode(14);
}

impl std::fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match *self {
            RefusalCode::UNKNOWN_TOKEN => "unknown-token",
            RefusalCode::TOKEN_USED => "token-used",
            RefusalCode::TOKEN_EXPIRED => "token-expired",
            RefusalCode::NAME_MISMATCH => "name-mismatch",
            RefusalCode::BAD_CSR => "bad-csr",
            RefusalCode::NAME_TAKEN => "name-taken",
            RefusalCode::POOL_EXHAUSTED => "pool-exhausted",
            RefusalCode::BAD_REQUEST => "bad-request",
            RefusalCode::INTERNAL => "internal",
            RefusalCode::RESERVED_NAME => "reserved-name",
            RefusalCode::NOT_AUTHENTICATED => "not-authenticated",
            RefusalCode::CERTIFICATE_REFUSED => "certificate-refused",
            RefusalCode::NOT_CURRENT => "not-current",
            RefusalCode::KEY_REVOKED => "key-revoked",
            RefusalCode(n) => return write!(f, "code {n}"),
        };
        f.write_str(name)
    }
}

/// The home's request.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// The token's secret.
    pub secret: [u8; 32],
    /// The CSR (DER).
    pub csr_der: Vec<u8>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("csr_len", &self.csr_der.len())
            .finish_non_exhaustive()
    }
}

/// The home's renewal: a CSR for the name of the certificate it authenticates with.
#[derive(Clone, PartialEq, Eq)]
pub struct RenewRequest {
    /// The CSR (DER), for the same name, with the new key (or the current one).
    pub csr_der: Vec<u8>,
}

impl std::fmt::Debug for RenewRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenewRequest")
            .field("csr_len", &self.csr_der.len())
            .finish()
    }
}

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub code: RefusalCode,
    /// For the operator at home.
    pub message: String,
}

/// A message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Home to server.
    Request(Request),
    /// Server to home: the bundle text.
    Bundle(String),
    /// Server to home: no.
    Refused(Refusal),
    /// Home to server: renew my certificate.
    Renew(RenewRequest),
}

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Frame length 0 or above [`MAX_FRAME`].
    #[error("frame length {0} is outside 1..={MAX_FRAME}")]
    FrameLength(usize),
    /// The bytes end before the frame or a field does.
    #[error("truncated message")]
    Truncated,
    /// Unknown message type.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// Another protocol version.
    #[error("unsupported protocol version {0}")]
    Version(u8),
    /// A request without a CSR.
    #[error("request carries no CSR")]
    EmptyCsr,
    /// Text that is not UTF-8, or a refusal message too long.
    #[error("malformed text field")]
    BadText,
    /// The connection failed.
    #[error("connection: {0}")]
    Io(String),
}

impl Message {
    /// Parses a frame body.
    pub fn parse(body: &[u8]) -> Result<Message, ProtocolError> {
        let (&kind, rest) = body.split_first().ok_or(ProtocolError::Truncated)?;
        match kind {
            TYPE_REQUEST => {
                let (&version, rest) = rest.split_first().ok_or(ProtocolError::Truncated)?;
                if version != VERSION {
                    return Err(ProtocolError::Version(version));
                }
                let secret: [u8; 32] = rest
                    .get(..32)
                    .and_then(|s| s.try_into().ok())
                    .ok_or(ProtocolError::Truncated)?;
                let csr = &rest[32..];
                if csr.is_empty() {
                    return Err(ProtocolError::EmptyCsr);
                }
                Ok(Message::Request(Request {
                    secret,
                    csr_der: csr.to_vec(),
                }))
            }
            TYPE_BUNDLE => Ok(Message::Bundle(
                std::str::from_utf8(rest)
                    .map_err(|_| ProtocolError::BadText)?
                    .to_string(),
            )),
            TYPE_REFUSED => {
                let (&code, text) = rest.split_first().ok_or(ProtocolError::Truncated)?;
                if text.len() > MAX_MESSAGE {
                    return Err(ProtocolError::BadText);
                }
                let message = std::str::from_utf8(text)
                    .map_err(|_| ProtocolError::BadText)?
                    .to_string();
                Ok(Message::Refused(Refusal {
                    code: RefusalCode(code),
                    message,
                }))
            }
            TYPE_RENEW => {
                let (&version, csr) = rest.split_first().ok_or(ProtocolError::Truncated)?;
                if version != VERSION {
                    return Err(ProtocolError::Version(version));
                }
                if csr.is_empty() {
                    return Err(ProtocolError::EmptyCsr);
                }
                Ok(Message::Renew(RenewRequest {
                    csr_der: csr.to_vec(),
                }))
            }
            other => Err(ProtocolError::UnknownType(other)),
        }
    }

    /// Length of the body [`Message::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        1 + match self {
            Message::Request(r) => 1 + 32 + r.csr_der.len(),
            Message::Bundle(b) => b.len(),
            Message::Refused(r) => 1 + r.message.len().min(MAX_MESSAGE),
            Message::Renew(r) => 1 + r.csr_der.len(),
        }
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            Message::Request(r) => {
                out.push(TYPE_REQUEST);
                out.push(VERSION);
                out.extend_from_slice(&r.secret);
                out.extend_from_slice(&r.csr_der);
            }
            Message::Bundle(b) => {
                out.push(TYPE_BUNDLE);
                out.extend_from_slice(b.as_bytes());
            }
            Message::Refused(r) => {
                out.push(TYPE_REFUSED);
                out.push(r.code.0);
                out.extend_from_slice(truncate_utf8(&r.message, MAX_MESSAGE).as_bytes());
            }
            Message::Renew(r) => {
                out.push(TYPE_RENEW);
                out.push(VERSION);
                out.extend_from_slice(&r.csr_der);
            }
        }
    }

    /// The whole frame (length and body).
    pub fn to_frame(&self) -> Result<Vec<u8>, ProtocolError> {
        let len = self.buffer_len();
        if len > MAX_FRAME {
            return Err(ProtocolError::FrameLength(len));
        }
        let mut out = Vec::with_capacity(4 + len);
        out.extend_from_slice(&(len as u32).to_be_bytes());
        self.emit(&mut out);
        Ok(out)
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Checks a frame header and returns the body length.
pub fn frame_len(header: [u8; 4]) -> Result<usize, ProtocolError> {
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(ProtocolError::FrameLength(len));
    }
    Ok(len)
}

/// Decodes one frame from the start of `bytes`: the message and the bytes it took.
pub fn decode_frame(bytes: &[u8]) -> Result<(Message, usize), ProtocolError> {
    let header: [u8; 4] = bytes
        .get(..4)
        .and_then(|h| h.try_into().ok())
        .ok_or(ProtocolError::Truncated)?;
    let len = frame_len(header)?;
    let body = bytes.get(4..4 + len).ok_or(ProtocolError::Truncated)?;
    Ok((Message::parse(body)?, 4 + len))
}

/// Reads one frame's body (not parsed); never allocates more than [`MAX_FRAME`] for it.
pub async fn read_body<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, ProtocolError> {
    let mut header = [0u8; 4];
    r.read_exact(&mut header).await.map_err(io_error)?;
    let len = frame_len(header)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(io_error)?;
    Ok(body)
}

/// Reads one message; never allocates more than [`MAX_FRAME`] for it.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> Result<Message, ProtocolError> {
    Message::parse(&read_body(r).await?)
}

/// Writes one message and flushes.
pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    message: &Message,
) -> Result<(), ProtocolError> {
    let frame = message.to_frame()?;
    w.write_all(&frame).await.map_err(io_error)?;
    w.flush().await.map_err(io_error)
}

fn io_error(e: std::io::Error) -> ProtocolError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        ProtocolError::Truncated
    } else {
        ProtocolError::Io(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_frames_parse_and_emit_symmetrically() {
        let request = [
            0, 0, 0, 36, // length
            1, 1, // Request, version 1
            7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
            7, 7, 7, // secret
            0x30, 0x00, // "CSR"
        ];
        let (m, used) = decode_frame(&request).unwrap();
        assert_eq!(used, request.len());
        assert_eq!(
            m,
            Message::Request(Request {
                secret: [7; 32],
                csr_der: vec![0x30, 0x00]
            })
        );
        assert_eq!(m.to_frame().unwrap(), request);

        let refused = [0, 0, 0, 4, 3, 2, b'n', b'o'];
        let (m, _) = decode_frame(&refused).unwrap();
        assert_eq!(
            m,
            Message::Refused(Refusal {
                code: RefusalCode::TOKEN_USED,
                message: "no".into()
            })
        );
        assert_eq!(m.to_frame().unwrap(), refused);

        let renew = [0, 0, 0, 4, 4, 1, 0x30, 0x00];
        let (m, _) = decode_frame(&renew).unwrap();
        assert_eq!(
            m,
            Message::Renew(RenewRequest {
                csr_der: vec![0x30, 0x00]
            })
        );
        assert_eq!(m.to_frame().unwrap(), renew);
        assert_eq!(
            decode_frame(&[0, 0, 0, 2, 4, 1]),
            Err(ProtocolError::EmptyCsr)
        );
        assert_eq!(
            decode_frame(&[0, 0, 0, 3, 4, 2, 0x30]),
            Err(ProtocolError::Version(2))
        );

        let bundle = [0, 0, 0, 3, 2, b'a', b'b'];
        let (m, _) = decode_frame(&bundle).unwrap();
        assert_eq!(m, Message::Bundle("ab".into()));
        assert_eq!(m.to_frame().unwrap(), bundle);
    }

    #[test]
    fn malformed_frames_are_refused() {
        assert_eq!(decode_frame(&[0, 0]), Err(ProtocolError::Truncated));
        assert_eq!(
            decode_frame(&[0, 0, 0, 0]),
            Err(ProtocolError::FrameLength(0))
        );
        assert_eq!(
            decode_frame(&[0, 1, 0, 1, 2]),
            Err(ProtocolError::FrameLength(65537))
        );
        assert_eq!(
            decode_frame(&[0, 0, 0, 2, 2]),
            Err(ProtocolError::Truncated)
        );
        assert_eq!(
            decode_frame(&[0, 0, 0, 1, 9]),
            Err(ProtocolError::UnknownType(9))
        );
        assert_eq!(
            decode_frame(&[0, 0, 0, 2, 1, 2]),
            Err(ProtocolError::Version(2))
        );
        assert_eq!(
            decode_frame(&[0, 0, 0, 3, 1, 1, 0]),
            Err(ProtocolError::Truncated)
        );
        let mut no_csr = vec![0, 0, 0, 34, 1, 1];
        no_csr.extend([0; 32]);
        assert_eq!(decode_frame(&no_csr), Err(ProtocolError::EmptyCsr));
        assert_eq!(
            decode_frame(&[0, 0, 0, 2, 2, 0xff]),
            Err(ProtocolError::BadText)
        );
        assert_eq!(
            RefusalCode(200).to_string(),
            "code 200",
            "unknown codes survive"
        );
    }

    #[test]
    fn long_refusal_messages_are_cut_on_a_char_boundary() {
        let m = Message::Refused(Refusal {
            code: RefusalCode::INTERNAL,
            message: "é".repeat(MAX_MESSAGE),
        });
        let frame = m.to_frame().unwrap();
        match decode_frame(&frame).unwrap().0 {
            Message::Refused(r) => assert!(r.message.len() <= MAX_MESSAGE),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn async_read_write_round_trip_and_oversize_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let m = Message::Bundle("x".repeat(1000));
        write_message(&mut a, &m).await.unwrap();
        assert_eq!(read_message(&mut b).await.unwrap(), m);
        // A peer announcing a huge frame is refused before anything is allocated for it.
        tokio::io::AsyncWriteExt::write_all(&mut a, &[0xff, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        assert_eq!(
            read_message(&mut b).await,
            Err(ProtocolError::FrameLength(u32::MAX as usize))
        );
        assert!(Message::Bundle("x".repeat(MAX_FRAME)).to_frame().is_err());
    }
}
