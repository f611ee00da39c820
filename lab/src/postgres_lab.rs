//! A throwaway PostgreSQL server for tests and benchmarks: the Debian package's `initdb` and
//! `pg_ctl` (PostgreSQL 15) in a temporary directory, listening only on a Unix socket in that
//! directory, stopped and removed on drop. PostgreSQL refuses to run as root, so under root
//! the server runs as the `postgres` user (which the Debian package creates).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};

/// Where the Debian package puts the server's programs.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The database role the tests connect as (the cluster's superuser).
pub const ROLE: &str = "hometun";

/// A running PostgreSQL server in a temporary directory.
#[derive(Debug)]
pub struct PostgresLab {
    dir: tempfile::TempDir,
    next_database: AtomicU32,
}

/// Why a test cannot have a PostgreSQL server here, if it cannot (the programs are missing);
/// `None` when it can.
pub fn unavailable() -> Option<String> {
    let initdb = Path::new(PG_BIN).join("initdb");
    (!initdb.exists()).then(|| {
        format!(
            "{} is missing (scripts/install-deps.sh installs postgresql-15)",
            initdb.display()
        )
    })
}

/// True when the test may run; otherwise prints why it skips, or panics under `CI=true`.
pub fn require_postgres(test: &str) -> bool {
    match unavailable() {
        None => true,
        Some(reason) => {
            crate::skip_or_fail(test, &reason);
            false
        }
    }
}

fn as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `program args` as the user the server runs as.
fn command(program: &str) -> Command {
    let path = Path::new(PG_BIN).join(program);
    if as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn run(mut c: Command, what: &str) -> anyhow::Result<()> {
    let out = c.output().with_context(|| format!("starting {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl PostgresLab {
    /// Creates a cluster in a new temporary directory and starts it (fsync off: the tests
    /// check the registry, not the disk).
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with_fsync(false)
    }

    /// [`PostgresLab::start`] with `fsync` as asked: on for a benchmark that compares with the
    /// file registry, which fsyncs every change.
    pub fn start_with_fsync(fsync: bool) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("hometun-pg")
            .tempdir_in("/tmp")?;
        if as_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["postgres:postgres"]).arg(dir.path());
                    c
                },
                "chown",
            )?;
        }
        let data = dir.path().join("data");
        let mut initdb = command("initdb");
        initdb
            .args([
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                "-U",
                ROLE,
                "-D",
            ])
            .arg(&data);
        run(initdb, "initdb")?;
        let options = format!(
            "-k {} -c listen_addresses='' -c fsync={} -c max_connections=200",
            dir.path().display(),
            if fsync { "on" } else { "off" }
        );
        let mut pg_ctl = command("pg_ctl");
        pg_ctl
            .args(["-w", "-D"])
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(dir.path().join("server.log"))
            .arg("start");
        run(pg_ctl, "pg_ctl start")?;
        Ok(PostgresLab {
            dir,
            next_database: AtomicU32::new(0),
        })
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The URL of database `name` (which may not exist yet).
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgresql://{ROLE}@localhost/{name}?host={}",
            self.dir.path().display()
        )
    }

    /// Creates a new, empty database and returns its URL.
    pub fn create_database(&self) -> anyhow::Result<String> {
        let name = format!(
            "registry{}",
            self.next_database.fetch_add(1, Ordering::Relaxed)
        );
        let mut createdb = command("createdb");
        createdb
            .arg("-h")
            .arg(self.dir.path())
            .args(["-U", ROLE, &name]);
        run(createdb, "createdb")?;
        Ok(self.url(&name))
    }

    /// Runs SQL in database `url` with `psql` (for tests that look under the registry).
    pub fn psql(&self, url: &str, sql: &str) -> anyhow::Result<String> {
        let out = Command::new(Path::new(PG_BIN).join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                url,
                "-c",
                sql,
            ])
            .output()
            .context("starting psql")?;
        if !out.status.success() {
            bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for PostgresLab {
    fn drop(&mut self) {
        let mut pg_ctl = command("pg_ctl");
        pg_ctl
            .args(["-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop");
        if let Err(e) = run(pg_ctl, "pg_ctl stop") {
            eprintln!("postgres lab: {e}");
        }
    }
}
