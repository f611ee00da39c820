//! The Linux data plane: the TUN device, the outer sockets and the threads that move packets
//! between them through the SAD. One thread reads the TUN device (outbound), one per outer socket
//! reads ESP (inbound), one ticks the clock and sends NAT keepalives. All I/O is blocking with
//! short timeouts (so the threads see the stop flag), batched with recvmmsg/sendmmsg, and uses
//! buffers allocated once per thread.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use hometun_control::{
    DropReason, Encapsulation, Endpoint, Event, InterfaceConfig, PlatformError, PlatformOp,
    RoamingConfig, RoamingReport,
};
use ipnet::Ipv6Net;
use tun_rs::{GROTable, SyncDevice, VIRTIO_NET_HDR_LEN};

use crate::clock::{Clock, Now};
use crate::events::EventSender;
use crate::inbound::{NAT_KEEPALIVE, NON_ESP_MARKER, Received, Receiver};
use crate::keepalive::KeepaliveSchedule;
use crate::netlink;
use crate::read_failures::FailureRun;
use crate::requests::Platform;
use crate::roaming::return_routability::Observed;
use crate::roaming::{self, OuterSockets, Roaming};
use crate::sad::{Sad, Snapshot};
use crate::send_batch::{self, SendBatch};
use crate::server::StopReason;
use crate::sockets::{self, RecvBatch};
use crate::takeover;
use crate::tun_device::{self, TunDevice, TunSpec};
use crate::tun_writer::TunWriter;
use crate::wire::{icmpv6, ipv6};

/// Packets per batch (recvmmsg, sendmmsg, TUN writes).
const BATCH: usize = 64;
/// Segments one TUN read may split into (a 64 KiB TSO packet at the smallest MSS fits).
const SEGMENTS: usize = tun_rs::IDEAL_BATCH_SIZE;
/// Room for the outer headers and ESP overhead beyond the inner MTU.
const OUTER_OVERHEAD: usize = 20 + 8 + 8 + 8 + 255 + 16 + 2;
/// How long blocking reads wait before looking at the stop flag.
const POLL_MS: i32 = 200;

/// Options of the Linux data plane that are not part of the SA channel.
#[derive(Debug, Clone, Copy)]
pub struct DataplaneOptions {
    /// Use the TUN device's virtio-net header with TSO/GRO offload (fewer, larger reads and
    /// writes).
    pub offload: bool,
    /// Use UDP GSO for sending and UDP GRO for receiving ESP in UDP.
    pub udp_offload: bool,
    /// Address changes (docs/ARCHITECTURE.md, "Roaming"): follow our own address (client), accept
    /// moves (server).
    pub roaming: RoamingConfig,
}

impl Default for DataplaneOptions {
    fn default() -> Self {
        DataplaneOptions {
            offload: true,
            udp_offload: true,
            roaming: RoamingConfig::default(),
        }
    }
}

/// The [`Platform`] of the forwarder process.
pub struct LinuxPlatform {
    events: EventSender,
    options: DataplaneOptions,
    stopper: Option<Sender<StopReason>>,
    running: Option<Running>,
}

struct Running {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// How long after a lost TUN device each attempt to make it again starts (the first at once):
/// a network manager that deleted it may still be busy with the name for a moment.
const RECREATE_AFTER: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// What the data threads share.
struct Shared {
    sad: Arc<Sad>,
    tun: SyncDevice,
    /// The device's description and routes, to make it again if it is deleted.
    device: TunDevice,
    udp: Option<UdpSocket>,
    udp_port: u16,
    /// The address the outer sockets are bound to (`None`: any); changes when the client's
    /// address moves and the sockets are re-bound.
    bound: Mutex<Option<Ipv4Addr>>,
    raw: Option<OwnedFd>,
    mtu: usize,
    /// Source of ICMPv6 errors the forwarder sends into the TUN device.
    icmp_source: Ipv6Addr,
    /// The MSS that TCP SYNs crossing the tunnel are clamped to (`None`: no clamping).
    clamp_mss: Option<u16>,
    offload: bool,
    /// Send runs of equal ESP-in-UDP datagrams with UDP GSO.
    udp_gso: bool,
    /// The UDP socket coalesces received datagrams (UDP GRO).
    udp_gro: bool,
    stop: AtomicBool,
    events: EventSender,
    roaming: Roaming,
    /// Stops the whole forwarder when the data plane cannot go on.
    stopper: Option<Sender<StopReason>>,
    /// The forwarder's one clock: each data thread reads it once per batch.
    clock: Clock,
}

impl LinuxPlatform {
    /// A platform that reports IKE messages (and anything else the data threads notice) into
    /// `events`.
    pub fn new(events: EventSender, options: DataplaneOptions) -> Self {
        LinuxPlatform {
            events,
            options,
            stopper: None,
            running: None,
        }
    }

