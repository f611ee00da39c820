//! The `hometun` command: clap wiring only; the work happens in the crates.

use clap::{CommandFactory, Parser, Subcommand};

/// hometun: a static IPv6 address or prefix for a home with a dynamic IPv4 address, through an
/// IPsec ESP tunnel (IPv6 in IPv4) keyed by IKEv2, that survives changes of the home address.
#[derive(Debug, Parser)]
#[command(name = "hometun", version, propagate_version = true)]
struct Cli {
    /// More log detail (-v: protocol detail, -vv: packet detail).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The server daemon (IKE responder + forwarder) on the VPS.
    Server(hometun_ike::cli::ServerArgs),
    /// The client daemon (IKE initiator + forwarder) at home.
    Client(hometun_ike::cli::ClientArgs),
    /// The ESP data plane on its own (manual keying, or under a daemon).
    Forwarder(hometun_forwarder::cli::ForwarderArgs),
    /// Peers, endpoints, SAs, bytes and limits of a running daemon.
    Status(hometun_ike::cli::StatusArgs),
    /// IKE debugging tools.
    #[command(subcommand)]
    Ike(hometun_ike::cli::IkeCommand),
    /// Certificate authority and prefix allocation.
    #[command(subcommand)]
    Pki(hometun_pki::cli::PkiCommand),
    /// Enroll this home online with a one-time token (the key stays here).
    Enroll(hometun_pki::cli::EnrollArgs),
    /// The whole story in network namespaces: CA, enrollment, tunnel, address change, status.
    Demo(hometun_demo::DemoArgs),
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

fn main() {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Server(args) => hometun_ike::cli::run_server(args),
        Command::Client(args) => hometun_ike::cli::run_client(args),
        Command::Forwarder(args) => hometun_forwarder::cli::run(args),
        Command::Status(args) => hometun_ike::cli::run_status(args),
        Command::Ike(command) => hometun_ike::cli::run_ike(command),
        Command::Pki(command) => hometun_pki::cli::run_pki(command),
        Command::Enroll(args) => hometun_pki::cli::run_enroll(args),
        Command::Demo(args) => hometun_demo::run(&args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "hometun",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    };
    if let Err(error) = result {
        // One line: the chain of causes joined, as the style asks for operator-facing errors.
        eprintln!("hometun: {error:#}");
        std::process::exit(1);
    }
}

/// Quiet by default (warnings and the events that matter at info level), `-v` for protocol
/// detail, `-vv` for packet detail. `RUST_LOG` overrides.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
