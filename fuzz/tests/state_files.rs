//! The `state_files` target's seeds are files the daemon and `hometun pki` accept, so that the
//! target starts past the parsers: at the restart hints, the change checks and the registry's
//! events.

use std::path::Path;

use hometun_daemon::netconf::record;
use hometun_daemon::peers_up;
use hometun_pki::registry::file;

fn seed(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus/state_files")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_seeds_are_files_that_load() {
    let peers = seed("peers-up");
    assert_eq!(peers[0] % 3, 0);
    let hints = peers_up::parse(&peers[1..]).unwrap();
    assert_eq!(hints.len(), 3);
    assert!(hints.iter().any(|h| h.spis.len() == 2));

    let changes = seed("network-changes");
    assert_eq!(changes[0] % 3, 1);
    let changes = record::parse(&changes[1..]).unwrap();
    assert_eq!(changes.len(), 5);
    assert!(changes.iter().all(|c| c.check().is_ok()));

    let registry = seed("registry");
    assert_eq!(registry[0] % 3, 2);
    let data = file::from_file_bytes(Path::new("registry.json"), &registry[1..]).unwrap();
    assert_eq!(data.clients.len(), 3);
    assert_eq!(data.holders.len(), 2);
    assert!(!data.revoked_serials().is_empty());
}