    /// Lets the data threads stop the forwarder through `stopper` when the data plane cannot go
    /// on (its TUN device deleted and impossible to make again, an outer socket impossible to
    /// open again). Without it they only log and end.
    pub fn stopping_with(mut self, stopper: Sender<StopReason>) -> Self {
        self.stopper = Some(stopper);
        self
    }
}

impl Platform for LinuxPlatform {
    fn configure(&mut self, config: &InterfaceConfig, sad: &Arc<Sad>) -> Result<(), PlatformError> {
        if self.running.is_some() {
            return Err(PlatformError::other(
                PlatformOp::Configure,
                "already configured",
            ));
        }
        let os_error = |operation: PlatformOp| move |e: io::Error| PlatformError::io(operation, &e);
        let mtu = u16::try_from(config.mtu).map_err(|_| {
            PlatformError::other(
                PlatformOp::Configure,
                format!("mtu {} too large", config.mtu),
            )
        })?;
        let (device, tun) = TunDevice::create(TunSpec {
            name: config.tun_name.clone(),
            mtu,
            offload: self.options.offload,
            addresses: config.addresses.clone(),
            metric: config.route_metric,
            protocol: config.route_protocol,
        })?;
        let mut udp_gro = false;
        let udp = if config.udp_port != 0 {
            let on_udp = || os_error(PlatformOp::UdpSocket(config.udp_port));
            // Its sockets close with its TUN device, but not in the same instant.
            let socket = takeover::when_free(
                PlatformOp::UdpSocket(config.udp_port),
                libc::EADDRINUSE,
                || sockets::udp_socket(config.bind_ipv4, config.udp_port),
                || "another socket has it bound".into(),
            )?;
            sockets::set_read_timeout(socket.as_raw_fd(), Duration::from_millis(POLL_MS as u64))
                .map_err(on_udp())?;
            if self.options.udp_offload {
                udp_gro = sockets::enable_udp_gro(socket.as_raw_fd());
            }
            Some(socket)
        } else {
            None
        };
        let raw = if config.raw_esp {
            let socket = sockets::raw_esp_socket(config.bind_ipv4)
                .map_err(os_error(PlatformOp::RawEspSocket))?;
            sockets::set_read_timeout(socket.as_raw_fd(), Duration::from_millis(POLL_MS as u64))
                .map_err(os_error(PlatformOp::RawEspSocket))?;
            Some(socket)
        } else {
            None
        };
        let icmp_source = config
            .icmp_source
            .or_else(|| {
                config
                    .addresses
                    .iter()
                    .map(|a| a.addr())
                    .find(|a| !netlink::is_link_local(*a))
            })
            .or_else(|| config.addresses.first().map(|a| a.addr()))
            .unwrap_or(Ipv6Addr::UNSPECIFIED);
        let shared = Arc::new(Shared {
            sad: sad.clone(),
            tun,
            device,
            udp,
            udp_port: config.udp_port,
            bound: Mutex::new(config.bind_ipv4),
            raw,
            mtu: config.mtu as usize,
            icmp_source,
            clamp_mss: config
                .clamp_mss
                .then(|| crate::mss::mss_for(config.mtu as usize)),
            offload: self.options.offload,
            udp_gso: self.options.udp_offload,
            udp_gro,
            stop: AtomicBool::new(false),
            events: self.events.clone(),
            roaming: Roaming::new(self.options.roaming, &config.addresses, self.events.clone()),
            stopper: self.stopper.clone(),
            clock: Clock::start(),
        });
        let mut threads = Vec::new();
        let spawn = |name: &str, f: fn(Arc<Shared>), shared: &Arc<Shared>| {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || f(shared))
                .map_err(|e| PlatformError::io(PlatformOp::StartThread(name.to_string()), &e))
        };
        threads.push(spawn("tun-rx", outbound_loop, &shared)?);
        if shared.udp.is_some() {
            threads.push(spawn("udp-rx", udp_inbound_loop, &shared)?);
        }
        if shared.raw.is_some() {
            threads.push(spawn("esp-rx", raw_inbound_loop, &shared)?);
        }
        threads.push(spawn("ticker", ticker_loop, &shared)?);
        threads.push(spawn("roaming", roaming_loop, &shared)?);
        self.running = Some(Running { shared, threads });
        tracing::info!(
            "forwarder: {} up (mtu {}, offload {}, follow local address {}, accept moves {})",
            config.tun_name,
            config.mtu,
            self.options.offload,
            self.options.roaming.follow_local_address,
            self.options.roaming.accept_moves
        );
        Ok(())
    }

