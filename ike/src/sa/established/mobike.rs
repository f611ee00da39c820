//! Where the peer is: MOBIKE address updates with their return-routability check (RFC 4555
//! 3.5, 5.2), the forwarder's own checked moves (docs/ARCHITECTURE.md, "Roaming"), and our own
//! address changes.

use std::net::SocketAddrV4;
use std::time::Instant;

use super::Established;
use super::requests::{Outstanding, Pending, Task};
use crate::notice::Notice;
use crate::sa::{Io, has_notify, natd_payloads};
use crate::wire::{ExchangeType, Notify, NotifyType, Payload, PayloadList};

/// Length of our COOKIE2 (RFC 4555 5.2 asks for 8 to 64 octets).
pub(super) const COOKIE2_LEN: usize = 16;

/// A MOBIKE address update whose return-routability check has not answered yet: the IKE SA
/// talks to the new address, the CHILD SAs still use `from`.
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingMove {
    /// When the UPDATE_SA_ADDRESSES request came.
    pub(super) since: Instant,
    /// The peer's address before it.
    pub(super) from: SocketAddrV4,
}

impl Established {
    /// The request of a return-routability check (RFC 4555 5.2).
    pub(super) fn prepare_return_routability(
        &mut self,
        io: &mut Io<'_>,
    ) -> Option<(ExchangeType, Vec<Payload>, Pending)> {
        self.pending_move?;
        let mut cookie2 = vec![0u8; COOKIE2_LEN];
        io.rng.fill(&mut cookie2);
        tracing::debug!(
            "return-routability check of {} at {}",
            self.peer.name,
            self.core.remote
        );
        Some((
            ExchangeType::INFORMATIONAL,
            vec![Payload::Notify(Notify::new(
                NotifyType::COOKIE2,
                cookie2.clone(),
            ))],
            Pending::ReturnRoutability {
                cookie2,
                target: self.core.remote,
            },
        ))
    }

    /// The MOBIKE part of an INFORMATIONAL request (RFC 4555): UPDATE_SA_ADDRESSES (with
    /// NO_NATS_ALLOWED checked), NAT detection answered with ours, COOKIE2 echoed.
    pub(super) fn mobike_informational(
        &mut self,
        io: &mut Io<'_>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        inner: &[Payload],
    ) -> Vec<Payload> {
        let mut response = Vec::new();
        let natd = inner.notifies().any(|n| {
            matches!(
                n.notify_type,
                NotifyType::NAT_DETECTION_SOURCE_IP | NotifyType::NAT_DETECTION_DESTINATION_IP
            )
        });
        if has_notify(inner, NotifyType::UPDATE_SA_ADDRESSES) {
            if let Some(no_nats) = inner.notify(NotifyType::NO_NATS_ALLOWED)
                && !no_nats_matches(&no_nats.data, remote, local)
            {
                // RFC 4555 3.9: the peer forbids NATs and the addresses changed on the way.
                io.notice(Notice::NoNatsAllowedMismatch {
                    peer: self.peer.name.clone(),
                    remote,
                });
                return vec![Payload::Notify(Notify::new(
                    NotifyType::UNEXPECTED_NAT_DETECTED,
                    Vec::new(),
                ))];
            }
            let nat = natd.then(|| {
                let (nat_remote, nat_local) =
                    crate::sa::nat_detected(inner, self.core.spi_i, self.core.spi_r, remote, local);
                (nat_local, nat_remote)
            });
            self.update_addresses(io, local, remote, nat);
        }
        if natd {
            response.extend(natd_payloads(
                self.core.spi_i,
                self.core.spi_r,
                local,
                remote,
            ));
        }
        if let Some(cookie2) = inner.notify(NotifyType::COOKIE2) {
            response.push(Payload::Notify(Notify::new(
                NotifyType::COOKIE2,
                cookie2.data.clone(),
            )));
        }
        response
    }

