//! A client with several servers: when the one it uses stops answering it moves to the next in
//! its list, wrapping around (README.md, "Failover and BGP"). It never moves while its server
//! works: a server that comes back does not take the home back, so the home's route moves once
//! per failure and does not flap. Its prefix moves with it: it is in the client's certificate,
//! not tied to a server.

use std::time::Duration;

use super::{Endpoint, Output, Role};
use crate::notice::Notice;

impl Endpoint {
    /// The current IKE SA's server did not answer a request through every retransmission
    /// (a liveness check, most often): the next server, at once.
    pub(super) fn server_dead(&mut self) {
        if self.fail_over() {
            let Role::Initiator(role) = &mut self.role else {
                return;
            };
            // Every moment counts: the home is cut off until the next server has it.
            role.backoff = Duration::ZERO;
        }
    }

    /// A connection attempt failed (no answer, or refused): the next attempt goes to the next
    /// server, after the usual backoff. Not while an IKE SA still works: a re-authentication
    /// that failed is tried again with the server that carries the home.
    pub(super) fn next_server_after_failed_attempt(&mut self) {
        if !self.client_is_up() {
            self.fail_over();
        }
    }

    /// Makes the next server the current one (the one left goes to the end of the list).
    /// False for a client with one server, or a server.
    fn fail_over(&mut self) -> bool {
        let Role::Initiator(role) = &mut self.role else {
            return false;
        };
        let Some((next, identity)) = role.fallbacks.pop_front() else {
            return false;
        };
        let from = std::mem::replace(&mut role.server, next);
        let left = std::mem::replace(&mut role.server_identity, identity);
        role.fallbacks.push_back((from, left));
        // A fresh start with the new server: it has no IKE SA of ours to replace.
        role.reauthenticating = false;
        role.failures.clear();
        self.outputs.push_back(Output::Notice(Notice::FailingOver {
            from,
            name: role.server_identity.to_string(),
            to: role.server,
        }));
        true
    }

    /// The server a client uses now (its address), `None` on a server.
    pub fn current_server(&self) -> Option<std::net::SocketAddrV4> {
        match &self.role {
            Role::Initiator(role) => Some(role.server),
            Role::Responder(_) => None,
        }
    }
}
