//! The PostgreSQL backend: the registry shared by several servers.
//!
//! Each change is one transaction that first locks the single `registry_meta` row (`SELECT
//! ... FOR UPDATE`): changes from every server happen one after the other, each seeing the
//! last, so the allocation rules of [`super::data`] hold unchanged across servers. The schema
//! guards the same promises on its own: a serial is unique, two current certificates never
//! carry one prefix, and a token is marked used only if it still was not.
//!
//! Revocations and claims reach the other servers by LISTEN/NOTIFY on `hometun_registry`
//! (triggers in the migrations send them when the change commits).
//!
//! The client is the synchronous `postgres` crate: pki is synchronous, and the daemon calls the
//! registry from blocking threads. No TLS: the database is reached over a Unix socket or a
//! trusted network (SECURITY.md).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use ipnet::Ipv6Net;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, GenericClient, NoTls, Transaction};

use super::data::{
    ClientRecord, Holder, HolderRecord, RegistryData, Revocation, Supersession, TokenRecord,
};
use super::{
    Change, Check, HolderChange, HolderOutcome, RegistryBackend, RegistryEvent, Subscription,
    migrations,
};
use crate::PkiError;

/// The channel the triggers notify on.
pub const CHANNEL: &str = "hometun_registry";
/// Connections kept open for reuse.
const POOL_KEEP: usize = 8;
/// How long a subscriber waits before connecting again after losing the database.
const RECONNECT: Duration = Duration::from_secs(1);

/// One line for a database error: its SQLSTATE and message when the server sent one.
pub(crate) fn db_problem(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    }
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// The registry in a PostgreSQL database.
pub struct PostgresBackend {
    config: postgres::Config,
    location: String,
    idle: Mutex<Vec<Client>>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresBackend {
    /// A `postgres::Client` runs its own tokio runtime, which must not be dropped on a thread
    /// that drives async tasks (the daemon drops its registry there when it stops): the idle
    /// connections are closed on a thread of their own.
    fn drop(&mut self) {
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|p| p.into_inner()));
        if idle.is_empty() {
            return;
        }
        if let Ok(closer) = std::thread::Builder::new()
            .name("registry-close".into())
            .spawn(move || drop(idle))
        {
            let _ = closer.join();
        }
    }
}

/// A pooled connection, back to the pool on drop unless it broke.
struct Pooled<'a> {
    backend: &'a PostgresBackend,
    client: Option<Client>,
}

impl Pooled<'_> {
    fn client(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && !client.is_closed()
            && let Ok(mut idle) = self.backend.idle.lock()
            && idle.len() < POOL_KEEP
        {
            idle.push(client);
        }
    }
}

