//! Shared helpers of the crypto tests: the strongSwan vectors (charon log hex dumps, the
//! packet trace) and a minimal IKE payload walker, written apart from `wire` so the
//! known-answer tests check the crypto against bytes sliced independently.

#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

use hometun_ike::crypto::SkGcm;
use hometun_ike::crypto::sk_gcm::{SK_ICV_LEN, SK_IV_LEN};

/// The strongSwan 5.9.8 vectors folder (override with `HOMETUN_VECTORS`).
pub fn vectors_dir() -> PathBuf {
    let dir = match std::env::var_os("HOMETUN_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/strongswan-5.9.8-x25519-aesgcm128-ed25519"),
    };
    assert!(
        dir.join("trace.pcap").is_file(),
        "strongSwan vectors not found at {} (set HOMETUN_VECTORS)",
        dir.display()
    );
    dir
}

/// Reads a file of the vectors folder.
pub fn vector_file(name: &str) -> Vec<u8> {
    let path = vectors_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One `label => N bytes @ 0x...` hex dump of a charon log.
#[derive(Debug, Clone)]
pub struct Dump {
    /// 1-based line of the header line.
    pub line: usize,
    /// charon thread number (dumps of one thread are not interleaved with each other).
    pub thread: String,
    /// Text before ` => `, e.g. `SKEYSEED`.
    pub label: String,
    /// The dumped bytes.
    pub bytes: Vec<u8>,
}

/// Splits `08[IKE] text` into ("08", "text").
fn split_prefix(line: &str) -> Option<(&str, &str)> {
    let open = line.find('[')?;
    let close = line[open..].find("] ")? + open;
    let thread = &line[..open];
    if thread.is_empty() || !thread.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((thread, &line[close + 2..]))
}

/// All hex dumps of a charon log, in log order.
pub fn log_dumps(log: &str) -> Vec<Dump> {
    let lines: Vec<&str> = log.lines().collect();
    let mut dumps = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((thread, text)) = split_prefix(line) else {
            continue;
        };
        let Some((label, rest)) = text.split_once(" => ") else {
            continue;
        };
        let Some((count, tail)) = rest.split_once(" bytes @ 0x") else {
            continue;
        };
        let Ok(count) = count.parse::<usize>() else {
            continue;
        };
        if tail.is_empty() {
            continue;
        }
        let mut bytes = Vec::with_capacity(count);
        for next in lines.iter().skip(i + 1).take(400) {
            if bytes.len() == count {
                break;
            }
            let Some((t, body)) = split_prefix(next) else {
                continue;
            };
            if t != thread {
                continue;
            }
            let body = body.trim_start();
            let Some((offset, hex)) = body.split_once(": ") else {
                continue;
            };
            if offset.parse::<usize>().ok() != Some(bytes.len()) {
                continue;
            }
            let want = (count - bytes.len()).min(16);
            let hex_area = &hex[..hex.len().min(48)];
            let row: Vec<u8> = hex_area
                .split_whitespace()
                .take(want)
                .map(|h| u8::from_str_radix(h, 16).expect("hex byte in dump"))
                .collect();
            assert_eq!(row.len(), want, "short dump row at line {}", i + 1);
            bytes.extend(row);
        }
        assert_eq!(
            bytes.len(),
            count,
            "incomplete dump {label} at line {}",
            i + 1
        );
        dumps.push(Dump {
            line: i + 1,
            thread: thread.to_string(),
            label: label.to_string(),
            bytes,
        });
    }
    dumps
}

/// The log file as text (the logs end mid-line where they were cut).
pub fn log_text(name: &str) -> String {
    String::from_utf8_lossy(&vector_file(name)).into_owned()
}

/// Dumps with exactly this label, in log order.
pub fn dumps_labelled<'a>(dumps: &'a [Dump], label: &str) -> Vec<&'a Dump> {
    dumps.iter().filter(|d| d.label == label).collect()
}

/// The only dump with this label (panics if there is not exactly one).
pub fn single<'a>(dumps: &'a [Dump], label: &str) -> &'a [u8] {
    let found = dumps_labelled(dumps, label);
    assert_eq!(
        found.len(),
        1,
        "expected one `{label}` dump, found {}",
        found.len()
    );
    &found[0].bytes
}

/// One UDP datagram of the trace.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// 1-based frame number (as tshark numbers them).
    pub frame: usize,
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Destination address and port.
    pub dst: SocketAddrV4,
    /// UDP payload.
    pub payload: Vec<u8>,
}

impl Datagram {
    /// The IKE message inside: all of a port-500 datagram, or a port-4500 datagram after the
    /// 4-byte non-ESP marker. `None` for ESP and keepalives.
    pub fn ike_message(&self) -> Option<&[u8]> {
        if self.src.port() == 500 || self.dst.port() == 500 {
            return Some(&self.payload);
        }
        match self.payload.as_slice() {
            [0, 0, 0, 0, rest @ ..] if rest.len() >= 28 => Some(rest),
            _ => None,
        }
    }

    /// The ESP packet inside a port-4500 datagram (non-zero SPI), if any.
    pub fn esp_packet(&self) -> Option<&[u8]> {
        if self.src.port() == 4500 && self.payload.len() > 8 && self.payload[..4] != [0, 0, 0, 0] {
            Some(&self.payload)
        } else {
            None
        }
    }
}

/// Every IPv4/UDP datagram of trace.pcap (Ethernet link type).
pub fn trace_datagrams() -> Vec<Datagram> {
    let file = std::fs::File::open(vectors_dir().join("trace.pcap")).expect("open trace.pcap");
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("pcap header");
    let mut out = Vec::new();
    let mut frame = 0;
    while let Some(packet) = reader.next_packet() {
        let packet = packet.expect("pcap record");
        frame += 1;
        let data = &packet.data;
        // Ethernet II with IPv4, then IPv4 with its IHL, then UDP.
        if data.len() < 14 + 20 + 8 || data[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &data[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip[9] != 17 {
            continue;
        }
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let src_ip = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst_ip = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let udp = &ip[ihl..total];
        let src_port = u16::from_be_bytes([udp[0], udp[1]]);
        let dst_port = u16::from_be_bytes([udp[2], udp[3]]);
        let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
        out.push(Datagram {
            frame,
            src: SocketAddrV4::new(src_ip, src_port),
            dst: SocketAddrV4::new(dst_ip, dst_port),
            payload: udp[8..udp_len].to_vec(),
        });
    }
    out
}

/// The datagram with this frame number.
pub fn frame(datagrams: &[Datagram], number: usize) -> &Datagram {
    datagrams
        .iter()
        .find(|d| d.frame == number)
        .unwrap_or_else(|| panic!("frame {number} not in trace"))
}

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
