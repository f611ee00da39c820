//! The initiator's (client's) steps: IKE_SA_INIT sent, IKE_AUTH sent, then established.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use hometun_control::{PeerId, Spi};
use ipnet::Ipv6Net;

use super::child::{Child, ExchangeRole};
use super::established::{Established, EstablishedParams};
use super::{
    Addresses, IkeCore, IkeError, Io, PeerInfo, cert_payloads, certreq_payload, error_notify,
    hash_algorithms_payload, id_body, identity_of, nat_detected, natd_payloads, peer_certificates,
    peer_hash_algorithms, sign_auth, verify_auth, verify_peer_certificate,
};
use crate::crypto::auth::{AuthRole, auth_octets};
use crate::crypto::{CryptoError, DhGroup, IkeSaKeys, KeyExchange, PeerIdentity};
use crate::io::Output;
use crate::notice::Notice;
use crate::proposal::{EspGroups, EspProposal, IkeProposal, NegotiationError};
use crate::sa::child::join;
use crate::selectors::{any_ipv6, prefixes_of, to_payload, within};
use crate::window::{Retransmission, RetransmitAction};
use crate::wire::PayloadList;
use crate::wire::{
    self, ExchangeType, Flags, HashAlgorithm, Header, Message, Notify, NotifyType, Payload,
};

/// At most this many COOKIE rounds before giving up (a responder asking again and again is
/// broken or hostile).
const MAX_COOKIE_ROUNDS: u32 = 3;

/// What the client's steps need to know.
pub(crate) struct ClientParams<'a> {
    pub server: SocketAddrV4,
    pub server_identity: &'a PeerIdentity,
    pub local: SocketAddrV4,
    pub local_prefixes: &'a [Ipv6Net],
    /// Act as if a NAT were in front of us (ESP in UDP without one).
    pub force_udp_encapsulation: bool,
    pub initial_contact: bool,
    pub peer: PeerId,
}

/// Why a client's connection attempt ended, in one line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The server never answered (the only failure that is not a refusal).
    #[error("no answer to {exchange} after {tries} tries")]
    NoAnswer {
        /// `IKE_SA_INIT` or `IKE_AUTH`.
        exchange: &'static str,
        /// Transmissions of the request.
        tries: u32,
    },
    /// The server asked for one COOKIE after another.
    #[error("the server keeps asking for a COOKIE")]
    EndlessCookies,
    /// INVALID_KE_PAYLOAD for a group we do not offer or tried already.
    #[error("server asks for key exchange group {}, which we do not offer or tried", .0.map_or_else(|| "?".into(), |g| g.to_string()))]
    UnwantedGroup(Option<u16>),
    /// The server answered an exchange with an error notification.
    #[error("server refused {exchange}: {notify}")]
    Refused {
        /// `IKE_SA_INIT` or `IKE_AUTH`.
        exchange: &'static str,
        /// The error it sent.
        notify: NotifyType,
    },
    /// IKE_AUTH came back without the server's identity or AUTH payload.
    #[error("IKE_AUTH response without IDr or AUTH")]
    NoIdentity,
    /// The server's IKE_SA_INIT answer was not acceptable.
    #[error("{0}")]
    SaInit(IkeError),
    /// The server's identity, certificate or signature did not pass.
    #[error("server: {0}")]
    NotTrusted(IkeError),
    /// The server authenticated but refused the CHILD SA.
    #[error("server refused the CHILD SA: {0}")]
    ChildRefused(NotifyType),
    /// IKE_AUTH carried no CHILD SA answer.
    #[error("IKE_AUTH response lacks SA, TSi or TSr")]
    NoChild,
    /// The CHILD SA answer chose nothing we proposed.
    #[error("{0}")]
    Negotiation(NegotiationError),
    /// The server widened our TSi (RFC 7296 2.9).
    #[error("server answered TSi {}, not inside our {}", join(.answered), join(.ours))]
    TsiOutside {
        /// Its TSi.
        answered: Vec<Ipv6Net>,
        /// Ours.
        ours: Vec<Ipv6Net>,
    },
    /// The server narrowed TSr to nothing.
    #[error("server narrowed TSr to nothing")]
    NoTsr,
    /// The CHILD SA's keys could not be derived.
    #[error("{0}")]
    Keys(CryptoError),
}

