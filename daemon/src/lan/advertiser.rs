//! Router Advertisements on one LAN (RFC 4861 6.2): what they carry, when unsolicited ones go
//! out, and the answers to Router Solicitations.

use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv6Net;
use tokio::time::Instant;

use crate::ndp::{self, PrefixInfo, RouterAdvertisement, RouterSolicitation};
use crate::ndp_socket::NdpSocket;

/// MaxRtrAdvInterval (RFC 4861 6.2.1 default).
pub const MAX_INTERVAL: Duration = Duration::from_secs(600);
/// MinRtrAdvInterval: a third of the maximum (RFC 4861 6.2.1 default).
pub const MIN_INTERVAL: Duration = Duration::from_secs(200);
/// MAX_INITIAL_RTR_ADVERT_INTERVAL (RFC 4861 10).
pub const INITIAL_INTERVAL: Duration = Duration::from_secs(16);
/// MAX_INITIAL_RTR_ADVERTISEMENTS (RFC 4861 10).
pub const INITIAL_COUNT: u8 = 3;
/// MIN_DELAY_BETWEEN_RAS (RFC 4861 10): between two multicast advertisements.
pub const MIN_DELAY_BETWEEN_RAS: Duration = Duration::from_secs(3);
/// Router lifetime: three times MaxRtrAdvInterval (RFC 4861 6.2.1 default).
pub const ROUTER_LIFETIME: u16 = 1800;
/// Preferred lifetime of the prefix: ND_PREFERRED_LIMIT of RFC 9096, so that hosts stop
/// choosing the prefix within 45 minutes of a home that vanished without a final RA.
pub const PREFERRED_LIFETIME: u32 = 2700;
/// Valid lifetime of the prefix: ND_VALID_LIMIT of RFC 9096.
pub const VALID_LIFETIME: u32 = 5400;
/// Lifetime of RDNSS and DNSSL: at least three times MaxRtrAdvInterval (RFC 8106 5.1).
pub const DNS_LIFETIME: u32 = 1800;
/// Unicast answers to Router Solicitations per second, at most: a LAN host that floods them
/// gets no more than this.
pub const ANSWERS_PER_SECOND: u32 = 10;
/// How many final advertisements go out when the prefix is withdrawn
/// (MAX_FINAL_RTR_ADVERTISEMENTS, RFC 4861 10), and the gap between them.
pub const FINAL_COUNT: usize = 3;
const FINAL_GAP: Duration = Duration::from_millis(20);
/// How soon an advertisement that could not be sent is tried again.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// All-nodes: where unsolicited advertisements go.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// All-routers: where Router Solicitations come to.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// What one LAN's advertisements say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    /// The LAN's /64.
    pub subnet: Ipv6Net,
    /// The tunnel's MTU: LAN hosts then never send what the tunnel cannot carry.
    pub mtu: u32,
    /// RDNSS servers.
    pub dns: Vec<Ipv6Addr>,
    /// DNSSL domains.
    pub search: Vec<String>,
    /// The interface's Ethernet address, if it has one.
    pub source_lla: Option<[u8; 6]>,
}

impl Advertised {
    /// The advertisement while the tunnel is up, or (`withdraw`) the final one: router
    /// lifetime 0, the prefix deprecated (preferred and valid lifetime 0; RFC 4862 5.5.3 keeps
    /// the addresses valid for what remains, at most two hours), DNS options with lifetime 0.
    pub fn advertisement(&self, withdraw: bool) -> RouterAdvertisement {
        let (router, preferred, valid, dns) = if withdraw {
            (0, 0, 0, 0)
        } else {
            (
                ROUTER_LIFETIME,
                PREFERRED_LIFETIME,
                VALID_LIFETIME,
                DNS_LIFETIME,
            )
        };
        RouterAdvertisement {
            hop_limit: 64,
            router_lifetime: router,
            source_lla: self.source_lla,
            mtu: Some(self.mtu),
            prefixes: vec![PrefixInfo {
                prefix: self.subnet.network(),
                prefix_len: self.subnet.prefix_len(),
                on_link: true,
                autonomous: true,
                valid_seconds: valid,
                preferred_seconds: preferred,
            }],
            dns_servers: self.dns.clone(),
            search_domains: self.search.clone(),
            dns_lifetime: dns,
            ..RouterAdvertisement::default()
        }
    }
}

