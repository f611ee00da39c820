//! The responder's (server's) steps: an IKE_SA_INIT request answered (half open), the
//! IKE_AUTH request authenticated, then established.

use std::net::SocketAddrV4;
use std::time::Instant;

use hometun_control::{PeerId, Spi};
use ipnet::Ipv6Net;

use super::child::{Child, ExchangeRole};
use super::crypto_job::{AuthJob, AuthProof, CryptoJob, KeysJob, Work};
use super::deriving::Deriving;
use super::established::{Established, EstablishedParams};
use super::{
    Addresses, IkeCore, IkeError, Io, PeerInfo, cert_payloads, certreq_payload, has_notify,
    hash_algorithms_payload, id_body, identity_of, nat_detected, natd_payloads, our_id,
    peer_certificates, peer_hash_algorithms,
};
use crate::crypto::PeerIdentity;
use crate::crypto::auth::{AuthRole, auth_octets};
use crate::crypto::keys::check_nonce;
use crate::crypto::{IkeSaKeys, KeyExchange};
use crate::io::Output;
use crate::proposal::{ChosenEsp, ChosenIke, EspGroups, EspProposal, IkeProposal};
use crate::selectors::{any_ipv6, narrow, prefixes_of, to_payload};
use crate::settings::Authorizer;
use crate::wire::{
    self, ExchangeType, Flags, HashAlgorithm, Header, Message, Notify, NotifyType, Payload,
};
use crate::wire::{Authentication, PayloadList};

/// An unprotected IKE_SA_INIT response carrying one notify (COOKIE, INVALID_KE_PAYLOAD,
/// NO_PROPOSAL_CHOSEN...): the responder SPI is zero and no state is kept (RFC 7296 2.6, 1.2).
pub(crate) fn unprotected_answer(request: &Header, notify: Notify) -> Vec<u8> {
    let header = Header::new(
        ExchangeType::IKE_SA_INIT,
        request.spi_i,
        0,
        Flags::new(false, true),
        request.message_id,
    );
    Message::new(header, vec![Payload::Notify(notify)])
        .to_bytes()
        .unwrap_or_default()
}

/// What answering an IKE_SA_INIT request left.
pub(crate) enum InitAnswered {
    /// The keys are derived: waiting for IKE_AUTH.
    HalfOpen(HalfOpen),
    /// The shared secret and keys are handed out as a job ([`respond_sa_init`]'s `defer`).
    Deriving(Deriving, CryptoJob),
}

/// Answers an IKE_SA_INIT request (cookie and bounds already checked): chooses the proposal,
/// makes our key pair and sends the response. The shared secret and keys are computed here, or
/// with `defer` handed out as a job (the peer's KE length and nonce are checked first, so that
/// only an all-zero shared secret can fail it). Errors are answered by the caller, unprotected.
#[allow(clippy::too_many_arguments)]
pub(crate) fn respond_sa_init(
    io: &mut Io<'_>,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    message: &Message,
    data: &[u8],
    expires: Instant,
    defer: bool,
    generation: u64,
) -> Result<InitAnswered, IkeError> {
    let spi_i = message.header.spi_i;
    let payloads = message.payloads.as_slice();
    let (Some(sa), Some(ke), Some(ni)) = (payloads.sa(), payloads.ke(), payloads.nonce()) else {
        return Err(IkeError::syntax("IKE_SA_INIT request lacks SA, KE or Ni"));
    };
    let (chosen, answer) = choose_ike_proposal(io, sa, ke)?;
    let our_ke = io.key_exchange(chosen.group);
    let g_ir = if defer {
        our_ke.check_peer_ke(&ke.data)?;
        check_nonce(&ni.data)?;
        None
    } else {
        Some(our_ke.shared_secret(&ke.data)?)
    };
    let nr = io.nonce();
    let spi_r = io.spis.new_ike(io.rng);
    let (nat_remote, nat_local) = nat_detected(&message.payloads, spi_i, 0, remote, local);
    let response = match sa_init_response(io, (spi_i, spi_r), answer, &our_ke, &nr, local, remote) {
        Ok(r) => r,
        Err(e) => {
            io.spis.release_ike(spi_r);
            return Err(e);
        }
    };
    let addresses = Addresses {
        local,
        remote,
        nat_local,
        nat_remote,
        udp_forced: false,
    };
    let init = InitExchange {
        ni: ni.data.clone(),
        nr,
        initiator_init: data.to_vec(),
        response,
        peer_hash_algorithms: peer_hash_algorithms(&message.payloads),
        source: remote,
        answered_again: 0,
        expires,
    };
    let answered = match g_ir {
        Some(g_ir) => {
            let core =
                IkeSaKeys::initial(chosen.encryption, &init.ni, &init.nr, &g_ir, spi_i, spi_r)
                    .and_then(|keys| IkeCore::new(keys, chosen, spi_i, spi_r, false, addresses));
            match core {
                Ok(core) => InitAnswered::HalfOpen(HalfOpen::new(core, init)),
                Err(e) => {
                    io.spis.release_ike(spi_r);
                    return Err(e.into());
                }
            }
        }
        None => {
            let job = CryptoJob {
                spi: spi_r,
                generation,
                work: Work::Keys(KeysJob {
                    our_ke,
                    peer_ke: ke.data.clone(),
                    encryption: chosen.encryption,
                    ni: init.ni.clone(),
                    nr: init.nr.clone(),
                    spi_i,
                    spi_r,
                }),
            };
            let deriving = Deriving::new(spi_i, spi_r, chosen, addresses, init);
            InitAnswered::Deriving(deriving, job)
        }
    };
    let response = match &answered {
        InitAnswered::HalfOpen(h) => &h.init.response,
        InitAnswered::Deriving(d, _) => &d.init.response,
    };
    io.send(local, remote, response.clone());
    tracing::debug!(
        "IKE_SA_INIT from {remote}: {chosen}{}",
        if nat_remote || nat_local {
            ", NAT detected"
        } else {
            ""
        }
    );
    Ok(answered)
}

