//! The strongSwan trace in testdata/ and its charon logs: every UDP datagram of the capture
//! (IKE and ESP in UDP) and every IKE message with where it was seen, the keys and other hex
//! dumps charon logged at `ike = 4`, and its message summary lines. The known-answer tests of
//! the key schedule, the SK payload, the ESP codec and the decoder read it through here, and
//! only here.

use std::net::SocketAddrV4;
use std::path::PathBuf;

use hometun_capture::{CapturedPacket, Origin, read_capture, read_datagrams};

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

/// A log file of the vectors folder as text (the logs end mid-line where they were cut).
pub fn log_text(name: &str) -> String {
    String::from_utf8_lossy(&vector_file(name)).into_owned()
}

/// The capture of the conversation.
pub fn trace_path() -> PathBuf {
    vectors_dir().join("trace.pcap")
}

/// Every IKE message of the trace, with where it was seen.
pub fn trace_messages() -> Vec<(Origin, Vec<u8>)> {
    read_capture(&vector_file("trace.pcap"))
        .expect("a pcap file")
        .into_iter()
        .filter_map(|p| match p {
            CapturedPacket::Ike { origin, message } => Some((origin, message)),
            CapturedPacket::Other => None,
            CapturedPacket::Bad { packet, problem } => panic!("packet {packet}: {problem}"),
        })
        .collect()
}

/// Every frame of the trace as captured (Ethernet), with its timestamp: for the tests that
/// write it out again in other capture formats.
pub fn trace_frames() -> Vec<(std::time::Duration, Vec<u8>)> {
    let bytes = vector_file("trace.pcap");
    let mut reader = pcap_file::pcap::PcapReader::new(&bytes[..]).expect("a pcap file");
    let mut frames = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.expect("a whole pcap record");
        frames.push((packet.timestamp, packet.data.into_owned()));
    }
    frames
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

/// Every UDP datagram of the trace (IKE on 500 and 4500, ESP in UDP, keepalives).
pub fn trace_datagrams() -> Vec<Datagram> {
    read_datagrams(&vector_file("trace.pcap"))
        .expect("a pcap file")
        .into_iter()
        .map(|d| {
            let d = d.unwrap_or_else(|bad| panic!("{bad}"));
            Datagram {
                frame: d.origin.packet,
                src: d.origin.src,
                dst: d.origin.dst,
                payload: d.payload,
            }
        })
        .collect()
}

/// The datagram with this frame number.
pub fn frame(datagrams: &[Datagram], number: usize) -> &Datagram {
    datagrams
        .iter()
        .find(|d| d.frame == number)
        .unwrap_or_else(|| panic!("frame {number} not in trace"))
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

/// The first dump labelled `label` in a charon log of the vectors.
pub fn logged_secret(log: &str, label: &str) -> Vec<u8> {
    log_dumps(&log_text(log))
        .into_iter()
        .find(|d| d.label == label)
        .unwrap_or_else(|| panic!("{label} not in {log}"))
        .bytes
}

/// SK_ei of the trace's first IKE SA, as the initiator logged it.
pub fn sk_ei() -> Vec<u8> {
    logged_secret("initiator-charon.log", "Sk_ei secret")
}

/// SK_er of the trace's first IKE SA, as the initiator logged it.
pub fn sk_er() -> Vec<u8> {
    logged_secret("initiator-charon.log", "Sk_er secret")
}

/// A message summary line of a charon log: who sent it and what it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedMessage {
    /// The exchange, e.g. `IKE_AUTH`.
    pub exchange: String,
    /// A response rather than a request.
    pub response: bool,
    /// The message ID.
    pub message_id: u32,
    /// Sent by the original initiator of the IKE SA.
    pub from_initiator: bool,
    /// Payload names as strongSwan abbreviates them, e.g. `N(NATD_S_IP)`.
    pub payloads: Vec<String>,
}

/// The `parsed ...` and `generating ...` summary lines of both logs.
pub fn logged_messages() -> Vec<LoggedMessage> {
    let mut out = Vec::new();
    for (log, we_are_initiator) in [
        ("initiator-charon.log", true),
        ("responder-charon.log", false),
    ] {
        let text = log_text(log);
        for line in text.lines() {
            let Some(rest) = line.split("[ENC] ").nth(1) else {
                continue;
            };
            let (generated, rest) = if let Some(r) = rest.strip_prefix("generating ") {
                (true, r)
            } else if let Some(r) = rest.strip_prefix("parsed ") {
                (false, r)
            } else {
                continue;
            };
            // "IKE_AUTH request 1 [ IDi CERT ... ]"
            let Some((head, list)) = rest.split_once(" [") else {
                continue;
            };
            let words: Vec<&str> = head.split_whitespace().collect();
            let [exchange, kind, id] = words[..] else {
                continue;
            };
            let Ok(message_id) = id.parse() else { continue };
            let payloads = list
                .trim_end_matches(']')
                .split_whitespace()
                .map(str::to_string)
                .collect();
            out.push(LoggedMessage {
                exchange: exchange.to_string(),
                response: kind == "response",
                message_id,
                from_initiator: generated == we_are_initiator,
                payloads,
            });
        }
    }
    out
}

/// strongSwan's short notify names, for the ones in the trace.
pub fn strongswan_notify_name(name: &str) -> &str {
    match name {
        "NAT_DETECTION_SOURCE_IP" => "NATD_S_IP",
        "NAT_DETECTION_DESTINATION_IP" => "NATD_D_IP",
        "IKEV2_FRAGMENTATION_SUPPORTED" => "FRAG_SUP",
        "SIGNATURE_HASH_ALGORITHMS" => "HASH_ALG",
        "REDIRECT_SUPPORTED" => "REDIR_SUP",
        "CHILDLESS_IKEV2_SUPPORTED" => "CHDLESS_SUP",
        "MULTIPLE_AUTH_SUPPORTED" => "MULT_AUTH",
        "INITIAL_CONTACT" => "INIT_CONTACT",
        "MOBIKE_SUPPORTED" => "MOBIKE_SUP",
        "NO_ADDITIONAL_ADDRESSES" => "NO_ADD_ADDR",
        "EAP_ONLY_AUTHENTICATION" => "EAP_ONLY",
        "IKEV2_MESSAGE_ID_SYNC_SUPPORTED" => "MSG_ID_SYN_SUP",
        "UPDATE_SA_ADDRESSES" => "UPD_SA_ADDR",
        other => other,
    }
}
