//! What a reload (a new CA, CRL or client list) still allows an established peer: its
//! certificate must still pass, and on a server each installed CHILD SA's remote selectors must
//! lie inside the prefixes the new authorizer gives the peer. A pair outside goes at once, the
//! pairs inside stay.

use hometun_control::{Request, Spi};
use ipnet::Ipv6Net;

use super::{Established, Task};
use crate::io::Now;
use crate::notice::Notice;
use crate::sa::Io;
use crate::sa::child::ChildState;

/// Why an established peer is no longer trusted after a reload.
#[derive(Debug, thiserror::Error)]
pub enum Distrust {
    /// Its certificate chain no longer passes (a new CRL, another CA, expiry).
    #[error("{0}")]
    Certificate(#[from] crate::crypto::CertError),
    /// The authorizer gives it no prefix any more.
    #[error("{0}")]
    Prefixes(#[from] crate::settings::PrefixRefusal),
    /// None of the prefixes it held is among those the authorizer gives it.
    #[error("its prefix {0} is no longer allowed")]
    PrefixWithdrawn(ipnet::Ipv6Net),
}

impl Established {
    /// Whether the peer still passes `verifier` with the certificates of its IKE_AUTH (a reload
    /// may bring a CRL that revokes it, or another CA), and on a server what `authorizer` still
    /// gives it of the prefixes it held: `Ok(Some(prefixes))`, to be applied with
    /// [`Established::keep_only`]. `Err` says why nothing is left.
    pub fn still_trusted(
        &self,
        verifier: &crate::crypto::CertificateVerifier,
        authorizer: Option<&dyn crate::settings::Authorizer>,
        now: Now,
    ) -> Result<Option<Vec<Ipv6Net>>, Distrust> {
        let certificates: Vec<&[u8]> = self.peer.certificates.iter().map(Vec::as_slice).collect();
        let Some((end_entity, intermediates)) = certificates.split_first() else {
            return Ok(None);
        };
        let verified = verifier.verify(end_entity, intermediates, &self.peer.identity, now.wall)?;
        let Some(authorizer) = authorizer else {
            return Ok(None);
        };
        let given = authorizer.prefixes(&self.peer.identity, &verified)?;
        let kept = intersection(&self.peer_allowed, &given);
        match self.peer_allowed.first() {
            Some(held) if kept.is_empty() => Err(Distrust::PrefixWithdrawn(*held)),
            _ => Ok(Some(kept)),
        }
    }

    /// After a reload: the peer may use only `allowed` from now on. Each CHILD SA with a
    /// remote selector outside it is removed from the forwarder at once (one notice naming the
    /// peer and the selector) and the peer gets a DELETE for it; the forwarder's grant shrinks
    /// to `allowed`. Without a working pair left, the IKE SA is deleted too.
    pub fn keep_only(&mut self, io: &mut Io<'_>, allowed: Vec<Ipv6Net>) {
        let outside = |ts: &[Ipv6Net]| {
            ts.iter()
                .find(|t| !allowed.iter().any(|a| a.contains(*t)))
                .copied()
        };
        let mut withdrawn: Vec<Spi> = Vec::new();
        let mut i = 0;
        while i < self.children.len() {
            let Some(selector) = outside(&self.children[i].remote_ts) else {
                i += 1;
                continue;
            };
            let child = self.children.remove(i);
            io.notice(Notice::SelectorWithdrawn {
                peer: self.peer.name.clone(),
                spi_in: child.spi_in,
                selector,
            });
            self.bytes_gone += child.bytes;
            // Out of the forwarder now; our SPI of it stays reserved until the peer answered
            // the DELETE (as for a pair the forwarder refused).
            io.forwarder(Request::Delete {
                spi_in: child.spi_in,
            });
            withdrawn.push(child.spi_in);
        }
        if allowed != self.peer_allowed {
            io.forwarder(Request::AllowPeer {
                peer: self.peer.id,
                prefixes: allowed.clone(),
            });
            self.peer_allowed = allowed;
        }
        if withdrawn.is_empty() {
            return;
        }
        // Work queued for a removed pair is moot; a pair it replaced carries on.
        let gone = |spi: &Spi| withdrawn.contains(spi);
        self.queue.retain(|t| match t {
            Task::RekeyChild { spi_in, .. } | Task::DeleteChild(spi_in) => !gone(spi_in),
            _ => true,
        });
        self.deferred.retain(|(_, t)| match t {
            Task::RekeyChild { spi_in, .. } | Task::DeleteChild(spi_in) => !gone(spi_in),
            _ => true,
        });
        for c in &mut self.children {
            if let ChildState::Superseded { successor, .. }
            | ChildState::AwaitingPeerDelete { successor, .. } = c.state
                && gone(&successor)
            {
                c.state = ChildState::Active;
                c.our_rekey = None;
            }
        }
        for spi in withdrawn {
            self.queue.push_front(Task::DeleteRefusedPair(spi));
        }
        self.lost_a_pair(io);
        self.pump(io);
    }
}

/// What `held` keeps of `given`: each held prefix inside a given one, and each given prefix
/// inside a held one (a narrowing to a sub-prefix).
fn intersection(held: &[Ipv6Net], given: &[Ipv6Net]) -> Vec<Ipv6Net> {
    let mut kept: Vec<Ipv6Net> = Vec::new();
    for h in held {
        for g in given {
            let common = if g.contains(h) {
                Some(*h)
            } else if h.contains(g) {
                Some(*g)
            } else {
                None
            };
            if let Some(c) = common
                && !kept.contains(&c)
            {
                kept.push(c);
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<Ipv6Net> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn the_intersection_keeps_what_both_allow() {
        let held = nets(&["2001:db8:1::/48"]);
        assert_eq!(
            intersection(&held, &nets(&["2001:db8:1::/64"])),
            nets(&["2001:db8:1::/64"])
        );
        assert_eq!(intersection(&held, &nets(&["2001:db8::/32"])), held);
        assert!(intersection(&held, &nets(&["2001:db8:2::/48"])).is_empty());
        assert_eq!(
            intersection(
                &nets(&["2001:db8:1::/64", "2001:db8:2::/64"]),
                &nets(&["2001:db8:2::/48"])
            ),
            nets(&["2001:db8:2::/64"])
        );
    }
}
