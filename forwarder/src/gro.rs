//! Software GRO for the TUN device: consecutive TCP segments of one flow, decrypted from a batch
//! of ESP packets, become one packet of up to 64 KiB behind a virtio-net header that tells the
//! kernel how it was put together (GSO type TCPv6, segment size, checksum to complete). The
//! kernel's TCP then receives, acknowledges and copies one packet where there were dozens.
//!
//! The rules are the kernel's own (`tcp_gro_receive`, `ipv6_gro_receive`): the segments must
//! follow each other in sequence, carry the same IPv6 header (but for the length), the same TCP
//! header (but for the sequence number, the checksum and PSH), and the same size, of which only
//! the last may be shorter; PSH ends a packet. Each segment's checksum is checked before it is
//! merged, since the merged packet's checksum is computed afresh (`NEEDS_CSUM`) and would
//! otherwise hide a corrupt segment. Anything else (other protocols, other flags, IPv6
//! extension headers) passes through unchanged, in order within its flow.
//!
//! Pure bytes in, bytes out: the TUN writer (`crate::tun_writer`) does the I/O.

use tun_rs::checksum_no_fold;

/// Length of the virtio-net header in front of every packet written to the TUN device.
pub const VNET_HDR_LEN: usize = 10;
/// The largest packet the coalescer builds: the IPv6 payload length is a 16-bit field.
pub const MAX_PACKET: usize = 40 + 65_535;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the kernel completes the checksum at csum_start + csum_offset.
const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
const GSO_TCPV6: u8 = 4;
const IPV6_HEADER: usize = 40;
const NEXT_HEADER_TCP: u8 = 6;
/// Offset of the checksum in the TCP header.
const TCP_CHECKSUM: usize = 16;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
/// How many flows of one batch may be open for merging at once (more are rare: the oldest is
/// closed).
const OPEN_FLOWS: usize = 8;

/// One output packet under construction.
#[derive(Debug)]
struct Slot {
    /// Virtio-net header, then the packet.
    buf: Vec<u8>,
    /// Set while later segments may still be appended.
    merge: Option<Merge>,
}

/// What a slot that holds TCP segments needs to know to take the next one.
#[derive(Debug, Clone, Copy)]
struct Merge {
    /// IPv6 + TCP header length.
    header_len: usize,
    /// Payload length of every segment but the last.
    segment_size: usize,
    segments: usize,
    /// The sequence number the next segment must have.
    next_seq: u32,
    /// The first segment's checksum is checked when the second arrives (a packet written alone
    /// is checked by the kernel).
    first_checked: bool,
}

/// A TCP segment over IPv6 that may be merged.
struct Segment {
    header_len: usize,
    seq: u32,
    psh: bool,
}

/// Coalesces a batch of inner packets; [`Coalescer::packets`] then gives what to write.
#[derive(Debug)]
pub struct Coalescer {
    slots: Vec<Slot>,
    used: usize,
    /// Indices of slots that are open for merging, oldest first.
    open: Vec<usize>,
}

impl Coalescer {
    /// A coalescer with room for `capacity` output packets.
    pub fn new(capacity: usize) -> Self {
        Coalescer {
            slots: (0..capacity.max(1))
                .map(|_| Slot {
                    buf: Vec::new(),
                    merge: None,
                })
                .collect(),
            used: 0,
            open: Vec::with_capacity(OPEN_FLOWS),
        }
    }

