//! The server's NDP proxy (`upstream.mode = "ndp-proxy"`): on the interface towards the
//! provider it answers Neighbor Solicitations for addresses inside the prefixes of homes that
//! are up, so that a provider who puts one /64 on the VPS's link delivers the home's packets to
//! the VPS, which routes them into the tunnel (RFC 4389 describes such proxies).
//!
//! Solicitations go to solicited-node multicast groups the VPS never joins, so a packet socket
//! in all-multicast mode reads them, with a filter that passes only ICMPv6 type 135. Answers
//! go out on a raw ICMPv6 socket. What is never answered: duplicate address detection (from
//! `::`), the VPS's own addresses, link-local targets, anything outside an up home's prefix,
//! more than [`ANSWERS_PER_SECOND`] a second.

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hometun_control::PeerId;
use ipnet::Ipv6Net;
use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::ndp::{self, NeighborAdvertisement, SolicitationPacket};
use crate::ndp_socket::{NdpSocket, register};
use crate::netconf;

/// Neighbor Advertisements per second, at most (a flood of solicitations gets no more).
pub const ANSWERS_PER_SECOND: u32 = 100;
/// How long the list of the VPS's own addresses is trusted before it is read again.
const OWN_ADDRESSES_FOR: Duration = Duration::from_secs(10);

/// The prefixes of the homes that are up, by peer.
pub type UpPrefixes = Arc<Mutex<BTreeMap<PeerId, Vec<Ipv6Net>>>>;

/// Which solicitations get an answer.
#[derive(Debug)]
pub struct Rules {
    /// Prefixes of homes that are up.
    pub up: UpPrefixes,
    own: Vec<Ipv6Addr>,
    own_read: Option<Instant>,
    window: (Option<Instant>, u32),
}

impl Rules {
    /// Rules over `up`.
    pub fn new(up: UpPrefixes) -> Self {
        Rules {
            up,
            own: Vec::new(),
            own_read: None,
            window: (None, 0),
        }
    }

    /// Whether to answer `packet` at `now`, given the VPS's own addresses `own`.
    pub fn answer(&mut self, now: Instant, packet: &SolicitationPacket, own: &[Ipv6Addr]) -> bool {
        let target = packet.solicitation.target;
        if packet.source.is_unspecified()
            || target.is_unicast_link_local()
            || target.is_loopback()
            || own.contains(&target)
        {
            return false;
        }
        let inside = match self.up.lock() {
            Ok(up) => up.values().flatten().any(|prefix| prefix.contains(&target)),
            Err(_) => false,
        };
        if !inside {
            return false;
        }
        let (start, count) = &mut self.window;
        if start.is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1)) {
            *start = Some(now);
            *count = 0;
        }
        if *count >= ANSWERS_PER_SECOND {
            return false;
        }
        *count += 1;
        true
    }

    fn own_addresses(&mut self, now: Instant) -> Vec<Ipv6Addr> {
        if self
            .own_read
            .is_none_or(|read| now.duration_since(read) >= OWN_ADDRESSES_FOR)
        {
            self.own = netconf::global_addresses()
                .map(|list| list.into_iter().map(|(_, a)| a).collect())
                .unwrap_or_default();
            self.own_read = Some(now);
        }
        self.own.clone()
    }
}

/// The running proxy.
pub struct NdpProxy {
    task: JoinHandle<()>,
}

impl NdpProxy {
    /// Starts answering on `interface` for the prefixes in `up`.
    pub fn start(interface: &str, up: UpPrefixes) -> anyhow::Result<Self> {
        use anyhow::Context;
        let key = format!("upstream.interface {interface}");
        let listener = PacketSocket::open(interface)
            .with_context(|| format!("{key}: opening the packet socket for solicitations"))?;
        let sender = NdpSocket::open(interface, &[], None)
            .with_context(|| format!("{key}: opening the ICMPv6 socket"))?;
        let mac = netconf::hardware_address(interface)
            .with_context(|| format!("{key}: reading its hardware address"))?
            .with_context(|| format!("{key}: has no Ethernet address to answer with"))?;
        let task = tokio::spawn(serve(listener, sender, mac, Rules::new(up)));
        Ok(NdpProxy { task })
    }

