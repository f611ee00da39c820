//! The registry under real processes: several `sign` loops at once never share a prefix, and
//! processes killed (SIGKILL) at random moments in the middle of signing leave neither a
//! half-allocated nor a lost prefix.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use common::{now, server};
use hometun_certs::addrblock::prefixes_from_certificate;
use hometun_pki::bundle::Bundle;
use hometun_pki::ca::KeyType;
use hometun_pki::client_dir::ClientDir;
use hometun_pki::files;
use hometun_pki::server_dir::ServerDir;
use rustls_pki_types::UnixTime;

const CHILD_DIR: &str = "HOMETUN_PKI_CHILD_DIR";
const CHILD_ID: &str = "HOMETUN_PKI_CHILD_ID";
const CHILD_COUNT: &str = "HOMETUN_PKI_CHILD_COUNT";

/// Not a test of its own: the body of the child processes the tests below start (they run
/// this test binary with `--ignored --exact sign_loop_child`). Without the environment the
/// tests set, it does nothing.
#[test]
#[ignore = "child process body of the crash and concurrency tests"]
fn sign_loop_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let dir = Path::new(&dir);
    let id = std::env::var(CHILD_ID).unwrap();
    let count: usize = std::env::var(CHILD_COUNT)
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(usize::MAX);
    let srv = ServerDir::new(&dir.join("srv"));
    for i in 0..count {
        let name = format!("c{id}-{i}.example");
        let home = ClientDir::new(&dir.join("homes").join(&name));
        let (csr, _) = home.request(&name, KeyType::Ed25519).unwrap();
        let issued = srv.sign(csr.as_bytes(), 730, now()).unwrap();
        // The registry commit happened; the bundle is written after it (a kill in between
        // leaves a recorded certificate whose bundle `pki export` writes again).
        files::write_atomic(
            &dir.join("bundles").join(format!("{name}.bundle")),
            issued.bundle.to_toml().as_bytes(),
            files::PUBLIC_MODE,
        )
        .unwrap();
    }
}

fn spawn_child(dir: &Path, id: usize, count: Option<usize>) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--ignored",
        "--exact",
        "sign_loop_child",
        "--test-threads=1",
        "--quiet",
    ])
    .env(CHILD_DIR, dir)
    .env(CHILD_ID, id.to_string())
    .stdout(std::process::Stdio::null());
    if let Some(c) = count {
        cmd.env(CHILD_COUNT, c.to_string());
    }
    cmd.spawn().unwrap()
}

/// Kills the children if a test fails half-way.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn setup(pool: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    server(&tmp.path().join("srv"), pool, 64, KeyType::Ed25519);
    std::fs::create_dir_all(tmp.path().join("bundles")).unwrap();
    tmp
}

/// Checks the registry's invariants and returns the number of records.
fn check_registry(dir: &Path) -> usize {
    let srv = ServerDir::new(&dir.join("srv"));
    let data = srv
        .registry()
        .unwrap()
        .load()
        .expect("registry is never torn");
    let store = hometun_pki::files::trust_store(&srv.ca_cert(), None).unwrap();
    let mut indices = Vec::new();
    let mut names = HashSet::new();
    let mut by_name = BTreeMap::new();
    for c in &data.clients {
        // No half-allocation: every record carries its complete certificate, and the
        // certificate carries the recorded prefix and verifies.
        let der = files::certificates_from_pem(c.certificate.as_bytes()).unwrap();
        assert_eq!(der.len(), 1, "{}", c.name);
        assert_eq!(prefixes_from_certificate(&der[0]).unwrap(), [c.prefix]);
        store.verify_client(&der[0], &[], UnixTime::now()).unwrap();
        assert!(names.insert(c.name.clone()), "{} recorded twice", c.name);
        let index = (u128::from(c.prefix.network()) - u128::from(data.pool.network())) >> 64;
        indices.push(index);
        by_name.insert(c.name.clone(), c.serial.clone());
    }
    indices.sort_unstable();
    // Never twice, and none lost: exactly 1..=n.
    let expected: Vec<u128> = (1..=indices.len() as u128).collect();
    assert_eq!(indices, expected, "prefixes are unique and contiguous");
    // Every bundle on disk belongs to a recorded certificate.
    for entry in std::fs::read_dir(dir.join("bundles")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // a temporary of a killed writer, never read
        }
        let bundle = Bundle::parse(&std::fs::read(&path).unwrap()).unwrap();
        let serial = by_name
            .get(&bundle.name)
            .expect("bundle of a recorded client");
        let cert = bundle.certificate_der().unwrap();
        let peer = hometun_certs::verify::describe(&cert).unwrap();
        assert_eq!(&hometun_pki::ca::serial_hex(&peer.serial), serial);
    }
    data.clients.len()
}

#[test]
fn concurrent_processes_never_share_a_prefix() {
    let tmp = setup("2001:db8:100::/48");
    let mut children = Children(
        (0..4)
            .map(|id| spawn_child(tmp.path(), id, Some(8)))
            .collect(),
    );
    for c in &mut children.0 {
        assert!(c.wait().unwrap().success());
    }
    children.0.clear();
    assert_eq!(check_registry(tmp.path()), 32);
}

#[test]
fn killing_signers_mid_way_loses_and_duplicates_nothing() {
    let tmp = setup("2001:db8:100::/48");
    // Deterministic but varied kill times.
    let mut delay: u64 = 37;
    for round in 0..6 {
        let mut children = Children(
            (0..3)
                .map(|id| spawn_child(tmp.path(), round * 10 + id, None))
                .collect(),
        );
        delay = (delay * 7919 + 13) % 400;
        std::thread::sleep(Duration::from_millis(150 + delay));
        for c in &mut children.0 {
            c.kill().unwrap(); // SIGKILL: no cleanup, lock released by the kernel
            c.wait().unwrap();
        }
        children.0.clear();
        check_registry(tmp.path());
    }
    let n = check_registry(tmp.path());
    assert!(n > 0, "the children signed nothing before being killed");
    let bundles = std::fs::read_dir(tmp.path().join("bundles"))
        .unwrap()
        .count();
    eprintln!("{n} certificates recorded, {bundles} bundle files, after 18 kills");
    // After all the kills, signing goes on with the next prefix and no stale lock.
    let srv = ServerDir::new(&tmp.path().join("srv"));
    let home = ClientDir::new(&tmp.path().join("after"));
    let (csr, _) = home.request("after.example", KeyType::Ed25519).unwrap();
    let issued = srv.sign(csr.as_bytes(), 730, now()).unwrap();
    let index = (u128::from(issued.record.prefix.network())
        - u128::from(srv.registry().unwrap().load().unwrap().pool.network()))
        >> 64;
    assert_eq!(index, n as u128 + 1);
    // A recorded certificate whose bundle was lost to a kill can be exported again.
    let data = srv.registry().unwrap().load().unwrap();
    for c in &data.clients {
        assert_eq!(srv.export(&c.name).unwrap().prefix, c.prefix);
    }
}
