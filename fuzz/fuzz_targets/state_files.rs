//! The files a run reads back from what an earlier run, another server or an editor left, all
//! untrusted: a server's `peers-up.json` (then the restart hints it sends from it), the record
//! of network changes a killed daemon left (then the check before anything is set back), and
//! the shared PKI registry file (then the events a server acts on).
//!
//! Checks: never a panic; an error is one line; restart hints go only to the addresses the
//! file lists, one INFORMATIONAL per peer at most; a network change that passes its check
//! names only a sysctl path under net/ipv6/conf; a registry that loads writes out to a file
//! that loads to the same registry.
//!
//! Input: the first byte picks the file, the rest is its content.
#![no_main]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use hometun_daemon::netconf::record::{self, Change};
use hometun_daemon::peers_up;
use hometun_fuzz::endpoints::{Config, server_endpoint};
use hometun_fuzz::ike_world::{Clock, SeededRandom};
use hometun_ike::wire::{ExchangeType, Header};
use hometun_pki::registry::{RegistryData, events_between, file};
use libfuzzer_sys::fuzz_target;

fn one_line(error: &impl std::fmt::Display) {
    let message = error.to_string();
    assert!(!message.contains('\n'), "an error spans lines: {message:?}");
}

fn peers_up(bytes: &[u8]) {
    let hints = match peers_up::parse(bytes) {
        Ok(hints) => hints,
        Err(error) => return one_line(&error),
    };
    let listed: BTreeSet<_> = hints.iter().map(|h| h.remote).collect();
    let with_spis = hints.iter().filter(|h| !h.spis.is_empty()).count();
    let mut clock = Clock::new();
    let mut rng = SeededRandom::new(1);
    let mut server = server_endpoint(&Config::from_byte(0), clock.now(), &mut rng);
    server.send_restart_hints(clock.now(), &hints);
    let mut sent = 0;
    // Paced in rounds: time runs until every hint went (or a bound).
    for _ in 0..200 {
        while let Some(t) = server.poll_transmit() {
            assert!(
                listed.contains(&t.remote),
                "a hint to {} the file does not list",
                t.remote
            );
            let header = Header::parse(&t.data).expect("a hint is an IKE message");
            assert_eq!(header.exchange_type, ExchangeType::INFORMATIONAL);
            sent += 1;
        }
        while server.poll_output().is_some() {}
        let Some(at) = server.poll_timeout() else {
            break;
        };
        clock.offset = clock.at(at).max(clock.offset + Duration::from_millis(1));
        server.handle_timeout(clock.now(), &mut rng);
    }
    assert!(
        sent <= with_spis,
        "{sent} hints for {with_spis} peers with SPIs"
    );
}

fn network_changes(bytes: &[u8]) {
    let changes = match record::parse(bytes) {
        Ok(changes) => changes,
        Err(error) => return one_line(&error),
    };
    for change in &changes {
        one_line(change);
        match change.check() {
            Ok(()) => {
                if let Change::Sysctl { interface, key, .. } = change {
                    let path = Path::new("/proc/sys/net/ipv6/conf")
                        .join(interface)
                        .join(key);
                    assert_eq!(
                        path.components().count(),
                        8,
                        "{interface:?}/{key:?} leaves net/ipv6/conf"
                    );
                    // `e..1` is an interface name like any other; only a `..` of its own
                    // would climb out.
                    assert!(
                        path.components()
                            .skip(1)
                            .all(|c| matches!(c, std::path::Component::Normal(_))),
                        "{interface:?}/{key:?} has a `..` of its own"
                    );
                }
            }
            Err(error) => one_line(&error),
        }
    }
}

fn registry(bytes: &[u8]) {
    let path = Path::new("/var/lib/hometun/registry.json");
    let data = match file::from_file_bytes(path, bytes) {
        Ok(data) => data,
        Err(error) => return one_line(&error),
    };
    let again = file::from_file_bytes(path, &file::to_file_bytes(&data))
        .unwrap_or_else(|e| panic!("a written registry does not load: {e}"));
    assert_eq!(again, data);
    // What a server acts on when the file changes: from an empty registry, every revocation
    // and claim is new; from itself, nothing is.
    let empty = RegistryData {
        clients: Vec::new(),
        tokens: Vec::new(),
        holders: Vec::new(),
        ..data.clone()
    };
    let events = events_between(&empty, &data);
    assert!(events.len() <= data.clients.len() + data.holders.len());
    assert!(events_between(&data, &data).is_empty());
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => peers_up(rest),
        1 => network_changes(rest),
        _ => registry(rest),
    }
});
