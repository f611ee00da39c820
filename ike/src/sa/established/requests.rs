//! Our side of the message-ID window (RFC 7296 2.3): work waits as [`Task`]s in a queue, and one
//! request at a time is in flight as an [`Outstanding`] exchange whose [`Pending`] step is
//! consumed when the answer arrives.

use std::net::SocketAddrV4;

use hometun_control::Spi;

use super::Established;
use super::child_rekey::ChildRekeyRequested;
use super::ike_rekey::IkeRekeyRequested;
use crate::crypto::DhGroup;
use crate::notice::Notice;
use crate::sa::Io;
use crate::sa::child::ChildState;
use crate::window::Retransmission;
use crate::wire::{Delete, ExchangeType, Payload};

/// Work for our side of the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Task {
    /// Rekey the CHILD SA with this inbound SPI.
    RekeyChild { spi_in: Spi, ke: RekeyKe },
    /// Rekey the IKE SA (with this group, if the peer asked for it).
    RekeyIke { group: Option<DhGroup> },
    /// Delete the CHILD SA with this inbound SPI.
    DeleteChild(Spi),
    /// Tell the peer to drop a pair we hold no more (named by our inbound SPI of it, reserved
    /// until the peer answers): one made in an exchange whose answer we refused or whose
    /// install the forwarder refused, or one a reload no longer allows.
    DeleteRefusedPair(Spi),
    /// Delete the IKE SA.
    DeleteIke,
    /// An empty INFORMATIONAL (liveness check).
    Liveness,
    /// MOBIKE return-routability check of the peer's current address (RFC 4555 5.2): an
    /// INFORMATIONAL with COOKIE2; the CHILD SAs move there on the authenticated answer.
    ReturnRoutability,
}

/// The key exchange of a CHILD SA rekey (RFC 7296 1.3.1: a KE payload brings perfect forward
/// secrecy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RekeyKe {
    /// The first group of our ESP proposals (none if they name none).
    Default,
    /// This group, which the peer asked for (INVALID_KE_PAYLOAD).
    Group(DhGroup),
    /// No KE payload: the peer refused PFS and our proposals allow that.
    WithoutPfs,
}

impl Task {
    /// Whether the task belongs to the CHILD SAs (and moves with them to a rekeyed IKE SA).
    pub(super) fn is_child_task(&self) -> bool {
        matches!(
            self,
            Task::RekeyChild { .. }
                | Task::DeleteChild(_)
                | Task::DeleteRefusedPair(_)
                | Task::ReturnRoutability
        )
    }
}

/// The exchange our outstanding request belongs to.
pub(super) enum Pending {
    ChildRekey(ChildRekeyRequested),
    IkeRekey(IkeRekeyRequested),
    DeleteChild(Spi),
    DeleteRefusedPair(Spi),
    DeleteIke,
    Liveness,
    /// Our COOKIE2, sent to `target`.
    ReturnRoutability {
        cookie2: Vec<u8>,
        target: SocketAddrV4,
    },
}

pub(super) struct Outstanding {
    pub(super) message_id: u32,
    pub(super) retransmission: Retransmission,
    pub(super) pending: Pending,
}

impl Established {
    /// Queues work and sends it if the window is free.
    pub fn queue_task(&mut self, io: &mut Io<'_>, task: Task, urgent: bool) {
        if urgent {
            self.queue.push_front(task);
        } else {
            self.queue.push_back(task);
        }
        self.pump(io);
    }

    /// Sends the next queued request if none is in flight.
    pub fn pump(&mut self, io: &mut Io<'_>) {
        if self.is_closing() {
            return;
        }
        while self.outstanding.is_none() {
            let Some(task) = self.queue.pop_front() else {
                return;
            };
            if self.is_leaving() && task != Task::DeleteIke {
                // Shutting down: only the IKE SA's DELETE is still sent.
                if let Task::DeleteRefusedPair(spi) = task {
                    io.spis.release_esp(spi);
                }
                continue;
            }
            let Some((exchange, payloads, pending)) = self.prepare(io, task) else {
                continue;
            };
            let message_id = self.next_request_id;
            let header = self.core.header(exchange, false, message_id);
            match io.seal(&mut self.core, header, payloads) {
                Ok(request) => {
                    self.next_request_id = self.next_request_id.wrapping_add(1);
                    let retransmission = Retransmission::new(
                        io.now.mono,
                        io.cfg.retransmit_base,
                        request.clone(),
                        self.core.local,
                        self.core.remote,
                    );
                    io.send(self.core.local, self.core.remote, request);
                    self.outstanding = Some(Outstanding {
                        message_id,
                        retransmission,
                        pending,
                    });
                }
                Err(e) => io.notice(Notice::CannotBuildRequest(e.to_string())),
            }
        }
    }

    pub(super) fn prepare(
        &mut self,
        io: &mut Io<'_>,
        task: Task,
    ) -> Option<(ExchangeType, Vec<Payload>, Pending)> {
        match task {
            Task::RekeyChild { spi_in, ke } => self.prepare_child_rekey(io, spi_in, ke),
            Task::RekeyIke { group } => self.prepare_ike_rekey(io, group),
            Task::DeleteChild(spi_in) => {
                let child = self.children.iter_mut().find(|c| c.spi_in == spi_in)?;
                child.state = ChildState::Deleting;
                io.notice(Notice::DeletingChild { spi_in });
                Some((
                    ExchangeType::INFORMATIONAL,
                    vec![Payload::Delete(Delete::esp(&[spi_in]))],
                    Pending::DeleteChild(spi_in),
                ))
            }
            Task::DeleteRefusedPair(spi_in) => {
                tracing::debug!("asking the peer to drop the pair it made for {spi_in:08x}");
                Some((
                    ExchangeType::INFORMATIONAL,
                    vec![Payload::Delete(Delete::esp(&[spi_in]))],
                    Pending::DeleteRefusedPair(spi_in),
                ))
            }
            Task::DeleteIke => Some((
                ExchangeType::INFORMATIONAL,
                vec![Payload::Delete(Delete::ike())],
                Pending::DeleteIke,
            )),
            Task::Liveness => Some((ExchangeType::INFORMATIONAL, Vec::new(), Pending::Liveness)),
            Task::ReturnRoutability => self.prepare_return_routability(io),
        }
    }
}