impl PostgresBackend {
    /// Connects to the database at `url` (with `password` if given) and brings its schema to
    /// the latest version.
    pub fn connect(url: &str, password: Option<&str>) -> Result<Self, PkiError> {
        let location = redact(url);
        let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
            PkiError::Invalid(format!("registry URL {location}: {}", db_problem(&e)))
        })?;
        if let Some(password) = password {
            config.password(password);
        }
        let backend = PostgresBackend {
            config,
            location,
            idle: Mutex::new(Vec::new()),
        };
        let mut conn = backend.conn()?;
        let applied = migrations::apply(conn.client()).map_err(|e| backend.error(e.to_string()))?;
        if !applied.is_empty() {
            tracing::info!(registry = %backend.location, ?applied, "schema migrations applied");
        }
        drop(conn);
        Ok(backend)
    }

    fn error(&self, problem: impl Into<String>) -> PkiError {
        PkiError::Registry {
            path: PathBuf::from(&self.location),
            problem: problem.into(),
        }
    }

    fn db(&self, e: postgres::Error) -> PkiError {
        self.error(db_problem(&e))
    }

    fn conn(&self) -> Result<Pooled<'_>, PkiError> {
        let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let client = match reused {
            Some(c) => c,
            None => self.config.connect(NoTls).map_err(|e| self.db(e))?,
        };
        Ok(Pooled {
            backend: self,
            client: Some(client),
        })
    }

    /// Reads everything; `lock` takes the change lock first (inside a transaction).
    fn read(&self, tx: &mut impl GenericClient, lock: bool) -> Result<RegistryData, PkiError> {
        let meta = tx
            .query_opt(
                if lock {
                    "SELECT format, pool, prefix_len, grace_days, crl_number FROM registry_meta WHERE id = 1 FOR UPDATE"
                } else {
                    "SELECT format, pool, prefix_len, grace_days, crl_number FROM registry_meta WHERE id = 1"
                },
                &[],
            )
            .map_err(|e| self.db(e))?
            .ok_or_else(|| self.error("no registry here yet: run `hometun pki init --registry URL`"))?;
        let format: i32 = meta.get(0);
        let prefix_len: i32 = meta.get(2);
        let grace_days: i64 = meta.get(3);
        let crl_number: i64 = meta.get(4);
        let mut data = RegistryData {
            format: u32::try_from(format).map_err(|_| self.error("negative format"))?,
            pool: self.prefix(meta.get(1))?,
            prefix_len: u8::try_from(prefix_len).map_err(|_| self.error("bad prefix_len"))?,
            grace_days: u32::try_from(grace_days).map_err(|_| self.error("bad grace_days"))?,
            crl_number: u64::try_from(crl_number).map_err(|_| self.error("bad crl_number"))?,
            clients: Vec::new(),
            tokens: Vec::new(),
            holders: Vec::new(),
        };
        for row in tx
            .query(
                "SELECT name, prefix, serial, issued, not_after, certificate, revoked_at, key_compromise, superseded_at, superseded_by FROM clients ORDER BY seq",
                &[],
            )
            .map_err(|e| self.db(e))?
        {
            let revoked_at: Option<i64> = row.get(6);
            let superseded_at: Option<i64> = row.get(8);
            let superseded_by: Option<String> = row.get(9);
            data.clients.push(ClientRecord {
                name: row.get(0),
                prefix: self.prefix(row.get(1))?,
                serial: row.get(2),
                issued: row.get(3),
                not_after: row.get(4),
                certificate: row.get(5),
                revoked: revoked_at.map(|at| Revocation {
                    at,
                    key_compromise: row.get(7),
                }),
                superseded: superseded_at.map(|at| Supersession {
                    at,
                    by: superseded_by.unwrap_or_default(),
                }),
            });
        }
        for row in tx
            .query(
                "SELECT name, secret_sha256, created, expires, used, used_serial FROM tokens ORDER BY seq",
                &[],
            )
            .map_err(|e| self.db(e))?
        {
            data.tokens.push(TokenRecord {
                name: row.get(0),
                secret_sha256: row.get(1),
                created: row.get(2),
                expires: row.get(3),
                used: row.get(4),
                used_serial: row.get(5),
            });
        }
        for row in tx
            .query("SELECT home, server, since FROM holders ORDER BY home", &[])
            .map_err(|e| self.db(e))?
        {
            data.holders.push(HolderRecord {
                home: row.get(0),
                holder: Holder {
                    server: row.get(1),
                    since: row.get(2),
                },
            });
        }
        Ok(data)
    }

    fn prefix(&self, text: String) -> Result<Ipv6Net, PkiError> {
        text.parse()
            .map_err(|_| self.error(format!("stored prefix {text:?} is not an IPv6 prefix")))
    }

    /// Stores what changed from `before` to `after` (records are only added or changed, never
    /// removed, except holders).
    fn write(
        &self,
        tx: &mut Transaction<'_>,
        before: &RegistryData,
        after: &RegistryData,
    ) -> Result<(), PkiError> {
        let db = |e| self.db(e);
        if (
            before.format,
            before.pool,
            before.prefix_len,
            before.grace_days,
            before.crl_number,
        ) != (
            after.format,
            after.pool,
            after.prefix_len,
            after.grace_days,
            after.crl_number,
        ) {
            tx.execute(
                "UPDATE registry_meta SET format = $1, pool = $2, prefix_len = $3, grace_days = $4, crl_number = $5 WHERE id = 1",
                &[
                    &i32::try_from(after.format).map_err(|_| self.error("format too large"))?,
                    &after.pool.to_string(),
                    &i32::from(after.prefix_len),
                    &i64::from(after.grace_days),
                    &i64::try_from(after.crl_number).map_err(|_| self.error("crl_number too large"))?,
                ],
            )
            .map_err(db)?;
        }
        if after.clients.len() < before.clients.len() || after.tokens.len() < before.tokens.len() {
            return Err(
                self.error("a change removed certificates or tokens; the registry only adds")
            );
        }
        // Changed records first, then new ones: a renewal supersedes the old certificate
        // before its successor takes the prefix.
        for (old, new) in before.clients.iter().zip(&after.clients) {
            if old != new {
                tx.execute(
                    "UPDATE clients SET name = $2, revoked_at = $3, key_compromise = $4, superseded_at = $5, superseded_by = $6 WHERE serial = $1",
                    &[
                        &old.serial,
                        &new.name,
                        &new.revoked.as_ref().map(|r| r.at),
                        &new.revoked.as_ref().is_some_and(|r| r.key_compromise),
                        &new.superseded.as_ref().map(|s| s.at),
                        &new.superseded.as_ref().map(|s| s.by.clone()),
                    ],
                )
                .map_err(db)?;
            }
        }
        for (old, new) in before.tokens.iter().zip(&after.tokens) {
            if old != new {
                // Only if nobody used it meanwhile: one token, one enrollment, even if the
                // lock above were ever bypassed.
                let changed = tx
                    .execute(
                        "UPDATE tokens SET name = $2, expires = $3, used = $4, used_serial = $5 WHERE secret_sha256 = $1 AND used IS NOT DISTINCT FROM $6",
                        &[&old.secret_sha256, &new.name, &new.expires, &new.used, &new.used_serial, &old.used],
                    )
                    .map_err(db)?;
                if changed != 1 {
                    return Err(self.error("a token changed under this change; try again"));
                }
            }
        }
        for c in &after.clients[before.clients.len()..] {
            tx.execute(
                "INSERT INTO clients (name, prefix, serial, issued, not_after, certificate, revoked_at, key_compromise, superseded_at, superseded_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    &c.name,
                    &c.prefix.to_string(),
                    &c.serial,
                    &c.issued,
                    &c.not_after,
                    &c.certificate,
                    &c.revoked.as_ref().map(|r| r.at),
                    &c.revoked.as_ref().is_some_and(|r| r.key_compromise),
                    &c.superseded.as_ref().map(|s| s.at),
                    &c.superseded.as_ref().map(|s| s.by.clone()),
                ],
            )
            .map_err(db)?;
        }
        for t in &after.tokens[before.tokens.len()..] {
            tx.execute(
                "INSERT INTO tokens (name, secret_sha256, created, expires, used, used_serial) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&t.name, &t.secret_sha256, &t.created, &t.expires, &t.used, &t.used_serial],
            )
            .map_err(db)?;
        }
        for gone in before
            .holders
            .iter()
            .filter(|h| after.holder(&h.home).is_none())
        {
            tx.execute("DELETE FROM holders WHERE home = $1", &[&gone.home])
                .map_err(db)?;
        }
        for h in after.holders.iter().filter(|h| !before.holders.contains(h)) {
            upsert_holder(tx, &h.home, &h.holder).map_err(db)?;
        }
        Ok(())
    }
}