impl Failure {
    /// The peer refused us or we refused it (logged at warn, `Output::Refused`), rather than a
    /// timeout.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, Failure::NoAnswer { .. })
    }
}

/// The result of a step.
pub(crate) enum Step<S, T> {
    /// Still waiting (the message was not for us, or we sent a corrected request).
    Wait(S),
    /// Moved on.
    Next(T),
    /// The attempt is over.
    Failed(Failure),
}

/// IKE_SA_INIT sent, waiting for the answer.
pub(crate) struct SaInitRequested {
    spi_i: u64,
    ni: Vec<u8>,
    ke: KeyExchange,
    tried_groups: Vec<DhGroup>,
    cookie: Option<Vec<u8>>,
    cookie_rounds: u32,
    /// The request as last sent: RealMessage1 of our AUTH octets.
    request: Vec<u8>,
    retransmission: Retransmission,
    /// An error answer came: unauthenticated, so it may be forged by anyone on the path. The
    /// attempt keeps listening for a genuine answer until its retransmissions are spent
    /// (RFC 7296 2.21), and fails with this reason only then.
    refused: Option<Failure>,
}

impl SaInitRequested {
    /// Sends the first IKE_SA_INIT request.
    pub fn start(io: &mut Io<'_>, p: &ClientParams<'_>, spi_i: u64) -> Self {
        let group = io
            .cfg
            .ike_proposals
            .first()
            .and_then(|proposal| proposal.groups.first().copied())
            .unwrap_or(DhGroup::Curve25519);
        let ni = io.nonce();
        let ke = io.key_exchange(group);
        let mut step = Self {
            spi_i,
            ni,
            ke,
            tried_groups: vec![group],
            cookie: None,
            cookie_rounds: 0,
            refused: None,
            request: Vec::new(),
            retransmission: Retransmission::new(
                io.now.mono,
                io.cfg.retransmit_base,
                Vec::new(),
                p.local,
                p.server,
            ),
        };
        step.send(io, p);
        tracing::debug!(
            "IKE_SA_INIT to {} with {} (SPI {})",
            p.server,
            group,
            super::hex_spi(spi_i)
        );
        step
    }

