//! The SA channel over Unix stream sockets: a listening socket that accepts several controllers
//! (the IKE daemon, `hometun status`), and optionally one pre-connected socket (a daemon that
//! spawned the forwarder with a socketpair). Each request gets its reply on its connection;
//! events go to every connected controller. A frame that does not decode gets an error reply and
//! the forwarder goes on.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};
use zeroize::Zeroize;

use crate::events::EventReceiver;
use hometun_control::{
    CodecError, ControlError, Envelope, Event, FrameDecoder, FromForwarder, decode_frame,
    encode_frame,
};

use crate::control_socket::{PeerPolicy, SocketFile};
use crate::requests::{Platform, RequestHandler};

/// Why the server stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// A controller sent `Request::Shutdown`.
    Requested,
    /// SIGTERM or SIGINT.
    Signal,
    /// The pre-connected controller (`--control-fd`), or the one that configured the
    /// interface over the control socket (an IKE daemon's `forwarder_socket`), closed its end.
    ControllerGone,
    /// The data plane cannot go on (its TUN device was deleted and cannot be made again): the
    /// one line that says why.
    Failed(String),
}

/// The channel that stops a server: senders for the signal thread and the data plane, the
/// receiver for [`Server::with_stop_channel`].
pub fn stop_channel() -> (Sender<StopReason>, Receiver<StopReason>) {
    bounded(4)
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::Requested => "asked to by its controller",
            StopReason::Signal => "SIGTERM or SIGINT",
            StopReason::ControllerGone => "its controller closed the channel",
            StopReason::Failed(why) => why,
        })
    }
}

/// How long one frame may take to write before its connection is closed: a controller that
/// reads nothing for this long must not stall the events of the others.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// One connected controller's sending half. Frames go out whole or not at all: a write that
/// fails or times out partway closes the connection, so the reader never sees the rest of the
/// stream shifted by a half frame (it sees the half frame, then the end).
struct Connection {
    stream: Mutex<Writer>,
}

struct Writer {
    stream: UnixStream,
    /// A write failed: nothing more is written, the socket is shut down.
    broken: bool,
}

impl Connection {
    fn new(stream: UnixStream, timeout: Duration) -> Self {
        // A controller that stops reading must not stall the data threads' events forever.
        let _ = stream.set_write_timeout(Some(timeout));
        Connection {
            stream: Mutex::new(Writer {
                stream,
                broken: false,
            }),
        }
    }

    fn send(&self, message: &FromForwarder) -> std::io::Result<()> {
        self.send_all(std::slice::from_ref(message))
    }

    /// Sends several messages with one write (the replies to one read's requests).
    fn send_all(&self, messages: &[FromForwarder]) -> std::io::Result<()> {
        let frames = messages
            .iter()
            .map(encode_frame)
            .collect::<Result<Vec<_>, _>>()
            .map_err(std::io::Error::other)?;
        let joined;
        let frame: &[u8] = match frames.as_slice() {
            [] => return Ok(()),
            // Most writes carry one reply, which can be large (a counter report for every pair):
            // no second copy of it.
            [one] => one,
            several => {
                // Sized once and wiped like each frame (a growing buffer would leave copies
                // behind).
                let mut all = zeroize::Zeroizing::new(Vec::with_capacity(
                    several.iter().map(|frame| frame.len()).sum(),
                ));
                for each in several {
                    all.extend_from_slice(each);
                }
                joined = all;
                &joined
            }
        };
        let mut writer = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        if writer.broken {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        if let Err(error) = writer.stream.write_all(frame) {
            // Part of the frame may be out: no later frame may follow it.
            writer.broken = true;
            let _ = writer.stream.shutdown(std::net::Shutdown::Both);
            if matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                tracing::warn!(
                    "control connection closed: its controller read nothing for {:?}",
                    WRITE_TIMEOUT
                );
            } else {
                tracing::debug!("control connection closed: {error}");
            }
            return Err(error);
        }
        Ok(())
    }
}

/// The running channel: handler, connections and the stop signal.
pub struct Server<P: Platform + 'static> {
    handler: Arc<Mutex<RequestHandler<P>>>,
    connections: Arc<Mutex<Vec<Arc<Connection>>>>,
    stop_tx: Sender<StopReason>,
    stop_rx: Receiver<StopReason>,
    /// The listening socket's file, removed first thing on stop.
    socket_file: Mutex<Option<SocketFile>>,
}