    /// Stops answering.
    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn serve(listener: PacketSocket, sender: NdpSocket, mac: [u8; 6], mut rules: Rules) {
    loop {
        let packet = match listener.recv().await {
            Ok(Some(packet)) => packet,
            Ok(None) => continue,
            Err(error) => {
                tracing::debug!("ndp-proxy {}: receiving: {error}", sender.interface());
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let solicitation = match ndp::parse_solicitation_packet(&packet) {
            Ok(solicitation) => solicitation,
            Err(error) => {
                tracing::debug!("ndp-proxy {}: ignored: {error}", sender.interface());
                continue;
            }
        };
        let now = Instant::now();
        let own = rules.own_addresses(now);
        if !rules.answer(now, &solicitation, &own) {
            continue;
        }
        let answer = NeighborAdvertisement {
            router: false,
            solicited: true,
            // A proxy never overrides (RFC 4861 7.2.8): the owner's own answer wins.
            override_flag: false,
            target: solicitation.solicitation.target,
            target_lla: Some(mac),
        };
        match sender.send(&answer.to_bytes(), solicitation.source) {
            Ok(()) => tracing::debug!(
                "ndp-proxy {}: answered {} for {}",
                sender.interface(),
                solicitation.source,
                answer.target
            ),
            Err(error) => tracing::debug!(
                "ndp-proxy {}: answering {}: {error}",
                sender.interface(),
                solicitation.source
            ),
        }
    }
}

/// An `AF_PACKET` socket of type `SOCK_DGRAM` (IPv6 packets without the link header) on one
/// interface, in all-multicast mode, filtered to ICMPv6 type 135.
struct PacketSocket {
    fd: AsyncFd<OwnedFd>,
}

/// The classic BPF program: next header 58 at byte 6 and ICMPv6 type 135 at byte 40.
fn solicitation_filter() -> [libc::sock_filter; 6] {
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    const LD_B_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    [
        op(LD_B_ABS, 0, 0, 6),
        op(JEQ_K, 0, 3, 58),
        op(LD_B_ABS, 0, 0, 40),
        op(JEQ_K, 0, 1, u32::from(ndp::NEIGHBOR_SOLICITATION)),
        op(RET_K, 0, 0, 0xffff),
        op(RET_K, 0, 0, 0),
    ]
}

impl PacketSocket {
    fn open(interface: &str) -> io::Result<Self> {
        let ifindex = netconf::interface_index(interface)?;
        let protocol = (libc::ETH_P_IPV6 as u16).to_be();
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(protocol),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh socket we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        let mut filter = solicitation_filter();
        let program = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_mut_ptr(),
        };
        // SAFETY: program points to `filter`, alive for the call; the kernel copies it.
        let rc = unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&program as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: sockaddr_ll is plain data.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_protocol = protocol;
        address.sll_ifindex = ifindex as i32;
        // SAFETY: the address is valid for its length.
        let rc = unsafe {
            libc::bind(
                raw,
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: packet_mreq is plain data.
        let mut membership: libc::packet_mreq = unsafe { std::mem::zeroed() };
        membership.mr_ifindex = ifindex as i32;
        membership.mr_type = libc::PACKET_MR_ALLMULTI as u16;
        // SAFETY: membership is valid for its length; the membership ends with the socket.
        let rc = unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&membership as *const libc::packet_mreq).cast(),
                std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket { fd: register(fd)? })
    }

    /// The next packet that arrived on the interface (`None` for one we sent ourselves).
    async fn recv(&self) -> io::Result<Option<Vec<u8>>> {
        loop {
            let mut guard = self.fd.readable().await?;
            let result = guard.try_io(|fd| {
                let mut buffer = vec![0u8; 1500];
                // SAFETY: sockaddr_ll is plain data.
                let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                // SAFETY: the buffer and address are valid for their lengths.
                let got = unsafe {
                    libc::recvfrom(
                        fd.get_ref().as_raw_fd(),
                        buffer.as_mut_ptr().cast(),
                        buffer.len(),
                        0,
                        (&mut from as *mut libc::sockaddr_ll).cast(),
                        &mut len,
                    )
                };
                if got < 0 {
                    return Err(io::Error::last_os_error());
                }
                buffer.truncate(got as usize);
                Ok((from.sll_pkttype != libc::PACKET_OUTGOING).then_some(buffer))
            });
            match result {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ndp::NeighborSolicitation;

    fn solicitation(source: &str, target: &str) -> SolicitationPacket {
        SolicitationPacket {
            source: source.parse().unwrap(),
            destination: "ff02::1:ff00:1".parse().unwrap(),
            solicitation: NeighborSolicitation {
                target: target.parse().unwrap(),
                source_lla: None,
            },
        }
    }

    fn rules_with_home_up() -> Rules {
        let up: UpPrefixes = Arc::default();
        up.lock()
            .unwrap()
            .insert(PeerId(1), vec!["2001:db8:200::/64".parse().unwrap()]);
        Rules::new(up)
    }

    #[test]
    fn only_addresses_of_homes_that_are_up_get_an_answer() {
        let mut rules = rules_with_home_up();
        let now = Instant::now();
        let own: Vec<Ipv6Addr> = vec!["2001:db8:200::2".parse().unwrap()];
        assert!(rules.answer(now, &solicitation("fe80::1", "2001:db8:200::1234"), &own));
        // Outside every up home's prefix, the VPS's own address, duplicate address detection,
        // a link-local target: no answer.
        assert!(!rules.answer(now, &solicitation("fe80::1", "2001:db8:201::1234"), &own));
        assert!(!rules.answer(now, &solicitation("fe80::1", "2001:db8:200::2"), &own));
        assert!(!rules.answer(now, &solicitation("::", "2001:db8:200::1234"), &own));
        assert!(!rules.answer(now, &solicitation("fe80::1", "fe80::1234"), &own));
        // The home goes down: no more answers.
        rules.up.lock().unwrap().remove(&PeerId(1));
        assert!(!rules.answer(now, &solicitation("fe80::1", "2001:db8:200::1234"), &own));
    }

    #[test]
    fn a_flood_of_solicitations_gets_a_hundred_answers_a_second() {
        let mut rules = rules_with_home_up();
        let now = Instant::now();
        let ns = solicitation("fe80::1", "2001:db8:200::1234");
        let answered = (0..1000).filter(|_| rules.answer(now, &ns, &[])).count();
        assert_eq!(answered, ANSWERS_PER_SECOND as usize);
        assert!(rules.answer(now + Duration::from_secs(1), &ns, &[]));
    }
}