    /// UPDATE_SA_ADDRESSES (RFC 4555 3.5) from an authenticated, fresh request: the IKE SA
    /// takes the addresses the request came with at once (its response goes there anyway); the
    /// CHILD SAs follow once the return-routability check to the new address is answered.
    /// `nat`: (in front of us, in front of the peer) from the request's NAT detection.
    pub(super) fn update_addresses(
        &mut self,
        io: &mut Io<'_>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        nat: Option<(bool, bool)>,
    ) {
        let (nat_local, nat_remote) = nat.unwrap_or((self.core.nat_local, self.core.nat_remote));
        let from = self.core.remote;
        if (local, remote, nat_local, nat_remote)
            != (
                self.core.local,
                self.core.remote,
                self.core.nat_local,
                self.core.nat_remote,
            )
        {
            io.notice(Notice::MobikeMoving {
                peer: self.peer.name.clone(),
                from,
                to: remote,
                nat: nat_local || nat_remote,
            });
            self.core.local = local;
            self.core.remote = remote;
            self.core.nat_local = nat_local;
            self.core.nat_remote = nat_remote;
            self.retarget();
        }
        if !self.is_current() || self.children.is_empty() {
            return;
        }
        if self.core.esp_endpoint(io.cfg) == self.child_endpoint {
            // Back where the CHILD SAs are (or never left): nothing to check.
            self.pending_move = None;
            return;
        }
        self.pending_move.get_or_insert(PendingMove {
            since: io.now.mono,
            from,
        });
        let checking = self.queue.contains(&Task::ReturnRoutability)
            || matches!(
                &self.outstanding,
                Some(Outstanding {
                    pending: Pending::ReturnRoutability { target, .. },
                    ..
                }) if *target == self.core.remote
            );
        if !checking {
            // Before anything else queued: the CHILD SAs send to an address the peer left.
            self.queue.push_front(Task::ReturnRoutability);
        }
    }

    /// The return-routability answer came (its COOKIE2 checked): the CHILD SAs move to the
    /// IKE SA's addresses.
    pub(super) fn complete_move(&mut self, io: &mut Io<'_>) {
        let Some(pending) = self.pending_move.take() else {
            return;
        };
        let endpoint = self.core.esp_endpoint(io.cfg);
        let took = io.now.mono.saturating_duration_since(pending.since);
        if endpoint == self.child_endpoint {
            tracing::debug!(
                "{}: return routability of {} confirmed; the CHILD SAs were there already",
                self.peer.name,
                self.core.remote
            );
            return;
        }
        let old = self.child_endpoint;
        io.notice(Notice::MobikeMoved {
            peer: self.peer.name.clone(),
            from: pending.from,
            to: self.core.remote,
            old,
            new: endpoint,
            took,
        });
        self.set_child_endpoint(io, endpoint);
        io.forwarder(hometun_control::Request::UpdateEndpoint {
            peer: self.peer.id,
            endpoint,
        });
    }

    /// The CHILD SAs' endpoint changed: count the move.
    pub(super) fn set_child_endpoint(
        &mut self,
        io: &mut Io<'_>,
        endpoint: hometun_control::Endpoint,
    ) {
        if endpoint != self.child_endpoint {
            self.child_endpoint = endpoint;
            self.moves += 1;
            self.last_moved = Some(io.now.mono);
        }
    }

    /// Our request in flight follows the IKE SA's addresses (its retransmissions go to where
    /// the peer is now, RFC 4555 3.5).
    pub(super) fn retarget(&mut self) {
        if let Some(o) = &mut self.outstanding {
            o.retransmission.local = self.core.local;
            o.retransmission.remote = self.core.remote;
        }
    }