impl<P: Platform + 'static> Server<P> {
    /// A server around a handler; `events` is the receiver the handler's events come out of.
    pub fn new(handler: RequestHandler<P>, events: EventReceiver) -> Self {
        Self::with_stop_channel(handler, events, stop_channel())
    }

    /// A server that stops on what arrives on `stop` (made with [`stop_channel`], whose sender
    /// the platform may hold too).
    pub fn with_stop_channel(
        handler: RequestHandler<P>,
        events: EventReceiver,
        (stop_tx, stop_rx): (Sender<StopReason>, Receiver<StopReason>),
    ) -> Self {
        let server = Server {
            handler: Arc::new(Mutex::new(handler)),
            connections: Arc::new(Mutex::new(Vec::new())),
            stop_tx,
            stop_rx,
            socket_file: Mutex::new(None),
        };
        let connections = server.connections.clone();
        std::thread::Builder::new()
            .name("events".into())
            .spawn(move || broadcast_events(events, connections))
            .expect("spawning the event thread");
        server
    }

    /// The handler (to apply a static configuration before serving).
    pub fn handler(&self) -> &Arc<Mutex<RequestHandler<P>>> {
        &self.handler
    }

    /// A sender that stops the server (the signal thread uses it).
    pub fn stopper(&self) -> Sender<StopReason> {
        self.stop_tx.clone()
    }

    /// Accepts controllers on `listener` from now on, those `policy` admits: any other peer's
    /// connection is closed at once with one log line naming its uid and pid.
    pub fn listen(&self, listener: UnixListener, policy: PeerPolicy) {
        let handler = self.handler.clone();
        let connections = self.connections.clone();
        let stop = self.stop_tx.clone();
        std::thread::Builder::new()
            .name("control-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    match stream {
                        Ok(stream) => match policy.check(&stream) {
                            Ok(_) => spawn_connection(stream, &handler, &connections, &stop, false),
                            Err(refusal) => tracing::warn!("{refusal}"),
                        },
                        Err(error) => tracing::warn!("control socket accept: {error}"),
                    }
                }
            })
            .expect("spawning the accept thread");
    }

    /// Serves one pre-connected controller; when it goes away the server stops.
    pub fn adopt(&self, stream: UnixStream) {
        spawn_connection(
            stream,
            &self.handler,
            &self.connections,
            &self.stop_tx,
            true,
        );
    }

    /// Removes `file` (the listening socket's) as soon as the server stops, before the device
    /// and routes go: a daemon restarted meanwhile then waits for the next forwarder's socket
    /// instead of reaching this one while it shuts down.
    pub fn remove_on_stop(&self, file: SocketFile) {
        *self.socket_file.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
    }

    /// Blocks until a stop reason arrives, then shuts the handler down (routes, TUN, sockets).
    pub fn wait(&self) -> StopReason {
        let reason = self.stop_rx.recv().unwrap_or(StopReason::Signal);
        drop(
            self.socket_file
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        let mut handler = self.handler.lock().unwrap_or_else(|e| e.into_inner());
        handler.shutdown();
        reason
    }
}

fn spawn_connection<P: Platform + 'static>(
    stream: UnixStream,
    handler: &Arc<Mutex<RequestHandler<P>>>,
    connections: &Arc<Mutex<Vec<Arc<Connection>>>>,
    stop: &Sender<StopReason>,
    stop_when_closed: bool,
) {
    let writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(error) => {
            tracing::warn!("control connection: {error}");
            return;
        }
    };
    let connection = Arc::new(Connection::new(writer, WRITE_TIMEOUT));
    connections
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(connection.clone());
    let handler = handler.clone();
    let connections = connections.clone();
    let stop = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("control-conn".into())
        .spawn(move || {
            let configured_here = serve_connection(stream, &connection, &handler, &stop);
            connections
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|c| !Arc::ptr_eq(c, &connection));
            // The controller that set the interface up owns it: the SAs it installed mean
            // nothing without it, and its successor must find a fresh forwarder.
            if stop_when_closed || configured_here {
                let _ = stop.send(StopReason::ControllerGone);
            }
        });
    if let Err(error) = spawned {
        tracing::warn!("control connection thread: {error}");
    }
}

