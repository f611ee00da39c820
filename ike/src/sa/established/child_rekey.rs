//! CHILD SA rekeys (RFC 7296 1.3.3) in both roles, make-before-break, with the collision rule of
//! 2.8.1 (the pair with the lowest nonce is redundant), a KE payload for perfect forward secrecy
//! by default (1.3.1), and what happens when a rekey does not work out: a refused or failed rekey
//! is tried again with backoff, adjusted to what the peer asked for; a pair that reaches its hard
//! limit first is deleted and the tunnel re-established (docs/ARCHITECTURE.md, "Rekeys").

use std::time::Duration;

use hometun_control::{ControlError, Spi};

use super::requests::{Outstanding, Pending, RekeyKe, Task};
use super::{Effect, Established};
use crate::crypto::{DhGroup, KeyExchange};
use crate::io::Output;
use crate::notice::{Collision, Notice};
use crate::proposal::{ChosenEsp, EspGroups, EspProposal};
use crate::sa::child::{Child, ChildState, ExchangeRole, RekeyRecord, join};
use crate::sa::{IkeError, Io, has_notify, lowest_nonce_in};
use crate::selectors::{narrow, prefixes_of, to_payload, within};
use crate::wire::{self, ExchangeType, Notify, NotifyType, Payload, PayloadList, ProtocolId};

/// How long the old pair of a rekey we made lives at most when the forwarder's counters show
/// no traffic on its successor (an idle tunnel: make-before-break's grace period). With
/// traffic, the DELETE leaves at the first counter report that shows the successor carried
/// some, in either direction: our outbound moves to it when it is installed, so that is
/// normally the first report after the CREATE_CHILD_SA response.
pub(crate) const REKEY_DELETE_GRACE: Duration = Duration::from_secs(10);

/// How long a pair the peer replaced waits for the peer's DELETE before we delete it
/// ourselves: a peer that rekeys and never deletes must not pile pairs up.
pub(crate) const PEER_DELETE_PATIENCE: Duration = Duration::from_secs(30);

/// How long the inbound SA of a pair whose DELETE exchange we completed stays installed, for
/// packets the peer sent on it before it processed the DELETE (strongSwan's
/// `delete_rekeyed_delay` on its initiator side).
pub(crate) const DELETED_INBOUND_LINGER: Duration = Duration::from_secs(2);

/// At most this many CHILD SA pairs per IKE SA: one in use, its successor during a rekey, and
/// a third during a collision. A peer's rekey beyond it is refused.
pub(crate) const MAX_CHILDREN: usize = 4;

/// The longest wait between two tries of a refused or failed rekey.
pub(crate) const REKEY_RETRY_MAX: Duration = Duration::from_secs(60);

/// A CHILD SA rekey request in flight.
pub(super) struct ChildRekeyRequested {
    pub(super) old_spi_in: Spi,
    pub(super) new_spi_in: Spi,
    pub(super) ni: Vec<u8>,
    pub(super) ke: Option<KeyExchange>,
    /// What the request's KE was chosen by (for the next try's adjustment).
    pub(super) ke_choice: RekeyKe,
    /// The selectors we proposed: the answer may narrow them, never widen them (RFC 7296 2.9).
    pub(super) local_ts: Vec<ipnet::Ipv6Net>,
    pub(super) remote_ts: Vec<ipnet::Ipv6Net>,
}

/// What a peer's CHILD SA rekey request is granted: the proposal chosen, our answer to it
/// (its SPI still to be set), and the selectors narrowed to what each side may use.
struct RekeyGrant {
    chosen: ChosenEsp,
    peer_spi: Spi,
    answer: wire::Proposal,
    their_ts: Vec<ipnet::Ipv6Net>,
    our_ts: Vec<ipnet::Ipv6Net>,
}

/// The wait before try `failures + 1` of a rekey: doubling from twice the retransmission
/// timeout, at most [`REKEY_RETRY_MAX`].
pub(crate) fn rekey_backoff(base: Duration, failures: u32) -> Duration {
    let doubled = base.saturating_mul(2u32.saturating_pow(failures.min(16)));
    doubled.clamp(base, REKEY_RETRY_MAX.max(base))
}