    /// True when no more packets fit before [`Coalescer::packets`] and [`Coalescer::clear`].
    pub fn is_full(&self) -> bool {
        self.used == self.slots.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Takes one inner packet: merged into an earlier one of its flow, or queued on its own.
    /// Must not be called when [`Coalescer::is_full`].
    pub fn push(&mut self, packet: &[u8]) {
        let segment = mergeable(packet);
        if let Some(segment) = &segment
            && self.try_append(packet, segment)
        {
            return;
        }
        if is_tcp(packet) {
            // A packet of an open flow that cannot join it: later segments must not jump ahead
            // of it into the earlier packet.
            self.close_flow(packet);
        }
        let index = self.used;
        self.used += 1;
        let slot = &mut self.slots[index];
        slot.buf.clear();
        slot.buf.reserve(VNET_HDR_LEN + MAX_PACKET);
        slot.buf.extend_from_slice(&[0; VNET_HDR_LEN]);
        slot.buf.extend_from_slice(packet);
        slot.merge = segment.and_then(|s| {
            let size = packet.len() - s.header_len;
            (!s.psh).then_some(Merge {
                header_len: s.header_len,
                segment_size: size,
                segments: 1,
                next_seq: s.seq.wrapping_add(size as u32),
                first_checked: false,
            })
        });
        if slot.merge.is_some() {
            if self.open.len() == OPEN_FLOWS {
                let oldest = self.open.remove(0);
                self.slots[oldest].merge = None;
            }
            self.open.push(index);
        }
    }

    /// Appends `packet` to the open slot of its flow if the rules allow; true if it did.
    fn try_append(&mut self, packet: &[u8], segment: &Segment) -> bool {
        let Some(position) = self.open.iter().position(|&i| {
            let slot = &self.slots[i];
            slot.merge
                .is_some_and(|m| m.header_len == segment.header_len)
                && same_flow_headers(&slot.buf[VNET_HDR_LEN..], packet, segment.header_len)
        }) else {
            return false;
        };
        let index = self.open[position];
        let slot = &mut self.slots[index];
        let Some(mut merge) = slot.merge else {
            return false;
        };
        let size = packet.len() - segment.header_len;
        let fits = segment.seq == merge.next_seq
            && size <= merge.segment_size
            && slot.buf.len() + size <= VNET_HDR_LEN + MAX_PACKET;
        if !fits || !checksum_ok(packet) {
            return false;
        }
        if !merge.first_checked {
            if !checksum_ok(&slot.buf[VNET_HDR_LEN..]) {
                // Written alone, the kernel drops it; the new segment starts afresh.
                slot.merge = None;
                self.open.remove(position);
                return false;
            }
            merge.first_checked = true;
        }
        slot.buf.extend_from_slice(&packet[segment.header_len..]);
        merge.segments += 1;
        merge.next_seq = merge.next_seq.wrapping_add(size as u32);
        if segment.psh {
            slot.buf[VNET_HDR_LEN + IPV6_HEADER + 13] |= TCP_PSH;
        }
        let done = segment.psh || size < merge.segment_size;
        slot.merge = Some(merge);
        finish_header(slot, merge);
        if done {
            slot.merge = None;
            self.open.remove(position);
        }
        true
    }

    /// Closes the open slot of `packet`'s flow, if there is one.
    fn close_flow(&mut self, packet: &[u8]) {
        if let Some(position) = self
            .open
            .iter()
            .position(|&i| same_connection(&self.slots[i].buf[VNET_HDR_LEN..], packet))
        {
            let index = self.open.remove(position);
            self.slots[index].merge = None;
        }
    }

    /// The packets to write, in order, each behind its virtio-net header.
    pub fn packets(&self) -> impl Iterator<Item = &[u8]> {
        self.slots[..self.used]
            .iter()
            .map(|slot| slot.buf.as_slice())
    }

    /// How many packets [`Coalescer::packets`] gives.
    pub fn len(&self) -> usize {
        self.used
    }

    /// Forgets every packet (after they were written).
    pub fn clear(&mut self) {
        for slot in &mut self.slots[..self.used] {
            slot.merge = None;
        }
        self.used = 0;
        self.open.clear();
    }
}

/// Writes the virtio-net header, payload length and pseudo-header checksum of a slot that holds
/// more than one segment (kept current after every append, so the slot is ready to write).
fn finish_header(slot: &mut Slot, merge: Merge) {
    let payload_len = slot.buf.len() - VNET_HDR_LEN - IPV6_HEADER;
    let (header, packet) = slot.buf.split_at_mut(VNET_HDR_LEN);
    header[0] = F_NEEDS_CSUM;
    header[1] = GSO_TCPV6;
    header[2..4].copy_from_slice(&(merge.header_len as u16).to_ne_bytes());
    header[4..6].copy_from_slice(&(merge.segment_size as u16).to_ne_bytes());
    header[6..8].copy_from_slice(&(IPV6_HEADER as u16).to_ne_bytes());
    header[8..10].copy_from_slice(&(TCP_CHECKSUM as u16).to_ne_bytes());
    packet[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
    // NEEDS_CSUM: the checksum field holds the pseudo-header sum, not complemented; the kernel
    // adds the TCP header and payload.
    let pseudo = pseudo_header_sum(packet, payload_len);
    packet[IPV6_HEADER + TCP_CHECKSUM..IPV6_HEADER + TCP_CHECKSUM + 2]
        .copy_from_slice(&fold(pseudo).to_be_bytes());
}

/// A TCP segment over IPv6 (no extension headers) with data and no flags but ACK and PSH, whose
/// lengths add up: what may be merged.
fn mergeable(packet: &[u8]) -> Option<Segment> {
    if packet.len() < IPV6_HEADER + 20
        || packet[0] >> 4 != 6
        || packet[6] != NEXT_HEADER_TCP
        || usize::from(u16::from_be_bytes([packet[4], packet[5]])) + IPV6_HEADER != packet.len()
    {
        return None;
    }
    let tcp = &packet[IPV6_HEADER..];
    let tcp_len = usize::from(tcp[12] >> 4) * 4;
    let flags = tcp[13];
    if tcp_len < 20 || tcp.len() <= tcp_len || (flags != TCP_ACK && flags != TCP_ACK | TCP_PSH) {
        return None;
    }
    Some(Segment {
        header_len: IPV6_HEADER + tcp_len,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        psh: flags & TCP_PSH != 0,
    })
}

fn is_tcp(packet: &[u8]) -> bool {
    packet.len() >= IPV6_HEADER + 4 && packet[0] >> 4 == 6 && packet[6] == NEXT_HEADER_TCP
}

/// Same addresses and ports (`first` is a queued packet, `packet` any IPv6 TCP packet).
fn same_connection(first: &[u8], packet: &[u8]) -> bool {
    packet.len() >= IPV6_HEADER + 4
        && first[8..40] == packet[8..40]
        && first[IPV6_HEADER..IPV6_HEADER + 4] == packet[IPV6_HEADER..IPV6_HEADER + 4]
}

/// Whether `packet` may follow `first` in one merged packet: the IPv6 header equal but for the
/// payload length, the TCP header equal but for sequence number, checksum and PSH (so the same
/// acknowledgment, window and options, as the kernel's GRO requires).
fn same_flow_headers(first: &[u8], packet: &[u8], header_len: usize) -> bool {
    let (a, b) = (&first[..header_len], &packet[..header_len]);
    a[0..4] == b[0..4]
        && a[6..40] == b[6..40]
        && a[40..44] == b[40..44]
        && a[48..53] == b[48..53]
        && a[53] & !TCP_PSH == b[53] & !TCP_PSH
        && a[54..56] == b[54..56]
        && a[58..] == b[58..]
}

/// The one's complement sum of the IPv6 pseudo-header for TCP with this upper-layer length.
fn pseudo_header_sum(packet: &[u8], upper_len: usize) -> u64 {
    let sum = checksum_no_fold(&packet[8..40], 0);
    checksum_no_fold(&(upper_len as u32).to_be_bytes(), sum) + u64::from(NEXT_HEADER_TCP)
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum >> 16) + (sum & 0xffff);
    }
    sum as u16
}

/// Whether a single segment's TCP checksum verifies.
fn checksum_ok(packet: &[u8]) -> bool {
    let upper = &packet[IPV6_HEADER..];
    let sum = checksum_no_fold(upper, pseudo_header_sum(packet, upper.len()));
    fold(sum) == 0xffff
}

#[cfg(test)]
mod tests;
