//! The IKE daemon's end of the SA channel: requests to the forwarder, its replies and events.
//!
//! The daemon starts the forwarder as a child process joined by a socketpair
//! (`hometun forwarder --control-fd N`), or connects to a running forwarder's control socket.
//! Requests are matched to replies by id; events arrive on their own channel.
//!
//! Frames go out whole or not at all: one writer task owns the socket's sending half and writes
//! each request's frame to the end, so a request abandoned partway (a timeout around
//! [`ForwarderLink::request`]) never leaves half a frame in front of the next. A write that
//! fails closes the link.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hometun_control::{
    CodecError, ControlError, Envelope, Event, FrameDecoder, FromForwarder, Request, Response,
    encode_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};

/// Why a request to the forwarder did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The forwarder refused the request; nothing changed there.
    #[error("forwarder refused: {0}")]
    Refused(#[from] ControlError),
    /// The channel is gone (the forwarder exited).
    #[error("forwarder channel closed")]
    Closed,
    /// Writing to the channel failed.
    #[error("forwarder channel: {0}")]
    Io(#[from] std::io::Error),
    /// A message could not be framed.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

type Pending = Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Result<Response, ControlError>>>>>;

/// Frames waiting for the writer task.
const QUEUED_FRAMES: usize = 64;

/// A connection to a forwarder. Cheap to clone; all clones share the connection.
#[derive(Clone)]
pub struct ForwarderLink {
    frames: mpsc::Sender<zeroize::Zeroizing<Vec<u8>>>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for ForwarderLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwarderLink").finish_non_exhaustive()
    }
}

/// `-v`/`-vv` as our own logging has it, so that the forwarder child logs as much detail as we
/// do (RUST_LOG, when set, reaches it through the environment anyway).
fn verbosity_args() -> Option<&'static str> {
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::TRACE => Some("-vv"),
        LevelFilter::DEBUG => Some("-v"),
        _ => None,
    }
}

impl ForwarderLink {
    /// Starts `program forwarder --control-fd N` as a child joined by a socketpair.
    /// Returns the link, the forwarder's events and the child (kill it to stop the forwarder
    /// if it does not stop on [`Request::Shutdown`]).
    ///
    /// The child is killed (SIGKILL) the moment the thread that calls this ends, whatever way
    /// the daemon dies (`kill -9` included): the kernel then closes the TUN device, which is not
    /// persistent, so it and its routes go at once and a daemon started again finds the name
    /// free. Call it from a thread that lives as long as the daemon: the daemons run their
    /// driver on the main thread (a current-thread runtime's `block_on`).
    pub fn spawn(
        program: &Path,
        extra_args: &[String],
    ) -> std::io::Result<(ForwarderLink, mpsc::Receiver<Event>, tokio::process::Child)> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        // The child must inherit its end: clear close-on-exec on it only.
        clear_cloexec(&theirs)?;
        let parent = nix::unistd::getpid();
        let mut command = tokio::process::Command::new(program);
        command
            .arg("forwarder")
            .arg("--control-fd")
            .arg(theirs.as_raw_fd().to_string())
            .args(extra_args)
            .args(verbosity_args())
            .kill_on_drop(true);
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed: it makes two system calls (prctl, getppid) and
        // builds an io::Error from an errno, which does not allocate. It touches no lock and no
        // memory shared with the parent.
        unsafe {
            command.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                // The parent may have died before the line above: then nobody will send the
                // signal, and our parent is already another process.
                if nix::unistd::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        drop(theirs);
        ours.set_nonblocking(true)?;
        let (link, events) = ForwarderLink::from_stream(UnixStream::from_std(ours)?);
        Ok((link, events, child))
    }

    /// Connects to a forwarder's control socket.
    pub async fn connect(path: &Path) -> std::io::Result<(ForwarderLink, mpsc::Receiver<Event>)> {
        Ok(ForwarderLink::from_stream(UnixStream::connect(path).await?))
    }

