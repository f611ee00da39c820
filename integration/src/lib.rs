//! Helpers for tests across processes and network namespaces: the `hometun` binary, namespaces
//! and child processes that clean up after themselves (also when a test fails), and a lab of two
//! forwarders joined through a bridge in a third namespace.

#![cfg_attr(test, allow(clippy::unwrap_used))]
// A test driver: wall-clock timeouts are what it is for.
#![allow(clippy::disallowed_methods)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

pub mod forwarder_lab;
pub mod ike_lab;
pub mod lan_lab;
pub mod pki_lab;
pub mod roaming_ike_lab;
pub mod roaming_lab;
pub mod strongswan;

/// True when the test may run: as root. When not root it prints why it skips, unless
/// `CI=true`, where it panics (CI must run every test).
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: needs root (network namespaces, TUN), and CI=true forbids skipping");
    }
    eprintln!("{test}: skipped: needs root for network namespaces and TUN devices");
    false
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration/ lives in the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The `hometun` binary: `$HOMETUN_BIN`, else the target directory's (release first), built if
/// missing.
pub fn hometun_bin() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("HOMETUN_BIN") {
        return Ok(PathBuf::from(path));
    }
    helper_bin("hometun", "hometun")
}

fn helper_bin(name: &str, package: &str) -> anyhow::Result<PathBuf> {
    let target = target_dir();
    for profile in ["release", "debug"] {
        let candidate = target.join(profile).join(name);
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    let status = Command::new(env!("CARGO"))
        .args(["build", "-p", package, "--bin", name])
        .current_dir(workspace_root())
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --bin {name} failed");
    }
    Ok(target.join("debug").join(name))
}

/// Runs a command and fails with its output if it fails.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<Output> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// A network namespace that is deleted (with every process still in it) when dropped.
pub struct Netns {
    name: String,
}

static NEXT_NAMESPACE: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// Creates a namespace whose name is unique for this process: `ht<pid>-<n><tag>`.
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let n = NEXT_NAMESPACE.fetch_add(1, Ordering::Relaxed);
        let name = format!("ht{}-{n}{tag}", std::process::id());
        run("ip", &["netns", "add", &name])?;
        let netns = Netns { name };
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
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs a command inside the namespace and returns its output (success or not).
    pub fn output(&self, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .with_context(|| format!("running {program} in {}", self.name))
    }

    fn pids(&self) -> Vec<i32> {
        Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for pid in self.pids() {
            // SAFETY: kill has no memory preconditions; these are processes in our namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A child process that is killed when dropped.
pub struct Guarded {
    child: Option<Child>,
    what: String,
}

impl Guarded {
    /// Starts `command` with output captured into `log` (a file).
    pub fn spawn(mut command: Command, what: &str, log: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::create(log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Guarded {
            child: Some(child),
            what: what.to_string(),
        })
    }

    /// Starts `command` with its stdout piped (for helpers that print a result).
    pub fn spawn_piped(mut command: Command, what: &str) -> anyhow::Result<Self> {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Guarded {
            child: Some(child),
            what: what.to_string(),
        })
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

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends a signal.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(self.id() as i32, signal) };
    }

    /// Waits for the process to exit, at most `timeout`; returns its output.
    pub fn wait(mut self, timeout: Duration) -> anyhow::Result<Output> {
        let mut child = self.child.take().context("already waited")?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if child.try_wait()?.is_some() {
                return Ok(child.wait_with_output()?);
            }
            if std::time::Instant::now() > deadline {
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
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until `condition` holds, at most `timeout`.
pub fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    condition()
}

/// Outer addresses of the lab: the VPS side and the home side.
pub const VPS_OUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The home side's outer address.
pub const HOME_OUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
