//! `hometun forwarder`: the data plane as its own process.

use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use anyhow::Context;
use hometun_control::{Request, Response};

use crate::aead::AeadBackend;
use crate::control_socket::{PeerPolicy, SocketFile, UserSpec, bind_control_socket};
use crate::dataplane::{DataplaneOptions, LinuxPlatform};
use crate::requests::RequestHandler;
use crate::server::{ControlClient, Server, StopReason, stop_channel};
use hometun_config::static_sa::StaticConfig;

/// Arguments of `hometun forwarder`.
#[derive(Debug, clap::Args)]
pub struct ForwarderArgs {
    /// Unix socket to listen on for the SA channel (the IKE daemon, `hometun status`); the
    /// forwarder stops when the controller that configured the interface disconnects.
    #[arg(long, value_name = "PATH", required_unless_present = "control_fd")]
    pub control: Option<PathBuf>,
    /// Let this user (a uid or a user name) use the control socket too, besides root and the
    /// forwarder's own user: the IKE daemon's user when the two run as different users (the
    /// systemd units). The socket is then group-writable (0660), so run the forwarder with a
    /// group that user is in; the peer's uid is still checked on every connection. Repeatable.
    #[arg(long, value_name = "UID", requires = "control")]
    pub allow_uid: Vec<UserSpec>,
    /// An already connected SA-channel socket inherited from a parent daemon (e.g. one end of a
    /// socketpair); the forwarder stops when the other end closes.
    #[arg(long, value_name = "N")]
    pub control_fd: Option<i32>,
    /// Load static SAs and the interface from this TOML file (manual keying).
    #[arg(long = "static", value_name = "FILE")]
    pub static_sas: Option<PathBuf>,
    /// Do not run a forwarder: ask the one at --control for its counters, print them as JSON.
    #[arg(long, requires = "control")]
    pub counters: bool,
    /// Do not run a forwarder: ask the one at --control to shut down.
    #[arg(long, requires = "control", conflicts_with = "counters")]
    pub stop: bool,
    /// AES-GCM implementation for ESP.
    #[arg(long, value_enum, default_value_t = AeadChoice::Auto)]
    pub aead: AeadChoice,
    /// Do not use TSO/GRO offload on the TUN device.
    #[arg(long)]
    pub no_offload: bool,
    /// Do not use UDP GSO/GRO for ESP in UDP.
    #[arg(long)]
    pub no_udp_offload: bool,
    /// Client role: follow our outer IPv4 address (netlink), re-bind and announce it to the
    /// peers with the override NA (also `[roaming] follow_local_address` in --static).
    #[arg(long)]
    pub follow_local_address: bool,
    /// The override NA's target address (default: the TUN address inside the SA's local_ts).
    #[arg(long, value_name = "IPV6")]
    pub announce_target: Option<std::net::Ipv6Addr>,
    /// Server role: check override NAs and authenticated packets from new outer addresses,
    /// probe, and move peers' endpoints (also `[roaming] accept_moves` in --static).
    #[arg(long)]
    pub accept_moves: bool,
}

/// `--aead` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AeadChoice {
    /// The faster of aws-lc and ring on this CPU, timed at start (aws-lc where the CPU has
    /// AVX-512 with VAES, ring on most others).
    Auto,
    /// aws-lc's assembly AES-GCM.
    AwsLc,
    /// ring's assembly AES-GCM.
    Ring,
    /// RustCrypto's aes-gcm.
    Rustcrypto,
}

