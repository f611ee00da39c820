//! The server's side of IKE_AUTH: a request checked, the peer authenticated (replacing its
//! older IKE SAs as INITIAL_CONTACT or a re-authentication says, within its identity's budget of
//! new IKE SAs), the SA established.
//!
//! The key derivation after IKE_SA_INIT and the signature work of a request may be handed out
//! to the driver: the endpoint stays one sans-IO state machine, the driver runs the jobs where
//! it likes (its worker threads) and hands each result back. Off by default, so that tests run
//! everything in place.

use std::net::SocketAddrV4;
use std::time::Instant;

use super::{Endpoint, Io, MAX_IKE_SAS_PER_PEER, Random, Role, Sa};
use crate::crypto::PeerIdentity;
use crate::crypto::{CryptoError, IkeSaKeys};
use crate::io::Now;
use crate::sa::IkeError;
use crate::sa::crypto_job::{AuthProof, CryptoDone, CryptoJob, Finished};
use crate::sa::established::TokenBucket;
use crate::sa::responder::{AuthResult, HalfOpen};
use crate::wire::Header;

/// One more new IKE SA per identity every this long, once its burst is used up.
const NEW_IKE_SA_REFILL: std::time::Duration = std::time::Duration::from_secs(10);

impl Endpoint {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn auth_request(
        &mut self,
        now: Now,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        header: &Header,
        data: &[u8],
        half_open: HalfOpen,
        rng: &mut dyn Random,
    ) {
        let Role::Responder(role) = &self.role else {
            return;
        };
        let spi = half_open.spi();
        let (defer, generation) = (self.defer_crypto, self.generation);
        let mut io = io!(self, now, rng);
        let result = half_open.authenticate(
            &mut io,
            role.authorizer.as_ref(),
            local,
            remote,
            header,
            data,
            defer,
            generation,
        );
        self.auth_result(now, rng, spi, result);
    }

    /// Carries out what an IKE_AUTH request (or its finished signature work) led to.
    fn auth_result(&mut self, now: Now, rng: &mut dyn Random, spi: u64, result: AuthResult) {
        match result {
            AuthResult::Wait(h) => {
                self.sas.insert(spi, Sa::HalfOpen(h));
            }
            AuthResult::Deferred(h, job) => {
                self.sas.insert(spi, Sa::HalfOpen(h));
                self.crypto_jobs.push_back(job);
            }
            AuthResult::Refused(spi_i, source) => {
                self.half_open_gone(spi_i, source, false);
                self.spis.release_ike(spi);
            }
            AuthResult::Authenticated(authenticated) => {
                let identity = authenticated.identity().clone();
                // A new IKE SA costs the server a Diffie-Hellman exchange, two signatures,
                // installs, routes and a holder record: each identity has a budget of them,
                // kept across its SAs (SECURITY.md, I11).
                if !self.may_make_new_sa(&identity, now) {
                    let mut io = io!(self, now, rng);
                    let (spi_i, source) = authenticated.refuse(
                        &mut io,
                        IkeError::TemporaryFailure("re-authenticating too often"),
                    );
                    self.half_open_gone(spi_i, source, false);
                    self.spis.release_ike(spi);
                    return;
                }
                // The new SA carries on the rekey budget of the peer's newest one: a
                // re-authentication does not refill it.
                let inherited = self.rekey_budget_of(&identity);
                let (spi_i, source) = authenticated.half_open_source();
                self.half_open_gone(spi_i, source, true);
                let name = authenticated.name().to_string();
                let reauthenticated = if authenticated.initial_contact() {
                    self.initial_contact(now, rng, &identity, spi);
                    false
                } else {
                    self.reauthenticated(now, rng, &identity)
                };
                let peer = self.peer_id(&name);
                let mut io = io!(self, now, rng);
                let mut established = authenticated.complete(&mut io, peer, reauthenticated);
                if let Some(budget) = inherited {
                    established.inherit_rekey_budget(budget);
                }
                self.sas.insert(spi, Sa::Up(Box::new(established)));
            }
        }
    }

