//! Restart recovery (RFC 7296 2.21.4; docs/ARCHITECTURE.md, "Restart recovery").
//!
//! A server that restarted has lost every SA, while its clients still send with theirs. It
//! answers what it cannot place, without protection since it has no keys: ESP for an unknown
//! SPI with an INVALID_SPI notification naming that SPI, an IKE request for an unknown IKE SA
//! with INVALID_IKE_SPI. At start it also tells the peers that were up before it (the daemon
//! keeps them in its state directory, [`RestartHint`]) so that an idle home comes back too.
//!
//! A client takes such a notification only as a hint: one that names an SPI it sends with, from
//! its server's address, starts a liveness check with a short deadline
//! ([`Established::restart_hint`](crate::sa::established::Established::restart_hint)). A forged
//! hint costs one INFORMATIONAL exchange; only silence makes the client connect again. Nobody
//! answers a hint (that could loop between two nodes), and the unprotected answers are rate
//! limited, so the server cannot be made to reflect much traffic.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hometun_control::Spi;
use serde::{Deserialize, Serialize};

use super::{Endpoint, Role, Sa};
use crate::io::{Now, Output, Random};
use crate::notice::Notice;
use crate::sa::Io;
use crate::sa::established::TokenBucket;
use crate::sa::established::restart_hints::invalid_spis;
use crate::wire::{ExchangeType, Flags, Header, Message, Notify, NotifyType, Payload, PayloadType};

/// Unprotected answers we send at most: a burst of this many (a restarted server hears from
/// all its homes at once)...
pub(super) const UNPROTECTED_BURST: u32 = 2000;
/// ...and one more every this long. Each answers a datagram at least as long (no amplification).
pub(super) const UNPROTECTED_REFILL: Duration = Duration::from_millis(1);

/// At most this many INVALID_SPI notifications in one hint (the SPIs of one peer's pairs).
const SPIS_PER_HINT: usize = 8;

/// After a restart the peers are told in rounds: this many per round...
const HINTS_PER_ROUND: usize = 100;
/// ...one round every this long (2000 a second). Told all at once, a thousand homes would
/// come back all at once, and the burst of their IKE_SA_INITs would overflow the IKE socket's
/// receive buffer: the lost ones wait for their retransmissions (seconds).
const HINT_ROUND: Duration = Duration::from_millis(50);

/// The peers still to be told after a restart.
#[derive(Default)]
pub(super) struct RestartHints {
    waiting: std::collections::VecDeque<RestartHint>,
    next_round: Option<std::time::Instant>,
    told: usize,
    total: usize,
}

impl RestartHints {
    /// When the next round is due.
    pub(super) fn next_round(&self) -> Option<std::time::Instant> {
        self.next_round
    }
}

/// A peer that was up, as the server remembers it across a restart: where its IKE SA ran and
/// the ESP SPIs it sends with (our inbound SPIs). No keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartHint {
    /// The peer's identity (for the log).
    pub peer: String,
    /// Our address and port of its IKE SA.
    pub local: SocketAddrV4,
    /// Its address and port.
    pub remote: SocketAddrV4,
    /// The ESP SPIs it sends with.
    pub spis: Vec<Spi>,
}

/// An unprotected INFORMATIONAL naming `spis` in INVALID_SPI notifications. It belongs to no
/// IKE SA: its IKE SPIs are zero (RFC 7296 2.21.4 allows zero or random).
fn invalid_spi_hint(spis: &[Spi]) -> Vec<u8> {
    let header = Header::new(
        ExchangeType::INFORMATIONAL,
        0,
        0,
        Flags::new(false, false),
        0,
    );
    let payloads = spis
        .iter()
        .take(SPIS_PER_HINT)
        .map(|spi| Payload::Notify(Notify::new(NotifyType::INVALID_SPI, spi.to_bytes().into())))
        .collect();
    Message::new(header, payloads)
        .to_bytes()
        .unwrap_or_default()
}

impl Endpoint {
    /// The forwarder received ESP for an SPI it does not have, from `remote` (`port`: the UDP
    /// source port of ESP in UDP; `None` for raw ESP). A server answers with an unprotected
    /// INVALID_SPI to the sender's IKE port: after a restart, the home learns at once.
    pub fn handle_unknown_esp(&mut self, now: Now, spi: Spi, remote: Ipv4Addr, port: Option<u16>) {
        let Role::Responder(role) = &self.role else {
            return;
        };
        let (local, remote) = match port {
            Some(port) => (
                SocketAddrV4::new(role.local_addr, self.common.nat_port),
                SocketAddrV4::new(remote, port),
            ),
            None => (
                SocketAddrV4::new(role.local_addr, self.common.ike_port),
                SocketAddrV4::new(remote, self.common.ike_port),
            ),
        };
        if !self.unprotected_answers.take(now.mono) {
            return;
        }
        tracing::debug!("ESP for unknown SPI {spi:08x} from {remote}: INVALID_SPI sent");
        self.counters.restart_hints_sent += 1;
        self.transmits.push_back(crate::io::Transmit {
            local,
            remote,
            data: invalid_spi_hint(&[spi]),
        });
    }

