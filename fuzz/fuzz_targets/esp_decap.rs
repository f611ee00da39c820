//! ESP decapsulation of untrusted bytes: the ESP header view, the anti-replay window, the
//! opener with a fixed key, and the parsers the inner packet goes through (IPv6, ICMPv6, the
//! override Neighbor Advertisement). Nothing may panic; round trips must hold.
//!
//! The first input byte picks what the rest is:
//! - 0: an ESP packet off the wire (header view, window, open);
//! - 1: a plaintext ESP payload with any trailer, sealed with the fixed key so that it
//!   authenticates and the opener's padding checks and the inner parsers see it;
//! - 2: an inner packet sealed by `EspSealer`, then one byte flipped (must fail to open) and
//!   the original opened (must give the inner packet back);
//! - 3: a list of 32-bit sequence numbers for the replay window;
//! - other: an IPv6 packet for the inner parsers.
#![no_main]

use std::net::Ipv6Addr;
use std::sync::LazyLock;

use hometun_control::{AeadAlg, AeadKey, Spi};
use hometun_forwarder::aead::{AeadBackend, EspAead, new_aead};
use hometun_forwarder::esp::{EspOpener, EspSealer, HEADROOM};
use hometun_forwarder::replay::ReplayWindow;
use hometun_forwarder::wire::icmpv6::{emit_ipv6, emit_packet_too_big};
use hometun_forwarder::wire::{EspPacket, Icmpv6Packet, Icmpv6Repr, Ipv6Packet};
use libfuzzer_sys::fuzz_target;

const SPI: Spi = Spi(0x0102_0304);

static KEY: LazyLock<AeadKey> = LazyLock::new(|| {
    AeadKey::from_keymat(AeadAlg::AesGcm128, &[0x5a; 20]).expect("20 bytes for AES-128-GCM")
});
static AEAD: LazyLock<Box<dyn EspAead>> =
    LazyLock::new(|| new_aead(&KEY, AeadBackend::AwsLc).expect("valid key"));
static OPENER: LazyLock<EspOpener> =
    LazyLock::new(|| EspOpener::new(SPI, &KEY, false, AeadBackend::AwsLc).expect("valid key"));
static OPENER_ESN: LazyLock<EspOpener> =
    LazyLock::new(|| EspOpener::new(SPI, &KEY, true, AeadBackend::AwsLc).expect("valid key"));
static SEALER: LazyLock<EspSealer> =
    LazyLock::new(|| EspSealer::new(SPI, &KEY, false, AeadBackend::AwsLc).expect("valid key"));

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => wire_packet(rest),
        1 => authentic_payload(rest),
        2 => sealed_then_flipped(rest),
        3 => replay_sequence(rest),
        _ => inner_packet(rest),
    }
});

/// An ESP packet as it arrives: view, window (with some history), open in place.
fn wire_packet(bytes: &[u8]) {
    let Ok(esp) = EspPacket::new_checked(bytes) else {
        return;
    };
    let _ = esp.payload();
    for esn in [false, true] {
        let mut window = ReplayWindow::new(1024, esn);
        window.insert(5);
        window.insert(3000);
        let seq = window.infer_seq(esp.seq());
        if window.check(seq).is_err() {
            continue;
        }
        let opener = if esn { &*OPENER_ESN } else { &*OPENER };
        let mut buf = bytes.to_vec();
        if let Ok(opened) = opener.open(seq, &mut buf) {
            window.insert(seq);
            assert!(window.check(seq).is_err());
            inner_packet(&buf[opened.inner]);
        }
    }
}

