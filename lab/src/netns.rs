//! Network namespaces, veth pairs, sysctls, nftables rules, and child processes that clean up
//! after themselves: dropped, a namespace takes every process still in it along, a process is
//! killed or stopped (also while a panic unwinds). The tests and benchmarks build their labs on
//! this, and so does `hometun demo`; so nothing here panics or is meant for tests alone.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Runs `program ARGS...` to its end; fails with one line naming it and its output if it fails.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<Output> {
    let what = if args.is_empty() {
        program.to_string()
    } else {
        format!("{program} {}", args.join(" "))
    };
    run_command(Command::new(program).args(args), &what)
}

/// Runs a command to its end; fails with one line naming `what` and the command's output if
/// it fails.
pub fn run_command(command: &mut Command, what: &str) -> anyhow::Result<Output> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}",
            output.status,
            one_line(&printed(&output))
        );
    }
    Ok(output)
}

/// stdout and stderr of a finished command.
pub fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
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

/// A network namespace that is deleted (with every process still in it) when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

static NEXT_NAMESPACE: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// Creates a namespace whose name is unique for this process: `ht<pid>-<n><tag>`.
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let n = NEXT_NAMESPACE.fetch_add(1, Ordering::Relaxed);
        Self::named(&format!("ht{}-{n}{tag}", std::process::id()))
    }

    /// Creates the namespace `name`, with its loopback up.
    pub fn named(name: &str) -> anyhow::Result<Self> {
        run("ip", &["netns", "add", name])?;
        let netns = Netns {
            name: name.to_string(),
        };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// A command that runs inside the namespace.
    pub fn command<P: AsRef<OsStr> + ?Sized>(&self, program: &P) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs a command inside the namespace and returns its output (success or not).
    pub fn output(&self, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {program} in {}", self.name))
    }

    /// `sysctl -w KEY=VALUE` inside the namespace.
    pub fn sysctl(&self, setting: &str) -> anyhow::Result<()> {
        run_command(
            self.command("sysctl").args(["-q", "-w", setting]),
            &format!("sysctl {setting} in {}", self.name),
        )?;
        Ok(())
    }

    /// Loads nftables rules (`nft -f -`) into the namespace.
    pub fn nft(&self, rules: &str) -> anyhow::Result<()> {
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running nft")?;
        child
            .stdin
            .take()
            .context("nft stdin")?
            .write_all(rules.as_bytes())?;
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!(
                "nft in {}: {}",
                self.name,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// Whether the namespace has a network device named `device`.
    pub fn has_link(&self, device: &str) -> bool {
        self.output("ip", &["link", "show", device])
            .is_ok_and(|o| o.status.success())
    }

    /// The processes running in it.
    pub fn pids(&self) -> Vec<i32> {
        namespace_pids(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Whether it went can be checked with `namespaces_with_prefix`.
        let _ = remove_namespace(&self.name);
    }
}

/// A veth pair from device `a_name` in `a` to device `b_name` in `b`.
pub fn veth(a: &Netns, a_name: &str, b: &Netns, b_name: &str) -> anyhow::Result<()> {
    run(
        "ip",
        &[
            "link",
            "add",
            a_name,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            b_name,
            "netns",
            b.name(),
        ],
    )?;
    Ok(())
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

/// Moves the calling thread into the namespace `name` (for a thread made for the purpose: it
/// stays there).
pub fn enter(name: &str) -> anyhow::Result<()> {
    let file = std::fs::File::open(format!("/run/netns/{name}"))
        .with_context(|| format!("opening namespace {name}"))?;
    // SAFETY: a valid namespace file descriptor; setns affects this thread only.
    if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) } != 0 {
        bail!(
            "entering namespace {name}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Kills what still runs in a namespace and deletes it (its devices and routes go with it);
/// whether it was deleted (someone else may have been first).
pub fn remove_namespace(name: &str) -> bool {
    for pid in namespace_pids(name) {
        // SAFETY: kill has no memory preconditions; these processes run in that namespace.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The namespaces whose names start with `prefix`.
pub fn namespaces_with_prefix(prefix: &str) -> Vec<String> {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|n| n.starts_with(prefix))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// A child process that is killed when dropped (or, after [`Guarded::terminate_on_drop`],
/// stopped with SIGTERM and a grace period).
#[derive(Debug)]
pub struct Guarded {
    child: Option<Child>,
    what: String,
    log: Option<PathBuf>,
    drop_grace: Option<Duration>,
}

impl Guarded {
    fn new(child: Child, what: &str, log: Option<&Path>) -> Self {
        Guarded {
            child: Some(child),
            what: what.to_string(),
            log: log.map(Path::to_path_buf),
            drop_grace: None,
        }
    }

    /// Starts `command` with stdout and stderr into `log` (a file).
    pub fn spawn(mut command: Command, what: &str, log: &Path) -> anyhow::Result<Self> {
        let file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Self::new(child, what, Some(log)))
    }

    /// Starts `command` with its stdout piped (for helpers that print a result).
    pub fn spawn_piped(mut command: Command, what: &str) -> anyhow::Result<Self> {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Self::new(child, what, None))
    }

    /// When dropped, stop it as [`Guarded::terminate`] does (SIGTERM, then SIGKILL after
    /// `grace`) instead of killing it at once: a daemon then cleans up after itself.
    pub fn terminate_on_drop(mut self, grace: Duration) -> Self {
        self.drop_grace = Some(grace);
        self
    }

    /// Reads one line of the child's piped stdout (without the newline).
    pub fn read_line(&mut self) -> anyhow::Result<String> {
        use std::io::Read;
        let stdout = self
            .child
            .as_mut()
            .and_then(|c| c.stdout.as_mut())
            .context("stdout is not piped")?;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            if stdout.read(&mut byte)? == 0 {
                bail!("{} closed its output", self.what);
            }
            if byte[0] == b'\n' {
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            line.push(byte[0]);
        }
    }

    /// Its log file so far (empty without one).
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|log| std::fs::read_to_string(log).ok())
            .unwrap_or_default()
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends a signal.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(self.id() as i32, signal) };
    }

    /// Sends a signal unless it exited (then its pid may be another process's by now).
    pub fn signal_if_running(&mut self, signal: i32) {
        if self.running() {
            self.signal(signal);
        }
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Fails (naming it, its exit status and the last line of its log) if it exited.
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

    /// SIGTERM, then waits for the exit (SIGKILL after `grace`); its exit status.
    pub fn terminate(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} was already stopped", self.what);
        };
        // A child that exited was reaped by try_wait: its pid may be another process's by now.
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        // SAFETY: kill has no memory preconditions; the pid is our child's, not yet reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let step = Duration::from_millis(20);
        let mut waited = Duration::ZERO;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if waited >= grace {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not stop within {grace:?}; killed", self.what);
            }
            std::thread::sleep(step);
            waited += step;
        }
    }

    /// Waits for the process to exit, at most `timeout`; returns its output.
    pub fn wait(mut self, timeout: Duration) -> anyhow::Result<Output> {
        let mut child = self.child.take().context("already waited")?;
        let deadline = Instant::now() + timeout;
        loop {
            if child.try_wait()?.is_some() {
                return Ok(child.wait_with_output()?);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not finish within {timeout:?}", self.what);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        match self.drop_grace {
            Some(grace) if self.child.is_some() => {
                let _ = self.terminate(grace);
            }
            _ => {
                if let Some(mut child) = self.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }
}

/// Waits until `condition` holds, at most `timeout`; whether it held.
pub fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    condition()
}

/// CLOCK_MONOTONIC in ns (the clock of `hometun-roamtool ping`, across processes).
pub fn monotonic_ns() -> u64 {
    // SAFETY: timespec is plain data; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_on_one_line() {
        assert_eq!(one_line("a\n\n  b \n"), "a / b");
        assert_eq!(one_line(""), "no output");
    }
}