    /// Takes a new IKE SA from `identity`'s budget; false when it is used up.
    fn may_make_new_sa(&mut self, identity: &PeerIdentity, now: Now) -> bool {
        let Role::Responder(role) = &mut self.role else {
            return true;
        };
        let burst = role.new_ike_sas_per_identity;
        if burst == 0 {
            return true;
        }
        role.new_sa_budgets
            .entry(identity.to_string())
            .or_insert_with(|| TokenBucket::new(burst, NEW_IKE_SA_REFILL, now.mono))
            .take(now.mono)
    }

    /// The rekey budget of the newest IKE SA of the peer `identity`, if we hold one.
    fn rekey_budget_of(&mut self, identity: &PeerIdentity) -> Option<TokenBucket> {
        self.spis_of(identity)
            .into_iter()
            .filter_map(|spi| match self.sas.get(&spi) {
                Some(Sa::Up(e)) if e.peer.identity == *identity => {
                    Some((e.keyed_at(), e.rekey_budget()))
                }
                _ => None,
            })
            .max_by_key(|(keyed_at, _)| *keyed_at)
            .map(|(_, budget)| budget)
    }

    /// A peer authenticated a new IKE SA without INITIAL_CONTACT while it has one: a
    /// re-authentication (RFC 7296 2.8.3). The new one speaks for the peer; the older ones keep
    /// their CHILD SAs until the peer deletes them (or they expire), and at most
    /// [`MAX_IKE_SAS_PER_PEER`] are kept. Returns whether an older one was current.
    fn reauthenticated(&mut self, now: Now, rng: &mut dyn Random, identity: &PeerIdentity) -> bool {
        let mut older: Vec<(Instant, u64)> = self
            .spis_of(identity)
            .into_iter()
            .filter_map(|spi| match self.sas.get(&spi) {
                Some(Sa::Up(e)) if e.peer.identity == *identity => Some((e.keyed_at(), spi)),
                _ => None,
            })
            .collect();
        older.sort();
        let mut was_current = false;
        let excess = (older.len() + 1).saturating_sub(MAX_IKE_SAS_PER_PEER);
        for (i, (_, spi)) in older.iter().enumerate() {
            let Some(Sa::Up(e)) = self.sas.get_mut(spi) else {
                continue;
            };
            let mut io = io!(self, now, rng);
            was_current |= e.is_current();
            if i < excess {
                tracing::debug!(
                    "{identity}: dropping its oldest IKE SA {} (at most {MAX_IKE_SAS_PER_PEER} per peer)",
                    crate::sa::hex_spi(*spi)
                );
                e.replaced_by_reauthentication(&mut io, false);
                e.dispose(&mut io);
                self.sas.remove(spi);
                self.forget(*spi);
            } else {
                e.replaced_by_reauthentication(&mut io, false);
            }
        }
        was_current
    }

    /// INITIAL_CONTACT: every other IKE SA of this identity is stale (the peer restarted).
    fn initial_contact(
        &mut self,
        now: Now,
        rng: &mut dyn Random,
        identity: &PeerIdentity,
        keep: u64,
    ) {
        let stale: Vec<u64> = self
            .spis_of(identity)
            .into_iter()
            .filter(|spi| {
                *spi != keep
                    && matches!(self.sas.get(spi), Some(Sa::Up(e)) if e.peer.identity == *identity)
            })
            .collect();
        for spi in stale {
            if let Some(Sa::Up(mut e)) = self.sas.remove(&spi) {
                let mut io = io!(self, now, rng);
                e.kill(
                    &mut io,
                    format!("replaced: INITIAL_CONTACT from {identity}"),
                );
                self.forget(spi);
            }
        }
    }

