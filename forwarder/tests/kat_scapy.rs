//! ESP interop with an independent implementation: Scapy's `scapy.layers.ipsec` (Debian's
//! python3-scapy, run by `/usr/bin/python3`). Scapy seals tunnel-mode AES-GCM packets that our
//! opener must open, opens the packets our sealer makes, and, given the same IV, produces the
//! same bytes. Skips with a printed reason where Scapy is missing, unless `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write;
use std::net::Ipv6Addr;
use std::process::{Command, Stdio};

use hometun_control::{AeadAlg, AeadKey, Spi};
use hometun_forwarder::aead::AeadBackend;
use hometun_forwarder::esp::{EspOpener, EspSealer, NEXT_HEADER_IPV6};
use hometun_forwarder::wire::Icmpv6Repr;
use hometun_forwarder::wire::icmpv6::emit_ipv6;

const PYTHON: &str = "/usr/bin/python3";

/// Reads commands from stdin, one a line: `seal|open SPI KEY+SALT ESN SEQ HEX`, and prints one
/// line each: the ESP packet (SPI to ICV) for `seal`, the inner packet for `open`, or
/// `AUTHFAIL`. The IV given to Scapy is the 64-bit sequence number, as ours.
const SCRIPT: &str = r#"
import sys
from scapy.compat import raw
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import ESP, IPSecIntegrityError, SecurityAssociation

for line in sys.stdin:
    op, spi, key, esn, seq, data = line.split()
    spi, seq = int(spi, 16), int(seq)
    key, data = bytes.fromhex(key), bytes.fromhex(data)
    esn_en = esn == "1"
    sa = SecurityAssociation(
        ESP, spi=spi, seq_num=seq & 0xFFFFFFFF, crypt_algo="AES-GCM", crypt_key=key,
        auth_algo="NULL", tunnel_header=IP(src="192.0.2.1", dst="192.0.2.2"),
        esn_en=esn_en, esn=seq >> 32)
    if op == "seal":
        p = sa.encrypt(IPv6(data), seq_num=seq & 0xFFFFFFFF, iv=seq.to_bytes(8, "big"))
        print(raw(p[ESP]).hex(), flush=True)
    else:
        outer = IP(raw(IP(src="192.0.2.2", dst="192.0.2.1", proto=50) / data))
        try:
            print(raw(sa.decrypt(outer)).hex(), flush=True)
        except IPSecIntegrityError:
            print("AUTHFAIL", flush=True)
"#;

/// Whether Scapy with AES-GCM support is there; prints why not.
fn scapy_available() -> bool {
    let probe = Command::new(PYTHON)
        .args([
            "-c",
            "import scapy.layers.ipsec as m; assert 'AES-GCM' in m.CRYPT_ALGOS",
        ])
        .output();
    match probe {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            let why = format!(
                "{PYTHON} cannot use scapy.layers.ipsec AES-GCM: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{why} (CI=true: install python3-scapy, see scripts/install-deps.sh)");
            }
            eprintln!("skipping Scapy interop test: {why}");
            false
        }
        Err(err) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("cannot run {PYTHON}: {err}");
            }
            eprintln!("skipping Scapy interop test: cannot run {PYTHON}: {err}");
            false
        }
    }
}

/// Runs all `commands` through one Scapy process; returns its output lines.
fn scapy(commands: &[String]) -> Vec<String> {
    let mut child = Command::new(PYTHON)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        for command in commands {
            writeln!(stdin, "{command}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "scapy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), commands.len());
    lines
}

/// An ICMPv6 echo request from 2001:db8:1::2 to 2001:db8:ffff::1 with `data_len` data bytes.
fn inner_packet(data_len: usize, seq_no: u16) -> Vec<u8> {
    let data: Vec<u8> = (0..data_len).map(|i| (i * 13 + 5) as u8).collect();
    let repr = Icmpv6Repr::EchoRequest {
        ident: 0x4854,
        seq_no,
        data: &data,
    };
    let mut out = vec![0u8; 48 + data_len];
    let src: Ipv6Addr = "2001:db8:1::2".parse().unwrap();
    let dst: Ipv6Addr = "2001:db8:ffff::1".parse().unwrap();
    let n = emit_ipv6(src, dst, 64, &repr, &mut out).unwrap();
    assert_eq!(n, out.len());
    out
}

