//! The responder's side of new IKE SAs: IKE_SA_INIT requests (retransmissions, COOKIE,
//! half-open bounds) and the bookkeeping of half-open SAs. Their IKE_AUTH requests are in
//! [`super::auth`].

use std::net::{IpAddr, SocketAddrV4};

use super::{Endpoint, Now, Output, Random, Role, Sa, Transmit, total_patience};
use crate::notice::Notice;
use crate::sa::responder::{InitAnswered, respond_sa_init, unprotected_answer};
use crate::sa::{IkeError, Io};
use crate::wire::{Header, Message, Notify, NotifyType, Payload, PayloadList};

impl Endpoint {
    /// An IKE_SA_INIT request: retransmission check, COOKIE, half-open bounds, then the answer.
    pub(super) fn sa_init_request(
        &mut self,
        now: Now,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        header: &Header,
        data: &[u8],
        rng: &mut dyn Random,
    ) {
        match &self.role {
            Role::Responder(role) if role.closed => {
                tracing::debug!("IKE_SA_INIT from {remote} dropped: shutting down");
                return;
            }
            Role::Responder(_) => {}
            _ => return,
        }
        let Some(message) = self.parse_sa_init(local, remote, header, data) else {
            return;
        };
        let Some(ni) = message.payloads.nonce().map(|n| n.data.clone()) else {
            self.transmits.push_back(Transmit {
                local,
                remote,
                data: unprotected_answer(header, IkeError::syntax("no nonce").notify()),
            });
            return;
        };
        // In this order: under cookie pressure even a retransmission must carry its COOKIE.
        if self.cookie_demanded(local, remote, header, &message, &ni)
            || self.answered_as_retransmission(local, remote, header.spi_i, data, &ni)
            || self.half_open_bound_reached(remote)
        {
            return;
        }
        let expires =
            now.mono + total_patience(self.common.retransmit_base, self.common.retransmit_tries);
        let (defer, generation) = (self.defer_crypto, self.generation);
        let mut io = io!(self, now, rng);
        match respond_sa_init(
            &mut io, local, remote, &message, data, expires, defer, generation,
        ) {
            Ok(answered) => {
                let (spi, sa) = match answered {
                    InitAnswered::HalfOpen(h) => (h.spi(), Sa::HalfOpen(Box::new(h))),
                    InitAnswered::Deriving(d, job) => {
                        self.crypto_jobs.push_back(Box::new(job));
                        (d.spi(), Sa::Deriving(Box::new(d)))
                    }
                };
                if let Role::Responder(role) = &mut self.role {
                    role.half_open_count += 1;
                    *role.half_open_by_source.entry(*remote.ip()).or_insert(0) += 1;
                    role.init_index.insert(header.spi_i, remote, spi);
                }
                self.sas.insert(spi, sa);
            }
            Err(error) => {
                io.send(local, remote, unprotected_answer(header, error.notify()));
                match error {
                    // A group retry is negotiation; malformed requests are noise (and an
                    // attacker's lever on the log): neither is a refusal worth a line.
                    IkeError::InvalidKe { .. } | IkeError::InvalidSyntax(_) => {
                        tracing::debug!("IKE_SA_INIT from {remote}: {error}");
                    }
                    _ => {
                        // The driver logs Output::Refused at warn.
                        io.output(Output::Refused {
                            remote,
                            name: None,
                            reason: format!("{}: {error}", error.notify_type()),
                        });
                    }
                }
            }
        }
    }

    /// The request parsed, if it is one (message ID 0, from the initiator). A request with an
    /// unknown critical payload is answered UNSUPPORTED_CRITICAL_PAYLOAD (RFC 7296 2.5); other
    /// bytes that do not parse are counted and dropped.
    fn parse_sa_init(
        &mut self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        header: &Header,
        data: &[u8],
    ) -> Option<Message> {
        match Message::parse(data) {
            Ok(m) if m.header.message_id == 0 && m.header.flags.initiator() => Some(m),
            Ok(_) => {
                self.counters.dropped_unparsable += 1;
                None
            }
            Err(e) => {
                self.counters.dropped_unparsable += 1;
                tracing::debug!("IKE_SA_INIT from {remote} does not parse: {e}");
                if e.notify_type() == Some(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD) {
                    let notify =
                        Notify::new(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, e.notify_data());
                    self.transmits.push_back(Transmit {
                        local,
                        remote,
                        data: unprotected_answer(header, notify),
                    });
                }
                None
            }
        }
    }

