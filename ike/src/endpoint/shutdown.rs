//! Shutdown in two steps (docs/ARCHITECTURE.md, "The sans-IO contract"): every IKE SA sends its
//! DELETE as its next request and the driver waits for the answers, then what is still unsent
//! goes once, out of turn, and everything is dropped.

use super::{Endpoint, Now, Random, Role, Sa};
use crate::sa::Io;

impl Endpoint {
    /// Shutdown, first step: every IKE SA that speaks for its peer uninstalls its pairs and
    /// sends its DELETE as its next request (after one in flight; the peer's window is one
    /// request, RFC 7296 2.3), retransmitted until answered. Handshakes under way are dropped,
    /// and no new one is begun or answered. The caller keeps feeding datagrams and timers
    /// until [`Endpoint::is_closed`], or for as long as it will wait, then calls
    /// [`Endpoint::close_now`].
    pub fn close(&mut self, now: Now, rng: &mut dyn Random) {
        self.stop_new_sas();
        let spis: Vec<u64> = self.sas.iter().map(|(spi, _)| *spi).collect();
        for spi in spis {
            let mut io = io!(self, now, rng);
            if let Some(Sa::Up(e)) = self.sas.get_mut(&spi) {
                e.leave(&mut io);
            } else if let Some(sa) = self.sas.remove(&spi) {
                self.abandon_handshake(now, rng, sa);
                self.forget(spi);
            }
        }
    }

    /// Shutdown: an SA still in its handshake goes without a word.
    fn abandon_handshake(&mut self, now: Now, rng: &mut dyn Random, sa: Sa) {
        let mut io = io!(self, now, rng);
        match sa {
            Sa::Up(_) | Sa::Init(_) => {}
            Sa::Auth(a) => a.abandon(&mut io),
            sa @ (Sa::Deriving(_) | Sa::HalfOpen(_)) => {
                if let Some((spi_i, init)) = sa.half_open() {
                    self.half_open_gone(spi_i, init.source, false);
                }
            }
        }
    }

    /// Shutting down: a client stops reconnecting, a server answers no new IKE_SA_INIT.
    fn stop_new_sas(&mut self) {
        match &mut self.role {
            Role::Initiator(role) => {
                role.closed = true;
                role.reconnect_at = None;
            }
            Role::Responder(role) => role.closed = true,
        }
    }

    /// Whether a shutdown has nothing left to wait for: every DELETE of ours is answered (an
    /// IKE SA the peer deleted, or one a rekey replaced, waits for nothing of ours).
    pub fn is_closed(&self) -> bool {
        self.sas.values().all(|sa| match sa {
            Sa::Up(e) => e.is_settled(),
            _ => false,
        })
    }

    /// Shutdown, last step: a DELETE still unsent goes once, out of turn, and every SA is
    /// removed.
    pub fn close_now(&mut self, now: Now, rng: &mut dyn Random) {
        self.stop_new_sas();
        for (spi, sa) in self.sas.drain() {
            if let Sa::Up(mut e) = sa {
                let mut io = io!(self, now, rng);
                e.close_now(&mut io);
                e.dispose(&mut io);
            } else {
                self.abandon_handshake(now, rng, sa);
            }
            self.forget(spi);
        }
    }
}