impl Established {
    /// The request of a CHILD SA rekey (RFC 7296 1.3.3).
    pub(super) fn prepare_child_rekey(
        &mut self,
        io: &mut Io<'_>,
        spi_in: Spi,
        ke_choice: RekeyKe,
    ) -> Option<(ExchangeType, Vec<Payload>, Pending)> {
        let child = self.children.iter_mut().find(|c| c.spi_in == spi_in)?;
        if !matches!(child.state, ChildState::Active | ChildState::Rekeying) {
            return None;
        }
        child.state = ChildState::Rekeying;
        child.pending_rekey_in_flight = true;
        let group = match ke_choice {
            RekeyKe::Default => EspProposal::default_group(&io.cfg.esp_proposals),
            RekeyKe::Group(g) => Some(g),
            RekeyKe::WithoutPfs => None,
        };
        let ke = group.map(|g| io.key_exchange(g));
        let new_spi_in = io.spis.new_esp(io.rng);
        let ni = io.nonce();
        let mut payloads = vec![
            Payload::Notify(Notify::with_spi(
                ProtocolId::ESP,
                spi_in.to_bytes().to_vec(),
                NotifyType::REKEY_SA,
                Vec::new(),
            )),
            Payload::Sa(EspProposal::sa_payload(
                &io.cfg.esp_proposals,
                new_spi_in,
                ke.is_some(),
            )),
            Payload::Nonce(wire::Nonce::new(ni.clone())),
        ];
        if let Some(k) = &ke {
            payloads.push(Payload::Ke(wire::KeyExchange::new(
                k.group().to_wire(),
                k.public_ke_data().to_vec(),
            )));
        }
        payloads.push(Payload::TsI(to_payload(&child.local_ts)));
        payloads.push(Payload::TsR(to_payload(&child.remote_ts)));
        io.notice(Notice::ChildRekeying {
            spi_in,
            peer: self.peer.name.clone(),
            pfs: ke.as_ref().map(|k| k.group()),
        });
        let (local_ts, remote_ts) = (child.local_ts.clone(), child.remote_ts.clone());
        Some((
            ExchangeType::CREATE_CHILD_SA,
            payloads,
            Pending::ChildRekey(ChildRekeyRequested {
                old_spi_in: spi_in,
                new_spi_in,
                ni,
                ke,
                ke_choice,
                local_ts,
                remote_ts,
            }),
        ))
    }

    /// Answers a peer's CHILD SA rekey request (RFC 7296 1.3.3): the new pair is installed
    /// before the answer leaves, and the old one waits for the peer's DELETE, or for the
    /// collision rule of 2.8.1 when our own rekey of it crossed this one.
    pub(super) fn respond_child_rekey(
        &mut self,
        io: &mut Io<'_>,
        rekey: &Notify,
        sa: &wire::SecurityAssociation,
        inner: &[Payload],
    ) -> Result<Vec<Payload>, IkeError> {
        let index = self.pair_the_peer_may_rekey(io, rekey)?;
        let (ni, ke, tsi, tsr) = child_request_payloads(inner)?;
        let grant = self.grant_child_rekey(io, sa, inner, ke, tsi, tsr)?;
        let our_ke = grant.chosen.group.map(|g| io.key_exchange(g));
        let g_ir = match (&our_ke, ke) {
            (Some(ours), Some(theirs)) => Some(ours.shared_secret(&theirs.data)?),
            _ => None,
        };
        let nr = io.nonce();
        let keys = self.core.keys.child_sa_keys(
            grant.chosen.encryption,
            g_ir.as_ref().map(|g| g.as_slice()),
            ni,
            &nr,
        )?;
        let spi_in = io.spis.new_esp(io.rng);
        let mut answer = grant.answer;
        answer.spi = spi_in.to_bytes().to_vec();
        let new = Child::new(
            spi_in,
            grant.peer_spi,
            grant.chosen,
            grant.our_ts.clone(),
            grant.their_ts.clone(),
        );
        new.install(
            io,
            self.peer.id,
            &self.core,
            keys,
            ExchangeRole::Responder,
            self.child_endpoint,
        );
        let record = RekeyRecord {
            successor: spi_in,
            ni: ni.to_vec(),
            nr: nr.clone(),
        };
        let completed = self.replaced_by_peer(io, index, record);
        self.children.push(new);
        if completed {
            self.child_rekey_completed(io, false);
        }

        let mut payloads = vec![
            Payload::Sa(wire::SecurityAssociation::new(vec![answer])),
            Payload::Nonce(wire::Nonce::new(nr)),
        ];
        if let Some(k) = our_ke {
            payloads.push(Payload::Ke(wire::KeyExchange::new(
                k.group().to_wire(),
                k.public_ke_data().to_vec(),
            )));
        }
        payloads.push(Payload::TsI(to_payload(&grant.their_ts)));
        payloads.push(Payload::TsR(to_payload(&grant.our_ts)));
        Ok(payloads)
    }