    fn send(&mut self, io: &mut Io<'_>, p: &ClientParams<'_>) {
        let mut payloads = Vec::new();
        if let Some(cookie) = &self.cookie {
            payloads.push(Payload::Notify(Notify::new(
                NotifyType::COOKIE,
                cookie.clone(),
            )));
        }
        payloads.push(Payload::Sa(IkeProposal::sa_payload(
            &io.cfg.ike_proposals,
            &[],
        )));
        payloads.push(Payload::Ke(wire::KeyExchange::new(
            self.ke.group().to_wire(),
            self.ke.public_ke_data().to_vec(),
        )));
        payloads.push(Payload::Nonce(wire::Nonce::new(self.ni.clone())));
        // To have ESP in UDP without a NAT, our source hash names an address we do not have:
        // the server then sees a NAT in front of us (RFC 7296 2.23 allows this).
        let source = if p.force_udp_encapsulation {
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)
        } else {
            p.local
        };
        payloads.extend(natd_payloads(self.spi_i, 0, source, p.server));
        payloads.push(hash_algorithms_payload());
        let header = Header::new(
            ExchangeType::IKE_SA_INIT,
            self.spi_i,
            0,
            Flags::new(true, false),
            0,
        );
        let request = Message::new(header, payloads)
            .to_bytes()
            .expect("an IKE_SA_INIT request of fixed-size payloads encodes");
        self.request = request.clone();
        self.retransmission = Retransmission::new(
            io.now.mono,
            io.cfg.retransmit_base,
            request.clone(),
            p.local,
            p.server,
        );
        io.send(p.local, p.server, request);
    }

    /// When the retransmission timer fires.
    pub fn deadline(&self) -> Instant {
        self.retransmission.deadline()
    }

    /// ICMP port unreachable came from `remote`: if that is where our IKE_SA_INIT went, nothing
    /// listens there yet. The request goes again after `wait`, without using up a try, and the
    /// attempt keeps listening for an answer meanwhile. True if it was ours.
    pub fn unreachable(
        &mut self,
        now: Instant,
        remote: SocketAddrV4,
        wait: Duration,
        counted: bool,
    ) -> bool {
        if self.retransmission.remote() != remote {
            return false;
        }
        self.retransmission.unreachable(now, wait, counted);
        true
    }

    /// The retransmission timer fired.
    pub fn on_timeout(mut self, io: &mut Io<'_>) -> Step<Self, AuthRequested> {
        match self.retransmission.on_timeout(
            io.now.mono,
            io.cfg.retransmit_base,
            io.cfg.retransmit_tries,
        ) {
            RetransmitAction::Resend => {
                io.transmits.push_back(self.retransmission.transmit());
                Step::Wait(self)
            }
            RetransmitAction::GiveUp => Step::Failed(self.refused.unwrap_or(Failure::NoAnswer {
                exchange: "IKE_SA_INIT",
                tries: self.retransmission.tries(),
            })),
        }
    }

    /// A message for our SPI arrived.
    pub fn handle(
        mut self,
        io: &mut Io<'_>,
        p: &ClientParams<'_>,
        remote: SocketAddrV4,
        data: &[u8],
    ) -> Step<Self, AuthRequested> {
        let Ok(message) = Message::parse(data) else {
            tracing::debug!("unparsable IKE_SA_INIT response from {remote} dropped");
            return Step::Wait(self);
        };
        let h = &message.header;
        if h.exchange_type != ExchangeType::IKE_SA_INIT
            || !h.flags.response()
            || h.flags.initiator()
            || h.message_id != 0
            || h.spi_i != self.spi_i
            || *remote.ip() != *p.server.ip()
        {
            tracing::debug!("unexpected message from {remote} dropped");
            return Step::Wait(self);
        }
        if let Some(cookie) = message.notify(NotifyType::COOKIE) {
            if self.cookie_rounds >= MAX_COOKIE_ROUNDS || cookie.data.is_empty() {
                return Step::Failed(Failure::EndlessCookies);
            }
            tracing::debug!("server asks for a COOKIE; repeating IKE_SA_INIT with it");
            self.cookie = Some(cookie.data.clone());
            self.cookie_rounds += 1;
            self.send(io, p);
            return Step::Wait(self);
        }
        if let Some(invalid_ke) = message.notify(NotifyType::INVALID_KE_PAYLOAD) {
            let wanted = <[u8; 2]>::try_from(invalid_ke.data.as_slice())
                .ok()
                .map(u16::from_be_bytes);
            let ours = IkeProposal::all_groups(&io.cfg.ike_proposals);
            let group = wanted.and_then(DhGroup::from_id);
            return match group {
                Some(g) if ours.contains(&g) && !self.tried_groups.contains(&g) => {
                    io.notice(Notice::RetryingWithGroup(g));
                    self.tried_groups.push(g);
                    self.ke = io.key_exchange(g);
                    self.send(io, p);
                    Step::Wait(self)
                }
                _ => Step::Failed(Failure::UnwantedGroup(wanted)),
            };
        }
        if let Some(error) = error_notify(&message.payloads) {
            tracing::debug!(
                "IKE_SA_INIT answered with {} (unauthenticated); waiting for another answer",
                error.notify_type
            );
            self.refused = Some(Failure::Refused {
                exchange: "IKE_SA_INIT",
                notify: error.notify_type,
            });
            return Step::Wait(self);
        }
        match self.accept(io, p, &message, data) {
            Ok(next) => Step::Next(next),
            Err(e) => Step::Failed(Failure::SaInit(e)),
        }
    }

    fn accept(
        self,
        io: &mut Io<'_>,
        p: &ClientParams<'_>,
        message: &Message,
        data: &[u8],
    ) -> Result<AuthRequested, IkeError> {
        let spi_r = message.header.spi_r;
        if spi_r == 0 {
            return Err(IkeError::syntax("responder SPI is zero"));
        }
        let payloads = message.payloads.as_slice();
        let (Some(sa), Some(ke), Some(nr)) = (payloads.sa(), payloads.ke(), payloads.nonce())
        else {
            return Err(IkeError::syntax("IKE_SA_INIT response lacks SA, KE or Nr"));
        };
        let (chosen, _) = IkeProposal::accept(&io.cfg.ike_proposals, sa)?;
        if chosen.group != self.ke.group() || ke.group != self.ke.group().to_wire() {
            return Err(IkeError::NoProposalChosen(format!(
                "server chose group {} but we sent {}",
                chosen.group,
                self.ke.group()
            )));
        }
        let g_ir = self.ke.shared_secret(&ke.data)?;
        let keys = IkeSaKeys::initial(
            chosen.encryption,
            &self.ni,
            &nr.data,
            &g_ir,
            self.spi_i,
            spi_r,
        )?;
        let (nat_remote, nat_seen_local) =
            nat_detected(&message.payloads, self.spi_i, spi_r, p.server, p.local);
        let nat_local = nat_seen_local || p.force_udp_encapsulation;
        let nat = nat_remote || nat_local;
        // Float to the NAT-T port when a NAT is in the way (RFC 7296 2.23).
        let (local, remote) = if nat {
            (
                SocketAddrV4::new(*p.local.ip(), io.cfg.nat_port),
                SocketAddrV4::new(*p.server.ip(), io.cfg.nat_port),
            )
        } else {
            (p.local, p.server)
        };
        if nat_remote || nat_seen_local {
            io.notice(Notice::NatDetected {
                in_front_of_us: nat_seen_local,
                port: io.cfg.nat_port,
            });
        } else if nat {
            io.notice(Notice::UdpEncapsulationForced {
                port: io.cfg.nat_port,
            });
        }
        let core = IkeCore::new(
            keys,
            chosen,
            self.spi_i,
            spi_r,
            true,
            Addresses {
                local,
                remote,
                nat_local,
                nat_remote,
                udp_forced: nat && !(nat_remote || nat_seen_local),
            },
        )?;
        let hash_algorithms = peer_hash_algorithms(&message.payloads);
        AuthRequested::start(
            io,
            p,
            core,
            self.ni,
            nr.data.clone(),
            &self.request,
            data.to_vec(),
            &hash_algorithms,
        )
    }
}

