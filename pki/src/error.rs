//! The crate's error type: one line each, naming the file, client or pool concerned.

use std::path::{Path, PathBuf};

use ipnet::Ipv6Net;

use crate::bundle::BundleError;
use crate::token::TokenRefusal;

/// What went wrong in a PKI operation.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a file failed. The cause is told in the line itself (`not found`),
    /// not again as a source, so that a chained report says it once.
    #[error("{}: {}", path.display(), hometun_config::io_problem(error))]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// A file exists but its contents are wrong (bad PEM, wrong kind of object).
    #[error("{}: {problem}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// server.toml or client.toml is wrong.
    #[error(transparent)]
    Config(#[from] hometun_config::ConfigError),
    /// `pki init` found a CA already there.
    #[error("{}: a CA already exists here; refusing to overwrite it", .0.display())]
    CaExists(PathBuf),
    /// A command-line value is not usable.
    #[error("{0}")]
    Invalid(String),
    /// rcgen could not build or sign something.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The certificate signing request is unusable.
    #[error("CSR refused: {0}")]
    Csr(String),
    /// The client already holds a live certificate and prefix.
    #[error(
        "client {name} already holds {prefix} (serial {serial}); revoke it first or rewrite its bundle with `hometun pki export`"
    )]
    NameTaken {
        /// The client's name.
        name: String,
        /// The prefix it holds.
        prefix: Ipv6Net,
        /// The serial number of its certificate.
        serial: String,
    },
    /// The name is the server's (its IKE identity or a name in its certificate): a home with
    /// it could pose as the server.
    #[error("{name} is the server's name; no home can have it")]
    ReservedName {
        /// The name asked for.
        name: String,
    },
    /// No prefix of the configured length is free in the pool.
    #[error(
        "pool {pool} is exhausted: all {capacity} /{prefix_len} prefixes are allocated or in their revocation grace period"
    )]
    PoolExhausted {
        /// The pool.
        pool: Ipv6Net,
        /// Length of each client's prefix.
        prefix_len: u8,
        /// How many prefixes the pool hands out in total.
        capacity: u128,
    },
    /// No client of that name in the registry.
    #[error("no client named {0} in the registry")]
    UnknownClient(String),
    /// The registry file is damaged or from another version.
    #[error("{}: {problem}", path.display())]
    Registry {
        /// The registry file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A renewal was refused.
    #[error("renewal refused: {0}")]
    Renewal(#[from] crate::renewal::RenewalRefusal),
    /// An enrollment token was refused.
    #[error("token refused: {0}")]
    Token(#[from] TokenRefusal),
    /// A bundle is malformed or inconsistent.
    #[error("bundle: {0}")]
    Bundle(#[from] BundleError),
    /// A request's key is one a revoked certificate certified (it may be why that one was
    /// revoked): no new certificate for it.
    #[error(
        "the request's key is the key of revoked certificate {serial} of {name}: make a new key"
    )]
    KeyRevoked {
        /// The revoked certificate's name.
        name: String,
        /// Its serial number.
        serial: String,
    },
    /// A certificate does not belong to the private key it should go with.
    #[error("{what}: its public key does not match {}", key.display())]
    KeyMismatch {
        /// Which certificate.
        what: String,
        /// The private key file.
        key: PathBuf,
    },
    /// The enrollment server said no.
    #[error("the enrollment server refused ({code}): {message}")]
    Refused {
        /// The refusal code.
        code: crate::enroll::protocol::RefusalCode,
        /// The server's message.
        message: String,
    },
    /// Talking to the enrollment server failed.
    #[error("enrollment with {server}: {problem}")]
    Enrollment {
        /// The server.
        server: std::net::SocketAddr,
        /// What failed.
        problem: String,
    },
    /// Chain or revocation check failed.
    #[error("certificate verification failed: {0}")]
    Verify(String),
}

impl PkiError {
    /// An I/O error about `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        PkiError::Io {
            path: path.to_path_buf(),
            error: source,
        }
    }

    /// A content problem with `path`.
    pub fn file(path: &Path, problem: impl Into<String>) -> Self {
        PkiError::File {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}
