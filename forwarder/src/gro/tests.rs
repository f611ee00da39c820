use super::*;
use proptest::prelude::*;

const HOME: &str = "2001:db8:1::2";
const VPS: &str = "2001:db8:ffff::1";

/// A TCP segment over IPv6 with a valid checksum.
pub(crate) fn segment(port: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    segment_with(port, seq, 1, flags, payload)
}

fn segment_with(port: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let src = HOME.parse::<std::net::Ipv6Addr>().unwrap().octets();
    let dst = VPS.parse::<std::net::Ipv6Addr>().unwrap().octets();
    // 12 bytes of options (NOP, NOP, timestamp), as Linux sends.
    let tcp_len = 32 + payload.len();
    let mut packet = vec![0u8; IPV6_HEADER + tcp_len];
    packet[0] = 0x60;
    packet[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
    packet[6] = NEXT_HEADER_TCP;
    packet[7] = 64;
    packet[8..24].copy_from_slice(&src);
    packet[24..40].copy_from_slice(&dst);
    let tcp = &mut packet[IPV6_HEADER..];
    tcp[0..2].copy_from_slice(&port.to_be_bytes());
    tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = 8 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&512u16.to_be_bytes());
    tcp[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]);
    tcp[32..].copy_from_slice(payload);
    set_checksum(&mut packet);
    packet
}

fn set_checksum(packet: &mut [u8]) {
    packet[IPV6_HEADER + 16..IPV6_HEADER + 18].fill(0);
    let upper = &packet[IPV6_HEADER..];
    let sum = checksum_no_fold(upper, pseudo_header_sum(packet, upper.len()));
    let value = !fold(sum);
    packet[IPV6_HEADER + 16..IPV6_HEADER + 18].copy_from_slice(&value.to_be_bytes());
}

fn payload(seed: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seed as usize * 31 + i) as u8).collect()
}

/// What the kernel does with a written packet: a merged one is cut back into its segments
/// (each with the first's header, its own sequence number, PSH only on the last, checksum
/// completed); a plain one stays as it is.
fn kernel_view(written: &[u8]) -> Vec<Vec<u8>> {
    let (header, packet) = written.split_at(VNET_HDR_LEN);
    if header[1] != GSO_TCPV6 {
        assert_eq!(
            header, &[0; VNET_HDR_LEN],
            "a plain packet has an empty header"
        );
        return vec![packet.to_vec()];
    }
    assert_eq!(header[0], F_NEEDS_CSUM);
    let header_len = usize::from(u16::from_ne_bytes([header[2], header[3]]));
    let size = usize::from(u16::from_ne_bytes([header[4], header[5]]));
    assert_eq!(u16::from_ne_bytes([header[6], header[7]]), 40);
    assert_eq!(u16::from_ne_bytes([header[8], header[9]]), 16);
    assert_eq!(
        usize::from(u16::from_be_bytes([packet[4], packet[5]])) + 40,
        packet.len(),
        "payload length"
    );
    // The merged packet's checksum, completed as the kernel would, verifies.
    let mut whole = packet.to_vec();
    let sum = checksum_no_fold(&whole[IPV6_HEADER..], 0);
    whole[IPV6_HEADER + 16..IPV6_HEADER + 18].copy_from_slice(&(!fold(sum)).to_be_bytes());
    assert!(checksum_ok(&whole), "merged checksum");

    let first_seq = u32::from_be_bytes(packet[44..48].try_into().unwrap());
    let chunks: Vec<&[u8]> = packet[header_len..].chunks(size).collect();
    let last = chunks.len() - 1;
    let psh = packet[53] & TCP_PSH != 0;
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut segment = packet[..header_len].to_vec();
            segment.extend_from_slice(chunk);
            let len = (segment.len() - IPV6_HEADER) as u16;
            segment[4..6].copy_from_slice(&len.to_be_bytes());
            let seq = first_seq.wrapping_add((i * size) as u32);
            segment[44..48].copy_from_slice(&seq.to_be_bytes());
            segment[53] &= !TCP_PSH;
            if i == last && psh {
                segment[53] |= TCP_PSH;
            }
            set_checksum(&mut segment);
            segment
        })
        .collect()
}

fn run(packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut coalescer = Coalescer::new(64);
    for packet in packets {
        coalescer.push(packet);
    }
    coalescer.packets().map(<[u8]>::to_vec).collect()
}