    fn add_route(&mut self, net: Ipv6Net) -> Result<(), PlatformError> {
        let operation = PlatformOp::AddRoute(net);
        let running = self.running(&operation)?;
        running
            .shared
            .device
            .add_route(net)
            .map_err(|e| PlatformError::io(operation, &e))
    }

    fn remove_route(&mut self, net: Ipv6Net) -> Result<(), PlatformError> {
        let operation = PlatformOp::RemoveRoute(net);
        let running = self.running(&operation)?;
        running
            .shared
            .device
            .remove_route(net)
            .map_err(|e| PlatformError::io(operation, &e))
    }

    fn send_ike(
        &mut self,
        _local: SocketAddrV4,
        remote: SocketAddrV4,
        data: &[u8],
    ) -> Result<(), PlatformError> {
        let operation = PlatformOp::SendIke(remote);
        let running = self.running(&operation)?;
        let udp = running
            .shared
            .udp
            .as_ref()
            .ok_or_else(|| PlatformError::other(operation.clone(), "no UDP socket"))?;
        let mut message = Vec::with_capacity(4 + data.len());
        message.extend_from_slice(&NON_ESP_MARKER);
        message.extend_from_slice(data);
        udp.send_to(&message, remote)
            .map_err(|e| PlatformError::io(operation, &e))?;
        Ok(())
    }

    fn roaming_report(&self) -> Option<RoamingReport> {
        self.running
            .as_ref()
            .map(|running| running.shared.roaming.report())
    }

    fn shutdown(&mut self) {
        if let Some(running) = self.running.take() {
            running.shared.stop.store(true, Ordering::Relaxed);
            for thread in running.threads {
                let _ = thread.join();
            }
            // Dropping the last reference closes the TUN device (it is not persistent, so the
            // kernel removes it and its routes) and the sockets.
            drop(running.shared);
        }
    }
}

impl LinuxPlatform {
    fn running(&self, operation: &PlatformOp) -> Result<&Running, PlatformError> {
        self.running
            .as_ref()
            .ok_or_else(|| PlatformError::other(operation.clone(), "not configured"))
    }
}

