//! The PostgreSQL registry's schema, as numbered SQL migrations (pki/migrations/), applied in
//! order when a backend connects. `schema_version` holds one row per migration applied; each
//! migration and its row are one transaction, and an advisory lock keeps two servers that start
//! at once from applying the same one twice.

use postgres::GenericClient;

/// Every migration, in order: (version, SQL).
pub const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../migrations/0001_registry.sql")),
    (2, include_str!("../../migrations/0002_holders.sql")),
];

/// The schema version this code works with.
pub const LATEST: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Any constant both servers agree on: the advisory lock migrations take.
const MIGRATION_LOCK: i64 = 0x686f_6d65_7475_6e01;

/// Why the schema could not be brought to the version asked for.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The database is at a version this code does not know.
    #[error("schema version {current} is newer than this hometun's {latest}: upgrade hometun")]
    Newer {
        /// The database's version.
        current: i32,
        /// This code's latest.
        latest: i32,
    },
    /// A migration's SQL failed.
    #[error("migration {version}: {problem}")]
    Migration {
        /// Which migration.
        version: i32,
        /// The database's words.
        problem: String,
    },
    /// The database failed around the migrations (lock, version table, commit).
    #[error("{0}")]
    Database(String),
}

impl From<postgres::Error> for MigrationError {
    fn from(e: postgres::Error) -> Self {
        MigrationError::Database(super::postgres::db_problem(&e))
    }
}

/// The version the database is at (0: no schema yet).
pub fn current_version(client: &mut impl GenericClient) -> Result<i32, postgres::Error> {
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now())",
    )?;
    let row = client.query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])?;
    row.try_get(0)
}

/// Applies every migration above the database's version up to `target`; returns the versions
/// applied (none when the schema is current). A database newer than this code is refused.
pub fn apply_up_to(client: &mut postgres::Client, target: i32) -> Result<Vec<i32>, MigrationError> {
    let mut applied = Vec::new();
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    let current = current_version(&mut tx)?;
    if current > LATEST {
        return Err(MigrationError::Newer {
            current,
            latest: LATEST,
        });
    }
    for &(version, sql) in MIGRATIONS
        .iter()
        .filter(|(v, _)| *v > current && *v <= target)
    {
        tx.batch_execute(sql)
            .map_err(|e| MigrationError::Migration {
                version,
                problem: super::postgres::db_problem(&e),
            })?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&version],
        )?;
        applied.push(version);
    }
    tx.commit()?;
    Ok(applied)
}

/// Applies every migration this code has.
pub fn apply(client: &mut postgres::Client) -> Result<Vec<i32>, MigrationError> {
    apply_up_to(client, LATEST)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Registry, behaviour};
    use hometun_lab::postgres_lab::{PostgresLab, require_postgres};

    #[test]
    fn fresh_then_current_then_upgraded() {
        if !require_postgres("migrations") {
            return;
        }
        let lab = PostgresLab::start().unwrap();

        // A fresh database gets every migration; a second start applies none.
        let url = lab.create_database().unwrap();
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        assert_eq!(apply(&mut client).unwrap(), [1, 2]);
        assert_eq!(apply(&mut client).unwrap(), Vec::<i32>::new());
        assert_eq!(
            lab.psql(
                &url,
                "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_version"
            )
            .unwrap(),
            "1,2"
        );

        // A database at version 1 with a registry in it: connecting upgrades it, and the
        // registry is as it was, with what version 2 adds working.
        let url = lab.create_database().unwrap();
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        assert_eq!(apply_up_to(&mut client, 1).unwrap(), [1]);
        lab.psql(
            &url,
            &format!(
                "INSERT INTO registry_meta VALUES (1, 1, '{}', 64, 30, 7)",
                behaviour::POOL
            ),
        )
        .unwrap();
        let reg = Registry::postgres(&url).unwrap();
        assert_eq!(current_version(&mut client).unwrap(), 2);
        assert_eq!(reg.load().unwrap().crl_number, 7);
        assert_eq!(reg.claim("home.example", "a.example", 1).unwrap(), None);

        // A database newer than this code is refused, not changed.
        lab.psql(&url, "INSERT INTO schema_version (version) VALUES (99)")
            .unwrap();
        let e = Registry::postgres(&url).unwrap_err().to_string();
        assert!(e.contains("schema version 99 is newer"), "{e}");
    }
}
