//! `hometun forwarder`: the data plane as its own process.

use std::path::PathBuf;

/// Arguments of `hometun forwarder`.
#[derive(Debug, clap::Args)]
pub struct ForwarderArgs {
    /// Unix socket to listen on for the SA channel (the IKE daemon, `hometun status`).
    #[arg(long, value_name = "PATH")]
    pub control: PathBuf,
    /// Load static SAs and the interface from this TOML file (manual keying).
    #[arg(long = "static", value_name = "FILE")]
    pub static_sas: Option<PathBuf>,
}

/// Runs the forwarder until it is told to stop.
pub fn run(_args: ForwarderArgs) -> anyhow::Result<()> {
    anyhow::bail!("hometun forwarder: not built yet")
}
