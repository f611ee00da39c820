//! The enrollment listener's request path from the first byte, as a connection delivers it: a
//! frame (length and body) answered by `EnrollmentServer::handle` against a real CA directory,
//! with or without a TLS client certificate. Token requests, renewals and garbage must get a
//! bundle or a typed refusal, never a panic; and a bundle only for what may have one: the
//! fixture's token (new.example) or the renewal of the fixture's certificate (home.example,
//! same prefix).
//!
//! Input: byte 0 bit 0 = the connection presented the fixture's client certificate, bit 1 = keep
//! what a bundle changed in the registry (the token used, the certificate superseded) for the
//! inputs after it, which then meet a used token or a superseded certificate; without it the
//! registry is put back, so that a later token or renewal reaches the issuance again. The rest
//! is what the home sent. Seeds: fuzz/corpus/enroll_request/, written by
//! `cargo run -p hometun-pki --example enroll_request_seeds -- fuzz/corpus/enroll_request`.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use hometun_pki::bundle::Bundle;
use hometun_pki::ca::KeyType;
use hometun_pki::enroll::protocol::{Message, frame_len};
use hometun_pki::enroll::server::{Caller, EnrollmentServer};
use hometun_pki::registry::TokenRecord;
use hometun_pki::server_dir::{InitOptions, ServerDir};
use hometun_pki::token::Token;
use ipnet::Ipv6Net;
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

/// The secret of the fixture's token (the seeds use it).
const SECRET: [u8; 32] = [0x42; 32];

struct Fixture {
    server: EnrollmentServer,
    home_certificate: Vec<u8>,
    home_prefix: Ipv6Net,
    now: OffsetDateTime,
    /// The registry file and its bytes before any input: a bundle uses up the token (or
    /// supersedes the home's certificate), after which every input would stop at "used" or
    /// "not current" before the CSR and the issuance; so a bundle puts the registry back
    /// unless the input says to keep it.
    registry: PathBuf,
    registry_before: Vec<u8>,
}

/// A directory of this process under the temporary directory; those of processes that have
/// ended are removed.
fn scratch() -> PathBuf {
    let base = std::env::temp_dir();
    let prefix = "hometun-fuzz-enroll-";
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix(prefix)
                && !std::path::Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = base.join(format!("{prefix}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let now = OffsetDateTime::now_utc();
        let dir = ServerDir::new(&scratch());
        dir.init(
            &InitOptions {
                server_ipv4: "192.0.2.1".parse().unwrap(),
                server_name: "vps.example".into(),
                pool: "2001:db8:100::/48".parse().unwrap(),
                prefix_len: 64,
                key: KeyType::Ed25519,
                grace_days: 30,
                enroll_port: 8443,
            },
            now,
        )
        .unwrap();
        dir.registry()
            .unwrap()
            .update(|data| {
                data.tokens.push(TokenRecord {
                    name: "new.example".into(),
                    secret_sha256: Token::secret_sha256(&SECRET),
                    created: now.unix_timestamp(),
                    expires: now.unix_timestamp() + 86_400,
                    used: None,
                    used_serial: None,
                });
                Ok(())
            })
            .unwrap();
        let key = KeyType::Ed25519.generate().unwrap();
        let csr = hometun_pki::csr::make_csr(&key, "home.example").unwrap();
        let issued = dir.sign(csr.as_bytes(), 730, now).unwrap();
        let registry = dir.registry().unwrap().location();
        let registry_before = std::fs::read(&registry).unwrap();
        Fixture {
            server: EnrollmentServer::new(dir.dir()).unwrap(),
            home_certificate: issued.bundle.certificate_der().unwrap().to_vec(),
            home_prefix: issued.record.prefix,
            now,
            registry,
            registry_before,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, wire)) = data.split_first() else {
        return;
    };
    let f = fixture();
    // What the listener does with the first bytes: a 4-byte length, then that many bytes.
    let Some(header) = wire.get(..4).and_then(|h| <[u8; 4]>::try_from(h).ok()) else {
        return;
    };
    let Ok(len) = frame_len(header) else {
        return;
    };
    let Some(body) = wire.get(4..4 + len) else {
        return;
    };
    let presented = flags & 1 == 1;
    let caller = Caller {
        address: "198.51.100.7:40000".parse().unwrap(),
        certificate: presented.then_some(f.home_certificate.as_slice()),
    };
    match f.server.handle(body, &caller, f.now) {
        Message::Bundle(text) => {
            let bundle = Bundle::parse(text.as_bytes()).expect("the server's bundle parses");
            match Message::parse(body) {
                Ok(Message::Request(r)) => {
                    assert_eq!(r.secret, SECRET, "a bundle without the token");
                    assert_eq!(bundle.name, "new.example");
                }
                Ok(Message::Renew(_)) => {
                    assert!(presented, "a renewal without the certificate");
                    assert_eq!(bundle.name, "home.example");
                    assert_eq!(bundle.prefix, f.home_prefix, "a renewal moved the home");
                }
                other => panic!("a bundle for {other:?}"),
            }
            if flags & 2 == 0 {
                std::fs::write(&f.registry, &f.registry_before).expect("the registry is put back");
            }
        }
        Message::Refused(_) => {}
        other => panic!("the server answered {other:?}"),
    }
});
