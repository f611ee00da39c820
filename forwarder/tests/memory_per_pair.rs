//! The heap a forwarder holds for each installed pair (with its peer's name and grant), as a
//! server with a thousand homes holds them: the bulk of the forwarder's memory per idle home
//! in `bench/memory.sh` (bench/README.md, "memory.sh"). glibc only (mallinfo2).

#![cfg(all(target_os = "linux", target_env = "gnu"))]
#![allow(clippy::unwrap_used)]

use hometun_control::{AeadAlg, ChildSa, InterfaceConfig, Request};
use hometun_forwarder::aead::AeadBackend;
use hometun_forwarder::requests::{RecordingPlatform, RequestHandler};

/// Bytes of heap in use, every arena.
fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    unsafe { libc::mallinfo2().uordblks }
}

/// Most of it is the two AES-GCM key schedules (ring's, 544 bytes each) and the pair itself;
/// the snapshot's tables, the name, the grant and the test platform's route record the rest.
/// 2681 bytes when written (2762 before the limits were kept once): the budget leaves room
/// for small changes and catches a regression of a few percent.
const BUDGET_PER_PAIR: usize = 2800;

#[test]
fn a_thousand_installed_pairs_take_at_most_the_budget_each() {
    const PAIRS: u32 = 1000;
    let (mut handler, _events) =
        RequestHandler::new(RecordingPlatform::default(), AeadBackend::Ring);
    handler
        .handle(Request::Configure(InterfaceConfig::for_tests(
            "hometun0",
            Some("2001:db8:100::/48".parse().unwrap()),
        )))
        .unwrap();
    let pairs: Vec<ChildSa> = (1..=PAIRS)
        .map(|i| {
            ChildSa::builder()
                .peer(u64::from(i))
                .spis(0x1000_0000 + i, 0x2000_0000 + i)
                .keys(AeadAlg::AesGcm128, 1, 2)
                .remote_ts(&[&format!("2001:db8:100:{i:x}::/64")])
                .build()
        })
        .collect();
    let before = heap_in_use();
    for sa in &pairs {
        let peer = sa.peer;
        let name = format!("home{}.example", peer.0);
        handler
            .handle(Request::NamePeer {
                peer,
                name: Some(name),
            })
            .unwrap();
        handler
            .handle(Request::AllowPeer {
                peer,
                prefixes: sa.remote_ts.clone(),
            })
            .unwrap();
        handler.handle(Request::Install(sa.clone())).unwrap();
    }
    let per_pair = (heap_in_use() - before) / PAIRS as usize;
    println!("{per_pair} bytes of heap per installed pair");
    assert_eq!(handler.sad().load().pairs().count(), PAIRS as usize);
    assert!(
        per_pair <= BUDGET_PER_PAIR,
        "{per_pair} bytes of heap per installed pair, budget {BUDGET_PER_PAIR}"
    );
}