impl Drop for LinuxPlatform {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Where an ESP packet for this endpoint goes: which socket and which address.
fn destination(endpoint: &Endpoint) -> (bool, SocketAddrV4) {
    match endpoint.encap {
        Encapsulation::Raw => (false, SocketAddrV4::new(endpoint.remote, 0)),
        Encapsulation::Udp { remote_port, .. } => {
            (true, SocketAddrV4::new(endpoint.remote, remote_port))
        }
    }
}

/// TUN -> SAD -> seal -> outer socket. Each inner packet is read into a send buffer behind room
/// for the outer headers and sealed there (`send_batch`): no copy between read and send.
fn outbound_loop(shared: Arc<Shared>) {
    let tun_fd = shared.tun.as_raw_fd();
    let segment = shared.mtu.max(1500) + 64;
    let mut original = vec![0u8; VIRTIO_NET_HDR_LEN + 65_535];
    let mut batch = SendBatch::new(SEGMENTS, segment);
    let mut sizes = vec![0usize; SEGMENTS];
    let mut icmp = vec![0u8; 1280];
    let mut gro = GROTable::default();
    let mut icmp_out: Vec<Vec<u8>> = vec![Vec::with_capacity(1280 + VIRTIO_NET_HDR_LEN)];
    let mut gso = shared.udp_gso;
    let mut failures = FailureRun::new("TUN device");
    while !shared.stop.load(Ordering::Relaxed) {
        if !sockets::wait_readable(tun_fd, POLL_MS) {
            continue;
        }
        let count = match shared.tun.recv_multiple(
            &mut original,
            batch.buffers_mut(),
            &mut sizes,
            send_batch::INNER_AT,
        ) {
            Ok(count) => {
                failures.succeeded();
                count
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) if tun_device::is_gone(&error) => {
                if recover_tun(&shared, &error) {
                    continue;
                }
                return;
            }
            Err(error) => {
                // Not a packet, and not one to count as dropped: the descriptor failed.
                std::thread::sleep(failures.failed(&error).wait);
                continue;
            }
        };
        let mut snapshot = shared.sad.load();
        let mut generation = shared.roaming.generation();
        for (i, &size) in sizes.iter().enumerate().take(count) {
            let buffer = batch.buffer_mut(i);
            let packet = &mut buffer[send_batch::INNER_AT..send_batch::INNER_AT + size];
            let Some(destination_address) = ipv6_destination(packet) else {
                shared.sad.count_global_drop(DropReason::Malformed);
                continue;
            };
            // An endpoint moved (or a probe round began or ended) within this batch.
            if shared.roaming.generation() != generation {
                snapshot = shared.sad.load();
                generation = shared.roaming.generation();
            }
            let Some(route) = snapshot.outbound(destination_address) else {
                shared.sad.count_global_drop(DropReason::NoSa);
                continue;
            };
            if packet.len() > shared.mtu {
                route.pair.count_drop(DropReason::TooBig);
                if let Ok(len) = icmpv6::emit_packet_too_big(
                    shared.icmp_source,
                    shared.mtu as u32,
                    packet,
                    &mut icmp,
                ) {
                    write_tun(&shared, &icmp[..len], &mut icmp_out, &mut gro);
                }
                continue;
            }
            if let Some(mss) = shared.clamp_mss {
                crate::mss::clamp(packet, mss);
            }
            let mut endpoint = route.endpoint;
            if shared.roaming.holding() {
                // A server probing a peer's new address holds that peer's packets.
                match shared
                    .roaming
                    .hold_outbound(&shared.sad, route.pair.peer(), packet)
                {
                    roaming::HoldOutcome::Held => continue,
                    roaming::HoldOutcome::Send(Some(current)) => endpoint = current,
                    roaming::HoldOutcome::Send(None) => {}
                }
            }
            let (udp, to) = destination(&endpoint);
            if let Ok(len) = route
                .pair
                .seal_in_place(&mut buffer[send_batch::ESP_AT..], size)
            {
                batch.push(i, len, to, udp);
            }
        }
        drop(snapshot);
        flush(&shared, &mut batch, &mut gso);
    }
}

/// Sends what the batch holds, each packet through its socket.
fn flush(shared: &Shared, batch: &mut SendBatch, gso: &mut bool) {
    if batch.is_empty() {
        return;
    }
    let mut failed = 0;
    // An SA whose encapsulation has no socket (refused at install; kept for safety) counts as
    // not sent.
    let raw_fd = shared.raw.as_ref().map_or(-1, |s| s.as_raw_fd());
    failed += batch.flush_raw(raw_fd);
    let udp_fd = shared.udp.as_ref().map_or(-1, |s| s.as_raw_fd());
    failed += batch.flush_udp(udp_fd, gso);
    if failed > 0 {
        tracing::debug!("{failed} ESP packets not sent");
    }
    batch.clear();
}

/// Writes one packet into the TUN device (with an empty virtio header when offload is on).
fn write_tun(shared: &Shared, packet: &[u8], scratch: &mut [Vec<u8>], gro: &mut GROTable) {
    if shared.offload {
        let buffer = &mut scratch[0];
        buffer.clear();
        buffer.resize(VIRTIO_NET_HDR_LEN, 0);
        buffer.extend_from_slice(packet);
        if let Err(error) = shared
            .tun
            .send_multiple(gro, &mut scratch[..1], VIRTIO_NET_HDR_LEN)
        {
            tracing::debug!("TUN write: {error}");
        }
    } else if let Err(error) = shared.tun.send(packet) {
        tracing::debug!("TUN write: {error}");
    }
}

/// The destination of an IPv6 packet, if it is one.
fn ipv6_destination(packet: &[u8]) -> Option<Ipv6Addr> {
    ipv6::Packet::new_checked(packet).ok().map(|p| p.dst_addr())
}

/// A decrypted inner packet to the TUN device, its TCP MSS clamped when configured.
fn deliver(shared: &Shared, tun: &mut TunWriter, inner: &mut [u8]) {
    if let Some(mss) = shared.clamp_mss {
        crate::mss::clamp(inner, mss);
    }
    tun.push(&shared.tun, inner);
}

/// The receive path of one batch's datagram (crate::inbound), without the device.
fn receiver<'a>(shared: &'a Shared, snapshot: &'a Snapshot, now: Now) -> Receiver<'a> {
    Receiver {
        io: shared,
        sad: &shared.sad,
        events: &shared.events,
        roaming: &shared.roaming,
        snapshot,
        now,
    }
}

/// UDP 4500: ESP in UDP, IKE behind the non-ESP marker, NAT keepalives.
fn udp_inbound_loop(shared: Arc<Shared>) {
    let size = shared.mtu + OUTER_OVERHEAD + 64;
    // With UDP GRO one receive may carry a whole run of datagrams.
    let buffer = if shared.udp_gro { 65_536 } else { size };
    let mut batch = RecvBatch::new(BATCH, buffer);
    let mut tun = TunWriter::new(BATCH, shared.offload);
    inbound_loop(
        &shared,
        OuterSocket::Udp,
        &mut batch,
        &mut tun,
        |shared, snapshot, data, source, now, tun| match receiver(shared, snapshot, now)
            .udp(data, source)
        {
            Received::Deliver(inner) => deliver(shared, tun, &mut data[inner]),
            Received::Ike(message) => {
                let local = SocketAddrV4::new(
                    lock(&shared.bound).unwrap_or(Ipv4Addr::UNSPECIFIED),
                    shared.udp_port,
                );
                shared.events.send(Event::IkeReceived {
                    local,
                    remote: source,
                    data: data[message].to_vec(),
                });
            }
            Received::Done => {}
        },
    );
}

/// IP protocol 50: the IPv4 header comes first.
fn raw_inbound_loop(shared: Arc<Shared>) {
    let size = shared.mtu + OUTER_OVERHEAD + 64 + 60;
    let mut batch = RecvBatch::new(BATCH, size);
    let mut tun = TunWriter::new(BATCH, shared.offload);
    inbound_loop(
        &shared,
        OuterSocket::Raw,
        &mut batch,
        &mut tun,
        |shared, snapshot, data, source, now, tun| {
            if let Received::Deliver(inner) =
                receiver(shared, snapshot, now).raw(data, *source.ip())
            {
                deliver(shared, tun, &mut data[inner]);
            }
        },
    );
}

type Handler = fn(&Shared, &Snapshot, &mut [u8], SocketAddrV4, Now, &mut TunWriter);

fn inbound_loop(
    shared: &Shared,
    socket: OuterSocket,
    batch: &mut RecvBatch,
    tun: &mut TunWriter,
    handle: Handler,
) {
    let Some(fd) = shared.outer_fd(socket) else {
        return;
    };
    let mut failures = FailureRun::new(socket.name());
    while !shared.stop.load(Ordering::Relaxed) {
        let count = match batch.recv(fd) {
            Ok(count) => {
                failures.succeeded();
                count
            }
            Err(error) => {
                let next = failures.failed(&error);
                std::thread::sleep(next.wait);
                if next.reopen
                    && let Err(error) = shared.reopen(socket)
                {
                    shared.fail(format!(
                        "forwarder: the {} failed and cannot be opened again: {error}; stopping",
                        socket.name()
                    ));
                    return;
                }
                continue;
            }
        };
        if count == 0 {
            continue;
        }
        let snapshot = shared.sad.load();
        let now = shared.clock.now();
        for i in 0..count {
            let segment = batch.segment_size(i);
            let (data, source, truncated) = batch.get_mut(i);
            if truncated {
                shared.sad.count_global_drop(DropReason::Malformed);
                continue;
            }
            if data.is_empty() {
                // What a socket returns once when it was replaced under a blocked receive (the
                // client re-binding to its new address): nothing arrived.
                continue;
            }
            if segment > 0 {
                // Coalesced by UDP GRO: datagrams of `segment` bytes back to back.
                for datagram in data.chunks_mut(segment) {
                    handle(shared, &snapshot, datagram, source, now, tun);
                }
            } else {
                handle(shared, &snapshot, data, source, now, tun);
            }
        }
        tun.flush(&shared.tun);
    }
}

/// The roaming thread (docs/ARCHITECTURE.md, "Roaming"): netlink, the client's NA repetitions,
/// the server's probe retransmissions and timeouts.
fn roaming_loop(shared: Arc<Shared>) {
    roaming::run(
        &shared.roaming,
        &*shared,
        &shared.sad,
        &shared.stop,
        &shared.clock,
    );
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl OuterSockets for Shared {
    fn send_esp(&self, to: Observed, esp: &[u8]) -> io::Result<()> {
        match to.port {
            Some(port) => {
                let udp = self
                    .udp
                    .as_ref()
                    .ok_or_else(|| io::Error::other("no UDP socket"))?;
                udp.send_to(esp, SocketAddrV4::new(to.addr, port))?;
            }
            None => {
                let raw = self
                    .raw
                    .as_ref()
                    .ok_or_else(|| io::Error::other("no raw socket"))?;
                sockets::send_to(raw.as_raw_fd(), esp, SocketAddrV4::new(to.addr, 0))?;
            }
        }
        Ok(())
    }

    fn rebind(&self, old: Ipv4Addr, new: Ipv4Addr) -> io::Result<bool> {
        let mut bound = lock(&self.bound);
        if *bound != Some(old) {
            return Ok(false);
        }
        for socket in [OuterSocket::Udp, OuterSocket::Raw] {
            self.open_again(socket, Some(new))?;
        }
        *bound = Some(new);
        Ok(true)
    }

    fn udp_port(&self) -> u16 {
        self.udp_port
    }
}

/// One of the two outer sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OuterSocket {
    /// UDP 4500: ESP in UDP and IKE.
    Udp,
    /// IP protocol 50.
    Raw,
}

impl OuterSocket {
    fn name(self) -> &'static str {
        match self {
            OuterSocket::Udp => "UDP socket",
            OuterSocket::Raw => "raw ESP socket",
        }
    }
}