    /// Whether the request must first prove its source address (RFC 7296 2.6): with as many
    /// half-open SAs as the cookie threshold, a request without a valid COOKIE as its first
    /// payload is answered with one, and goes no further.
    fn cookie_demanded(
        &mut self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        header: &Header,
        message: &Message,
        ni: &[u8],
    ) -> bool {
        let Role::Responder(role) = &mut self.role else {
            return true;
        };
        if role.half_open_count < role.cookie_threshold {
            return false;
        }
        let (ip, spi_i) = (IpAddr::V4(*remote.ip()), header.spi_i);
        let valid = matches!(
            message.payloads.first(),
            Some(Payload::Notify(n)) if n.notify_type == NotifyType::COOKIE
                && role.cookies.verify(&n.data, ni, ip, spi_i)
        );
        if valid {
            return false;
        }
        self.counters.cookies_sent += 1;
        let cookie = role.cookies.cookie(ni, ip, spi_i).to_vec();
        self.transmits.push_back(Transmit {
            local,
            remote,
            data: unprotected_answer(header, Notify::new(NotifyType::COOKIE, cookie)),
        });
        true
    }

    /// Whether the request was one we answered already (the same SPIi and source): the same
    /// bytes get the same answer, byte for byte, a bounded number of times (the answer is
    /// larger than the request: no amplifier); once the SA is established, a late copy is
    /// dropped. The same attempt changed (it now carries a COOKIE) starts afresh: the request
    /// our AUTH will sign over is the new one, so its half-open SA goes.
    fn answered_as_retransmission(
        &mut self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        spi_i: u64,
        data: &[u8],
        ni: &[u8],
    ) -> bool {
        let Role::Responder(role) = &self.role else {
            return true;
        };
        let Some(spi) = role.init_index.get(spi_i, remote) else {
            return false;
        };
        match self.sas.get_mut(&spi).and_then(Sa::init_exchange) {
            Some(h) if h.is_retransmission(data) => {
                if let Some(response) = h.answer_again(self.common.retransmit_tries) {
                    tracing::debug!("retransmitted IKE_SA_INIT from {remote} answered again");
                    self.transmits.push_back(Transmit {
                        local,
                        remote,
                        data: response,
                    });
                }
                true
            }
            Some(h) if h.is_retransmission_of_nonce(ni) => {
                let source = h.source;
                self.sas.remove(&spi);
                self.half_open_gone(spi_i, source, false);
                self.spis.release_ike(spi);
                false
            }
            _ => true,
        }
    }

    /// Whether a new half-open SA would pass the bounds, in all or from this source address;
    /// a request beyond them is dropped, and logged once per power of two of such drops.
    fn half_open_bound_reached(&mut self, remote: SocketAddrV4) -> bool {
        let Role::Responder(role) = &self.role else {
            return true;
        };
        let from_source = role
            .half_open_by_source
            .get(remote.ip())
            .copied()
            .unwrap_or(0);
        if role.half_open_count < role.half_open_total && from_source < role.half_open_per_source {
            return false;
        }
        self.counters.dropped_half_open_bound += 1;
        let dropped = self.counters.dropped_half_open_bound;
        // One line per power of two: a flood does not flood the log.
        if dropped.is_power_of_two() {
            self.outputs
                .push_back(Output::Notice(Notice::HalfOpenBound {
                    remote,
                    total: role.half_open_count,
                    from_source,
                    dropped,
                }));
        }
        true
    }

    /// Bookkeeping when a half-open SA goes (authenticated, refused or expired). An
    /// authenticated one keeps its IKE_SA_INIT index entry (`keep_index`) until it goes.
    pub(super) fn half_open_gone(&mut self, spi_i: u64, source: SocketAddrV4, keep_index: bool) {
        let Role::Responder(role) = &mut self.role else {
            return;
        };
        role.half_open_count = role.half_open_count.saturating_sub(1);
        if let Some(n) = role.half_open_by_source.get_mut(source.ip()) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                role.half_open_by_source.remove(source.ip());
            }
        }
        if !keep_index {
            role.init_index.remove_init(spi_i, source);
        }
    }
}
