//! Protocol events worth a log line that are not already an [`Output`] of their own: rekeys
//! and their collisions, moves, refusals of single requests, reconnections. They leave the
//! state machine as `Output::Notice`; the driver prints each as one line at its
//! [`Notice::level`] (docs/ARCHITECTURE.md, "The sans-IO contract"). The protocol code itself
//! traces only debug detail.
//!
//! [`Output`]: crate::io::Output

use std::fmt;
use std::net::SocketAddrV4;
use std::time::Duration;

use hometun_control::{ControlError, Endpoint, Spi};
use ipnet::Ipv6Net;

use crate::crypto::DhGroup;
use crate::error::IkeError;
use crate::wire::NotifyType;

/// How loud a [`Notice`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Steps of something another line reports at info (`-v`).
    Debug,
    /// Things that happen in normal operation.
    Info,
    /// Things an operator should look at.
    Warn,
}

/// Who won a rekey collision (RFC 7296 2.8.1), as far as it is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collision {
    /// Both sides rekeyed at once; decided when both exchanges are done.
    Seen,
    /// Our rekey stands; the peer deletes its pair.
    OursWins,
    /// Our rekey is the redundant one; we delete ours.
    OursRedundant,
    /// The peer's rekey came after ours was done, and ours stands.
    LateOursWins,
    /// The peer's rekey came after ours was done, and ours is the redundant one.
    LateOursRedundant,
}

