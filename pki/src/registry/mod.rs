//! The registry: which client holds which prefix and certificate, revocations, enrollment
//! tokens, and which server holds each home. The rules are in [`data`], the same for every
//! backend; a [`RegistryBackend`] stores the data and makes each change all-or-nothing and
//! exclusive:
//!
//! - [`file::FileBackend`]: one JSON file under `flock`, for one machine (the default);
//! - [`postgres::PostgresBackend`]: a PostgreSQL database shared by several servers, its
//!   schema in [`migrations`] (see `docs/ARCHITECTURE.md`).
//!
//! [`Registry`] is the handle the rest of the code uses; it picks nothing itself.

pub mod data;
pub mod file;
pub mod migrations;
pub mod postgres;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use data::{
    ClientRecord, Holder, HolderRecord, NameClash, REGISTRY_FORMAT, RegistryData, Revocation,
    Supersession, TokenRecord, check_pool,
};

use crate::PkiError;

/// A change to the registry's data, run inside the backend's transaction.
pub type Change<'a> = &'a mut dyn FnMut(&mut RegistryData) -> Result<(), PkiError>;
/// A step after a change and before its commit (see [`Registry::update_with`]).
pub type Check<'a> = &'a mut dyn FnMut(&RegistryData) -> Result<(), PkiError>;
/// Where a backend delivers [`RegistryEvent`]s; dropping it ends the subscription.
pub type Subscription = tokio::sync::mpsc::UnboundedReceiver<RegistryEvent>;

/// Something another process (or server) changed in the registry, as a subscriber learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryEvent {
    /// A certificate was revoked: a server cuts the home's tunnel if it carries this serial.
    Revoked {
        /// The home's name.
        name: String,
        /// The revoked certificate's serial (lower-case hex).
        serial: String,
    },
    /// A server claimed a home (see [`RegistryBackend::claim`]); a server that held the home
    /// and is not `holder.server` has lost it.
    Claimed {
        /// The home's name.
        home: String,
        /// The new holder.
        holder: Holder,
    },
}

/// A change of who holds a home (see [`RegistryBackend::record_holders`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolderChange {
    /// The server holds `home` since `since` (Unix seconds): [`RegistryBackend::claim`].
    Claim {
        /// The home's name.
        home: String,
        /// Since when.
        since: i64,
    },
    /// The server no longer holds `home`: [`RegistryBackend::release`].
    Release {
        /// The home's name.
        home: String,
    },
}

/// What a [`HolderChange`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolderOutcome {
    /// The home's previous holder, which may be the server itself.
    Claimed(Option<Holder>),
    /// Whether the server held the home.
    Released(bool),
}

impl HolderChange {
    /// The home it is about.
    pub fn home(&self) -> &str {
        match self {
            HolderChange::Claim { home, .. } | HolderChange::Release { home } => home,
        }
    }

    fn apply(&self, data: &mut RegistryData, server: &str) -> HolderOutcome {
        match self {
            HolderChange::Claim { home, since } => {
                HolderOutcome::Claimed(data.claim(home, server, *since))
            }
            HolderChange::Release { home } => HolderOutcome::Released(data.release(home, server)),
        }
    }
}

/// Storage of the registry. Every method may block (file lock, database round trip): call
/// them from a thread that may block (`tokio::task::spawn_blocking` in async code).
pub trait RegistryBackend: Send + Sync + std::fmt::Debug {
    /// Where the registry is: its file, or the database URL without its password; for
    /// messages.
    fn location(&self) -> PathBuf;

    /// Whether the registry has been created.
    fn exists(&self) -> Result<bool, PkiError>;

    /// Creates the registry with `data`; fails if one exists.
    fn create(&self, data: &RegistryData) -> Result<(), PkiError>;

    /// The registry's data, as of one moment.
    fn load(&self) -> Result<RegistryData, PkiError>;

    /// Runs `change` on the data exclusively (no other change of any process or server in
    /// between), then `before_commit`, then stores the result. If either fails, nothing is
    /// stored.
    fn transact(&self, change: Change<'_>, before_commit: Check<'_>) -> Result<(), PkiError>;

