//! Where the daemon's forwarder comes from, and its first request: a child the daemon starts,
//! or a running `hometun forwarder --control PATH` it connects to, whose interface it sets up.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use hometun_control::{Event, InterfaceConfig, Request};
use tokio::process::Child;
use tokio::sync::mpsc;

use crate::forwarder_link::{ForwarderLink, LinkError};

/// Where the daemon's forwarder comes from.
#[derive(Debug, Clone)]
pub enum ForwarderSource {
    /// Start `PROGRAM forwarder --control-fd N ARGS...` as a child joined by a socketpair
    /// (normally our own binary).
    Spawn {
        /// The program.
        program: PathBuf,
        /// Extra arguments (the roaming flags).
        args: Vec<String>,
    },
    /// Connect to a running `hometun forwarder --control PATH` (`forwarder_socket` in the
    /// config), e.g. one systemd started with only CAP_NET_ADMIN and CAP_NET_RAW. Whoever started
    /// it gave it the roaming flags; it stops when this connection closes.
    Connect(PathBuf),
}

/// How long a daemon waits for a forwarder's control socket to appear or accept (a forwarder
/// started by systemd at the same moment binds it a few milliseconds later).
const CONNECT_PATIENCE: Duration = Duration::from_secs(5);

/// Starts or connects to the forwarder. The child is `None` for a forwarder we did not start.
async fn open_forwarder(
    source: &ForwarderSource,
) -> anyhow::Result<(ForwarderLink, mpsc::Receiver<Event>, Option<Child>)> {
    match source {
        ForwarderSource::Spawn { program, args } => {
            let (link, events, child) = ForwarderLink::spawn(program, args)
                .with_context(|| format!("starting {} forwarder", program.display()))?;
            Ok((link, events, Some(child)))
        }
        ForwarderSource::Connect(path) => {
            let deadline = tokio::time::Instant::now() + CONNECT_PATIENCE;
            loop {
                match ForwarderLink::connect(path).await {
                    Ok((link, events)) => return Ok((link, events, None)),
                    Err(error)
                        if matches!(
                            error.kind(),
                            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                        ) && tokio::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(error) => bail!(
                        "forwarder_socket {}: {error} (is `hometun forwarder --control {}` running?)",
                        path.display(),
                        path.display()
                    ),
                }
            }
        }
    }
}

/// Starts or connects to the forwarder and sets its interface up. A forwarder reached through
/// its socket may be the one a killed daemon left: it still accepts for a moment, then stops and
/// closes every connection, while the supervisor starts its successor on the same path. A
/// channel that closes before the set-up was answered is therefore connected again, within
/// [`CONNECT_PATIENCE`], to the socket's next forwarder.
pub(super) async fn open_configured_forwarder(
    source: &ForwarderSource,
    interface: &InterfaceConfig,
) -> anyhow::Result<(ForwarderLink, mpsc::Receiver<Event>, Option<Child>)> {
    let deadline = tokio::time::Instant::now() + CONNECT_PATIENCE;
    loop {
        let (link, events, mut child) = open_forwarder(source).await?;
        match link.request(Request::Configure(interface.clone())).await {
            Ok(_) => return Ok((link, events, child)),
            Err(LinkError::Closed)
                if matches!(source, ForwarderSource::Connect(_))
                    && tokio::time::Instant::now() < deadline =>
            {
                tracing::info!(
                    "forwarder: the forwarder at its socket closed the channel before the set-up \
                     (one that was stopping); connecting again"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => {
                if let Some(child) = child.as_mut() {
                    let _ = child.kill().await;
                }
                // The error's Display already carries its cause: one line, no repetition.
                bail!("forwarder: setting up the tunnel interface: {error}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hometun_control::{Envelope, FrameDecoder, FromForwarder, Response, encode_frame};
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;

    fn interface() -> InterfaceConfig {
        InterfaceConfig {
            tun_name: "test0".into(),
            mtu: 1400,
            addresses: Vec::new(),
            bind_ipv4: None,
            udp_port: 4500,
            raw_esp: true,
            manage_routes: false,
            route_metric: 1024,
            route_protocol: 57,
            peer_pool: None,
            clamp_mss: false,
            icmp_source: None,
        }
    }

    /// Serves one connection on `listener`: answers the first request with Ok.
    fn answer_one(listener: &UnixListener) {
        let (mut stream, _) = listener.accept().unwrap();
        let mut decoder = FrameDecoder::new();
        let mut buffer = [0u8; 4096];
        let envelope: Envelope = loop {
            if let Some(envelope) = decoder.next_message().unwrap() {
                break envelope;
            }
            let n = stream.read(&mut buffer).unwrap();
            assert!(n > 0, "the daemon closed before its request");
            decoder.push(&buffer[..n]);
        };
        assert!(matches!(envelope.request, Request::Configure(_)));
        let reply = FromForwarder::Reply {
            id: envelope.id,
            result: Ok(Response::Ok),
        };
        stream.write_all(&encode_frame(&reply).unwrap()).unwrap();
        // Keep the channel open until the daemon has read the answer.
        let _ = stream.read(&mut buffer);
    }

    /// A killed daemon's forwarder still accepts, then stops and closes the connection; its
    /// successor binds the same path a moment later. The daemon must end up set up with the
    /// successor (it exited with "forwarder channel closed").
    #[tokio::test]
    async fn a_forwarder_that_closes_before_the_set_up_is_followed_by_its_successor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let stopping = UnixListener::bind(&path).unwrap();
        let successor_path = path.clone();
        let forwarders = std::thread::spawn(move || {
            // The predecessor takes the connection and goes away without answering.
            let (stream, _) = stopping.accept().unwrap();
            std::fs::remove_file(&successor_path).unwrap();
            drop(stream);
            drop(stopping);
            std::thread::sleep(Duration::from_millis(200));
            let successor = UnixListener::bind(&successor_path).unwrap();
            answer_one(&successor);
        });
        let opened =
            open_configured_forwarder(&ForwarderSource::Connect(path.clone()), &interface()).await;
        let (link, _events, child) = opened.expect("set up with the successor");
        assert!(child.is_none());
        drop(link);
        tokio::task::spawn_blocking(move || forwarders.join().unwrap())
            .await
            .unwrap();
    }

    /// A child forwarder that dies before answering is an error at once: nobody starts another.
    #[tokio::test]
    async fn a_spawned_forwarder_that_exits_is_an_error_at_once() {
        let source = ForwarderSource::Spawn {
            program: "/bin/true".into(),
            args: Vec::new(),
        };
        let error = open_configured_forwarder(&source, &interface())
            .await
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("setting up the tunnel interface"),
            "{error}"
        );
    }
}