/// A protocol event for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A CHILD SA pair went from the forwarder.
    ChildDeleted {
        /// Inbound SPI.
        spi_in: Spi,
        /// Outbound SPI.
        spi_out: Spi,
    },
    /// We start a rekey of a CHILD SA, with a KE of `pfs` or none.
    ChildRekeying {
        /// Inbound SPI of the pair.
        spi_in: Spi,
        /// The peer.
        peer: String,
        /// The group of our KE payload.
        pfs: Option<DhGroup>,
    },
    /// A CHILD SA rekey collided with the peer's.
    ChildRekeyCollision {
        /// Inbound SPI of the pair both rekeyed.
        spi_in: Spi,
        /// How it came out.
        collision: Collision,
    },
    /// The peer answered our CHILD SA rekey with INVALID_KE_PAYLOAD for a group we offer.
    ChildRekeyPfsGroup {
        /// Inbound SPI of the pair.
        spi_in: Spi,
        /// The peer.
        peer: String,
        /// The group it asks for.
        group: DhGroup,
    },
    /// The peer refused our CHILD SA rekey with PFS, which our proposals let go.
    ChildRekeyWithoutPfs {
        /// Inbound SPI of the pair.
        spi_in: Spi,
        /// The peer.
        peer: String,
    },
    /// The peer does not know a pair we asked to rekey (CHILD_SA_NOT_FOUND).
    ChildUnknownToPeer {
        /// Inbound SPI of the pair.
        spi_in: Spi,
    },
    /// A pair at its hard limit could not be rekeyed: it goes.
    ChildRekeyFailedAtHardLimit {
        /// Inbound SPI of the pair.
        spi_in: Spi,
        /// The peer.
        peer: String,
        /// What went wrong.
        why: String,
    },
    /// A CHILD SA rekey failed and is tried again later.
    ChildRekeyRetry {
        /// Inbound SPI of the pair.
        spi_in: Spi,
        /// What went wrong.
        why: String,
        /// When the next try starts.
        wait: Duration,
        /// The number of the next try.
        next_try: u32,
    },
    /// No pair carries traffic any more: the tunnel is made again.
    NoWorkingChild {
        /// The peer.
        peer: String,
        /// We are the client (we re-establish) rather than the server (we close).
        client: bool,
    },
    /// The forwarder refused to install a pair.
    InstallRefused {
        /// Inbound SPI of the pair.
        spi_in: Spi,
        /// The peer.
        peer: String,
        /// The forwarder's refusal.
        reason: ControlError,
    },
    /// A pair reached its hard limit before a successor was there.
    HardLimitBeforeSuccessor {
        /// Inbound SPI of the pair.
        spi_in: Spi,
        /// The peer.
        peer: String,
    },
    /// We delete a CHILD SA at the peer.
    DeletingChild {
        /// Inbound SPI of the pair.
        spi_in: Spi,
    },
    /// The peer deleted the pair its rekey made; the pair it replaced carries on.
    SuccessorDeletedByPeer {
        /// Inbound SPI of the pair that carries on.
        spi_in: Spi,
        /// The peer.
        peer: String,
    },
    /// The peer deleted the last pair that carried traffic.
    LastChildDeletedByPeer {
        /// The peer.
        peer: String,
    },
    /// An UPDATE_SA_ADDRESSES whose NO_NATS_ALLOWED names other addresses (RFC 4555 3.9).
    NoNatsAllowedMismatch {
        /// The peer.
        peer: String,
        /// Where the request came from.
        remote: SocketAddrV4,
    },
    /// The peer moved with MOBIKE; IKE follows at once, the CHILD SAs after the check.
    MobikeMoving {
        /// The peer.
        peer: String,
        /// Its old address.
        from: SocketAddrV4,
        /// Its new address.
        to: SocketAddrV4,
        /// A NAT lies between us now.
        nat: bool,
    },
    /// The return-routability check passed: the CHILD SAs moved too.
    MobikeMoved {
        /// The peer.
        peer: String,
        /// Its old address.
        from: SocketAddrV4,
        /// Its new address.
        to: SocketAddrV4,
        /// The CHILD SAs' old endpoint.
        old: Endpoint,
        /// Their new one.
        new: Endpoint,
        /// From UPDATE_SA_ADDRESSES to the switch.
        took: Duration,
    },
    /// The return-routability answer did not echo our COOKIE2 (RFC 4555 4.6).
    MobikeCookie2Missing {
        /// The peer.
        peer: String,
    },
    /// UPDATE_SA_ADDRESSES from a peer that did not negotiate MOBIKE.
    UpdateWithoutMobike {
        /// The peer.
        peer: String,
    },
    /// The forwarder moved the peer's CHILD SAs (override NA, NAT rebinding): IKE follows.
    IkeFollowsForwarder {
        /// The peer.
        peer: String,
        /// The CHILD SAs' old endpoint.
        old: Endpoint,
        /// Their new one.
        new: Endpoint,
        /// The IKE SA's old peer address.
        from: SocketAddrV4,
        /// Its new one.
        to: SocketAddrV4,
    },
    /// A request could not be sealed.
    CannotBuildRequest(String),
    /// A response could not be sealed.
    CannotBuildResponse(String),
    /// We start a rekey of the IKE SA.
    IkeRekeying {
        /// The peer.
        peer: String,
    },
    /// The peer's IKE SA rekey collided with ours.
    IkeRekeyCollision {
        /// The IKE SA's SPI (ours, hex).
        spi: String,
    },
    /// How an IKE SA rekey collision came out (ours wins or is redundant).
    IkeRekeyCollisionOutcome {
        /// Ours stands.
        ours_wins: bool,
    },
    /// The peer rekeyed the IKE SA.
    IkeRekeyedByPeer {
        /// The old SPI (hex).
        old: String,
        /// The peer.
        peer: String,
        /// The new SPI (hex).
        new: String,
    },
    /// Our IKE SA rekey is done.
    IkeRekeyed {
        /// The old SPI (hex).
        old: String,
        /// The new SPI (hex).
        new: String,
    },
    /// The peer asked our IKE SA rekey for a group we do not offer.
    IkeRekeyGroupUnwanted,
    /// The peer refused our IKE SA rekey.
    IkeRekeyRefused {
        /// The peer.
        peer: String,
        /// Its error.
        notify: NotifyType,
    },
    /// The peer's answer to our IKE SA rekey was not acceptable.
    IkeRekeyFailed {
        /// The peer.
        peer: String,
        /// Why.
        error: IkeError,
    },
    /// A malformed request inside an authenticated message.
    MalformedRequest {
        /// The peer.
        peer: String,
        /// What was wrong.
        error: IkeError,
    },
    /// A CREATE_CHILD_SA request we refused.
    CreateChildRefused {
        /// The peer.
        peer: String,
        /// Why.
        error: IkeError,
    },
    /// The peer's certificate expired: its SAs go.
    CertificateExpired {
        /// The peer.
        peer: String,
        /// When it expired (`YYYY-MM-DD HH:MM:SS UTC`).
        when: String,
    },
    /// A reload no longer allows a selector of an installed CHILD SA: the pair is removed from
    /// the forwarder at once and the peer gets a DELETE for it.
    SelectorWithdrawn {
        /// The peer.
        peer: String,
        /// Inbound SPI of the pair.
        spi_in: Spi,
        /// The selector the new settings no longer allow.
        selector: Ipv6Net,
    },
    /// The peer reports an error in an INFORMATIONAL.
    PeerReports {
        /// The peer.
        peer: String,
        /// The error.
        notify: NotifyType,
    },
    /// The server asked for another Diffie-Hellman group, which we offer: we try again.
    RetryingWithGroup(DhGroup),
    /// A NAT lies between us and the server: IKE moves to the NAT-T port.
    NatDetected {
        /// The NAT is in front of us (else in front of the server).
        in_front_of_us: bool,
        /// The port IKE moves to.
        port: u16,
    },
    /// No NAT lies between us and the server, but the configuration asks for ESP in UDP: IKE
    /// moves to the NAT-T port all the same.
    UdpEncapsulationForced {
        /// The port IKE moves to.
        port: u16,
    },
    /// The client starts an IKE SA with the server.
    Connecting {
        /// The server's identity.
        name: String,
        /// Its address.
        server: SocketAddrV4,
        /// It replaces one that is there (re-establishment, re-authentication).
        again: bool,
    },
    /// The client's attempt ended without an IKE SA and no refusal: no answer.
    ConnectionFailed {
        /// The server's address.
        server: SocketAddrV4,
        /// Why.
        reason: String,
    },
    /// The client's server stopped answering (or refused it) and it has others: it moves to
    /// the next in its list (README.md, "Failover and BGP").
    FailingOver {
        /// The server it leaves.
        from: SocketAddrV4,
        /// The next server's identity.
        name: String,
        /// Its address.
        to: SocketAddrV4,
    },
    /// The client tries again after a backoff.
    Reconnecting {
        /// The server's address.
        server: SocketAddrV4,
        /// The backoff (zero: at once, after an INVALID_IKE_SPI hint).
        after: Duration,
    },
    /// A hint that the peer lost this IKE SA (RFC 7296 2.21.4) starts a liveness check.
    RestartHintCheck {
        /// The peer.
        peer: String,
        /// The hint.
        what: String,
        /// The check's deadline.
        within: Duration,
    },
    /// After a restart, the server starts telling the peers that were up before it.
    TellingPeersAfterRestart {
        /// How many.
        peers: usize,
    },
    /// After a restart, every peer that was up before it has been told.
    ToldPeersAfterRestart {
        /// How many were told.
        told: usize,
        /// How many there were.
        total: usize,
    },
    /// An older IKE SA with the same server is replaced by the new one.
    ReplacedByNew {
        /// Its SPI (hex).
        spi: String,
    },
    /// An IKE_SA_INIT dropped because the half-open bounds are reached (a flood).
    HalfOpenBound {
        /// Where it came from.
        remote: SocketAddrV4,
        /// Half-open IKE SAs in all.
        total: u32,
        /// Half-open IKE SAs from that address.
        from_source: u32,
        /// Dropped so far.
        dropped: u64,
    },
}

