//! Enrollments per second and prefix allocations per second of the registry, on the file and
//! on PostgreSQL (a throwaway server from the lab) in the same run; run by bench/registry.sh.
//!
//! - enrollment: `ServerDir::sign_with_token` (token check, CSR check, allocation, signing,
//!   recording), from THREADS threads, one token per home;
//! - allocation: one registry change that takes the next free prefix and records it, from
//!   THREADS threads (what enrollment costs the registry, without the signing).

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::Path;
use std::time::Instant;

use hometun_lab::postgres_lab::PostgresLab;
use hometun_pki::ca::KeyType;
use hometun_pki::client_dir::ClientDir;
use hometun_pki::registry::ClientRecord;
use hometun_pki::server_dir::{InitOptions, ServerDir};
use time::OffsetDateTime;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn init(dir: &Path, url: Option<String>) -> ServerDir {
    let ca = ServerDir::with_registry_url(dir, url);
    ca.init(
        &InitOptions {
            server_ipv4: "192.0.2.1".parse().unwrap(),
            server_name: "vps.example".into(),
            pool: "2001:db8::/32".parse().unwrap(),
            prefix_len: 64,
            key: KeyType::Ed25519,
            grace_days: 30,
            enroll_port: 8443,
        },
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    ca
}

/// Enrollments per second of `count` homes from `threads` threads.
fn enrollments(ca: &ServerDir, homes: &Path, count: usize, threads: usize) -> f64 {
    let work: Vec<(Vec<u8>, [u8; 32])> = (0..count)
        .map(|i| {
            let name = format!("home{i}.example");
            let (csr, _) = ClientDir::new(&homes.join(&name))
                .request(&name, KeyType::Ed25519)
                .unwrap();
            let token = ca
                .make_token(
                    &name,
                    60,
                    Some("192.0.2.1:8443".parse().unwrap()),
                    OffsetDateTime::now_utc(),
                )
                .unwrap();
            (csr.into_bytes(), token.secret)
        })
        .collect();
    let work = std::sync::Arc::new(work);
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (ca, work) = (ca.clone(), work.clone());
            std::thread::spawn(move || {
                for (csr, secret) in work.iter().skip(t).step_by(threads) {
                    ca.sign_with_token(csr, secret, OffsetDateTime::now_utc())
                        .unwrap();
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    count as f64 / started.elapsed().as_secs_f64()
}

/// Prefix allocations per second: `count` changes from `threads` threads.
fn allocations(ca: &ServerDir, count: usize, threads: usize) -> f64 {
    let registry = ca.registry().unwrap();
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let registry = registry.clone();
            std::thread::spawn(move || {
                for i in (t..count).step_by(threads) {
                    registry
                        .update(|d| {
                            let prefix = d.next_free_prefix(0)?;
                            d.clients.push(ClientRecord {
                                name: format!("alloc{i}.example"),
                                prefix,
                                serial: format!("a{i:08x}"),
                                issued: 0,
                                not_after: i64::MAX,
                                certificate: String::new(),
                                revoked: None,
                                superseded: None,
                            });
                            Ok(())
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    count as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let count = arg(1, 200);
    let threads = arg(2, 4);
    // fsync on, as the file registry fsyncs each change.
    let pg = PostgresLab::start_with_fsync(true).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    println!(
        "registry benchmark: {count} enrollments, then {count} allocations, {threads} threads"
    );
    println!(
        "{:<12} {:>16} {:>20}",
        "backend", "enrollments/s", "allocations/s"
    );
    for (backend, url) in [
        ("file", None),
        ("postgresql", Some(pg.create_database().unwrap())),
    ] {
        let ca = init(&tmp.path().join(backend), url);
        let enrolled = enrollments(
            &ca,
            &tmp.path().join(format!("{backend}-homes")),
            count,
            threads,
        );
        let allocated = allocations(&ca, count, threads);
        println!("{backend:<12} {enrolled:>16.0} {allocated:>20.0}");
    }
}