    /// The index of the pair a peer's REKEY_SA names, if the peer may rekey it now: not while
    /// our IKE SA rekey is out, not a pair being deleted or already replaced, within
    /// [`MAX_CHILDREN`] and the peer's rekey rate.
    fn pair_the_peer_may_rekey(&mut self, io: &Io<'_>, rekey: &Notify) -> Result<usize, IkeError> {
        if matches!(
            self.outstanding,
            Some(Outstanding {
                pending: Pending::IkeRekey(_),
                ..
            })
        ) {
            return Err(IkeError::TemporaryFailure("the IKE SA is being rekeyed"));
        }
        let spi = Spi::from_bytes(&rekey.spi)
            .ok_or_else(|| IkeError::syntax("REKEY_SA without a 4-byte SPI"))?;
        let index = self
            .children
            .iter()
            .position(|c| c.spi_out == spi)
            .ok_or(IkeError::ChildSaNotFound(spi))?;
        match self.children[index].state {
            ChildState::Deleting => {
                return Err(IkeError::TemporaryFailure("the CHILD SA is being deleted"));
            }
            // A pair the peer already replaced is not rekeyed again: its successor is.
            ChildState::AwaitingPeerDelete { .. } => {
                return Err(IkeError::ChildSaNotFound(spi));
            }
            // Ours replaced it; only a request that crossed ours (a late collision) may come.
            ChildState::Superseded { .. } if self.children[index].peer_rekey.is_some() => {
                return Err(IkeError::ChildSaNotFound(spi));
            }
            _ => {}
        }
        if self.children.len() >= MAX_CHILDREN {
            return Err(IkeError::TemporaryFailure(
                "too many CHILD SAs; delete the replaced ones first",
            ));
        }
        if !self.peer_rekeys.take(io.now.mono) {
            return Err(IkeError::TemporaryFailure("rekeying too often"));
        }
        Ok(index)
    }

    /// What we grant a peer's rekey request: one of our ESP proposals in tunnel mode, its KE
    /// of the chosen group, and selectors narrowed to what each side may use (the peer's to
    /// what its certificate allows).
    fn grant_child_rekey(
        &self,
        io: &Io<'_>,
        sa: &wire::SecurityAssociation,
        inner: &[Payload],
        ke: Option<&wire::KeyExchange>,
        tsi: &wire::TrafficSelectors,
        tsr: &wire::TrafficSelectors,
    ) -> Result<RekeyGrant, IkeError> {
        if has_notify(inner, NotifyType::USE_TRANSPORT_MODE) {
            return Err(IkeError::NoProposalChosen(
                "transport mode requested; only tunnel mode is offered".into(),
            ));
        }
        let groups = ke.map_or(EspGroups::None, |k| EspGroups::Ke(k.group));
        let (chosen, peer_spi, answer) =
            EspProposal::select(&io.cfg.esp_proposals, sa, groups, Spi(0))?;
        if let Some(ke) = ke
            && let Some(group) = chosen.group
            && group.to_wire() != ke.group
        {
            return Err(IkeError::InvalidKe {
                wanted: group,
                got: ke.group.0,
            });
        }
        let their_ts = narrow(tsi, &self.peer_allowed);
        let our_ts = narrow(tsr, &self.local_allowed);
        if their_ts.is_empty() || our_ts.is_empty() {
            return Err(IkeError::TsUnacceptable(format!(
                "{} asks for {} === {}",
                self.peer.name,
                join(&prefixes_of(tsi)),
                join(&prefixes_of(tsr))
            )));
        }
        Ok(RekeyGrant {
            chosen,
            peer_spi,
            answer,
            their_ts,
            our_ts,
        })
    }

