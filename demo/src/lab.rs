//! What the demo makes and must remove again, whatever happens: network namespaces and child
//! processes (each removes itself when dropped, also while a panic unwinds), and the stop
//! signals (SIGINT, SIGTERM), which turn into an error at the next wait so that the same drops
//! clean up.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

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

/// Runs a command to its end; fails with its output if it fails.
pub fn run(command: &mut Command, what: &str) -> anyhow::Result<Output> {
    check_stop()?;
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {what}"))?;
    check_stop()?;
    if !output.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        bail!("{what} failed ({}): {}", output.status, one_line(&text));
    }
    Ok(output)
}

/// `ip ARGS...`
pub fn ip(args: &[&str]) -> anyhow::Result<Output> {
    run(
        Command::new("ip").args(args),
        &format!("ip {}", args.join(" ")),
    )
}

/// A network namespace, deleted (with every process still in it) when dropped.
#[derive(Debug)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// Creates `htdemo-<pid>-<role>` with its loopback up.
    pub fn create(role: &str) -> anyhow::Result<Self> {
        let name = format!("{NAMESPACE_PREFIX}{}-{role}", std::process::id());
        ip(&["netns", "add", &name])?;
        let ns = Namespace { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// `sysctl -w KEY=VALUE` inside the namespace.
    pub fn sysctl(&self, setting: &str) -> anyhow::Result<()> {
        run(
            self.command("sysctl").args(["-q", "-w", setting]),
            &format!("sysctl {setting} in {}", self.name),
        )?;
        Ok(())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Whether it went is checked once for all in the clean-up summary.
        let _ = remove_namespace(&self.name);
    }
}

fn namespace_pids(name: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Kills what still runs in a namespace and deletes it (its devices and routes go with it);
/// whether it was deleted (another demo may have been first).
fn remove_namespace(name: &str) -> bool {
    for pid in namespace_pids(name) {
        // SAFETY: kill has no memory preconditions; these processes run in our namespace.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The namespaces of this process that exist (after a clean run: none).
pub fn our_namespaces() -> Vec<String> {
    let prefix = format!("{NAMESPACE_PREFIX}{}-", std::process::id());
    all_demo_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

fn all_demo_namespaces() -> Vec<String> {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|n| n.starts_with(NAMESPACE_PREFIX))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the namespaces of earlier demos whose process is gone (killed with SIGKILL, which
/// nothing can clean up after); returns their names.
pub fn remove_stale_namespaces() -> Vec<String> {
    let mut removed = Vec::new();
    for name in all_demo_namespaces() {
        let pid = name
            .strip_prefix(NAMESPACE_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
            && remove_namespace(&name)
        {
            removed.push(name);
        }
    }
    removed
}

/// A daemon started by the demo, its output in a log file. Dropping it stops it: SIGTERM
/// (a hometun daemon then deletes its IKE SAs and removes its TUN device), SIGKILL after a grace
/// period.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    what: String,
    log: PathBuf,
}

/// How long a daemon gets to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

impl Daemon {
    /// Starts `command` with stdout and stderr into `log`.
    pub fn spawn(mut command: Command, what: &str, log: &Path) -> anyhow::Result<Self> {
        check_stop()?;
        let file = std::fs::File::create(log).with_context(|| format!("{}", log.display()))?;
        let child = command
            // The log is a file (and its tail may be quoted): no colour escapes.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Daemon {
            child: Some(child),
            what: what.to_string(),
            log: log.to_path_buf(),
        })
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Fails (naming the daemon, its exit status and the last line of its log) if it exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("{} was stopped", self.what);
        };
        match child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!(
                "{} exited ({status}): {}",
                self.what,
                self.log_text()
                    .lines()
                    .last()
                    .unwrap_or("(nothing in its log)")
            ),
        }
    }

    /// Sends a signal, unless it exited (then its pid may be another process's by now).
    pub fn signal(&mut self, signal: i32) {
        if let Some(child) = &mut self.child
            && matches!(child.try_wait(), Ok(None))
        {
            // SAFETY: kill has no memory preconditions; the pid is our child's, not yet reaped.
            unsafe { libc::kill(child.id() as i32, signal) };
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after the grace period).
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} was already stopped", self.what);
        };
        // A child that exited was reaped by try_wait: its pid may be another process's by now.
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        // SAFETY: kill has no memory preconditions; the pid is our child's, not yet reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let mut waited = Duration::ZERO;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if waited >= STOP_GRACE {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not stop within {STOP_GRACE:?}; killed", self.what);
            }
            std::thread::sleep(Duration::from_millis(20));
            waited += Duration::from_millis(20);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

/// A command's output on one line, for an error message.
pub fn one_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        "no output".to_string()
    } else {
        lines.join(" / ")
    }
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