/// IKE_AUTH sent, waiting for the answer.
pub(crate) struct AuthRequested {
    core: IkeCore,
    ni: Vec<u8>,
    nr: Vec<u8>,
    /// The responder's IKE_SA_INIT response: RealMessage2 of its AUTH octets.
    responder_init: Vec<u8>,
    esp_spi: Spi,
    retransmission: Retransmission,
}

impl AuthRequested {
    #[allow(clippy::too_many_arguments)]
    fn start(
        io: &mut Io<'_>,
        p: &ClientParams<'_>,
        mut core: IkeCore,
        ni: Vec<u8>,
        nr: Vec<u8>,
        our_init: &[u8],
        responder_init: Vec<u8>,
        hash_algorithms: &[HashAlgorithm],
    ) -> Result<Self, IkeError> {
        let idi = super::our_id(&io.cfg.identity);
        let idr = super::our_id(p.server_identity);
        let octets = auth_octets(
            AuthRole::Initiator,
            &core.keys,
            our_init,
            &nr,
            &id_body(&idi),
        );
        let auth = sign_auth(io.cfg, hash_algorithms, &octets)?;
        let esp_spi = io.spis.new_esp(io.rng);
        let mut payloads = vec![Payload::IdI(idi)];
        payloads.extend(cert_payloads(io.cfg));
        if p.initial_contact {
            payloads.push(Payload::Notify(Notify::new(
                NotifyType::INITIAL_CONTACT,
                Vec::new(),
            )));
        }
        payloads.push(certreq_payload(&io.cfg.verifier));
        payloads.push(Payload::IdR(idr));
        payloads.push(auth);
        payloads.push(Payload::Sa(EspProposal::sa_payload(
            &io.cfg.esp_proposals,
            esp_spi,
            false,
        )));
        payloads.push(Payload::TsI(to_payload(p.local_prefixes)));
        payloads.push(Payload::TsR(to_payload(&[any_ipv6()])));
        let header = core.header(ExchangeType::IKE_AUTH, false, 1);
        let request = match io.seal(&mut core, header, payloads) {
            Ok(r) => r,
            Err(e) => {
                io.spis.release_esp(esp_spi);
                return Err(IkeError::syntax(format!("cannot build IKE_AUTH: {e}")));
            }
        };
        let retransmission = Retransmission::new(
            io.now.mono,
            io.cfg.retransmit_base,
            request.clone(),
            core.local,
            core.remote,
        );
        io.send(core.local, core.remote, request);
        Ok(Self {
            core,
            ni,
            nr,
            responder_init,
            esp_spi,
            retransmission,
        })
    }