/// The first of our IKE proposals the request offers, and our answer to it; the request's KE
/// must be of the chosen group (else INVALID_KE_PAYLOAD names the one we want, RFC 7296 1.2).
fn choose_ike_proposal(
    io: &Io<'_>,
    sa: &wire::SecurityAssociation,
    ke: &wire::KeyExchange,
) -> Result<(ChosenIke, wire::Proposal), IkeError> {
    let (chosen, _, answer) = IkeProposal::select(&io.cfg.ike_proposals, sa, Some(ke.group), &[])?;
    if chosen.group.to_wire() != ke.group {
        return Err(IkeError::InvalidKe {
            wanted: chosen.group,
            got: ke.group.0,
        });
    }
    Ok((chosen, answer))
}

/// Our IKE_SA_INIT response (RFC 7296 1.2): SA, KE, Nr, the NAT detection notifies of RFC 7296
/// 2.23, CERTREQ for our CA and the hash algorithms of RFC 7427.
fn sa_init_response(
    io: &Io<'_>,
    (spi_i, spi_r): (u64, u64),
    answer: wire::Proposal,
    our_ke: &KeyExchange,
    nr: &[u8],
    local: SocketAddrV4,
    remote: SocketAddrV4,
) -> Result<Vec<u8>, IkeError> {
    let mut payloads = vec![
        Payload::Sa(wire::SecurityAssociation::new(vec![answer])),
        Payload::Ke(wire::KeyExchange::new(
            our_ke.group().to_wire(),
            our_ke.public_ke_data().to_vec(),
        )),
        Payload::Nonce(wire::Nonce::new(nr.to_vec())),
    ];
    payloads.extend(natd_payloads(spi_i, spi_r, local, remote));
    payloads.push(certreq_payload(&io.cfg.verifier));
    payloads.push(hash_algorithms_payload());
    let header = Header::new(
        ExchangeType::IKE_SA_INIT,
        spi_i,
        spi_r,
        Flags::new(false, true),
        0,
    );
    Message::new(header, payloads)
        .to_bytes()
        .map_err(|e| IkeError::syntax(e.to_string()))
}

/// IKE_SA_INIT answered; waiting for IKE_AUTH.
pub(crate) struct HalfOpen {
    core: IkeCore,
    pub init: InitExchange,
    /// The IKE_AUTH request whose signature work is out ([`AuthResult::Deferred`]).
    pending: Option<PendingAuth>,
}

