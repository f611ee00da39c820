//! SIGTERM and SIGINT as a stop request: blocked in every thread, taken by one thread with
//! `sigwait`, turned into a message.

use crossbeam_channel::Sender;

use crate::server::StopReason;

/// SIGTERM and SIGINT, blocked for the process.
pub struct StopSignals {
    set: libc::sigset_t,
}

impl StopSignals {
    /// Blocks the stop signals in the calling thread (and so in every thread it starts later).
    pub fn block() -> std::io::Result<Self> {
        // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: set is a valid sigset_t for these calls.
        let ret = unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
        };
        if ret != 0 {
            return Err(std::io::Error::from_raw_os_error(ret));
        }
        Ok(StopSignals { set })
    }

    /// Starts the thread that waits for a signal and sends [`StopReason::Signal`].
    pub fn forward_to(self, stop: Sender<StopReason>) {
        let set = self.set;
        let spawned = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut signal: libc::c_int = 0;
                // SAFETY: set and signal are valid for the call.
                let ret = unsafe { libc::sigwait(&set, &mut signal) };
                if ret == 0 {
                    tracing::info!("forwarder: signal {signal}, stopping");
                }
                let _ = stop.send(StopReason::Signal);
            });
        if let Err(error) = spawned {
            tracing::warn!("signal thread: {error}");
        }
    }
}