    /// When the retransmission timer fires.
    pub fn deadline(&self) -> Instant {
        self.retransmission.deadline()
    }

    /// Frees what this attempt holds (its ESP SPI).
    pub fn abandon(self, io: &mut Io<'_>) {
        io.spis.release_esp(self.esp_spi);
    }

    /// The retransmission timer fired.
    pub fn on_timeout(mut self, io: &mut Io<'_>) -> Step<Self, Established> {
        match self.retransmission.on_timeout(
            io.now.mono,
            io.cfg.retransmit_base,
            io.cfg.retransmit_tries,
        ) {
            RetransmitAction::Resend => {
                io.transmits.push_back(self.retransmission.transmit());
                Step::Wait(self)
            }
            RetransmitAction::GiveUp => {
                let tries = self.retransmission.tries();
                self.abandon(io);
                Step::Failed(Failure::NoAnswer {
                    exchange: "IKE_AUTH",
                    tries,
                })
            }
        }
    }

    /// A message for our SPI arrived.
    pub fn handle(
        self,
        io: &mut Io<'_>,
        p: &ClientParams<'_>,
        remote: SocketAddrV4,
        data: &[u8],
    ) -> Step<Self, Established> {
        let Ok(header) = Header::parse(data) else {
            return Step::Wait(self);
        };
        if header.exchange_type != ExchangeType::IKE_AUTH
            || !header.flags.response()
            || header.flags.initiator()
            || header.message_id != 1
            || header.spi_r != self.core.spi_r
        {
            tracing::debug!("unexpected message from {remote} dropped while in IKE_AUTH");
            return Step::Wait(self);
        }
        let inner = match self.core.open(data) {
            Ok(m) => m.inner,
            Err(e) => {
                tracing::debug!("IKE_AUTH response from {remote} dropped: {e}");
                return Step::Wait(self);
            }
        };
        let result = self.accept(io, p, &inner);
        match result {
            Ok(established) => Step::Next(established),
            Err((this, error)) => {
                this.abandon(io);
                Step::Failed(error)
            }
        }
    }

