//! `hometun ike decode`: prints IKE messages, from hex or from a capture file, one payload per
//! line, and the payloads inside SK when given SK_ei / SK_er.
//!
//! Captures: pcap or pcapng with Ethernet, Linux cooked (v1 and v2), raw IP or BSD loopback
//! link types; IPv4 and UDP on port 500 or 4500 (the non-ESP marker removed, ESP and NAT
//! keepalives skipped). A packet that cannot be decoded gives one line on the error stream
//! naming its number and the problem, and decoding goes on with the next one.

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hometun_control::AeadAlg;
use std::path::PathBuf;

pub use hometun_capture::{CaptureError, CapturedPacket, Origin, read_capture};
use hometun_ike::crypto::SkGcm;
use hometun_ike::wire::{
    AddressRange, Authentication, Certificate, CertificateRequest, Configuration, Delete,
    Encrypted, Flags, Header, IdType, Identification, Message, Notify, NotifyType, Payload,
    PayloadType, ProtocolId, SkError, TrafficSelector, TrafficSelectors, WireError, open_encrypted,
};

/// Arguments of `hometun ike decode`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["hex", "pcap"])))]
pub struct DecodeArgs {
    /// One IKE message in hex (a leading non-ESP marker is removed).
    #[arg(long, value_name = "HEX")]
    pub hex: Option<String>,
    /// A pcap or pcapng file; every IKE message on UDP 500/4500 in it is decoded.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// SK_ei in hex (AES key || 4-byte salt, as strongSwan logs it): decrypts the SK payloads
    /// of messages from the original initiator.
    #[arg(long = "sk-ei", value_name = "HEX")]
    pub sk_ei: Option<String>,
    /// SK_er in hex (AES key || 4-byte salt): decrypts the SK payloads of messages from the
    /// original responder.
    #[arg(long = "sk-er", value_name = "HEX")]
    pub sk_er: Option<String>,
}

/// Hex dumps longer than this many bytes are shortened.
const HEX_SHOWN: usize = 48;

/// Why decoding could not start or a packet could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A key given on the command line is not usable.
    #[error("{flag}: {problem}")]
    Key {
        /// The flag.
        flag: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The hex message is not hex.
    #[error("--hex: {0}")]
    Hex(String),
    /// The capture file cannot be read.
    #[error("{path}: {problem}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// Some packets could not be decoded (each was reported on its own line).
    #[error("{failed} of {packets} packets could not be decoded")]
    SomeFailed {
        /// Packets that failed.
        failed: usize,
        /// Packets read.
        packets: usize,
    },
}

/// Text that should have been hex.
#[derive(Debug, thiserror::Error)]
#[error("not hex: {0}")]
pub struct NotHex(#[from] hex::FromHexError);

/// Why one IKE message could not be described in full.
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    /// The message does not parse.
    #[error("{0}")]
    Wire(#[from] WireError),
    /// Its SK payload does not open with the key given.
    #[error("SK payload with {key}: {error}")]
    Sk {
        /// `SK_ei` or `SK_er`.
        key: &'static str,
        /// What went wrong.
        error: SkError,
    },
}

/// The SK payload keys, one per direction: SK_ei protects what the original initiator sends.
#[derive(Debug, Default)]
pub struct DecodeKeys {
    /// SK_ei, for messages with the I flag.
    pub sk_ei: Option<SkGcm>,
    /// SK_er, for messages without it.
    pub sk_er: Option<SkGcm>,
}

impl DecodeKeys {
    /// Keys from hex as strongSwan logs them (AES key || 4-byte salt: 20 bytes for AES-128, 36
    /// for AES-256; spaces and colons allowed).
    pub fn from_hex(sk_ei: Option<&str>, sk_er: Option<&str>) -> Result<Self, DecodeError> {
        Ok(Self {
            sk_ei: sk_ei.map(|h| key_from_hex("--sk-ei", h)).transpose()?,
            sk_er: sk_er.map(|h| key_from_hex("--sk-er", h)).transpose()?,
        })
    }

    fn for_sender(&self, flags: Flags) -> (Option<&SkGcm>, &'static str) {
        if flags.initiator() {
            (self.sk_ei.as_ref(), "SK_ei")
        } else {
            (self.sk_er.as_ref(), "SK_er")
        }
    }
}

fn key_from_hex(flag: &'static str, text: &str) -> Result<SkGcm, DecodeError> {
    let bytes = parse_hex(text).map_err(|problem| DecodeError::Key {
        flag,
        problem: problem.to_string(),
    })?;
    let alg = match bytes.len() {
        20 => AeadAlg::AesGcm128,
        36 => AeadAlg::AesGcm256,
        n => {
            return Err(DecodeError::Key {
                flag,
                problem: format!(
                    "{n} bytes; expected 20 (AES-128-GCM key + salt) or 36 (AES-256-GCM key + salt)"
                ),
            });
        }
    };
    SkGcm::new(alg, &bytes).map_err(|e| DecodeError::Key {
        flag,
        problem: e.to_string(),
    })
}

/// Hex to bytes, ignoring whitespace, colons and a leading `0x`.
fn parse_hex(text: &str) -> Result<Vec<u8>, NotHex> {
    let text = text.trim();
    let text = text.strip_prefix("0x").unwrap_or(text);
    let digits: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    Ok(hex::decode(&digits)?)
}

/// Counts of a decoding run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Packets in the capture (1 for `--hex`).
    pub packets: usize,
    /// IKE messages found.
    pub messages: usize,
    /// Packets reported as errors.
    pub failed: usize,
}

