//! `hometun ike probe ADDR[:PORT]`: one IKE_SA_INIT with our default proposals, and what the
//! server made of it: the proposal and group it chose (or INVALID_KE_PAYLOAD /
//! NO_PROPOSAL_CHOSEN), whether a NAT lies between us (from its NAT_DETECTION_* hashes), and
//! whether it asked for a COOKIE. Nothing is authenticated and no IKE SA is kept: the server
//! drops the half-open SA after its timeout.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use anyhow::{Context, bail};
use hometun_config::IkeSection;

use crate::clock::OsRandom;
use hometun_ike::crypto::dh::PRIVATE_RANDOM_LEN;
use hometun_ike::crypto::{DhGroup, KeyExchange, natd_hash};
use hometun_ike::endpoint::Random;
use hometun_ike::proposal::{IkeProposal, describe};
use hometun_ike::wire::{
    self, ExchangeType, Flags, Header, Message, Notify, NotifyType, Payload, PayloadType,
};

/// Arguments of `hometun ike probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The server's address: ADDR or ADDR:PORT (IPv4; port 500 by default).
    pub addr: String,
}

/// Tries per request before giving up (1 s, 2 s, 4 s apart).
const TRIES: u32 = 3;
/// First wait for an answer; doubled per try.
const FIRST_WAIT: Duration = Duration::from_secs(1);
/// Nonce length we send.
const NONCE_LEN: usize = 32;

/// Where to probe: `ADDR` or `ADDR:PORT` (IPv4; port 500 by default).
pub fn parse_target(text: &str) -> anyhow::Result<SocketAddrV4> {
    if let Ok(addr) = text.parse::<SocketAddrV4>() {
        return Ok(addr);
    }
    let ip: Ipv4Addr = text
        .parse()
        .with_context(|| format!("{text:?} is not an IPv4 address or ADDR:PORT"))?;
    Ok(SocketAddrV4::new(ip, 500))
}

/// One IKE_SA_INIT request as we built it, with what is needed to read the answer.
#[derive(Debug)]
pub struct Request {
    /// Our SPI.
    pub spi_i: u64,
    /// Where we sent from.
    pub local: SocketAddrV4,
    /// Where we sent to.
    pub remote: SocketAddrV4,
    /// The group of our KE payload.
    pub group: DhGroup,
    /// The message.
    pub bytes: Vec<u8>,
}

/// What one IKE_SA_INIT request offers.
#[derive(Debug, Clone, Copy)]
pub struct Offer<'a> {
    /// Our proposals.
    pub proposals: &'a [IkeProposal],
    /// The group of our KE payload.
    pub group: DhGroup,
    /// Our SPI.
    pub spi_i: u64,
    /// Our nonce.
    pub nonce: &'a [u8],
    /// The server's COOKIE, when it asked for one.
    pub cookie: Option<&'a [u8]>,
}

/// Builds an IKE_SA_INIT with the offer's proposals, a KE for its group, its nonce, NAT
/// detection hashes for `local` and `remote`, SIGNATURE_HASH_ALGORITHMS, and the COOKIE first
/// when there is one.
pub fn build_request(
    offer: Offer<'_>,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    rng: &mut dyn Random,
) -> anyhow::Result<Request> {
    let Offer {
        proposals,
        group,
        spi_i,
        nonce,
        cookie,
    } = offer;
    let mut secret = [0u8; PRIVATE_RANDOM_LEN];
    rng.fill(&mut secret);
    let ke = KeyExchange::new(group, &secret).context("key exchange")?;
    let mut payloads = Vec::new();
    if let Some(cookie) = cookie {
        payloads.push(Payload::Notify(Notify::new(
            NotifyType::COOKIE,
            cookie.to_vec(),
        )));
    }
    payloads.push(Payload::Sa(IkeProposal::sa_payload(proposals, &[])));
    payloads.push(Payload::Ke(wire::KeyExchange::new(
        group.to_wire(),
        ke.public_ke_data().to_vec(),
    )));
    payloads.push(Payload::Nonce(wire::Nonce::new(nonce.to_vec())));
    payloads.push(Payload::Notify(Notify::new(
        NotifyType::NAT_DETECTION_SOURCE_IP,
        natd_hash(spi_i, 0, IpAddr::V4(*local.ip()), local.port()).to_vec(),
    )));
    payloads.push(Payload::Notify(Notify::new(
        NotifyType::NAT_DETECTION_DESTINATION_IP,
        natd_hash(spi_i, 0, IpAddr::V4(*remote.ip()), remote.port()).to_vec(),
    )));
    payloads.push(Payload::Notify(Notify::new(
        NotifyType::SIGNATURE_HASH_ALGORITHMS,
        hometun_ike::crypto::auth::signature_hash_algorithms_data(),
    )));
    let header = Header::new(
        ExchangeType::IKE_SA_INIT,
        spi_i,
        0,
        Flags::new(true, false),
        0,
    );
    let bytes = Message::new(header, payloads)
        .to_bytes()
        .context("building IKE_SA_INIT")?;
    Ok(Request {
        spi_i,
        local,
        remote,
        group,
        bytes,
    })
}

