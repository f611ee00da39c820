//! The registry's behaviour through [`Registry`], for every backend: each test body takes a
//! freshly created registry (pool 2001:db8:100::/48, /64 prefixes, 30 days of grace).

use std::time::Duration;

use ipnet::Ipv6Net;

use super::*;
use crate::token::TokenRefusal;

pub(crate) const POOL: &str = "2001:db8:100::/48";

/// The empty registry every behaviour test starts from.
pub(crate) fn empty() -> RegistryData {
    RegistryData::new(POOL.parse().unwrap(), 64, 30).unwrap()
}

fn record(name: &str, prefix: Ipv6Net, serial: &str) -> ClientRecord {
    ClientRecord {
        name: name.into(),
        prefix,
        serial: serial.into(),
        issued: 0,
        not_after: i64::MAX,
        certificate: String::new(),
        revoked: None,
        superseded: None,
    }
}

/// Allocates as `ServerDir::issue` does: a revoked name within its grace period gets its
/// prefix back, any other the lowest free one.
fn enroll(reg: &Registry, name: &str, serial: &str, now: i64) -> Result<Ipv6Net, PkiError> {
    reg.update(|d| {
        let prefix = match d.held_prefix_of(name, now) {
            Some(p) => p,
            None => d.next_free_prefix(now)?,
        };
        d.clients.push(record(name, prefix, serial));
        Ok(prefix)
    })
}

fn revoke(reg: &Registry, name: &str, at: i64) {
    reg.update(|d| {
        for c in d.clients.iter_mut().filter(|c| c.name == name) {
            c.revoked = Some(Revocation {
                at,
                key_compromise: false,
            });
        }
        Ok(())
    })
    .unwrap();
}

fn token(name: &str, secret: &str) -> TokenRecord {
    TokenRecord {
        name: name.into(),
        secret_sha256: secret.into(),
        created: 0,
        expires: 1_000,
        used: None,
        used_serial: None,
    }
}

/// Every behaviour test, on `fresh()`'s registries (each call: a new, empty one).
pub(crate) fn all(fresh: &dyn Fn() -> Registry) {
    allocation_and_grace(&fresh());
    a_failed_change_stores_nothing(&fresh());
    concurrent_allocations_never_share_a_prefix(&fresh());
    a_token_is_used_once_under_concurrency(&fresh());
    holders_claim_and_release(&fresh());
    holder_changes_in_one_call_act_in_order(&fresh());
    subscribers_see_revocations_and_claims(&fresh());
}

fn allocation_and_grace(reg: &Registry) {
    let day = 86_400;
    let a = enroll(reg, "a.example", "0a", 0).unwrap();
    assert_eq!(a.to_string(), "2001:db8:100:1::/64");
    let b = enroll(reg, "b.example", "0b", 0).unwrap();
    assert_eq!(b.to_string(), "2001:db8:100:2::/64");
    revoke(reg, "a.example", 1_000);
    // Within the grace period: nobody else gets a's prefix, and a gets it back.
    assert_eq!(
        enroll(reg, "c.example", "0c", 1_000 + day)
            .unwrap()
            .to_string(),
        "2001:db8:100:3::/64"
    );
    assert_eq!(enroll(reg, "a.example", "1a", 1_000 + 2 * day).unwrap(), a);
    revoke(reg, "c.example", 1_000);
    // After it, the lowest free prefix is c's old one.
    assert_eq!(
        enroll(reg, "d.example", "0d", 1_000 + 31 * day)
            .unwrap()
            .to_string(),
        "2001:db8:100:3::/64"
    );
    let data = reg.load().unwrap();
    assert_eq!(data.clients.len(), 5);
    assert_eq!(data.revoked_serials().len(), 2);
}

fn a_failed_change_stores_nothing(reg: &Registry) {
    enroll(reg, "a.example", "0a", 0).unwrap();
    let before = reg.load().unwrap();
    let r: Result<(), _> = reg.update(|d| {
        d.next_free_prefix(0)?;
        d.clients.push(record(
            "x.example",
            "2001:db8:100:2::/64".parse().unwrap(),
            "0x",
        ));
        d.crl_number += 1;
        Err(PkiError::Invalid("failure injected".into()))
    });
    assert!(r.is_err());
    let r = reg.update_with(
        |d| {
            d.crl_number += 1;
            Ok(())
        },
        |_| Err(PkiError::Invalid("publishing failed".into())),
    );
    assert!(r.is_err());
    assert_eq!(reg.load().unwrap(), before);
}