    /// The pair at `index` was replaced by the peer's rekey `record`: it waits for the peer's
    /// DELETE, or, when our own rekey of it crossed the peer's, the collision rule of RFC 7296
    /// 2.8.1 decides which new pair is redundant. Returns whether the rekey is complete (no
    /// collision left to decide).
    fn replaced_by_peer(&mut self, io: &mut Io<'_>, index: usize, record: RekeyRecord) -> bool {
        let old_spi_in = self.children[index].spi_in;
        let new_spi_in = record.successor;
        let delete_at = io.now.mono + PEER_DELETE_PATIENCE;
        let mut redundant = None;
        let mut completed = false;
        let old = &mut self.children[index];
        match old.state.clone() {
            ChildState::Rekeying if old.pending_rekey_in_flight => {
                // Collision with our own rekey in flight: decided when its answer comes.
                io.notice(Notice::ChildRekeyCollision {
                    spi_in: old_spi_in,
                    collision: Collision::Seen,
                });
                old.peer_rekey = Some(record);
            }
            ChildState::Superseded { successor, .. } if old.our_rekey.is_some() => {
                // Our rekey of this pair already completed: a late collision.
                let mine = old.our_rekey.clone().expect("checked by the guard");
                let ours_is_redundant =
                    lowest_nonce_in((&mine.ni, &mine.nr), (&record.ni, &record.nr));
                old.peer_rekey = Some(record);
                if ours_is_redundant {
                    // Our pair is the redundant one: we delete it, the peer deletes the old
                    // one.
                    old.state = ChildState::AwaitingPeerDelete {
                        successor: new_spi_in,
                        delete_at,
                    };
                    redundant = Some(successor);
                } else {
                    io.notice(Notice::ChildRekeyCollision {
                        spi_in: old_spi_in,
                        collision: Collision::LateOursWins,
                    });
                }
            }
            _ => {
                // Our own rekey of it, if one waits for a retry, is moot now.
                old.state = ChildState::AwaitingPeerDelete {
                    successor: new_spi_in,
                    delete_at,
                };
                completed = true;
                io.output(Output::Rekeyed {
                    peer: self.peer.id,
                    name: self.peer.name.clone(),
                    old_spi_in,
                    new_spi_in,
                });
            }
        }
        if let Some(ours) = redundant {
            io.notice(Notice::ChildRekeyCollision {
                spi_in: old_spi_in,
                collision: Collision::LateOursRedundant,
            });
            io.output(Output::Rekeyed {
                peer: self.peer.id,
                name: self.peer.name.clone(),
                old_spi_in,
                new_spi_in,
            });
            self.delete_child_soon(ours);
        }
        self.deferred.retain(
            |(_, t)| !matches!(t, Task::RekeyChild { spi_in, .. } if *spi_in == old_spi_in),
        );
        completed
    }