/// Prints one IKE message (given in hex; a leading non-ESP marker is removed). Returns whether
/// it decoded; the error line goes to `err`.
pub fn decode_hex(
    hex_text: &str,
    keys: &DecodeKeys,
    out: &mut dyn io::Write,
    err: &mut dyn io::Write,
) -> io::Result<Summary> {
    let mut summary = Summary {
        packets: 1,
        ..Summary::default()
    };
    let bytes = match parse_hex(hex_text) {
        Ok(bytes) => bytes,
        Err(problem) => {
            writeln!(err, "--hex: {problem}")?;
            summary.failed = 1;
            return Ok(summary);
        }
    };
    // An initiator SPI is never zero, so four leading zero octets are the non-ESP marker.
    let message = hometun_ike::wire::strip_non_esp_marker(&bytes).unwrap_or(&bytes);
    summary.messages = 1;
    let mut text = String::new();
    match describe_message(message, None, keys, &mut text) {
        Ok(()) => out.write_all(text.as_bytes())?,
        Err(problem) => {
            out.write_all(text.as_bytes())?;
            writeln!(err, "message: {problem}")?;
            summary.failed = 1;
        }
    }
    Ok(summary)
}

/// Prints every IKE message of a capture held in memory; errors go to `err`, one line each.
pub fn decode_capture(
    capture: &[u8],
    keys: &DecodeKeys,
    out: &mut dyn io::Write,
    err: &mut dyn io::Write,
) -> io::Result<Result<Summary, CaptureError>> {
    let packets = match read_capture(capture) {
        Ok(packets) => packets,
        Err(problem) => return Ok(Err(problem)),
    };
    let mut summary = Summary {
        packets: packets.len(),
        ..Summary::default()
    };
    for packet in &packets {
        match packet {
            CapturedPacket::Ike { origin, message } => {
                summary.messages += 1;
                let mut text = String::new();
                let result = describe_message(message, Some(origin), keys, &mut text);
                out.write_all(text.as_bytes())?;
                if let Err(problem) = result {
                    writeln!(err, "packet {}: {problem}", origin.packet)?;
                    summary.failed += 1;
                }
            }
            CapturedPacket::Other => {}
            CapturedPacket::Bad { packet, problem } => {
                writeln!(err, "packet {packet}: {problem}")?;
                summary.failed += 1;
            }
        }
    }
    writeln!(
        out,
        "{} packets, {} IKE messages, {} not decoded",
        summary.packets, summary.messages, summary.failed
    )?;
    Ok(Ok(summary))
}

