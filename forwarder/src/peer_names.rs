//! The peers' identities, as the controller names them (`Request::NamePeer`), for log lines: a
//! `peerN` number changes across restarts, an identity is what the operator knows.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use hometun_control::PeerId;

/// Longest name kept: a DNS name fits (RFC 1035 2.3.4), anything longer is cut.
const MAX_NAME_BYTES: usize = 255;

/// Each peer's identity while it is up.
#[derive(Debug, Default)]
pub struct PeerNames {
    names: Mutex<HashMap<PeerId, Arc<str>>>,
}

impl PeerNames {
    /// Names `peer` (`Some`), or forgets its name (`None`: it is down).
    pub fn set(&self, peer: PeerId, name: Option<String>) {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        match name {
            Some(name) => {
                let mut end = name.len().min(MAX_NAME_BYTES);
                while !name.is_char_boundary(end) {
                    end -= 1;
                }
                names.insert(peer, Arc::from(&name[..end]));
            }
            None => {
                names.remove(&peer);
            }
        }
    }

    /// How a log line names `peer`: its identity, or `peerN` while it has none.
    pub fn label(&self, peer: PeerId) -> PeerLabel {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        PeerLabel {
            peer,
            name: names.get(&peer).cloned(),
        }
    }
}

/// A peer as a log line shows it (see [`PeerNames::label`]).
#[derive(Debug, Clone)]
pub struct PeerLabel {
    peer: PeerId,
    name: Option<Arc<str>>,
}

impl fmt::Display for PeerLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            // Escaped: a name is the peer's identity, and a log line stays one line.
            Some(name) => write!(f, "{}", name.escape_debug()),
            None => write!(f, "{}", self.peer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_peer_shows_its_identity_until_it_is_forgotten() {
        let names = PeerNames::default();
        assert_eq!(names.label(PeerId(3)).to_string(), "peer3");
        names.set(PeerId(3), Some("home.example".into()));
        assert_eq!(names.label(PeerId(3)).to_string(), "home.example");
        assert_eq!(names.label(PeerId(4)).to_string(), "peer4");
        names.set(PeerId(3), None);
        assert_eq!(names.label(PeerId(3)).to_string(), "peer3");
    }

    #[test]
    fn a_name_stays_one_bounded_line() {
        let names = PeerNames::default();
        names.set(PeerId(1), Some("evil\nline".into()));
        assert_eq!(names.label(PeerId(1)).to_string(), "evil\\nline");
        names.set(PeerId(2), Some("é".repeat(200)));
        let label = names.label(PeerId(2)).to_string();
        assert_eq!(
            label.len(),
            254,
            "cut at a character boundary within 255 bytes"
        );
    }
}
