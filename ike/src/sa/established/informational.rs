//! INFORMATIONAL requests from the peer (RFC 7296 1.4): DELETE of the IKE SA or of CHILD SAs,
//! and empty liveness checks.

use std::net::SocketAddrV4;

use super::{Effect, Established, Lifecycle};
use crate::io::Output;
use crate::notice::Notice;
use crate::sa::child::ChildState;
use crate::sa::{Io, has_notify};
use crate::window::total_patience;
use crate::wire::{Delete, NotifyType, Payload, PayloadList, ProtocolId};

impl Established {
    pub(super) fn respond_informational(
        &mut self,
        io: &mut Io<'_>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        inner: &[Payload],
    ) -> (Vec<Payload>, Vec<Effect>) {
        let mut response = Vec::new();
        let mut effects = Vec::new();
        for notify in inner.notifies() {
            if notify.notify_type.is_error() {
                io.notice(Notice::PeerReports {
                    peer: self.peer.name.clone(),
                    notify: notify.notify_type,
                });
            }
        }
        if self.mobike {
            response.extend(self.mobike_informational(io, local, remote, inner));
        } else if has_notify(inner, NotifyType::UPDATE_SA_ADDRESSES) {
            io.notice(Notice::UpdateWithoutMobike {
                peer: self.peer.name.clone(),
            });
        }
        let mut deleted_in = Vec::new();
        for delete in inner.deletes() {
            match delete.protocol {
                ProtocolId::IKE => {
                    tracing::debug!("{} deletes the IKE SA", self.peer.name);
                    if self.is_current()
                        && let Some(collision) = self.collision.take()
                    {
                        // The peer won a rekey collision and deletes the old SA before our
                        // own rekey's answer came: its new SA takes the children.
                        effects.push(Effect::MoveChildren {
                            to: collision.new_spi,
                        });
                        self.lifecycle = Lifecycle::Superseded { since: io.now.mono };
                    } else {
                        self.kill(io, "deleted by the peer".into());
                    }
                    self.lifecycle = Lifecycle::Closing {
                        until: io.now.mono
                            + total_patience(io.cfg.retransmit_base, io.cfg.retransmit_tries),
                    };
                    return (response, effects);
                }
                ProtocolId::ESP => {
                    for spi in delete.esp_spis() {
                        if let Some(i) = self.children.iter().position(|c| c.spi_out == spi) {
                            let child = self.children.remove(i);
                            self.bytes_gone += child.bytes;
                            child.uninstall(io);
                            // The peer took back the pair its rekey made (it refused our answer,
                            // or could not install it): the pair it replaced carries on.
                            for c in &mut self.children {
                                if matches!(c.state, ChildState::AwaitingPeerDelete { successor, .. } if successor == child.spi_in)
                                {
                                    io.notice(Notice::SuccessorDeletedByPeer {
                                        spi_in: c.spi_in,
                                        peer: self.peer.name.clone(),
                                    });
                                    c.state = ChildState::Active;
                                }
                            }
                            deleted_in.push(child.spi_in);
                            if let Some(theirs) = &child.peer_rekey {
                                // Our colliding rekey of it is moot: the peer's pair stands.
                                io.output(Output::Rekeyed {
                                    peer: self.peer.id,
                                    name: self.peer.name.clone(),
                                    old_spi_in: child.spi_in,
                                    new_spi_in: theirs.successor,
                                });
                            }
                        } else {
                            tracing::debug!("DELETE for unknown ESP SPI {spi:08x} ignored");
                        }
                    }
                }
                other => tracing::debug!("DELETE for protocol {other} ignored"),
            }
        }
        if !deleted_in.is_empty() {
            response.push(Payload::Delete(Delete::esp(&deleted_in)));
            if self.is_current() && !self.children.iter().any(|c| c.is_usable()) {
                io.notice(Notice::LastChildDeletedByPeer {
                    peer: self.peer.name.clone(),
                });
                self.lost_a_pair(io);
            }
        }
        (response, effects)
    }
}