/// What one answer said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The server wants a COOKIE first (RFC 7296 2.6).
    Cookie(Vec<u8>),
    /// The server wants another key exchange group.
    InvalidKe(u16),
    /// The server accepted none of our proposals.
    NoProposalChosen,
    /// Another error notification.
    Error(NotifyType),
    /// A full IKE_SA_INIT response.
    Accepted(Accepted),
}

/// The interesting parts of an accepted IKE_SA_INIT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The server's SPI.
    pub spi_r: u64,
    /// Its chosen proposal, as we name it, or as the wire has it if it is none of ours.
    pub proposal: String,
    /// The group of its KE payload.
    pub ke_group: String,
    /// Its nonce length.
    pub nonce_len: usize,
    /// Our address and port as it saw them differ from ours: we are behind a NAT.
    pub nat_local: Option<bool>,
    /// Its address and port differ from where we sent: it is behind a NAT.
    pub nat_remote: Option<bool>,
    /// How many CAs it asks certificates from (CERTREQ), if it sent one.
    pub certreq_cas: Option<usize>,
    /// Other notifications it sent (status types).
    pub notifies: Vec<String>,
    /// Number of vendor ID payloads.
    pub vendor_ids: usize,
}

/// Reads the server's answer to `request`. `Ok(None)`: not an answer to it (ignore it).
pub fn read_answer(
    request: &Request,
    proposals: &[IkeProposal],
    datagram: &[u8],
) -> anyhow::Result<Option<Answer>> {
    let message = Message::parse(datagram).context("the answer does not parse")?;
    let h = &message.header;
    if h.spi_i != request.spi_i
        || h.exchange_type != ExchangeType::IKE_SA_INIT
        || !h.flags.response()
    {
        return Ok(None);
    }
    if let Some(cookie) = message.notify(NotifyType::COOKIE) {
        return Ok(Some(Answer::Cookie(cookie.data.clone())));
    }
    if let Some(n) = message.notify(NotifyType::INVALID_KE_PAYLOAD) {
        let group = match n.data.as_slice() {
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => 0,
        };
        return Ok(Some(Answer::InvalidKe(group)));
    }
    if message.notify(NotifyType::NO_PROPOSAL_CHOSEN).is_some() {
        return Ok(Some(Answer::NoProposalChosen));
    }
    if let Some(error) = message.notifies().find(|n| n.notify_type.0 < 16384) {
        return Ok(Some(Answer::Error(error.notify_type)));
    }
    let sa = message.payloads.iter().find_map(|p| match p {
        Payload::Sa(sa) => Some(sa),
        _ => None,
    });
    let Some(sa) = sa else {
        bail!("the answer has neither an SA payload nor an error notification");
    };
    let proposal = match IkeProposal::accept(proposals, sa) {
        Ok((chosen, _)) => chosen.to_string(),
        Err(_) => format!("{} (none of ours!)", describe(sa)),
    };
    let ke_group = message
        .payloads
        .iter()
        .find_map(|p| match p {
            Payload::Ke(ke) => Some(ke.group.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "(no KE payload)".into());
    let nonce_len = message
        .payloads
        .iter()
        .find_map(|p| match p {
            Payload::Nonce(n) => Some(n.data.len()),
            _ => None,
        })
        .unwrap_or(0);
    let hash =
        |addr: SocketAddrV4| natd_hash(h.spi_i, h.spi_r, IpAddr::V4(*addr.ip()), addr.port());
    // Its DESTINATION hash is of us as it saw us; its SOURCE hash of itself as it sent.
    let nat_local = message
        .notify(NotifyType::NAT_DETECTION_DESTINATION_IP)
        .map(|n| n.data != hash(request.local));
    let nat_remote = {
        let sources: Vec<&Notify> = message
            .notifies()
            .filter(|n| n.notify_type == NotifyType::NAT_DETECTION_SOURCE_IP)
            .collect();
        (!sources.is_empty()).then(|| !sources.iter().any(|n| n.data == hash(request.remote)))
    };
    let certreq_cas = message.payloads.iter().find_map(|p| match p {
        Payload::CertReq(c) => Some(c.authorities().count()),
        _ => None,
    });
    let notifies = message
        .notifies()
        .filter(|n| {
            n.notify_type != NotifyType::NAT_DETECTION_SOURCE_IP
                && n.notify_type != NotifyType::NAT_DETECTION_DESTINATION_IP
        })
        .map(|n| n.notify_type.to_string())
        .collect();
    let vendor_ids = message
        .payloads
        .iter()
        .filter(|p| p.payload_type() == PayloadType::VENDOR_ID)
        .count();
    Ok(Some(Answer::Accepted(Accepted {
        spi_r: h.spi_r,
        proposal,
        ke_group,
        nonce_len,
        nat_local,
        nat_remote,
        certreq_cas,
        notifies,
        vendor_ids,
    })))
}

/// The whole conversation, for printing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Where we probed from.
    pub local: SocketAddrV4,
    /// Whom we probed.
    pub remote: SocketAddrV4,
    /// What we offered.
    pub offered: Vec<String>,
    /// The server asked for a COOKIE.
    pub cookie: bool,
    /// The server asked for another group (INVALID_KE_PAYLOAD), by number.
    pub invalid_ke: Option<u16>,
    /// The final answer.
    pub outcome: Answer,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "IKE_SA_INIT {} -> {}", self.local, self.remote)?;
        writeln!(f, "  offered:  {}", self.offered.join(", "))?;
        writeln!(
            f,
            "  cookie:   {}",
            if self.cookie {
                "asked for (COOKIE), sent it back"
            } else {
                "not asked for"
            }
        )?;
        if let Some(group) = self.invalid_ke {
            writeln!(
                f,
                "  group:    INVALID_KE_PAYLOAD, the server wants {}",
                wire::DhGroup(group)
            )?;
        }
        match &self.outcome {
            Answer::Accepted(a) => {
                writeln!(f, "  chosen:   {}", a.proposal)?;
                writeln!(
                    f,
                    "  KE group: {}, nonce {} bytes, SPIr {:016x}",
                    a.ke_group, a.nonce_len, a.spi_r
                )?;
                writeln!(f, "  NAT:      {}", nat_text(a.nat_local, a.nat_remote))?;
                match a.certreq_cas {
                    Some(n) => writeln!(f, "  CERTREQ:  {n} CA(s)")?,
                    None => writeln!(f, "  CERTREQ:  none")?,
                }
                if !a.notifies.is_empty() {
                    writeln!(f, "  notifies: {}", a.notifies.join(", "))?;
                }
                if a.vendor_ids > 0 {
                    writeln!(f, "  vendor IDs: {}", a.vendor_ids)?;
                }
            }
            Answer::NoProposalChosen => writeln!(
                f,
                "  refused:  NO_PROPOSAL_CHOSEN (none of our proposals is acceptable)"
            )?,
            Answer::InvalidKe(group) => writeln!(
                f,
                "  refused:  INVALID_KE_PAYLOAD: it wants {}, which we do not offer",
                wire::DhGroup(*group)
            )?,
            Answer::Error(kind) => writeln!(f, "  refused:  {kind}")?,
            Answer::Cookie(_) => writeln!(f, "  refused:  it keeps asking for a COOKIE")?,
        }
        Ok(())
    }
}