    /// An IKE message for no IKE SA of ours. A protected request is answered with an
    /// unprotected INVALID_IKE_SPI carrying its SPIs and message ID (the peer's IKE SA outlived
    /// ours); an unprotected INVALID_SPI hint is matched against the client's SAs. Returns
    /// whether it was such a hint.
    pub(super) fn unknown_ike_spi(
        &mut self,
        now: Now,
        rng: &mut dyn Random,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        header: &Header,
        data: &[u8],
    ) -> bool {
        if header.flags.response() {
            return false;
        }
        if header.next_payload == PayloadType::SK || header.next_payload == PayloadType::SKF {
            if self.unprotected_answers.take(now.mono) {
                let answer = Header::new(
                    header.exchange_type,
                    header.spi_i,
                    header.spi_r,
                    Flags::new(!header.flags.initiator(), true),
                    header.message_id,
                );
                let notify = Notify::new(NotifyType::INVALID_IKE_SPI, Vec::new());
                if let Ok(bytes) = Message::new(answer, vec![Payload::Notify(notify)]).to_bytes() {
                    tracing::debug!(
                        "{} request {} from {remote} for an IKE SA we do not have: INVALID_IKE_SPI sent",
                        header.exchange_type,
                        header.message_id
                    );
                    self.counters.restart_hints_sent += 1;
                    self.transmits.push_back(crate::io::Transmit {
                        local,
                        remote,
                        data: bytes,
                    });
                }
            }
            return false;
        }
        if header.exchange_type != ExchangeType::INFORMATIONAL
            || !matches!(self.role, Role::Initiator(_))
        {
            return false;
        }
        let Ok(message) = Message::parse(data) else {
            return false;
        };
        let spis = invalid_spis(&message);
        if spis.is_empty() {
            return false;
        }
        let mut matched = false;
        let mut io = io!(self, now, rng);
        for sa in self.sas.values_mut() {
            if let Sa::Up(e) = sa
                && e.is_current()
                && e.core.remote.ip() == remote.ip()
                && let Some(spi) = spis.iter().find(|spi| e.sends_with(**spi))
            {
                matched = true;
                io.counters.restart_hints_received += 1;
                e.restart_hint(
                    &mut io,
                    format!("unprotected INVALID_SPI for our outbound SPI {spi:08x} from {remote}"),
                );
            }
        }
        if !matched {
            tracing::debug!(
                "unprotected INVALID_SPI from {remote} names none of our SPIs {spis:08x?}: ignored"
            );
        }
        true
    }

    /// After [`Endpoint::close`]: the peers with an IKE SA whose DELETE is not answered yet
    /// (they may never have had it: the daemon keeps them in its record, so that the next run
    /// tells them).
    pub fn peers_not_told(&self) -> Vec<String> {
        let mut peers: Vec<String> = self
            .sas
            .values()
            .filter_map(|sa| match sa {
                Sa::Up(e) if !e.is_settled() => Some(e.peer.name.clone()),
                _ => None,
            })
            .collect();
        peers.sort();
        peers.dedup();
        peers
    }

    /// The peers whose IKE SAs are up, for the daemon to keep across a restart.
    pub fn restart_hints(&self) -> Vec<RestartHint> {
        let mut hints: Vec<RestartHint> = self
            .current_sas()
            .map(|e| RestartHint {
                peer: e.peer.name.clone(),
                local: e.core.local,
                remote: e.core.remote,
                spis: e.children.iter().map(|c| c.spi_in).collect(),
            })
            .filter(|h| !h.spis.is_empty())
            .collect();
        hints.sort_by(|a, b| a.peer.cmp(&b.peer));
        hints
    }

    /// After a restart: tells each peer that was up before it that its SAs are gone (one
    /// unprotected INVALID_SPI per peer naming the SPIs it sends with), so that an idle home
    /// connects again at once rather than at its next liveness check. The first round goes out
    /// now, the rest paced ([`HINT_ROUND`]) and within the rate limit: none is dropped.
    pub fn send_restart_hints(&mut self, now: Now, hints: &[RestartHint]) {
        let hints: Vec<RestartHint> = hints
            .iter()
            .filter(|h| !h.spis.is_empty())
            .cloned()
            .collect();
        if hints.is_empty() {
            return;
        }
        self.outputs
            .push_back(Output::Notice(Notice::TellingPeersAfterRestart {
                peers: hints.len(),
            }));
        self.restart_hints.total += hints.len();
        self.restart_hints.waiting.extend(hints);
        self.restart_hints.next_round = Some(now.mono);
        self.pace_restart_hints(now);
    }

    /// Sends the round of restart hints that is due.
    pub(super) fn pace_restart_hints(&mut self, now: Now) {
        let pending = &mut self.restart_hints;
        if pending.next_round.is_none_or(|at| now.mono < at) {
            return;
        }
        for _ in 0..HINTS_PER_ROUND {
            if pending.waiting.is_empty() || !self.unprotected_answers.take(now.mono) {
                break;
            }
            let Some(hint) = pending.waiting.pop_front() else {
                break;
            };
            self.counters.restart_hints_sent += 1;
            pending.told += 1;
            self.transmits.push_back(crate::io::Transmit {
                local: hint.local,
                remote: hint.remote,
                data: invalid_spi_hint(&hint.spis),
            });
        }
        if pending.waiting.is_empty() {
            pending.next_round = None;
            self.outputs
                .push_back(Output::Notice(Notice::ToldPeersAfterRestart {
                    told: pending.told,
                    total: pending.total,
                }));
        } else {
            pending.next_round = Some(now.mono + HINT_ROUND);
        }
    }
}

/// A new bucket for unprotected answers.
pub(super) fn unprotected_answers(now: std::time::Instant) -> TokenBucket {
    TokenBucket::new(UNPROTECTED_BURST, UNPROTECTED_REFILL, now)
}
