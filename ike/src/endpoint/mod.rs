//! The sans-IO IKE endpoint: every IKE SA of one daemon, the SPI demultiplexer, half-open
//! tracking and the cookie secret. Inputs go in through `handle_*`, outputs come out of
//! `poll_*`; time and randomness are arguments (docs/ARCHITECTURE.md, "The sans-IO contract").

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use hometun_control::{Event, PeerId, Spi};

use crate::crypto::{CookieGenerator, PeerIdentity};
use crate::notice::Notice;
use crate::sa::deriving::Deriving;
use crate::sa::established::{Effect, Established};
use crate::sa::initiator::{AuthRequested, ClientParams, Failure, SaInitRequested, Step};
use crate::sa::responder::{HalfOpen, InitExchange};
use crate::sa::{Io, SpiRegistry};
use crate::window::total_patience;
use crate::wire::{ExchangeType, Header};
use init_index::InitIndex;
use sa_table::SaTable;

pub use crate::io::{Now, Output, Random, Transmit};
pub use crate::settings::{
    Authorizer, CommonConfig, InitiatorConfig, PrefixRefusal, ResponderConfig,
};
pub use crate::status::{ChildStatus, EndpointCounters, PeerStatus};

/// How often the cookie secret changes; cookies of the previous secret stay valid until the
/// next change (RFC 7296 2.6).
const COOKIE_ROTATION: Duration = Duration::from_secs(120);

/// At most this many IKE SAs per peer identity: the current one and those that a
/// re-authentication or a rekey replaced, until the peer deletes them.
const MAX_IKE_SAS_PER_PEER: usize = 3;

/// The state of one of our IKE SAs, by step.
enum Sa {
    /// Client: IKE_SA_INIT sent.
    Init(Box<SaInitRequested>),
    /// Client: IKE_AUTH sent.
    Auth(Box<AuthRequested>),
    /// Server: IKE_SA_INIT answered, its keys being derived by a job.
    Deriving(Box<Deriving>),
    /// Server: IKE_SA_INIT answered.
    HalfOpen(Box<HalfOpen>),
    /// Established (or replaced and waiting for its DELETE).
    Up(Box<Established>),
}
// Every step is boxed: the SA table stores this enum in each of its slots (a server's holds
// one per home), and an unboxed half-open SA made every slot as large as one.

impl Sa {
    /// A server's half-open SA (keys derived or not): the initiator's SPI and the IKE_SA_INIT
    /// exchange.
    fn half_open(&self) -> Option<(u64, &InitExchange)> {
        match self {
            Sa::Deriving(d) => Some((d.spi_i(), &d.init)),
            Sa::HalfOpen(h) => Some((h.spi_i(), &h.init)),
            _ => None,
        }
    }

    /// The peer of an established SA.
    fn peer(&self) -> Option<PeerId> {
        match self {
            Sa::Up(e) => Some(e.peer.id),
            _ => None,
        }
    }

    /// The IKE_SA_INIT exchange of a server's half-open SA, to answer a retransmission.
    fn init_exchange(&mut self) -> Option<&mut InitExchange> {
        match self {
            Sa::Deriving(d) => Some(&mut d.init),
            Sa::HalfOpen(h) => Some(&mut h.init),
            _ => None,
        }
    }
}

/// When `handle_timeout` must next look at `sa`.
fn sa_deadline(common: &CommonConfig, sa: &Sa) -> Option<Instant> {
    match sa {
        Sa::Init(s) => Some(s.deadline()),
        Sa::Auth(s) => Some(s.deadline()),
        Sa::Deriving(_) | Sa::HalfOpen(_) => sa.half_open().map(|(_, init)| init.expires),
        Sa::Up(e) => e.deadline(common),
    }
}

struct ResponderRole {
    /// Our address (the source of unprotected answers to ESP).
    local_addr: Ipv4Addr,
    authorizer: Box<dyn Authorizer>,
    cookie_threshold: u32,
    half_open_per_source: u32,
    half_open_total: u32,
    /// The burst of [`ResponderRole::new_sa_budgets`] (0: no bound).
    new_ike_sas_per_identity: u32,
    /// What each identity (by name) may still make of new IKE SAs (SECURITY.md, I11); an
    /// entry whose bucket is full again is forgotten at the next counter tick.
    new_sa_budgets: HashMap<String, crate::sa::established::TokenBucket>,
    cookies: CookieGenerator,
    cookie_rotate_at: Instant,
    half_open_count: u32,
    half_open_by_source: HashMap<Ipv4Addr, u32>,
    /// Which of our SAs answered which IKE_SA_INIT: spots retransmitted and late copies.
    init_index: InitIndex,
    /// Shutting down: new IKE SAs are not answered (their initiators retry, and find the
    /// server that comes next).
    closed: bool,
}

