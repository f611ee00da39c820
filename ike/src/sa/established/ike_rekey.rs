//! IKE SA rekeys (RFC 7296 1.3.2) in both roles, with the collision rule of 2.8.2: the new IKE SA
//! takes the CHILD SAs, the old one is deleted.

use super::requests::{Outstanding, Pending, Task};
use super::{Effect, Established, EstablishedParams, Lifecycle};
use crate::crypto::{DhGroup, KeyExchange};
use crate::notice::Notice;
use crate::proposal::IkeProposal;
use crate::sa::child::Child;
use crate::sa::{IkeCore, IkeError, Io, error_notify, hex_spi, lowest_nonce_in};
use crate::wire::{self, ExchangeType, NotifyType, Payload, PayloadList};

/// When the peer's exchange (its CHILD SA rekey, or its side of a shared limit) makes an IKE SA
/// rekey due, we wait this long before starting ours: the peer, which rekeys at once, most
/// likely does it first, and no collision (RFC 7296 2.8.2) needs resolving.
pub(crate) const IKE_REKEY_DEFER: std::time::Duration = std::time::Duration::from_secs(5);

/// An IKE SA rekey request in flight.
pub(super) struct IkeRekeyRequested {
    pub(super) new_spi: u64,
    pub(super) ni: Vec<u8>,
    pub(super) ke: KeyExchange,
}

/// A peer's IKE SA rekey that arrived while ours was in flight (RFC 7296 2.8.2).
pub(super) struct IkeCollision {
    /// Our SPI of the IKE SA the peer's exchange created.
    pub(super) new_spi: u64,
    pub(super) ni: Vec<u8>,
    pub(super) nr: Vec<u8>,
}

impl Established {
    /// The request of a IKE SA rekey (RFC 7296 1.3.2).
    pub(super) fn prepare_ike_rekey(
        &mut self,
        io: &mut Io<'_>,
        group: Option<DhGroup>,
    ) -> Option<(ExchangeType, Vec<Payload>, Pending)> {
        if !self.is_current() || self.collision.is_some() {
            return None;
        }
        let group = group.unwrap_or(self.core.chosen.group);
        let ke = io.key_exchange(group);
        let new_spi = io.spis.new_ike(io.rng);
        let ni = io.nonce();
        let mut proposals = io.cfg.ike_proposals.clone();
        // The group of our KE first, so a responder that honours preference takes it.
        for p in &mut proposals {
            if let Some(pos) = p.groups.iter().position(|g| *g == group) {
                p.groups.remove(pos);
                p.groups.insert(0, group);
            }
        }
        let payloads = vec![
            Payload::Sa(IkeProposal::sa_payload(&proposals, &new_spi.to_be_bytes())),
            Payload::Nonce(wire::Nonce::new(ni.clone())),
            Payload::Ke(wire::KeyExchange::new(
                ke.group().to_wire(),
                ke.public_ke_data().to_vec(),
            )),
        ];
        io.notice(Notice::IkeRekeying {
            peer: self.peer.name.clone(),
        });
        Some((
            ExchangeType::CREATE_CHILD_SA,
            payloads,
            Pending::IkeRekey(IkeRekeyRequested { new_spi, ni, ke }),
        ))
    }

