//! `hometun ike decode` on the strongSwan trace (pcap, pcapng, Linux cooked), with and without
//! keys, and on damaged and garbage input.

#![allow(clippy::unwrap_used)]

use std::borrow::Cow;
use std::process::Command;
use std::time::Duration;

use hometun_daemon::tools::decode::{DecodeKeys, Summary, decode_capture, decode_hex};
use hometun_lab::trace::*;
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
use pcap_file::pcapng::{Block, PcapNgWriter};

fn keys() -> DecodeKeys {
    DecodeKeys::from_hex(Some(&hex::encode(sk_ei())), Some(&hex::encode(sk_er()))).unwrap()
}

fn trace() -> Vec<u8> {
    std::fs::read(trace_path()).unwrap()
}

fn run_capture(capture: &[u8], keys: &DecodeKeys) -> (String, String, Summary) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let summary = decode_capture(capture, keys, &mut out, &mut err)
        .unwrap()
        .unwrap();
    (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
        summary,
    )
}

/// The trace's frames as (timestamp, bytes).
fn frames() -> Vec<(Duration, Vec<u8>)> {
    trace_frames()
}

fn write_pcap(link: DataLink, frames: &[(Duration, Vec<u8>)]) -> Vec<u8> {
    let header = PcapHeader {
        datalink: link,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(Vec::new(), header).unwrap();
    for (ts, data) in frames {
        writer
            .write_packet(&PcapPacket::new(*ts, data.len() as u32, data))
            .unwrap();
    }
    writer.into_writer()
}

#[test]
fn the_trace_with_keys() {
    let (out, err, summary) = run_capture(&trace(), &keys());
    assert_eq!(err, "");
    assert_eq!(
        summary,
        Summary {
            packets: 34,
            messages: 18,
            failed: 0
        }
    );
    let expected = [
        "#1 192.0.2.2:500 -> 192.0.2.1:500 IKE_SA_INIT request from initiator mid=0 spi_i=0d22b5fe67250651 spi_r=0000000000000000 flags=I version=2.0 length=232",
        "  SA proposal #1 IKE ENCR_AES_GCM_16/128 PRF_HMAC_SHA2_256 CURVE25519",
        "  KE group=CURVE25519 data=761d432b50fd152416c1d5cb4ba5fceb807bc2b2cb466ca4d745ee6418efd518",
        "  No 773f41013ee80a8084d433376b257c3c7b5a414093b30ba0108cc02837f34d2f",
        "  N(NAT_DETECTION_SOURCE_IP) data=9bfe3497848106761029742e91e95346a1edc3cf",
        "  N(IKEV2_FRAGMENTATION_SUPPORTED)",
        "  N(SIGNATURE_HASH_ALGORITHMS) SHA2_256 SHA2_384 SHA2_512 IDENTITY",
        "  CERTREQ X509_SIGNATURE ca=ef9b275ecc3ff67bc53217fa84225370b329576d",
        "#3 192.0.2.2:4500 -> 192.0.2.1:4500 IKE_AUTH request from initiator mid=1 spi_i=0d22b5fe67250651 spi_r=603c1b5a216acfd2 flags=I version=2.0 length=714",
        "  SK first=IDi 682 bytes (IV, ciphertext, ICV)",
        "  decrypted with SK_ei:",
        "    IDi ID_FQDN \"home.example\"",
        "    CERT X509_SIGNATURE 328 bytes subject=\"CN=home.example\"",
        "    IDr ID_FQDN \"vps.example\"",
        "    SA proposal #1 ESP spi=bfcb014d ENCR_AES_GCM_16/128 NO_ESN",
        "    TSi 2001:db8:1::2/128",
        "    TSr ::/0",
        "    N(MOBIKE_SUPPORTED)",
        "#13 192.0.2.3:4500 -> 192.0.2.1:4500 INFORMATIONAL request from initiator mid=3 spi_i=0d22b5fe67250651 spi_r=603c1b5a216acfd2 flags=I version=2.0 length=153",
        "    N(UPDATE_SA_ADDRESSES)",
        "    N(COOKIE2) data=c650f725804f6da362300c4d06bd451b",
        "    N(REKEY_SA) protocol=ESP spi=d3453a9c",
        "    D protocol=ESP spis=d3453a9c",
        "    D protocol=IKE (this IKE SA)",
        "  decrypted with SK_er: no payloads",
        "34 packets, 18 IKE messages, 0 not decoded",
    ];
    let lines: Vec<&str> = out.lines().collect();
    for line in expected {
        assert!(lines.contains(&line), "missing line {line:?} in\n{out}");
    }
    let auth = lines
        .iter()
        .find(|l| l.starts_with("    AUTH "))
        .expect("an AUTH line");
    assert!(auth.starts_with("    AUTH DIGITAL_SIGNATURE Ed25519 signature="));
    // Each message's heading, then its payloads, in capture order.
    let headings: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with('#'))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        headings,
        [
            "#1", "#2", "#3", "#4", "#11", "#12", "#13", "#14", "#15", "#16", "#17", "#18", "#25",
            "#26", "#27", "#28", "#33", "#34"
        ]
    );
}

