//! A subscriber to the PostgreSQL registry hears of a claim made long after it subscribed (a
//! server learns that another took its home whenever that happens, not only in the first
//! moments after it started listening).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use hometun_lab::postgres_lab::{PostgresLab, require_postgres};
use hometun_pki::registry::{Holder, Registry, RegistryData, RegistryEvent};

#[test]
fn a_claim_long_after_the_subscription_still_arrives() {
    if !require_postgres("a_claim_long_after_the_subscription_still_arrives") {
        return;
    }
    let lab = PostgresLab::start().unwrap();
    let reg = Registry::postgres(&lab.create_database().unwrap()).unwrap();
    reg.create(&RegistryData::new("2001:db8:100::/48".parse().unwrap(), 64, 30).unwrap())
        .unwrap();
    let mut events = reg.subscribe().unwrap();
    for (i, server) in ["a.example", "b.example"].iter().enumerate() {
        // Well past the listener's wait for a notification.
        std::thread::sleep(Duration::from_millis(1200));
        reg.claim("home.example", server, i as i64).unwrap();
        let mut seen = None;
        for _ in 0..300 {
            if let Ok(event) = events.try_recv() {
                seen = Some(event);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            seen,
            Some(RegistryEvent::Claimed {
                home: "home.example".into(),
                holder: Holder {
                    server: server.to_string(),
                    since: i as i64
                }
            }),
            "claim {i}"
        );
    }
}
