//! Known-answer test against a real strongSwan 5.9.8 conversation
//! (`testdata/strongswan-5.9.8-x25519-aesgcm128-ed25519`): every ESP-in-UDP packet of
//! `trace.pcap` is opened with the CHILD_SA keys that the two charon logs print, must hold the
//! ICMPv6 echo requests/replies between 2001:db8:1::2 and 2001:db8:ffff::1, and must come out
//! byte for byte the same when sealed again with the same sequence number.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv6Addr;

use hometun_control::{AeadAlg, AeadKey};
use hometun_forwarder::aead::AeadBackend;
use hometun_forwarder::esp::{EspOpener, EspSealer, HEADROOM, NEXT_HEADER_IPV6};
use hometun_forwarder::replay::ReplayWindow;
use hometun_forwarder::wire::{EspPacket, Icmpv6Packet, Icmpv6Repr, Ipv6Packet, ipv6};
use hometun_lab::trace::{Dump, log_dumps, log_text, trace_datagrams};

/// One CHILD_SA as a charon log describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LoggedChildSa {
    /// Key || salt for traffic from the CREATE_CHILD_SA (or IKE_AUTH) initiator.
    initiator_key: Vec<u8>,
    /// Key || salt for traffic from its responder.
    responder_key: Vec<u8>,
    /// SPI of packets this log's side receives, and of packets it sends.
    spi_in: u32,
    spi_out: u32,
    /// Whether this log's side initiated the exchange that made the SA.
    we_initiated: bool,
}

/// Thread id of a charon log line (`14[CHD] ...` -> `14`).
fn thread(line: &str) -> &str {
    line.split('[').next().unwrap_or("")
}

/// Finds every CHILD_SA in a charon log: its two keys, its SPIs and this side's role. The role
/// comes from the last `parsed <EXCHANGE> request|response` of the same thread before the
/// keys: a parsed response means this side sent the request, i.e. initiated.
fn child_sas(log: &str) -> Vec<LoggedChildSa> {
    let mut role: HashMap<String, bool> = HashMap::new();
    let mut pending: HashMap<String, (Vec<u8>, Vec<u8>, bool)> = HashMap::new();
    let mut initiator_key: HashMap<String, Vec<u8>> = HashMap::new();
    let mut found = Vec::new();
    let dumps: HashMap<usize, Dump> = log_dumps(log).into_iter().map(|d| (d.line, d)).collect();
    // The 20-byte key dumped at a line, with its label.
    let key_at = |index: usize, label: &str| {
        dumps
            .get(&(index + 1))
            .filter(|d| d.label == label && d.bytes.len() == 20)
            .map(|d| d.bytes.clone())
    };
    for (index, line) in log.lines().enumerate() {
        let tid = thread(line).to_string();
        if let Some(rest) = line.split("[ENC] parsed ").nth(1) {
            let words: Vec<&str> = rest.split_whitespace().collect();
            // "parsed IKE_AUTH response 1 [ ... ]" (not "parsed a IKE_AUTH response header").
            if words.len() >= 3 && words[0] != "a" && words[2].parse::<u32>().is_ok() {
                match words[1] {
                    "response" => {
                        role.insert(tid.clone(), true);
                    }
                    "request" => {
                        role.insert(tid.clone(), false);
                    }
                    _ => {}
                }
            }
        } else if let Some(key) = key_at(index, "encryption initiator key") {
            initiator_key.insert(tid.clone(), key);
        } else if let Some(responder) = key_at(index, "encryption responder key") {
            let initiator = initiator_key.remove(&tid).expect("initiator key first");
            let we_initiated = *role.get(&tid).expect("a parsed message before the keys");
            pending.insert(tid.clone(), (initiator, responder, we_initiated));
        } else if line.contains("established with SPIs") {
            // "... CHILD_SA v6{1} established with SPIs bfcb014d_i d3453a9c_o and TS ..."
            let Some((initiator_key, responder_key, we_initiated)) = pending.remove(&tid) else {
                continue; // The second ("outbound") line of an SA already recorded.
            };
            let rest = line.split("established with SPIs ").nth(1).unwrap();
            let mut spis = rest.split_whitespace();
            let spi_in = spis.next().unwrap().strip_suffix("_i").unwrap();
            let spi_out = spis.next().unwrap().strip_suffix("_o").unwrap();
            found.push(LoggedChildSa {
                initiator_key,
                responder_key,
                spi_in: u32::from_str_radix(spi_in, 16).unwrap(),
                spi_out: u32::from_str_radix(spi_out, 16).unwrap(),
                we_initiated,
            });
        }
    }
    found
}

/// SPI -> key || salt, from one log. The exchange initiator sends with the initiator key.
fn keys_by_spi(log: &str) -> BTreeMap<u32, Vec<u8>> {
    let mut map = BTreeMap::new();
    for sa in child_sas(log) {
        let (out_key, in_key) = if sa.we_initiated {
            (sa.initiator_key, sa.responder_key)
        } else {
            (sa.responder_key, sa.initiator_key)
        };
        map.insert(sa.spi_out, out_key);
        map.insert(sa.spi_in, in_key);
    }
    map
}