    pub(super) fn child_rekey_answered(
        &mut self,
        io: &mut Io<'_>,
        request: ChildRekeyRequested,
        inner: &[Payload],
    ) -> Vec<Effect> {
        if let Some(old) = self
            .children
            .iter_mut()
            .find(|c| c.spi_in == request.old_spi_in)
        {
            old.pending_rekey_in_flight = false;
        }
        if self.is_leaving() {
            // Shutting down: the peer's half of the new pair goes with the IKE SA's DELETE.
            io.spis.release_esp(request.new_spi_in);
            return Vec::new();
        }
        if let Some(error) = inner.error_notify() {
            io.spis.release_esp(request.new_spi_in);
            self.child_rekey_refused(io, &request, error.clone());
            return Vec::new();
        }
        let (new, keys, nr) = match self.accept_child_rekey(io, &request, inner) {
            Ok(v) => v,
            Err(e) => {
                // The peer installed a pair from its answer: tell it to drop it. Our SPI of it
                // stays reserved until that exchange is over.
                self.queue
                    .push_front(Task::DeleteRefusedPair(request.new_spi_in));
                self.rekey_failed(io, request.old_spi_in, RekeyKe::Default, &e.to_string());
                return Vec::new();
            }
        };
        new.install(
            io,
            self.peer.id,
            &self.core,
            keys,
            ExchangeRole::Initiator,
            self.child_endpoint,
        );
        let new_spi = new.spi_in;
        self.children.push(new);
        let Some(old) = self
            .children
            .iter_mut()
            .find(|c| c.spi_in == request.old_spi_in)
        else {
            // The peer deleted the old pair meanwhile; the new one carries on.
            self.child_rekey_completed(io, true);
            return Vec::new();
        };
        let record = RekeyRecord {
            successor: new_spi,
            ni: request.ni.clone(),
            nr,
        };
        let now = io.now.mono;
        let old_spi = old.spi_in;
        old.rekey_failures = 0;
        let survivor = match old.peer_rekey.take() {
            Some(theirs) if lowest_nonce_in((&record.ni, &record.nr), (&theirs.ni, &theirs.nr)) => {
                // Collision, and our pair holds the lowest nonce: we delete ours; the peer
                // deletes the old pair.
                io.notice(Notice::ChildRekeyCollision {
                    spi_in: old_spi,
                    collision: Collision::OursRedundant,
                });
                old.state = ChildState::AwaitingPeerDelete {
                    successor: theirs.successor,
                    delete_at: now + PEER_DELETE_PATIENCE,
                };
                let winner = theirs.successor;
                self.delete_child_soon(new_spi);
                winner
            }
            theirs => {
                if theirs.is_some() {
                    io.notice(Notice::ChildRekeyCollision {
                        spi_in: old_spi,
                        collision: Collision::OursWins,
                    });
                }
                old.state = ChildState::Superseded {
                    successor: new_spi,
                    delete_at: now + REKEY_DELETE_GRACE,
                };
                old.our_rekey = Some(record);
                new_spi
            }
        };
        io.output(Output::Rekeyed {
            peer: self.peer.id,
            name: self.peer.name.clone(),
            old_spi_in: old_spi,
            new_spi_in: survivor,
        });
        self.child_rekey_completed(io, true);
        self.check_superseded(io);
        Vec::new()
    }

    /// Checks a rekey answer (RFC 7296 1.3.3, 2.9): one of our proposals, the KE of the group
    /// we sent, selectors inside what we proposed and inside what the peer may use.
    fn accept_child_rekey(
        &self,
        io: &mut Io<'_>,
        request: &ChildRekeyRequested,
        inner: &[Payload],
    ) -> Result<(Child, crate::crypto::ChildSaKeys, Vec<u8>), IkeError> {
        let (sa, nr, ke, tsi, tsr) = child_response_payloads(inner)?;
        let sent = request
            .ke
            .as_ref()
            .map_or(EspGroups::None, |k| EspGroups::Ke(k.group().to_wire()));
        let (chosen, spi_out) = EspProposal::accept(&io.cfg.esp_proposals, sa, sent)?;
        let g_ir = match (&request.ke, ke, chosen.group) {
            (Some(ours), Some(theirs), Some(_)) if theirs.group == ours.group().to_wire() => {
                Some(ours.shared_secret(&theirs.data)?)
            }
            // The peer chose a proposal without PFS, which ours allow: our KE goes unused.
            (_, None, None) => None,
            _ => return Err(IkeError::syntax("KE payload does not match the request")),
        };
        let local_ts = within(tsi, &request.local_ts).ok_or_else(|| {
            IkeError::TsUnacceptable(format!(
                "TSi {} is not inside the {} we proposed",
                join(&prefixes_of(tsi)),
                join(&request.local_ts)
            ))
        })?;
        let remote_ts = within(tsr, &request.remote_ts)
            .and_then(|ts| within(&to_payload(&ts), &self.peer_allowed))
            .ok_or_else(|| {
                IkeError::TsUnacceptable(format!(
                    "TSr {} is not inside the {} we proposed and {} may use",
                    join(&prefixes_of(tsr)),
                    join(&request.remote_ts),
                    self.peer.name
                ))
            })?;
        let keys = self.core.keys.child_sa_keys(
            chosen.encryption,
            g_ir.as_ref().map(|g| g.as_slice()),
            &request.ni,
            &nr.data,
        )?;
        Ok((
            Child::new(request.new_spi_in, spi_out, chosen, local_ts, remote_ts),
            keys,
            nr.data.clone(),
        ))
    }