struct InitiatorRole {
    server: SocketAddrV4,
    server_identity: PeerIdentity,
    local_addr: Ipv4Addr,
    local_prefixes: Vec<ipnet::Ipv6Net>,
    /// See [`InitiatorConfig::force_udp_encapsulation`].
    force_udp_encapsulation: bool,
    reconnect_at: Option<Instant>,
    backoff: Duration,
    /// The servers tried after `server` when it fails, in order; the one left goes last.
    fallbacks: VecDeque<(SocketAddrV4, PeerIdentity)>,
    /// Failed attempts since the last success: a repeated failure is logged quietly.
    failures: operator::FailureLog,
    closed: bool,
    /// A new IKE SA is being made to replace a working one (make-before-break
    /// re-authentication, RFC 7296 2.8.3): it carries no INITIAL_CONTACT, and the old one is
    /// deleted once it is up.
    reauthenticating: bool,
}

enum Role {
    Responder(ResponderRole),
    Initiator(InitiatorRole),
}

/// All IKE SAs, SPI demux, half-open tracking, cookie secret.
pub struct Endpoint {
    common: CommonConfig,
    role: Role,
    sas: SaTable,
    spis: SpiRegistry,
    peer_ids: HashMap<String, PeerId>,
    transmits: VecDeque<Transmit>,
    outputs: VecDeque<Output>,
    counters: EndpointCounters,
    /// Hand the key derivation after IKE_SA_INIT and the signature work of IKE_AUTH out
    /// ([`Endpoint::poll_crypto_job`]) instead of doing them in place.
    defer_crypto: bool,
    crypto_jobs: VecDeque<Box<crate::sa::crypto_job::CryptoJob>>,
    /// Our key pairs, made ahead by crypto jobs while they are handed out.
    key_pool: crate::sa::key_pool::KeyPairPool,
    /// Bumped by every reload (signature work made under an older one is checked again).
    generation: u64,
    /// Unprotected answers about SAs we do not have are rate limited ([`restart`]).
    unprotected_answers: crate::sa::established::TokenBucket,
    /// After a restart: the peers still to be told, paced ([`restart`]).
    restart_hints: restart::RestartHints,
    #[cfg(feature = "test-util")]
    tamper: Option<Box<dyn crate::io::Tamper>>,
}

/// Builds the [`Io`] of one event from the endpoint's disjoint fields.
macro_rules! io {
    ($self:ident, $now:expr, $rng:expr) => {
        Io {
            now: $now,
            rng: $rng,
            cfg: &$self.common,
            transmits: &mut $self.transmits,
            outputs: &mut $self.outputs,
            spis: &mut $self.spis,
            counters: &mut $self.counters,
            key_pool: &mut $self.key_pool,
            #[cfg(feature = "test-util")]
            tamper: $self.tamper.as_deref_mut(),
        }
    };
}

// After `io!`, which they use.
mod auth;
mod failover;
mod init_index;
#[cfg(feature = "test-util")]
mod inspect;
mod new_sas;
pub mod operator;
pub mod reload;
pub mod restart;
mod sa_table;
mod shutdown;

pub use operator::Initiated;
pub use restart::RestartHint;

fn random_secret(rng: &mut dyn Random) -> [u8; 32] {
    let mut secret = [0u8; 32];
    rng.fill(&mut secret);
    secret
}

impl Endpoint {
    /// A responder (server).
    pub fn responder(config: ResponderConfig, now: Now, rng: &mut dyn Random) -> Self {
        let role = Role::Responder(ResponderRole {
            local_addr: config.local_addr,
            authorizer: config.authorizer,
            cookie_threshold: config.cookie_threshold,
            half_open_per_source: config.half_open_per_source,
            half_open_total: config.half_open_total,
            new_ike_sas_per_identity: config.new_ike_sas_per_identity,
            new_sa_budgets: HashMap::new(),
            cookies: CookieGenerator::new(random_secret(rng)),
            cookie_rotate_at: now.mono + COOKIE_ROTATION,
            half_open_count: 0,
            half_open_by_source: HashMap::new(),
            init_index: InitIndex::default(),
            closed: false,
        });
        Self::new(config.common, role, now)
    }

