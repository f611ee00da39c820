//! Writes the seed corpus of the `enroll_request` fuzz target: real requests, framed as
//! `hometun enroll` and `hometun renew` send them, each behind the target's flag byte (bit 0:
//! the connection presented the fixture's client certificate).
//!
//! `cargo run -p hometun-pki --example enroll_request_seeds -- fuzz/corpus/enroll_request`

use std::path::PathBuf;

use hometun_pki::ca::KeyType;
use hometun_pki::csr::make_csr;
use hometun_pki::enroll::protocol::{Message, RenewRequest, Request};
use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject;

/// The fuzz target's token secret (fuzz/fuzz_targets/enroll_request.rs).
const SECRET: [u8; 32] = [0x42; 32];

fn csr(name: &str, key: KeyType) -> anyhow::Result<Vec<u8>> {
    let pem = make_csr(&key.generate()?, name)?;
    Ok(CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())?.to_vec())
}

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus/enroll_request".into()),
    );
    std::fs::create_dir_all(&dir)?;
    let request = |secret, csr_der| Message::Request(Request { secret, csr_der });
    let renew = |csr_der| Message::Renew(RenewRequest { csr_der });
    let ed = KeyType::Ed25519;
    let seeds = [
        ("token-request", 0, request(SECRET, csr("new.example", ed)?)),
        (
            "token-request-p256",
            0,
            request(SECRET, csr("new.example", KeyType::P256)?),
        ),
        ("wrong-token", 0, request([7; 32], csr("new.example", ed)?)),
        (
            "token-other-name",
            0,
            request(SECRET, csr("other.example", ed)?),
        ),
        ("renew", 1, renew(csr("home.example", ed)?)),
        ("renew-p256", 1, renew(csr("home.example", KeyType::P256)?)),
        ("renew-unauthenticated", 0, renew(csr("home.example", ed)?)),
        ("renew-other-name", 1, renew(csr("other.example", ed)?)),
        ("bundle-instead", 0, Message::Bundle("format = 1".into())),
    ];
    for (name, flags, message) in seeds {
        let mut bytes = vec![flags];
        bytes.extend(message.to_frame()?);
        std::fs::write(dir.join(name), bytes)?;
    }
    println!("seeds in {}", dir.display());
    Ok(())
}