/// `bytes` as the plaintext of an ESP payload (inner packet, padding, pad length, next header)
/// with a valid ICV, to reach what the opener does after authentication.
fn authentic_payload(bytes: &[u8]) {
    let seq: u32 = 7;
    let mut packet = Vec::with_capacity(HEADROOM + bytes.len() + 16);
    packet.extend_from_slice(&SPI.0.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    let iv = u64::from(seq).to_be_bytes();
    packet.extend_from_slice(&iv);
    packet.extend_from_slice(bytes);
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&KEY.salt());
    nonce[4..].copy_from_slice(&iv);
    let aad: [u8; 8] = packet[..8].try_into().expect("8 header bytes");
    let tag = AEAD.seal_in_place(&nonce, &aad, &mut packet[HEADROOM..]);
    packet.extend_from_slice(&tag);
    match OPENER.open(u64::from(seq), &mut packet) {
        Ok(opened) => {
            assert!(opened.inner.start == HEADROOM && opened.inner.end <= packet.len() - 16);
            assert_eq!(&packet[opened.inner.clone()], &bytes[..opened.inner.len()]);
            inner_packet(&packet[opened.inner]);
        }
        Err(err) => assert!(
            bytes.len() < 2 || err == hometun_forwarder::esp::OpenError::BadPadding,
            "authentic payload refused with {err:?}"
        ),
    }
}

/// Seal `bytes` (after a 2-byte flip position) as an inner packet; a flipped byte must fail
/// and the untouched packet must open to exactly `bytes`.
fn sealed_then_flipped(bytes: &[u8]) {
    let [hi, lo, inner @ ..] = bytes else {
        return;
    };
    let mut sealed = vec![0u8; EspSealer::sealed_len(inner.len())];
    let n = SEALER
        .seal(9, inner, 41, &mut sealed)
        .expect("buffer sized by sealed_len");
    let at = usize::from(u16::from_be_bytes([*hi, *lo])) % n;
    let mut flipped = sealed.clone();
    flipped[at] ^= 0x01;
    assert!(
        OPENER.open(9, &mut flipped).is_err(),
        "flipped byte {at} opened"
    );
    let opened = OPENER.open(9, &mut sealed).expect("own packet opens");
    assert_eq!(opened.next_header, 41);
    assert_eq!(&sealed[opened.inner], inner);
}

/// Sequence numbers through the window as the receive path uses it (every one authentic).
fn replay_sequence(bytes: &[u8]) {
    let Some((&flags, rest)) = bytes.split_first() else {
        return;
    };
    let mut window = ReplayWindow::new(u32::from(flags) * 64, flags & 1 == 1);
    for chunk in rest.chunks_exact(4) {
        let wire = u32::from_be_bytes(chunk.try_into().expect("4 bytes"));
        let seq = window.infer_seq(wire);
        assert_eq!(seq as u32, wire);
        let before = window.highest();
        if window.check(seq).is_ok() {
            window.insert(seq);
            assert!(window.check(seq).is_err());
            assert_eq!(window.highest(), before.max(seq));
        } else {
            assert_eq!(window.highest(), before);
        }
    }
}

/// An inner packet through the IPv6 and ICMPv6 parsers; what parses must emit back the same.
fn inner_packet(bytes: &[u8]) {
    let _ = emit_packet_too_big(
        "2001:db8::1".parse::<Ipv6Addr>().expect("literal"),
        1400,
        bytes,
        &mut [0u8; 1280],
    );
    let Ok(ip) = Ipv6Packet::new_checked(bytes) else {
        return;
    };
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let Ok(icmp) = Icmpv6Packet::new_checked(ip.payload()) else {
        return;
    };
    let Ok(repr) = Icmpv6Repr::parse(&src, &dst, &icmp) else {
        return;
    };
    let mut out = vec![0u8; 40 + repr.buffer_len()];
    let n = emit_ipv6(src, dst, ip.hop_limit(), &repr, &mut out).expect("sized by buffer_len");
    let again = Ipv6Packet::new_checked(&out[..n]).expect("emitted IPv6 parses");
    let icmp_again = Icmpv6Packet::new_checked(again.payload()).expect("emitted ICMPv6 parses");
    let reparsed = Icmpv6Repr::parse(&src, &dst, &icmp_again).expect("emitted message parses");
    match (repr, reparsed) {
        // A Packet Too Big keeps only what fits in 1280 bytes.
        (
            Icmpv6Repr::PacketTooBig { mtu, invoking },
            Icmpv6Repr::PacketTooBig {
                mtu: mtu2,
                invoking: invoking2,
            },
        ) => {
            assert_eq!(mtu, mtu2);
            assert!(invoking.starts_with(invoking2));
        }
        (a, b) => assert_eq!(a, b),
    }
}