    /// An initiator (client). Starts connecting at once (IKE_SA_INIT with INITIAL_CONTACT in
    /// IKE_AUTH).
    pub fn initiator(config: InitiatorConfig, now: Now, rng: &mut dyn Random) -> Self {
        let backoff = config.common.retransmit_base;
        let role = Role::Initiator(InitiatorRole {
            server: config.server,
            server_identity: config.server_identity,
            fallbacks: config.fallback_servers.into(),
            local_addr: config.local_addr,
            local_prefixes: config.local_prefixes,
            force_udp_encapsulation: config.force_udp_encapsulation,
            reconnect_at: None,
            backoff,
            failures: operator::FailureLog::default(),
            closed: false,
            reauthenticating: false,
        });
        let mut endpoint = Self::new(config.common, role, now);
        endpoint.connect(now, rng);
        endpoint
    }

    fn new(common: CommonConfig, role: Role, now: Now) -> Self {
        Self {
            common,
            role,
            sas: SaTable::default(),
            spis: SpiRegistry::default(),
            peer_ids: HashMap::new(),
            transmits: VecDeque::new(),
            outputs: VecDeque::new(),
            counters: EndpointCounters::default(),
            defer_crypto: false,
            crypto_jobs: VecDeque::new(),
            key_pool: Default::default(),
            generation: 0,
            unprotected_answers: restart::unprotected_answers(now.mono),
            restart_hints: restart::RestartHints::default(),
            #[cfg(feature = "test-util")]
            tamper: None,
        }
    }

    /// The established IKE SAs that speak for their peer now (not replaced by a rekey or a
    /// re-authentication).
    fn current_sas(&self) -> impl Iterator<Item = &Established> {
        self.sas.values().filter_map(|sa| match sa {
            Sa::Up(e) if e.is_current() => Some(&**e),
            _ => None,
        })
    }

    /// Our SPIs of the established IKE SAs whose peer may be `identity`: those filed under the
    /// peer ID of its string (equal identities print alike: FQDNs in lower case), which the
    /// caller checks against the identity itself.
    fn spis_of(&mut self, identity: &PeerIdentity) -> Vec<u64> {
        self.refile();
        match self.peer_ids.get(&identity.to_string()) {
            Some(peer) => self.sas.of_peer(*peer),
            None => Vec::new(),
        }
    }

    /// The stable peer ID of an identity.
    fn peer_id(&mut self, name: &str) -> PeerId {
        let next = PeerId(self.peer_ids.len() as u64 + 1);
        *self.peer_ids.entry(name.to_string()).or_insert(next)
    }

    /// Client: starts an IKE_SA_INIT.
    fn connect(&mut self, now: Now, rng: &mut dyn Random) {
        let Role::Initiator(role) = &self.role else {
            return;
        };
        let name = role.server_identity.to_string();
        let peer = self.peer_id(&name);
        let Role::Initiator(role) = &mut self.role else {
            return;
        };
        role.reconnect_at = None;
        let mut io = io!(self, now, rng);
        let spi = io.spis.new_ike(io.rng);
        let params = client_params(role, io.cfg.ike_port, Some(peer));
        io.notice(Notice::Connecting {
            name,
            server: role.server,
            again: role.reauthenticating,
        });
        let step = SaInitRequested::start(&mut io, &params, spi);
        self.sas.insert(spi, Sa::Init(Box::new(step)));
    }