impl Shared {
    fn outer_fd(&self, socket: OuterSocket) -> Option<RawFd> {
        match socket {
            OuterSocket::Udp => self.udp.as_ref().map(AsRawFd::as_raw_fd),
            OuterSocket::Raw => self.raw.as_ref().map(AsRawFd::as_raw_fd),
        }
    }

    /// Makes `socket` again where it is bound now, under the same descriptor number.
    fn reopen(&self, socket: OuterSocket) -> io::Result<()> {
        let bound = lock(&self.bound);
        self.open_again(socket, *bound)
    }

    /// Makes `socket` again bound to `bind` (if the forwarder has that socket) and puts it in
    /// the place of the old one.
    fn open_again(&self, socket: OuterSocket, bind: Option<Ipv4Addr>) -> io::Result<()> {
        let Some(fd) = self.outer_fd(socket) else {
            return Ok(());
        };
        let timeout = Duration::from_millis(POLL_MS as u64);
        let fresh: OwnedFd = match socket {
            OuterSocket::Udp => {
                let fresh = sockets::udp_socket(bind, self.udp_port)?;
                if self.udp_gro {
                    sockets::enable_udp_gro(fresh.as_raw_fd());
                }
                fresh.into()
            }
            OuterSocket::Raw => sockets::raw_esp_socket(bind)?,
        };
        sockets::set_read_timeout(fresh.as_raw_fd(), timeout)?;
        sockets::replace_socket(fd, fresh)
    }