fn upsert_holder(
    tx: &mut impl GenericClient,
    home: &str,
    holder: &Holder,
) -> Result<u64, postgres::Error> {
    tx.execute(
        "INSERT INTO holders (home, server, since) VALUES ($1, $2, $3) ON CONFLICT (home) DO UPDATE SET server = EXCLUDED.server, since = EXCLUDED.since",
        &[&home, &holder.server, &holder.since],
    )
}

/// A notification's payload, as the triggers write it.
#[derive(serde::Deserialize)]
struct Payload {
    revoked: Option<String>,
    serial: Option<String>,
    claimed: Option<String>,
    server: Option<String>,
    since: Option<i64>,
}

fn event(payload: &str) -> Option<RegistryEvent> {
    let p: Payload = serde_json::from_str(payload).ok()?;
    match (p.revoked, p.serial, p.claimed, p.server, p.since) {
        (Some(name), Some(serial), ..) => Some(RegistryEvent::Revoked { name, serial }),
        (_, _, Some(home), Some(server), Some(since)) => Some(RegistryEvent::Claimed {
            home,
            holder: Holder { server, since },
        }),
        _ => None,
    }
}

impl RegistryBackend for PostgresBackend {
    fn location(&self) -> PathBuf {
        PathBuf::from(&self.location)
    }