/// Runs `hometun ike decode`.
pub fn run(args: &DecodeArgs) -> Result<Summary, DecodeError> {
    let keys = DecodeKeys::from_hex(args.sk_ei.as_deref(), args.sk_er.as_deref())?;
    let stdout = io::stdout();
    let stderr = io::stderr();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    let io_error = |e: io::Error| DecodeError::File {
        path: "<stdout>".into(),
        problem: e.to_string(),
    };
    let summary = if let Some(hex_text) = &args.hex {
        decode_hex(hex_text, &keys, &mut out, &mut err).map_err(io_error)?
    } else if let Some(path) = &args.pcap {
        let file_error = |problem: String| DecodeError::File {
            path: path.display().to_string(),
            problem,
        };
        let capture = std::fs::read(path).map_err(|e| file_error(e.to_string()))?;
        decode_capture(&capture, &keys, &mut out, &mut err)
            .map_err(io_error)?
            .map_err(|e| file_error(e.to_string()))?
    } else {
        // clap's argument group makes one of them required.
        return Err(DecodeError::Hex("give --hex or --pcap".into()));
    };
    if summary.failed > 0 {
        return Err(DecodeError::SomeFailed {
            failed: summary.failed,
            packets: summary.packets,
        });
    }
    Ok(summary)
}

/// Appends the description of one IKE message to `out`: a heading line, then one line per
/// payload, and the payloads inside SK (indented) when the key for its direction is known.
/// On an error the lines so far stay in `out` and the problem is returned.
pub fn describe_message(
    bytes: &[u8],
    origin: Option<&Origin>,
    keys: &DecodeKeys,
    out: &mut String,
) -> Result<(), DescribeError> {
    let header = Header::parse(bytes)?;
    heading(&header, origin, out);
    let message = Message::parse(bytes)?;
    for payload in &message.payloads {
        describe_payload(payload, "  ", out);
    }
    let Some(encrypted) = message.encrypted() else {
        return Ok(());
    };
    let (key, key_name) = keys.for_sender(header.flags);
    let Some(key) = key else {
        let _ = writeln!(
            out,
            "  (encrypted; give --{} to decrypt)",
            key_name.to_ascii_lowercase().replace('_', "-")
        );
        return Ok(());
    };
    let aad = bytes
        .get(..bytes.len() - encrypted.data.len())
        .unwrap_or_default();
    let inner = open_encrypted(encrypted.clone(), aad, key).map_err(|error| DescribeError::Sk {
        key: key_name,
        error,
    })?;
    let _ = writeln!(
        out,
        "  decrypted with {key_name}:{}",
        if inner.is_empty() { " no payloads" } else { "" }
    );
    for payload in &inner {
        describe_payload(payload, "    ", out);
    }
    Ok(())
}

fn heading(header: &Header, origin: Option<&Origin>, out: &mut String) {
    if let Some(o) = origin {
        let _ = write!(out, "#{} {} -> {} ", o.packet, o.src, o.dst);
    }
    let _ = writeln!(
        out,
        "{} {} {} mid={} spi_i={:016x} spi_r={:016x} flags={} version={}.{} length={}",
        header.exchange_type,
        if header.flags.response() {
            "response"
        } else {
            "request"
        },
        if header.flags.initiator() {
            "from initiator"
        } else {
            "from responder"
        },
        header.message_id,
        header.spi_i,
        header.spi_r,
        header.flags,
        header.major_version,
        header.minor_version,
        header.length,
    );
}

/// Appends one line (more for an SA with several proposals) describing a payload.
pub fn describe_payload(payload: &Payload, indent: &str, out: &mut String) {
    let _ = write!(out, "{indent}{payload}");
    match payload {
        Payload::Sa(sa) => {
            if let [only] = sa.proposals.as_slice() {
                let _ = write!(out, " proposal {only}");
            } else {
                for proposal in &sa.proposals {
                    let _ = write!(out, "\n{indent}  proposal {proposal}");
                }
            }
        }
        Payload::Ke(ke) => {
            let _ = write!(out, " group={} data={}", ke.group, hex_field(&ke.data));
        }
        Payload::IdI(id) | Payload::IdR(id) => describe_id(id, out),
        Payload::Cert(cert) => describe_cert(cert, out),
        Payload::CertReq(req) => describe_certreq(req, out),
        Payload::Auth(auth) => describe_auth(auth, out),
        Payload::Nonce(nonce) => {
            let _ = write!(out, " {}", hex_field(&nonce.data));
        }
        Payload::Notify(n) => describe_notify(n, out),
        Payload::Delete(d) => describe_delete(d, out),
        Payload::VendorId(v) => {
            let _ = write!(out, " {}", hex_field(&v.data));
        }
        Payload::TsI(ts) | Payload::TsR(ts) => describe_ts(ts, out),
        Payload::Encrypted(e) => describe_encrypted(e, out),
        Payload::EncryptedFragment(f) => {
            let _ = write!(
                out,
                " fragment {}/{} first={} {} bytes (IV, ciphertext, ICV)",
                f.fragment_number,
                f.total_fragments,
                f.first_inner,
                f.data.len()
            );
        }
        Payload::Config(cp) => describe_cp(cp, out),
        Payload::Unknown(u) => {
            let _ = write!(
                out,
                " (payload type {}{}) body={}",
                u.payload_type.0,
                if u.critical { ", critical" } else { "" },
                hex_field(&u.body)
            );
        }
    }
    out.push('\n');
}

