//! TCP MSS clamping (`tunnel.clamp_mss`): the MSS option of a TCP SYN crossing the tunnel is
//! lowered to what fits the tunnel's MTU, so that a connection between hosts with 1500-byte
//! links never sends a segment the tunnel must refuse, even where a filter drops the ICMPv6
//! Packet Too Big that path MTU discovery relies on (RFC 4459 3.2 describes the practice).

/// Bytes of an IPv6 header and a TCP header without options: what separates the MTU from the
/// MSS.
pub const HEADERS: usize = 40 + 20;
const TCP: u8 = 6;
const SYN: u8 = 0x02;
const OPTION_END: u8 = 0;
const OPTION_NOP: u8 = 1;
const OPTION_MSS: u8 = 2;

/// The largest MSS that fits an IPv6 path of `mtu` bytes.
pub fn mss_for(mtu: usize) -> u16 {
    u16::try_from(mtu.saturating_sub(HEADERS)).unwrap_or(u16::MAX)
}

/// Lowers the MSS option of `packet` to `max` when it is an IPv6 TCP SYN (TCP directly after
/// the IPv6 header) with a larger one, and updates the TCP checksum (RFC 1624). Returns whether
/// the packet changed. Anything else, malformed packets included, is left as it is.
pub fn clamp(packet: &mut [u8], max: u16) -> bool {
    // The cheap test first: every data packet takes it.
    if packet.len() < HEADERS || packet[6] != TCP || packet[40 + 13] & SYN == 0 {
        return false;
    }
    if packet[0] >> 4 != 6 {
        return false;
    }
    let tcp = &mut packet[40..];
    let header_len = usize::from(tcp[12] >> 4) * 4;
    if header_len < 20 || header_len > tcp.len() {
        return false;
    }
    let mut at = 20;
    while at < header_len {
        match tcp[at] {
            OPTION_END => return false,
            OPTION_NOP => at += 1,
            kind => {
                let Some(&len) = tcp.get(at + 1) else {
                    return false;
                };
                let len = usize::from(len);
                if len < 2 || at + len > header_len {
                    return false;
                }
                if kind == OPTION_MSS && len == 4 {
                    let mss = u16::from_be_bytes([tcp[at + 2], tcp[at + 3]]);
                    if mss <= max {
                        return false;
                    }
                    replace(tcp, at + 2, max.to_be_bytes());
                    return true;
                }
                at += len;
            }
        }
    }
    false
}

/// Writes `new` at `offset` of the TCP segment and updates its checksum (bytes 16..18)
/// incrementally over the 16-bit words the change touches: HC' = ~(~HC + ~m + m').
fn replace(tcp: &mut [u8], offset: usize, new: [u8; 2]) {
    let start = offset & !1;
    let end = (offset + 2 + 1) & !1;
    let words = |bytes: &[u8]| -> u32 {
        bytes
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
            .sum()
    };
    let old_sum = words(&tcp[start..end.min(tcp.len())]);
    tcp[offset..offset + 2].copy_from_slice(&new);
    let new_sum = words(&tcp[start..end.min(tcp.len())]);
    let checksum = u16::from_be_bytes([tcp[16], tcp[17]]);
    // ~HC + ~m + m', with ~m summed word by word as (0xffff - word).
    let span = (end.min(tcp.len()) - start).div_ceil(2) as u32;
    let mut sum = u32::from(!checksum) + (0xffff * span - old_sum) + new_sum;
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    tcp[16..18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    /// The TCP checksum computed from scratch over the pseudo-header and the segment.
    fn tcp_checksum(packet: &[u8]) -> u16 {
        let source: [u8; 16] = packet[8..24].try_into().unwrap();
        let destination: [u8; 16] = packet[24..40].try_into().unwrap();
        let segment = &packet[40..];
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&source);
        bytes.extend_from_slice(&destination);
        bytes.extend_from_slice(&(segment.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 6]);
        bytes.extend_from_slice(segment);
        let mut sum: u32 = bytes
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// A SYN from 2001:db8:100:100::5 with `options`, checksum filled in.
    fn syn(options: &[u8], flags: u8) -> Vec<u8> {
        let mut tcp = vec![0xc3, 0x50, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0];
        tcp.push((((20 + options.len()) / 4) << 4) as u8);
        tcp.extend_from_slice(&[flags, 0xff, 0xff, 0, 0, 0, 0]);
        tcp.extend_from_slice(options);
        let mut packet = vec![0x60, 0, 0, 0];
        packet.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        packet.extend_from_slice(&[TCP, 64]);
        packet.extend_from_slice(&"2001:db8:100:100::5".parse::<Ipv6Addr>().unwrap().octets());
        packet.extend_from_slice(&"2001:db8:ff::1".parse::<Ipv6Addr>().unwrap().octets());
        packet.extend_from_slice(&tcp);
        let sum = tcp_checksum(&packet);
        packet[40 + 16..40 + 18].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(tcp_checksum(&packet), 0);
        packet
    }

    fn mss_of(packet: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([packet[40 + at], packet[40 + at + 1]])
    }

    #[test]
    fn a_syn_with_a_1440_mss_gets_the_tunnel_s_1340_and_a_correct_checksum() {
        assert_eq!(mss_for(1400), 1340);
        let mut packet = syn(&[2, 4, 0x05, 0xa0, 1, 3, 3, 7], SYN);
        assert!(clamp(&mut packet, 1340));
        assert_eq!(mss_of(&packet, 22), 1340);
        assert_eq!(tcp_checksum(&packet), 0);
    }

    #[test]
    fn an_mss_at_an_odd_offset_is_clamped_with_a_correct_checksum() {
        // NOP, then MSS at byte 21: its value straddles two checksum words.
        let mut packet = syn(&[1, 2, 4, 0x05, 0xa0, 1, 1, 0], SYN | 0x10);
        assert!(clamp(&mut packet, 1340));
        assert_eq!(mss_of(&packet, 23), 1340);
        assert_eq!(tcp_checksum(&packet), 0);
    }

    #[test]
    fn small_mss_non_syn_and_malformed_packets_stay_as_they_are() {
        let small = syn(&[2, 4, 0x04, 0x00], SYN);
        let mut copy = small.clone();
        assert!(!clamp(&mut copy, 1340));
        assert_eq!(copy, small);
        let ack = syn(&[2, 4, 0x05, 0xa0], 0x10);
        let mut copy = ack.clone();
        assert!(!clamp(&mut copy, 1340));
        assert_eq!(copy, ack);
        // An option running past the header, a zero-length option, a header longer than the
        // packet, an option list ended before the MSS: unchanged, no panic.
        for options in [
            &[8u8, 10, 0, 0][..],
            &[3, 0, 2, 4, 5, 0xa0, 0, 0],
            &[0, 0, 0, 0, 2, 4, 5, 0xa0],
        ] {
            let original = syn(options, SYN);
            let mut copy = original.clone();
            assert!(!clamp(&mut copy, 1340), "{options:?}");
            assert_eq!(copy, original);
        }
        let mut truncated = syn(&[2, 4, 0x05, 0xa0], SYN);
        truncated[40 + 12] = 0xf0;
        assert!(!clamp(&mut truncated, 1340));
        let mut short = vec![0x60; 59];
        assert!(!clamp(&mut short, 1340));
    }
}
