//! Helpers shared by the integration tests: real files in temporary directories.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use hometun_pki::ca::KeyType;
use hometun_pki::client_dir::ClientDir;
use hometun_pki::server_dir::{InitOptions, Issued, ServerDir};
use time::OffsetDateTime;

/// The DER of a CSR in PEM (as `ClientDir::request` returns it), as an enrollment request
/// carries it.
pub fn csr_der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject as _;
    rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub fn init_options(pool: &str, prefix_len: u8, key: KeyType) -> InitOptions {
    InitOptions {
        server_ipv4: "192.0.2.1".parse().unwrap(),
        server_name: "vps.example".into(),
        pool: pool.parse().unwrap(),
        prefix_len,
        key,
        grace_days: 30,
        enroll_port: 8443,
    }
}

/// A fresh CA directory.
pub fn server(dir: &Path, pool: &str, prefix_len: u8, key: KeyType) -> ServerDir {
    let s = ServerDir::new(dir);
    s.init(&init_options(pool, prefix_len, key), now()).unwrap();
    s
}

/// A fresh CA for 2001:db8:100::/48 in `dir/srv` (prefixes of `prefix_len`), and the home
/// `home.example` in `dir/home` with an Ed25519 key and a certificate signed for it (not yet
/// imported).
pub fn signed_home(dir: &Path, prefix_len: u8) -> (ServerDir, ClientDir, Issued) {
    let srv = server(
        &dir.join("srv"),
        "2001:db8:100::/48",
        prefix_len,
        KeyType::Ed25519,
    );
    let home = ClientDir::new(&dir.join("home"));
    home.request("home.example", KeyType::Ed25519).unwrap();
    let issued = srv
        .sign(&std::fs::read(home.csr()).unwrap(), 730, now())
        .unwrap();
    (srv, home, issued)
}

/// Runs a program and returns its stdout; panics with its stderr if it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether a program is installed; under CI=true a missing one is a failure, not a skip.
pub fn have(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{program} is not installed (scripts/install-deps.sh installs it)"
        );
        eprintln!("skipping: {program} is not installed");
    }
    found
}