    /// The data plane cannot go on: says why in one line and stops the forwarder (exit status
    /// 1), or only logs where nobody can stop it.
    fn fail(&self, why: String) {
        match &self.stopper {
            Some(stopper) => {
                let _ = stopper.send(StopReason::Failed(why));
            }
            None => tracing::error!("{why}"),
        }
    }
}

/// The TUN device was deleted under us: make it again with its addresses and routes, a few
/// times over a few seconds, and say in one line what happened. False if it could not be made
/// again (the forwarder is then stopping).
fn recover_tun(shared: &Shared, error: &io::Error) -> bool {
    let name = shared.device.name();
    let mut last = None;
    for wait in RECREATE_AFTER {
        std::thread::sleep(wait);
        if shared.stop.load(Ordering::Relaxed) {
            return false;
        }
        match shared.device.recreate(&shared.tun) {
            Ok(restored) => {
                // What the controller put on the device besides goes back too.
                shared.events.send(Event::TunnelRecreated);
                tracing::warn!(
                    "forwarder: {name} was deleted ({error}); made it again with its {} \
                     address(es) and {} route(s)",
                    restored.addresses,
                    restored.routes
                );
                return true;
            }
            Err(failure) => last = Some(failure),
        }
    }
    let mut why = last.map_or_else(|| "stopped meanwhile".to_string(), |f| f.to_string());
    if netlink::interface_index(name).is_ok() {
        why.push_str(" (another kind of device has its name now)");
    }
    shared.fail(format!(
        "forwarder: {name} was deleted ({error}) and cannot be made again: {why}; stopping"
    ));
    false
}

