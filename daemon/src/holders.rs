//! Which server holds each home, when several servers share one registry (README.md, "Failover
//! and BGP"). A server claims a home in the registry when the home authenticates to it, and
//! releases it when the home goes. When another server claims a home this one still has SAs
//! with (the home failed over while this server was cut off from it, or slow to notice), this
//! one drops them: their CHILD SAs take the home's route with them, so that two servers never
//! route, and so never announce, one prefix.
//!
//! The registry's calls block (a file lock, a database round trip): they run on tokio's
//! blocking threads, in order, from one task, so that a claim and a notification about the
//! same home are never acted on out of order. The changes that come within a short window go in
//! one registry change (one rewrite of the file), still in order.

use hometun_pki::registry::{HolderChange, HolderOutcome, Registry, RegistryEvent};
use tokio::sync::mpsc;

/// Where the holder records are, and our name there.
#[derive(Debug, Clone)]
pub struct HolderRegistry {
    /// The registry: the shared database of `[registry] url`, or the CA directory's file.
    pub registry: Registry,
    /// Our name there (`server.name`).
    pub server: String,
}

impl HolderRegistry {
    /// The shared registry if server.toml names one, else the registry file in `dir` if it
    /// exists (a server without enrollment has none, and then no holder records: it alone
    /// serves its homes).
    pub fn of_server(
        shared: Option<&Registry>,
        dir: &std::path::Path,
        server: &str,
    ) -> Option<Self> {
        let registry = match shared {
            Some(shared) => shared.clone(),
            None => {
                let path = dir.join("registry.json");
                if !path.exists() {
                    return None;
                }
                Registry::at(&path)
            }
        };
        Some(HolderRegistry {
            registry,
            server: server.to_string(),
        })
    }
}

/// What the driver tells the holder task.
enum Change {
    /// A home authenticated to us at this time (Unix seconds): claim it.
    Up(String, i64),
    /// A home's IKE SA with us is gone: release it (if we still hold it).
    Down(String),
}

/// The driver's handle on the holder task.
pub struct HomeHolders {
    changes: mpsc::UnboundedSender<Change>,
    lost: mpsc::UnboundedReceiver<Lost>,
}

/// A home another server holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// The home's name.
    pub home: String,
    /// The server that holds it.
    pub by: String,
}

impl HomeHolders {
    /// Starts the holder task for `registry`.
    pub fn start(registry: HolderRegistry) -> Self {
        let (changes, changes_rx) = mpsc::unbounded_channel();
        let (lost_tx, lost) = mpsc::unbounded_channel();
        tokio::spawn(run(registry, changes_rx, lost_tx));
        HomeHolders { changes, lost }
    }

    /// A home authenticated to us at `at` (also after a re-authentication: the claim is
    /// renewed).
    pub fn up(&self, home: &str, at: std::time::SystemTime) {
        let since = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let _ = self.changes.send(Change::Up(home.to_string(), since));
    }

    /// A home's IKE SA with us is gone.
    pub fn down(&self, home: &str) {
        let _ = self.changes.send(Change::Down(home.to_string()));
    }

    /// The next home another server took; never returns once the task has stopped.
    pub async fn lost(&mut self) -> Lost {
        match self.lost.recv().await {
            Some(lost) => lost,
            None => std::future::pending().await,
        }
    }
}

/// Why a registry call on a blocking thread failed.
#[derive(Debug, thiserror::Error)]
enum BlockingCallError {
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] hometun_pki::PkiError),
    /// The blocking thread panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// A registry call on a blocking thread.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, hometun_pki::PkiError> + Send + 'static,
) -> Result<T, BlockingCallError> {
    Ok(tokio::task::spawn_blocking(call).await??)
}