    /// An IKE message arrived (without the non-ESP marker). `local` is where it arrived
    /// (port 500 from the driver's socket, 4500 via the forwarder's `Event::IkeReceived`).
    pub fn handle_datagram(
        &mut self,
        now: Now,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        data: &[u8],
        rng: &mut dyn Random,
    ) {
        let header = match Header::parse(data) {
            Ok(h) if h.major_version == 2 => h,
            _ => {
                self.counters.dropped_unparsable += 1;
                tracing::debug!("unparsable datagram from {remote} dropped");
                return;
            }
        };
        if header.exchange_type == ExchangeType::IKE_SA_INIT
            && !header.flags.response()
            && header.spi_r == 0
        {
            if matches!(self.role, Role::Responder(_)) {
                self.sa_init_request(now, local, remote, &header, data, rng);
            }
            return;
        }
        let our_spi = if header.flags.initiator() {
            header.spi_r
        } else {
            header.spi_i
        };
        let Some(sa) = self.sas.remove(&our_spi) else {
            if self.unknown_ike_spi(now, rng, local, remote, &header, data) {
                return;
            }
            self.counters.dropped_unknown_spi += 1;
            tracing::debug!(
                "{} from {remote} for unknown IKE SA {our_spi:016x} dropped",
                header.exchange_type
            );
            return;
        };
        let next = match sa {
            Sa::Init(step) => {
                let Role::Initiator(role) = &self.role else {
                    self.sas.insert(our_spi, Sa::Init(step));
                    return;
                };
                let peer = self
                    .peer_ids
                    .get(&role.server_identity.to_string())
                    .copied();
                let mut io = io!(self, now, rng);
                let params = client_params(role, io.cfg.ike_port, peer);
                match step.handle(&mut io, &params, remote, data) {
                    Step::Wait(step) => Some(Sa::Init(Box::new(step))),
                    Step::Next(auth) => Some(Sa::Auth(Box::new(auth))),
                    Step::Failed(failure) => {
                        self.attempt_failed(failure);
                        None
                    }
                }
            }
            Sa::Auth(step) => {
                let Role::Initiator(role) = &mut self.role else {
                    self.sas.insert(our_spi, Sa::Auth(step));
                    return;
                };
                let peer = self
                    .peer_ids
                    .get(&role.server_identity.to_string())
                    .copied();
                let mut io = io!(self, now, rng);
                let params = client_params(role, io.cfg.ike_port, peer);
                match step.handle(&mut io, &params, remote, data) {
                    Step::Wait(step) => Some(Sa::Auth(Box::new(step))),
                    Step::Next(established) => {
                        self.client_established(now, rng, our_spi, established);
                        self.after(now, rng);
                        return;
                    }
                    Step::Failed(failure) => {
                        self.attempt_failed(failure);
                        None
                    }
                }
            }
            Sa::Deriving(mut deriving) => {
                if header.spi_i == deriving.spi_i()
                    && header.exchange_type == ExchangeType::IKE_AUTH
                {
                    deriving.hold_early(local, remote, header, data);
                }
                self.sas.insert(our_spi, Sa::Deriving(deriving));
                return;
            }
            Sa::HalfOpen(half_open) => {
                if header.spi_i != half_open.spi_i() {
                    self.sas.insert(our_spi, Sa::HalfOpen(half_open));
                    return;
                }
                self.auth_request(now, local, remote, &header, data, *half_open, rng);
                return;
            }
            Sa::Up(mut established) => {
                if (header.spi_i, header.spi_r) != (established.core.spi_i, established.core.spi_r)
                {
                    self.sas.insert(our_spi, Sa::Up(established));
                    return;
                }
                let mut io = io!(self, now, rng);
                let effects = established.handle(&mut io, local, remote, &header, data);
                self.sas.insert(our_spi, Sa::Up(established));
                self.apply(now, rng, our_spi, effects);
                self.after(now, rng);
                return;
            }
        };
        if let Some(sa) = next {
            self.sas.insert(our_spi, sa);
        } else {
            self.forget(our_spi);
        }
        self.after(now, rng);
    }

    /// An IKE SA of ours is gone: its IKE_SA_INIT index entry too, and its SPI is free.
    fn forget(&mut self, spi: u64) {
        if let Role::Responder(role) = &mut self.role {
            role.init_index.remove_ours(spi);
        }
        self.spis.release_ike(spi);
    }