fn nat_text(local: Option<bool>, remote: Option<bool>) -> String {
    match (local, remote) {
        (None, None) => "unknown (no NAT_DETECTION payloads in the answer)".into(),
        (Some(false), Some(false)) => "none between us".into(),
        (l, r) => {
            let mut parts = Vec::new();
            if l == Some(true) {
                parts.push("we are behind a NAT");
            }
            if r == Some(true) {
                parts.push("the server is behind a NAT");
            }
            if parts.is_empty() {
                "none seen (one side sent no NAT detection hash)".into()
            } else {
                parts.join("; ")
            }
        }
    }
}

/// Runs the probe: sends, follows a COOKIE and an INVALID_KE_PAYLOAD once each, reports.
pub fn probe(target: SocketAddrV4) -> anyhow::Result<Report> {
    let proposals: Vec<IkeProposal> = IkeSection::default()
        .proposals
        .iter()
        .map(|p| IkeProposal::parse(p))
        .collect::<Result<_, _>>()
        .context("default proposals")?;
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("UDP socket")?;
    socket
        .connect(target)
        .with_context(|| format!("no route to {target}"))?;
    let local = match socket.local_addr()? {
        SocketAddr::V4(local) => local,
        other => bail!("unexpected local address {other}"),
    };
    let mut rng = OsRandom;
    let mut spi = [0u8; 8];
    rng.fill(&mut spi);
    let spi_i = u64::from_be_bytes(spi) | 1;
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce);
    let mut group = proposals
        .first()
        .and_then(|p| p.groups.first())
        .copied()
        .context("no group in the default proposals")?;
    let mut report = Report {
        local,
        remote: target,
        offered: proposals.iter().map(ToString::to_string).collect(),
        cookie: false,
        invalid_ke: None,
        outcome: Answer::NoProposalChosen,
    };
    let mut cookie: Option<Vec<u8>> = None;
    // At most: plain, with cookie, with the other group (and cookie again).
    for _ in 0..4 {
        let offer = Offer {
            proposals: &proposals,
            group,
            spi_i,
            nonce: &nonce,
            cookie: cookie.as_deref(),
        };
        let request = build_request(offer, local, target, &mut rng)?;
        let answer = exchange(&socket, &request, &proposals)?;
        match answer {
            Answer::Cookie(c) if !report.cookie => {
                report.cookie = true;
                cookie = Some(c);
            }
            Answer::InvalidKe(wanted) if report.invalid_ke.is_none() => {
                report.invalid_ke = Some(wanted);
                match DhGroup::from_id(wanted)
                    .filter(|g| IkeProposal::all_groups(&proposals).contains(g))
                {
                    Some(g) => group = g,
                    None => {
                        report.outcome = Answer::InvalidKe(wanted);
                        return Ok(report);
                    }
                }
            }
            other => {
                report.outcome = other;
                return Ok(report);
            }
        }
    }
    Ok(report)
}