/// Serves one connection until it closes; returns whether it configured the interface.
fn serve_connection<P: Platform>(
    mut stream: UnixStream,
    connection: &Connection,
    handler: &Mutex<RequestHandler<P>>,
    stop: &Sender<StopReason>,
) -> bool {
    let mut decoder = FrameDecoder::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut configured_here = false;
    loop {
        let n = match stream.read(&mut buffer) {
            Ok(0) => return configured_here,
            Ok(n) => n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return configured_here,
        };
        decoder.push(&buffer[..n]);
        // Install frames carry keys: the decoder holds its copy in wiped memory, so none may
        // stay behind here, where later shorter reads would leave them (docs/ARCHITECTURE.md,
        // "Keys and forward secrecy").
        buffer[..n].zeroize();
        // The replies to this read's requests go out together, in order.
        let mut replies = Vec::new();
        loop {
            let body = match decoder.next_frame() {
                Ok(Some(body)) => body,
                Ok(None) => break,
                Err(error) => {
                    // The length prefix is garbage: the stream cannot be resynchronised.
                    replies.push(refusal(0, &error));
                    let _ = connection.send_all(&replies);
                    return configured_here;
                }
            };
            let reply = match decode_frame::<Envelope>(&body) {
                Ok(envelope) => {
                    let configure =
                        matches!(envelope.request, hometun_control::Request::Configure(_));
                    let mut handler = handler.lock().unwrap_or_else(|e| e.into_inner());
                    let result = handler.handle(envelope.request);
                    configured_here |= configure && result.is_ok();
                    if let Err(error) = &result {
                        tracing::warn!("control request {} refused: {error}", envelope.id);
                    }
                    let stopping = handler.is_shut_down();
                    drop(handler);
                    let reply = FromForwarder::Reply {
                        id: envelope.id,
                        result,
                    };
                    if stopping {
                        replies.push(reply);
                        let _ = connection.send_all(&replies);
                        let _ = stop.send(StopReason::Requested);
                        return false;
                    }
                    reply
                }
                Err(error) => {
                    tracing::warn!("control frame refused: {error}");
                    refusal(0, &error)
                }
            };
            replies.push(reply);
        }
        if connection.send_all(&replies).is_err() {
            return configured_here;
        }
    }
}

/// The reply to a frame that did not decode (its id is unknown: 0).
fn refusal(id: u64, error: &CodecError) -> FromForwarder {
    FromForwarder::Reply {
        id,
        result: Err(ControlError::BadFrame(error.to_string())),
    }
}

fn broadcast_events(events: EventReceiver, connections: Arc<Mutex<Vec<Arc<Connection>>>>) {
    while let Some(event) = events.recv() {
        let message = FromForwarder::Event(event);
        let targets: Vec<Arc<Connection>> = connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for connection in targets {
            if let Err(error) = connection.send(&message) {
                tracing::debug!("event not delivered: {error}");
            }
        }
    }
}

/// A blocking client of the SA channel: one request, one reply (events that arrive in between
/// are returned too). Used by `hometun forwarder --counters` and by tests.
pub struct ControlClient {
    stream: UnixStream,
    decoder: FrameDecoder,
    next_id: u64,
}

impl ControlClient {
    /// Connects to a forwarder's control socket.
    pub fn connect(path: &Path) -> std::io::Result<Self> {
        Ok(Self::from_stream(UnixStream::connect(path)?))
    }

    /// Uses an already connected stream.
    pub fn from_stream(stream: UnixStream) -> Self {
        ControlClient {
            stream,
            decoder: FrameDecoder::new(),
            next_id: 1,
        }
    }

