//! The threads that run the endpoint's key derivation and signature work ([`CryptoJob`]s) off
//! the driver's task, so a server uses every core: the driver hands each job out as the
//! endpoint queues it and takes the results back in its loop (the endpoint itself never sees a
//! thread).

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc as tokio_mpsc;

use hometun_ike::sa::crypto_job::{CryptoDone, CryptoJob};

/// A pool of worker threads; dropping it lets them end.
pub struct Workers {
    jobs: mpsc::Sender<Box<CryptoJob>>,
}

impl Workers {
    /// `count` threads (at least one) sending finished jobs into `done`.
    pub fn start(
        count: usize,
        done: tokio_mpsc::UnboundedSender<CryptoDone>,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Box<CryptoJob>>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..count.max(1) {
            let queue = queue.clone();
            let done = done.clone();
            std::thread::Builder::new()
                .name(format!("ike-worker-{i}"))
                .spawn(move || {
                    loop {
                        // One waiting thread holds the lock; the others wait for it.
                        let job = match queue.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        };
                        if done.send(job.run()).is_err() {
                            return;
                        }
                    }
                })?;
        }
        Ok(Workers { jobs })
    }

    /// Queues a job; gives it back if the workers are gone.
    pub fn run(&self, job: Box<CryptoJob>) -> Result<(), Box<CryptoJob>> {
        self.jobs.send(job).map_err(|refused| refused.0)
    }
}

/// How many worker threads a responder gets: one per core but the driver's (at least one).
pub fn default_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1)
}