#[test]
fn the_trace_without_keys_and_with_swapped_keys() {
    let (out, err, summary) = run_capture(&trace(), &DecodeKeys::default());
    assert_eq!(err, "");
    assert_eq!(summary.failed, 0);
    let ei = out
        .matches("  (encrypted; give --sk-ei to decrypt)")
        .count();
    let er = out
        .matches("  (encrypted; give --sk-er to decrypt)")
        .count();
    assert_eq!((ei, er), (8, 8));
    assert!(!out.contains("decrypted"));

    // Swapped keys: each protected message is an error line naming its packet; the
    // cleartext IKE_SA_INIT messages still decode.
    let swapped =
        DecodeKeys::from_hex(Some(&hex::encode(sk_er())), Some(&hex::encode(sk_ei()))).unwrap();
    let (out, err, summary) = run_capture(&trace(), &swapped);
    assert_eq!(summary.failed, 16);
    let first = err.lines().next().unwrap();
    assert_eq!(
        first,
        "packet 3: SK payload with SK_ei: integrity check failed"
    );
    assert_eq!(err.lines().count(), 16);
    assert!(out.contains("  KE group=CURVE25519"));
}

#[test]
fn pcapng_and_linux_cooked_captures() {
    let frames = frames();
    let (reference, _, _) = run_capture(&trace(), &keys());

    // pcapng, written with one Ethernet interface.
    let mut writer = PcapNgWriter::new(Vec::new()).unwrap();
    writer
        .write_block(&Block::InterfaceDescription(
            InterfaceDescriptionBlock::new(DataLink::ETHERNET, 65535),
        ))
        .unwrap();
    for (ts, data) in &frames {
        writer
            .write_block(&Block::EnhancedPacket(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: *ts,
                original_len: data.len() as u32,
                data: Cow::Borrowed(data),
                options: vec![],
            }))
            .unwrap();
    }
    let (out, err, _) = run_capture(&writer.into_inner(), &keys());
    assert_eq!(err, "");
    assert_eq!(out, reference);

    // Linux cooked (SLL): a 16-byte header instead of Ethernet's 14.
    let cooked: Vec<(Duration, Vec<u8>)> = frames
        .iter()
        .map(|(ts, data)| {
            let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
            sll.extend_from_slice(&data[14..]);
            (*ts, sll)
        })
        .collect();
    let (out, err, _) = run_capture(&write_pcap(DataLink::LINUX_SLL, &cooked), &keys());
    assert_eq!(err, "");
    assert_eq!(out, reference);

    // Raw IPv4.
    let raw: Vec<(Duration, Vec<u8>)> = frames
        .iter()
        .map(|(ts, data)| (*ts, data[14..].to_vec()))
        .collect();
    let (out, _, _) = run_capture(&write_pcap(DataLink::RAW, &raw), &keys());
    assert_eq!(out, reference);
}

