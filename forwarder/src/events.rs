//! The forwarder's event queue, from the data threads to the SA channel, bounded.
//!
//! Anyone can send IKE messages to UDP 4500, so [`Event::IkeReceived`] may arrive faster than the
//! daemon reads them: at most [`IKE_CAPACITY`] of them (and [`IKE_BYTES`] of their bytes) wait;
//! past that a new one is dropped and counted (IKE retransmits). What must never be lost cannot
//! flood: limit events (soft, hard, sequence exhausted) are kept as a set per SA (each is
//! raised once per direction, and a repeat is the same news), and endpoint moves as one pending
//! move per peer (a second move of a peer not yet reported extends the first: the earliest
//! `old`, the latest `new`). Moves go out first, then limits, then IKE messages, then ESP for
//! unknown SPIs ([`EventSender::unknown_spi`]: each sender and SPI at most once a second, at
//! most [`UNKNOWN_SPI_CAPACITY`] waiting).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use hometun_control::{Endpoint, Event, PeerId, Spi};

use crate::clock::Now;

/// Most IKE messages waiting at once.
pub const IKE_CAPACITY: usize = 1024;
/// Most bytes of IKE messages waiting at once (an IKE message may be 64 KiB).
pub const IKE_BYTES: usize = 4 << 20;

/// Most unknown-SPI reports waiting at once.
pub const UNKNOWN_SPI_CAPACITY: usize = 256;
/// The same sender and SPI is reported at most once in this long.
const UNKNOWN_SPI_REPEAT: Duration = Duration::from_secs(1);
/// Senders remembered for that; past it, reports wait until old entries expire.
const UNKNOWN_SPI_SENDERS: usize = 4096;

/// Who sent ESP for an unknown SPI: the SPI, the outer source, its UDP port (none: raw ESP).
type UnknownSpiKey = (Spi, Ipv4Addr, Option<u16>);

/// A queue with the default bounds.
pub fn channel() -> (EventSender, EventReceiver) {
    with_capacity(IKE_CAPACITY, IKE_BYTES)
}

/// A queue that holds at most `ike_events` IKE messages of at most `ike_bytes` bytes in all.
pub fn with_capacity(ike_events: usize, ike_bytes: usize) -> (EventSender, EventReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            senders: 1,
            receiver: true,
            ike_capacity: ike_events,
            ike_byte_capacity: ike_bytes,
            ..State::default()
        }),
        ready: Condvar::new(),
        dropped: AtomicU64::new(0),
    });
    (
        EventSender {
            shared: shared.clone(),
        },
        EventReceiver { shared },
    )
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    /// IKE messages dropped because the queue was full.
    dropped: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements: a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct State {
    moves: BTreeMap<PeerId, (Endpoint, Endpoint)>,
    move_order: VecDeque<PeerId>,
    limits: BTreeMap<Spi, VecDeque<Event>>,
    limit_order: VecDeque<Spi>,
    ike: VecDeque<Event>,
    ike_bytes: usize,
    ike_capacity: usize,
    ike_byte_capacity: usize,
    unknown: VecDeque<UnknownSpiKey>,
    /// When each sender and SPI was last reported (the data path's clock).
    unknown_reported: HashMap<UnknownSpiKey, Now>,
    senders: usize,
    receiver: bool,
}

impl State {
    fn is_empty(&self) -> bool {
        self.move_order.is_empty()
            && self.limit_order.is_empty()
            && self.ike.is_empty()
            && self.unknown.is_empty()
    }

