//! Arbitrary datagrams (and the passing of time) fed to a responder `Endpoint`: it must never
//! panic, whatever arrives; everything it sends must parse; the half-open bound must hold. The
//! endpoint hands its key derivation and signature work out as jobs, as the daemon's does.
//!
//! Input: a sequence of records. A tag byte; tag % 4 == 0 advances the clock by the next
//! byte x 100 ms and fires the timers, otherwise a datagram follows (2-byte length, then the
//! bytes) from one of four sources (tag bits 2-3) on port 500 or 4500 (tag bit 7). The jobs
//! handed out run after each record, unless its tag bit 6 holds them (until a record without).
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hometun_control::Limits;
use hometun_ike::crypto::{CertificateVerifier, PeerIdentity, PrivateKey, VerifiedPeer};
use hometun_ike::endpoint::{
    Authorizer, CommonConfig, Endpoint, Now, PrefixRefusal, Random, ResponderConfig,
};
use hometun_ike::proposal::{EspProposal, IkeProposal};
use hometun_ike::wire::Message;
use ipnet::Ipv6Net;
use libfuzzer_sys::fuzz_target;

/// A reproducible generator: the same input always meets the same SPIs and nonces.
struct Counter(u64);

impl Random for Counter {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (self.0 >> 56) as u8;
        }
    }
}

struct Everyone;

impl Authorizer for Everyone {
    fn prefixes(&self, _: &PeerIdentity, _: &VerifiedPeer) -> Result<Vec<Ipv6Net>, PrefixRefusal> {
        Ok(vec!["2001:db8:1::/64".parse().expect("prefix")])
    }
}

/// CA certificate, server certificate and key, made once per process.
fn credentials() -> &'static (Vec<u8>, Vec<u8>, Vec<u8>) {
    static CREDS: OnceLock<(Vec<u8>, Vec<u8>, Vec<u8>)> = OnceLock::new();
    CREDS.get_or_init(|| {
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).expect("CA");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        let leaf = rcgen::CertificateParams::new(vec!["vps.example".to_string()]).expect("params");
        let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
        let leaf = leaf.signed_by(&key, &issuer).expect("leaf");
        (
            ca_cert.der().to_vec(),
            leaf.der().to_vec(),
            key.serialize_der(),
        )
    })
}

fn responder(now: Now, rng: &mut Counter) -> Endpoint {
    let (ca, leaf, key) = credentials();
    let common = CommonConfig {
        chain: vec![leaf.clone()],
        key: std::sync::Arc::new(PrivateKey::from_der(key).expect("key")),
        identity: PeerIdentity::Fqdn("vps.example".into()),
        verifier: std::sync::Arc::new(CertificateVerifier::from_ca_der(&[ca]).expect("CA")),
        ike_proposals: vec![
            IkeProposal::parse("aes128gcm16-aes256gcm16-prfsha256-x25519-ecp256").expect("ike"),
        ],
        esp_proposals: vec![EspProposal::parse("aes128gcm16-aes256gcm16").expect("esp")],
        limits: Limits::default(),
        ike_rekey: hometun_ike::settings::IkeRekeyPolicy::default(),
        replay_window: 1024,
        nat_keepalive_seconds: 20,
        retransmit_base: Duration::from_secs(1),
        retransmit_tries: 3,
        dpd: Some(Duration::from_secs(30)),
        reconnect_max: Duration::from_secs(30),
        ike_port: 500,
        nat_port: 4500,
    };
    Endpoint::responder(
        ResponderConfig {
            common,
            local_addr: Ipv4Addr::new(192, 0, 2, 1),
            authorizer: Box::new(Everyone),
            cookie_threshold: 4,
            half_open_per_source: 3,
            half_open_total: 8,
            new_ike_sas_per_identity: 5,
        },
        now,
        rng,
    )
}

fuzz_target!(|data: &[u8]| {
    // The base is read once per input; the endpoint only ever sees base + offset.
    #[allow(clippy::disallowed_methods)]
    let base = Instant::now();
    let wall = UNIX_EPOCH + Duration::from_secs(1_830_000_000);
    let mut offset = Duration::ZERO;
    let now = |offset: Duration| Now {
        mono: base + offset,
        wall: wall + offset,
    };
    let mut rng = Counter(1);
    let mut endpoint = responder(now(offset), &mut rng);
    endpoint.defer_crypto(true);
    let mut held = Vec::new();
    let _ = SystemTime::UNIX_EPOCH;
    let mut rest = data;
    while let Some((&tag, tail)) = rest.split_first() {
        rest = tail;
        if tag % 4 == 0 {
            let Some((&step, tail)) = rest.split_first() else {
                break;
            };
            rest = tail;
            offset += Duration::from_millis(100) * u32::from(step);
            endpoint.handle_timeout(now(offset), &mut rng);
        } else {
            let Some((len, tail)) = rest.split_first_chunk::<2>() else {
                break;
            };
            let len = usize::from(u16::from_be_bytes(*len)).min(tail.len());
            let (datagram, tail) = tail.split_at(len);
            rest = tail;
            let port = if tag & 0x80 != 0 { 4500 } else { 500 };
            let source = Ipv4Addr::new(198, 51, 100, 2 + ((tag >> 2) & 3));
            endpoint.handle_datagram(
                now(offset),
                SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), port),
                SocketAddrV4::new(source, port),
                datagram,
                &mut rng,
            );
        }
        // A finished job may hand out the next (keys, then the IKE_AUTH that waited for them).
        loop {
            held.extend(std::iter::from_fn(|| endpoint.poll_crypto_job()));
            if tag & 0x40 != 0 || held.is_empty() {
                break;
            }
            for job in held.drain(..) {
                endpoint.handle_crypto_done(now(offset), job.run(), &mut rng);
            }
        }
        while let Some(transmit) = endpoint.poll_transmit() {
            assert!(
                Message::parse(&transmit.data).is_ok(),
                "the responder sent a message that does not parse"
            );
        }
        while endpoint.poll_output().is_some() {}
        let counters = endpoint.counters();
        assert!(counters.half_open <= 8, "half-open bound broken");
    }
    let _ = endpoint.status(now(offset));
});
