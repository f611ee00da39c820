//! What the demo makes and must remove again, whatever happens: network namespaces and child
//! processes (hometun-lab's `netns`, the plumbing the tests use too: each removes itself when
//! dropped, also while a panic unwinds), and the stop signals (SIGINT, SIGTERM), which turn
//! into an error at the next wait or command so that the same drops clean up.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use anyhow::bail;
use hometun_lab::netns::{self, Guarded, Netns};

/// Prefix of the demo's namespace names: `htdemo-<pid>-<role>`.
pub const NAMESPACE_PREFIX: &str = "htdemo-";

/// The stop signal that arrived (0: none).
static STOP: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(signal, Ordering::SeqCst);
}

/// From now on SIGINT, SIGTERM and SIGHUP (the terminal closed) do not kill the process: they
/// make the next wait fail.
pub fn catch_stop_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, on_stop_signal as *const () as libc::sighandler_t) };
    }
}

/// The error a wait returns after a stop signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted(pub i32);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.0 {
            libc::SIGINT => "SIGINT",
            libc::SIGTERM => "SIGTERM",
            libc::SIGHUP => "SIGHUP",
            _ => "a signal",
        };
        write!(f, "interrupted by {name}")
    }
}

impl std::error::Error for Interrupted {}

/// Fails if a stop signal arrived.
pub fn check_stop() -> anyhow::Result<()> {
    match STOP.load(Ordering::SeqCst) {
        0 => Ok(()),
        signal => Err(Interrupted(signal).into()),
    }
}

/// Sleeps, waking for a stop signal.
pub fn sleep(duration: Duration) -> anyhow::Result<()> {
    let step = Duration::from_millis(10);
    let mut left = duration;
    while !left.is_zero() {
        check_stop()?;
        let now = left.min(step);
        std::thread::sleep(now);
        left -= now;
    }
    check_stop()
}

/// Waits until `condition` holds; fails after `timeout` with `what`, or on a stop signal.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let step = Duration::from_millis(20);
    let mut waited = Duration::ZERO;
    loop {
        check_stop()?;
        if condition() {
            return Ok(());
        }
        if waited >= timeout {
            bail!("{what} (waited {timeout:?})");
        }
        std::thread::sleep(step);
        waited += step;
    }
}

/// Runs a command to its end; fails with its output if it fails (or on a stop signal).
pub fn run(command: &mut Command, what: &str) -> anyhow::Result<Output> {
    check_stop()?;
    let result = netns::run_command(command, what);
    // A stop signal reaches the command too (Ctrl-C signals the whole process group): the
    // signal, not the command's failure, is the reason to report.
    check_stop()?;
    result
}

/// A network namespace of the demo, deleted (with every process still in it) when dropped.
pub type Namespace = Netns;

/// Creates `htdemo-<pid>-<role>` with its loopback up.
pub fn create_namespace(role: &str) -> anyhow::Result<Namespace> {
    check_stop()?;
    Netns::named(&format!("{NAMESPACE_PREFIX}{}-{role}", std::process::id()))
}

/// The namespaces of this process that exist (after a clean run: none).
pub fn our_namespaces() -> Vec<String> {
    netns::namespaces_with_prefix(&format!("{NAMESPACE_PREFIX}{}-", std::process::id()))
}

/// Removes the namespaces of earlier demos whose process is gone (killed with SIGKILL, which
/// nothing can clean up after); returns their names.
pub fn remove_stale_namespaces() -> Vec<String> {
    let mut removed = Vec::new();
    for name in netns::namespaces_with_prefix(NAMESPACE_PREFIX) {
        let pid = name
            .strip_prefix(NAMESPACE_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
            && netns::remove_namespace(&name)
        {
            removed.push(name);
        }
    }
    removed
}

/// A daemon started by the demo, its output in a log file. Dropping it stops it: SIGTERM
/// (a hometun daemon then deletes its IKE SAs and removes its TUN device), SIGKILL after
/// [`STOP_GRACE`].
pub type Daemon = Guarded;

/// How long a daemon gets to stop after SIGTERM.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Starts `command` with stdout and stderr into `log`, stopped gracefully when dropped.
pub fn spawn_daemon(mut command: Command, what: &str, log: &Path) -> anyhow::Result<Daemon> {
    check_stop()?;
    // The log is a file (and its tail may be quoted): no colour escapes.
    command.env("NO_COLOR", "1");
    Ok(Guarded::spawn(command, what, log)?.terminate_on_drop(STOP_GRACE))
}

/// The last `n` lines of a text, indented.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