    /// Queues an unknown-SPI report unless that sender and SPI was reported within the last
    /// second; false when it was not queued.
    fn push_unknown(&mut self, key: UnknownSpiKey, now: Now) -> bool {
        if self
            .unknown_reported
            .get(&key)
            .is_some_and(|&at| now.since(at) < UNKNOWN_SPI_REPEAT)
        {
            return false;
        }
        if self.unknown_reported.len() >= UNKNOWN_SPI_SENDERS {
            self.unknown_reported
                .retain(|_, at| now.since(*at) < UNKNOWN_SPI_REPEAT);
        }
        if self.unknown_reported.len() >= UNKNOWN_SPI_SENDERS
            || self.unknown.len() >= UNKNOWN_SPI_CAPACITY
        {
            return false;
        }
        self.unknown_reported.insert(key, now);
        self.unknown.push_back(key);
        true
    }

    /// Queues an event; false when it was an IKE message and there was no room.
    fn push(&mut self, event: Event) -> bool {
        match event {
            Event::IkeReceived { ref data, .. } => {
                if self.ike.len() >= self.ike_capacity
                    || self.ike_bytes + data.len() > self.ike_byte_capacity
                {
                    return false;
                }
                self.ike_bytes += data.len();
                self.ike.push_back(event);
            }
            Event::EndpointMoved { peer, old, new } => match self.moves.get_mut(&peer) {
                Some(pending) => pending.1 = new,
                None => {
                    self.moves.insert(peer, (old, new));
                    self.move_order.push_back(peer);
                }
            },
            Event::UnknownSpi { spi, remote, port } => {
                if self.unknown.len() >= UNKNOWN_SPI_CAPACITY {
                    return false;
                }
                self.unknown.push_back((spi, remote, port));
            }
            Event::SoftLimit { spi_in, .. }
            | Event::HardLimit { spi_in, .. }
            | Event::SeqExhausted { spi_in, .. } => {
                let pending = self.limits.entry(spi_in).or_insert_with(|| {
                    self.limit_order.push_back(spi_in);
                    VecDeque::new()
                });
                if !pending.contains(&event) {
                    pending.push_back(event);
                }
            }
        }
        true
    }

    fn pop(&mut self) -> Option<Event> {
        if let Some(peer) = self.move_order.pop_front() {
            let (old, new) = self.moves.remove(&peer)?;
            return Some(Event::EndpointMoved { peer, old, new });
        }
        if let Some(&spi) = self.limit_order.front() {
            let pending = self.limits.get_mut(&spi)?;
            let event = pending.pop_front();
            if pending.is_empty() {
                self.limits.remove(&spi);
                self.limit_order.pop_front();
            }
            return event;
        }
        if let Some(event) = self.ike.pop_front() {
            if let Event::IkeReceived { data, .. } = &event {
                self.ike_bytes -= data.len();
            }
            return Some(event);
        }
        let (spi, remote, port) = self.unknown.pop_front()?;
        Some(Event::UnknownSpi { spi, remote, port })
    }
}

/// The sending half: the SAD, the data threads and roaming hold clones.
pub struct EventSender {
    shared: Arc<Shared>,
}

impl Clone for EventSender {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        EventSender {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.senders -= 1;
        if state.senders == 0 {
            self.shared.ready.notify_all();
        }
    }
}