    fn child_rekey_refused(
        &mut self,
        io: &mut Io<'_>,
        request: &ChildRekeyRequested,
        error: Notify,
    ) {
        let Some(i) = self
            .children
            .iter()
            .position(|c| c.spi_in == request.old_spi_in)
        else {
            return;
        };
        let old = &mut self.children[i];
        if let Some(theirs) = old.peer_rekey.take() {
            // The peer's colliding rekey stands.
            old.state = ChildState::AwaitingPeerDelete {
                successor: theirs.successor,
                delete_at: io.now.mono + PEER_DELETE_PATIENCE,
            };
            io.output(Output::Rekeyed {
                peer: self.peer.id,
                name: self.peer.name.clone(),
                old_spi_in: old.spi_in,
                new_spi_in: theirs.successor,
            });
            return;
        }
        let spi_in = old.spi_in;
        let tried = request.ke.as_ref().map(KeyExchange::group);
        let why = format!("refused by {}: {}", self.peer.name, error.notify_type);
        match error.notify_type {
            NotifyType::INVALID_KE_PAYLOAD => {
                let wanted = <[u8; 2]>::try_from(error.data.as_slice())
                    .ok()
                    .map(u16::from_be_bytes)
                    .and_then(DhGroup::from_id);
                let ours = EspProposal::all_groups(&io.cfg.esp_proposals);
                match wanted {
                    Some(g) if ours.contains(&g) && Some(g) != tried => {
                        io.notice(Notice::ChildRekeyPfsGroup {
                            spi_in,
                            peer: self.peer.name.clone(),
                            group: g,
                        });
                        self.queue.push_front(Task::RekeyChild {
                            spi_in,
                            ke: RekeyKe::Group(g),
                        });
                    }
                    _ => self.rekey_failed(
                        io,
                        spi_in,
                        RekeyKe::Default,
                        &format!("{why} (it wants a group we do not offer)"),
                    ),
                }
            }
            NotifyType::NO_PROPOSAL_CHOSEN
                if tried.is_some() && EspProposal::allow_no_pfs(&io.cfg.esp_proposals) =>
            {
                io.notice(Notice::ChildRekeyWithoutPfs {
                    spi_in,
                    peer: self.peer.name.clone(),
                });
                self.queue.push_front(Task::RekeyChild {
                    spi_in,
                    ke: RekeyKe::WithoutPfs,
                });
            }
            NotifyType::CHILD_SA_NOT_FOUND => {
                io.notice(Notice::ChildUnknownToPeer { spi_in });
                let child = self.children.remove(i);
                self.bytes_gone += child.bytes;
                child.uninstall(io);
                self.lost_a_pair(io);
            }
            _ => {
                // A try without PFS is a fallback within one round: the round after the
                // backoff starts again from the configured proposals (PFS first), so that a
                // peer whose refusal changes gets PFS again, never a downgrade for good.
                let next = match request.ke_choice {
                    RekeyKe::WithoutPfs => RekeyKe::Default,
                    chosen => chosen,
                };
                self.rekey_failed(io, spi_in, next, &why)
            }
        }
    }

    /// A rekey of `spi_in` did not work out: try again after a backoff, or, if the pair
    /// already expired, give it up.
    fn rekey_failed(&mut self, io: &mut Io<'_>, spi_in: Spi, next: RekeyKe, why: &str) {
        io.counters.child_rekeys_failed += 1;
        let Some(child) = self.children.iter_mut().find(|c| c.spi_in == spi_in) else {
            return;
        };
        child.rekey_failures += 1;
        if child.expired {
            io.notice(Notice::ChildRekeyFailedAtHardLimit {
                spi_in,
                peer: self.peer.name.clone(),
                why: why.to_string(),
            });
            self.give_up_pair(io, spi_in);
            return;
        }
        // Still Rekeying: a soft-limit event meanwhile queues nothing more.
        child.state = ChildState::Rekeying;
        let wait = rekey_backoff(io.cfg.retransmit_base, child.rekey_failures - 1);
        let next_try = child.rekey_failures + 1;
        io.notice(Notice::ChildRekeyRetry {
            spi_in,
            why: why.to_string(),
            wait,
            next_try,
        });
        self.deferred
            .push((io.now.mono + wait, Task::RekeyChild { spi_in, ke: next }));
    }