impl Notice {
    /// How loud it is.
    pub fn level(&self) -> Level {
        match self {
            Notice::ChildRekeyFailedAtHardLimit { .. }
            | Notice::ChildRekeyRetry { .. }
            | Notice::NoWorkingChild { .. }
            | Notice::InstallRefused { .. }
            | Notice::HardLimitBeforeSuccessor { .. }
            | Notice::MobikeCookie2Missing { .. }
            | Notice::CannotBuildRequest(_)
            | Notice::CannotBuildResponse(_)
            | Notice::IkeRekeyGroupUnwanted
            | Notice::IkeRekeyRefused { .. }
            | Notice::IkeRekeyFailed { .. }
            | Notice::CertificateExpired { .. }
            | Notice::SelectorWithdrawn { .. }
            | Notice::PeerReports { .. }
            | Notice::HalfOpenBound { .. } => Level::Warn,
            // One line per move at info: the forwarder's (it moved the CHILD SAs) or
            // MobikeMoved (the return-routability check passed).
            Notice::IkeFollowsForwarder { .. } | Notice::MobikeMoving { .. } => Level::Debug,
            _ => Level::Info,
        }
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::ChildDeleted { spi_in, spi_out } => {
                write!(f, "CHILD SA {spi_in}_i {spi_out}_o deleted")
            }
            Notice::ChildRekeying { spi_in, peer, pfs } => {
                write!(f, "rekeying CHILD SA {spi_in} with {peer}")?;
                match pfs {
                    Some(group) => write!(f, " ({group}, PFS)"),
                    None => write!(f, " (no PFS)"),
                }
            }
            Notice::ChildRekeyCollision { spi_in, collision } => {
                let how = match collision {
                    Collision::Seen => "rekey collision",
                    Collision::OursWins => "rekey collision, ours wins",
                    Collision::OursRedundant => "rekey collision, ours is redundant",
                    Collision::LateOursWins => "late rekey collision, ours wins",
                    Collision::LateOursRedundant => "late rekey collision, ours is redundant",
                };
                write!(f, "CHILD SA {spi_in}: {how}")
            }
            Notice::ChildRekeyPfsGroup {
                spi_in,
                peer,
                group,
            } => write!(
                f,
                "CHILD SA {spi_in}: {peer} asks for PFS group {group}; rekeying again"
            ),
            Notice::ChildRekeyWithoutPfs { spi_in, peer } => write!(
                f,
                "CHILD SA {spi_in}: {peer} refuses PFS, which our proposals allow; rekeying again without"
            ),
            Notice::ChildUnknownToPeer { spi_in } => {
                write!(f, "peer does not know CHILD SA {spi_in}; deleting it")
            }
            Notice::ChildRekeyFailedAtHardLimit { spi_in, peer, why } => write!(
                f,
                "CHILD SA {spi_in} with {peer} reached its hard limit and its rekey failed ({why})"
            ),
            Notice::ChildRekeyRetry {
                spi_in,
                why,
                wait,
                next_try,
            } => write!(
                f,
                "CHILD SA {spi_in} rekey {why}; trying again in {} s (try {next_try})",
                wait.as_secs_f32()
            ),
            Notice::NoWorkingChild { peer, client: true } => write!(
                f,
                "no working CHILD SA with {peer}: re-establishing the IKE SA"
            ),
            Notice::NoWorkingChild {
                peer,
                client: false,
            } => write!(
                f,
                "no working CHILD SA with {peer}: closing the IKE SA (the client re-establishes it)"
            ),
            Notice::InstallRefused {
                spi_in,
                peer,
                reason,
            } => write!(
                f,
                "CHILD SA {spi_in} with {peer} could not be installed ({reason}); deleting it at the peer"
            ),
            Notice::HardLimitBeforeSuccessor { spi_in, peer } => write!(
                f,
                "CHILD SA {spi_in} with {peer} reached its hard limit before a successor: it carries nothing until one is made"
            ),
            Notice::DeletingChild { spi_in } => write!(f, "deleting CHILD SA {spi_in}"),
            Notice::SuccessorDeletedByPeer { spi_in, peer } => write!(
                f,
                "CHILD SA {spi_in}: {peer} deleted its successor; it carries on"
            ),
            Notice::LastChildDeletedByPeer { peer } => {
                write!(f, "{peer} deleted the last working CHILD SA")
            }
            Notice::NoNatsAllowedMismatch { peer, remote } => write!(
                f,
                "UPDATE_SA_ADDRESSES from {peer} at {remote} refused: NO_NATS_ALLOWED names other addresses than the packet came with"
            ),
            Notice::MobikeMoving {
                peer,
                from,
                to,
                nat,
            } => write!(
                f,
                "{peer} moves (MOBIKE): {from} -> {to}{}; IKE follows now, the CHILD SAs after the return-routability check",
                if *nat { ", NAT" } else { "" }
            ),
            Notice::MobikeMoved {
                peer,
                from,
                to,
                old,
                new,
                took,
            } => write!(
                f,
                "{peer} moved (MOBIKE): {from} -> {to}, CHILD SAs {old} => {new}, switched {} ms after UPDATE_SA_ADDRESSES (return routability checked)",
                took.as_millis()
            ),
            Notice::MobikeCookie2Missing { peer } => write!(
                f,
                "{peer}: the return-routability answer lacks our COOKIE2; closing the IKE SA"
            ),
            Notice::UpdateWithoutMobike { peer } => {
                write!(f, "UPDATE_SA_ADDRESSES from {peer} without MOBIKE ignored")
            }
            Notice::IkeFollowsForwarder {
                peer,
                old,
                new,
                from,
                to,
            } => write!(
                f,
                "{peer}: the forwarder moved the CHILD SAs ({old} => {new}); IKE follows: {from} -> {to}"
            ),
            Notice::CannotBuildRequest(error) => write!(f, "cannot build a request: {error}"),
            Notice::CannotBuildResponse(error) => write!(f, "cannot build a response: {error}"),
            Notice::IkeRekeying { peer } => write!(f, "rekeying IKE SA with {peer}"),
            Notice::IkeRekeyCollision { spi } => write!(f, "IKE SA {spi}: rekey collision"),
            Notice::IkeRekeyCollisionOutcome { ours_wins: true } => {
                write!(f, "IKE SA rekey collision: ours wins")
            }
            Notice::IkeRekeyCollisionOutcome { ours_wins: false } => {
                write!(f, "IKE SA rekey collision: ours is redundant")
            }
            Notice::IkeRekeyedByPeer { old, peer, new } => {
                write!(f, "IKE SA {old} rekeyed by {peer} to {new}")
            }
            Notice::IkeRekeyed { old, new } => write!(f, "IKE SA {old} rekeyed to {new}"),
            Notice::IkeRekeyGroupUnwanted => {
                write!(f, "IKE SA rekey: peer wants a group we do not offer")
            }
            Notice::IkeRekeyRefused { peer, notify } => {
                write!(f, "IKE SA rekey refused by {peer}: {notify}")
            }
            Notice::IkeRekeyFailed { peer, error } => {
                write!(f, "IKE SA rekey with {peer} failed: {error}")
            }
            Notice::MalformedRequest { peer, error } => {
                write!(f, "malformed request from {peer}: {error}")
            }
            Notice::CreateChildRefused { peer, error } => {
                write!(f, "CREATE_CHILD_SA from {peer} refused: {error}")
            }
            Notice::CertificateExpired { peer, when } => write!(
                f,
                "{peer}: its certificate expired ({when}); closing its IKE SA and CHILD SAs"
            ),
            Notice::SelectorWithdrawn {
                peer,
                spi_in,
                selector,
            } => write!(
                f,
                "{peer}: {selector} is no longer allowed after the reload; CHILD SA {spi_in}_i removed and deleted"
            ),
            Notice::PeerReports { peer, notify } => {
                write!(f, "{peer} reports {notify} in an INFORMATIONAL")
            }
            Notice::RetryingWithGroup(group) => {
                write!(f, "server asks for key exchange group {group}; retrying")
            }
            Notice::NatDetected {
                in_front_of_us,
                port,
            } => write!(
                f,
                "NAT detected ({}); IKE moves to port {port}",
                if *in_front_of_us {
                    "in front of us"
                } else {
                    "in front of the server"
                }
            ),
            Notice::UdpEncapsulationForced { port } => write!(
                f,
                "no NAT in the way, ESP in UDP as configured (force_udp_encapsulation); IKE moves \
                 to port {port}"
            ),
            Notice::Connecting {
                name,
                server,
                again: true,
            } => write!(f, "re-establishing the IKE SA with {name} ({server})"),
            Notice::Connecting {
                name,
                server,
                again: false,
            } => write!(f, "connecting to {name} ({server})"),
            Notice::ConnectionFailed { server, reason } => {
                write!(f, "connection to {server} failed: {reason}")
            }
            Notice::FailingOver { from, name, to } => {
                write!(
                    f,
                    "failing over from {from} to the next server, {name} ({to})"
                )
            }
            Notice::Reconnecting { server, after } if after.is_zero() => {
                write!(f, "reconnecting to {server} at once")
            }
            Notice::Reconnecting { server, after } => {
                write!(
                    f,
                    "reconnecting to {server} in {:.1} s",
                    after.as_secs_f64()
                )
            }
            Notice::RestartHintCheck { peer, what, within } => write!(
                f,
                "{peer}: {what}; checking within {within:?} whether it still knows this IKE SA"
            ),
            Notice::TellingPeersAfterRestart { peers } => write!(
                f,
                "telling {peers} peers that were up before the restart that their SAs are gone"
            ),
            Notice::ToldPeersAfterRestart { told, total } => write!(
                f,
                "told {told} of {total} peers that were up before the restart that their SAs are gone"
            ),
            Notice::ReplacedByNew { spi } => {
                write!(f, "IKE SA {spi} replaced by the new one; deleting it")
            }
            Notice::HalfOpenBound {
                remote,
                total,
                from_source,
                dropped,
            } => write!(
                f,
                "IKE_SA_INIT from {remote} dropped: half-open bound reached ({total} in total, {from_source} from this address; {dropped} dropped so far)"
            ),
        }
    }
}