/// The IKE_SA_INIT exchange of a half-open SA: what our AUTH and the peer's sign over, and what
/// answers a retransmitted request.
pub(crate) struct InitExchange {
    ni: Vec<u8>,
    nr: Vec<u8>,
    /// The initiator's request: RealMessage1 of its AUTH octets.
    initiator_init: Vec<u8>,
    /// Our response: RealMessage2 of our AUTH octets, and the answer to retransmissions.
    response: Vec<u8>,
    peer_hash_algorithms: Vec<HashAlgorithm>,
    /// Where the IKE_SA_INIT request came from (the half-open bound counts per address).
    pub source: SocketAddrV4,
    /// Times a retransmitted request was answered again.
    answered_again: u32,
    /// When the half-open SA is given up.
    pub expires: Instant,
}

/// An IKE_AUTH request waiting for its [`AuthJob`].
struct PendingAuth {
    inner: Vec<Payload>,
    name: String,
}

/// What an IKE_AUTH request led to.
pub(crate) enum AuthResult {
    /// Not a (decryptable) IKE_AUTH request: keep waiting.
    Wait(Box<HalfOpen>),
    /// The initiator proved who it is and its CHILD SA is acceptable.
    Authenticated(Box<Authenticated>),
    /// Refused (the initiator's SPI and source address: the half-open bookkeeping); the error
    /// response is sent and the reason logged.
    Refused(u64, SocketAddrV4),
    /// Waiting for the signature work, which the caller runs (anywhere) and hands back to
    /// [`HalfOpen::resume`].
    Deferred(Box<HalfOpen>, Box<CryptoJob>),
}

impl InitExchange {
    /// Whether an IKE_SA_INIT request is a retransmission of the one we answered, byte for
    /// byte.
    pub fn is_retransmission(&self, request: &[u8]) -> bool {
        self.initiator_init == request
    }

    /// Whether an IKE_SA_INIT request carries the nonce of the one we answered (the same
    /// attempt, possibly repeated with a COOKIE).
    pub fn is_retransmission_of_nonce(&self, ni: &[u8]) -> bool {
        self.ni == ni
    }

    /// Our IKE_SA_INIT response, to send again: at most `limit` times (as often as an honest
    /// initiator retransmits), so that replayed requests cannot make us a traffic amplifier.
    pub fn answer_again(&mut self, limit: u32) -> Option<Vec<u8>> {
        if self.answered_again >= limit {
            return None;
        }
        self.answered_again += 1;
        Some(self.response.clone())
    }
}

impl HalfOpen {
    pub(crate) fn new(core: IkeCore, init: InitExchange) -> Self {
        HalfOpen {
            core,
            init,
            pending: None,
        }
    }

    /// Our SPI.
    pub fn spi(&self) -> u64 {
        self.core.spi_r
    }

    /// The initiator's SPI.
    pub fn spi_i(&self) -> u64 {
        self.core.spi_i
    }

    /// Processes the IKE_AUTH request; with `defer`, the signature work is handed out as an
    /// [`AuthJob`] instead of done here. `generation` is the configuration's.
    #[allow(clippy::too_many_arguments)]
    pub fn authenticate(
        mut self,
        io: &mut Io<'_>,
        authorizer: &dyn Authorizer,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        header: &Header,
        data: &[u8],
        defer: bool,
        generation: u64,
    ) -> AuthResult {
        if header.exchange_type != ExchangeType::IKE_AUTH
            || header.flags.response()
            || !header.flags.initiator()
            || header.message_id != 1
        {
            tracing::debug!(
                "{} {} from {remote} on a half-open SA ignored",
                header.exchange_type,
                header.message_id
            );
            return AuthResult::Wait(Box::new(self));
        }
        if remote.ip() != self.init.source.ip() {
            // The port may change (the float to 4500, a NAT's mapping for it: RFC 7296 2.23),
            // the address may not: the IKE_SA_INIT answer went there, so the initiator showed
            // it receives at it. From anywhere else, an authenticated home would choose where
            // the server sends its ESP, with no return-routability check (SECURITY.md, I8).
            tracing::debug!(
                "IKE_AUTH from {remote}, but IKE_SA_INIT came from {}: ignored",
                self.init.source
            );
            return AuthResult::Wait(Box::new(self));
        }
        if self.pending.is_some() {
            // A retransmission while its first copy is being checked: the answer will come.
            return AuthResult::Wait(Box::new(self));
        }
        let inner = match self.core.open(data) {
            Ok(m) => m.inner,
            Err(e) => match IkeError::from_sk(&e) {
                Some(error) => {
                    let gone = (self.spi_i(), self.init.source);
                    self.refuse(io, local, remote, None, error);
                    return AuthResult::Refused(gone.0, gone.1);
                }
                None => {
                    tracing::debug!("IKE_AUTH from {remote} dropped: {e}");
                    return AuthResult::Wait(Box::new(self));
                }
            },
        };
        // Answer on whatever address and port the request came from (after a NAT-T float).
        self.core.local = local;
        self.core.remote = remote;
        let (name, job) = match self.auth_job(io, &inner) {
            Ok(prepared) => prepared,
            Err((name, error)) => {
                let gone = (self.spi_i(), self.init.source);
                self.refuse(io, local, remote, name, error);
                return AuthResult::Refused(gone.0, gone.1);
            }
        };
        if defer {
            self.pending = Some(PendingAuth { inner, name });
            let job = CryptoJob {
                spi: self.spi(),
                generation,
                work: Work::Signatures(job),
            };
            return AuthResult::Deferred(Box::new(self), Box::new(job));
        }
        let proof = job.check();
        self.finish(io, authorizer, &inner, name, proof)
    }