fn describe_id(id: &Identification, out: &mut String) {
    let _ = write!(out, " {} {}", id.id_type, id_value(id));
}

/// An identity as text: names as strings, addresses as addresses, DNs as `CN=...`.
pub fn id_value(id: &Identification) -> String {
    match id.id_type {
        IdType::ID_FQDN | IdType::ID_RFC822_ADDR => quoted(&id.data),
        IdType::ID_IPV4_ADDR => <[u8; 4]>::try_from(id.data.as_slice())
            .map(|a| Ipv4Addr::from(a).to_string())
            .unwrap_or_else(|_| hex_field(&id.data)),
        IdType::ID_IPV6_ADDR => <[u8; 16]>::try_from(id.data.as_slice())
            .map(|a| Ipv6Addr::from(a).to_string())
            .unwrap_or_else(|_| hex_field(&id.data)),
        IdType::ID_DER_ASN1_DN => {
            der::name(&id.data).map_or_else(|| hex_field(&id.data), |dn| format!("\"{dn}\""))
        }
        _ => hex_field(&id.data),
    }
}

fn describe_cert(cert: &Certificate, out: &mut String) {
    let _ = write!(out, " {} {} bytes", cert.encoding, cert.data.len());
    if let Some(subject) = der::certificate_subject(&cert.data) {
        let _ = write!(out, " subject=\"{subject}\"");
    }
}

fn describe_certreq(req: &CertificateRequest, out: &mut String) {
    let _ = write!(out, " {}", req.encoding);
    if req
        .data
        .len()
        .is_multiple_of(hometun_ike::wire::identity::CA_HASH_LEN)
    {
        for ca in req.authorities() {
            let _ = write!(out, " ca={}", hex::encode(ca));
        }
    } else {
        let _ = write!(out, " data={}", hex_field(&req.data));
    }
}

fn describe_auth(auth: &Authentication, out: &mut String) {
    let _ = write!(out, " {}", auth.method);
    match auth.digital_signature() {
        Ok(sig) => {
            let algorithm = der::algorithm_name(sig.algorithm)
                .unwrap_or_else(|| format!("algorithm {}", hex::encode(sig.algorithm)));
            let _ = write!(out, " {algorithm} signature={}", hex_field(sig.signature));
        }
        Err(_) => {
            let _ = write!(out, " data={}", hex_field(&auth.data));
        }
    }
}

fn describe_notify(n: &Notify, out: &mut String) {
    if n.notify_type.name().is_none() {
        let kind = if n.notify_type.is_error() {
            "error"
        } else {
            "status"
        };
        let _ = write!(out, " ({kind} type {})", n.notify_type.0);
    }
    if n.protocol != ProtocolId::NONE || !n.spi.is_empty() {
        let _ = write!(out, " protocol={}", n.protocol);
    }
    if !n.spi.is_empty() {
        let _ = write!(out, " spi={}", hex::encode(&n.spi));
    }
    if n.data.is_empty() {
        return;
    }
    let data = &n.data;
    match n.notify_type {
        NotifyType::SIGNATURE_HASH_ALGORITHMS if data.len().is_multiple_of(2) => {
            let names: Vec<String> = n.hash_algorithms().map(|h| h.to_string()).collect();
            let _ = write!(out, " {}", names.join(" "));
        }
        NotifyType::INVALID_KE_PAYLOAD if data.len() == 2 => {
            let group = hometun_ike::wire::DhGroup(u16::from_be_bytes([data[0], data[1]]));
            let _ = write!(out, " group={group}");
        }
        NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD if data.len() == 1 => {
            let _ = write!(out, " payload={}", PayloadType(data[0]));
        }
        NotifyType::ADDITIONAL_IP4_ADDRESS if data.len() == 4 => {
            let _ = write!(
                out,
                " {}",
                Ipv4Addr::new(data[0], data[1], data[2], data[3])
            );
        }
        NotifyType::ADDITIONAL_IP6_ADDRESS if data.len() == 16 => {
            if let Ok(octets) = <[u8; 16]>::try_from(data.as_slice()) {
                let _ = write!(out, " {}", Ipv6Addr::from(octets));
            }
        }
        _ => {
            let _ = write!(out, " data={}", hex_field(data));
        }
    }
}

