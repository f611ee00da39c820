//! The enrollment listener: TLS 1.3 (rustls, ring) with the server's certificate, one request
//! per connection, answered from the CA directory. Every enrollment and every refusal is
//! logged (tracing) with the peer's address.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::protocol::{self, Message, Refusal, RefusalCode, Request};
use crate::server_dir::{Issued, ServerDir};
use crate::token::TokenRefusal;
use crate::{PkiError, files};

/// How long one connection may take, handshake to answer.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed accept, so that a persistent failure does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The enrollment service of one CA directory.
pub struct EnrollmentServer {
    dir: ServerDir,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for EnrollmentServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollmentServer")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// rustls with the ring provider only (no aws-lc), TLS 1.3 only.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl EnrollmentServer {
    /// The service for the CA directory `dir`: its TLS certificate is `server.pem` (sent with
    /// `ca.pem`, which the homes pin), its key `server.key`.
    pub fn new(dir: &Path) -> Result<Self, PkiError> {
        let dir = ServerDir::new(dir);
        let mut chain = files::load_certificates(&dir.server_cert())?;
        chain.push(files::load_certificate(&dir.ca_cert())?);
        let key = files::load_private_key(&dir.server_key())?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| PkiError::Invalid(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| PkiError::file(&dir.server_cert(), format!("TLS: {e}")))?;
        Ok(EnrollmentServer {
            dir,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Serves connections from `listener` for as long as the task runs. A failed accept
    /// (out of file descriptors, a connection reset before it was taken) is logged and the
    /// listener goes on: inside `hometun server` it must not end with one bad moment.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("enrollment listener: accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let this = Arc::clone(&self);
            tokio::spawn(async move {
                match tokio::time::timeout(CONNECTION_TIMEOUT, this.connection(stream, peer)).await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(%peer, "enrollment connection failed: {e}"),
                    Err(_) => tracing::warn!(%peer, "enrollment connection timed out"),
                }
            });
        }
    }

    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Result<(), String> {
        let mut tls = self
            .acceptor
            .accept(stream)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let answer = match protocol::read_message(&mut tls).await {
            Ok(Message::Request(request)) => {
                let this = Arc::clone(&self);
                // Registry work blocks (file lock, fsync): keep it off the async workers.
                tokio::task::spawn_blocking(move || {
                    // The I/O driver reads the clock; the signing step takes it as an argument.
                    this.answer(&request, peer, OffsetDateTime::now_utc())
                })
                .await
                .map_err(|e| format!("enrollment task: {e}"))?
            }
            Ok(other) => {
                tracing::warn!(%peer, "enrollment refused: unexpected {other:?}");
                refused(RefusalCode::BAD_REQUEST, "expected an enrollment request")
            }
            Err(e) => {
                tracing::warn!(%peer, "enrollment refused: bad request: {e}");
                refused(RefusalCode::BAD_REQUEST, &format!("bad request: {e}"))
            }
        };
        protocol::write_message(&mut tls, &answer)
            .await
            .map_err(|e| e.to_string())?;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
        Ok(())
    }

    /// Answers one request at `now`: the bundle, or a refusal. Logs the outcome.
    pub fn answer(&self, request: &Request, peer: SocketAddr, now: OffsetDateTime) -> Message {
        match self
            .dir
            .sign_with_token(&request.csr_der, &request.secret, now)
        {
            Ok(Issued { record, bundle }) => {
                tracing::info!(
                    %peer,
                    name = %record.name,
                    prefix = %record.prefix,
                    serial = %record.serial,
                    "enrolled"
                );
                Message::Bundle(bundle.to_toml())
            }
            Err(e) => {
                let (code, message) = refusal_for(&e);
                tracing::warn!(%peer, code = %code, "enrollment refused: {e}");
                refused(code, &message)
            }
        }
    }
}

fn refused(code: RefusalCode, message: &str) -> Message {
    Message::Refused(Refusal {
        code,
        message: message.to_string(),
    })
}

/// The code and the message the home sees. Internal problems stay in the server's log.
fn refusal_for(e: &PkiError) -> (RefusalCode, String) {
    let code = match e {
        PkiError::Token(TokenRefusal::Unknown) => RefusalCode::UNKNOWN_TOKEN,
        PkiError::Token(TokenRefusal::Used { .. }) => RefusalCode::TOKEN_USED,
        PkiError::Token(TokenRefusal::Expired { .. }) => RefusalCode::TOKEN_EXPIRED,
        PkiError::Token(TokenRefusal::NameMismatch { .. }) => RefusalCode::NAME_MISMATCH,
        PkiError::Csr(_) => RefusalCode::BAD_CSR,
        PkiError::NameTaken { .. } => RefusalCode::NAME_TAKEN,
        PkiError::ReservedName { .. } => RefusalCode::RESERVED_NAME,
        PkiError::PoolExhausted { .. } => RefusalCode::POOL_EXHAUSTED,
        _ => {
            return (
                RefusalCode::INTERNAL,
                "internal error on the enrollment server (see its log)".into(),
            );
        }
    };
    let message = match e {
        // The operator at home needs no serial number; the name and the prefix are theirs.
        PkiError::NameTaken { name, prefix, .. } => {
            format!("{name} already holds {prefix}; ask the operator to revoke it first")
        }
        PkiError::PoolExhausted { .. } => "no prefix is free; ask the operator".into(),
        other => other.to_string(),
    };
    (code, message)
}