/// Advances the forwarder's clock once a second (time limits, last-received ages) and sends NAT
/// keepalives for UDP-encapsulated peers that asked for them.
fn ticker_loop(shared: Arc<Shared>) {
    let mut keepalives = KeepaliveSchedule::default();
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(POLL_MS as u64));
        let turn = shared.clock.now();
        if turn.secs() == shared.sad.now().secs() {
            continue;
        }
        shared.sad.set_now(turn);
        let Some(udp) = shared.udp.as_ref() else {
            continue;
        };
        let snapshot = shared.sad.load();
        let wanted = snapshot.pairs().filter_map(|pair| {
            let interval = pair.nat_keepalive_seconds()?;
            let endpoint = snapshot.endpoint(pair.peer())?;
            let (true, to) = destination(&endpoint) else {
                return None;
            };
            Some((to, interval))
        });
        for to in keepalives.due(turn.secs(), wanted) {
            let _ = udp.send_to(&[NAT_KEEPALIVE], to);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_needs_an_ipv6_header() {
        let mut packet = vec![0u8; 40];
        packet[0] = 0x60;
        packet[24] = 0x20;
        assert_eq!(ipv6_destination(&packet), Some("2000::".parse().unwrap()));
        packet[0] = 0x45;
        assert_eq!(ipv6_destination(&packet), None);
        assert_eq!(ipv6_destination(&packet[..39]), None);
    }
}