fn describe_delete(d: &Delete, out: &mut String) {
    let _ = write!(out, " protocol={}", d.protocol);
    if d.spis.is_empty() {
        if d.protocol == ProtocolId::IKE {
            out.push_str(" (this IKE SA)");
        }
        return;
    }
    let spis: Vec<String> = d.spis.iter().map(hex::encode).collect();
    let _ = write!(out, " spis={}", spis.join(","));
}

fn describe_ts(ts: &TrafficSelectors, out: &mut String) {
    for selector in &ts.selectors {
        match selector {
            TrafficSelector::Address(range) => {
                let _ = write!(out, " {}", range_text(range));
            }
            TrafficSelector::Unknown {
                ts_type,
                ip_protocol,
                data,
            } => {
                let _ = write!(
                    out,
                    " [{ts_type} protocol={ip_protocol} data={}]",
                    hex_field(data)
                );
            }
        }
    }
}

/// A range as `prefix/len` when it is one, else `start..end`, then protocol and ports when
/// they are not "any".
pub fn range_text(range: &AddressRange) -> String {
    let mut text = match prefix_of(range.start, range.end) {
        Some((addr, len)) => format!("{addr}/{len}"),
        None => format!("{}..{}", range.start, range.end),
    };
    if range.ip_protocol != 0 {
        let _ = write!(text, " proto={}", range.ip_protocol);
    }
    if (range.start_port, range.end_port) != (0, u16::MAX) {
        let _ = write!(text, " ports={}-{}", range.start_port, range.end_port);
    }
    text
}

fn prefix_of(start: IpAddr, end: IpAddr) -> Option<(IpAddr, u32)> {
    let (s, e, bits) = match (start, end) {
        (IpAddr::V4(s), IpAddr::V4(e)) => (u128::from(u32::from(s)), u128::from(u32::from(e)), 32),
        (IpAddr::V6(s), IpAddr::V6(e)) => (u128::from(s), u128::from(e), 128),
        _ => return None,
    };
    let host = s ^ e;
    // A prefix: start and end differ exactly in the low host bits, all 0 in start, all 1 in end.
    if host & host.wrapping_add(1) != 0 || s & host != 0 || e & host != host {
        return None;
    }
    let host_bits = 128 - host.leading_zeros();
    Some((start, bits - host_bits))
}

fn describe_encrypted(e: &Encrypted, out: &mut String) {
    let _ = write!(
        out,
        " first={} {} bytes (IV, ciphertext, ICV)",
        e.first_inner,
        e.data.len()
    );
}

fn describe_cp(cp: &Configuration, out: &mut String) {
    let _ = write!(out, " {}", cp.cfg_type);
    for attribute in &cp.attributes {
        let _ = write!(out, " {}", attribute.attribute_type);
        if !attribute.value.is_empty() {
            let _ = write!(out, "={}", hex_field(&attribute.value));
        }
    }
}

/// Bytes as hex; past 48 bytes, the first 24 and the full length.
pub fn hex_field(bytes: &[u8]) -> String {
    if bytes.len() <= HEX_SHOWN {
        hex::encode(bytes)
    } else {
        format!(
            "{}...({} bytes)",
            hex::encode(&bytes[..HEX_SHOWN / 2]),
            bytes.len()
        )
    }
}

/// A byte string in quotes, with anything unprintable escaped.
fn quoted(bytes: &[u8]) -> String {
    format!("\"{}\"", bytes.escape_ascii())
}