/// Segments of one flow, in order, from sequence 1.
fn burst(port: u16, sizes: &[usize], psh_last: bool) -> Vec<Vec<u8>> {
    let mut seq = 1u32;
    let last = sizes.len() - 1;
    sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let flags = if psh_last && i == last {
                TCP_ACK | TCP_PSH
            } else {
                TCP_ACK
            };
            let packet = segment(port, seq, flags, &payload(i as u32, len));
            seq = seq.wrapping_add(len as u32);
            packet
        })
        .collect()
}

#[test]
fn a_burst_of_one_flow_becomes_one_packet() {
    let input = burst(40000, &[1328; 40], true);
    let written = run(&input);
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].len(), VNET_HDR_LEN + 40 + 32 + 40 * 1328);
    assert_eq!(kernel_view(&written[0]), input);
}

#[test]
fn a_short_segment_ends_a_packet() {
    let input = burst(40000, &[1328, 1328, 500, 1328, 1328], false);
    let written = run(&input);
    assert_eq!(written.len(), 2);
    assert_eq!(kernel_view(&written[0]), input[..3]);
    assert_eq!(kernel_view(&written[1]), input[3..]);
}

#[test]
fn push_ends_a_packet() {
    let mut input = burst(40000, &[1328; 3], true);
    let more = segment(40000, 1 + 3 * 1328, TCP_ACK, &payload(9, 1328));
    input.push(more);
    let written = run(&input);
    assert_eq!(written.len(), 2);
    assert_eq!(kernel_view(&written[0]), input[..3]);
    assert_eq!(kernel_view(&written[1]), input[3..]);
}

#[test]
fn a_gap_in_the_sequence_starts_a_new_packet() {
    let mut input = burst(40000, &[1328; 3], false);
    input.push(segment(40000, 1 + 5 * 1328, TCP_ACK, &payload(5, 1328)));
    let written = run(&input);
    assert_eq!(written.len(), 2);
    assert_eq!(kernel_view(&written[1]), input[3..]);
}

#[test]
fn a_new_acknowledgment_number_starts_a_new_packet() {
    let input = vec![
        segment_with(40000, 1, 1, TCP_ACK, &payload(0, 1000)),
        segment_with(40000, 1001, 1, TCP_ACK, &payload(1, 1000)),
        segment_with(40000, 2001, 77, TCP_ACK, &payload(2, 1000)),
    ];
    let written = run(&input);
    assert_eq!(written.len(), 2);
    assert_eq!(kernel_view(&written[0]), input[..2]);
    assert_eq!(kernel_view(&written[1]), input[2..]);
}

#[test]
fn interleaved_flows_are_merged_each_in_order() {
    let a = burst(40000, &[1328; 6], false);
    let b = burst(40001, &[1328; 6], false);
    let input: Vec<Vec<u8>> = a
        .iter()
        .zip(&b)
        .flat_map(|(x, y)| [x.clone(), y.clone()])
        .collect();
    let written = run(&input);
    assert_eq!(written.len(), 2);
    assert_eq!(kernel_view(&written[0]), a);
    assert_eq!(kernel_view(&written[1]), b);
}

#[test]
fn a_corrupt_segment_is_not_merged() {
    let mut input = burst(40000, &[1328; 5], false);
    input[2][IPV6_HEADER + 40] ^= 0x55;
    let written = run(&input);
    assert_eq!(written.len(), 3, "two good, the corrupt alone, two good");
    assert_eq!(kernel_view(&written[0]), input[..2]);
    assert_eq!(
        written[1][VNET_HDR_LEN..],
        input[2][..],
        "passed on for the kernel to drop"
    );
    assert_eq!(kernel_view(&written[2]), input[3..]);
    assert!(!checksum_ok(&written[1][VNET_HDR_LEN..]));
}

#[test]
fn a_corrupt_first_segment_stays_alone() {
    let mut input = burst(40000, &[1328; 4], false);
    input[0][IPV6_HEADER + 40] ^= 1;
    let written = run(&input);
    assert_eq!(written.len(), 2);
    assert_eq!(written[0][VNET_HDR_LEN..], input[0][..]);
    assert_eq!(written[0][..VNET_HDR_LEN], [0; VNET_HDR_LEN]);
    assert_eq!(kernel_view(&written[1]), input[1..]);
}