    pub(super) fn respond_ike_rekey(
        &mut self,
        io: &mut Io<'_>,
        sa: &wire::SecurityAssociation,
        inner: &[Payload],
        effects: &mut Vec<Effect>,
    ) -> Result<Vec<Payload>, IkeError> {
        let ours_in_flight = match &self.outstanding {
            Some(Outstanding {
                pending: Pending::IkeRekey(_),
                ..
            }) => true,
            Some(_) => {
                return Err(IkeError::TemporaryFailure(
                    "another exchange is in progress",
                ));
            }
            None => false,
        };
        if self.collision.is_some() {
            return Err(IkeError::TemporaryFailure("the IKE SA is being rekeyed"));
        }
        let (ni, ke) = ike_rekey_payloads(inner)?;
        let (chosen, their_spi, mut answer) =
            IkeProposal::select(&io.cfg.ike_proposals, sa, Some(ke.group), &[])?;
        if chosen.group.to_wire() != ke.group {
            return Err(IkeError::InvalidKe {
                wanted: chosen.group,
                got: ke.group.0,
            });
        }
        // Each costs a Diffie-Hellman exchange here: the peer's IKE SA rekeys take from the
        // bucket of its CHILD SA rekeys.
        if !self.peer_rekeys.take(io.now.mono) {
            return Err(IkeError::TemporaryFailure("rekeying too often"));
        }
        let their_spi = <[u8; 8]>::try_from(their_spi.as_slice())
            .map(u64::from_be_bytes)
            .ok()
            .filter(|&s| s != 0)
            .ok_or_else(|| IkeError::syntax("IKE SA rekey without an 8-byte SPI"))?;
        let our_ke = io.key_exchange(chosen.group);
        let g_ir = our_ke.shared_secret(&ke.data)?;
        let nr = io.nonce();
        let new_spi = io.spis.new_ike(io.rng);
        let keys = match self
            .core
            .keys
            .rekey(chosen.encryption, &g_ir, ni, &nr, their_spi, new_spi)
        {
            Ok(keys) => keys,
            Err(e) => {
                io.spis.release_ike(new_spi);
                return Err(e.into());
            }
        };
        answer.spi = new_spi.to_be_bytes().to_vec();
        let core = match IkeCore::new(
            keys,
            chosen,
            their_spi,
            new_spi,
            false,
            self.core.addresses(),
        ) {
            Ok(core) => core,
            Err(e) => {
                io.spis.release_ike(new_spi);
                return Err(e.into());
            }
        };
        io.counters.ike_rekeys += 1;
        let mut new = self.successor(io, core);
        if ours_in_flight {
            io.notice(Notice::IkeRekeyCollision {
                spi: hex_spi(self.core.our_spi()),
            });
            self.collision = Some(IkeCollision {
                new_spi,
                ni: ni.to_vec(),
                nr: nr.clone(),
            });
            new.lifecycle = Lifecycle::Superseded { since: io.now.mono };
        } else {
            io.notice(Notice::IkeRekeyedByPeer {
                old: hex_spi(self.core.our_spi()),
                peer: self.peer.name.clone(),
                new: hex_spi(new_spi),
            });
            let (children, tasks) = self.take_children();
            new.adopt_children(children, tasks);
            self.lifecycle = Lifecycle::Superseded { since: io.now.mono };
        }
        effects.push(Effect::Insert(Box::new(new)));
        Ok(vec![
            Payload::Sa(wire::SecurityAssociation::new(vec![answer])),
            Payload::Nonce(wire::Nonce::new(nr)),
            Payload::Ke(wire::KeyExchange::new(
                our_ke.group().to_wire(),
                our_ke.public_ke_data().to_vec(),
            )),
        ])
    }

    /// The IKE SA that replaces this one after a rekey: same peer, addresses and policy, new
    /// keys, message IDs from 0, no children yet.
    pub(super) fn successor(&self, io: &mut Io<'_>, core: IkeCore) -> Established {
        let mut new = Established::new(
            io,
            EstablishedParams {
                core,
                peer: self.peer.clone(),
                local_allowed: self.local_allowed.clone(),
                peer_allowed: self.peer_allowed.clone(),
                children: Vec::new(),
                next_request_id: 0,
                expected_request_id: 0,
                cached_response: None,
                mobike: self.mobike,
                client: self.client,
            },
        );
        new.established_at = self.established_at;
        new.last_moved = self.last_moved;
        new.moves = self.moves;
        new.child_endpoint = self.child_endpoint;
        new.pending_move = self.pending_move;
        // The peer's rekey budget carries over: a rekeyed IKE SA does not start it full again.
        new.peer_rekeys = self.peer_rekeys;
        new
    }

    /// Gives up the CHILD SAs and their queued work (to a rekeyed IKE SA).
    pub fn take_children(&mut self) -> (Vec<Child>, Vec<Task>) {
        let children = std::mem::take(&mut self.children);
        let mut tasks: Vec<Task> = Vec::new();
        self.queue.retain(|t| {
            if t.is_child_task() {
                tasks.push(t.clone());
                false
            } else {
                true
            }
        });
        self.deferred.retain(|(_, t)| {
            if t.is_child_task() {
                tasks.push(t.clone());
                false
            } else {
                true
            }
        });
        (children, tasks)
    }

    /// Takes over CHILD SAs and their queued work: this SA now speaks for the peer.
    pub fn adopt_children(&mut self, children: Vec<Child>, tasks: Vec<Task>) {
        // What they carried before these keys does not count toward the next IKE rekey.
        self.bytes_before += children.iter().map(|c| c.bytes).sum::<u64>();
        self.children.extend(children);
        self.queue.extend(tasks);
        self.lifecycle = Lifecycle::Current;
    }

