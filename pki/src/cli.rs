//! `hometun pki ...` and `hometun enroll`.

use std::path::PathBuf;

/// `hometun pki ...`.
#[derive(Debug, clap::Subcommand)]
pub enum PkiCommand {
    /// Create a CA, the server's key and certificate, server.toml and an empty registry.
    Init {
        /// Directory to create them in.
        #[arg(long)]
        dir: PathBuf,
        /// The server's public IPv4 address.
        #[arg(long)]
        server_ipv4: String,
        /// The IPv6 pool client prefixes come from.
        #[arg(long)]
        pool: String,
        /// Length of each client's prefix.
        #[arg(long, default_value_t = 64)]
        prefix_len: u8,
        /// Key type of the CA and the server.
        #[arg(long, default_value = "ed25519")]
        key: String,
    },
}

/// `hometun enroll`.
#[derive(Debug, clap::Args)]
pub struct EnrollArgs {
    /// The client's directory (holds its key).
    #[arg(long)]
    pub dir: PathBuf,
    /// The enrollment server's address.
    #[arg(long)]
    pub server: String,
    /// The one-time token from `hometun pki token`.
    #[arg(long)]
    pub token: String,
}

/// Runs `hometun pki ...`.
pub fn run_pki(_command: PkiCommand) -> anyhow::Result<()> {
    anyhow::bail!("hometun pki: not built yet")
}

/// Runs `hometun enroll`.
pub fn run_enroll(_args: EnrollArgs) -> anyhow::Result<()> {
    anyhow::bail!("hometun enroll: not built yet")
}
