//! The `[enroll]` table of server.toml: online enrollment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// The `[enroll]` table: online enrollment (`hometun pki serve`, `hometun enroll`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollSection {
    /// Address the enrollment listener (TLS over TCP) binds.
    pub listen: SocketAddr,
    /// Address homes connect to, written into enrollment tokens (defaults to `listen`; set it
    /// when `listen` is a wildcard or behind a port forward).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<SocketAddr>,
    /// Directory with the CA key and the registry (defaults to this file's directory).
    #[serde(default = "default_pki_dir")]
    pub pki_dir: PathBuf,
}

impl EnrollSection {
    /// The address tokens carry.
    pub fn public_address(&self) -> SocketAddr {
        self.address.unwrap_or(self.listen)
    }

    /// Checks that the listener has a port and that tokens get an address homes can reach.
    pub(crate) fn check(&self, file: &Path) -> Result<(), ConfigError> {
        if self.listen.port() == 0 {
            return Err(ConfigError::new(
                file,
                "enroll.listen",
                "needs a port (e.g. 192.0.2.1:8443)",
            ));
        }
        let public = self.public_address();
        if public.ip().is_unspecified() || public.port() == 0 {
            return Err(ConfigError::new(
                file,
                if self.address.is_some() {
                    "enroll.address"
                } else {
                    "enroll.listen"
                },
                format!(
                    "{public} cannot go into enrollment tokens; set enroll.address to the address homes connect to"
                ),
            ));
        }
        Ok(())
    }
}

fn default_pki_dir() -> PathBuf {
    PathBuf::from(".")
}