    /// Records that `server` holds `home` since `now` (Unix seconds), and returns the previous
    /// holder, which may be `server` itself. Subscribers learn it as
    /// [`RegistryEvent::Claimed`].
    fn claim(&self, home: &str, server: &str, now: i64) -> Result<Option<Holder>, PkiError> {
        let mut previous = None;
        self.transact(
            &mut |data| {
                previous = data.claim(home, server, now);
                Ok(())
            },
            &mut |_| Ok(()),
        )?;
        Ok(previous)
    }

    /// The server that holds `home`, if any.
    fn holder(&self, home: &str) -> Result<Option<Holder>, PkiError> {
        Ok(self.load()?.holder(home).cloned())
    }

    /// Forgets that `server` holds `home` (a home another server holds meanwhile is left
    /// alone); returns whether `server` held it.
    fn release(&self, home: &str, server: &str) -> Result<bool, PkiError> {
        let mut released = false;
        self.transact(
            &mut |data| {
                released = data.release(home, server);
                Ok(())
            },
            &mut |_| Ok(()),
        )?;
        Ok(released)
    }

    /// Claims and releases by `server`, in order, as one change: what [`Self::claim`] and
    /// [`Self::release`] would do one after the other, with one write (a reconnection storm
    /// of a thousand homes is then a few rewrites of the file, not two thousand). Returns
    /// what each found, in the same order.
    fn record_holders(
        &self,
        server: &str,
        changes: &[HolderChange],
    ) -> Result<Vec<HolderOutcome>, PkiError> {
        let mut outcomes = Vec::with_capacity(changes.len());
        self.transact(
            &mut |data| {
                outcomes = changes
                    .iter()
                    .map(|change| change.apply(data, server))
                    .collect();
                Ok(())
            },
            &mut |_| Ok(()),
        )?;
        Ok(outcomes)
    }

    /// How a server should batch its holder records for this backend
    /// ([`Self::record_holders`]): a database changes one row per home, so small batches soon;
    /// the file backend rewrites the whole file per batch, so fewer, larger ones.
    fn holder_batching(&self) -> HolderBatching {
        HolderBatching {
            window: std::time::Duration::from_millis(50),
            max: 256,
        }
    }

    /// Revocations and claims from now on, by any process or server, as they happen (the
    /// file backend polls every [`file::FILE_POLL`]). After the database connection was lost
    /// and made again, every revocation is sent again: a subscriber acts on those it did not
    /// know.
    fn subscribe(&self) -> Result<Subscription, PkiError>;
}

/// How a server batches its claims and releases ([`RegistryBackend::holder_batching`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HolderBatching {
    /// How long a claim or release waits for others to share its registry change.
    pub window: std::time::Duration,
    /// At most this many go in one change (a bound on one write's work while notifications
    /// wait).
    pub max: usize,
}

/// What changed from `before` to `after`, as events: new revocations and new claims.
pub fn events_between(before: &RegistryData, after: &RegistryData) -> Vec<RegistryEvent> {
    let was_revoked = before.revoked_serials();
    let mut events: Vec<RegistryEvent> = after
        .revoked_serials()
        .into_iter()
        .filter(|r| !was_revoked.contains(r))
        .map(|(name, serial)| RegistryEvent::Revoked { name, serial })
        .collect();
    events.extend(
        after
            .holders
            .iter()
            .filter(|h| !before.holders.contains(h))
            .map(|h| RegistryEvent::Claimed {
                home: h.home.clone(),
                holder: h.holder.clone(),
            }),
    );
    events
}

/// The registry, whichever its backend.
#[derive(Debug, Clone)]
pub struct Registry {
    backend: Arc<dyn RegistryBackend>,
}

impl Registry {
    /// The registry file at `path` (its lock beside it, `registry.lock`).
    pub fn at(path: &Path) -> Self {
        Self::with_backend(Arc::new(file::FileBackend::at(path)))
    }

    /// The registry in the PostgreSQL database at `url` (`postgresql://...`), its schema
    /// brought up to date.
    pub fn postgres(url: &str) -> Result<Self, PkiError> {
        Self::postgres_with_password(url, None)
    }

    /// [`Registry::postgres`] with the database password kept out of the URL.
    pub fn postgres_with_password(url: &str, password: Option<&str>) -> Result<Self, PkiError> {
        Ok(Self::with_backend(Arc::new(
            postgres::PostgresBackend::connect(url, password)?,
        )))
    }