    pub(super) fn return_routability_answered(
        &mut self,
        io: &mut Io<'_>,
        cookie2: &[u8],
        target: SocketAddrV4,
        inner: &[Payload],
    ) {
        let echoed = inner
            .notify(NotifyType::COOKIE2)
            .is_some_and(|n| n.data == cookie2);
        if !echoed {
            // RFC 4555 4.6 (COOKIE2): a peer that does not echo it gets its IKE SA closed.
            io.notice(Notice::MobikeCookie2Missing {
                peer: self.peer.name.clone(),
            });
            self.pending_move = None;
            self.queue.push_front(Task::DeleteIke);
            return;
        }
        if target != self.core.remote {
            // The peer moved again while this check ran: check where it is now.
            tracing::debug!(
                "{}: {target} answered, but the peer is at {} now",
                self.peer.name,
                self.core.remote
            );
            if self.pending_move.is_some() && !self.queue.contains(&Task::ReturnRoutability) {
                self.queue.push_front(Task::ReturnRoutability);
            }
            return;
        }
        self.complete_move(io);
    }

    /// The forwarder moved this peer's endpoint (docs/ARCHITECTURE.md, "Roaming": the server
    /// checked an override NA or a NAT rebinding and the return-routability probe; the client
    /// followed its own new address): the IKE SA follows, so that later requests (rekeys, liveness
    /// checks, DELETE) reach the peer there.
    pub fn endpoint_moved(&mut self, io: &mut Io<'_>, new: &hometun_control::Endpoint) {
        let port = match new.encap {
            hometun_control::Encapsulation::Udp { remote_port, .. } => remote_port,
            hometun_control::Encapsulation::Raw => self.core.remote.port(),
        };
        let remote = SocketAddrV4::new(new.remote, port);
        let local = SocketAddrV4::new(new.local, self.core.local.port());
        if (local, remote) != (self.core.local, self.core.remote) {
            io.notice(Notice::IkeFollowsForwarder {
                peer: self.peer.name.clone(),
                old: self.child_endpoint,
                new: *new,
                from: self.core.remote,
                to: remote,
            });
            self.core.local = local;
            self.core.remote = remote;
            self.retarget();
        }
        // Later CHILD SAs (rekeys) must be installed with the same encapsulation.
        match new.encap {
            hometun_control::Encapsulation::Raw => {
                self.core.nat_local = false;
                self.core.nat_remote = false;
                self.core.udp_forced = false;
            }
            hometun_control::Encapsulation::Udp { .. } if !self.core.nat() => {
                self.core.nat_remote = true;
            }
            hometun_control::Encapsulation::Udp { .. } => {}
        }
        self.set_child_endpoint(io, *new);
        if self.pending_move.is_some() && self.core.esp_endpoint(io.cfg) == *new {
            // The forwarder's own check got there first (a MOBIKE update was checking the same
            // address).
            self.pending_move = None;
        }
    }

    /// Our outer address changed (the client's, learned by the forwarder from netlink): later
    /// requests leave from it, and the CHILD SAs follow.
    pub fn local_address(&mut self, io: &mut Io<'_>, addr: std::net::Ipv4Addr) {
        if *self.core.local.ip() == addr {
            return;
        }
        tracing::debug!(
            "IKE SA with {}: our address {} -> {addr}",
            self.peer.name,
            self.core.local.ip()
        );
        self.core.local = SocketAddrV4::new(addr, self.core.local.port());
        self.retarget();
        if self.is_current() && !self.children.is_empty() {
            let endpoint = self.core.esp_endpoint(io.cfg);
            if endpoint != self.child_endpoint {
                self.set_child_endpoint(io, endpoint);
                io.forwarder(hometun_control::Request::UpdateEndpoint {
                    peer: self.peer.id,
                    endpoint,
                });
            }
        }
    }
}

/// Whether a NO_NATS_ALLOWED notify (RFC 4555 3.9; its data, 4.2.6: source and destination
/// IPv4 address, then source and destination port) names the addresses a request arrived with.
fn no_nats_matches(data: &[u8], source: SocketAddrV4, destination: SocketAddrV4) -> bool {
    let mut expected = Vec::with_capacity(12);
    expected.extend_from_slice(&source.ip().octets());
    expected.extend_from_slice(&destination.ip().octets());
    expected.extend_from_slice(&source.port().to_be_bytes());
    expected.extend_from_slice(&destination.port().to_be_bytes());
    data == expected.as_slice()
}