/// The holder task: claims and releases in the order the driver asked, and for each claim by
/// another server, a look at who holds the home now (a notification may be older than our own
/// claim of the same home).
async fn run(
    config: HolderRegistry,
    mut changes: mpsc::UnboundedReceiver<Change>,
    lost: mpsc::UnboundedSender<Lost>,
) {
    let registry = config.registry.clone();
    let location = registry.location();
    let subscribed = registry.clone();
    let mut events = match blocking(move || subscribed.subscribe()).await {
        Ok(events) => Some(events),
        Err(error) => {
            tracing::warn!(
                "registry {}: no notifications ({error}); a home another server takes stays \
                 here until its liveness check fails",
                location.display()
            );
            None
        }
    };
    let us = config.server.clone();
    let batching = registry.holder_batching();
    // The homes we claimed and hold still: only those can be lost.
    let mut held = std::collections::HashSet::new();
    loop {
        let event = async {
            match events.as_mut() {
                Some(events) => events.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            change = changes.recv() => {
                let Some(first) = change else { return };
                // What comes within the backend's window goes in one write, in order: a
                // storm of handshakes then costs a few registry changes a second, not two per
                // home; other servers learn a claim that much later.
                let mut batch = vec![first];
                let until = tokio::time::Instant::now() + batching.window;
                while batch.len() < batching.max {
                    match tokio::time::timeout_at(until, changes.recv()).await {
                        Ok(Some(next)) => batch.push(next),
                        Ok(None) | Err(_) => break,
                    }
                }
                let batch: Vec<HolderChange> = batch
                    .into_iter()
                    .map(|change| match change {
                        Change::Up(home, since) => {
                            held.insert(home.clone());
                            HolderChange::Claim { home, since }
                        }
                        Change::Down(home) => {
                            held.remove(&home);
                            HolderChange::Release { home }
                        }
                    })
                    .collect();
                record(&registry, &us, batch).await;
            }
            event = event => match event {
                Some(RegistryEvent::Claimed { home, holder })
                    if holder.server != us && held.contains(&home) =>
                {
                    let (registry, asked) = (registry.clone(), home.clone());
                    match blocking(move || registry.holder(&asked)).await {
                        Ok(Some(now)) if now.server != us => {
                            held.remove(&home);
                            let _ = lost.send(Lost { home, by: now.server });
                        }
                        Ok(_) => {}
                        Err(error) => tracing::warn!("registry: holder of {home}: {error}"),
                    }
                }
                Some(_) => {}
                None => events = None,
            },
        }
    }
}

/// Claims and releases in one registry change, and a line for each.
async fn record(registry: &Registry, us: &str, changes: Vec<HolderChange>) {
    let (registry, server) = (registry.clone(), us.to_string());
    // The changes go to the blocking thread and come back with what each found.
    let call = blocking(move || {
        let outcomes = registry.record_holders(&server, &changes);
        Ok((changes, outcomes))
    });
    let Ok((changes, result)) = call.await else {
        tracing::warn!("registry: the thread recording home holders failed");
        return;
    };
    let outcomes = match result {
        Ok(outcomes) => outcomes,
        Err(error) => {
            // One line, however many homes: the first few name the batch.
            let homes: Vec<&str> = changes.iter().take(3).map(HolderChange::home).collect();
            let more = if changes.len() > homes.len() {
                ", ..."
            } else {
                ""
            };
            tracing::warn!(
                "registry: claiming or releasing {} home(s) ({}{more}): {error}",
                changes.len(),
                homes.join(", ")
            );
            return;
        }
    };
    for (change, outcome) in changes.iter().zip(outcomes) {
        let home = change.home();
        match outcome {
            HolderOutcome::Claimed(Some(previous)) if previous.server != us => tracing::info!(
                "{home} is held here now (it was held by {} since {})",
                previous.server,
                previous.since
            ),
            HolderOutcome::Claimed(_) => tracing::debug!("{home} is held here"),
            HolderOutcome::Released(true) => tracing::debug!("{home} released"),
            HolderOutcome::Released(false) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use hometun_pki::registry::{Registry, RegistryData};

    use super::*;

    /// A file registry two servers share, as on one machine.
    fn shared_registry(dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("registry.json");
        let data = RegistryData::new("2001:db8:100::/48".parse().unwrap(), 64, 30).unwrap();
        Registry::at(&path).create(&data).unwrap();
        path
    }

    fn server(path: &std::path::Path, name: &str) -> HomeHolders {
        HomeHolders::start(HolderRegistry {
            registry: Registry::at(path),
            server: name.into(),
        })
    }

    async fn holder(path: &std::path::Path, home: &str) -> Option<String> {
        let registry = Registry::at(path);
        let home = home.to_string();
        tokio::task::spawn_blocking(move || registry.holder(&home).unwrap())
            .await
            .unwrap()
            .map(|h| h.server)
    }

    /// Waits until `home`'s holder is `expected`.
    async fn until_held(path: &std::path::Path, home: &str, expected: Option<&str>) {
        for _ in 0..100 {
            if holder(path, home).await.as_deref() == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{home} is not held by {expected:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_learns_that_another_took_its_home_and_only_that() {
        let dir = tempfile::tempdir().unwrap();
        let path = shared_registry(dir.path());
        let mut a = server(&path, "a.example");
        let mut b = server(&path, "b.example");
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        a.up("home.example", at);
        until_held(&path, "home.example", Some("a.example")).await;
        // The file backend looks every half second: let both subscriptions see A's claim.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        b.up("home.example", at + Duration::from_secs(5));
        let lost = tokio::time::timeout(Duration::from_secs(5), a.lost())
            .await
            .expect("A hears that B took the home");
        assert_eq!(
            lost,
            Lost {
                home: "home.example".into(),
                by: "b.example".into()
            }
        );
        // B hears nothing about its own claim, and A's release of a home B holds leaves B's
        // record alone.
        a.down("home.example");
        assert!(
            tokio::time::timeout(Duration::from_millis(1500), b.lost())
                .await
                .is_err()
        );
        assert_eq!(
            holder(&path, "home.example").await.as_deref(),
            Some("b.example")
        );
        b.down("home.example");
        until_held(&path, "home.example", None).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_ups_and_downs_ends_as_the_last_change_of_each_home_says() {
        let dir = tempfile::tempdir().unwrap();
        let path = shared_registry(dir.path());
        let a = server(&path, "a.example");
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // More changes than one write takes (the backend's batch), queued at once: each home
        // up, the even ones down again, home0 up a second time, a home never claimed released.
        let homes = Registry::at(&path).holder_batching().max + 50;
        for i in 0..homes {
            a.up(&format!("home{i}.example"), at);
        }
        for i in (0..homes).step_by(2) {
            a.down(&format!("home{i}.example"));
        }
        a.up("home0.example", at + Duration::from_secs(1));
        a.down("stranger.example");
        // home0's second claim is the last change that shows: all before it are in too.
        let mut data = Registry::at(&path).load().unwrap();
        for _ in 0..500 {
            if data.holder("home0.example").map(|h| h.since) == Some(1_800_000_001) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            data = Registry::at(&path).load().unwrap();
        }
        for i in 0..homes {
            let home = format!("home{i}.example");
            let expected = i == 0 || i % 2 == 1;
            assert_eq!(
                data.holder(&home).map(|h| h.server.as_str()),
                expected.then_some("a.example"),
                "{home}"
            );
        }
        assert_eq!(data.holder("home0.example").unwrap().since, 1_800_000_001);
    }
}
