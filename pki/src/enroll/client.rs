//! `hometun enroll`: make the key and CSR here, send the CSR with the token's secret over TLS
//! to the enrollment server, whose chain must lead to the CA the token pins, and import the
//! bundle that comes back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hometun_config::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::protocol::{self, Message, Request};
use super::server::provider;
use crate::PkiError;
use crate::bundle::Bundle;
use crate::ca::{KeyType, fingerprint};
use crate::client_dir::ClientDir;
use crate::csr::make_csr;
use crate::token::Token;
use hometun_certs::verify::TrustStore;

/// How long the whole exchange may take.
pub const ENROLL_TIMEOUT: Duration = Duration::from_secs(60);

/// Accepts the enrollment server only if its chain leads to the CA certificate whose SHA-256
/// the token carries. The CA signs client certificates too, so the server certificate must
/// also carry the serverAuth EKU (client certificates carry clientAuth only): a home cannot
/// pose as the enrollment server.
#[derive(Debug)]
pub struct PinnedCaVerifier {
    fingerprint: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl PinnedCaVerifier {
    /// A verifier pinning the CA certificate with this SHA-256.
    pub fn new(fingerprint: [u8; 32]) -> Self {
        PinnedCaVerifier {
            fingerprint,
            provider: provider(),
        }
    }
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| fingerprint(c) == self.fingerprint)
            .ok_or(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))?;
        let store = TrustStore::new(ca.clone().into_owned(), &[])
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        store
            .verify_server(end_entity, &[], None, now)
            .map_err(|e| {
                rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                    Arc::new(ChainError(e.to_string())),
                )))
            })?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[derive(Debug)]
struct ChainError(String);

impl std::fmt::Display for ChainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "server certificate does not chain to the pinned CA: {}",
            self.0
        )
    }
}

impl std::error::Error for ChainError {}

/// Enrolls the home in `dir` with `token`, talking to `server` (the token's address unless
/// overridden), with a new key of `key_type`: an enrollment is a new identity, and a home
/// enrolled again after a revocation must not carry on with a key that may be why it was
/// revoked. The key replaces `client.key` only with the bundle (a failed attempt changes nothing).
pub async fn enroll(
    dir: &ClientDir,
    token: &Token,
    server: SocketAddr,
    key_type: KeyType,
    now: UnixTime,
) -> Result<(Bundle, ClientConfig), PkiError> {
    let key = key_type.generate()?;
    let csr_pem = make_csr(&key, &token.name)?;
    let csr_der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| PkiError::Csr(e.to_string()))?;
    let request = Message::Request(Request {
        secret: token.secret,
        csr_der: csr_der.as_ref().to_vec(),
    });
    let fail = |problem: String| PkiError::Enrollment { server, problem };
    let answer = tokio::time::timeout(
        ENROLL_TIMEOUT,
        exchange(token.ca_fingerprint, server, &request, None),
    )
    .await
    .unwrap_or(Err(ExchangeError::TimedOut))
    .map_err(|e| fail(with_hint(&e, token, server)))?;
    let bundle = match answer {
        Message::Bundle(text) => Bundle::parse(text.as_bytes())?,
        Message::Refused(r) => {
            return Err(PkiError::Refused {
                code: r.code,
                message: r.message,
            });
        }
        Message::Request(_) | Message::Renew(_) => {
            return Err(fail("the server sent a request".into()));
        }
    };
    if fingerprint(&bundle.ca_der()?) != token.ca_fingerprint {
        return Err(fail("the bundle's CA is not the one the token pins".into()));
    }
    if bundle.name != token.name {
        return Err(fail(format!(
            "the bundle is for {}, the token for {}",
            bundle.name, token.name
        )));
    }
    // The same listener renews the certificate later (client.toml [renew] server).
    let config = dir.import_enrolled(&bundle, now, server, &key)?;
    Ok((bundle, config))
}

/// The next step, where the cause of a failed enrollment is known.
fn with_hint(error: &ExchangeError, token: &Token, server: SocketAddr) -> String {
    let problem = error.to_string();
    let hint = if problem.contains("UnknownIssuer") {
        "this server is not the CA the token was made for (a token from another server, or a \
CA made again since)"
            .to_string()
    } else if matches!(error, ExchangeError::Connect(_) | ExchangeError::TimedOut) {
        if server == token.server {
            format!(
                "nothing answers at {server}: is [enroll] on in the server's server.toml, and TCP \
{} open in its firewall?",
                server.port()
            )
        } else {
            format!(
                "nothing answers at {server}; the token carries the enrollment address {}, so \
--server is rarely needed",
                token.server
            )
        }
    } else {
        return problem;
    };
    format!("{problem}: {hint}")
}

/// Why a request to the enrollment listener got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    /// The TLS client settings could not be made.
    #[error("TLS: {0}")]
    Tls(rustls::Error),
    /// The home's certificate or key was not taken for TLS client authentication.
    #[error("TLS client certificate: {0}")]
    ClientCertificate(rustls::Error),
    /// No TCP connection to the listener.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The TLS handshake failed (e.g. a certificate the pinned CA did not issue).
    #[error("TLS handshake: {0}")]
    Handshake(std::io::Error),
    /// The request could not be sent or the answer not read.
    #[error(transparent)]
    Protocol(#[from] protocol::ProtocolError),
    /// No answer within the enrollment's time limit.
    #[error("timed out")]
    TimedOut,
}

/// One request and its answer over TLS 1.3 with the enrollment server at `server`, whose chain
/// must lead to the CA with SHA-256 `ca_fingerprint` (and carry serverAuth); with
/// `client_auth`, the home authenticates with that certificate chain and key.
pub(crate) async fn exchange(
    ca_fingerprint: [u8; 32],
    server: SocketAddr,
    request: &Message,
    client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Message, ExchangeError> {
    let config = crate::renew::client_config(ca_fingerprint, client_auth)?;
    let stream = TcpStream::connect(server)
        .await
        .map_err(ExchangeError::Connect)?;
    // An IP address as the name: no SNI is sent; the verifier pins the CA instead.
    let name = ServerName::IpAddress(server.ip().into());
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(ExchangeError::Handshake)?;
    protocol::write_message(&mut tls, request).await?;
    Ok(protocol::read_message(&mut tls).await?)
}
