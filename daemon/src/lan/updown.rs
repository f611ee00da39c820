//! The `updown` hook (`client.updown`): a program run when the tunnel comes up and when it goes
//! down (for longer than the liveness timeout, [`super::down_grace`], or the client stops),
//! like wg-quick's PostUp/PostDown or strongSwan's updown script, for homes whose own RA daemon
//! (radvd, odhcpd, systemd-networkd) announces the prefix (examples/updown/).
//!
//! Its environment:
//! - `HOMETUN_STATE`: `up` or `down`;
//! - `HOMETUN_PREFIX`: the home's prefix (e.g. `2001:db8:100:100::/56`);
//! - `HOMETUN_ADDRESS`: the home's address on the tunnel;
//! - `HOMETUN_TUNNEL`: the tunnel interface; `HOMETUN_MTU`: its MTU;
//! - `HOMETUN_LANS`: the `[[lan]]` tables as `INTERFACE=SUBNET/64`, separated by spaces.
//!
//! Runs are one at a time, in order, each for at most [`HOOK_TIMEOUT`]; the daemon does not
//! wait for them except when it stops.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long one run of the hook may take before it is killed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// The hook and the environment every run gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// The program.
    pub program: PathBuf,
    /// `HOMETUN_*` variables besides `HOMETUN_STATE`.
    pub environment: Vec<(String, String)>,
}

/// Runs the hook's calls in order on a task of their own.
pub struct HookRunner {
    queue: Option<mpsc::UnboundedSender<&'static str>>,
    task: Option<JoinHandle<()>>,
}

impl HookRunner {
    /// Starts the task.
    pub fn start(hook: Hook) -> Self {
        let (queue, mut states) = mpsc::unbounded_channel::<&'static str>();
        let task = tokio::spawn(async move {
            while let Some(state) = states.recv().await {
                run_once(&hook, state).await;
            }
        });
        HookRunner {
            queue: Some(queue),
            task: Some(task),
        }
    }

    /// Queues a run with `HOMETUN_STATE=state`.
    pub fn run(&self, state: &'static str) {
        if let Some(queue) = &self.queue {
            let _ = queue.send(state);
        }
    }

    /// Waits for the queued runs to finish (each bounded by [`HOOK_TIMEOUT`]).
    pub async fn finish(&mut self) {
        self.queue = None;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

async fn run_once(hook: &Hook, state: &'static str) {
    let mut command = tokio::process::Command::new(&hook.program);
    command
        .envs(
            hook.environment
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .env("HOMETUN_STATE", state)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let program = hook.program.display();
    let child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!("client.updown {program} ({state}): cannot start: {error}");
            return;
        }
    };
    match tokio::time::timeout(HOOK_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(output)) if output.status.success() => {
            tracing::info!("client.updown {program} ({state}): done");
        }
        Ok(Ok(output)) => {
            let said = String::from_utf8_lossy(&output.stderr);
            let said = said.lines().last().unwrap_or("").trim();
            tracing::warn!(
                "client.updown {program} ({state}): {}{}",
                output.status,
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": {said}")
                }
            );
        }
        Ok(Err(error)) => tracing::warn!("client.updown {program} ({state}): {error}"),
        Err(_) => tracing::warn!(
            "client.updown {program} ({state}): still running after {HOOK_TIMEOUT:?}; killed"
        ),
    }
}
