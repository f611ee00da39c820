//! Reconnecting without waiting, and acting on one peer without revoking it: what an operator
//! asks of a running daemon besides its status (`hometun terminate NAME`, `hometun initiate`,
//! as swanctl's `--terminate` and `--initiate`), and the events after which a waiting client
//! should try again at once (a reload, a change of its outer address, an ICMP port unreachable
//! from a server whose host is up but whose daemon is not yet).

use std::net::SocketAddrV4;
use std::time::Duration;

use super::{Endpoint, Now, Random, Role, Sa};
use crate::sa::Io;

/// How soon an IKE_SA_INIT goes again after the server's host said that nothing listens on
/// its port: the short end, so that a home is back within a second of its server's daemon.
pub const UNREACHABLE_RETRY: Duration = Duration::from_secs(1);

/// What [`Endpoint::initiate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiated {
    /// A new connection attempt started now (one in flight was given up for it).
    Started,
    /// The IKE SA with the server is up: nothing to do.
    AlreadyUp,
    /// This endpoint is a server: it waits for its clients.
    NotAClient,
    /// The endpoint is shutting down.
    Closed,
}

impl Endpoint {
    /// Deletes every IKE SA of the peer named `name`, with its CHILD SAs: the current one with a
    /// DELETE (so the peer knows at once), the others quietly. The peer is not refused: a home
    /// comes back by its own reconnection. Returns how many IKE SAs went.
    pub fn terminate(&mut self, now: Now, name: &str, rng: &mut dyn Random) -> usize {
        let theirs: Vec<u64> = self
            .sas
            .iter()
            .filter(|(_, sa)| matches!(sa, Sa::Up(e) if e.peer.name == name))
            .map(|(spi, _)| *spi)
            .collect();
        for spi in &theirs {
            if let Some(Sa::Up(mut e)) = self.sas.remove(spi) {
                let mut io = io!(self, now, rng);
                if e.is_current() {
                    e.close_because(&mut io, "terminated by the operator".into());
                }
                e.dispose(&mut io);
            }
            self.forget(*spi);
        }
        self.after(now, rng);
        theirs.len()
    }

    /// Client: connects now, with the reconnection backoff back at its start; an attempt in
    /// flight (perhaps in a long retransmission wait) is given up for a fresh one.
    pub fn initiate(&mut self, now: Now, rng: &mut dyn Random) -> Initiated {
        match &self.role {
            Role::Responder(_) => return Initiated::NotAClient,
            Role::Initiator(role) if role.closed => return Initiated::Closed,
            Role::Initiator(_) => {}
        }
        if self.client_is_up() {
            return Initiated::AlreadyUp;
        }
        self.abandon_attempts(now, rng);
        self.reconnect_now(now, rng);
        Initiated::Started
    }

    /// Client: the reconnection backoff back at its start, and a reconnection that waits for
    /// its timer made now (a reload may have fixed what failed; a network that changed may
    /// work now). An attempt in flight goes on.
    pub fn reset_backoff(&mut self, now: Now, rng: &mut dyn Random) {
        let Role::Initiator(role) = &mut self.role else {
            return;
        };
        role.backoff = self.common.retransmit_base;
        role.failures.clear();
        if role.reconnect_at.is_some() && !role.closed {
            self.reconnect_now(now, rng);
        }
    }

    /// Client: the network changed (an address or route came or went) and `addr` is our source
    /// address towards the server now. A client whose IKE SA is up leaves it to the forwarder,
    /// which moves its SAs (`EndpointMoved`, then [`Endpoint::handle_local_address`]); one that
    /// is down takes the address and connects at once from there. True if it did.
    pub fn handle_network_change(
        &mut self,
        now: Now,
        addr: std::net::Ipv4Addr,
        rng: &mut dyn Random,
    ) -> bool {
        let Role::Initiator(role) = &mut self.role else {
            return false;
        };
        if role.closed || self.client_is_up() {
            return false;
        }
        let Role::Initiator(role) = &mut self.role else {
            return false;
        };
        let old = std::mem::replace(&mut role.local_addr, addr);
        self.local_address_changed(now, (old, addr), rng);
        true
    }

    /// Client: our outer address is now `changed.1` (it was `changed.0`). Without a working IKE
    /// SA, an attempt in flight from the old address is given up (its answer goes there) and a
    /// new one starts at once, from the new address.
    pub(super) fn local_address_changed(
        &mut self,
        now: Now,
        changed: (std::net::Ipv4Addr, std::net::Ipv4Addr),
        rng: &mut dyn Random,
    ) {
        let Role::Initiator(role) = &self.role else {
            return;
        };
        if role.closed || self.client_is_up() {
            return;
        }
        if changed.0 != changed.1 {
            self.abandon_attempts(now, rng);
            self.reconnect_now(now, rng);
        } else {
            self.reset_backoff(now, rng);
        }
    }

