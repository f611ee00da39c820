//! `hometun pki ...` and `hometun enroll`: argument parsing and printing only; the work is in
//! [`crate::server_dir`], [`crate::client_dir`] and [`crate::enroll`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use ipnet::Ipv6Net;
use time::OffsetDateTime;

use crate::bundle::Bundle;
use crate::ca::{self, KeyType};
use crate::client_dir::ClientDir;
use crate::enroll;
use crate::server_dir::{
    DEFAULT_ENROLL_PORT, DEFAULT_GRACE_DAYS, DEFAULT_TOKEN_HOURS, InitOptions, ServerDir,
};
use crate::token::Token;
use crate::{PkiError, files};

/// Where the files live unless `--dir` says otherwise (as `hometun status` looks there).
pub const DEFAULT_DIR: &str = "/etc/hometun";

/// `hometun pki ...`.
#[derive(Debug, clap::Subcommand)]
pub enum PkiCommand {
    /// Create a CA, the server's key and certificate, server.toml and an empty registry.
    Init {
        /// Directory to create them in.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// Keep the registry in this PostgreSQL database (`postgresql://...`, written into
        /// server.toml's [registry]) instead of registry.json.
        #[arg(long, value_name = "URL")]
        registry: Option<String>,
        /// The server's public IPv4 address.
        #[arg(long)]
        server_ipv4: Ipv4Addr,
        /// The IPv6 pool client prefixes come from (its first prefix stays with the server).
        #[arg(long)]
        pool: Ipv6Net,
        /// Length of each client's prefix.
        #[arg(long, default_value_t = 64)]
        prefix_len: u8,
        /// Key type of the CA and the server.
        #[arg(long, value_enum, default_value_t = KeyType::Ed25519)]
        key: KeyType,
        /// The server's IKE identity (DNS name in its certificate).
        #[arg(long, default_value = "vps.example")]
        server_name: String,
        /// Days a revoked home's prefix stays reserved before it can be handed out again.
        #[arg(long, default_value_t = DEFAULT_GRACE_DAYS)]
        grace_days: u32,
        /// TCP port of the enrollment listener (server.toml [enroll]).
        #[arg(long, default_value_t = DEFAULT_ENROLL_PORT)]
        enroll_port: u16,
    },
    /// On the home: make the private key (mode 0600, never leaves) and a CSR.
    Request {
        /// The home's directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// The home's name (its IKE identity, a DNS name).
        #[arg(long)]
        name: String,
        /// Type of the new key (every enrollment makes one).
        #[arg(long, value_enum, default_value_t = KeyType::Ed25519)]
        key: KeyType,
    },
    /// On the server: allocate the next free prefix, issue a certificate, write a bundle.
    Sign {
        /// The CA directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// The registry's database (`postgresql://...`), instead of server.toml's [registry]
        /// or the directory's registry.json.
        #[arg(long, value_name = "URL")]
        registry: Option<String>,
        /// The CSR from `hometun pki request` (PEM or DER).
        #[arg(long)]
        csr: PathBuf,
        /// Where to write the bundle for the home.
        #[arg(long)]
        out: PathBuf,
        /// Certificate validity in days.
        #[arg(long, default_value_t = ca::CLIENT_VALID_DAYS)]
        valid_days: i64,
    },
    /// On the home: check a bundle and write client.pem, ca.pem and client.toml.
    Import {
        /// The home's directory (holds client.key).
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// The bundle from `hometun pki sign`.
        bundle: PathBuf,
    },
    /// On the server: write a client's bundle again.
    Export {
        /// The CA directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// The registry's database (`postgresql://...`), instead of server.toml's [registry]
        /// or the directory's registry.json.
        #[arg(long, value_name = "URL")]
        registry: Option<String>,
        /// The client's name.
        #[arg(long)]
        name: String,
        /// Where to write the bundle.
        #[arg(long)]
        out: PathBuf,
    },
    /// On the server: a one-time enrollment token for a home (printed on stdout).
    Token {
        /// The CA directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// The registry's database (`postgresql://...`), instead of server.toml's [registry]
        /// or the directory's registry.json.
        #[arg(long, value_name = "URL")]
        registry: Option<String>,
        /// The home's name.
        #[arg(long)]
        name: String,
        /// Hours until the token expires.
        #[arg(long, default_value_t = DEFAULT_TOKEN_HOURS, conflicts_with = "valid_minutes")]
        valid_hours: u32,
        /// Minutes until the token expires (instead of --valid-hours).
        #[arg(long)]
        valid_minutes: Option<u32>,
        /// Enrollment address to put in the token (default: server.toml [enroll]).
        #[arg(long)]
        server: Option<SocketAddr>,
    },
    /// On the CA's machine: a key and certificate for another server of this CA (it shares
    /// the registry and needs no CA key).
    ServerCert {
        /// The CA directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// The registry's database (`postgresql://...`), instead of server.toml's [registry]
        /// or the directory's registry.json.
        #[arg(long, value_name = "URL")]
        registry: Option<String>,
        /// The new server's IKE identity (a DNS name in its certificate).
        #[arg(long)]
        name: String,
        /// The new server's public IPv4 address.
        #[arg(long)]
        ipv4: Ipv4Addr,
        /// Key type.
        #[arg(long, value_enum, default_value_t = KeyType::Ed25519)]
        key: KeyType,
        /// Directory to write server.key, server.pem and ca.pem to.
        #[arg(long)]
        out: PathBuf,
    },
    /// On the server: run the enrollment listener (TLS) for `hometun enroll`.
    Serve {
        /// The CA directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// The registry's database (`postgresql://...`), instead of server.toml's [registry]
        /// or the directory's registry.json.
        #[arg(long, value_name = "URL")]
        registry: Option<String>,
        /// Address to listen on (default: server.toml [enroll] listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// On the server: revoke a home's certificate, publish the CRL; its prefix is freed after
    /// the grace period.
    Revoke {
        /// The CA directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// The registry's database (`postgresql://...`), instead of server.toml's [registry]
        /// or the directory's registry.json.
        #[arg(long, value_name = "URL")]
        registry: Option<String>,
        /// The home's name.
        #[arg(long)]
        name: String,
        /// The key is (feared) compromised (CRL reason keyCompromise).
        #[arg(long)]
        key_compromise: bool,
    },
    /// On the server: publish a fresh CRL (run it at least yearly, e.g. from cron).
    Crl {
        /// The CA directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// The registry's database (`postgresql://...`), instead of server.toml's [registry]
        /// or the directory's registry.json.
        #[arg(long, value_name = "URL")]
        registry: Option<String>,
    },
    /// On the server: each home's prefix, certificate expiry and status (its latest
    /// certificate; --all for every certificate issued).
    List {
        /// The CA directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// The registry's database (`postgresql://...`), instead of server.toml's [registry]
        /// or the directory's registry.json.
        #[arg(long, value_name = "URL")]
        registry: Option<String>,
        /// Every certificate ever issued, not only each name's latest.
        #[arg(long)]
        all: bool,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// On the server: the enrollment tokens that can still be used; --revoke NAME stops those
    /// of one home.
    Tokens {
        /// The CA directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// The registry's database (`postgresql://...`), instead of server.toml's [registry]
        /// or the directory's registry.json.
        #[arg(long, value_name = "URL")]
        registry: Option<String>,
        /// Make every pending token of this home unusable now.
        #[arg(long, value_name = "NAME")]
        revoke: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `hometun enroll`.
#[derive(Debug, clap::Args)]
pub struct EnrollArgs {
    /// The client's directory (holds its key).
    #[arg(long)]
    pub dir: PathBuf,
    /// The enrollment server's address (ADDR or ADDR:PORT; default: the one in the token).
    #[arg(long)]
    pub server: Option<String>,
    /// The one-time token from `hometun pki token`.
    #[arg(long)]
    pub token: String,
    /// Type of the new key (every enrollment makes one).
    #[arg(long, value_enum, default_value_t = KeyType::Ed25519)]
    pub key: KeyType,
}

/// `hometun renew`.
#[derive(Debug, clap::Args)]
pub struct RenewArgs {
    /// The home's client.toml (its certificate, key, CA and [renew] settings).
    #[arg(long)]
    pub config: PathBuf,
    /// Renew now, even if the certificate is not due yet.
    #[arg(long)]
    pub force: bool,
    /// Keep the current key instead of making a new one (default: renew.new_key).
    #[arg(long)]
    pub keep_key: bool,
}

/// The clock, read here (the CLI is an I/O driver); everything below takes it as an argument.
fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Runs `hometun pki ...`.
pub fn run_pki(command: PkiCommand) -> anyhow::Result<()> {
    match command {
        PkiCommand::Init {
            dir,
            registry,
            server_ipv4,
            pool,
            prefix_len,
            key,
            server_name,
            grace_days,
            enroll_port,
        } => {
            let server = ServerDir::with_registry_url(&dir, registry);
            let config = server.init(
                &InitOptions {
                    server_ipv4,
                    server_name,
                    pool,
                    prefix_len,
                    key,
                    grace_days,
                    enroll_port,
                },
                now(),
            )?;
            let ca = server.ca()?;
            println!("CA created in {}", dir.display());
            println!("  CA certificate  {}", server.ca_cert().display());
            println!("  SHA-256         {}", hex(&ca.fingerprint()));
            println!(
                "  server          {} ({}), certificate {}",
                config.server.name,
                config.server.listen,
                server.server_cert().display()
            );
            println!(
                "  pool            {} in /{prefix_len} prefixes",
                config.server.pool
            );
            println!("  config          {}", server.server_toml().display());
            println!(
                "next: `hometun pki token --dir {0} --name HOME` for online enrollment, or `hometun pki sign --dir {0} --csr F --out B`",
                dir.display()
            );
        }
        PkiCommand::ServerCert {
            dir,
            registry,
            name,
            ipv4,
            key,
            out,
        } => {
            let cert = ServerDir::with_registry_url(&dir, registry).issue_server_cert(
                &name,
                ipv4,
                key,
                &out,
                now(),
            )?;
            println!(
                "server certificate for {name} ({ipv4}) in {}, its key server.key and ca.pem beside it; \
                 its server.toml names them, with crl = the CRL and [registry] url = the shared database",
                cert.display()
            );
        }
        PkiCommand::Request { dir, name, key } => {
            let client = ClientDir::new(&dir);
            let (_, created) = client.request(&name, key)?;
            if created {
                println!("new private key {} (mode 0600)", client.key().display());
            } else {
                println!("using the existing key {}", client.key().display());
            }
            println!(
                "CSR for {name} in {}: take it to the server's `hometun pki sign`",
                client.csr().display()
            );
        }
        PkiCommand::Sign {
            dir,
            registry,
            csr,
            out,
            valid_days,
        } => {
            let issued = ServerDir::with_registry_url(&dir, registry).sign(
                &files::read(&csr)?,
                valid_days,
                now(),
            )?;
            files::write_atomic(&out, issued.bundle.to_toml().as_bytes(), files::PUBLIC_MODE)?;
            println!(
                "issued {} prefix {} serial {} until {}; bundle {}",
                issued.record.name,
                issued.record.prefix,
                issued.record.serial,
                crate::token::unix_text(issued.record.not_after),
                out.display()
            );
        }
        PkiCommand::Import { dir, bundle } => {
            let bytes = files::read(&bundle)?;
            let parsed = Bundle::parse(&bytes).map_err(PkiError::from)?;
            let client = ClientDir::new(&dir);
            let config = client.import(&parsed, rustls_pki_types::UnixTime::now())?;
            println!(
                "{} holds {}; server {} ({}); config {}",
                config.client.name,
                config.client.prefix,
                config.client.server_name,
                config.client.server,
                client.client_toml().display()
            );
            // The bundle came by whatever way it came: the operator compares this with the
            // SHA-256 `pki init` printed on the server.
            println!(
                "CA SHA-256 {}: compare it with the one `hometun pki init` printed on the server",
                hex(&ca::fingerprint(&parsed.ca_der().map_err(PkiError::from)?))
            );
        }
        PkiCommand::Export {
            dir,
            registry,
            name,
            out,
        } => {
            let bundle = ServerDir::with_registry_url(&dir, registry).export(&name)?;
            files::write_atomic(&out, bundle.to_toml().as_bytes(), files::PUBLIC_MODE)?;
            println!("bundle of {name} ({}) in {}", bundle.prefix, out.display());
        }
        PkiCommand::Token {
            dir,
            registry,
            name,
            valid_hours,
            valid_minutes,
            server,
        } => {
            let minutes = valid_minutes.unwrap_or(valid_hours.saturating_mul(60));
            let token = ServerDir::with_registry_url(&dir, registry).make_token(
                &name,
                minutes,
                server,
                now(),
            )?;
            let validity = match valid_minutes {
                Some(m) => format!("{m} min"),
                None => format!("{valid_hours} h"),
            };
            eprintln!(
                "one-time token for {name}, valid {validity}, enrollment server {}; on the home run: hometun enroll --dir DIR --token TOKEN",
                token.server
            );
            println!("{}", token.encode());
        }
        PkiCommand::Serve {
            dir,
            registry,
            listen,
        } => serve(ServerDir::with_registry_url(&dir, registry), listen)?,
        PkiCommand::Revoke {
            dir,
            registry,
            name,
            key_compromise,
        } => {
            let server = ServerDir::with_registry_url(&dir, registry);
            let record = server.revoke(&name, key_compromise, now())?;
            let data = server.registry()?.load()?;
            let free = record
                .prefix_free_at(data.grace_days)
                .map(crate::token::unix_text)
                .unwrap_or_default();
            println!(
                "revoked {name} (serial {}); CRL published; prefix {} stays reserved until {free}; \
                 a running hometun server applies it within {} s",
                record.serial,
                record.prefix,
                hometun_config::CRL_CHECK_SECONDS
            );
        }
        PkiCommand::Crl { dir, registry } => {
            let path = ServerDir::with_registry_url(&dir, registry).publish_crl(now())?;
            println!("CRL published to {}", path.display());
        }
        PkiCommand::Tokens {
            dir,
            registry,
            revoke,
            json,
        } => {
            let server = ServerDir::with_registry_url(&dir, registry);
            if let Some(name) = revoke {
                let revoked = server.revoke_tokens(&name, now())?;
                println!("{revoked} pending token(s) of {name} revoked");
                return Ok(());
            }
            let tokens = server.pending_tokens(now())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
            } else if tokens.is_empty() {
                println!("no pending tokens");
            } else {
                println!("{:<32} {:<21} EXPIRES", "NAME", "CREATED");
                for t in tokens {
                    println!("{:<32} {:<21} {}", t.name, t.created, t.expires);
                }
            }
        }
        PkiCommand::List {
            dir,
            registry,
            all,
            json,
        } => {
            let entries = ServerDir::with_registry_url(&dir, registry).list(now(), all)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                println!(
                    "{:<24} {:<24} {:<21} {:<32} STATUS",
                    "NAME", "PREFIX", "EXPIRES", "SERIAL"
                );
                for e in entries {
                    let mut status = e.status.clone();
                    if let Some(at) = &e.revoked_at {
                        status.push_str(&format!(" at {at}"));
                    }
                    if e.status == "revoked"
                        && let Some(free) = &e.prefix_free_at
                    {
                        status.push_str(&format!(", prefix free at {free}"));
                    }
                    println!(
                        "{:<24} {:<24} {:<21} {:<32} {status}",
                        e.name,
                        e.prefix.to_string(),
                        e.expires,
                        e.serial
                    );
                }
            }
        }
    }
    Ok(())
}

fn serve(server: ServerDir, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let listen = match listen {
        Some(l) => l,
        None => server
            .config()?
            .enroll
            .map(|e| e.listen)
            .context("server.toml has no [enroll] table; pass --listen ADDR:PORT")?,
    };
    let service = Arc::new(enroll::server::EnrollmentServer::for_dir(
        server,
        enroll::limits::ListenerLimits::default(),
    )?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        tracing::info!("enrollment server listening on {}", listener.local_addr()?);
        service.serve(listener).await;
        Ok(())
    })
}

/// Runs `hometun enroll`.
pub fn run_enroll(args: EnrollArgs) -> anyhow::Result<()> {
    let token = Token::parse(&args.token)?;
    let server = match &args.server {
        None => token.server,
        Some(text) => text
            .parse::<SocketAddr>()
            .or_else(|_| {
                text.parse::<IpAddr>()
                    .map(|ip| SocketAddr::new(ip, token.server.port()))
            })
            .map_err(|_| anyhow::anyhow!("--server {text:?} is not an address"))?,
    };
    let client = ClientDir::new(&args.dir);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (bundle, _) = runtime.block_on(enroll::client::enroll(
        &client,
        &token,
        server,
        args.key,
        rustls_pki_types::UnixTime::now(),
    ))?;
    println!(
        "enrolled {} with prefix {}; config {}",
        bundle.name,
        bundle.prefix,
        client.client_toml().display()
    );
    Ok(())
}

/// Runs `hometun renew`.
pub fn run_renew(args: RenewArgs) -> anyhow::Result<()> {
    let options = crate::renew::RenewOptions {
        force: args.force,
        new_key: args.keep_key.then_some(false),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(crate::renew::renew(
        &args.config,
        &options,
        rustls_pki_types::UnixTime::now(),
    ))?;
    let text = crate::token::unix_text;
    match outcome {
        crate::renew::RenewOutcome::NotDue { due, not_after } => println!(
            "certificate valid until {}; renewal due at {}: nothing to do (--force renews now)",
            text(not_after),
            text(due)
        ),
        crate::renew::RenewOutcome::Renewed(r) => println!(
            "renewed {} ({}): serial {}, valid until {}, {}; {}; a running client takes it on SIGHUP (systemctl reload hometun-client)",
            r.name,
            r.prefix,
            r.serial,
            text(r.not_after),
            if r.new_key { "new key" } else { "same key" },
            r.certificate.display()
        ),
    }
    Ok(())
}
