//! The receive path of the outer sockets, without the sockets: what arrived on UDP 4500 (ESP in
//! UDP, IKE behind the non-ESP marker, NAT keepalives, RFC 3948) or on the raw ESP socket (an
//! IPv4 header, then ESP), opened by its SA pair (window, ICV, window, lifetime, ingress filter)
//! and shown to the roaming code. The data threads call it for every datagram; the fuzz target
//! `forwarder_receive` drives it directly with packets it sealed itself.
//!
//! Every datagram ends in exactly one of: an inner packet for the TUN device, an IKE message
//! for the daemon, a keepalive, a packet the roaming code consumed, a dummy packet, or one drop
//! counted on its pair or (without a pair) globally.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;

use hometun_control::DropReason;

use crate::clock::Now;
use crate::events::EventSender;
use crate::roaming::return_routability::Observed;
use crate::roaming::{OuterSockets, Roaming};
use crate::sad::{Sad, Snapshot};
use crate::wire::esp;

/// The non-ESP marker (RFC 3948 2.2): four zero bytes where an SPI would be.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// A NAT keepalive (RFC 3948 2.3): one 0xFF byte.
pub const NAT_KEEPALIVE: u8 = 0xff;

/// What became of one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// An inner packet for the TUN device, at this place in the datagram.
    Deliver(Range<usize>),
    /// An IKE message for the daemon (after the non-ESP marker), at this place.
    Ike(Range<usize>),
    /// Nothing more to do: a keepalive, a drop (counted), a packet the roaming code consumed,
    /// or an empty (dummy) packet.
    Done,
}

/// The context every received datagram needs.
pub struct Receiver<'a> {
    /// Sends what the roaming code answers (probes, their answers).
    pub io: &'a dyn OuterSockets,
    /// The SA database (drops without a pair are counted here).
    pub sad: &'a Sad,
    /// Tells the IKE daemon of ESP for an SPI we do not have.
    pub events: &'a EventSender,
    /// The roaming state.
    pub roaming: &'a Roaming,
    /// The SAD as the batch sees it.
    pub snapshot: &'a Snapshot,
    /// The batch's time on the forwarder's clock.
    pub now: Now,
}

impl Receiver<'_> {
    /// A datagram from UDP port 4500 that came from `source`.
    pub fn udp(&self, data: &mut [u8], source: SocketAddrV4) -> Received {
        if data.len() == 1 && data[0] == NAT_KEEPALIVE {
            return Received::Done;
        }
        if data.len() >= 4 && data[..4] == NON_ESP_MARKER {
            return Received::Ike(4..data.len());
        }
        let from = Observed {
            addr: *source.ip(),
            port: Some(source.port()),
        };
        match self.esp(data, from) {
            Some(inner) => Received::Deliver(inner),
            None => Received::Done,
        }
    }

    /// A datagram from the raw ESP socket (IP protocol 50: the IPv4 header comes first) that
    /// came from `source`.
    pub fn raw(&self, data: &mut [u8], source: Ipv4Addr) -> Received {
        let header_len = match data.first() {
            Some(first) if first >> 4 == 4 => usize::from(first & 0x0f) * 4,
            _ => {
                self.sad.count_global_drop(DropReason::Malformed);
                return Received::Done;
            }
        };
        let from = Observed {
            addr: source,
            port: None,
        };
        match data.get_mut(header_len..) {
            Some(esp) if header_len >= 20 => match self.esp(esp, from) {
                Some(inner) => Received::Deliver(inner.start + header_len..inner.end + header_len),
                None => Received::Done,
            },
            _ => {
                self.sad.count_global_drop(DropReason::Malformed);
                Received::Done
            }
        }
    }

    /// One ESP packet (starting at the SPI) from `from`: opened by its pair (decrypted in
    /// place), then shown to the roaming code. Returns where the inner packet for the TUN
    /// device is, if there is one.
    pub fn esp(&self, esp: &mut [u8], from: Observed) -> Option<Range<usize>> {
        let Ok(header) = esp::Packet::new_checked(&*esp) else {
            self.sad.count_global_drop(DropReason::Malformed);
            return None;
        };
        let (spi, wire_seq) = (header.spi(), header.seq());
        let Some(pair) = self.snapshot.inbound(spi) else {
            self.sad.count_global_drop(DropReason::NoSa);
            // After a restart of the server its homes still send with pairs it no longer has:
            // the IKE daemon tells them (RFC 7296 2.21.4). Rate limited per sender and SPI.
            self.events.unknown_spi(spi, from.addr, from.port, self.now);
            return None;
        };
        let accepted = pair.open(wire_seq, esp, self.now).ok()?;
        // Roaming looks at a packet only after the ICV and the replay window.
        let inner = &esp[accepted.inner.clone()];
        let consumed = self.roaming.after_open(
            self.io,
            self.sad,
            self.snapshot,
            pair,
            accepted.seq,
            inner,
            from,
            self.now,
        );
        (!consumed && !inner.is_empty()).then_some(accepted.inner)
    }
}
