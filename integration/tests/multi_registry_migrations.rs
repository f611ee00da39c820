//! The PostgreSQL registry's schema through the binary: a fresh database gets every migration,
//! a second start applies none, and a database at an older version is upgraded with its
//! registry kept.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use hometun_lab::ike_lab::hometun;
use hometun_lab::postgres_lab::{PostgresLab, require_postgres};
use hometun_lab::workspace_root;

const VERSIONS: &str = "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_version";

/// `hometun pki list --registry URL` from a directory with neither server.toml nor
/// registry.json.
fn list(dir: &std::path::Path, url: &str) -> anyhow::Result<std::process::Output> {
    hometun(&[
        "pki",
        "list",
        "--dir",
        dir.to_str().unwrap(),
        "--registry",
        url,
        "--json",
    ])
}

#[test]
fn fresh_current_and_older_databases() {
    if !require_postgres("fresh_current_and_older_databases") {
        return;
    }
    let pg = PostgresLab::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();

    // Fresh: the schema is made, then the command says there is no registry yet.
    let url = pg.create_database().unwrap();
    let e = list(tmp.path(), &url).unwrap_err().to_string();
    assert!(e.contains("no registry here yet"), "{e}");
    assert_eq!(pg.psql(&url, VERSIONS).unwrap(), "1,2");
    let applied_at = pg
        .psql(
            &url,
            "SELECT string_agg(applied_at::text, ',') FROM schema_version",
        )
        .unwrap();
    // Again: nothing applied.
    list(tmp.path(), &url).unwrap_err();
    assert_eq!(
        pg.psql(
            &url,
            "SELECT string_agg(applied_at::text, ',') FROM schema_version"
        )
        .unwrap(),
        applied_at
    );

    // Older: version 1 only, as the migration file wrote it, with a registry and a home.
    let url = pg.create_database().unwrap();
    let first =
        std::fs::read_to_string(workspace_root().join("pki/migrations/0001_registry.sql")).unwrap();
    pg.psql(
        &url,
        &format!(
            "CREATE TABLE schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now()); \
             {first}; INSERT INTO schema_version (version) VALUES (1); \
             INSERT INTO registry_meta VALUES (1, 1, '2001:db8:100::/48', 64, 30, 0); \
             INSERT INTO clients (name, prefix, serial, issued, not_after, certificate) \
             VALUES ('home.example', '2001:db8:100:1::/64', '0a', 0, 4102444800, '')"
        ),
    )
    .unwrap();
    let out = list(tmp.path(), &url).unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["name"], "home.example", "{listed}");
    assert_eq!(listed[0]["prefix"], "2001:db8:100:1::/64", "{listed}");
    assert_eq!(pg.psql(&url, VERSIONS).unwrap(), "1,2");
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM holders").unwrap(), "0");
}
