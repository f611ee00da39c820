//! Two enrollment servers of one CA on one PostgreSQL registry enroll 2 x 200 homes at the
//! same time. Every token is tried on both servers at once: exactly one succeeds, and no
//! prefix is handed out twice.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use hometun_lab::postgres_lab::{PostgresLab, require_postgres};
use hometun_lab::registry_lab::init_shared_ca;
use hometun_pki::ca::KeyType;
use hometun_pki::client_dir::ClientDir;
use hometun_pki::server_dir::ServerDir;
use time::OffsetDateTime;

const HOMES: usize = 400;
const THREADS_PER_SERVER: usize = 8;

#[test]
fn two_servers_enroll_400_homes_no_prefix_or_token_twice() {
    if !require_postgres("two_servers_enroll_400_homes_no_prefix_or_token_twice") {
        return;
    }
    let pg = PostgresLab::start().unwrap();
    let url = pg.create_database().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let a_dir = tmp.path().join("a");
    init_shared_ca(&a_dir, &url).unwrap();
    // The second enrollment server: a copy of the CA directory (it signs, so it has the key),
    // with its own connections to the same database.
    let b_dir = tmp.path().join("b");
    std::fs::create_dir(&b_dir).unwrap();
    for f in [
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "server.toml",
        "crl.pem",
    ] {
        std::fs::copy(a_dir.join(f), b_dir.join(f)).unwrap();
    }
    let servers = [ServerDir::new(&a_dir), ServerDir::new(&b_dir)];
    let server_addr = "192.0.2.1:8443".parse().unwrap();

    // Half the tokens are made on each server; each home has its key and CSR.
    let homes: Vec<(String, Vec<u8>, [u8; 32])> = (0..HOMES)
        .map(|i| {
            let name = format!("home{i}.example");
            let dir = ClientDir::new(&tmp.path().join(format!("home{i}")));
            let (csr, _) = dir.request(&name, KeyType::Ed25519).unwrap();
            let token = servers[i % 2]
                .make_token(&name, 60, Some(server_addr), OffsetDateTime::now_utc())
                .unwrap();
            (name, csr.into_bytes(), token.secret)
        })
        .collect();
    let homes = Arc::new(homes);

    // Both servers go through every home in the same order, each with its own threads, so
    // that the two requests with one token race.
    let started = Instant::now();
    let workers: Vec<_> = (0..2)
        .flat_map(|s| (0..THREADS_PER_SERVER).map(move |t| (s, t)))
        .map(|(s, t)| {
            let server = servers[s].clone();
            let homes = Arc::clone(&homes);
            std::thread::spawn(move || {
                let mut outcomes = Vec::new();
                for i in (t..HOMES).step_by(THREADS_PER_SERVER) {
                    let (name, csr, secret) = &homes[i];
                    let result = server.sign_with_token(csr, secret, OffsetDateTime::now_utc());
                    outcomes.push((i, name.clone(), result.map(|issued| issued.record)));
                }
                outcomes
            })
        })
        .collect();
    let outcomes: Vec<_> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let took = started.elapsed();
    assert_eq!(outcomes.len(), 2 * HOMES);

    let mut successes = vec![0; HOMES];
    let mut prefixes = HashSet::new();
    for (i, name, result) in &outcomes {
        match result {
            Ok(record) => {
                successes[*i] += 1;
                assert_eq!(&record.name, name);
                assert!(
                    prefixes.insert(record.prefix),
                    "{} handed out twice",
                    record.prefix
                );
            }
            Err(e) => {
                // The loser of the race: its token is used, or the name has its certificate.
                let e = e.to_string();
                assert!(
                    e.contains("already used") || e.contains("holds"),
                    "{name}: unexpected refusal: {e}"
                );
            }
        }
    }
    assert!(
        successes.iter().all(|&n| n == 1),
        "tokens that did not enroll exactly once: {:?}",
        successes
            .iter()
            .enumerate()
            .filter(|(_, n)| **n != 1)
            .collect::<Vec<_>>()
    );
    assert_eq!(prefixes.len(), HOMES);
    eprintln!(
        "{HOMES} homes, each token tried on both servers: {} enrollments in {took:?} ({:.0}/s)",
        HOMES,
        HOMES as f64 / took.as_secs_f64()
    );

    // The database agrees: every home once, every token used once, one current certificate
    // per prefix.
    let data = servers[1].registry().unwrap().load().unwrap();
    assert_eq!(data.clients.len(), HOMES);
    assert!(data.tokens.iter().all(|t| t.used.is_some()));
    assert_eq!(
        pg.psql(&url, "SELECT count(DISTINCT prefix) FROM clients")
            .unwrap(),
        HOMES.to_string()
    );
}
