//! The enrollment listener inside `hometun server`: when server.toml has an `[enroll]` table,
//! the daemon answers `hometun enroll` (TLS, one-time tokens) from the CA directory
//! `enroll.pki_dir`, next to IKE. The work is `hometun_pki`'s [`EnrollmentServer`]; this
//! module loads it and binds its socket before the daemon starts, so that a wrong directory
//! or a busy port stops start-up with one line.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use hometun_config::ServerConfig;
use hometun_pki::enroll::server::EnrollmentServer;

/// The service and its bound socket, ready to be served on the daemon's runtime.
pub struct EnrollmentListener {
    service: Arc<EnrollmentServer>,
    socket: std::net::TcpListener,
    address: SocketAddr,
}

impl std::fmt::Debug for EnrollmentListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollmentListener")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// The listener of `config_path`'s `[enroll]` table, bound; `None` without the table.
pub fn prepare(config_path: &Path) -> anyhow::Result<Option<EnrollmentListener>> {
    let Some(enroll) = ServerConfig::load(config_path)?.enroll else {
        return Ok(None);
    };
    let service = EnrollmentServer::new(&enroll.pki_dir).with_context(|| {
        format!(
            "{}: enroll.pki_dir {}",
            config_path.display(),
            enroll.pki_dir.display()
        )
    })?;
    let socket = crate::port_wait::bind_blocking("enrollment listener", || {
        std::net::TcpListener::bind(enroll.listen)
    })
    .with_context(|| {
        format!(
            "{}: enroll.listen: cannot listen on {}",
            config_path.display(),
            enroll.listen
        )
    })?;
    // Tokio takes the socket over; it must not block the runtime's thread.
    socket
        .set_nonblocking(true)
        .context("enrollment socket: non-blocking mode")?;
    let address = socket.local_addr().context("enrollment socket address")?;
    Ok(Some(EnrollmentListener {
        service: Arc::new(service),
        socket,
        address,
    }))
}

impl EnrollmentListener {
    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves on the current tokio runtime until the runtime stops (with the daemon).
    pub fn spawn(self) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::from_std(self.socket)
            .context("enrollment socket: handing it to the runtime")?;
        tracing::info!("enrollment listener on {} (hometun enroll)", self.address);
        tokio::spawn(self.service.serve(listener));
        Ok(())
    }
}
