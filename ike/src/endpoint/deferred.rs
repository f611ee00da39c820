//! The signature work of IKE_AUTH requests handed out to the driver: the endpoint stays one
//! sans-IO state machine, the driver runs the jobs where it likes (its worker threads) and hands
//! each result back. Off by default, so that tests and the fuzz targets run everything in place.

use super::{Endpoint, Io, Random, Role, Sa};
use crate::io::Now;
use crate::sa::auth_job::{AuthDone, AuthJob};

impl Endpoint {
    /// Hands the signature work of IKE_AUTH requests (the peer's certificate chain and AUTH
    /// checked, ours signed) out through [`Endpoint::poll_auth_job`] instead of doing it in
    /// place: a responder's driver then runs it on other cores. The half-open SA waits for its
    /// [`Endpoint::handle_auth_done`] (until it expires; retransmissions of the request are
    /// dropped meanwhile).
    pub fn defer_crypto(&mut self, on: bool) {
        self.defer_crypto = on;
    }

    /// The next signature job to run ([`AuthJob::run`], on any thread).
    pub fn poll_auth_job(&mut self) -> Option<Box<AuthJob>> {
        self.auth_jobs.pop_front()
    }

    /// A finished signature job: the IKE_AUTH request it belongs to is answered (or refused).
    /// A job whose half-open SA has gone meanwhile is dropped.
    pub fn handle_auth_done(&mut self, now: Now, done: AuthDone, rng: &mut dyn Random) {
        let spi = done.spi;
        let Some(Sa::HalfOpen(half_open)) = self.sas.remove(&spi) else {
            tracing::debug!(
                "signature work for {} came after the SA went",
                crate::sa::hex_spi(spi)
            );
            return;
        };
        let Role::Responder(role) = &self.role else {
            self.sas.insert(spi, Sa::HalfOpen(half_open));
            return;
        };
        let generation = self.generation;
        let mut io = io!(self, now, rng);
        let result = half_open.resume(&mut io, role.authorizer.as_ref(), done, generation);
        self.auth_result(now, rng, spi, result);
    }
}