/// Runs the forwarder until it is told to stop.
pub fn run(args: ForwarderArgs) -> anyhow::Result<()> {
    hometun_control::heap_trim::map_large_blocks();
    if args.counters || args.stop {
        let path = args
            .control
            .as_deref()
            .context("--control PATH is needed")?;
        return ask(
            path,
            if args.stop {
                Request::Shutdown
            } else {
                Request::GetCounters
            },
        );
    }
    let mut allowed = Vec::new();
    for user in &args.allow_uid {
        let uid = user
            .resolve()
            .with_context(|| format!("--allow-uid {user}"))?;
        allowed.push(uid);
    }
    let policy = PeerPolicy::new(allowed);
    // Block the stop signals before any thread starts, so only the signal thread sees them.
    let signals = crate::signals::StopSignals::block().context("blocking SIGTERM/SIGINT")?;
    let backend = match args.aead {
        AeadChoice::Auto => {
            let (backend, timings) = AeadBackend::fastest();
            let [(first, first_time), (second, second_time)] = timings;
            tracing::info!(
                "forwarder: AES-GCM by {}, the faster here ({} {} ns, {} {} ns to seal and open a \
                 1400-byte packet)",
                backend.name(),
                first.name(),
                first_time.as_nanos(),
                second.name(),
                second_time.as_nanos()
            );
            backend
        }
        AeadChoice::AwsLc => AeadBackend::AwsLc,
        AeadChoice::Ring => AeadBackend::Ring,
        AeadChoice::Rustcrypto => AeadBackend::RustCrypto,
    };
    let config = match &args.static_sas {
        Some(file) => Some(StaticConfig::load(file)?),
        None => None,
    };
    let mut roaming = config.as_ref().map(|c| c.roaming).unwrap_or_default();
    roaming.follow_local_address |= args.follow_local_address;
    roaming.accept_moves |= args.accept_moves;
    if args.announce_target.is_some() {
        roaming.announce_target = args.announce_target;
    }
    let (events_tx, events_rx) = crate::events::channel();
    let stop = stop_channel();
    let platform = LinuxPlatform::new(
        events_tx.clone(),
        DataplaneOptions {
            offload: !args.no_offload,
            udp_offload: !args.no_udp_offload,
            roaming,
        },
    )
    .stopping_with(stop.0.clone());
    let handler = RequestHandler::with_events(platform, backend, events_tx);
    let server = Server::with_stop_channel(handler, events_rx, stop);
    signals.forward_to(server.stopper());

    if let (Some(file), Some(config)) = (&args.static_sas, &config) {
        let mut handler = server.handler().lock().unwrap_or_else(|e| e.into_inner());
        for request in config.requests() {
            if let Err(error) = handler.handle(request) {
                handler.shutdown();
                anyhow::bail!("{}: {error}", file.display());
            }
        }
        tracing::info!(
            "forwarder: {} static SA pair(s) from {}",
            config.sas.len(),
            file.display()
        );
    }
    if let Some(path) = &args.control {
        let listener = bind_control_socket(path, policy.socket_mode())
            .with_context(|| format!("control socket {}", path.display()))?;
        server.listen(listener, policy);
        server.remove_on_stop(SocketFile::new(path.clone()));
    }
    if let Some(fd) = args.control_fd {
        die_with_parent()?;
        // SAFETY: the parent handed this descriptor to us for exactly this purpose; nothing
        // else in this process owns it.
        let stream = unsafe { UnixStream::from_raw_fd(fd) };
        server.adopt(stream);
    }
    match server.wait() {
        // The one line that says why, printed by main; exit status 1.
        StopReason::Failed(why) => Err(anyhow::anyhow!(why)),
        // Asked to, or the controlling daemon went away: nothing to do without it, and
        // nothing failed.
        reason => {
            tracing::info!("forwarder: stopped: {reason}");
            Ok(())
        }
    }
}

/// Under `--control-fd` the parent daemon is our controller: die with it (SIGKILL; the kernel
/// then removes the TUN device and its routes). The daemon asks for this before exec too; an
/// exec of a binary with file capabilities clears it, so it is asked for again here.
fn die_with_parent() -> anyhow::Result<()> {
    // SAFETY: getppid and prctl have no memory preconditions.
    let parent = unsafe { libc::getppid() };
    // SAFETY: as above; PR_SET_PDEATHSIG takes a signal number.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(std::io::Error::last_os_error()).context("PR_SET_PDEATHSIG");
    }
    // SAFETY: as above.
    if unsafe { libc::getppid() } != parent {
        anyhow::bail!("the daemon that started this forwarder is gone");
    }
    Ok(())
}

fn ask(path: &std::path::Path, request: Request) -> anyhow::Result<()> {
    let mut client = ControlClient::connect(path)
        .with_context(|| format!("connecting to {}", path.display()))?;
    let (result, _events) = client.request(request)?;
    match result? {
        Response::Counters(report) => println!("{}", serde_json::to_string_pretty(&report)?),
        Response::Ok => {}
    }
    Ok(())
}