struct Case {
    key: AeadKey,
    keymat: Vec<u8>,
    spi: Spi,
    esn: bool,
    seq: u64,
    inner: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut n = 0u64;
    for (alg, keymat_len) in [(AeadAlg::AesGcm128, 20), (AeadAlg::AesGcm256, 36)] {
        let keymat: Vec<u8> = (0..keymat_len).map(|i| (i * 7 + 0x31) as u8).collect();
        let key = AeadKey::from_keymat(alg, &keymat).unwrap();
        for esn in [false, true] {
            // Data lengths that give each of the four padding lengths, and a large packet.
            for data_len in [0usize, 1, 2, 3, 4, 57, 1352] {
                n += 1;
                let seq = if esn {
                    (3u64 << 32) | (100 + n)
                } else {
                    100 + n
                };
                cases.push(Case {
                    key: key.clone(),
                    keymat: keymat.clone(),
                    spi: Spi(0xc0de_0000 + n as u32),
                    esn,
                    seq,
                    inner: inner_packet(data_len, n as u16),
                });
            }
        }
    }
    cases
}

fn command(op: &str, case: &Case, data: &[u8]) -> String {
    format!(
        "{op} {:08x} {} {} {} {}",
        case.spi.0,
        hex::encode(&case.keymat),
        u8::from(case.esn),
        case.seq,
        hex::encode(data)
    )
}

#[test]
fn scapy_interop() {
    if !scapy_available() {
        return;
    }
    let cases = cases();
    let backends = AeadBackend::ALL;

    // Our sealer's output, for Scapy to open (and a tampered copy it must refuse).
    let mut ours = Vec::new();
    let mut commands = Vec::new();
    for case in &cases {
        commands.push(command("seal", case, &case.inner));
        for backend in backends {
            let sealer = EspSealer::new(case.spi, &case.key, case.esn, backend).unwrap();
            let mut out = vec![0u8; EspSealer::sealed_len(case.inner.len())];
            let len = sealer
                .seal(case.seq, &case.inner, NEXT_HEADER_IPV6, &mut out)
                .unwrap();
            out.truncate(len);
            commands.push(command("open", case, &out));
            let mut tampered = out.clone();
            let last = tampered.len() - 1;
            tampered[last / 2] ^= 0x04;
            commands.push(command("open", case, &tampered));
            ours.push(out);
        }
    }
    let answers = scapy(&commands);

    let mut answers = answers.into_iter();
    let mut ours = ours.into_iter();
    for case in &cases {
        let from_scapy = hex::decode(answers.next().unwrap()).unwrap();
        for backend in backends {
            let our_packet = ours.next().unwrap();
            // Same key, SPI, sequence number and IV: the same bytes.
            assert_eq!(
                hex::encode(&our_packet),
                hex::encode(&from_scapy),
                "seal, spi {} esn {} {backend:?}",
                case.spi,
                case.esn
            );
            // Scapy opens ours...
            assert_eq!(
                answers.next().unwrap(),
                hex::encode(&case.inner),
                "scapy open, spi {}",
                case.spi
            );
            assert_eq!(answers.next().unwrap(), "AUTHFAIL");
            // ...and we open Scapy's.
            let opener = EspOpener::new(case.spi, &case.key, case.esn, backend).unwrap();
            let mut buf = from_scapy.clone();
            let opened = opener.open(case.seq, &mut buf).unwrap();
            assert_eq!(opened.next_header, NEXT_HEADER_IPV6);
            assert_eq!(
                &buf[opened.inner],
                &case.inner[..],
                "open, spi {}",
                case.spi
            );
        }
    }
}

#[test]
fn scapy_random_iv_packets_open() {
    // Scapy's default IV is random, not the sequence number: the opener must take the IV from
    // the packet, whatever it is.
    if !scapy_available() {
        return;
    }
    let cases = cases();
    let script = SCRIPT.replace(", iv=seq.to_bytes(8, \"big\")", "");
    let commands: Vec<String> = cases
        .iter()
        .map(|case| command("seal", case, &case.inner))
        .collect();
    let mut child = Command::new(PYTHON)
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        for command in &commands {
            writeln!(stdin, "{command}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), cases.len());
    for (case, line) in cases.iter().zip(lines) {
        let mut packet = hex::decode(line).unwrap();
        assert_ne!(&packet[8..16], &case.seq.to_be_bytes(), "IV is random");
        let opener = EspOpener::new(case.spi, &case.key, case.esn, AeadBackend::Ring).unwrap();
        let opened = opener.open(case.seq, &mut packet).unwrap();
        assert_eq!(&packet[opened.inner], &case.inner[..]);
    }
}
