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
    /// Show only this peer (a home's name on a server, the server's on a client).
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// The daemon's configuration file (to find its status socket); default:
    /// /etc/hometun/server.toml, else /etc/hometun/client.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `hometun terminate`.
#[derive(Debug, clap::Args)]
pub struct TerminateArgs {
    /// The peer's identity, as `hometun status` shows it (a home's name on a server).
    pub name: String,
    /// The daemon's configuration file (to find its status socket); default:
    /// /etc/hometun/server.toml, else /etc/hometun/client.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Arguments of `hometun initiate`.
#[derive(Debug, clap::Args)]
pub struct InitiateArgs {
    /// The client's configuration file (to find its status socket); default:
    /// /etc/hometun/server.toml, else /etc/hometun/client.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Runs `hometun terminate NAME`.
pub fn run_terminate(args: TerminateArgs) -> anyhow::Result<()> {
    crate::operator::run(
        args.config.as_deref(),
        &crate::operator::Command::Terminate(args.name),
    )
}

/// Runs `hometun initiate`.
pub fn run_initiate(args: InitiateArgs) -> anyhow::Result<()> {
    crate::operator::run(args.config.as_deref(), &crate::operator::Command::Initiate)
}

/// `hometun ike ...`: the IKE debug tools.
#[derive(Debug, clap::Subcommand)]
pub enum IkeCommand {
    /// Print each IKE message's header and payloads.
    Decode(crate::tools::decode::DecodeArgs),
    /// Send an IKE_SA_INIT and report what the server chose.
    Probe(crate::tools::probe::ProbeArgs),
    /// Measure full handshakes per second against a responder (for bench/handshakes.sh).
    #[command(hide = true)]
    Bench(crate::tools::bench::BenchArgs),
}

/// Runs `hometun server` (or checks its configuration).
pub fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    if args.check {
        crate::setup::check_server(&args.config)?;
        println!("{}: ok", args.config.display());
        return Ok(());
    }
    crate::malloc_arenas::use_one_arena();
    hometun_control::heap_trim::map_large_blocks();
    crate::setup::run_server(&args.config)
}

/// Runs `hometun client` (or checks its configuration).
pub fn run_client(args: ClientArgs) -> anyhow::Result<()> {
    if args.check {
        crate::setup::check_client(&args.config)?;
        println!("{}: ok", args.config.display());
        return Ok(());
    }
    crate::malloc_arenas::use_one_arena();
    hometun_control::heap_trim::map_large_blocks();
    crate::setup::run_client(&args.config)
}

/// Runs `hometun status`.
pub fn run_status(args: StatusArgs) -> anyhow::Result<()> {
    crate::setup::run_status(args.config.as_deref(), args.name.as_deref(), args.json)
}

/// Runs `hometun ike ...`.
pub fn run_ike(command: IkeCommand) -> anyhow::Result<()> {
    match command {
        IkeCommand::Decode(args) => {
            crate::tools::decode::run(&args)?;
            Ok(())
        }
        IkeCommand::Probe(args) => crate::tools::probe::run(&args.addr),
        IkeCommand::Bench(args) => crate::tools::bench::run(args),
    }
}