/// Just enough DER to name a certificate's subject, a distinguished name and a signature
/// algorithm. Anything unexpected gives `None`, and the caller prints hex.
mod der {
    use std::fmt::Write as _;

    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const OID: u8 = 0x06;
    const INTEGER: u8 = 0x02;
    const CONTEXT_0: u8 = 0xa0;

    /// Splits one TLV off `input`: (tag, contents, rest).
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = match first {
            0..=0x7f => (usize::from(first), rest),
            0x81 => (usize::from(*rest.first()?), rest.get(1..)?),
            0x82 => (
                usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?])),
                rest.get(2..)?,
            ),
            _ => return None,
        };
        if len > rest.len() {
            return None;
        }
        let (contents, rest) = rest.split_at(len);
        Some((tag, contents, rest))
    }

    fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (t, contents, rest) = tlv(input)?;
        (t == tag).then_some((contents, rest))
    }

    fn oid_text(oid: &[u8]) -> Option<String> {
        let (&first, rest) = oid.split_first()?;
        let mut text = format!("{}.{}", first / 40, first % 40);
        let mut value: u64 = 0;
        for &b in rest {
            value = value.checked_mul(128)? | u64::from(b & 0x7f);
            if b & 0x80 == 0 {
                let _ = write!(text, ".{value}");
                value = 0;
            }
        }
        Some(text)
    }

    fn attribute_name(oid: &str) -> Option<&'static str> {
        Some(match oid {
            "2.5.4.3" => "CN",
            "2.5.4.5" => "serialNumber",
            "2.5.4.6" => "C",
            "2.5.4.7" => "L",
            "2.5.4.8" => "ST",
            "2.5.4.10" => "O",
            "2.5.4.11" => "OU",
            "1.2.840.113549.1.9.1" => "E",
            "0.9.2342.19200300.100.1.25" => "DC",
            _ => return None,
        })
    }

    /// A DER Name (SEQUENCE of SETs of type-value pairs) as `C=.., O=.., CN=..`.
    pub(super) fn name(der: &[u8]) -> Option<String> {
        let (mut rdns, rest) = expect(der, SEQUENCE)?;
        if !rest.is_empty() {
            return None;
        }
        let mut parts = Vec::new();
        while !rdns.is_empty() {
            let (mut set, rest) = expect(rdns, SET)?;
            rdns = rest;
            while !set.is_empty() {
                let (pair, rest) = expect(set, SEQUENCE)?;
                set = rest;
                let (oid, value) = expect(pair, OID)?;
                let (_, value, _) = tlv(value)?;
                let oid = oid_text(oid)?;
                let key = attribute_name(&oid).map_or(oid, str::to_string);
                parts.push(format!("{key}={}", value.escape_ascii()));
            }
        }
        Some(parts.join(", "))
    }

    /// The subject of a DER X.509 certificate.
    pub(super) fn certificate_subject(der: &[u8]) -> Option<String> {
        let (certificate, _) = expect(der, SEQUENCE)?;
        let (mut tbs, _) = expect(certificate, SEQUENCE)?;
        if tbs.first() == Some(&CONTEXT_0) {
            tbs = tlv(tbs)?.2;
        }
        let (_, tbs) = expect(tbs, INTEGER)?; // serial number
        let (_, tbs) = expect(tbs, SEQUENCE)?; // signature algorithm
        let (_, tbs) = expect(tbs, SEQUENCE)?; // issuer
        let (_, tbs) = expect(tbs, SEQUENCE)?; // validity
        let (_, _, after_subject) = tlv(tbs)?;
        name(tbs.get(..tbs.len() - after_subject.len())?)
    }

    /// The name of a DER AlgorithmIdentifier's algorithm.
    pub(super) fn algorithm_name(der: &[u8]) -> Option<String> {
        let (algorithm, _) = expect(der, SEQUENCE)?;
        let (oid, _) = expect(algorithm, OID)?;
        let oid = oid_text(oid)?;
        let name = match oid.as_str() {
            "1.3.101.112" => "Ed25519",
            "1.3.101.113" => "Ed448",
            "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
            "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
            "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
            "1.2.840.113549.1.1.10" => "RSASSA-PSS",
            "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
            "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
            "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
            _ => return Some(oid),
        };
        Some(name.to_string())
    }
}
