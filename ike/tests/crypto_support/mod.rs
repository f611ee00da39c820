//! Shared helpers of the crypto tests: the strongSwan vectors (through `hometun_lab::trace`)
//! and a minimal IKE payload walker, written apart from `wire` so the known-answer tests check
//! the crypto against bytes sliced independently.

#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use hometun_ike::crypto::SkGcm;
use hometun_ike::crypto::sk_gcm::{SK_ICV_LEN, SK_IV_LEN};

/// The fixed IKE header fields (RFC 7296 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub spi_i: [u8; 8],
    pub spi_r: [u8; 8],
    pub next_payload: u8,
    pub exchange: u8,
    pub flags: u8,
    pub message_id: u32,
    pub length: u32,
}

impl Header {
    /// Set by the original initiator of the IKE SA.
    pub fn sent_by_original_initiator(&self) -> bool {
        self.flags & 0x08 != 0
    }

    /// A response.
    pub fn is_response(&self) -> bool {
        self.flags & 0x20 != 0
    }
}

/// Parses the IKE header.
pub fn header(msg: &[u8]) -> Header {
    Header {
        spi_i: msg[0..8].try_into().unwrap(),
        spi_r: msg[8..16].try_into().unwrap(),
        next_payload: msg[16],
        exchange: msg[18],
        flags: msg[19],
        message_id: u32::from_be_bytes(msg[20..24].try_into().unwrap()),
        length: u32::from_be_bytes(msg[24..28].try_into().unwrap()),
    }
}

/// One payload of a chain.
#[derive(Debug, Clone)]
pub struct Payload {
    /// Payload type.
    pub kind: u8,
    /// The "next payload" field of its generic header (for SK: the first inner payload).
    pub next: u8,
    /// Offset of the generic header in the buffer walked.
    pub offset: usize,
    /// The body after the 4-byte generic header.
    pub body: Vec<u8>,
}

/// Walks a payload chain that starts with type `first` at `data[start..]`.
pub fn payload_chain(first: u8, data: &[u8], start: usize) -> Vec<Payload> {
    let mut out = Vec::new();
    let mut kind = first;
    let mut at = start;
    while kind != 0 {
        let next = data[at];
        let len = usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]]));
        assert!(len >= 4 && at + len <= data.len(), "bad payload length");
        out.push(Payload {
            kind,
            next,
            offset: at,
            body: data[at + 4..at + len].to_vec(),
        });
        if kind == 46 {
            break; // SK is last; its next field names the first inner payload
        }
        kind = next;
        at += len;
    }
    out
}

/// The payloads of a whole IKE message.
pub fn message_payloads(msg: &[u8]) -> Vec<Payload> {
    payload_chain(header(msg).next_payload, msg, 28)
}

/// The first payload of type `kind`.
pub fn find(payloads: &[Payload], kind: u8) -> Option<&Payload> {
    payloads.iter().find(|p| p.kind == kind)
}

/// The SK payload's parts: AAD (IKE header + SK generic header), IV, ciphertext, ICV, and the
/// first inner payload type.
pub struct SkParts {
    pub aad: Vec<u8>,
    pub iv: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub icv: Vec<u8>,
    pub first_inner: u8,
}

/// Slices the SK payload of `msg` (RFC 5282 5.1: AAD from the IKE header's first octet through
/// the SK generic header).
pub fn sk_parts(msg: &[u8]) -> SkParts {
    let payloads = message_payloads(msg);
    let sk = find(&payloads, 46).expect("message has an SK payload");
    let body = &sk.body;
    assert!(body.len() > SK_IV_LEN + SK_ICV_LEN);
    SkParts {
        aad: msg[..sk.offset + 4].to_vec(),
        iv: body[..SK_IV_LEN].to_vec(),
        ciphertext: body[SK_IV_LEN..body.len() - SK_ICV_LEN].to_vec(),
        icv: body[body.len() - SK_ICV_LEN..].to_vec(),
        first_inner: sk.next,
    }
}

/// Decrypts the SK payload of `msg` and returns its inner payloads.
pub fn decrypt_inner(msg: &[u8], cipher: &SkGcm) -> Vec<Payload> {
    let mut parts = sk_parts(msg);
    cipher
        .open_in_place(&parts.iv, &parts.aad, &mut parts.ciphertext, &parts.icv)
        .expect("SK payload opens");
    let plain = parts.ciphertext;
    let pad_len = usize::from(*plain.last().expect("non-empty plaintext"));
    let inner = &plain[..plain.len() - 1 - pad_len];
    payload_chain(parts.first_inner, inner, 0)
}

/// Payload type numbers used by the tests.
pub mod kind {
    pub const SA: u8 = 33;
    pub const KE: u8 = 34;
    pub const IDI: u8 = 35;
    pub const IDR: u8 = 36;
    pub const CERT: u8 = 37;
    pub const AUTH: u8 = 39;
    pub const NONCE: u8 = 40;
    pub const NOTIFY: u8 = 41;
}

/// Notify payloads of a chain as (notify type, data).
pub fn notifies(payloads: &[Payload]) -> Vec<(u16, Vec<u8>)> {
    payloads
        .iter()
        .filter(|p| p.kind == kind::NOTIFY)
        .map(|p| {
            let spi_size = usize::from(p.body[1]);
            let ty = u16::from_be_bytes([p.body[2], p.body[3]]);
            (ty, p.body[4 + spi_size..].to_vec())
        })
        .collect()
}
