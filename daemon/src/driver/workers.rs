//! The threads that run the endpoint's key derivation and signature work ([`CryptoJob`]s) off
//! the driver's task, so a server busy with handshakes uses every core: the driver hands a job
//! out as the endpoint queues it and takes the result back in its loop (the endpoint itself
//! never sees a thread).
//!
//! Handing a job over costs wake-ups on both sides, about 20 us a job on a 2-core virtual
//! machine, a third of the job itself (bench/README.md, "Crypto jobs on the driver when it has
//! nothing else to do"). That buys something only while the driver has other work to do
//! meanwhile and a worker is free to start at once, so the driver runs a job itself otherwise
//! ([`JobPlacement`]).

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc as tokio_mpsc;

use hometun_ike::sa::crypto_job::{CryptoDone, CryptoJob};

/// A pool of worker threads; dropping it lets them end.
pub struct Workers {
    jobs: mpsc::Sender<Box<CryptoJob>>,
    placement: JobPlacement,
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
        Ok(Workers {
            jobs,
            placement: JobPlacement::new(count.max(1)),
        })
    }

    /// Whether a job goes to a worker rather than run on the driver's task, given whether the
    /// driver has other work waiting.
    pub fn takes_job(&self, driver_has_other_work: bool) -> bool {
        self.placement.hand_out(driver_has_other_work)
    }

    /// Queues a job; gives it back if the workers are gone.
    pub fn run(&mut self, job: Box<CryptoJob>) -> Result<(), Box<CryptoJob>> {
        self.jobs.send(job).map_err(|refused| refused.0)?;
        self.placement.handed_out();
        Ok(())
    }

    /// The driver took a job's result back.
    pub fn finished(&mut self) {
        self.placement.finished();
    }
}

/// Where the next crypto job runs: on a worker only if one is free (no job waits behind
/// another) and the driver has other work meanwhile; else on the driver's task, which then
/// does it sooner and for less than a hand-over costs. A job counts as out until the driver
/// takes its result, so a worker that died with a job keeps counting as busy: its jobs run on
/// the driver from then on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobPlacement {
    threads: usize,
    out: usize,
}

impl JobPlacement {
    /// For `threads` workers, none busy.
    pub fn new(threads: usize) -> Self {
        JobPlacement { threads, out: 0 }
    }

    /// Whether the next job goes to a worker.
    pub fn hand_out(&self, driver_has_other_work: bool) -> bool {
        driver_has_other_work && self.out < self.threads
    }

    /// A job went to a worker.
    pub fn handed_out(&mut self) {
        self.out += 1;
    }

    /// A job's result came back.
    pub fn finished(&mut self) {
        self.out = self.out.saturating_sub(1);
    }
}

/// How many worker threads a responder gets: one per core but the driver's. None on a single
/// core, where a hand-over could only cost: the driver runs every job itself.
pub fn default_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::JobPlacement;

    #[test]
    fn a_job_goes_to_a_worker_only_while_the_driver_has_other_work_and_a_worker_is_free() {
        let mut placement = JobPlacement::new(2);
        // Nothing else to do: the driver runs it, free workers or not.
        assert!(!placement.hand_out(false));
        assert!(placement.hand_out(true));
        placement.handed_out();
        assert!(placement.hand_out(true));
        placement.handed_out();
        // Both workers busy: the job would wait behind another; the driver runs it.
        assert!(!placement.hand_out(true));
        placement.finished();
        assert!(placement.hand_out(true));
        assert!(!placement.hand_out(false));
    }

    #[test]
    fn more_results_than_jobs_out_do_not_make_room_for_more_than_the_threads() {
        let mut placement = JobPlacement::new(1);
        placement.finished();
        placement.handed_out();
        assert!(!placement.hand_out(true));
    }
}