    #[allow(clippy::result_large_err)]
    fn accept(
        mut self,
        io: &mut Io<'_>,
        p: &ClientParams<'_>,
        inner: &[Payload],
    ) -> Result<Established, (Self, Failure)> {
        let (sa, tsi, tsr) = (inner.sa(), inner.ts_i(), inner.ts_r());
        let (Some(idr), Some(auth)) = (inner.id_r(), inner.auth()) else {
            let failure = match error_notify(inner) {
                Some(n) => Failure::Refused {
                    exchange: "IKE_AUTH",
                    notify: n.notify_type,
                },
                None => Failure::NoIdentity,
            };
            return Err((self, failure));
        };
        let checked = identity_of(idr).and_then(|identity| {
            if &identity != p.server_identity {
                return Err(IkeError::AuthenticationFailed(format!(
                    "server identifies as {identity}, expected {}",
                    p.server_identity
                )));
            }
            let peer = verify_peer_certificate(&io.cfg.verifier, inner, &identity, io.now.wall)?;
            let octets = auth_octets(
                AuthRole::Responder,
                &self.core.keys,
                &self.responder_init,
                &self.ni,
                &id_body(idr),
            );
            verify_auth(&peer, auth, &octets)?;
            Ok(identity)
        });
        let identity = match checked {
            Ok(identity) => identity,
            Err(e) => return Err((self, Failure::NotTrusted(e))),
        };
        // Authenticated: the server is who it claims; now the CHILD SA.
        let child = (|| {
            if let Some(error) = error_notify(inner) {
                return Err(Failure::ChildRefused(error.notify_type));
            }
            let (Some(sa), Some(tsi), Some(tsr)) = (sa, tsi, tsr) else {
                return Err(Failure::NoChild);
            };
            let (chosen, spi_out) =
                EspProposal::accept(&io.cfg.esp_proposals, sa, EspGroups::Ignore)
                    .map_err(Failure::Negotiation)?;
            // The answer may narrow what we proposed, never widen it (RFC 7296 2.9).
            let local_ts = within(tsi, p.local_prefixes).ok_or_else(|| Failure::TsiOutside {
                answered: prefixes_of(tsi),
                ours: p.local_prefixes.to_vec(),
            })?;
            let remote_ts = within(tsr, &[any_ipv6()]).ok_or(Failure::NoTsr)?;
            Ok(Child::new(
                self.esp_spi,
                spi_out,
                chosen,
                local_ts,
                remote_ts,
            ))
        })();
        let child = match child {
            Ok(child) => child,
            Err(failure) => {
                // The server keeps an IKE SA without CHILD SA: tell it to drop it.
                let header = self.core.header(ExchangeType::INFORMATIONAL, false, 2);
                if let Ok(delete) = io.seal(
                    &mut self.core,
                    header,
                    vec![Payload::Delete(wire::Delete::ike())],
                ) {
                    io.send(self.core.local, self.core.remote, delete);
                }
                return Err((self, failure));
            }
        };
        let keys =
            match self
                .core
                .keys
                .child_sa_keys(child.chosen.encryption, None, &self.ni, &self.nr)
            {
                Ok(keys) => keys,
                Err(e) => return Err((self, Failure::Keys(e))),
            };
        let peer = PeerInfo {
            id: p.peer,
            name: identity.to_string(),
            identity,
            certificates: peer_certificates(inner),
        };
        let endpoint = self.core.esp_endpoint(io.cfg);
        child.install(
            io,
            peer.id,
            &self.core,
            keys,
            ExchangeRole::Initiator,
            endpoint,
        );
        io.output(Output::PeerUp {
            reauthenticated: !p.initial_contact,
            peer: peer.id,
            name: peer.name.clone(),
            remote: self.core.remote,
        });
        Ok(Established::new(
            io,
            EstablishedParams {
                core: self.core,
                peer,
                local_allowed: p.local_prefixes.to_vec(),
                peer_allowed: vec![any_ipv6()],
                children: vec![child],
                next_request_id: 2,
                expected_request_id: 0,
                cached_response: None,
                mobike: false,
                client: true,
            },
        ))
    }
}