impl std::fmt::Debug for EventSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSender")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl EventSender {
    /// Queues an event. Never blocks: a data thread must not wait for the controller. Without a
    /// receiver the event is discarded (nobody listens); an IKE message that finds the queue
    /// full is dropped and counted.
    pub fn send(&self, event: Event) {
        let mut state = self.shared.lock();
        if !state.receiver {
            return;
        }
        if state.push(event) {
            drop(state);
            self.shared.ready.notify_one();
        } else {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// ESP for an SPI no pair has, from `remote` (`port`: ESP in UDP), at `now` on the data
    /// path's clock: reported unless that sender and SPI was within the last second, or too
    /// many reports wait.
    pub fn unknown_spi(&self, spi: Spi, remote: Ipv4Addr, port: Option<u16>, now: Now) {
        let mut state = self.shared.lock();
        if !state.receiver {
            return;
        }
        let queued = state.push_unknown((spi, remote, port), now);
        drop(state);
        if queued {
            self.shared.ready.notify_one();
        }
    }

    /// IKE messages dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

/// The receiving half: the SA channel's event thread.
pub struct EventReceiver {
    shared: Arc<Shared>,
}

impl Drop for EventReceiver {
    fn drop(&mut self) {
        // Nobody will read what waits: free it, and let senders discard from now on.
        let mut state = self.shared.lock();
        let senders = state.senders;
        *state = State {
            senders,
            receiver: false,
            ..State::default()
        };
    }
}

impl EventReceiver {
    /// The next event; `None` once every sender is gone and the queue is empty.
    pub fn recv(&self) -> Option<Event> {
        let mut state = self.shared.lock();
        loop {
            if let Some(event) = state.pop() {
                return Some(event);
            }
            if state.senders == 0 {
                return None;
            }
            state = self
                .shared
                .ready
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The next event, if one is waiting.
    pub fn try_recv(&self) -> Option<Event> {
        self.shared.lock().pop()
    }

    /// Every event waiting now.
    pub fn try_iter(&self) -> impl Iterator<Item = Event> + '_ {
        std::iter::from_fn(|| self.try_recv())
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.shared.lock().is_empty()
    }

    /// IKE messages dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use std::time::Duration;

    use hometun_control::{Direction, Encapsulation, LimitKind};

    use super::*;

    fn ike(n: u8) -> Event {
        Event::IkeReceived {
            local: SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 4500),
            remote: SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 4500),
            data: vec![n; 100],
        }
    }

    fn soft(spi: u32, direction: Direction) -> Event {
        Event::SoftLimit {
            peer: PeerId(1),
            spi_in: Spi(spi),
            direction,
            kind: LimitKind::Bytes,
        }
    }

    fn hard(spi: u32) -> Event {
        Event::HardLimit {
            peer: PeerId(1),
            spi_in: Spi(spi),
            direction: Direction::Outbound,
            kind: LimitKind::Packets,
        }
    }

    fn endpoint(last: u8) -> Endpoint {
        Endpoint {
            local: Ipv4Addr::new(192, 0, 2, 1),
            remote: Ipv4Addr::new(198, 51, 100, last),
            encap: Encapsulation::Raw,
        }
    }

    fn moved(peer: u64, from: u8, to: u8) -> Event {
        Event::EndpointMoved {
            peer: PeerId(peer),
            old: endpoint(from),
            new: endpoint(to),
        }
    }

    #[test]
    fn a_full_queue_drops_only_ike_messages_and_counts_them() {
        let (tx, rx) = with_capacity(4, 1 << 20);
        for n in 0..10 {
            tx.send(ike(n));
        }
        // Limits and moves still get in, however full the IKE part is.
        tx.send(soft(0x100, Direction::Inbound));
        tx.send(hard(0x100));
        tx.send(Event::SeqExhausted {
            peer: PeerId(2),
            spi_in: Spi(0x200),
        });
        tx.send(moved(3, 2, 3));
        for n in 10..20 {
            tx.send(ike(n));
        }
        assert_eq!(tx.dropped(), 16);
        assert_eq!(rx.dropped(), 16);
        let got: Vec<Event> = rx.try_iter().collect();
        assert_eq!(
            got,
            vec![
                moved(3, 2, 3),
                soft(0x100, Direction::Inbound),
                hard(0x100),
                Event::SeqExhausted {
                    peer: PeerId(2),
                    spi_in: Spi(0x200),
                },
                ike(0),
                ike(1),
                ike(2),
                ike(3),
            ]
        );
        // Room again.
        tx.send(ike(20));
        assert_eq!(rx.try_recv(), Some(ike(20)));
        assert_eq!(tx.dropped(), 16);
    }

    #[test]
    fn the_byte_bound_holds_too() {
        let (tx, rx) = with_capacity(100, 250);
        for n in 0..5 {
            tx.send(ike(n));
        }
        assert_eq!(tx.dropped(), 3);
        assert_eq!(rx.try_iter().count(), 2);
    }

    #[test]
    fn limit_events_coalesce_per_sa_and_moves_per_peer() {
        let (tx, rx) = with_capacity(4, 1 << 20);
        for _ in 0..1000 {
            tx.send(soft(0x100, Direction::Outbound));
            tx.send(soft(0x100, Direction::Inbound));
        }
        tx.send(moved(1, 2, 3));
        tx.send(moved(2, 7, 8));
        tx.send(moved(1, 3, 4));
        assert_eq!(tx.dropped(), 0, "nothing but IKE is ever dropped");
        let got: Vec<Event> = rx.try_iter().collect();
        assert_eq!(
            got,
            vec![
                moved(1, 2, 4),
                moved(2, 7, 8),
                soft(0x100, Direction::Outbound),
                soft(0x100, Direction::Inbound),
            ]
        );
        // Reported once; raised again later, it is news again.
        tx.send(soft(0x100, Direction::Outbound));
        assert_eq!(rx.try_recv(), Some(soft(0x100, Direction::Outbound)));
    }

    #[test]
    fn recv_waits_for_an_event_and_ends_with_the_last_sender() {
        let (tx, rx) = channel();
        let second = tx.clone();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            second.send(ike(1));
        });
        assert_eq!(rx.recv(), Some(ike(1)));
        thread.join().unwrap();
        assert_eq!(rx.try_recv(), None);
        drop(tx);
        assert_eq!(rx.recv(), None);
    }

    #[test]
    fn without_a_receiver_events_are_discarded_not_counted() {
        let (tx, rx) = with_capacity(1, 1 << 20);
        drop(rx);
        for n in 0..5 {
            tx.send(ike(n));
        }
        assert_eq!(tx.dropped(), 0);
    }

    #[test]
    fn unknown_spis_are_reported_once_a_second_per_sender_and_bounded() {
        let (tx, rx) = channel();
        let home = Ipv4Addr::new(198, 51, 100, 7);
        // A home still sending with its old pair: one report, not one per packet.
        for ms in 0..100 {
            tx.unknown_spi(Spi(0xc1), home, Some(4500), Now::from_millis(ms));
        }
        // Another SPI, or the same SPI from elsewhere, is news.
        tx.unknown_spi(Spi(0xc2), home, Some(4500), Now::from_millis(100));
        tx.unknown_spi(Spi(0xc1), home, None, Now::from_millis(100));
        assert_eq!(
            std::iter::from_fn(|| rx.try_recv()).collect::<Vec<_>>(),
            vec![
                Event::UnknownSpi {
                    spi: Spi(0xc1),
                    remote: home,
                    port: Some(4500)
                },
                Event::UnknownSpi {
                    spi: Spi(0xc2),
                    remote: home,
                    port: Some(4500)
                },
                Event::UnknownSpi {
                    spi: Spi(0xc1),
                    remote: home,
                    port: None
                },
            ]
        );
        // A second later it is reported again.
        tx.unknown_spi(Spi(0xc1), home, Some(4500), Now::from_millis(999));
        assert_eq!(rx.try_recv(), None);
        tx.unknown_spi(Spi(0xc1), home, Some(4500), Now::from_millis(1000));
        assert!(rx.try_recv().is_some());
        // A flood of random SPIs from forged sources: at most UNKNOWN_SPI_CAPACITY wait, and
        // what waits never holds back IKE messages or limits.
        for n in 0..10_000u32 {
            tx.unknown_spi(
                Spi(n),
                Ipv4Addr::from(0xc633_6400 + n),
                None,
                Now::from_millis(2000),
            );
        }
        tx.send(ike(1));
        tx.send(hard(0x100));
        assert_eq!(rx.try_recv(), Some(hard(0x100)));
        assert_eq!(rx.try_recv(), Some(ike(1)));
        let waiting = std::iter::from_fn(|| rx.try_recv()).count();
        assert_eq!(waiting, UNKNOWN_SPI_CAPACITY);
    }
}