    /// A pair that can no longer be rekeyed and carries nothing: delete it. Without another
    /// usable pair the tunnel is re-made: the client makes a new IKE SA (the old one goes once
    /// it is up); the server closes the IKE SA with its pairs in one DELETE, which a stock client
    /// answers as its close or DPD action says (a hometun client reconnects at once).
    pub(super) fn give_up_pair(&mut self, io: &mut Io<'_>, spi_in: Spi) {
        self.deferred
            .retain(|(_, t)| !matches!(t, Task::RekeyChild { spi_in: s, .. } if *s == spi_in));
        if let Some(child) = self.children.iter_mut().find(|c| c.spi_in == spi_in) {
            // Deleting it is the next step; it no longer waits for a rekey.
            child.state = ChildState::Active;
        }
        let others = self
            .children
            .iter()
            .any(|c| c.spi_in != spi_in && c.is_usable());
        if others || self.client || !self.is_current() {
            self.delete_child_soon(spi_in);
        }
        self.lost_a_pair(io);
    }

    /// After a pair went or stopped working: without a usable pair the tunnel is dead.
    pub(super) fn lost_a_pair(&mut self, io: &mut Io<'_>) {
        if !self.is_current() || self.children.iter().any(Child::is_usable) {
            return;
        }
        io.notice(Notice::NoWorkingChild {
            peer: self.peer.name.clone(),
            client: self.client,
        });
        if self.client {
            self.reestablish = true;
        } else {
            self.queue.push_back(Task::DeleteIke);
        }
    }

    /// The forwarder refused to install the pair with inbound SPI `spi_in`: drop it here, ask
    /// the peer to drop its side, and undo the rekey that made it.
    pub fn install_refused(&mut self, io: &mut Io<'_>, spi_in: Spi, reason: &ControlError) {
        let Some(i) = self.children.iter().position(|c| c.spi_in == spi_in) else {
            return;
        };
        io.counters.installs_refused += 1;
        let child = self.children.remove(i);
        io.notice(Notice::InstallRefused {
            spi_in,
            peer: self.peer.name.clone(),
            reason: reason.clone(),
        });
        // Our SPI of it stays reserved until the peer answered the DELETE.
        self.queue.push_front(Task::DeleteRefusedPair(child.spi_in));
        let mut retry = None;
        let mut undone = false;
        for c in &mut self.children {
            match c.state {
                ChildState::Superseded { successor, .. } if successor == spi_in => {
                    retry = Some(c.spi_in);
                    c.our_rekey = None;
                    undone = true;
                }
                ChildState::AwaitingPeerDelete { successor, .. } if successor == spi_in => {
                    c.state = ChildState::Active;
                    undone = true;
                }
                _ => {}
            }
        }
        if undone {
            // The rekey that made it did not happen after all.
            io.counters.child_rekeys = io.counters.child_rekeys.saturating_sub(1);
            self.child_rekeys = self.child_rekeys.saturating_sub(1);
        }
        if let Some(old) = retry {
            self.rekey_failed(
                io,
                old,
                RekeyKe::Default,
                "made a pair the forwarder refused",
            );
        }
        self.lost_a_pair(io);
        self.pump(io);
    }

    /// Queues a DELETE for one of our pairs, marking it.
    pub(super) fn delete_child_soon(&mut self, spi_in: Spi) {
        if let Some(child) = self.children.iter_mut().find(|c| c.spi_in == spi_in)
            && child.state != ChildState::Deleting
        {
            child.state = ChildState::Deleting;
            self.queue.push_back(Task::DeleteChild(spi_in));
        }
    }

    /// Deletes superseded pairs whose successor carried traffic (a successor that is gone or
    /// no longer active was itself rekeyed: traffic has moved past it too), and pairs the peer
    /// replaced but never deleted.
    pub(super) fn check_superseded(&mut self, io: &mut Io<'_>) {
        let now = io.now.mono;
        let traffic_moved_to =
            |successor: Spi| match self.children.iter().find(|s| s.spi_in == successor) {
                None => true,
                Some(s) => s.carried_traffic || s.state != ChildState::Active,
            };
        let ready: Vec<Spi> = self
            .children
            .iter()
            .filter(|c| match c.state {
                ChildState::Superseded {
                    successor,
                    delete_at,
                } => now >= delete_at || traffic_moved_to(successor),
                ChildState::AwaitingPeerDelete { delete_at, .. } => now >= delete_at,
                _ => false,
            })
            .map(|c| c.spi_in)
            .collect();
        for spi in ready {
            self.delete_child_soon(spi);
        }
    }

