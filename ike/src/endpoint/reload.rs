//! A configuration reload (SIGHUP): the endpoint takes new settings for what it does from now
//! on, and leaves its IKE and CHILD SAs as they are.
//!
//! New IKE SAs are checked with the new verifier (CA, CRL), the new authorizer and the new
//! proposals, and sign with our new certificate and key. Established IKE SAs keep their keys,
//! peers and CHILD SAs; their later exchanges (rekeys, liveness checks, retransmissions) use the
//! new proposals, limits and timers. What names the endpoint itself (our identity, the ports)
//! cannot change without a restart: such a reload is refused and nothing changes.

use super::{Authorizer, CommonConfig, Endpoint, Now, Random, Role, Sa};
use crate::sa::Io;

/// The settings a reload replaces.
pub struct Reload {
    /// Certificates, key, verifier, proposals, limits, timers. `identity`, `ike_port` and
    /// `nat_port` must equal the running ones.
    pub common: CommonConfig,
    /// The server's own settings; `None` for a client.
    pub responder: Option<ResponderReload>,
}

/// The responder's settings a reload replaces.
pub struct ResponderReload {
    /// Which prefixes each client may use (`[[clients]]`, `server.pool`).
    pub authorizer: Box<dyn Authorizer>,
    /// COOKIE once this many IKE SAs are half open.
    pub cookie_threshold: u32,
    /// At most this many half-open IKE SAs per source address.
    pub half_open_per_source: u32,
    /// At most this many half-open IKE SAs in total.
    pub half_open_total: u32,
    /// New IKE SAs one identity may make in a burst, then one every 10 s; 0: no bound.
    pub new_ike_sas_per_identity: u32,
}

/// Why the endpoint refused a reload (it keeps its running settings).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// Something that names the endpoint changed.
    #[error("{what} changed ({old} -> {new}), which needs a restart")]
    NeedsRestart {
        /// What changed.
        what: &'static str,
        /// The running value.
        old: String,
        /// The new value.
        new: String,
    },
    /// Server settings for a client, or none for a server.
    #[error("the reload is for the other role")]
    WrongRole,
}

impl Endpoint {
    /// Takes new settings for new IKE SAs (and for the later exchanges of established ones).
    /// Every IKE and CHILD SA stays, except those of a peer that no longer passes the new
    /// CA, CRL or client list: they get a DELETE and go (returned as "NAME: why"). On a
    /// server, a CHILD SA whose remote selector the new client list no longer gives its peer
    /// goes too (a notice names the peer and the selector), while its peer's other pairs stay.
    /// On an error nothing changed.
    pub fn reload(
        &mut self,
        now: Now,
        rng: &mut dyn Random,
        reload: Reload,
    ) -> Result<Vec<String>, ReloadError> {
        let restart = |what: &'static str, old: String, new: String| {
            Err(ReloadError::NeedsRestart { what, old, new })
        };
        let (old, new) = (&self.common, &reload.common);
        if old.identity != new.identity {
            return restart(
                "our identity",
                old.identity.to_string(),
                new.identity.to_string(),
            );
        }
        if old.ike_port != new.ike_port {
            return restart(
                "the IKE port",
                old.ike_port.to_string(),
                new.ike_port.to_string(),
            );
        }
        if old.nat_port != new.nat_port {
            return restart(
                "the NAT-T port",
                old.nat_port.to_string(),
                new.nat_port.to_string(),
            );
        }
        match (&mut self.role, reload.responder) {
            (Role::Responder(role), Some(r)) => {
                role.authorizer = r.authorizer;
                role.cookie_threshold = r.cookie_threshold;
                role.half_open_per_source = r.half_open_per_source;
                role.half_open_total = r.half_open_total;
                role.new_ike_sas_per_identity = r.new_ike_sas_per_identity;
            }
            (Role::Initiator(_), None) => {}
            _ => return Err(ReloadError::WrongRole),
        }
        let new_credentials = self.common.chain != reload.common.chain;
        self.common = reload.common;
        // Deadlines depend on the configuration (liveness, rekey by time).
        self.sas.all_stale();
        // Signature work handed out before now is checked again when it comes back.
        self.generation += 1;
        let refused = self.cut_off_untrusted(now, rng);
        if new_credentials && matches!(self.role, Role::Initiator(_)) {
            // A renewed certificate: the server sees it at the next IKE_AUTH, made now,
            // before the old IKE SA goes (make-before-break re-authentication).
            for sa in self.sas.values_mut() {
                if let Sa::Up(e) = sa
                    && e.is_current()
                {
                    e.request_reestablish();
                }
            }
            self.after(now, rng);
        }
        Ok(refused)
    }

    /// Deletes the IKE SAs (and their CHILD SAs) of peers the current settings refuse, and
    /// on a server the CHILD SAs whose selectors the new authorizer no longer allows.
    fn cut_off_untrusted(&mut self, now: Now, rng: &mut dyn Random) -> Vec<String> {
        let authorizer = match &self.role {
            Role::Responder(role) => Some(role.authorizer.as_ref()),
            Role::Initiator(_) => None,
        };
        let mut refused: Vec<(u64, String, crate::sa::established::Distrust)> = Vec::new();
        let mut narrowed: Vec<(u64, Vec<ipnet::Ipv6Net>)> = Vec::new();
        // Replaced IKE SAs still holding pairs (make-before-break after a re-authentication)
        // that the new settings touch: they no longer speak for the peer, so they go whole,
        // at once, rather than carry traffic the peer may no longer send for up to a minute.
        let mut replaced: Vec<u64> = Vec::new();
        for (spi, sa) in self.sas.iter() {
            let Sa::Up(e) = sa else { continue };
            if !e.is_current() {
                if e.holds_pairs()
                    && !matches!(
                        e.still_trusted(&self.common.verifier, authorizer, now),
                        Ok(None)
                    )
                {
                    replaced.push(*spi);
                }
                continue;
            }
            match e.still_trusted(&self.common.verifier, authorizer, now) {
                Ok(Some(allowed)) => narrowed.push((*spi, allowed)),
                Ok(None) => {}
                Err(why) => refused.push((*spi, e.peer.name.clone(), why)),
            }
        }
        for spi in replaced {
            if let Some(Sa::Up(mut e)) = self.sas.remove(&spi) {
                tracing::debug!(
                    "{}: its replaced IKE SA {} and its pairs go with the new settings",
                    e.peer.name,
                    crate::sa::hex_spi(spi)
                );
                let mut io = io!(self, now, rng);
                e.dispose(&mut io);
            }
            self.forget(spi);
        }
        for (spi, allowed) in narrowed {
            if let Some(Sa::Up(e)) = self.sas.get_mut(&spi) {
                let mut io = io!(self, now, rng);
                e.keep_only(&mut io, allowed);
            }
        }
        for (spi, _, why) in &refused {
            if let Some(Sa::Up(mut e)) = self.sas.remove(spi) {
                let mut io = io!(self, now, rng);
                e.close_because(
                    &mut io,
                    format!("no longer allowed (new CA, CRL or settings): {why}"),
                );
                e.dispose(&mut io);
            }
            self.forget(*spi);
        }
        refused
            .into_iter()
            .map(|(_, name, why)| format!("{name}: {why}"))
            .collect()
    }
}