    /// Takes the result of the signature work handed out for this SA (anything else is
    /// ignored). Under a configuration other than the job's (`job_generation`: a reload
    /// meanwhile), checks again now.
    pub fn resume(
        mut self,
        io: &mut Io<'_>,
        authorizer: &dyn Authorizer,
        proof: Result<AuthProof, IkeError>,
        job_generation: u64,
        generation: u64,
    ) -> AuthResult {
        let Some(pending) = self.pending.take() else {
            return AuthResult::Wait(Box::new(self));
        };
        let proof = if job_generation == generation {
            proof
        } else {
            match self.auth_job(io, &pending.inner) {
                Ok((_, job)) => job.check(),
                Err((_, error)) => Err(error),
            }
        };
        self.finish(io, authorizer, &pending.inner, pending.name, proof)
    }

    /// The rest of the checks once the signature work is done: authorised prefixes, the
    /// CHILD SA's proposal and selectors.
    fn finish(
        self,
        io: &mut Io<'_>,
        authorizer: &dyn Authorizer,
        inner: &[Payload],
        name: String,
        proof: Result<AuthProof, IkeError>,
    ) -> AuthResult {
        let (local, remote) = (self.core.local, self.core.remote);
        let checked = proof
            .map_err(|e| (Some(name.clone()), e))
            .and_then(|proof| self.check(io, authorizer, inner, proof));
        match checked {
            Ok(checked) => AuthResult::Authenticated(Box::new(Authenticated {
                half_open: self,
                checked,
            })),
            Err((name, error)) => {
                let gone = (self.spi_i(), self.init.source);
                self.refuse(io, local, remote, name, error);
                AuthResult::Refused(gone.0, gone.1)
            }
        }
    }

    fn refuse(
        mut self,
        io: &mut Io<'_>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        name: Option<String>,
        error: IkeError,
    ) {
        let header = self.core.header(ExchangeType::IKE_AUTH, true, 1);
        if let Ok(response) = io.seal(
            &mut self.core,
            header,
            vec![Payload::Notify(error.notify())],
        ) {
            io.send(local, remote, response);
        }
        // The driver logs Output::Refused at warn: one line per refusal.
        io.output(Output::Refused {
            remote,
            name,
            reason: format!("{}: {error}", error.notify_type()),
        });
    }

    /// The signature work of an IKE_AUTH request, once its syntax and identity are checked:
    /// returns the peer's name and the job.
    #[allow(clippy::type_complexity)]
    fn auth_job(
        &self,
        io: &mut Io<'_>,
        inner: &[Payload],
    ) -> Result<(String, AuthJob), (Option<String>, IkeError)> {
        let idr = inner.id_r();
        let (Some(idi), Some(auth)) = (inner.id_i(), inner.auth()) else {
            return Err((None, IkeError::syntax("IKE_AUTH request lacks IDi or AUTH")));
        };
        let identity = identity_of(idi).map_err(|e| (None, e))?;
        let name = identity.to_string();
        if let Some(idr) = idr
            && identity_of(idr).ok().as_ref() != Some(&io.cfg.identity)
        {
            tracing::debug!("{name} asks for another identity than ours; answering as ours");
        }
        let peer_octets = auth_octets(
            AuthRole::Initiator,
            &self.core.keys,
            &self.init.initiator_init,
            &self.init.nr,
            &id_body(idi),
        );
        // Our AUTH: RealMessage2 | Ni | prf(SK_pr, IDr').
        let our_octets = auth_octets(
            AuthRole::Responder,
            &self.core.keys,
            &self.init.response,
            &self.init.ni,
            &id_body(&our_id(&io.cfg.identity)),
        );
        let job = AuthJob {
            verifier: io.cfg.verifier.clone(),
            certificates: peer_certificates(inner),
            identity,
            wall: io.now.wall,
            peer_auth: Authentication::clone(auth),
            peer_octets,
            key: io.cfg.key.clone(),
            peer_hash_algorithms: self.init.peer_hash_algorithms.clone(),
            our_octets,
        };
        Ok((name, job))
    }

