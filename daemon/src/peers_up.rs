//! The server's record of the peers that are up, in its state directory (`peers-up.json`), so
//! that after a crash it can tell them at once that their SAs are gone: an idle home would
//! otherwise notice only at its next liveness check (docs/ARCHITECTURE.md, "Restart
//! recovery"). It holds identities, addresses and ESP SPIs, never keys; it is written only when
//! it changes (at most once per counter tick), atomically, readable by root alone.

use std::path::{Path, PathBuf};

use hometun_ike::endpoint::RestartHint;

/// The file's name in the state directory.
pub const FILE_NAME: &str = "peers-up.json";

/// At most this many peers are read back (a larger file is not ours).
const MAX_PEERS: usize = 100_000;

/// What the file lists, for its errors.
const WHAT: &str = "peers";

/// The peers in the file's `bytes` (what the next run reads back).
pub fn parse(bytes: &[u8]) -> Result<Vec<RestartHint>, crate::state_file::ListError> {
    crate::state_file::parse_list(bytes, MAX_PEERS, WHAT)
}

/// The file and what it last held.
pub struct PeersUp {
    path: PathBuf,
    written: Option<Vec<RestartHint>>,
}

impl PeersUp {
    /// The record in `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join(FILE_NAME),
            written: None,
        }
    }

    /// The peers that were up when the previous run last wrote the file (none if it stopped
    /// cleanly, never ran, or left a file that does not parse: that is logged in one line and
    /// the file is replaced at the next write).
    pub fn read_previous(&self) -> Vec<RestartHint> {
        crate::state_file::read_list(&self.path, MAX_PEERS, WHAT)
    }

    /// Records `peers` if they differ from what the file holds.
    pub fn record(&mut self, peers: Vec<RestartHint>) {
        if self.written.as_ref() == Some(&peers) {
            return;
        }
        match crate::state_file::write_list(&self.path, &peers) {
            Ok(()) => self.written = Some(peers),
            // Tried again at the next tick; the tunnel does not depend on it.
            Err(error) => tracing::warn!("{}: cannot write: {error}", self.path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(peer: &str, spi: u32) -> RestartHint {
        RestartHint {
            peer: peer.into(),
            local: "192.0.2.1:4500".parse().unwrap(),
            remote: "198.51.100.7:4500".parse().unwrap(),
            spis: vec![hometun_control::Spi(spi)],
        }
    }

    #[test]
    fn what_is_recorded_is_read_back_by_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = PeersUp::new(dir.path());
        assert!(file.read_previous().is_empty());
        file.record(vec![
            hint("home1.example", 0xc1),
            hint("home2.example", 0xc2),
        ]);
        let next_run = PeersUp::new(dir.path());
        assert_eq!(
            next_run.read_previous(),
            vec![hint("home1.example", 0xc1), hint("home2.example", 0xc2)]
        );
        let mode = std::fs::metadata(dir.path().join(FILE_NAME))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        file.record(Vec::new());
        assert!(PeersUp::new(dir.path()).read_previous().is_empty());
    }

    #[test]
    fn a_file_that_does_not_parse_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{ not json").unwrap();
        assert!(PeersUp::new(dir.path()).read_previous().is_empty());
        std::fs::write(dir.path().join(FILE_NAME), b"[{\"peer\": 3}]").unwrap();
        assert!(PeersUp::new(dir.path()).read_previous().is_empty());
    }
}
