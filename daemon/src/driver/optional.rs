//! What the driver's loop waits on that a daemon may not have (a renewal timer on a server, a
//! forwarder child when it connected to a running one, holder records without a registry):
//! each future never finishes when its source is absent, so that the loop's `select!` can
//! name them all.

use tokio::process::Child;
use tokio::sync::mpsc;

/// When the client's certificate renewal timer fires; never without one.
pub(super) async fn renewal_due(timer: &Option<crate::renewal::RenewalTimer>) {
    match timer {
        Some(timer) => timer.due().await,
        None => std::future::pending().await,
    }
}

/// A finished renewal attempt; never without a timer.
pub(super) async fn renewal_result(
    results: &mut Option<mpsc::Receiver<crate::renewal::RenewalResult>>,
) -> Option<crate::renewal::RenewalResult> {
    match results {
        Some(results) => results.recv().await,
        None => std::future::pending().await,
    }
}

/// The next home another server took; never without a registry.
pub(super) async fn home_lost(
    holders: &mut Option<crate::holders::HomeHolders>,
) -> crate::holders::Lost {
    match holders {
        Some(holders) => holders.lost().await,
        None => std::future::pending().await,
    }
}

/// Waits for the forwarder child to exit; never returns for a forwarder we did not start.
pub(super) async fn child_exit(
    child: &mut Option<Child>,
) -> std::io::Result<std::process::ExitStatus> {
    match child {
        Some(child) => child.wait().await,
        None => std::future::pending().await,
    }
}
