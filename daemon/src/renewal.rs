//! The client's certificate renewal: so that no home reaches its certificate's expiry
//! unattended, the client daemon renews it when `[renew]` of client.toml says it is due (two
//! thirds of its validity by default, at least 7 days before it expires), over the enrollment
//! listener and authenticated by the certificate it has (`hometun_pki::renew`). A renewed
//! certificate is then taken like a SIGHUP reload, and the endpoint re-authenticates with it
//! make-before-break: the tunnel stays up.

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use hometun_config::ClientConfig;
use hometun_pki::renew::{RenewOptions, RenewOutcome, renew, renewal_due};
use rustls_pki_types::UnixTime;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The first look at the certificate waits this long after start: the tunnel comes up first.
const FIRST_LOOK: Duration = Duration::from_secs(10);
/// The longest the timer sleeps before it looks at the certificate again (it may have been
/// replaced by hand, or the clock jumped).
const LOOK_AGAIN: Duration = Duration::from_secs(6 * 3600);
/// After a failed renewal, the next try waits this long, doubling...
const RETRY_FIRST: Duration = Duration::from_secs(60);
/// ...up to this.
const RETRY_MAX: Duration = Duration::from_secs(3600);

/// What a renewal attempt ended with: a new certificate is in place (reload), or not.
pub type RenewalResult = Result<RenewOutcome, hometun_pki::PkiError>;

/// When to renew, and the attempt in flight.
pub struct RenewalTimer {
    config_path: PathBuf,
    next: Instant,
    retry: Duration,
    running: bool,
    results_tx: mpsc::Sender<RenewalResult>,
}

impl RenewalTimer {
    /// A timer for the client whose configuration is `config_path`, which looks at the
    /// certificate shortly after start, and where its attempts' results arrive.
    pub fn new(config_path: PathBuf) -> (Self, mpsc::Receiver<RenewalResult>) {
        let (results_tx, results) = mpsc::channel(1);
        let timer = Self {
            config_path,
            next: Instant::now() + FIRST_LOOK,
            retry: RETRY_FIRST,
            running: false,
            results_tx,
        };
        (timer, results)
    }

    /// Waits until it is time to look at the certificate (never while an attempt runs).
    pub async fn due(&self) {
        if self.running {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep_until(self.next).await;
    }

    /// Time to look: if the certificate is due, starts a renewal in the background; else sets
    /// the timer to when it will be.
    pub fn look(&mut self) {
        let due = ClientConfig::load(&self.config_path)
            .map_err(|e| e.to_string())
            .and_then(|config| renewal_due(&config).map_err(|e| e.to_string()));
        let (due, not_after) = match due {
            Ok(times) => times,
            Err(error) => {
                tracing::warn!("certificate renewal: {error}; looking again in {RETRY_MAX:?}");
                self.next = Instant::now() + RETRY_MAX;
                return;
            }
        };
        let now = unix_now();
        if now < due {
            let wait = Duration::from_secs(u64::try_from(due - now).unwrap_or(0));
            tracing::debug!(
                "certificate renewal due in {} days (it expires in {} days)",
                wait.as_secs() / 86_400,
                (not_after - now).max(0) / 86_400
            );
            self.next = Instant::now() + wait.min(LOOK_AGAIN);
            return;
        }
        tracing::info!(
            "renewing the certificate (it expires in {} days)",
            (not_after - now).max(0) / 86_400
        );
        self.running = true;
        let path = self.config_path.clone();
        let tx = self.results_tx.clone();
        tokio::spawn(async move {
            let outcome = renew(&path, &RenewOptions::default(), UnixTime::now()).await;
            let _ = tx.send(outcome).await;
        });
    }

    /// An attempt finished: whether a new certificate is in place (the driver reloads).
    pub fn finished(&mut self, result: RenewalResult) -> bool {
        self.running = false;
        match result {
            Ok(RenewOutcome::Renewed(r)) => {
                tracing::info!(
                    "certificate renewed: serial {}, {} for {}, {}; re-authenticating with it",
                    r.serial,
                    r.name,
                    r.prefix,
                    if r.new_key { "new key" } else { "same key" }
                );
                self.retry = RETRY_FIRST;
                self.next = Instant::now();
                true
            }
            Ok(RenewOutcome::NotDue { .. }) => {
                self.next = Instant::now();
                false
            }
            Err(error) => {
                tracing::warn!(
                    "certificate renewal failed: {error}; trying again in {:?}",
                    self.retry
                );
                self.next = Instant::now() + self.retry;
                self.retry = (self.retry * 2).min(RETRY_MAX);
                false
            }
        }
    }
}

fn unix_now() -> i64 {
    let now = crate::clock::now()
        .wall
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX)
}