    fn exists(&self) -> Result<bool, PkiError> {
        let mut conn = self.conn()?;
        let row = conn
            .client()
            .query_one("SELECT count(*) FROM registry_meta", &[])
            .map_err(|e| self.db(e))?;
        Ok(row.get::<_, i64>(0) > 0)
    }

    fn create(&self, data: &RegistryData) -> Result<(), PkiError> {
        let mut conn = self.conn()?;
        let mut tx = conn.client().transaction().map_err(|e| self.db(e))?;
        let inserted = tx
            .execute(
                "INSERT INTO registry_meta (id, format, pool, prefix_len, grace_days, crl_number) VALUES (1, $1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                &[
                    &i32::try_from(data.format).map_err(|_| self.error("format too large"))?,
                    &data.pool.to_string(),
                    &i32::from(data.prefix_len),
                    &i64::from(data.grace_days),
                    &i64::try_from(data.crl_number).map_err(|_| self.error("crl_number too large"))?,
                ],
            )
            .map_err(|e| self.db(e))?;
        if inserted != 1 {
            return Err(self.error("already holds a registry"));
        }
        let empty = RegistryData {
            clients: Vec::new(),
            tokens: Vec::new(),
            holders: Vec::new(),
            ..data.clone()
        };
        self.write(&mut tx, &empty, data)?;
        tx.commit().map_err(|e| self.db(e))
    }

    fn load(&self) -> Result<RegistryData, PkiError> {
        let mut conn = self.conn()?;
        // One snapshot for the three tables.
        let mut tx = conn
            .client()
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(|e| self.db(e))?;
        let mut data = self.read(&mut tx, false)?;
        tx.commit().map_err(|e| self.db(e))?;
        data.normalise_names()
            .map_err(|clash| self.error(clash.to_string()))?;
        Ok(data)
    }

    fn transact(&self, change: Change<'_>, before_commit: Check<'_>) -> Result<(), PkiError> {
        let mut conn = self.conn()?;
        let mut tx = conn.client().transaction().map_err(|e| self.db(e))?;
        let before = self.read(&mut tx, true)?;
        let mut after = before.clone();
        change(&mut after)?;
        before_commit(&after)?;
        self.write(&mut tx, &before, &after)?;
        tx.commit().map_err(|e| self.db(e))
    }

    fn claim(&self, home: &str, server: &str, now: i64) -> Result<Option<Holder>, PkiError> {
        let mut conn = self.conn()?;
        let mut tx = conn.client().transaction().map_err(|e| self.db(e))?;
        // One claim of a home at a time, without holding up the rest of the registry.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&home])
            .map_err(|e| self.db(e))?;
        let previous = tx
            .query_opt(
                "SELECT server, since FROM holders WHERE home = $1",
                &[&home],
            )
            .map_err(|e| self.db(e))?
            .map(|row| Holder {
                server: row.get(0),
                since: row.get(1),
            });
        let holder = Holder {
            server: server.to_string(),
            since: now,
        };
        upsert_holder(&mut tx, home, &holder).map_err(|e| self.db(e))?;
        tx.commit().map_err(|e| self.db(e))?;
        Ok(previous)
    }

    fn holder(&self, home: &str) -> Result<Option<Holder>, PkiError> {
        let mut conn = self.conn()?;
        Ok(conn
            .client()
            .query_opt(
                "SELECT server, since FROM holders WHERE home = $1",
                &[&home],
            )
            .map_err(|e| self.db(e))?
            .map(|row| Holder {
                server: row.get(0),
                since: row.get(1),
            }))
    }

    fn release(&self, home: &str, server: &str) -> Result<bool, PkiError> {
        let mut conn = self.conn()?;
        let n = conn
            .client()
            .execute(
                "DELETE FROM holders WHERE home = $1 AND server = $2",
                &[&home, &server],
            )
            .map_err(|e| self.db(e))?;
        Ok(n == 1)
    }

    /// One statement each: a claim locks only its home (see [`Self::claim`]), not the
    /// whole registry as [`RegistryBackend::transact`] does here. Each change is tried even
    /// when one before it failed (as separate calls would be); the first failure is returned.
    fn record_holders(
        &self,
        server: &str,
        changes: &[HolderChange],
    ) -> Result<Vec<HolderOutcome>, PkiError> {
        let mut outcomes = Vec::with_capacity(changes.len());
        let mut failure = None;
        for change in changes {
            let outcome = match change {
                HolderChange::Claim { home, since } => {
                    self.claim(home, server, *since).map(HolderOutcome::Claimed)
                }
                HolderChange::Release { home } => {
                    self.release(home, server).map(HolderOutcome::Released)
                }
            };
            match outcome {
                Ok(outcome) => outcomes.push(outcome),
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        failure.map_or(Ok(outcomes), Err)
    }

    fn subscribe(&self) -> Result<Subscription, PkiError> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let listen = |config: &postgres::Config| -> Result<Client, postgres::Error> {
            let mut client = config.connect(NoTls)?;
            client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
            Ok(client)
        };
        // Listening before this returns: nothing committed after it is missed.
        let mut client = listen(&self.config).map_err(|e| self.db(e))?;
        let config = self.config.clone();
        let location = self.location.clone();
        std::thread::Builder::new()
            .name("registry-listen".into())
            .spawn(move || {
                loop {
                    let failed = {
                        let mut notifications = client.notifications();
                        loop {
                            // A fresh wait each time: a timeout iterator whose wait ran out once
                            // no longer waits, and without a wait the connection's socket is
                            // never read again (the runtime's I/O runs only while it waits).
                            match notifications
                                .timeout_iter(Duration::from_millis(250))
                                .next()
                            {
                                Ok(Some(n)) => {
                                    if let Some(e) = event(n.payload())
                                        && tx.send(e).is_err()
                                    {
                                        return;
                                    }
                                }
                                Ok(None) => {
                                    if tx.is_closed() {
                                        return;
                                    }
                                }
                                Err(e) => break e,
                            }
                        }
                    };
                    tracing::warn!(registry = %location, "registry notifications lost: {}; connecting again", db_problem(&failed));
                    // Until connected again, revocations reach the server through its CRL
                    // check only.
                    client = loop {
                        if tx.is_closed() {
                            return;
                        }
                        std::thread::sleep(RECONNECT);
                        if let Ok(c) = listen(&config) {
                            break c;
                        }
                    };
                    // Listening again: every revocation, so that none made meanwhile is
                    // missed (a subscriber keeps what it knows and acts on the new ones).
                    let revoked = client.query(
                        "SELECT name, serial FROM clients WHERE revoked_at IS NOT NULL ORDER BY seq",
                        &[],
                    );
                    for row in revoked.iter().flatten() {
                        let event = RegistryEvent::Revoked {
                            name: row.get(0),
                            serial: row.get(1),
                        };
                        if tx.send(event).is_err() {
                            return;
                        }
                    }
                }
            })
            .map_err(|e| self.error(format!("starting the listener: {e}")))?;
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_loses_its_password_in_messages() {
        assert_eq!(
            redact("postgresql://hometun:s3cret@db.example/registry?sslmode=disable"),
            "postgresql://hometun@db.example/registry?sslmode=disable"
        );
        assert_eq!(
            redact("postgresql:///registry?host=/run/postgresql"),
            "postgresql:///registry?host=/run/postgresql"
        );
    }

    #[test]
    fn notifications_become_events() {
        assert_eq!(
            event(r#"{"revoked": "home.example", "serial": "0a"}"#),
            Some(RegistryEvent::Revoked {
                name: "home.example".into(),
                serial: "0a".into()
            })
        );
        assert_eq!(
            event(r#"{"claimed": "home.example", "server": "b.example", "since": 5}"#),
            Some(RegistryEvent::Claimed {
                home: "home.example".into(),
                holder: Holder {
                    server: "b.example".into(),
                    since: 5
                }
            })
        );
        assert_eq!(event("{}"), None);
        assert_eq!(event("not json"), None);
    }
}