    /// Wraps a connected stream; spawns the task that reads replies and events.
    pub fn from_stream(stream: UnixStream) -> (ForwarderLink, mpsc::Receiver<Event>) {
        let (mut reader, writer) = stream.into_split();
        let pending: Pending = Arc::default();
        let (event_tx, event_rx) = mpsc::channel(1024);
        let closed = Arc::new(AtomicBool::new(false));
        let reader_pending = pending.clone();
        let reader_closed = closed.clone();
        tokio::spawn(async move {
            let mut decoder = FrameDecoder::new();
            let mut buf = vec![0u8; 64 * 1024];
            'read: loop {
                let n = match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                decoder.push(&buf[..n]);
                loop {
                    match decoder.next_message::<FromForwarder>() {
                        Ok(Some(FromForwarder::Reply { id, result })) => {
                            let waiter = lock(&reader_pending).remove(&id);
                            if let Some(waiter) = waiter {
                                let _ = waiter.send(result);
                            }
                        }
                        Ok(Some(FromForwarder::Event(event))) => {
                            if event_tx.send(event).await.is_err() {
                                // Nobody listens for events any more; replies still matter.
                            }
                        }
                        Ok(None) => break,
                        Err(CodecError::TooLong(len)) => {
                            tracing::error!("forwarder sent a frame of {len} bytes; closing link");
                            break 'read;
                        }
                        Err(error) => tracing::warn!("forwarder message ignored: {error}"),
                    }
                }
            }
            // Fail every request still waiting, and every later one: the forwarder is gone.
            reader_closed.store(true, Ordering::SeqCst);
            lock(&reader_pending).clear();
        });
        let (frames, queued) = mpsc::channel(QUEUED_FRAMES);
        tokio::spawn(write_frames(
            writer,
            queued,
            pending.clone(),
            closed.clone(),
        ));
        let link = ForwarderLink {
            frames,
            pending,
            next_id: Arc::new(AtomicU64::new(1)),
            closed,
        };
        (link, event_rx)
    }

    /// Sends a request and waits for its reply.
    pub async fn request(&self, request: Request) -> Result<Response, LinkError> {
        self.send(request).await?.await
    }

    /// Queues a request and returns its reply to await later: a caller with several requests
    /// in a row sends them all and the forwarder answers them in one go (requests are carried
    /// out in the order they were sent).
    pub async fn send(&self, request: Request) -> Result<PendingReply, LinkError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_frame(&Envelope { id, request })?;
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        // Checked after inserting: the reader sets the flag before it clears the map.
        if self.closed.load(Ordering::SeqCst) {
            lock(&self.pending).remove(&id);
            return Err(LinkError::Closed);
        }
        // Cancelled here, the frame is either queued whole or not at all.
        if self.frames.send(frame).await.is_err() {
            lock(&self.pending).remove(&id);
            return Err(LinkError::Closed);
        }
        Ok(PendingReply(rx))
    }
}

/// The forwarder's answer to a request sent with [`ForwarderLink::send`], to await.
#[derive(Debug)]
pub struct PendingReply(oneshot::Receiver<Result<Response, ControlError>>);

impl std::future::Future for PendingReply {
    type Output = Result<Response, LinkError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|received| match received {
                Ok(result) => result.map_err(LinkError::from),
                Err(_) => Err(LinkError::Closed),
            })
    }
}