    /// Carries out what an established SA asked for.
    fn apply(&mut self, now: Now, rng: &mut dyn Random, spi: u64, effects: Vec<Effect>) {
        let mut inserted = None;
        for effect in effects {
            match effect {
                Effect::Insert(mut new) => {
                    let new_spi = new.core.our_spi();
                    inserted = Some(new.peer.identity.clone());
                    let mut io = io!(self, now, rng);
                    new.pump(&mut io);
                    self.sas.insert(new_spi, Sa::Up(new));
                }
                Effect::MoveChildren { to } => {
                    let moved = match self.sas.get_mut(&spi) {
                        Some(Sa::Up(from)) => Some(from.take_children()),
                        _ => None,
                    };
                    let Some((children, tasks)) = moved else {
                        continue;
                    };
                    let mut io = io!(self, now, rng);
                    match self.sas.get_mut(&to) {
                        Some(Sa::Up(target)) => {
                            target.adopt_children(children, tasks);
                            target.pump(&mut io);
                        }
                        _ => {
                            for child in children {
                                child.uninstall(&mut io);
                            }
                        }
                    }
                }
                Effect::ReconnectNow => {
                    if let Role::Initiator(role) = &mut self.role {
                        role.backoff = Duration::ZERO;
                    }
                }
                Effect::PeerDead => self.server_dead(),
                Effect::Remove => {
                    if let Some(Sa::Up(mut e)) = self.sas.remove(&spi) {
                        let mut io = io!(self, now, rng);
                        e.dispose(&mut io);
                    }
                    self.forget(spi);
                }
            }
        }
        if let Some(identity) = inserted {
            self.bound_ike_sas(now, rng, &identity);
        }
    }

    /// At most [`MAX_IKE_SAS_PER_PEER`] IKE SAs of one identity after a rekey: beyond it the
    /// oldest of those that no longer speak for the peer go (a rekeyed one waiting for its
    /// DELETE, a deleted one kept to answer a retransmitted DELETE). A peer that rekeys again
    /// and again, with or without its DELETEs, holds no more.
    fn bound_ike_sas(&mut self, now: Now, rng: &mut dyn Random, identity: &PeerIdentity) {
        let mut held: usize = 0;
        let mut replaced: Vec<(Instant, u64)> = Vec::new();
        for spi in self.spis_of(identity) {
            if let Some(Sa::Up(e)) = self.sas.get(&spi)
                && e.peer.identity == *identity
            {
                held += 1;
                if !e.is_current() {
                    replaced.push((e.keyed_at(), spi));
                }
            }
        }
        replaced.sort();
        for (_, spi) in replaced
            .into_iter()
            .take(held.saturating_sub(MAX_IKE_SAS_PER_PEER))
        {
            if let Some(Sa::Up(mut e)) = self.sas.remove(&spi) {
                tracing::debug!(
                    "{identity}: dropping replaced IKE SA {} (at most {MAX_IKE_SAS_PER_PEER} per peer)",
                    crate::sa::hex_spi(spi)
                );
                let mut io = io!(self, now, rng);
                e.dispose(&mut io);
            }
            self.forget(spi);
        }
    }

    /// A client's connection attempt ended without an IKE SA.
    fn attempt_failed(&mut self, failure: Failure) {
        self.attempt_failed_at_server(failure);
        self.next_server_after_failed_attempt();
    }

    /// Logs a failed attempt (the first of its kind at its level).
    fn attempt_failed_at_server(&mut self, failure: Failure) {
        let Role::Initiator(role) = &mut self.role else {
            return;
        };
        let reason = failure.to_string();
        if !role.failures.first_of_its_kind(&reason) {
            // Said already, with what to do: the same again only at debug level.
            tracing::debug!("connection to {} failed again: {reason}", role.server);
            return;
        }
        if failure.is_refusal() {
            // The driver logs Output::Refused at warn.
            self.outputs.push_back(Output::Refused {
                remote: role.server,
                name: Some(role.server_identity.to_string()),
                reason: operator::with_hint(reason),
            });
        } else {
            self.outputs
                .push_back(Output::Notice(Notice::ConnectionFailed {
                    server: role.server,
                    reason: failure.to_string(),
                }));
        }
    }