    pub(super) fn ike_rekey_answered(
        &mut self,
        io: &mut Io<'_>,
        request: IkeRekeyRequested,
        inner: &[Payload],
    ) -> Vec<Effect> {
        if let Some(error) = error_notify(inner) {
            io.spis.release_ike(request.new_spi);
            if let Some(collision) = self.collision.take() {
                // The peer's colliding rekey stands.
                self.lifecycle = Lifecycle::Superseded { since: io.now.mono };
                return vec![Effect::MoveChildren {
                    to: collision.new_spi,
                }];
            }
            match error.notify_type {
                NotifyType::TEMPORARY_FAILURE => self.deferred.push((
                    io.now.mono + io.cfg.retransmit_base * 2,
                    Task::RekeyIke {
                        group: Some(request.ke.group()),
                    },
                )),
                NotifyType::INVALID_KE_PAYLOAD => {
                    let wanted = <[u8; 2]>::try_from(error.data.as_slice())
                        .ok()
                        .map(u16::from_be_bytes)
                        .and_then(DhGroup::from_id);
                    match wanted {
                        Some(g)
                            if g != request.ke.group()
                                && IkeProposal::all_groups(&io.cfg.ike_proposals).contains(&g) =>
                        {
                            self.queue.push_front(Task::RekeyIke { group: Some(g) });
                        }
                        _ => io.notice(Notice::IkeRekeyGroupUnwanted),
                    }
                }
                other => io.notice(Notice::IkeRekeyRefused {
                    peer: self.peer.name.clone(),
                    notify: other,
                }),
            }
            return Vec::new();
        }
        let accepted = (|| {
            let (sa, nr, ke) = ike_rekey_response_payloads(inner)?;
            let (chosen, their_spi) = IkeProposal::accept(&io.cfg.ike_proposals, sa)?;
            if chosen.group != request.ke.group() || ke.group != request.ke.group().to_wire() {
                return Err(IkeError::syntax("IKE SA rekey answered with another group"));
            }
            let their_spi = <[u8; 8]>::try_from(their_spi.as_slice())
                .map(u64::from_be_bytes)
                .ok()
                .filter(|&s| s != 0)
                .ok_or_else(|| IkeError::syntax("IKE SA rekey answer without an 8-byte SPI"))?;
            let g_ir = request.ke.shared_secret(&ke.data)?;
            let keys = self.core.keys.rekey(
                chosen.encryption,
                &g_ir,
                &request.ni,
                &nr.data,
                request.new_spi,
                their_spi,
            )?;
            let core = IkeCore::new(
                keys,
                chosen,
                request.new_spi,
                their_spi,
                true,
                self.core.addresses(),
            )?;
            Ok((core, nr.data.clone()))
        })();
        let (core, nr) = match accepted {
            Ok(v) => v,
            Err(e) => {
                io.notice(Notice::IkeRekeyFailed {
                    peer: self.peer.name.clone(),
                    error: e,
                });
                io.spis.release_ike(request.new_spi);
                return Vec::new();
            }
        };
        io.counters.ike_rekeys += 1;
        let mut new = self.successor(io, core);
        let now = io.now.mono;
        if self.is_leaving() {
            // Shutting down: the peer made the new IKE SA; it is deleted too (the old one's
            // DELETE is queued already).
            new.lifecycle = Lifecycle::Leaving { since: now };
            new.queue.push_back(Task::DeleteIke);
            return vec![Effect::Insert(Box::new(new))];
        }
        let mut effects = Vec::new();
        match self.collision.take() {
            Some(theirs) if lowest_nonce_in((&request.ni, &nr), (&theirs.ni, &theirs.nr)) => {
                // Ours is redundant: we delete it; the children go to the peer's new SA,
                // and the peer deletes the old one.
                io.notice(Notice::IkeRekeyCollisionOutcome { ours_wins: false });
                new.lifecycle = Lifecycle::Superseded { since: now };
                new.queue.push_back(Task::DeleteIke);
                self.lifecycle = Lifecycle::Superseded { since: now };
                effects.push(Effect::MoveChildren { to: theirs.new_spi });
            }
            theirs => {
                if theirs.is_some() {
                    io.notice(Notice::IkeRekeyCollisionOutcome { ours_wins: true });
                }
                io.notice(Notice::IkeRekeyed {
                    old: hex_spi(self.core.our_spi()),
                    new: hex_spi(request.new_spi),
                });
                let (children, tasks) = self.take_children();
                new.adopt_children(children, tasks);
                self.lifecycle = Lifecycle::Superseded { since: now };
                self.queue.push_back(Task::DeleteIke);
            }
        }
        effects.insert(0, Effect::Insert(Box::new(new)));
        effects
    }