    /// ICMP port unreachable from `remote` (the daemon's IKE socket reports it): a client whose
    /// IKE_SA_INIT went there sends it again within [`UNREACHABLE_RETRY`] instead of counting
    /// it as lost. The error is unauthenticated: the attempt keeps listening for a genuine
    /// answer, and nothing else changes. A client with other servers counts the try all the
    /// same, so that it moves on once the attempt ends (a forged error can at most send it to
    /// another of its own servers sooner).
    pub fn handle_unreachable(&mut self, now: Now, remote: SocketAddrV4) {
        let Role::Initiator(role) = &self.role else {
            return;
        };
        let counted = !role.fallbacks.is_empty();
        let mut ours = false;
        for sa in self.sas.values_mut() {
            if let Sa::Init(step) = sa {
                ours |= step.unreachable(now.mono, remote, UNREACHABLE_RETRY, counted);
            }
        }
        if ours {
            tracing::debug!("{remote}: port unreachable; the server is not up yet");
        }
    }

    /// Whether a client has a working IKE SA with its server.
    pub(super) fn client_is_up(&self) -> bool {
        self.current_sas().next().is_some()
    }

    /// Gives up the client's connection attempts in flight (IKE_SA_INIT or IKE_AUTH sent).
    fn abandon_attempts(&mut self, now: Now, rng: &mut dyn Random) {
        let attempts: Vec<u64> = self
            .sas
            .iter()
            .filter(|(_, sa)| matches!(sa, Sa::Init(_) | Sa::Auth(_)))
            .map(|(spi, _)| *spi)
            .collect();
        for spi in attempts {
            if let Some(Sa::Auth(attempt)) = self.sas.remove(&spi) {
                let mut io = io!(self, now, rng);
                attempt.abandon(&mut io);
            }
            self.forget(spi);
        }
    }

    /// Starts an attempt now with the backoff at its start (none may be in flight).
    fn reconnect_now(&mut self, now: Now, rng: &mut dyn Random) {
        let Role::Initiator(role) = &mut self.role else {
            return;
        };
        role.backoff = self.common.retransmit_base;
        role.failures.clear();
        role.reconnect_at = None;
        self.connect(now, rng);
    }
}

/// The failures of a client's connection attempts since it last got through: the first of a
/// kind is logged at its level with what to do, the same again only at debug level (a revoked
/// home must not repeat the same warning every try, for ever).
#[derive(Debug, Default)]
pub(super) struct FailureLog {
    last: Option<String>,
    repeats: u32,
}

impl FailureLog {
    /// Records a failure; true if it is the first of its kind (log it).
    pub fn first_of_its_kind(&mut self, reason: &str) -> bool {
        if self.last.as_deref() == Some(reason) {
            self.repeats += 1;
            return false;
        }
        self.last = Some(reason.to_string());
        self.repeats = 0;
        true
    }

    /// Whether the last failure repeated an earlier one (the log stays quiet).
    pub fn repeating(&self) -> bool {
        self.repeats > 0
    }

    /// The client got through, or starts afresh.
    pub fn clear(&mut self) {
        *self = FailureLog::default();
    }
}

/// What a client should do when the server refused its certificate: the server sends
/// AUTHENTICATION_FAILED for a revoked or expired certificate (and for one of another CA).
pub(super) fn with_hint(reason: String) -> String {
    if reason.contains("AUTHENTICATION_FAILED") {
        format!(
            "{reason}: the server does not accept our certificate (revoked, expired or of \
             another CA); re-enroll with `hometun enroll` and a new token from the server's \
             `hometun pki token`"
        )
    } else {
        reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_failure_again_is_quiet_until_the_client_gets_through() {
        let mut log = FailureLog::default();
        assert!(log.first_of_its_kind("server refused IKE_AUTH: AUTHENTICATION_FAILED"));
        assert!(!log.repeating());
        for _ in 0..5 {
            assert!(!log.first_of_its_kind("server refused IKE_AUTH: AUTHENTICATION_FAILED"));
            assert!(log.repeating());
        }
        assert!(log.first_of_its_kind("no answer to IKE_SA_INIT after 5 tries"));
        log.clear();
        assert!(log.first_of_its_kind("no answer to IKE_SA_INIT after 5 tries"));
    }

    #[test]
    fn a_refused_certificate_says_what_to_do() {
        let hinted = with_hint("server refused IKE_AUTH: AUTHENTICATION_FAILED".into());
        assert!(
            hinted.contains("re-enroll with `hometun enroll`"),
            "{hinted}"
        );
        assert_eq!(with_hint("no answer".into()), "no answer");
    }
}