    /// The client's IKE_AUTH completed: the new IKE SA speaks for the server. One it
    /// re-authenticates in place of is replaced and deleted (make-before-break).
    fn client_established(
        &mut self,
        now: Now,
        rng: &mut dyn Random,
        spi: u64,
        established: Established,
    ) {
        let Role::Initiator(role) = &mut self.role else {
            return;
        };
        role.backoff = self.common.retransmit_base;
        role.failures.clear();
        role.reauthenticating = false;
        let peer = established.peer.id;
        self.refile();
        let older: Vec<u64> = self
            .sas
            .of_peer(peer)
            .into_iter()
            .filter(|spi| matches!(self.sas.get(spi), Some(Sa::Up(e)) if e.is_current()))
            .collect();
        let mut io = io!(self, now, rng);
        for old in older {
            if let Some(Sa::Up(e)) = self.sas.get_mut(&old) {
                io.notice(Notice::ReplacedByNew {
                    spi: crate::sa::hex_spi(e.core.our_spi()),
                });
                e.replaced_by_reauthentication(&mut io, true);
            }
        }
        self.sas.insert(spi, Sa::Up(Box::new(established)));
    }

    /// After every event, on a client: without a working IKE SA it schedules its reconnection
    /// (with backoff); one whose IKE SA asks to be re-established starts a new one at once
    /// (then with backoff, while that fails).
    fn after(&mut self, now: Now, rng: &mut dyn Random) {
        let Role::Initiator(role) = &mut self.role else {
            return;
        };
        if role.closed || role.reconnect_at.is_some() {
            return;
        }
        let connecting = self
            .sas
            .values()
            .any(|sa| matches!(sa, Sa::Init(_) | Sa::Auth(_)));
        let current = self
            .sas
            .values()
            .any(|sa| matches!(sa, Sa::Up(e) if e.is_current()));
        if connecting {
            return;
        }
        let wants_new = self
            .sas
            .values()
            .any(|sa| matches!(sa, Sa::Up(e) if e.wants_reestablish()));
        if current && !wants_new {
            return;
        }
        if current && !role.reauthenticating {
            // First try at once: the old IKE SA still stands (or carries nothing anyway).
            role.reauthenticating = true;
            self.connect(now, rng);
            return;
        }
        role.reauthenticating = current;
        let after = role.backoff;
        let reconnecting = Notice::Reconnecting {
            server: role.server,
            after,
        };
        if role.failures.repeating() {
            tracing::debug!("{reconnecting}");
        } else {
            self.outputs.push_back(Output::Notice(reconnecting));
        }
        let base = self.common.retransmit_base;
        role.backoff = (role.backoff * 2)
            .max(base)
            .min(self.common.reconnect_max.max(base));
        if after.is_zero() {
            // At once (the server lost our IKE SA): now, not a timer that is already due when
            // handle_timeout returns.
            self.connect(now, rng);
        } else {
            role.reconnect_at = Some(now.mono + after);
        }
    }

    /// Timers (retransmission, DPD, reconnect backoff, cookie secret rotation, grace periods).
    pub fn handle_timeout(&mut self, now: Now, rng: &mut dyn Random) {
        match &mut self.role {
            Role::Responder(role) => {
                if now.mono >= role.cookie_rotate_at {
                    role.cookies.rotate(random_secret(rng));
                    role.cookie_rotate_at = now.mono + COOKIE_ROTATION;
                }
            }
            Role::Initiator(role) => {
                if role.reconnect_at.is_some_and(|at| now.mono >= at) {
                    role.reconnect_at = None;
                    self.connect(now, rng);
                }
            }
        }
        self.pace_restart_hints(now);
        self.refile();
        for spi in self.sas.due(now.mono) {
            let Some(sa) = self.sas.remove(&spi) else {
                continue;
            };
            let next = match sa {
                Sa::Init(step) => {
                    let mut io = io!(self, now, rng);
                    match step.on_timeout(&mut io) {
                        Step::Wait(step) => Some(Sa::Init(Box::new(step))),
                        Step::Next(auth) => Some(Sa::Auth(Box::new(auth))),
                        Step::Failed(failure) => {
                            self.attempt_failed(failure);
                            None
                        }
                    }
                }
                Sa::Auth(step) => {
                    let mut io = io!(self, now, rng);
                    match step.on_timeout(&mut io) {
                        Step::Wait(step) => Some(Sa::Auth(Box::new(step))),
                        Step::Next(established) => {
                            self.client_established(now, rng, spi, established);
                            continue;
                        }
                        Step::Failed(failure) => {
                            self.attempt_failed(failure);
                            None
                        }
                    }
                }
                sa @ (Sa::Deriving(_) | Sa::HalfOpen(_)) => {
                    if let Some((spi_i, init)) = sa.half_open() {
                        tracing::debug!("half-open IKE SA from {} expired", init.source);
                        self.half_open_gone(spi_i, init.source, false);
                    }
                    None
                }
                Sa::Up(mut established) => {
                    let mut io = io!(self, now, rng);
                    let effects = established.on_timeout(&mut io);
                    self.sas.insert(spi, Sa::Up(established));
                    self.apply(now, rng, spi, effects);
                    continue;
                }
            };
            match next {
                Some(sa) => {
                    self.sas.insert(spi, sa);
                }
                None => self.forget(spi),
            }
        }
        self.after(now, rng);
    }

