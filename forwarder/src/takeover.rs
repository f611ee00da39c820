//! Taking over from a forwarder that is still dying. After `kill -9` of a daemon its forwarder
//! goes too, but the kernel releases the TUN device and the sockets a moment later (a forwarder
//! that stops on its own joins its threads first, up to 0.2 s), and a daemon restarted at once
//! (by a supervisor) must not fail on `EBUSY` or `EADDRINUSE` meanwhile. So a busy device or
//! port is tried again for a short, bounded time; if it stays busy, the error says who holds it.

use std::io;
use std::path::Path;
use std::time::Duration;

use hometun_control::{PlatformError, PlatformOp};

/// How long a busy TUN device or port is waited for.
pub const PATIENCE: Duration = Duration::from_secs(3);
/// How often it is tried meanwhile.
const POLL: Duration = Duration::from_millis(50);

/// Runs `attempt` until it succeeds, fails with another error than `busy` (an errno), or
/// [`PATIENCE`] has passed. `holder` says who holds the resource, for the log and the error.
pub fn when_free<T>(
    operation: PlatformOp,
    busy: i32,
    attempt: impl FnMut() -> io::Result<T>,
    holder: impl Fn() -> String,
) -> Result<T, PlatformError> {
    within(PATIENCE, operation, busy, attempt, holder)
}

fn within<T>(
    patience: Duration,
    operation: PlatformOp,
    busy: i32,
    mut attempt: impl FnMut() -> io::Result<T>,
    holder: impl Fn() -> String,
) -> Result<T, PlatformError> {
    let tries = (patience.as_millis() / POLL.as_millis()) as u32;
    let mut waited = 0;
    loop {
        match attempt() {
            Ok(value) => {
                if waited > 0 {
                    tracing::info!(
                        "{operation}: free after about {} ms, taken over",
                        POLL.as_millis() * u128::from(waited)
                    );
                }
                return Ok(value);
            }
            Err(error) if error.raw_os_error() == Some(busy) && waited < tries => {
                if waited == 0 {
                    tracing::info!(
                        "{operation}: {error} ({}); waiting up to {patience:?}",
                        holder()
                    );
                }
                waited += 1;
                std::thread::sleep(POLL);
            }
            Err(error) => {
                let mut refusal = PlatformError::io(operation, &error);
                if error.raw_os_error() == Some(busy) {
                    refusal.message = format!(
                        "{}; still busy after {patience:?}: {}",
                        refusal.message,
                        holder()
                    );
                }
                return Err(refusal);
            }
        }
    }
}

/// Who holds the TUN device `name` in this network namespace: every process with
/// `/dev/net/tun` open on it (the kernel names the device in the descriptor's fdinfo).
pub fn tun_holders(name: &str) -> String {
    let ours = std::fs::read_link("/proc/self/ns/net").ok();
    let mut found = Vec::new();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return "who holds it is unknown (no /proc)".into();
    };
    for process in processes.flatten() {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let dir = process.path();
        // Another namespace's device of the same name is another device.
        if std::fs::read_link(dir.join("ns/net")).ok() != ours {
            continue;
        }
        if holds_tun(&dir, name) {
            let command = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            found.push(format!("pid {pid} ({})", command.trim()));
        }
    }
    if found.is_empty() {
        "no process in this network namespace has /dev/net/tun open on it".into()
    } else {
        format!("held by {}, with /dev/net/tun open on it", found.join(", "))
    }
}

/// Whether the process at `/proc/PID` has a `/dev/net/tun` descriptor attached to `name`.
fn holds_tun(process: &Path, name: &str) -> bool {
    let Ok(fds) = std::fs::read_dir(process.join("fd")) else {
        return false;
    };
    // Seen from another mount namespace whose root is not the system's (a chroot or a
    // container), the holder's descriptor reads as `<its root>/dev/net/tun`.
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| target.ends_with("dev/net/tun"))
            && std::fs::read_to_string(process.join("fdinfo").join(fd.file_name()))
                .is_ok_and(|info| attached_to(&info, name))
    })
}

/// Whether a TUN descriptor's fdinfo (`iff:\tNAME` since Linux 3.x) names the device `name`.
fn attached_to(fdinfo: &str, name: &str) -> bool {
    fdinfo
        .lines()
        .any(|line| line.strip_prefix("iff:").is_some_and(|n| n.trim() == name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EBUSY: i32 = 16;

    #[test]
    fn a_resource_that_frees_up_is_taken_over() {
        let mut attempts = 0;
        let got = when_free(
            PlatformOp::CreateTun("t0".into()),
            EBUSY,
            || {
                attempts += 1;
                if attempts < 4 {
                    Err(io::Error::from_raw_os_error(EBUSY))
                } else {
                    Ok(attempts)
                }
            },
            || "held by pid 1 (test)".into(),
        );
        assert_eq!(got, Ok(4));
    }

    #[test]
    fn other_errors_are_not_waited_for() {
        let mut attempts = 0;
        let error = when_free(
            PlatformOp::CreateTun("t0".into()),
            EBUSY,
            || -> io::Result<()> {
                attempts += 1;
                Err(io::Error::from_raw_os_error(1))
            },
            || unreachable!("asked who holds it"),
        )
        .unwrap_err();
        assert_eq!(attempts, 1);
        assert_eq!(error.errno, Some(1));
        assert_eq!(
            error.to_string(),
            "creating TUN device t0: Operation not permitted (os error 1): this needs \
             CAP_NET_ADMIN (run as root, or grant it as examples/systemd does with \
             AmbientCapabilities)"
        );
    }

    #[test]
    fn a_resource_that_stays_busy_is_refused_naming_its_holder() {
        let mut attempts = 0u32;
        let error = within(
            Duration::from_millis(200),
            PlatformOp::UdpSocket(4500),
            EBUSY,
            || -> io::Result<()> {
                attempts += 1;
                Err(io::Error::from_raw_os_error(EBUSY))
            },
            || "held by pid 42 (hometun)".into(),
        )
        .unwrap_err();
        assert_eq!(attempts, 5);
        assert_eq!(error.errno, Some(EBUSY));
        assert_eq!(
            error.to_string(),
            "UDP port 4500: Device or resource busy (os error 16); still busy after 200ms: held \
             by pid 42 (hometun)"
        );
    }

    #[test]
    fn fdinfo_names_the_device() {
        let info = "pos:\t0\nflags:\t02000002\nmnt_id:\t27\nino:\t1042\niff:\thometun0\n";
        assert!(attached_to(info, "hometun0"));
        assert!(!attached_to(info, "hometun1"));
        assert!(!attached_to("pos:\t0\n", "hometun0"));
    }
}