#[test]
fn damaged_packets_give_one_line_each_and_decoding_goes_on() {
    let mut frames = frames();
    // Packet 1: the IKE length field (Ethernet 14 + IP 20 + UDP 8 + 24) says one byte more.
    frames[0].1[14 + 20 + 8 + 27] += 1;
    // Packet 2: UDP length (0x0111 -> 0xff11) beyond the IP packet.
    frames[1].1[14 + 20 + 4] = 0xff;
    // Packet 3: the SK payload length (0x02ae -> 0xffae) overruns the message.
    let at = 14 + 20 + 8 + 4 + 30;
    frames[2].1[at] = 0xff;
    // Packet 4: cut in the middle of the UDP header, shorter than its IP total length.
    frames[3].1.truncate(14 + 20 + 4);
    let capture = write_pcap(DataLink::ETHERNET, &frames);
    let (out, err, summary) = run_capture(&capture, &keys());
    let errors: Vec<&str> = err.lines().collect();
    assert_eq!(
        errors,
        [
            "packet 1: IKE header says 233 bytes, the datagram has 232",
            "packet 2: UDP length 65297, 273 bytes in the IP packet",
            "packet 3: truncated payload: needs 65450 bytes, 682 left",
            "packet 4: IPv4 total length 667, 24 bytes captured",
        ]
    );
    assert_eq!(summary.failed, 4);
    assert_eq!(summary.messages, 16);
    // Packet 1's header still printed (it parsed); everything after packet 4 decoded.
    assert!(out.contains("#1 192.0.2.2:500 -> 192.0.2.1:500 IKE_SA_INIT request"));
    assert!(out.contains("#34 "));
    assert!(out.contains("    D protocol=IKE (this IKE SA)"));

    // A capture cut in the middle of a record: the packets before it decode.
    let mut cut = write_pcap(DataLink::ETHERNET, &frames[4..]);
    cut.truncate(cut.len() - 10);
    let (out, err, summary) = run_capture(&cut, &keys());
    assert!(
        err.starts_with("packet 30: capture file damaged, stopping"),
        "{err}"
    );
    assert_eq!(summary.failed, 1);
    assert!(out.contains("#29 "), "{out}");
}

#[test]
fn garbage() {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let result = decode_capture(b"this is not a capture file", &keys(), &mut out, &mut err);
    assert!(result.unwrap().is_err());
    assert!(
        decode_capture(&[], &keys(), &mut out, &mut err)
            .unwrap()
            .is_err()
    );

    for (input, expected) in [
        ("zz", "--hex: not hex: Invalid character 'z' at position 0"),
        (
            "0011",
            "message: truncated IKE header: needs 8 bytes, 2 left",
        ),
        ("", "message: truncated IKE header: needs 8 bytes, 0 left"),
    ] {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let summary = decode_hex(input, &keys(), &mut out, &mut err).unwrap();
        assert_eq!(summary.failed, 1);
        assert_eq!(String::from_utf8(err).unwrap().trim_end(), expected);
    }

    assert!(DecodeKeys::from_hex(Some("0011"), None).is_err());
    assert!(DecodeKeys::from_hex(None, Some("xyz")).is_err());
    let err = DecodeKeys::from_hex(Some(&"00".repeat(32)), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--sk-ei: 32 bytes; expected 20 (AES-128-GCM key + salt) or 36 (AES-256-GCM key + salt)"
    );
}

#[test]
fn hex_input_with_and_without_the_non_esp_marker() {
    let messages = trace_messages();
    let (_, auth) = &messages[2];
    let strongswan_style = hex::encode(sk_ei())
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap().to_uppercase())
        .collect::<Vec<_>>()
        .join(" ");
    let keys = DecodeKeys::from_hex(Some(&strongswan_style), None).unwrap();
    let mut plain = Vec::new();
    let mut err = Vec::new();
    decode_hex(&hex::encode(auth), &keys, &mut plain, &mut err).unwrap();
    assert!(err.is_empty());
    let plain = String::from_utf8(plain).unwrap();
    assert!(plain.starts_with("IKE_AUTH request from initiator mid=1 "));
    assert!(plain.contains("    IDi ID_FQDN \"home.example\"\n"));

    let mut marked = Vec::new();
    let with_marker = format!("00000000{}", hex::encode(auth));
    decode_hex(&with_marker, &keys, &mut marked, &mut err).unwrap();
    assert_eq!(String::from_utf8(marked).unwrap(), plain);
}

/// The `hometun` binary itself (CI sets HOMETUN_BIN).
#[test]
fn the_binary() {
    let Some(bin) = std::env::var_os("HOMETUN_BIN") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "HOMETUN_BIN must be set under CI"
        );
        eprintln!("skipping: HOMETUN_BIN is not set");
        return;
    };
    let output = Command::new(&bin)
        .args(["ike", "decode", "--pcap"])
        .arg(trace_path())
        .args([
            "--sk-ei",
            &hex::encode(sk_ei()),
            "--sk-er",
            &hex::encode(sk_er()),
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let (reference, _, _) = run_capture(&trace(), &keys());
    assert_eq!(String::from_utf8(output.stdout).unwrap(), reference);

    let output = Command::new(&bin)
        .args(["ike", "decode", "--hex", "0011"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("message: truncated IKE header"), "{stderr}");
}