fn concurrent_allocations_never_share_a_prefix(reg: &Registry) {
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let reg = reg.clone();
            std::thread::spawn(move || {
                (0..15)
                    .map(|i| {
                        enroll(
                            &reg,
                            &format!("t{t}-{i}.example"),
                            &format!("{t:02x}{i:02x}"),
                            0,
                        )
                        .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<Ipv6Net> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!(all.len(), n, "a prefix was handed out twice");
    assert_eq!(all.last().unwrap().to_string(), "2001:db8:100:5a::/64");
}

fn a_token_is_used_once_under_concurrency(reg: &Registry) {
    reg.update(|d| {
        d.tokens.push(token("home.example", "aa"));
        Ok(())
    })
    .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let reg = reg.clone();
            std::thread::spawn(move || {
                reg.update(|d| {
                    d.use_token("aa", "home.example", 5)
                        .map(|_| ())
                        .map_err(PkiError::from)
                })
                .is_ok()
            })
        })
        .collect();
    let used = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|ok| *ok)
        .count();
    assert_eq!(used, 1, "one token, one use");
    assert_eq!(
        reg.load().unwrap().check_token("aa", 6).map(|_| ()),
        Err(TokenRefusal::Used { at: 5 })
    );
}

fn holders_claim_and_release(reg: &Registry) {
    assert_eq!(reg.holder("home.example").unwrap(), None);
    assert_eq!(reg.claim("home.example", "a.example", 10).unwrap(), None);
    let a = Holder {
        server: "a.example".into(),
        since: 10,
    };
    assert_eq!(reg.holder("home.example").unwrap(), Some(a.clone()));
    assert_eq!(reg.claim("home.example", "b.example", 20).unwrap(), Some(a));
    // a no longer holds it: its release changes nothing.
    assert!(!reg.release("home.example", "a.example").unwrap());
    assert_eq!(
        reg.holder("home.example").unwrap().unwrap().server,
        "b.example"
    );
    assert!(reg.release("home.example", "b.example").unwrap());
    assert_eq!(reg.holder("home.example").unwrap(), None);
}

fn holder_changes_in_one_call_act_in_order(reg: &Registry) {
    reg.claim("c.example", "b.example", 1).unwrap();
    let claim = |home: &str, since| HolderChange::Claim {
        home: home.into(),
        since,
    };
    let release = |home: &str| HolderChange::Release { home: home.into() };
    let us = |since| Holder {
        server: "a.example".into(),
        since,
    };
    let outcomes = reg
        .record_holders(
            "a.example",
            &[
                claim("a.example", 10),
                claim("b.example", 11),
                release("a.example"),
                claim("b.example", 12),
                // Another server holds c: releasing it changes nothing, claiming takes it.
                release("c.example"),
                claim("c.example", 13),
                release("never.example"),
            ],
        )
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            HolderOutcome::Claimed(None),
            HolderOutcome::Claimed(None),
            HolderOutcome::Released(true),
            HolderOutcome::Claimed(Some(us(11))),
            HolderOutcome::Released(false),
            HolderOutcome::Claimed(Some(Holder {
                server: "b.example".into(),
                since: 1
            })),
            HolderOutcome::Released(false),
        ]
    );
    assert_eq!(reg.holder("a.example").unwrap(), None);
    assert_eq!(reg.holder("b.example").unwrap(), Some(us(12)));
    assert_eq!(reg.holder("c.example").unwrap(), Some(us(13)));
    assert_eq!(reg.record_holders("a.example", &[]).unwrap(), vec![]);
}

fn subscribers_see_revocations_and_claims(reg: &Registry) {
    enroll(reg, "a.example", "0a", 0).unwrap();
    let mut events = reg.subscribe().unwrap();
    revoke(reg, "a.example", 1);
    reg.claim("home.example", "b.example", 2).unwrap();
    let mut seen = Vec::new();
    // At most five seconds, in steps of 10 ms.
    for _ in 0..500 {
        if seen.len() == 2 {
            break;
        }
        match events.try_recv() {
            Ok(e) => seen.push(e),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    assert!(seen.contains(&RegistryEvent::Revoked {
        name: "a.example".into(),
        serial: "0a".into()
    }));
    assert!(seen.contains(&RegistryEvent::Claimed {
        home: "home.example".into(),
        holder: Holder {
            server: "b.example".into(),
            since: 2
        }
    }));
}

#[test]
fn file_backend() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::cell::Cell::new(0);
    all(&|| {
        n.set(n.get() + 1);
        let reg = Registry::at(&dir.path().join(format!("registry-{}.json", n.get())));
        reg.create(&empty()).unwrap();
        reg
    });
}

#[test]
fn postgres_backend() {
    if !hometun_lab::postgres_lab::require_postgres("postgres_backend") {
        return;
    }
    let lab = hometun_lab::postgres_lab::PostgresLab::start().unwrap();
    all(&|| {
        let reg = Registry::postgres(&lab.create_database().unwrap()).unwrap();
        reg.create(&empty()).unwrap();
        reg
    });
}

#[test]
fn postgres_revocations_made_while_the_listener_was_away_are_sent_again() {
    if !hometun_lab::postgres_lab::require_postgres("postgres_resubscribe") {
        return;
    }
    let lab = hometun_lab::postgres_lab::PostgresLab::start().unwrap();
    let url = lab.create_database().unwrap();
    let reg = Registry::postgres(&url).unwrap();
    reg.create(&empty()).unwrap();
    enroll(&reg, "a.example", "0a", 0).unwrap();
    let mut events = reg.subscribe().unwrap();
    // The server goes away and comes back; the revocation is committed before the listener
    // connects again (it waits a second), so no notification reaches it.
    lab.restart().unwrap();
    let other = Registry::postgres(&url).unwrap();
    revoke(&other, "a.example", 1);
    let expected = RegistryEvent::Revoked {
        name: "a.example".into(),
        serial: "0a".into(),
    };
    let mut seen = Vec::new();
    for _ in 0..500 {
        match events.try_recv() {
            Ok(e) => seen.push(e),
            Err(_) if seen.contains(&expected) => break,
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    assert!(seen.contains(&expected), "events: {seen:?}");
}