fn exchange(
    socket: &UdpSocket,
    request: &Request,
    proposals: &[IkeProposal],
) -> anyhow::Result<Answer> {
    let mut wait = FIRST_WAIT;
    let mut buf = vec![0u8; 65536];
    for _ in 0..TRIES {
        socket
            .send(&request.bytes)
            .with_context(|| format!("sending to {}", request.remote))?;
        socket.set_read_timeout(Some(wait))?;
        loop {
            match socket.recv(&mut buf) {
                Ok(n) => match read_answer(request, proposals, &buf[..n]) {
                    Ok(Some(answer)) => return Ok(answer),
                    Ok(None) => continue,
                    Err(error) => {
                        tracing::debug!("ignoring a datagram: {error:#}");
                        continue;
                    }
                },
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    bail!(
                        "{}: port unreachable (nothing listens for IKE there)",
                        request.remote
                    )
                }
                Err(e) => return Err(e).context("receiving"),
            }
        }
        wait *= 2;
    }
    bail!(
        "no answer from {} after {TRIES} tries over {} s (no IKE responder there, or UDP {} is filtered)",
        request.remote,
        (FIRST_WAIT.as_secs() << TRIES) - 1,
        request.remote.port()
    )
}

/// Runs `hometun ike probe ADDR[:PORT]` and prints the report.
pub fn run(addr: &str) -> anyhow::Result<()> {
    let target = parse_target(addr)?;
    let report = probe(target)?;
    print!("{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u8);
    impl Random for Counter {
        fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                self.0 = self.0.wrapping_add(1);
                *b = self.0;
            }
        }
    }

    fn proposals() -> Vec<IkeProposal> {
        vec![
            IkeProposal::parse("aes128gcm16-prfsha256-x25519").unwrap(),
            IkeProposal::parse("aes128gcm16-prfsha256-ecp256").unwrap(),
        ]
    }

    fn request() -> Request {
        let proposals = proposals();
        let offer = Offer {
            proposals: &proposals,
            group: DhGroup::Curve25519,
            spi_i: 0x1122334455667788,
            nonce: &[7; 32],
            cookie: None,
        };
        build_request(
            offer,
            "198.51.100.2:40000".parse().unwrap(),
            "192.0.2.1:500".parse().unwrap(),
            &mut Counter(0),
        )
        .unwrap()
    }

    /// A response as a responder would build it, with NAT-D hashes for the given addresses.
    fn response(
        payloads_before: Vec<Payload>,
        seen_us: SocketAddrV4,
        itself: SocketAddrV4,
    ) -> Vec<u8> {
        let spi_i = 0x1122334455667788u64;
        let spi_r = 0x99aabbccddeeff00u64;
        let mut payloads = payloads_before;
        payloads.push(Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_SOURCE_IP,
            natd_hash(spi_i, spi_r, IpAddr::V4(*itself.ip()), itself.port()).to_vec(),
        )));
        payloads.push(Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            natd_hash(spi_i, spi_r, IpAddr::V4(*seen_us.ip()), seen_us.port()).to_vec(),
        )));
        let header = Header::new(
            ExchangeType::IKE_SA_INIT,
            spi_i,
            spi_r,
            Flags::new(false, true),
            0,
        );
        Message::new(header, payloads).to_bytes().unwrap()
    }

    fn accepted_payloads() -> Vec<Payload> {
        let chosen = IkeProposal::parse("aes128gcm16-prfsha256-x25519").unwrap();
        vec![
            Payload::Sa(IkeProposal::sa_payload(&[chosen], &[])),
            Payload::Ke(wire::KeyExchange::new(
                DhGroup::Curve25519.to_wire(),
                vec![9; 32],
            )),
            Payload::Nonce(wire::Nonce::new(vec![1; 32])),
        ]
    }

    #[test]
    fn request_parses_and_offers_everything() {
        let request = request();
        let message = Message::parse(&request.bytes).unwrap();
        assert_eq!(message.header.exchange_type, ExchangeType::IKE_SA_INIT);
        assert!(message.header.flags.initiator() && !message.header.flags.response());
        let sa = message
            .payloads
            .iter()
            .find_map(|p| match p {
                Payload::Sa(sa) => Some(sa),
                _ => None,
            })
            .unwrap();
        assert_eq!(sa.proposals.len(), 2);
        assert!(
            message
                .notify(NotifyType::NAT_DETECTION_SOURCE_IP)
                .is_some()
        );
        assert!(
            message
                .notify(NotifyType::SIGNATURE_HASH_ALGORITHMS)
                .is_some()
        );
        let ke = message
            .payloads
            .iter()
            .find_map(|p| match p {
                Payload::Ke(k) => Some(k),
                _ => None,
            })
            .unwrap();
        assert_eq!(ke.group, DhGroup::Curve25519.to_wire());
        assert_eq!(ke.data.len(), 32);
    }

    #[test]
    fn accepted_without_nat() {
        let request = request();
        let bytes = response(accepted_payloads(), request.local, request.remote);
        let Some(Answer::Accepted(a)) = read_answer(&request, &proposals(), &bytes).unwrap() else {
            panic!("not accepted");
        };
        assert_eq!(a.proposal, "aes128gcm16-prfsha256-x25519");
        assert_eq!(a.ke_group, "CURVE25519");
        assert_eq!((a.nat_local, a.nat_remote), (Some(false), Some(false)));
        assert_eq!(nat_text(a.nat_local, a.nat_remote), "none between us");
    }

    #[test]
    fn nat_in_front_of_us_is_seen() {
        let request = request();
        let mapped: SocketAddrV4 = "203.0.113.9:61000".parse().unwrap();
        let bytes = response(accepted_payloads(), mapped, request.remote);
        let Some(Answer::Accepted(a)) = read_answer(&request, &proposals(), &bytes).unwrap() else {
            panic!("not accepted");
        };
        assert_eq!((a.nat_local, a.nat_remote), (Some(true), Some(false)));
        assert_eq!(nat_text(a.nat_local, a.nat_remote), "we are behind a NAT");
    }

    #[test]
    fn refusals_are_told_apart() {
        let request = request();
        let notify = |t: NotifyType, data: Vec<u8>| {
            let header = Header::new(
                ExchangeType::IKE_SA_INIT,
                request.spi_i,
                0,
                Flags::new(false, true),
                0,
            );
            Message::new(header, vec![Payload::Notify(Notify::new(t, data))])
                .to_bytes()
                .unwrap()
        };
        let read = |bytes: Vec<u8>| {
            read_answer(&request, &proposals(), &bytes)
                .unwrap()
                .unwrap()
        };
        assert_eq!(
            read(notify(NotifyType::INVALID_KE_PAYLOAD, vec![0, 19])),
            Answer::InvalidKe(19)
        );
        assert_eq!(
            read(notify(NotifyType::NO_PROPOSAL_CHOSEN, vec![])),
            Answer::NoProposalChosen
        );
        assert_eq!(
            read(notify(NotifyType::COOKIE, vec![5; 20])),
            Answer::Cookie(vec![5; 20])
        );
        // Not an answer to our SPI: ignored.
        let header = Header::new(ExchangeType::IKE_SA_INIT, 42, 0, Flags::new(false, true), 0);
        let other = Message::new(header, vec![]).to_bytes().unwrap();
        assert_eq!(read_answer(&request, &proposals(), &other).unwrap(), None);
    }

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("192.0.2.1").unwrap(),
            "192.0.2.1:500".parse().unwrap()
        );
        assert_eq!(
            parse_target("192.0.2.1:4500").unwrap(),
            "192.0.2.1:4500".parse().unwrap()
        );
        assert!(parse_target("example.org").is_err());
    }
}