    #[allow(clippy::type_complexity)]
    fn check(
        &self,
        io: &mut Io<'_>,
        authorizer: &dyn Authorizer,
        inner: &[Payload],
        proof: AuthProof,
    ) -> Result<Checked, (Option<String>, IkeError)> {
        let (sa, tsi, tsr) = (inner.sa(), inner.ts_i(), inner.ts_r());
        let Some(idi) = inner.id_i() else {
            return Err((None, IkeError::syntax("IKE_AUTH request lacks IDi")));
        };
        let AuthProof { peer, our_auth } = proof;
        let identity = home_identity(identity_of(idi).map_err(|e| (None, e))?, &peer);
        let name = identity.to_string();
        let fail = |e: IkeError| (Some(name.clone()), e);
        let prefixes = authorizer
            .prefixes(&identity, &peer)
            .map_err(|reason| fail(IkeError::AuthenticationFailed(reason.to_string())))?;
        let idr = our_id(&io.cfg.identity);
        // The first CHILD SA. A refusal here refuses the whole IKE SA: a hometun tunnel
        // without its CHILD SA carries nothing, so no IKE SA is kept for it.
        let (Some(sa), Some(tsi), Some(tsr)) = (sa, tsi, tsr) else {
            return Err(fail(IkeError::syntax(
                "IKE_AUTH request lacks SA, TSi or TSr",
            )));
        };
        if has_notify(inner, NotifyType::USE_TRANSPORT_MODE) {
            return Err(fail(IkeError::NoProposalChosen(
                "transport mode requested; only tunnel mode is offered".into(),
            )));
        }
        let (esp, peer_spi, answer) =
            EspProposal::select(&io.cfg.esp_proposals, sa, EspGroups::Ignore, Spi(0))
                .map_err(|e| fail(e.into()))?;
        let their_ts = narrow(tsi, &prefixes);
        let our_ts = narrow(tsr, &[any_ipv6()]);
        if their_ts.is_empty() || our_ts.is_empty() {
            return Err(fail(IkeError::TsUnacceptable(format!(
                "asks for {} but may use {}",
                super::child::join(&prefixes_of(tsi)),
                super::child::join(&prefixes)
            ))));
        }
        Ok(Checked {
            identity,
            name,
            certificates: peer_certificates(inner),
            prefixes,
            idr,
            our_auth,
            esp,
            peer_spi,
            answer,
            their_ts,
            our_ts,
            initial_contact: has_notify(inner, NotifyType::INITIAL_CONTACT),
            mobike: has_notify(inner, NotifyType::MOBIKE_SUPPORTED),
        })
    }
}

/// The identity a home is known by: the one it stated, except that a certificate's subject
/// (ID_DER_ASN1_DN, which the AUTH check matched) becomes the certificate's first DNS name.
/// Otherwise one certificate would be two homes, by its name and by its subject, each with its
/// own bound of IKE SAs, INITIAL_CONTACT and holder record (SECURITY.md, I10).
fn home_identity(stated: PeerIdentity, peer: &crate::crypto::cert::VerifiedPeer) -> PeerIdentity {
    if !matches!(stated, PeerIdentity::DerAsn1Dn(_)) {
        return stated;
    }
    hometun_certs::verify::describe(peer.certificate_der())
        .ok()
        .and_then(|certificate| certificate.names.into_iter().next())
        .map(|name| PeerIdentity::Fqdn(name.to_ascii_lowercase()))
        .unwrap_or(stated)
}

/// What the checks of IKE_AUTH found.
struct Checked {
    identity: PeerIdentity,
    name: String,
    certificates: Vec<Vec<u8>>,
    prefixes: Vec<Ipv6Net>,
    idr: wire::Identification,
    our_auth: Payload,
    esp: ChosenEsp,
    peer_spi: Spi,
    answer: wire::Proposal,
    their_ts: Vec<Ipv6Net>,
    our_ts: Vec<Ipv6Net>,
    initial_contact: bool,
    mobike: bool,
}