    /// The registry server.toml's `[registry]` table names, its password read from
    /// `password_file` (which must be private).
    pub fn from_section(section: &hometun_config::RegistrySection) -> Result<Self, PkiError> {
        let password = match &section.password_file {
            Some(path) => {
                crate::files::check_private_mode(path)?;
                let text = String::from_utf8(crate::files::read(path)?)
                    .map_err(|_| PkiError::file(path, "is not UTF-8 text"))?;
                Some(text.trim_end_matches(['\n', '\r']).to_string())
            }
            None => None,
        };
        Self::postgres_with_password(&section.url, password.as_deref())
    }

    /// The registry at `location`: a `postgresql://` or `postgres://` URL, else a file path.
    pub fn open(location: &str) -> Result<Self, PkiError> {
        if is_database_url(location) {
            Self::postgres(location)
        } else {
            Ok(Self::at(Path::new(location)))
        }
    }

    /// The registry in `backend`.
    pub fn with_backend(backend: Arc<dyn RegistryBackend>) -> Self {
        Registry { backend }
    }

    /// Where it is: its file, or the database URL without its password.
    pub fn location(&self) -> PathBuf {
        self.backend.location()
    }

    /// Whether it has been created.
    pub fn exists(&self) -> Result<bool, PkiError> {
        self.backend.exists()
    }

    /// Creates it; fails if it exists.
    pub fn create(&self, data: &RegistryData) -> Result<(), PkiError> {
        self.backend.create(data)
    }

    /// Reads it, as of one moment.
    pub fn load(&self) -> Result<RegistryData, PkiError> {
        self.backend.load()
    }

    /// Runs `change` on the registry exclusively and stores the result. If `change` fails,
    /// nothing is stored.
    pub fn update<T>(
        &self,
        change: impl FnOnce(&mut RegistryData) -> Result<T, PkiError>,
    ) -> Result<T, PkiError> {
        self.update_with(change, |_| Ok(()))
    }

    /// [`Registry::update`] with a step that runs after the change is computed and before it
    /// is committed (still exclusively): for effects that must be in place before the
    /// registry says so, like publishing a CRL before recording the revocation. If it fails,
    /// nothing is committed.
    pub fn update_with<T>(
        &self,
        change: impl FnOnce(&mut RegistryData) -> Result<T, PkiError>,
        before_commit: impl FnOnce(&RegistryData) -> Result<(), PkiError>,
    ) -> Result<T, PkiError> {
        // The backend takes FnMut (it is a trait object); each closure runs at most once.
        let mut change = Some(change);
        let mut before_commit = Some(before_commit);
        let mut result = None;
        self.backend.transact(
            &mut |data| {
                let change = change.take().ok_or_else(ran_twice)?;
                result = Some(change(data)?);
                Ok(())
            },
            &mut |data| before_commit.take().ok_or_else(ran_twice)?(data),
        )?;
        result.ok_or_else(ran_twice)
    }

    /// See [`RegistryBackend::claim`].
    pub fn claim(&self, home: &str, server: &str, now: i64) -> Result<Option<Holder>, PkiError> {
        self.backend.claim(home, server, now)
    }

    /// See [`RegistryBackend::holder`].
    pub fn holder(&self, home: &str) -> Result<Option<Holder>, PkiError> {
        self.backend.holder(home)
    }

    /// See [`RegistryBackend::release`].
    pub fn release(&self, home: &str, server: &str) -> Result<bool, PkiError> {
        self.backend.release(home, server)
    }

    /// See [`RegistryBackend::record_holders`].
    pub fn record_holders(
        &self,
        server: &str,
        changes: &[HolderChange],
    ) -> Result<Vec<HolderOutcome>, PkiError> {
        self.backend.record_holders(server, changes)
    }

    /// See [`RegistryBackend::holder_batching`].
    pub fn holder_batching(&self) -> HolderBatching {
        self.backend.holder_batching()
    }

    /// See [`RegistryBackend::subscribe`].
    pub fn subscribe(&self) -> Result<Subscription, PkiError> {
        self.backend.subscribe()
    }
}

/// Whether `location` names a PostgreSQL database rather than a file.
pub fn is_database_url(location: &str) -> bool {
    location.starts_with("postgresql://") || location.starts_with("postgres://")
}

fn ran_twice() -> PkiError {
    PkiError::Invalid("registry backend ran a change other than once".into())
}

#[cfg(test)]
mod behaviour;