    /// A lifetime of a CHILD SA ran out. Soft: rekey it unless that is under way. Hard (or its
    /// sequence numbers are used up): it carries nothing more; rekey it at once, and if that
    /// cannot work, give it up.
    pub fn limit_reached(&mut self, io: &mut Io<'_>, spi_in: Spi, hard: bool) {
        let Some(child) = self.children.iter_mut().find(|c| c.spi_in == spi_in) else {
            return;
        };
        match child.state {
            // Replaced already, and the peer still uses it heavily (a responder of our rekey
            // may keep sending on it until our DELETE): delete it now rather than after the
            // successor shows traffic.
            ChildState::Superseded { .. } | ChildState::AwaitingPeerDelete { .. } => {
                if hard {
                    tracing::debug!(
                        "replaced CHILD SA {spi_in:08x} reached its hard limit; deleting it now"
                    );
                    self.delete_child_soon(spi_in);
                    self.pump(io);
                }
                return;
            }
            ChildState::Deleting => return,
            ChildState::Active | ChildState::Rekeying => {}
        }
        if hard && !child.expired {
            child.expired = true;
            io.counters.child_sas_expired += 1;
            io.notice(Notice::HardLimitBeforeSuccessor {
                spi_in,
                peer: self.peer.name.clone(),
            });
        }
        match child.state {
            ChildState::Active => {
                child.state = ChildState::Rekeying;
                let task = Task::RekeyChild {
                    spi_in,
                    ke: RekeyKe::Default,
                };
                self.queue_task(io, task, hard);
            }
            ChildState::Rekeying if hard && !child.pending_rekey_in_flight => {
                // A retry waits for its backoff: try now, one last time.
                let mut waiting = None;
                self.deferred.retain(|(_, t)| match t {
                    Task::RekeyChild { spi_in: s, .. } if *s == spi_in => {
                        waiting = Some(t.clone());
                        false
                    }
                    _ => true,
                });
                if let Some(task) = waiting {
                    self.queue_task(io, task, true);
                }
            }
            // In flight: its answer decides.
            _ => {}
        }
    }

    /// A CHILD SA rekey completed (`ours`: we made it): the IKE SA is rekeyed after as many
    /// as the configuration says, so that every rekey brings a fresh Diffie-Hellman secret to
    /// SK_d too (RFC 7296 1.3.2).
    fn child_rekey_completed(&mut self, io: &mut Io<'_>, ours: bool) {
        io.counters.child_rekeys += 1;
        self.child_rekeys += 1;
        let after = io.cfg.ike_rekey.after_child_rekeys;
        if after > 0 && self.child_rekeys >= after {
            self.want_ike_rekey(io, ours, "after a CHILD SA rekey");
        }
    }
}

type ChildRequest<'a> = (
    &'a [u8],
    Option<&'a wire::KeyExchange>,
    &'a wire::TrafficSelectors,
    &'a wire::TrafficSelectors,
);

/// Ni, KE, TSi and TSr of a CHILD SA rekey request.
fn child_request_payloads(inner: &[Payload]) -> Result<ChildRequest<'_>, IkeError> {
    match (inner.nonce(), inner.ts_i(), inner.ts_r()) {
        (Some(ni), Some(tsi), Some(tsr)) => Ok((&ni.data, inner.ke(), tsi, tsr)),
        _ => Err(IkeError::syntax(
            "CREATE_CHILD_SA request lacks Ni, TSi or TSr",
        )),
    }
}

type ChildResponse<'a> = (
    &'a wire::SecurityAssociation,
    &'a wire::Nonce,
    Option<&'a wire::KeyExchange>,
    &'a wire::TrafficSelectors,
    &'a wire::TrafficSelectors,
);

/// SA, Nr, KE, TSi and TSr of a CHILD SA rekey response.
fn child_response_payloads(inner: &[Payload]) -> Result<ChildResponse<'_>, IkeError> {
    match (inner.sa(), inner.nonce(), inner.ts_i(), inner.ts_r()) {
        (Some(sa), Some(nr), Some(tsi), Some(tsr)) => Ok((sa, nr, inner.ke(), tsi, tsr)),
        _ => Err(IkeError::syntax(
            "CREATE_CHILD_SA response lacks SA, Nr, TSi or TSr",
        )),
    }
}