/// An IKE_AUTH request that passed every check, before the answer goes out (the endpoint
/// first handles INITIAL_CONTACT and picks the peer ID).
pub(crate) struct Authenticated {
    half_open: HalfOpen,
    checked: Checked,
}

impl Authenticated {
    /// The initiator's SPI and the source of its IKE_SA_INIT (the half-open bookkeeping).
    pub fn half_open_source(&self) -> (u64, SocketAddrV4) {
        (self.half_open.spi_i(), self.half_open.init.source)
    }

    /// The peer's identity.
    pub fn name(&self) -> &str {
        &self.checked.name
    }

    /// Refuses it after all (the peer authenticated, but may not have another IKE SA now):
    /// the answer carries `error`, and the SA goes. Returns the half-open bookkeeping.
    pub fn refuse(self, io: &mut Io<'_>, error: IkeError) -> (u64, SocketAddrV4) {
        let gone = self.half_open_source();
        let (local, remote) = (self.half_open.core.local, self.half_open.core.remote);
        let name = self.checked.name.clone();
        self.half_open.refuse(io, local, remote, Some(name), error);
        gone
    }

    /// The peer's identity.
    pub fn identity(&self) -> &PeerIdentity {
        &self.checked.identity
    }

    /// Whether the peer sent INITIAL_CONTACT.
    pub fn initial_contact(&self) -> bool {
        self.checked.initial_contact
    }

    /// Answers IKE_AUTH, installs the CHILD SA and becomes established.
    pub fn complete(self, io: &mut Io<'_>, peer_id: PeerId, reauthenticated: bool) -> Established {
        let Authenticated {
            half_open: h,
            checked: c,
        } = self;
        let mut core = h.core;
        let spi_in = io.spis.new_esp(io.rng);
        let mut answer = c.answer;
        answer.spi = spi_in.to_bytes().to_vec();
        let keys = core
            .keys
            .child_sa_keys(c.esp.encryption, None, &h.init.ni, &h.init.nr)
            // The nonces passed IkeSaKeys::initial's checks; KEYMAT length is fixed.
            .expect("CHILD SA keys derive from checked nonces");
        let child = Child::new(
            spi_in,
            c.peer_spi,
            c.esp,
            c.our_ts.clone(),
            c.their_ts.clone(),
        );
        let mut payloads = vec![Payload::IdR(c.idr)];
        payloads.extend(cert_payloads(io.cfg));
        payloads.push(c.our_auth);
        payloads.push(Payload::Sa(wire::SecurityAssociation::new(vec![answer])));
        payloads.push(Payload::TsI(to_payload(&c.their_ts)));
        payloads.push(Payload::TsR(to_payload(&c.our_ts)));
        if c.mobike {
            payloads.push(Payload::Notify(Notify::new(
                NotifyType::MOBIKE_SUPPORTED,
                Vec::new(),
            )));
        }
        let header = core.header(ExchangeType::IKE_AUTH, true, 1);
        let response = io.seal(&mut core, header, payloads).unwrap_or_default();
        io.send(core.local, core.remote, response.clone());
        let peer = PeerInfo {
            id: peer_id,
            name: c.name,
            identity: c.identity,
            certificates: c.certificates,
        };
        let endpoint = core.esp_endpoint(io.cfg);
        // The forwarder installs this peer's pairs only inside what it is granted: a second
        // check beside our own narrowing (docs/ARCHITECTURE.md, "Trust").
        io.forwarder(hometun_control::Request::AllowPeer {
            peer: peer.id,
            prefixes: c.prefixes.clone(),
        });
        child.install(io, peer.id, &core, keys, ExchangeRole::Responder, endpoint);
        // The driver logs Output::PeerUp at info.
        io.output(Output::PeerUp {
            reauthenticated,
            peer: peer.id,
            name: peer.name.clone(),
            remote: core.remote,
        });
        Established::new(
            io,
            EstablishedParams {
                core,
                peer,
                local_allowed: vec![any_ipv6()],
                peer_allowed: c.prefixes,
                children: vec![child],
                next_request_id: 0,
                expected_request_id: 2,
                cached_response: Some(response),
                mobike: c.mobike,
                client: false,
            },
        )
    }
}
