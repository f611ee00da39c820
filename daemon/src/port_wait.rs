//! Binding a port that a daemon killed a moment ago still holds. `kill` returns before the kernel
//! has closed the killed process's sockets, so a daemon that a supervisor starts again at once
//! (docs/ARCHITECTURE.md, "Restart recovery") can meet `EADDRINUSE` on its IKE port, its
//! enrollment listener or its metrics port for a few milliseconds. Such a bind is tried again for a
//! short, bounded time, as the forwarder does for its TUN device; a port still taken after that is
//! an error as before (another program holds it).

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

use crate::clock::now;

/// How long a taken port is waited for.
pub const PATIENCE: Duration = Duration::from_secs(3);
/// How often it is tried meanwhile.
const POLL: Duration = Duration::from_millis(20);

/// Runs `bind` until it succeeds, fails otherwise than with `AddrInUse`, or [`PATIENCE`] passed
/// (blocking; for start-up before the runtime serves anything).
pub fn bind_blocking<T>(what: &str, bind: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    bind_blocking_within(PATIENCE, what, bind)
}

fn bind_blocking_within<T>(
    patience: Duration,
    what: &str,
    mut bind: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    let started = now().mono;
    loop {
        match bind() {
            Err(error) if is_taken(&error) && now().mono - started < patience => {
                std::thread::sleep(POLL)
            }
            result => return waited(what, started, result),
        }
    }
}

/// [`bind_blocking`] for the runtime's sockets.
pub async fn bind<T, F>(what: &str, bind: impl FnMut() -> F) -> io::Result<T>
where
    F: Future<Output = io::Result<T>>,
{
    bind_within(PATIENCE, what, bind).await
}

async fn bind_within<T, F>(
    patience: Duration,
    what: &str,
    mut bind: impl FnMut() -> F,
) -> io::Result<T>
where
    F: Future<Output = io::Result<T>>,
{
    let started = now().mono;
    loop {
        match bind().await {
            Err(error) if is_taken(&error) && now().mono - started < patience => {
                tokio::time::sleep(POLL).await
            }
            result => return waited(what, started, result),
        }
    }
}

fn is_taken(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::AddrInUse
}

/// Says how long a bind had to wait, if it did.
fn waited<T>(what: &str, started: Instant, result: io::Result<T>) -> io::Result<T> {
    let waited = now().mono - started;
    if waited >= POLL {
        match &result {
            Ok(_) => tracing::info!(
                "{what}: the port was still taken (a process that just ended?); bound after {} ms",
                waited.as_millis()
            ),
            Err(_) => tracing::debug!("{what}: still taken after {} ms", waited.as_millis()),
        }
    }
    result
}

#[cfg(test)]
// The tests time the waits with the real clock.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use std::net::{TcpListener, UdpSocket};

    #[test]
    fn a_port_freed_meanwhile_is_bound() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(held);
        });
        let bound = bind_blocking("test listener", || TcpListener::bind(addr)).unwrap();
        assert_eq!(bound.local_addr().unwrap(), addr);
        release.join().unwrap();
    }

    #[test]
    fn a_port_that_stays_taken_is_the_error_it_was() {
        let held = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let started = Instant::now();
        let error = bind_blocking_within(Duration::from_millis(100), "test socket", || {
            UdpSocket::bind(addr)
        })
        .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn other_errors_are_not_waited_for() {
        let started = Instant::now();
        // Not an address of this host.
        let error =
            bind_blocking("test listener", || TcpListener::bind("192.0.2.1:0")).unwrap_err();
        assert_ne!(error.kind(), io::ErrorKind::AddrInUse);
        assert!(started.elapsed() < PATIENCE);
    }

    #[tokio::test]
    async fn the_runtimes_sockets_wait_too() {
        let held = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(held);
        });
        let bound = bind("test socket", || tokio::net::UdpSocket::bind(addr))
            .await
            .unwrap();
        assert_eq!(bound.local_addr().unwrap(), addr);
        release.join().unwrap();
    }
}
