//! CHILD SA rekeys (RFC 7296 1.3.3) in both roles, make-before-break, with the collision rule of
//! 2.8.1: the pair with the lowest nonce is redundant.

use std::time::Duration;

use hometun_control::Spi;

use super::requests::{Outstanding, Pending, Task};
use super::{Effect, Established};
use crate::crypto::{DhGroup, KeyExchange};
use crate::io::Output;
use crate::proposal::{EspGroups, EspProposal};
use crate::sa::child::{Child, ChildState, ExchangeRole, RekeyRecord};
use crate::sa::{IkeError, Io, error_notify, has_notify, lowest_nonce_in};
use crate::selectors::{narrow, prefixes_of, to_payload};
use crate::wire::{self, ExchangeType, Notify, NotifyType, Payload, ProtocolId};

/// How long the old pair of a rekey we made lives at most when the forwarder's counters show
/// no traffic on its successor (an idle tunnel: make-before-break's grace period). With
/// traffic, the DELETE leaves at the first counter report that shows the successor carried
/// some, in either direction: our outbound moves to it when it is installed, so that is
/// normally the first report after the CREATE_CHILD_SA response.
pub(crate) const REKEY_DELETE_GRACE: Duration = Duration::from_secs(10);

/// How long the inbound SA of a pair whose DELETE exchange we completed stays installed, for
/// packets the peer sent on it before it processed the DELETE (strongSwan's
/// `delete_rekeyed_delay` on its initiator side).
pub(crate) const DELETED_INBOUND_LINGER: Duration = Duration::from_secs(2);

/// A CHILD SA rekey request in flight.
pub(super) struct ChildRekeyRequested {
    pub(super) old_spi_in: u32,
    pub(super) new_spi_in: u32,
    pub(super) ni: Vec<u8>,
    pub(super) ke: Option<KeyExchange>,
}

impl Established {
    /// The request of a CHILD SA rekey (RFC 7296 1.3.3).
    pub(super) fn prepare_child_rekey(
        &mut self,
        io: &mut Io<'_>,
        spi_in: u32,
        group: Option<DhGroup>,
    ) -> Option<(ExchangeType, Vec<Payload>, Pending)> {
        let child = self.children.iter_mut().find(|c| c.spi_in == spi_in)?;
        if !matches!(child.state, ChildState::Active | ChildState::Rekeying) {
            return None;
        }
        child.state = ChildState::Rekeying;
        let group = group.or_else(|| {
            io.cfg
                .esp_proposals
                .first()
                .and_then(|p| p.groups.first().copied())
        });
        let ke = group.map(|g| io.key_exchange(g));
        let new_spi_in = io.spis.new_esp(io.rng);
        let ni = io.nonce();
        let mut payloads = vec![
            Payload::Notify(Notify::with_spi(
                ProtocolId::ESP,
                spi_in.to_be_bytes().to_vec(),
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
        tracing::info!("rekeying CHILD SA {spi_in:08x} with {}", self.peer.name);
        Some((
            ExchangeType::CREATE_CHILD_SA,
            payloads,
            Pending::ChildRekey(ChildRekeyRequested {
                old_spi_in: spi_in,
                new_spi_in,
                ni,
                ke,
            }),
        ))
    }

    pub(super) fn respond_child_rekey(
        &mut self,
        io: &mut Io<'_>,
        rekey: &Notify,
        sa: &wire::SecurityAssociation,
        inner: &[Payload],
    ) -> Result<Vec<Payload>, IkeError> {
        if matches!(
            self.outstanding,
            Some(Outstanding {
                pending: Pending::IkeRekey(_),
                ..
            })
        ) {
            return Err(IkeError::TemporaryFailure("the IKE SA is being rekeyed"));
        }
        let spi = <[u8; 4]>::try_from(rekey.spi.as_slice())
            .map(u32::from_be_bytes)
            .map_err(|_| IkeError::syntax("REKEY_SA without a 4-byte SPI"))?;
        let index = self
            .children
            .iter()
            .position(|c| c.spi_out == spi)
            .ok_or(IkeError::ChildSaNotFound(spi))?;
        if self.children[index].state == ChildState::Deleting {
            return Err(IkeError::TemporaryFailure("the CHILD SA is being deleted"));
        }
        let (ni, ke, tsi, tsr) = child_request_payloads(inner)?;
        if has_notify(inner, NotifyType::USE_TRANSPORT_MODE) {
            return Err(IkeError::NoProposalChosen(
                "transport mode requested; only tunnel mode is offered".into(),
            ));
        }
        let groups = ke.map_or(EspGroups::None, |k| EspGroups::Ke(k.group));
        let (chosen, peer_spi, mut answer) =
            EspProposal::select(&io.cfg.esp_proposals, sa, groups, 0)?;
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
                crate::sa::child::join(&prefixes_of(tsi)),
                crate::sa::child::join(&prefixes_of(tsr))
            )));
        }
        let our_ke = chosen.group.map(|g| io.key_exchange(g));
        let g_ir = match (&our_ke, ke) {
            (Some(ours), Some(theirs)) => Some(ours.shared_secret(&theirs.data)?),
            _ => None,
        };
        let nr = io.nonce();
        let keys = self.core.keys.child_sa_keys(
            chosen.encryption,
            g_ir.as_ref().map(|g| g.as_slice()),
            ni,
            &nr,
        )?;
        let spi_in = io.spis.new_esp(io.rng);
        answer.spi = spi_in.to_be_bytes().to_vec();
        let new = Child::new(spi_in, peer_spi, chosen, our_ts.clone(), their_ts.clone());
        new.install(
            io,
            self.peer.id,
            &self.core,
            keys,
            ExchangeRole::Responder,
            self.child_endpoint,
        );