    /// Files the SAs that changed since they were last filed again (their deadline and peer).
    fn refile(&mut self) {
        let common = &self.common;
        self.sas.refile(|sa| sa_deadline(common, sa));
    }

    /// The forwarder's events: SoftLimit -> CHILD SA rekey (make-before-break); HardLimit /
    /// SeqExhausted -> rekey at once; EndpointMoved -> move that peer's IKE SA too;
    /// IkeReceived is handled like [`Endpoint::handle_datagram`] (pass it one way, not both).
    pub fn handle_forwarder_event(
        &mut self,
        now: Now,
        event: &hometun_control::Event,
        rng: &mut dyn Random,
    ) {
        match event {
            Event::SoftLimit { spi_in, .. } => self.limit_reached(now, rng, *spi_in, false),
            Event::HardLimit { spi_in, .. } | Event::SeqExhausted { spi_in, .. } => {
                self.limit_reached(now, rng, *spi_in, true)
            }
            Event::EndpointMoved { peer, new, .. } => {
                self.refile();
                for spi in self.sas.of_peer(*peer) {
                    let mut io = io!(self, now, rng);
                    if let Some(Sa::Up(e)) = self.sas.get_mut(&spi)
                        && e.is_current()
                    {
                        e.endpoint_moved(&mut io, new);
                    }
                }
            }
            Event::IkeReceived {
                local,
                remote,
                data,
            } => self.handle_datagram(now, *local, *remote, data, rng),
            Event::UnknownSpi { spi, remote, port } => {
                self.handle_unknown_esp(now, *spi, *remote, *port)
            }
            // The driver learns the new source address and calls handle_network_change; the
            // driver's site puts its routes back on a new TUN device.
            Event::NetworkChanged | Event::TunnelRecreated => {}
        }
    }

    fn limit_reached(&mut self, now: Now, rng: &mut dyn Random, spi_in: Spi, urgent: bool) {
        let mut io = io!(self, now, rng);
        for sa in self.sas.values_mut() {
            if let Sa::Up(e) = sa
                && e.has_child(spi_in)
            {
                e.limit_reached(&mut io, spi_in, urgent);
                return;
            }
        }
        tracing::debug!("limit event for unknown CHILD SA {spi_in:08x}");
    }

    /// The forwarder's counters, polled by the driver every second: liveness (ESP from the
    /// peer counts as life), deleting a rekeyed SA only after its successor carried traffic,
    /// and the byte bound of the IKE SA rekey (which needs randomness for its request).
    pub fn handle_counters(
        &mut self,
        now: Now,
        report: &hometun_control::CounterReport,
        rng: &mut dyn Random,
    ) {
        // Each IKE SA reads its own peer's pairs only, found in the report sorted by peer:
        // every IKE SA reading the whole report grew with the square of the homes
        // (bench/README.md, "memory.sh").
        if let Role::Responder(role) = &mut self.role {
            role.new_sa_budgets
                .retain(|_, budget| !budget.is_full(now.mono));
        }
        let mut pairs: Vec<&hometun_control::SaCounters> = report.sas.iter().collect();
        pairs.sort_unstable_by_key(|sa| sa.peer);
        let mut io = io!(self, now, rng);
        for sa in self.sas.values_mut() {
            if let Sa::Up(e) = sa {
                let from = pairs.partition_point(|p| p.peer < e.peer.id);
                let to = from + pairs[from..].partition_point(|p| p.peer == e.peer.id);
                if to > from {
                    e.counters(&mut io, &pairs[from..to]);
                }
            }
        }
    }