/// The ESP-in-UDP packets of the trace (not IKE with its zero non-ESP marker, not a
/// keepalive), in capture order.
fn esp_in_udp() -> Vec<Vec<u8>> {
    trace_datagrams()
        .iter()
        .filter(|d| d.dst.port() == 4500)
        .filter_map(|d| d.esp_packet().map(<[u8]>::to_vec))
        .collect()
}

#[test]
fn strongswan_trace_opens_and_reseals() {
    let initiator_log = log_text("initiator-charon.log");
    let responder_log = log_text("responder-charon.log");

    // Both logs must tell the same story about which key goes with which SPI.
    let keys = keys_by_spi(&initiator_log);
    assert_eq!(keys, keys_by_spi(&responder_log));
    assert_eq!(keys.len(), 6, "three CHILD_SAs, two SPIs each: {keys:x?}");
    assert_eq!(
        keys[&0xd345_3a9c],
        hex::decode("681325a225b28b1e487675a49e9749172d070e37").unwrap(),
        "the IKE_AUTH CHILD_SA's initiator key protects the initiator's outbound SPI"
    );

    let packets = esp_in_udp();
    assert_eq!(packets.len(), 16);

    let home: Ipv6Addr = "2001:db8:1::2".parse().unwrap();
    let server: Ipv6Addr = "2001:db8:ffff::1".parse().unwrap();
    let mut windows: HashMap<u32, ReplayWindow> = HashMap::new();
    let mut iv_masks: HashMap<u32, u64> = HashMap::new();
    let mut requests = Vec::new();
    let mut replies = Vec::new();

    for original in &packets {
        let esp = EspPacket::new_checked(&original[..]).unwrap();
        let spi = esp.spi();
        let key = AeadKey::from_keymat(AeadAlg::AesGcm128, &keys[&spi.0]).unwrap();
        let window = windows
            .entry(spi.0)
            .or_insert_with(|| ReplayWindow::new(1024, false));
        let seq = window.infer_seq(esp.seq());
        window.check(seq).unwrap();

        for backend in AeadBackend::ALL {
            let opener = EspOpener::new(spi, &key, false, backend).unwrap();
            let mut buf = original.clone();
            let opened = opener.open(seq, &mut buf).unwrap();
            window.insert(seq);
            assert_eq!(opened.next_header, NEXT_HEADER_IPV6);
            let inner = &buf[opened.inner.clone()];

            // The inner packet: IPv6, ICMPv6 echo, right addresses, right checksum.
            let ip = Ipv6Packet::new_checked(inner).unwrap();
            assert_eq!(ip.total_len(), inner.len(), "padding removed exactly");
            assert_eq!(ip.next_header(), ipv6::NEXT_HEADER_ICMPV6);
            let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
            let repr = Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), &icmp).unwrap();
            match repr {
                Icmpv6Repr::EchoRequest {
                    ident,
                    seq_no,
                    data,
                } => {
                    assert_eq!((ip.src_addr(), ip.dst_addr()), (home, server));
                    if backend == AeadBackend::Ring {
                        requests.push((ident, seq_no, data.to_vec()));
                    }
                }
                Icmpv6Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                } => {
                    assert_eq!((ip.src_addr(), ip.dst_addr()), (server, home));
                    if backend == AeadBackend::Ring {
                        replies.push((ident, seq_no, data.to_vec()));
                    }
                }
                other => panic!("unexpected inner ICMPv6 {other:?}"),
            }

            // Sealing the inner packet again with the same sequence number gives the same
            // bytes. strongSwan's IV is the sequence number XOR a random per-SA mask: learn the
            // mask from the SA's first packet, then every later packet must match with it.
            let iv = u64::from_be_bytes(original[8..16].try_into().unwrap());
            let mask = *iv_masks.entry(spi.0).or_insert(iv ^ seq);
            let sealer = EspSealer::new(spi, &key, false, backend)
                .unwrap()
                .with_iv_mask(mask);
            let mut resealed = vec![0u8; EspSealer::sealed_len(inner.len())];
            let n = sealer
                .seal(seq, inner, opened.next_header, &mut resealed)
                .unwrap();
            assert_eq!(n, original.len());
            assert_eq!(
                hex::encode(&resealed[..n]),
                hex::encode(original),
                "SPI {spi} seq {seq}"
            );

            // And in place, the inner packet already at HEADROOM.
            let mut in_place = buf.clone();
            in_place.copy_within(opened.inner.clone(), HEADROOM);
            let n = sealer
                .seal_in_place(seq, &mut in_place, inner.len(), opened.next_header)
                .unwrap();
            assert_eq!(&in_place[..n], &original[..]);
        }
        // After the authenticated insert the packet is a replay.
        assert!(windows[&spi.0].check(seq).is_err());
    }

    // Eight pings, each answered with its own data.
    assert_eq!(requests.len(), 8);
    assert_eq!(requests, replies);
    assert_eq!(iv_masks.len(), 6);
}