    /// Whether an IKE SA rekey of ours is planned, queued or in flight.
    pub(super) fn ike_rekey_planned(&self) -> bool {
        self.deferred
            .iter()
            .any(|(_, t)| matches!(t, Task::RekeyIke { .. }))
            || self
                .queue
                .iter()
                .any(|t| matches!(t, Task::RekeyIke { .. }))
            || matches!(
                self.outstanding,
                Some(Outstanding {
                    pending: Pending::IkeRekey(_),
                    ..
                })
            )
            || self.collision.is_some()
    }

    /// An IKE SA rekey is due (`why`, for the log). `now`: we start it at once, else after
    /// [`IKE_REKEY_DEFER`] unless the peer's rekey replaced this SA meanwhile.
    pub(super) fn want_ike_rekey(&mut self, io: &mut Io<'_>, now: bool, why: &str) {
        if !self.is_current() || self.ike_rekey_planned() {
            return;
        }
        if now {
            tracing::debug!("IKE SA with {}: rekey {why}", self.peer.name);
            self.rekey(io);
        } else {
            tracing::debug!(
                "IKE SA with {}: rekey {why} in {IKE_REKEY_DEFER:?} unless the peer starts it",
                self.peer.name
            );
            self.deferred.push((
                io.now.mono + IKE_REKEY_DEFER,
                Task::RekeyIke { group: None },
            ));
        }
    }

    /// Bytes its CHILD SAs carried since this IKE SA got its keys.
    pub(super) fn bytes_since_keyed(&self) -> u64 {
        let current: u64 = self.children.iter().map(|c| c.bytes).sum();
        (self.bytes_gone + current).saturating_sub(self.bytes_before)
    }

    /// The byte and time bounds of the IKE rekey policy: the client starts the rekey, the
    /// server a moment later if the client did not.
    pub(super) fn check_ike_rekey_bounds(&mut self, io: &mut Io<'_>) {
        let policy = io.cfg.ike_rekey;
        if let Some(limit) = policy.bytes
            && self.bytes_since_keyed() >= limit
        {
            self.want_ike_rekey(io, self.client, "after its byte limit");
        }
        if let Some(seconds) = policy.seconds
            && io.now.mono >= self.keyed_at + std::time::Duration::from_secs(seconds)
        {
            self.want_ike_rekey(io, self.client, "after its time limit");
        }
    }

    /// Starts an IKE SA rekey.
    pub fn rekey(&mut self, io: &mut Io<'_>) {
        if !self.is_current()
            || self.collision.is_some()
            || self
                .queue
                .iter()
                .any(|t| matches!(t, Task::RekeyIke { .. }))
            || matches!(
                self.outstanding,
                Some(Outstanding {
                    pending: Pending::IkeRekey(_),
                    ..
                })
            )
        {
            return;
        }
        self.queue_task(io, Task::RekeyIke { group: None }, false);
    }
}

/// Ni and KE of an IKE SA rekey request.
fn ike_rekey_payloads(inner: &[Payload]) -> Result<(&[u8], &wire::KeyExchange), IkeError> {
    match (inner.nonce(), inner.ke()) {
        (Some(ni), Some(ke)) => Ok((&ni.data, ke)),
        _ => Err(IkeError::syntax("IKE SA rekey request lacks Ni or KE")),
    }
}

type IkeRekeyResponse<'a> = (
    &'a wire::SecurityAssociation,
    &'a wire::Nonce,
    &'a wire::KeyExchange,
);

/// SA, Nr and KE of an IKE SA rekey response.
fn ike_rekey_response_payloads(inner: &[Payload]) -> Result<IkeRekeyResponse<'_>, IkeError> {
    match (inner.sa(), inner.nonce(), inner.ke()) {
        (Some(sa), Some(nr), Some(ke)) => Ok((sa, nr, ke)),
        _ => Err(IkeError::syntax("IKE SA rekey response lacks SA, Nr or KE")),
    }
}