    /// Hands the responder's expensive work out through [`Endpoint::poll_crypto_job`] instead of
    /// doing it in place: our key pairs, made ahead in batches (an answer takes one; with none
    /// ready it is made in place), the shared secret and keys after IKE_SA_INIT, and the
    /// signature work of IKE_AUTH (the peer's certificate chain and AUTH checked, ours signed).
    /// A responder's driver then runs each on another core, or itself when it has nothing else
    /// to do (docs/ARCHITECTURE.md, "Crypto jobs"). The half-open SA waits for its
    /// [`Endpoint::handle_crypto_done`] (until it expires): an IKE_AUTH request that comes
    /// before the keys is kept (one), a retransmission while its signature work is out is
    /// dropped.
    pub fn defer_crypto(&mut self, on: bool) {
        self.defer_crypto = on;
        self.key_pool.enable(on);
    }

    /// The next job to run ([`CryptoJob::run`], on any thread).
    pub fn poll_crypto_job(&mut self) -> Option<Box<CryptoJob>> {
        self.crypto_jobs
            .pop_front()
            .or_else(|| self.key_pool.poll_job())
    }

    /// A finished job: a half-open SA gets its keys (and the IKE_AUTH request that waited for
    /// them is taken), or an IKE_AUTH request is answered (or refused). A job whose half-open
    /// SA has gone meanwhile is dropped.
    pub fn handle_crypto_done(&mut self, now: Now, done: CryptoDone, rng: &mut dyn Random) {
        match done.result {
            Finished::Keys(keys) => self.keys_derived(now, rng, done.spi, keys),
            Finished::Signatures(proof) => {
                self.signatures_checked(now, rng, done.spi, proof, done.generation)
            }
            Finished::KeyPairs(group, pairs) => self.key_pool.refilled(group, pairs),
        }
    }

    fn keys_derived(
        &mut self,
        now: Now,
        rng: &mut dyn Random,
        spi: u64,
        keys: Result<IkeSaKeys, CryptoError>,
    ) {
        let Some(Sa::Deriving(deriving)) = self.take_sa(spi, |sa| matches!(sa, Sa::Deriving(_)))
        else {
            tracing::debug!(
                "keys for {} came after the SA went",
                crate::sa::hex_spi(spi)
            );
            return;
        };
        let (spi_i, source) = (deriving.spi_i(), deriving.init.source);
        match keys.and_then(|keys| deriving.keys_derived(keys)) {
            Ok((half_open, Some(early))) => self.auth_request(
                now,
                early.local,
                early.remote,
                &early.header,
                &early.data,
                half_open,
                rng,
            ),
            Ok((half_open, None)) => {
                self.sas.insert(spi, Sa::HalfOpen(Box::new(half_open)));
            }
            Err(e) => {
                // A low-order X25519 point (RFC 7748 6.1): in place it is answered with
                // INVALID_SYNTAX; here the answer went out before, so the SA just goes.
                tracing::debug!("IKE_SA_INIT from {source}: {e}; its half-open SA dropped");
                self.half_open_gone(spi_i, source, false);
                self.spis.release_ike(spi);
            }
        }
    }

    fn signatures_checked(
        &mut self,
        now: Now,
        rng: &mut dyn Random,
        spi: u64,
        proof: Result<AuthProof, IkeError>,
        job_generation: u64,
    ) {
        let Some(Sa::HalfOpen(half_open)) = self.take_sa(spi, |sa| matches!(sa, Sa::HalfOpen(_)))
        else {
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
        let result = (*half_open).resume(
            &mut io,
            role.authorizer.as_ref(),
            proof,
            job_generation,
            generation,
        );
        self.auth_result(now, rng, spi, result);
    }

    /// Removes the SA `spi` if it is in the state `wanted` says (any other stays).
    fn take_sa(&mut self, spi: u64, wanted: impl Fn(&Sa) -> bool) -> Option<Sa> {
        if self.sas.get(&spi).is_some_and(wanted) {
            self.sas.remove(&spi)
        } else {
            None
        }
    }
}