    /// The client's outer IPv4 address is `addr` (it changed, or the network changed around
    /// it): established IKE SAs follow (MOBIKE), and a client that is down tries again at once.
    pub fn handle_local_address(&mut self, now: Now, addr: Ipv4Addr, rng: &mut dyn Random) {
        let old = match &mut self.role {
            Role::Initiator(role) => std::mem::replace(&mut role.local_addr, addr),
            Role::Responder(_) => addr,
        };
        let mut io = io!(self, now, rng);
        for sa in self.sas.values_mut() {
            if let Sa::Up(e) = sa {
                e.local_address(&mut io, addr);
            }
        }
        // A client that is down tries again at once, from there.
        self.local_address_changed(now, (old, addr), rng);
    }

    /// The forwarder refused to install the pair with inbound SPI `spi_in` (its answer to
    /// `Request::Install`): the pair goes on our side, the peer is told to drop its side, and a
    /// rekey it was the successor of is tried again later; without another working pair the
    /// tunnel is re-made. IKE and the forwarder never disagree about which pairs exist.
    pub fn handle_install_refused(
        &mut self,
        now: Now,
        spi_in: hometun_control::Spi,
        reason: &hometun_control::ControlError,
        rng: &mut dyn Random,
    ) {
        let mut io = io!(self, now, rng);
        if let Some(e) = self.sas.values_mut().find_map(|sa| match sa {
            Sa::Up(e) if e.has_child(spi_in) => Some(e),
            _ => None,
        }) {
            e.install_refused(&mut io, spi_in, reason);
        }
        self.after(now, rng);
    }

    /// Rekeys the IKE SA with `peer` (CREATE_CHILD_SA; the CHILD SAs move to the new one).
    pub fn rekey_ike_sa(&mut self, now: Now, peer: PeerId, rng: &mut dyn Random) {
        self.refile();
        for spi in self.sas.of_peer(peer) {
            let mut io = io!(self, now, rng);
            if let Some(Sa::Up(e)) = self.sas.get_mut(&spi)
                && e.is_current()
            {
                e.rekey(&mut io);
            }
        }
    }

    /// The next IKE message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next output for the driver.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The earliest time `handle_timeout` must be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.refile();
        let role = match &self.role {
            Role::Responder(r) => Some(r.cookie_rotate_at),
            Role::Initiator(r) => r.reconnect_at,
        };
        self.sas
            .next_deadline()
            .into_iter()
            .chain(role)
            .chain(self.restart_hints.next_round())
            .min()
    }

    /// Per-peer state for `hometun status`.
    pub fn status(&self, now: Now) -> Vec<PeerStatus> {
        let mut peers: Vec<PeerStatus> = self.current_sas().map(|e| e.status(now)).collect();
        peers.sort_by(|a, b| a.peer.cmp(&b.peer).then(a.ike_spis.cmp(&b.ike_spis)));
        peers
    }

    /// Each peer [`Endpoint::status`] lists, with its identity: what the driver needs every
    /// second to name the forwarder's counters, without building every peer's whole status.
    pub fn peer_names(&self) -> impl Iterator<Item = (PeerId, &str)> {
        self.current_sas()
            .map(|e| (e.peer.id, e.peer.name.as_str()))
    }

    /// What the endpoint holds and what it dropped.
    pub fn counters(&self) -> EndpointCounters {
        EndpointCounters {
            ike_sas: self.sas.len(),
            half_open: self
                .sas
                .values()
                .filter(|sa| sa.half_open().is_some())
                .count(),
            ..self.counters.clone()
        }
    }
}

fn client_params(role: &InitiatorRole, ike_port: u16, peer: Option<PeerId>) -> ClientParams<'_> {
    ClientParams {
        server: role.server,
        server_identity: &role.server_identity,
        local: SocketAddrV4::new(role.local_addr, ike_port),
        local_prefixes: &role.local_prefixes,
        force_udp_encapsulation: role.force_udp_encapsulation,
        // A fresh start tells the server to drop what it still holds of us; a
        // re-authentication keeps the old IKE SA until the new one is up.
        initial_contact: !role.reauthenticating,
        peer: peer.unwrap_or(PeerId(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The driver moves the endpoint into a task.
    #[test]
    fn endpoint_is_send() {
        fn send<T: Send>() {}
        send::<Endpoint>();
        send::<Output>();
        send::<Transmit>();
    }
}