    /// Sends raw bytes (tests send garbage this way).
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends a request and waits for its reply; events seen meanwhile are collected.
    pub fn request(
        &mut self,
        request: hometun_control::Request,
    ) -> std::io::Result<(Result<hometun_control::Response, ControlError>, Vec<Event>)> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = encode_frame(&Envelope { id, request }).map_err(std::io::Error::other)?;
        self.stream.write_all(&frame)?;
        let mut events = Vec::new();
        loop {
            match self.next_message()? {
                FromForwarder::Reply { id: got, result } if got == id => {
                    return Ok((result, events));
                }
                FromForwarder::Reply { .. } => {}
                FromForwarder::Event(event) => events.push(event),
            }
        }
    }

    /// The next message from the forwarder (blocking).
    pub fn next_message(&mut self) -> std::io::Result<FromForwarder> {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            if let Some(message) = self
                .decoder
                .next_message::<FromForwarder>()
                .map_err(std::io::Error::other)?
            {
                return Ok(message);
            }
            let n = self.stream.read(&mut buffer)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.decoder.push(&buffer[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use hometun_control::{Envelope, InterfaceConfig, Request, Response};

    use super::*;
    use crate::aead::AeadBackend;
    use crate::events::EventSender;
    use crate::requests::RecordingPlatform;

    fn server() -> (Server<RecordingPlatform>, UnixStream, UnixStream) {
        let (handler, events) =
            RequestHandler::new(RecordingPlatform::default(), AeadBackend::Ring);
        let server = Server::new(handler, events);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        server.listen(
            crate::control_socket::bind_control_socket(&path, 0o600).unwrap(),
            PeerPolicy::new(Vec::new()),
        );
        let a = UnixStream::connect(&path).unwrap();
        let b = UnixStream::connect(&path).unwrap();
        std::mem::forget(dir);
        (server, a, b)
    }

    fn interface() -> InterfaceConfig {
        InterfaceConfig {
            tun_name: "t0".into(),
            mtu: 1400,
            addresses: vec!["fe80::1/64".parse().unwrap()],
            bind_ipv4: None,
            udp_port: 4500,
            raw_esp: false,
            manage_routes: false,
            route_metric: 1,
            route_protocol: 57,
            peer_pool: None,
            clamp_mss: false,
            icmp_source: None,
        }
    }

    #[test]
    fn garbage_gets_an_error_reply_and_the_connection_goes_on() {
        let (_server, a, _b) = server();
        let mut client = ControlClient::from_stream(a);
        client.send_raw(&[0, 0, 0, 3, 0xff, 0xff, 0xff]).unwrap();
        match client.next_message().unwrap() {
            FromForwarder::Reply {
                id: 0,
                result: Err(e),
            } => {
                assert!(
                    matches!(&e, ControlError::BadFrame(text) if text.contains("does not decode")),
                    "{e}"
                )
            }
            other => panic!("unexpected {other:?}"),
        }
        let (result, _) = client.request(Request::Configure(interface())).unwrap();
        assert_eq!(result, Ok(Response::Ok));
        let (result, _) = client.request(Request::Configure(interface())).unwrap();
        assert_eq!(result, Err(ControlError::AlreadyConfigured));
    }

    #[test]
    fn requests_sent_together_are_answered_in_order() {
        let (_server, a, _b) = server();
        let mut client = ControlClient::from_stream(a);
        // Configure, then a second Configure (refused), then GetCounters: one write.
        let mut frames = Vec::new();
        for (id, request) in [
            (11, Request::Configure(interface())),
            (12, Request::Configure(interface())),
            (13, Request::GetCounters),
        ] {
            frames.extend_from_slice(&encode_frame(&Envelope { id, request }).unwrap());
        }
        client.send_raw(&frames).unwrap();
        let mut answers = Vec::new();
        while answers.len() < 3 {
            if let FromForwarder::Reply { id, result } = client.next_message().unwrap() {
                answers.push((id, result.is_ok()));
            }
        }
        assert_eq!(answers, [(11, true), (12, false), (13, true)]);
    }

    #[test]
    fn events_reach_every_controller_and_shutdown_stops_the_server() {
        let (server, a, b) = server();
        let mut a = ControlClient::from_stream(a);
        let mut b = ControlClient::from_stream(b);
        // Make sure both connections are registered before the event is sent.
        a.request(Request::GetCounters).unwrap().0.unwrap();
        b.request(Request::GetCounters).unwrap().0.unwrap();
        let event = Event::SeqExhausted {
            peer: hometun_control::PeerId(3),
            spi_in: hometun_control::Spi(9),
        };
        // An event from the data path: through the SAD's sender.
        let sad = server.handler().lock().unwrap().sad().clone();
        let pair_events = sad_sender(&sad);
        pair_events.send(event.clone());
        assert_eq!(
            a.next_message().unwrap(),
            FromForwarder::Event(event.clone())
        );
        assert_eq!(b.next_message().unwrap(), FromForwarder::Event(event));
        let (result, _) = a.request(Request::Shutdown).unwrap();
        assert_eq!(result, Ok(Response::Ok));
        assert_eq!(server.wait(), StopReason::Requested);
        assert!(server.handler().lock().unwrap().platform().shut_down);
    }

    fn sad_sender(sad: &crate::sad::Sad) -> EventSender {
        sad.events()
    }

    #[test]
    fn the_controller_that_configured_the_interface_owns_it() {
        let (server, a, b) = server();
        let mut a = ControlClient::from_stream(a);
        let mut b = ControlClient::from_stream(b);
        // A controller that only looks (status, counters) comes and goes freely.
        b.request(Request::GetCounters).unwrap().0.unwrap();
        a.request(Request::GetCounters).unwrap().0.unwrap();
        drop(b);
        while server.connections.lock().unwrap().len() > 1 {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            server.stop_rx.try_recv().is_err(),
            "a mere observer stopped it"
        );
        let (result, _) = a.request(Request::Configure(interface())).unwrap();
        assert_eq!(result, Ok(Response::Ok));
        drop(a);
        assert_eq!(server.wait(), StopReason::ControllerGone);
        assert!(server.handler().lock().unwrap().platform().shut_down);
    }

    /// Shrinks a socket's send buffer, so that a reader that pauses makes writes block.
    fn small_send_buffer(stream: &UnixStream) {
        use std::os::fd::AsRawFd;
        let size: libc::c_int = 4096;
        // SAFETY: the option value is a valid c_int for the call; the fd is open.
        let ret = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(ret, 0);
    }

    #[test]
    fn a_slow_reader_gets_whole_frames_then_the_end_never_a_shifted_stream() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        small_send_buffer(&ours);
        let connection = Connection::new(ours, Duration::from_millis(50));
        let local = "192.0.2.1:4500".parse().unwrap();
        let remote = "198.51.100.7:4500".parse().unwrap();
        let writer = std::thread::spawn(move || {
            (0..40u8)
                .map(|n| {
                    let event = FromForwarder::Event(Event::IkeReceived {
                        local,
                        remote,
                        data: vec![n; 30_000],
                    });
                    let sent = connection.send(&event).is_ok();
                    std::thread::sleep(Duration::from_millis(5));
                    sent
                })
                .collect::<Vec<bool>>()
        });
        // Read nothing for a while: a frame times out partway through.
        std::thread::sleep(Duration::from_millis(300));
        theirs
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut decoder = FrameDecoder::new();
        let mut buffer = vec![0u8; 64 * 1024];
        let mut decoded = Vec::new();
        loop {
            let n = theirs.read(&mut buffer).unwrap();
            if n == 0 {
                break;
            }
            decoder.push(&buffer[..n]);
            while let Some(body) = decoder.next_frame().unwrap() {
                match decode_frame::<FromForwarder>(&body).unwrap() {
                    FromForwarder::Event(Event::IkeReceived { data, .. }) => {
                        let n = data[0];
                        assert!(data.len() == 30_000 && data.iter().all(|b| *b == n));
                        decoded.push(n);
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        let sent = writer.join().unwrap();
        let whole = sent.iter().take_while(|ok| **ok).count();
        assert!(whole < sent.len(), "the reader's pause made no write fail");
        assert!(
            sent[whole..].iter().all(|ok| !ok),
            "a frame was written after a failed one: {sent:?}"
        );
        // Every frame sent whole arrived whole, in order, and nothing after them.
        assert_eq!(decoded, (0..whole as u8).collect::<Vec<_>>());
    }

    #[test]
    fn adopted_controller_closing_stops_the_server() {
        let (handler, events) =
            RequestHandler::new(RecordingPlatform::default(), AeadBackend::Ring);
        let server = Server::new(handler, events);
        let (ours, theirs) = UnixStream::pair().unwrap();
        server.adopt(ours);
        let mut client = ControlClient::from_stream(theirs);
        let (result, _) = client.request(Request::GetCounters).unwrap();
        assert!(matches!(result, Ok(Response::Counters(_))));
        drop(client);
        assert_eq!(server.wait(), StopReason::ControllerGone);
    }
}
