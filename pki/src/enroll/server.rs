//! The enrollment listener: TLS 1.3 (rustls, ring) with the server's certificate, one request
//! per connection, answered from the CA directory. Every enrollment, renewal and refusal is
//! logged (tracing) with the peer's address.
//!
//! Anyone can connect, so the listener spends as little as it can before it knows who asks:
//! [`Admission`] closes connections over its cap or rate at once; the TLS handshake and the
//! request each have a deadline; a token request's token is checked before its CSR is parsed
//! or the CA key read ([`ServerDir::sign_with_token`]); a renewal needs a client certificate
//! whose key signed the handshake, and that certificate is checked before its CSR.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::client_auth::DeferredClientAuth;
use super::limits::{Admission, AdmissionStats, ListenerLimits};
use super::protocol::{self, Message, Refusal, RefusalCode, RenewRequest, Request};
use crate::renewal::RenewalRefusal;
use crate::server_dir::{Issued, ServerDir};
use crate::token::TokenRefusal;
use crate::{PkiError, files};

/// How long one connection may take, handshake to answer.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed accept, so that a persistent failure does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Why a connection to the listener ended without an answer sent (logged, one line a
/// connection).
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    /// The client did not finish the TLS handshake in time.
    #[error("TLS handshake timed out")]
    HandshakeTimedOut,
    /// The TLS handshake failed.
    #[error("TLS handshake: {0}")]
    Handshake(std::io::Error),
    /// The client sent no request in time.
    #[error("no request in time")]
    NoRequestInTime,
    /// The blocking task that answers the request panicked.
    #[error("enrollment task: {0}")]
    Task(tokio::task::JoinError),
    /// The answer could not be written.
    #[error(transparent)]
    Protocol(#[from] protocol::ProtocolError),
}

/// The enrollment service of one CA directory.
pub struct EnrollmentServer {
    dir: ServerDir,
    acceptor: TlsAcceptor,
    admission: Admission,
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

/// What the listener knows of a connection besides its request.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The peer's address.
    pub address: SocketAddr,
    /// The TLS client certificate (DER) whose key signed the handshake, if one was sent.
    pub certificate: Option<&'a [u8]>,
}

impl EnrollmentServer {
    /// The service for the CA directory `dir` with the default [`ListenerLimits`]: its TLS
    /// certificate is `server.pem` (sent with `ca.pem`, which the homes pin), its key
    /// `server.key`.
    pub fn new(dir: &Path) -> Result<Self, PkiError> {
        Self::with_limits(dir, ListenerLimits::default())
    }

    /// [`EnrollmentServer::new`] with other limits.
    pub fn with_limits(dir: &Path, limits: ListenerLimits) -> Result<Self, PkiError> {
        Self::for_dir(ServerDir::new(dir), limits)
    }