/// The writer task: writes each queued frame to the end. After a failed write (part of the
/// frame may be out) it writes nothing more: it shuts the socket's sending half (the forwarder
/// sees the end of the stream and stops) and fails every waiting request.
async fn write_frames(
    mut writer: OwnedWriteHalf,
    mut queued: mpsc::Receiver<zeroize::Zeroizing<Vec<u8>>>,
    pending: Pending,
    closed: Arc<AtomicBool>,
) {
    while let Some(first) = queued.recv().await {
        // Whatever else is queued goes out with it: one write, one wake-up of the forwarder.
        let mut frames = vec![first];
        while let Ok(more) = queued.try_recv() {
            frames.push(more);
        }
        let batch = match frames.len() {
            1 => frames.swap_remove(0),
            _ => {
                // Sized once: frames carry keys, and a growing buffer would leave copies of
                // them in the blocks it gave back.
                let size = frames.iter().map(|frame| frame.len()).sum();
                let mut joined = zeroize::Zeroizing::new(Vec::with_capacity(size));
                for frame in &frames {
                    joined.extend_from_slice(frame);
                }
                joined
            }
        };
        drop(frames);
        if let Err(error) = writer.write_all(&batch).await {
            tracing::warn!("forwarder channel: a request could not be written, closing: {error}");
            break;
        }
    }
    closed.store(true, Ordering::SeqCst);
    queued.close();
    lock(&pending).clear();
    let _ = writer.shutdown().await;
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock leaves a plain map behind, still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn clear_cloexec(stream: &std::os::unix::net::UnixStream) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    fcntl(stream, FcntlArg::F_SETFD(FdFlag::empty())).map_err(std::io::Error::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hometun_control::{Spi, decode_frame};

    use super::*;

    /// A fake forwarder on the other end of a socketpair: answers GetCounters with an error, and
    /// everything else with Ok, after first sending an event.
    async fn fake_forwarder(stream: UnixStream) {
        let (mut reader, mut writer) = stream.into_split();
        let mut decoder = FrameDecoder::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = reader.read(&mut buf).await.expect("read");
            if n == 0 {
                return;
            }
            decoder.push(&buf[..n]);
            while let Some(body) = decoder.next_frame().expect("frame") {
                let envelope: Envelope = decode_frame(&body).expect("decodes");
                let event = FromForwarder::Event(Event::SeqExhausted {
                    peer: hometun_control::PeerId(1),
                    spi_in: Spi(envelope.id as u32),
                });
                writer
                    .write_all(&encode_frame(&event).expect("encodes"))
                    .await
                    .expect("write");
                let result = match envelope.request {
                    Request::GetCounters => Err(ControlError::NotConfigured),
                    _ => Ok(Response::Ok),
                };
                let reply = FromForwarder::Reply {
                    id: envelope.id,
                    result,
                };
                writer
                    .write_all(&encode_frame(&reply).expect("encodes"))
                    .await
                    .expect("write");
            }
        }
    }

    #[tokio::test]
    async fn replies_match_requests_and_events_arrive_apart() {
        let (a, b) = UnixStream::pair().unwrap();
        tokio::spawn(fake_forwarder(b));
        let (link, mut events) = ForwarderLink::from_stream(a);
        assert_eq!(link.request(Request::Shutdown).await.unwrap(), Response::Ok);
        let refused = link.request(Request::GetCounters).await.unwrap_err();
        assert!(
            matches!(refused, LinkError::Refused(ControlError::NotConfigured)),
            "{refused}"
        );
        assert_eq!(
            refused.to_string(),
            "forwarder refused: not configured yet: send Configure first"
        );
        let first = events.recv().await.unwrap();
        assert_eq!(
            first,
            Event::SeqExhausted {
                peer: hometun_control::PeerId(1),
                spi_in: Spi(1)
            }
        );
    }

    #[tokio::test]
    async fn requests_sent_before_any_answer_get_their_own_answers() {
        let (a, b) = UnixStream::pair().unwrap();
        tokio::spawn(fake_forwarder(b));
        let (link, _events) = ForwarderLink::from_stream(a);
        // Three on their way at once (the driver's pipelining), answered out of one read.
        let first = link.send(Request::Shutdown).await.unwrap();
        let second = link.send(Request::GetCounters).await.unwrap();
        let third = link.send(Request::Shutdown).await.unwrap();
        assert_eq!(third.await.unwrap(), Response::Ok);
        assert!(matches!(
            second.await,
            Err(LinkError::Refused(ControlError::NotConfigured))
        ));
        assert_eq!(first.await.unwrap(), Response::Ok);
    }

    /// Shrinks a socket's send buffer, so that a peer that does not read makes writes block.
    fn small_send_buffer(stream: &UnixStream) {
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

    #[tokio::test]
    async fn a_request_abandoned_mid_write_leaves_no_half_frame() {
        let (a, b) = UnixStream::pair().unwrap();
        small_send_buffer(&a);
        let (link, _events) = ForwarderLink::from_stream(a);
        let big = |n: u8| Request::SendIke {
            local: "192.0.2.1:4500".parse().unwrap(),
            remote: "198.51.100.7:4500".parse().unwrap(),
            data: vec![n; 100_000],
        };
        // The forwarder reads nothing yet: the first request's frame cannot go out whole, and
        // its caller gives up (as the driver's shutdown does after its grace period).
        let abandoned =
            tokio::time::timeout(Duration::from_millis(100), link.request(big(1))).await;
        assert!(abandoned.is_err(), "the request did not block");
        // Now the forwarder reads, and answers: every frame it gets must decode.
        tokio::spawn(fake_forwarder(b));
        let answered = tokio::time::timeout(Duration::from_secs(10), link.request(big(2)))
            .await
            .expect("no answer: the stream was garbled");
        assert_eq!(answered.unwrap(), Response::Ok);
    }

    #[tokio::test]
    async fn a_vanished_forwarder_fails_the_request() {
        let (a, b) = UnixStream::pair().unwrap();
        let (link, _events) = ForwarderLink::from_stream(a);
        drop(b);
        let error = link.request(Request::GetCounters).await.unwrap_err();
        assert!(
            matches!(error, LinkError::Closed | LinkError::Io(_)),
            "{error}"
        );
    }
}