/// When the next unsolicited advertisement is due, and which solicitations get an answer.
#[derive(Debug)]
pub struct Schedule {
    next: Instant,
    initial_left: u8,
    last_multicast: Option<Instant>,
    answer_window: (Instant, u32),
}

impl Schedule {
    /// A schedule whose first advertisement is due at `now`.
    pub fn new(now: Instant) -> Self {
        Schedule {
            next: now,
            initial_left: INITIAL_COUNT,
            last_multicast: None,
            answer_window: (now, 0),
        }
    }

    /// When the next multicast advertisement is due.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// A multicast advertisement went out at `now`; `random` (0..=u32::MAX) picks the next
    /// interval between MinRtrAdvInterval and MaxRtrAdvInterval, at most 16 s for the first
    /// three (RFC 4861 6.2.4).
    pub fn sent_multicast(&mut self, now: Instant, random: u32) {
        let span = MAX_INTERVAL - MIN_INTERVAL;
        let fraction = f64::from(random) / f64::from(u32::MAX);
        let mut interval = MIN_INTERVAL + span.mul_f64(fraction);
        if self.initial_left > 0 {
            self.initial_left -= 1;
            interval = interval.min(INITIAL_INTERVAL);
        }
        self.last_multicast = Some(now);
        self.next = now + interval;
    }

    /// A multicast advertisement could not be sent at `now`: the next try comes after
    /// [`RETRY_INTERVAL`].
    pub fn retry(&mut self, now: Instant) {
        self.next = now + RETRY_INTERVAL;
    }

    /// A valid solicitation arrived at `now` from `source`. Returns whether to answer it at
    /// once by unicast; a solicitation from the unspecified address instead brings the next
    /// multicast advertisement forward, no sooner than MIN_DELAY_BETWEEN_RAS after the last.
    pub fn solicited(&mut self, now: Instant, source: Ipv6Addr) -> bool {
        if source.is_unspecified() {
            let earliest = self
                .last_multicast
                .map_or(now, |last| (last + MIN_DELAY_BETWEEN_RAS).max(now));
            self.next = self.next.min(earliest);
            return false;
        }
        let (start, count) = &mut self.answer_window;
        if now.duration_since(*start) >= Duration::from_secs(1) {
            *start = now;
            *count = 0;
        }
        if *count >= ANSWERS_PER_SECOND {
            return false;
        }
        *count += 1;
        true
    }
}

