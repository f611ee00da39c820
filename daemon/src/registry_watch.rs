//! A server whose server.toml names a shared registry (`[registry] url`, PostgreSQL) learns
//! each revocation the moment any server or `hometun pki revoke` commits it (LISTEN/NOTIFY),
//! without waiting for a new CRL file: the revoked serials go into a set the authorizer
//! refuses, and the driver reloads as for a new CRL, which cuts the home's tunnel. The CRL
//! check stays: it is what a server without the database, or with the database down, has.
//!
//! Only the CA certificate and the registry are needed here; the CA key is not (it stays on
//! the machine that runs enrollment).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use hometun_config::ServerConfig;
use hometun_pki::registry::{Registry, RegistryEvent, Subscription};

/// The serials (lower-case hex) the shared registry revoked, shared by the driver (which adds
/// to it) and the authorizer (which refuses them).
#[derive(Debug, Clone, Default)]
pub struct RevokedSerials(Arc<RwLock<HashSet<String>>>);

impl RevokedSerials {
    /// Whether `serial` is revoked.
    pub fn contains(&self, serial: &str) -> bool {
        self.0.read().is_ok_and(|set| set.contains(serial))
    }

    /// Adds `serial`; returns whether it was new.
    pub fn insert(&self, serial: String) -> bool {
        self.0.write().is_ok_and(|mut set| set.insert(serial))
    }

    /// Whether none is revoked (the authorizer then parses no certificate for its serial).
    pub fn is_empty(&self) -> bool {
        self.0.read().map_or(true, |set| set.is_empty())
    }
}

/// The shared registry of a server: the serials revoked so far and the events from now on.
#[derive(Debug)]
pub struct RegistryWatch {
    /// The registry itself (for the failover's holder records).
    pub registry: Registry,
    /// Everything revoked, kept current by the driver from `events`.
    pub revoked: RevokedSerials,
    /// Revocations and claims, as they are committed.
    pub events: Subscription,
}

/// Connects to the registry `config` names, if any (blocking: call it before the runtime
/// starts), subscribes, then reads what is revoked already, so that nothing falls between.
pub fn open(config: &ServerConfig) -> anyhow::Result<Option<RegistryWatch>> {
    let Some(section) = &config.registry else {
        return Ok(None);
    };
    let registry = Registry::from_section(section).context("registry.url")?;
    let events = registry.subscribe()?;
    let revoked = RevokedSerials::default();
    for (_, serial) in registry.load()?.revoked_serials() {
        revoked.insert(serial);
    }
    Ok(Some(RegistryWatch {
        registry,
        revoked,
        events,
    }))
}

/// The next event of a server's registry; never without one.
pub async fn next_event(watch: &mut Option<RegistryWatch>) -> Option<RegistryEvent> {
    match watch {
        Some(watch) => watch.events.recv().await,
        None => std::future::pending().await,
    }
}
