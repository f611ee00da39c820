//! AEAD micro-benchmark: AES-GCM seal and open of 1400-byte packets through each backend, then
//! whole ESP packets (`EspSealer::seal` / `EspOpener::open`, 1400-byte inner packet).
//!
//! `cargo bench -p hometun-forwarder --bench aead` prints ns/packet and Gbit/s for every
//! backend, how long each takes against aws-lc's, and which of aws-lc and ring the forwarder's
//! start-up timing picks here (`AeadBackend::fastest`, what `--aead auto` uses).
//! `OPENSSL_ia32cap=~0x0:~0x10000` hides AVX-512 from aws-lc, as on a CPU without it.
#![allow(clippy::unwrap_used, missing_docs)]
// A benchmark is a driver that must read the clock.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use hometun_control::{AeadAlg, AeadKey, Spi};
use hometun_forwarder::aead::{AeadBackend, EspAead, new_aead};
use hometun_forwarder::esp::{EspOpener, EspSealer};

const PACKET: usize = 1400;
const AAD: [u8; 8] = [0x12, 0x34, 0x56, 0x78, 0, 0, 0, 1];
const MEASURE: Duration = Duration::from_millis(700);

/// Runs `f` in batches until `MEASURE` has passed; returns ns per call.
fn time_per_call(mut f: impl FnMut()) -> f64 {
    for _ in 0..1000 {
        f();
    }
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < MEASURE {
        for _ in 0..1000 {
            f();
        }
        calls += 1000;
    }
    start.elapsed().as_nanos() as f64 / calls as f64
}

fn report(what: &str, ns: f64) {
    let gbps = (PACKET * 8) as f64 / ns;
    println!("{what:<40} {ns:>9.1} ns/packet {gbps:>7.2} Gbit/s");
}

fn seal(aead: &dyn EspAead) -> f64 {
    let mut buf = vec![0x5au8; PACKET];
    let mut counter = 0u64;
    time_per_call(|| {
        counter += 1;
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&counter.to_be_bytes());
        let tag = aead.seal_in_place(&nonce, &AAD, black_box(&mut buf));
        black_box(tag);
    })
}

fn open(aead: &dyn EspAead) -> f64 {
    let nonce = [9u8; 12];
    let mut sealed = vec![0x5au8; PACKET];
    let tag = aead.seal_in_place(&nonce, &AAD, &mut sealed);
    let mut buf = sealed.clone();
    time_per_call(|| {
        buf.copy_from_slice(black_box(&sealed));
        aead.open_in_place(&nonce, &AAD, black_box(&mut buf), &tag)
            .unwrap();
    })
}

fn main() {
    println!("AES-GCM, {PACKET}-byte packets, 8-byte AAD, one thread");
    let copy = {
        let src = vec![1u8; PACKET];
        let mut dst = vec![0u8; PACKET];
        time_per_call(|| black_box(&mut dst).copy_from_slice(black_box(&src)))
    };
    for (alg, keymat_len) in [(AeadAlg::AesGcm128, 20), (AeadAlg::AesGcm256, 36)] {
        let key = AeadKey::from_keymat(alg, &vec![0x42; keymat_len]).unwrap();
        let mut timings = Vec::new();
        for backend in AeadBackend::ALL {
            let aead = new_aead(&key, backend).unwrap();
            let s = seal(aead.as_ref());
            let o = open(aead.as_ref()) - copy;
            report(&format!("{} {backend:?} seal", alg.name()), s);
            report(&format!("{} {backend:?} open", alg.name()), o);
            timings.push((backend, s, o));
        }
        let (_, default_seal, default_open) = timings[0];
        for (backend, s, o) in &timings[1..] {
            println!(
                "{}: {backend:?} takes {:.2}x aws-lc's time to seal, {:.2}x to open",
                alg.name(),
                s / default_seal,
                o / default_open
            );
        }
    }
    println!("(open figures exclude the {copy:.1} ns memcpy that restores the ciphertext)");
    let (chosen, timings) = AeadBackend::fastest();
    println!(
        "start-up timing picks {chosen:?} ({:?} {:?}, {:?} {:?} to seal and open a packet)",
        timings[0].0, timings[0].1, timings[1].0, timings[1].1
    );

    println!("ESP tunnel mode, {PACKET}-byte inner packet, aes128gcm16, one thread");
    let key = AeadKey::from_keymat(AeadAlg::AesGcm128, &[0x42; 20]).unwrap();
    for backend in AeadBackend::ALL {
        let sealer = EspSealer::new(Spi(0x1234_5678), &key, false, backend).unwrap();
        let opener = EspOpener::new(Spi(0x1234_5678), &key, false, backend).unwrap();
        let inner = vec![0x5au8; PACKET];
        let mut out = vec![0u8; EspSealer::sealed_len(PACKET)];
        let mut seq = 0u64;
        let s = time_per_call(|| {
            seq += 1;
            let n = sealer.seal(seq, black_box(&inner), 41, &mut out).unwrap();
            black_box(&out[..n]);
        });
        report(&format!("EspSealer::seal {backend:?}"), s);
        let mut buf = vec![0u8; EspSealer::sealed_len(PACKET)];
        let mut in_place_seq = 0u64;
        let s = time_per_call(|| {
            in_place_seq += 1;
            let n = sealer
                .seal_in_place(in_place_seq, black_box(&mut buf), PACKET, 41)
                .unwrap();
            black_box(n);
        });
        report(&format!("EspSealer::seal_in_place {backend:?}"), s);
        let sealed = out.clone();
        let mut work = sealed.clone();
        let o = time_per_call(|| {
            work.copy_from_slice(black_box(&sealed));
            let opened = opener.open(seq, black_box(&mut work)).unwrap();
            black_box(opened);
        }) - copy;
        report(&format!("EspOpener::open {backend:?}"), o);
    }
}