        let old_spi_in = self.children[index].spi_in;
        let record = RekeyRecord {
            successor: spi_in,
            ni: ni.to_vec(),
            nr: nr.clone(),
        };
        let mut redundant = None;
        {
            let old = &mut self.children[index];
            match old.state.clone() {
                ChildState::Rekeying => {
                    // Collision with our own rekey in flight: decided when its answer comes.
                    tracing::info!("CHILD SA {old_spi_in:08x}: rekey collision");
                    old.peer_rekey = Some(record);
                }
                ChildState::Superseded { successor, .. } if old.our_rekey.is_some() => {
                    // Our rekey of this pair already completed: a late collision.
                    let mine = old.our_rekey.clone().expect("checked by the guard");
                    if lowest_nonce_in((&mine.ni, &mine.nr), (ni, &nr)) {
                        // Our pair is the redundant one: we delete it, the peer deletes the
                        // old one.
                        old.state = ChildState::AwaitingPeerDelete { successor: spi_in };
                        redundant = Some(successor);
                    } else {
                        tracing::info!(
                            "CHILD SA {old_spi_in:08x}: late rekey collision, ours wins"
                        );
                    }
                }
                _ => {
                    old.state = ChildState::AwaitingPeerDelete { successor: spi_in };
                    io.output(Output::Rekeyed {
                        peer: self.peer.id,
                        old_spi_in: Spi(old_spi_in),
                        new_spi_in: Spi(spi_in),
                    });
                }
            }
        }
        if let Some(ours) = redundant {
            tracing::info!("CHILD SA {old_spi_in:08x}: late rekey collision, ours is redundant");
            io.output(Output::Rekeyed {
                peer: self.peer.id,
                old_spi_in: Spi(old_spi_in),
                new_spi_in: Spi(spi_in),
            });
            self.delete_child_soon(ours);
        }
        self.children.push(new);

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
        payloads.push(Payload::TsI(to_payload(&their_ts)));
        payloads.push(Payload::TsR(to_payload(&our_ts)));
        Ok(payloads)
    }

    pub(super) fn child_rekey_answered(
        &mut self,
        io: &mut Io<'_>,
        request: ChildRekeyRequested,
        inner: &[Payload],
    ) -> Vec<Effect> {
        let old_index = self
            .children
            .iter()
            .position(|c| c.spi_in == request.old_spi_in);
        if let Some(error) = error_notify(inner) {
            io.spis.release_esp(request.new_spi_in);
            self.child_rekey_refused(io, &request, old_index, error.clone());
            return Vec::new();
        }
        let accepted = (|| {
            let (sa, nr, ke, tsi, tsr) = child_response_payloads(inner)?;
            let (chosen, spi_out) = EspProposal::accept(
                &io.cfg.esp_proposals,
                sa,
                request.ke.as_ref().map(KeyExchange::group),
            )?;
            let g_ir = match (&request.ke, ke) {
                (Some(ours), Some(theirs)) if theirs.group == ours.group().to_wire() => {
                    Some(ours.shared_secret(&theirs.data)?)
                }
                (None, None) => None,
                _ => return Err(IkeError::syntax("KE payload does not match the request")),
            };
            let local_ts = prefixes_of(tsi);
            let remote_ts = prefixes_of(tsr);
            if local_ts.is_empty() || remote_ts.is_empty() {
                return Err(IkeError::TsUnacceptable("narrowed to nothing".into()));
            }
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
        })();
        let (new, keys, nr) = match accepted {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("CHILD SA rekey with {} failed: {e}", self.peer.name);
                io.spis.release_esp(request.new_spi_in);
                if let Some(i) = old_index {
                    self.children[i].state = ChildState::Active;
                }
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
        let Some(i) = old_index else {
            // The peer deleted the old pair meanwhile; the new one carries on.
            return Vec::new();
        };
        let record = RekeyRecord {
            successor: new_spi,
            ni: request.ni.clone(),
            nr,
        };
        let delete_at = io.now.mono + REKEY_DELETE_GRACE;
        let old = &mut self.children[i];
        let old_spi = old.spi_in;
        let survivor = match old.peer_rekey.take() {
            Some(theirs) if lowest_nonce_in((&record.ni, &record.nr), (&theirs.ni, &theirs.nr)) => {
                // Collision, and our pair holds the lowest nonce: we delete ours; the peer
                // deletes the old pair.
                tracing::info!("CHILD SA {old_spi:08x}: rekey collision, ours is redundant");
                old.state = ChildState::AwaitingPeerDelete {
                    successor: theirs.successor,
                };
                let winner = theirs.successor;
                self.delete_child_soon(new_spi);
                winner
            }
            theirs => {
                if theirs.is_some() {
                    tracing::info!("CHILD SA {old_spi:08x}: rekey collision, ours wins");
                }
                old.state = ChildState::Superseded {
                    successor: new_spi,
                    delete_at,
                };
                old.our_rekey = Some(record);
                new_spi
            }
        };
        io.output(Output::Rekeyed {
            peer: self.peer.id,
            old_spi_in: Spi(old_spi),
            new_spi_in: Spi(survivor),
        });
        self.check_superseded(io);
        Vec::new()
    }

    pub(super) fn child_rekey_refused(
        &mut self,
        io: &mut Io<'_>,
        request: &ChildRekeyRequested,
        old_index: Option<usize>,
        error: Notify,
    ) {
        let Some(i) = old_index else {
            return;
        };
        let old = &mut self.children[i];
        if let Some(theirs) = old.peer_rekey.take() {
            // The peer's colliding rekey stands.
            old.state = ChildState::AwaitingPeerDelete {
                successor: theirs.successor,
            };
            io.output(Output::Rekeyed {
                peer: self.peer.id,
                old_spi_in: Spi(old.spi_in),
                new_spi_in: Spi(theirs.successor),
            });
            return;
        }
        let spi_in = old.spi_in;
        match error.notify_type {
            NotifyType::TEMPORARY_FAILURE => {
                tracing::info!("CHILD SA {spi_in:08x} rekey postponed by the peer");
                let group = request.ke.as_ref().map(KeyExchange::group);
                self.deferred.push((
                    io.now.mono + io.cfg.retransmit_base * 2,
                    Task::RekeyChild { spi_in, group },
                ));
            }
            NotifyType::INVALID_KE_PAYLOAD => {
                let wanted = <[u8; 2]>::try_from(error.data.as_slice())
                    .ok()
                    .map(u16::from_be_bytes)
                    .and_then(DhGroup::from_id);
                let tried = request.ke.as_ref().map(KeyExchange::group);
                let ours = io
                    .cfg
                    .esp_proposals
                    .iter()
                    .any(|p| wanted.is_some_and(|w| p.groups.contains(&w)));
                match wanted {
                    Some(g) if ours && Some(g) != tried => {
                        tracing::info!("peer asks for PFS group {g}; rekeying again");
                        self.queue.push_front(Task::RekeyChild {
                            spi_in,
                            group: Some(g),
                        });
                    }
                    _ => {
                        tracing::warn!("CHILD SA rekey: peer wants a group we do not offer");
                        old.state = ChildState::Active;
                    }
                }
            }
            NotifyType::CHILD_SA_NOT_FOUND => {
                tracing::info!("peer does not know CHILD SA {spi_in:08x}; deleting it");
                let child = self.children.remove(i);
                child.uninstall(io);
                if self.children.is_empty() {
                    self.queue.push_back(Task::DeleteIke);
                }
            }
            other => {
                tracing::warn!(
                    "CHILD SA {spi_in:08x} rekey refused by {}: {other}",
                    self.peer.name
                );
                old.state = ChildState::Active;
            }
        }
    }

    /// Queues a DELETE for one of our pairs, marking it.
    pub(super) fn delete_child_soon(&mut self, spi_in: u32) {
        if let Some(child) = self.children.iter_mut().find(|c| c.spi_in == spi_in)
            && child.state != ChildState::Deleting
        {
            child.state = ChildState::Deleting;
            self.queue.push_back(Task::DeleteChild(spi_in));
        }
    }

    /// Deletes superseded pairs whose successor carried traffic. A successor that is gone or
    /// no longer active was itself rekeyed (by either side): traffic has moved past it too.
    pub(super) fn check_superseded(&mut self, io: &mut Io<'_>) {
        let now = io.now.mono;
        let traffic_moved_to =
            |successor: u32| match self.children.iter().find(|s| s.spi_in == successor) {
                None => true,
                Some(s) => s.carried_traffic || s.state != ChildState::Active,
            };
        let ready: Vec<u32> = self
            .children
            .iter()
            .filter(|c| match c.state {
                ChildState::Superseded {
                    successor,
                    delete_at,
                } => now >= delete_at || traffic_moved_to(successor),
                _ => false,
            })
            .map(|c| c.spi_in)
            .collect();
        for spi in ready {
            self.delete_child_soon(spi);
        }
    }

    /// A lifetime of a CHILD SA ran out: rekey it unless that is under way.
    pub fn limit_reached(&mut self, io: &mut Io<'_>, spi_in: u32, urgent: bool) {
        let Some(child) = self.children.iter_mut().find(|c| c.spi_in == spi_in) else {
            return;
        };
        if child.state != ChildState::Active {
            return;
        }
        child.state = ChildState::Rekeying;
        self.queue_task(
            io,
            Task::RekeyChild {
                spi_in,
                group: None,
            },
            urgent,
        );
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
    let mut ni = None;
    let mut ke = None;
    let mut tsi = None;
    let mut tsr = None;
    for p in inner {
        match p {
            Payload::Nonce(n) => ni = Some(n.data.as_slice()),
            Payload::Ke(k) => ke = Some(k),
            Payload::TsI(t) => tsi = Some(t),
            Payload::TsR(t) => tsr = Some(t),
            _ => {}
        }
    }
    match (ni, tsi, tsr) {
        (Some(ni), Some(tsi), Some(tsr)) => Ok((ni, ke, tsi, tsr)),
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
    let mut sa = None;
    let mut nr = None;
    let mut ke = None;
    let mut tsi = None;
    let mut tsr = None;
    for p in inner {
        match p {
            Payload::Sa(s) => sa = Some(s),
            Payload::Nonce(n) => nr = Some(n),
            Payload::Ke(k) => ke = Some(k),
            Payload::TsI(t) => tsi = Some(t),
            Payload::TsR(t) => tsr = Some(t),
            _ => {}
        }
    }
    match (sa, nr, tsi, tsr) {
        (Some(sa), Some(nr), Some(tsi), Some(tsr)) => Ok((sa, nr, ke, tsi, tsr)),
        _ => Err(IkeError::syntax(
            "CREATE_CHILD_SA response lacks SA, Nr, TSi or TSr",
        )),
    }
}
