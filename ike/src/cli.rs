//! `hometun server`, `hometun client`, `hometun status`, `hometun ike ...`.

use std::path::PathBuf;

/// Arguments of `hometun server`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// The server's configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Do not run: read the configuration and the files it names, print "FILE: ok" or the
    /// one-line error, exit.
    #[arg(long)]
    pub check: bool,
}

/// Arguments of `hometun client`.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// The client's configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Do not run: read the configuration and the files it names, print "FILE: ok" or the
    /// one-line error, exit.
    #[arg(long)]
    pub check: bool,
}

/// Arguments of `hometun status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The daemon's configuration file (to find its control socket); default:
    /// /etc/hometun/server.toml, else /etc/hometun/client.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `hometun ike ...`: the IKE debug tools.
#[derive(Debug, clap::Subcommand)]
pub enum IkeCommand {
    /// Print each IKE message's header and payloads.
    Decode(DecodeArgs),
    /// Send an IKE_SA_INIT and report what the server chose.
    Probe(ProbeArgs),
    /// Measure full handshakes per second against a responder (for bench/handshakes.sh).
    #[command(hide = true)]
    Bench(crate::daemon::bench::BenchArgs),
}

/// Arguments of `hometun ike decode`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["hex", "pcap"])))]
pub struct DecodeArgs {
    /// One IKE message in hex (a leading non-ESP marker is removed).
    #[arg(long, value_name = "HEX")]
    pub hex: Option<String>,
    /// A pcap or pcapng file; every IKE message on UDP 500/4500 in it is decoded.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// SK_ei in hex (AES key || 4-byte salt, as strongSwan logs it): decrypts the SK payloads
    /// of messages from the original initiator.
    #[arg(long = "sk-ei", value_name = "HEX")]
    pub sk_ei: Option<String>,
    /// SK_er in hex (AES key || 4-byte salt): decrypts the SK payloads of messages from the
    /// original responder.
    #[arg(long = "sk-er", value_name = "HEX")]
    pub sk_er: Option<String>,
}

/// Arguments of `hometun ike probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The server's address: ADDR or ADDR:PORT (IPv4; port 500 by default).
    pub addr: String,
}

/// Runs `hometun server` (or checks its configuration).
pub fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    if args.check {
        crate::daemon::check_server(&args.config)?;
        println!("{}: ok", args.config.display());
        return Ok(());
    }
    crate::daemon::run_server(&args.config)
}

/// Runs `hometun client` (or checks its configuration).
pub fn run_client(args: ClientArgs) -> anyhow::Result<()> {
    if args.check {
        crate::daemon::check_client(&args.config)?;
        println!("{}: ok", args.config.display());
        return Ok(());
    }
    crate::daemon::run_client(&args.config)
}

/// Runs `hometun status`.
pub fn run_status(args: StatusArgs) -> anyhow::Result<()> {
    crate::daemon::run_status(args.config.as_deref(), args.json)
}

/// Runs `hometun ike ...`.
pub fn run_ike(command: IkeCommand) -> anyhow::Result<()> {
    match command {
        IkeCommand::Decode(args) => {
            crate::decode::run(&args)?;
            Ok(())
        }
        IkeCommand::Probe(args) => crate::daemon::probe::run(&args.addr),
        IkeCommand::Bench(args) => crate::daemon::bench::run(args),
    }
}