#[test]
fn a_fin_keeps_its_place() {
    let mut input = burst(40000, &[1000; 3], false);
    input.push(segment(40000, 3001, TCP_ACK | 0x01, &[]));
    // Nothing may be merged into a packet in front of the FIN.
    input.push(segment(40000, 3001, TCP_ACK, &payload(7, 1000)));
    let written = run(&input);
    assert_eq!(written.len(), 3);
    assert_eq!(kernel_view(&written[0]), input[..3]);
    assert_eq!(written[1][VNET_HDR_LEN..], input[3][..]);
    assert_eq!(kernel_view(&written[2]), input[4..]);
}

#[test]
fn other_packets_pass_unchanged() {
    let mut icmp = segment(40000, 1, TCP_ACK, &[1, 2, 3]);
    icmp[6] = 58;
    let short = vec![0x60u8; 30];
    let ipv4 = vec![0x45u8; 60];
    let input = vec![icmp, short, ipv4];
    let written = run(&input);
    assert_eq!(written.len(), 3);
    for (w, i) in written.iter().zip(&input) {
        assert_eq!(&w[..VNET_HDR_LEN], &[0; VNET_HDR_LEN]);
        assert_eq!(&w[VNET_HDR_LEN..], &i[..]);
    }
}

#[test]
fn merged_packets_stay_within_64_kib() {
    let input = burst(40000, &[1328; 64], false);
    let written = run(&input);
    assert_eq!(written.len(), 2);
    for w in &written {
        assert!(w.len() - VNET_HDR_LEN <= MAX_PACKET);
    }
    let all: Vec<Vec<u8>> = written.iter().flat_map(|w| kernel_view(w)).collect();
    assert_eq!(all, input);
}

#[test]
fn fills_up_and_clears() {
    let mut coalescer = Coalescer::new(2);
    coalescer.push(&segment(1, 1, TCP_ACK | 0x01, &[]));
    assert!(!coalescer.is_full());
    coalescer.push(&segment(2, 1, TCP_ACK | 0x01, &[]));
    assert!(coalescer.is_full());
    assert_eq!(coalescer.len(), 2);
    coalescer.clear();
    assert!(coalescer.is_empty());
    coalescer.push(&segment(3, 1, TCP_ACK, &[1]));
    assert_eq!(coalescer.packets().count(), 1);
}

proptest! {
    /// Whatever arrives (several flows interleaved, any sizes, PSH, FIN, gaps, corrupt
    /// segments), the kernel sees every packet of each flow, unchanged and in order.
    #[test]
    fn every_flow_arrives_whole_and_in_order(
        events in prop::collection::vec((0u16..3, 1usize..1400, 0u8..20), 1..64)
    ) {
        let mut next_seq = [1u32; 3];
        let mut input = Vec::new();
        for (i, (flow, len, kind)) in events.into_iter().enumerate() {
            let port = 40000 + flow;
            let seq = &mut next_seq[usize::from(flow)];
            let packet = match kind {
                0 => segment(port, *seq, TCP_ACK | 0x01, &[]),
                1 => segment(port, *seq, TCP_ACK | TCP_PSH, &payload(i as u32, len)),
                2 => segment(port, seq.wrapping_add(7), TCP_ACK, &payload(i as u32, len)),
                3 => {
                    let mut p = segment(port, *seq, TCP_ACK, &payload(i as u32, len));
                    let at = p.len() - 1;
                    p[at] ^= 0x80;
                    p
                }
                4 => segment(port, *seq, TCP_ACK, &payload(i as u32, len.min(100))),
                _ => segment(port, *seq, TCP_ACK, &payload(i as u32, 1300)),
            };
            if kind != 0 && kind != 2 {
                *seq = seq.wrapping_add((packet.len() - 72) as u32);
            }
            input.push(packet);
        }
        let written = run(&input);
        let seen: Vec<Vec<u8>> = written.iter().flat_map(|w| kernel_view(w)).collect();
        for port in 40000u16..40003 {
            let of = |list: &[Vec<u8>]| -> Vec<Vec<u8>> {
                list.iter().filter(|p| p[40..42] == port.to_be_bytes()).cloned().collect()
            };
            prop_assert_eq!(of(&seen), of(&input));
        }
        prop_assert_eq!(seen.len(), input.len());
    }
}