/// Sends advertisements on `socket` until aborted: unsolicited ones on the schedule, unicast
/// answers to solicitations from the link.
pub async fn run(socket: Arc<NdpSocket>, advertised: Advertised) {
    let message = advertised.advertisement(false).to_bytes();
    let mut schedule = Schedule::new(Instant::now());
    let mut warned = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(schedule.next()) => {
                match socket.send(&message, ALL_NODES) {
                    Ok(()) => {
                        warned = false;
                        schedule.sent_multicast(Instant::now(), random_u32());
                    }
                    Err(error) => {
                        // Most often the link is not up yet, or has no link-local address yet
                        // to send from: try again soon, not only after the interval.
                        if !warned {
                            tracing::warn!("lan {}: sending a Router Advertisement: {error}; trying again every second", socket.interface());
                            warned = true;
                        }
                        schedule.retry(Instant::now());
                    }
                }
            }
            received = socket.recv() => match received {
                Ok(received) => {
                    if received.hop_limit != ndp::ND_HOP_LIMIT {
                        tracing::debug!("lan {}: Router Solicitation from {} with hop limit {}: not from the link, ignored", socket.interface(), received.source, received.hop_limit);
                        continue;
                    }
                    if let Err(error) = RouterSolicitation::parse(&received.message, received.source) {
                        tracing::debug!("lan {}: Router Solicitation from {} ignored: {error}", socket.interface(), received.source);
                        continue;
                    }
                    if schedule.solicited(Instant::now(), received.source)
                        && let Err(error) = socket.send(&message, received.source)
                    {
                        tracing::debug!("lan {}: answering {}: {error}", socket.interface(), received.source);
                    }
                }
                Err(error) => {
                    tracing::debug!("lan {}: receiving: {error}", socket.interface());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Sends the final advertisements that withdraw the prefix and the default router.
pub async fn withdraw(socket: &NdpSocket, advertised: &Advertised) {
    let message = advertised.advertisement(true).to_bytes();
    for i in 0..FINAL_COUNT {
        if i > 0 {
            tokio::time::sleep(FINAL_GAP).await;
        }
        if let Err(error) = socket.send(&message, ALL_NODES) {
            tracing::warn!(
                "lan {}: sending the final Router Advertisement: {error}",
                socket.interface()
            );
            return;
        }
    }
}

fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    // Without randomness the interval is simply the longest.
    if getrandom::fill(&mut bytes).is_err() {
        return u32::MAX;
    }
    u32::from_ne_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advertised() -> Advertised {
        Advertised {
            subnet: "2001:db8:100:100::/64".parse().unwrap(),
            mtu: 1400,
            dns: vec!["2001:db8:53::53".parse().unwrap()],
            search: vec!["home.example".into()],
            source_lla: Some([2, 0, 0, 0, 0, 1]),
        }
    }

    #[test]
    fn the_advertisement_offers_the_prefix_for_slaac_the_tunnel_mtu_and_dns() {
        let ra = advertised().advertisement(false);
        assert_eq!(ra.router_lifetime, ROUTER_LIFETIME);
        assert_eq!(ra.mtu, Some(1400));
        let prefix = ra.prefixes[0];
        assert!(prefix.on_link && prefix.autonomous);
        assert_eq!(prefix.prefix_len, 64);
        assert_eq!(
            (prefix.preferred_seconds, prefix.valid_seconds),
            (2700, 5400)
        );
        assert_eq!(ra.dns_lifetime, DNS_LIFETIME);
        assert_eq!(ra.dns_servers.len(), 1);
        assert_eq!(RouterAdvertisement::parse(&ra.to_bytes()), Ok(ra));
    }

    #[test]
    fn the_final_advertisement_deprecates_the_prefix_and_withdraws_the_router() {
        let ra = advertised().advertisement(true);
        assert_eq!(ra.router_lifetime, 0);
        assert_eq!(ra.prefixes[0].preferred_seconds, 0);
        assert_eq!(ra.prefixes[0].valid_seconds, 0);
        assert_eq!(ra.dns_lifetime, 0);
    }

    #[test]
    fn the_first_three_advertisements_come_within_16_seconds_then_200_to_600() {
        let start = Instant::now();
        let mut schedule = Schedule::new(start);
        assert_eq!(schedule.next(), start);
        let mut now = start;
        for _ in 0..INITIAL_COUNT {
            schedule.sent_multicast(now, u32::MAX);
            assert_eq!(schedule.next() - now, INITIAL_INTERVAL);
            now = schedule.next();
        }
        schedule.sent_multicast(now, u32::MAX);
        assert_eq!(schedule.next() - now, MAX_INTERVAL);
        now = schedule.next();
        schedule.sent_multicast(now, 0);
        assert_eq!(schedule.next() - now, MIN_INTERVAL);
    }

    #[test]
    fn an_advertisement_that_could_not_go_out_is_tried_again_a_second_later() {
        let start = Instant::now();
        let mut schedule = Schedule::new(start);
        schedule.retry(start);
        assert_eq!(schedule.next(), start + RETRY_INTERVAL);
        // The failed one did not count among the first three.
        for _ in 0..INITIAL_COUNT {
            schedule.sent_multicast(start, u32::MAX);
            assert_eq!(schedule.next(), start + INITIAL_INTERVAL);
        }
    }

    #[test]
    fn solicitations_are_answered_at_once_but_a_flood_only_ten_times_a_second() {
        let start = Instant::now();
        let mut schedule = Schedule::new(start);
        schedule.sent_multicast(start, u32::MAX);
        let host: Ipv6Addr = "fe80::9".parse().unwrap();
        let answered = (0..100).filter(|_| schedule.solicited(start, host)).count();
        assert_eq!(answered, ANSWERS_PER_SECOND as usize);
        assert!(schedule.solicited(start + Duration::from_secs(1), host));
    }

    #[test]
    fn a_solicitation_from_the_unspecified_address_brings_a_multicast_forward_no_sooner_than_3_s() {
        let start = Instant::now();
        let mut schedule = Schedule::new(start);
        schedule.sent_multicast(start, u32::MAX);
        assert!(!schedule.solicited(start + Duration::from_secs(1), Ipv6Addr::UNSPECIFIED));
        assert_eq!(schedule.next(), start + MIN_DELAY_BETWEEN_RAS);
        let later = start + Duration::from_secs(10);
        schedule.sent_multicast(later, u32::MAX);
        assert!(!schedule.solicited(later + Duration::from_secs(5), Ipv6Addr::UNSPECIFIED));
        assert_eq!(schedule.next(), later + Duration::from_secs(5));
    }
}
