//! The strongSwan trace in testdata/ and its charon logs: every IKE message with where it was
//! seen, the keys charon logged at `ike = 4`, and its message summary lines. The known-answer
//! tests of the key schedule, the SK payload and the decoder read it through here.

use std::path::PathBuf;

use hometun_capture::{CapturedPacket, Origin, read_capture};

/// The vector directory.
pub fn vector_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/strongswan-5.9.8-x25519-aesgcm128-ed25519")
}

/// The capture of the conversation.
pub fn trace_path() -> PathBuf {
    vector_dir().join("trace.pcap")
}

/// Every IKE message of the trace, with where it was seen.
pub fn trace_messages() -> Vec<(Origin, Vec<u8>)> {
    let bytes = std::fs::read(trace_path()).expect("the strongSwan trace");
    read_capture(&bytes)
        .expect("a pcap file")
        .into_iter()
        .filter_map(|p| match p {
            CapturedPacket::Ike { origin, message } => Some((origin, message)),
            CapturedPacket::Other => None,
            CapturedPacket::Bad { packet, problem } => panic!("packet {packet}: {problem}"),
        })
        .collect()
}

/// The hex dump that follows the line containing `label` in a charon log.
pub fn logged_secret(log: &str, label: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(vector_dir().join(log)).expect("charon log");
    let mut lines = text.lines().skip_while(|l| !l.contains(label));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("{label} not in {log}"));
    // "Sk_ei secret => 20 bytes @ 0x..."
    let len: usize = first
        .split("=> ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("byte count");
    let mut out = Vec::new();
    for line in lines {
        // "08[IKE]    0: 67 6F 5D ...  go]..." : the hex sits between ": " and two spaces.
        let Some((_, rest)) = line.split_once(": ") else {
            break;
        };
        let hex_part = rest.split("  ").next().unwrap_or("");
        for byte in hex_part.split_whitespace() {
            out.push(u8::from_str_radix(byte, 16).expect("hex byte"));
        }
        if out.len() >= len {
            break;
        }
    }
    assert_eq!(out.len(), len, "{label}");
    out
}

/// SK_ei of the trace's first IKE SA, as the initiator logged it.
pub fn sk_ei() -> Vec<u8> {
    logged_secret("initiator-charon.log", "Sk_ei secret =>")
}

/// SK_er of the trace's first IKE SA, as the initiator logged it.
pub fn sk_er() -> Vec<u8> {
    logged_secret("initiator-charon.log", "Sk_er secret =>")
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
        let text = std::fs::read_to_string(vector_dir().join(log)).expect("charon log");
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