    /// [`EnrollmentServer::with_limits`] for a [`ServerDir`] already set up (its registry
    /// perhaps a database named on the command line).
    pub fn for_dir(dir: ServerDir, limits: ListenerLimits) -> Result<Self, PkiError> {
        // The CA key is read at each signing; a mode others can read is refused at start
        // (and by `hometun server --check`), not at the first enrollment.
        files::check_private_mode(&dir.ca_key())?;
        let mut chain = files::load_certificates(&dir.server_cert())?;
        chain.push(files::load_certificate(&dir.ca_cert())?);
        let key = files::load_private_key(&dir.server_key())?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| PkiError::Invalid(format!("TLS: {e}")))?
            .with_client_cert_verifier(Arc::new(DeferredClientAuth::new(provider())))
            .with_single_cert(chain, key)
            .map_err(|e| PkiError::file(&dir.server_cert(), format!("TLS: {e}")))?;
        // The I/O driver reads the clock; admission takes it as an argument.
        #[allow(clippy::disallowed_methods)]
        let admission = Admission::new(limits, Instant::now());
        Ok(EnrollmentServer {
            dir,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            admission,
        })
    }

    /// Connections admitted and closed at once so far.
    pub fn stats(&self) -> AdmissionStats {
        self.admission.stats()
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
            // The I/O driver reads the clock; admission takes it as an argument.
            #[allow(clippy::disallowed_methods)]
            let now = Instant::now();
            let Ok(permit) = self.admission.admit(peer.ip(), now) else {
                // Closed before TLS; counted and logged by the admission.
                drop(stream);
                continue;
            };
            let this = Arc::clone(&self);
            tokio::spawn(async move {
                match tokio::time::timeout(CONNECTION_TIMEOUT, this.connection(stream, peer)).await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(%peer, "enrollment connection failed: {e}"),
                    Err(_) => tracing::warn!(%peer, "enrollment connection timed out"),
                }
                drop(permit);
            });
        }
    }

    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Result<(), ConnectionError> {
        let limits = self.admission.limits().clone();
        let mut tls = tokio::time::timeout(limits.handshake_timeout, self.acceptor.accept(stream))
            .await
            .map_err(|_| ConnectionError::HandshakeTimedOut)?
            .map_err(ConnectionError::Handshake)?;
        let certificate: Option<CertificateDer<'static>> = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|c| c.clone().into_owned());
        let body = tokio::time::timeout(limits.request_timeout, protocol::read_body(&mut tls))
            .await
            .map_err(|_| ConnectionError::NoRequestInTime)?;
        let answer = match body {
            Ok(body) => {
                let this = Arc::clone(&self);
                // Registry work blocks (file lock, fsync): keep it off the async workers.
                tokio::task::spawn_blocking(move || {
                    let caller = Caller {
                        address: peer,
                        certificate: certificate.as_deref(),
                    };
                    // The I/O driver reads the clock; the signing step takes it as an argument.
                    this.handle(&body, &caller, OffsetDateTime::now_utc())
                })
                .await
                .map_err(ConnectionError::Task)?
            }
            Err(e) => {
                tracing::warn!(%peer, "enrollment refused: bad request: {e}");
                refused(RefusalCode::BAD_REQUEST, &format!("bad request: {e}"))
            }
        };
        protocol::write_message(&mut tls, &answer).await?;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
        Ok(())
    }

    /// Answers one request body (a frame's contents, from its first byte) from `caller` at
    /// `now`: a bundle or a refusal. Logs the outcome.
    pub fn handle(&self, body: &[u8], caller: &Caller<'_>, now: OffsetDateTime) -> Message {
        let peer = caller.address;
        match Message::parse(body) {
            Ok(Message::Request(request)) => self.answer(&request, peer, now),
            Ok(Message::Renew(request)) => self.answer_renewal(&request, caller, now),
            Ok(other) => {
                tracing::warn!(%peer, "enrollment refused: unexpected {other:?}");
                refused(RefusalCode::BAD_REQUEST, "expected an enrollment request")
            }
            Err(e) => {
                tracing::warn!(%peer, "enrollment refused: bad request: {e}");
                refused(RefusalCode::BAD_REQUEST, &format!("bad request: {e}"))
            }
        }
    }

    /// Answers one token request at `now`: the bundle, or a refusal. Logs the outcome.
    pub fn answer(&self, request: &Request, peer: SocketAddr, now: OffsetDateTime) -> Message {
        let result = self
            .dir
            .sign_with_token(&request.csr_der, &request.secret, now);
        outcome(result, peer, "enrolled", "enrollment")
    }

    /// Answers one renewal at `now`.
    pub fn answer_renewal(
        &self,
        request: &RenewRequest,
        caller: &Caller<'_>,
        now: OffsetDateTime,
    ) -> Message {
        let result = match caller.certificate {
            None => Err(PkiError::Renewal(RenewalRefusal::NotAuthenticated)),
            Some(certificate) => self.dir.renew(certificate, &request.csr_der, now),
        };
        outcome(result, caller.address, "renewed", "renewal")
    }
}

/// The message for an issuing step's result, logged.
fn outcome(result: Result<Issued, PkiError>, peer: SocketAddr, done: &str, what: &str) -> Message {
    match result {
        Ok(Issued { record, bundle }) => {
            tracing::info!(
                %peer,
                name = %record.name,
                prefix = %record.prefix,
                serial = %record.serial,
                "{done}"
            );
            Message::Bundle(bundle.to_toml())
        }
        Err(e) => {
            let (code, message) = refusal_for(&e);
            tracing::warn!(%peer, code = %code, "{what} refused: {e}");
            refused(code, &message)
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
        PkiError::Renewal(RenewalRefusal::NotAuthenticated) => RefusalCode::NOT_AUTHENTICATED,
        PkiError::Renewal(RenewalRefusal::Certificate(_) | RenewalRefusal::Unknown(_)) => {
            RefusalCode::CERTIFICATE_REFUSED
        }
        PkiError::Renewal(RenewalRefusal::NotCurrent { .. }) => RefusalCode::NOT_CURRENT,
        PkiError::Renewal(RenewalRefusal::NameMismatch { .. }) => RefusalCode::NAME_MISMATCH,
        PkiError::Csr(_) => RefusalCode::BAD_CSR,
        PkiError::NameTaken { .. } => RefusalCode::NAME_TAKEN,
        PkiError::ReservedName { .. } => RefusalCode::RESERVED_NAME,
        PkiError::PoolExhausted { .. } => RefusalCode::POOL_EXHAUSTED,
        PkiError::KeyRevoked { .. } => RefusalCode::KEY_REVOKED,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{CA_KEY_LOADS, KeyType};
    use crate::csr::CSR_CHECKS;
    use crate::server_dir::InitOptions;

    fn ca_dir(dir: &Path) -> ServerDir {
        let s = ServerDir::new(dir);
        s.init(
            &InitOptions {
                server_ipv4: "192.0.2.1".parse().unwrap(),
                server_name: "vps.example".into(),
                pool: "2001:db8:100::/48".parse().unwrap(),
                prefix_len: 64,
                key: KeyType::Ed25519,
                grace_days: 30,
                enroll_port: 8443,
            },
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        s
    }

    fn counts() -> (usize, usize) {
        (CA_KEY_LOADS.with(|n| n.get()), CSR_CHECKS.with(|n| n.get()))
    }

    /// A request with a wrong token is refused for the token before anything reads its CSR or
    /// the CA key: the counters of this thread do not move.
    #[test]
    fn the_token_is_checked_before_the_csr_and_the_ca_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ca_dir(tmp.path());
        let now = OffsetDateTime::now_utc();
        dir.make_token("home.example", 24 * 60, None, now).unwrap();
        let server = EnrollmentServer::new(dir.dir()).unwrap();
        let caller = Caller {
            address: "198.51.100.7:40000".parse().unwrap(),
            certificate: None,
        };
        let garbage = Message::Request(Request {
            secret: [0x5a; 32],
            csr_der: b"not a CSR at all".to_vec(),
        });
        let mut body = Vec::new();
        garbage.emit(&mut body);
        let before = counts();
        match server.handle(&body, &caller, now) {
            Message::Refused(r) => assert_eq!(r.code, RefusalCode::UNKNOWN_TOKEN, "{r:?}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(counts(), before, "CSR or CA key touched before the token");

        // With the right token the same garbage reaches the CSR check, still not the CA key.
        let token = dir.make_token("other.example", 24 * 60, None, now).unwrap();
        let with_token = Message::Request(Request {
            secret: token.secret,
            csr_der: b"not a CSR at all".to_vec(),
        });
        let mut body = Vec::new();
        with_token.emit(&mut body);
        let before = counts();
        match server.handle(&body, &caller, now) {
            Message::Refused(r) => assert_eq!(r.code, RefusalCode::BAD_CSR, "{r:?}"),
            other => panic!("{other:?}"),
        }
        let after = counts();
        assert_eq!(after.0, before.0, "CA key read for a bad CSR");
        assert_eq!(after.1, before.1 + 1);
        // The token was not used up by the bad CSR.
        let data = dir.registry().unwrap().load().unwrap();
        assert!(data.tokens.iter().all(|t| t.used.is_none()));

        // A good CSR with it: the CA key is read once, for the signing.
        let key = KeyType::Ed25519.generate().unwrap();
        let pem = crate::csr::make_csr(&key, "other.example").unwrap();
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|c: rustls_pki_types::CertificateSigningRequestDer<'_>| c.to_vec())
            .unwrap();
        let good = Message::Request(Request {
            secret: token.secret,
            csr_der: der,
        });
        let mut body = Vec::new();
        good.emit(&mut body);
        let before = counts();
        assert!(matches!(
            server.handle(&body, &caller, now),
            Message::Bundle(_)
        ));
        assert_eq!(counts().0, before.0 + 1);
    }

    #[test]
    fn a_renewal_without_a_client_certificate_is_refused_before_its_csr() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ca_dir(tmp.path());
        let server = EnrollmentServer::new(dir.dir()).unwrap();
        let caller = Caller {
            address: "198.51.100.7:40000".parse().unwrap(),
            certificate: None,
        };
        let mut body = Vec::new();
        Message::Renew(RenewRequest {
            csr_der: b"garbage".to_vec(),
        })
        .emit(&mut body);
        let before = counts();
        match server.handle(&body, &caller, OffsetDateTime::now_utc()) {
            Message::Refused(r) => assert_eq!(r.code, RefusalCode::NOT_AUTHENTICATED),
            other => panic!("{other:?}"),
        }
        assert_eq!(counts(), before);
    }
}
