//! The driver's requests to the forwarder: sent without waiting (at most [`MAX_IN_FLIGHT`] on
//! their way), their answers taken in order, a refused install handed back to the endpoint, and
//! the log lines about a pair or its peer held behind that pair's install until the forwarder
//! confirmed it, so that each peer's story reads in order (docs/ARCHITECTURE.md, "The sans-IO
//! contract").

use std::collections::VecDeque;
use std::time::Duration;

use hometun_control::{Event, Request, Response};
use hometun_ike::notice::Notice;

use super::optional::child_exit;
use super::{Driver, MAX_BUFFERED_IKE, MAX_IN_FLIGHT, log_notice};
use crate::clock::now;
use crate::forwarder_link::{LinkError, PendingReply};

/// A forwarder request on its way, and what its answer is for.
pub(super) struct InFlight {
    what: &'static str,
    install: Option<PendingInstall>,
    pub(super) reply: PendingReply,
}

/// An Install on its way. Its line is logged once the forwarder confirmed it, and so are the
/// lines about the pair (deleted) and its peer (up, down, rekeyed) that come before that:
/// under load the forwarder answers after the peer's next messages are handled, and the log
/// must tell each pair's and each peer's story in order, never an end before its start, nor
/// a new start before the last end.
struct PendingInstall {
    spi_in: hometun_control::Spi,
    peer: hometun_control::PeerId,
    line: String,
    held: Vec<HeldLine>,
}

/// Which install a log line must follow.
#[derive(Clone, Copy)]
pub(super) enum InstallOf {
    /// The pair's, by its inbound SPI.
    Pair(hometun_control::Spi),
    /// Any of the peer's.
    Peer(hometun_control::PeerId),
}

/// A log line held until an install's answer.
pub(super) enum HeldLine {
    Notice(Notice),
    Info(String),
}

impl HeldLine {
    fn log(&self) {
        match self {
            HeldLine::Notice(notice) => log_notice(notice),
            HeldLine::Info(line) => tracing::info!("{line}"),
        }
    }
}

impl Driver {
    /// Sends a request of the endpoint's to the forwarder without waiting for the answer
    /// ([`Driver::answered`] takes it when it comes). With too many on their way, waits for the
    /// oldest first.
    pub(super) async fn send_request(&mut self, request: Request) -> anyhow::Result<()> {
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            self.await_oldest().await?;
        }
        let what = request_name(&request);
        let install = match &request {
            Request::Install(sa) => Some(PendingInstall {
                spi_in: sa.spi_in,
                peer: sa.peer,
                line: install_line(sa),
                held: Vec::new(),
            }),
            _ => None,
        };
        if !matches!(request, Request::GetCounters | Request::SendIke { .. }) {
            self.heap.changed(self.uptime());
        }
        match self.link.send(request).await {
            Ok(reply) => {
                self.in_flight.push_back(InFlight {
                    what,
                    install,
                    reply,
                });
                Ok(())
            }
            Err(LinkError::Closed) => Err(self.forwarder_gone().await),
            Err(error) => Err(anyhow::anyhow!("forwarder ({what}): {error}")),
        }
    }

    /// Waits for the oldest request on its way and takes its answer, keeping the events that
    /// arrive meanwhile.
    pub(super) async fn await_oldest(&mut self) -> anyhow::Result<()> {
        let Some(mut oldest) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let answer = loop {
            tokio::select! {
                answer = &mut oldest.reply => break answer,
                event = self.events.recv(), if self.events_open => match event {
                    Some(event) => buffer_event(&mut self.backlog, event),
                    None => self.events_open = false,
                },
            }
        };
        self.answered(oldest, answer).await
    }

    /// The forwarder answered a request of the endpoint's: an installed pair is logged (then the
    /// lines held behind it: `log_after_install`), a refused one handed back to the endpoint
    /// (IKE acts on it, so that the two never disagree about which pairs exist), other refusals
    /// are logged; a dead channel is an error.
    pub(super) async fn answered(
        &mut self,
        request: InFlight,
        answer: Result<hometun_control::Response, LinkError>,
    ) -> anyhow::Result<()> {
        let outcome = match (answer, &request.install) {
            (Ok(_), Some(install)) => {
                tracing::info!("{}", install.line);
                Ok(())
            }
            (Ok(_), None) => Ok(()),
            (Err(LinkError::Refused(refusal)), Some(install)) => {
                tracing::warn!("forwarder refused {}: {refusal}", install.line);
                self.endpoint.handle_install_refused(
                    now(),
                    install.spi_in,
                    &refusal,
                    &mut self.rng,
                );
                Ok(())
            }
            (Err(LinkError::Refused(refusal)), None) => {
                tracing::warn!("forwarder refused {}: {refusal}", request.what);
                Ok(())
            }
            (Err(LinkError::Closed), _) => Err(self.forwarder_gone().await),
            (Err(error), _) => Err(anyhow::anyhow!("forwarder ({}): {error}", request.what)),
        };
        // The lines that waited for this install's.
        if let Some(install) = &request.install {
            install.held.iter().for_each(HeldLine::log);
        }
        outcome
    }

    /// Logs `line`, or holds it behind the install it follows while that install is on its
    /// way (the latest of the peer's, for a line about the peer).
    pub(super) fn log_after_install(&mut self, of: InstallOf, line: HeldLine) {
        let install = self
            .in_flight
            .iter_mut()
            .rev()
            .filter_map(|request| request.install.as_mut())
            .find(|install| match of {
                InstallOf::Pair(spi_in) => install.spi_in == spi_in,
                InstallOf::Peer(peer) => install.peer == peer,
            });
        match install {
            Some(install) => install.held.push(line),
            None => line.log(),
        }
    }

    /// Sends a request to the forwarder and awaits its reply, keeping the events that arrive
    /// meanwhile. A refusal is logged and yields `None`; a dead channel is an error.
    pub(super) async fn forward(&mut self, request: Request) -> anyhow::Result<Option<Response>> {
        let what = request_name(&request);
        match self.forward_answer(request).await? {
            Ok(response) => Ok(Some(response)),
            Err(error) => {
                tracing::warn!("forwarder refused {what}: {error}");
                Ok(None)
            }
        }
    }

    /// Sends a request and awaits the forwarder's answer, its refusal included, keeping the
    /// events that arrive meanwhile. A dead channel is an error.
    pub(super) async fn forward_answer(
        &mut self,
        request: Request,
    ) -> anyhow::Result<Result<Response, hometun_control::ControlError>> {
        let what = request_name(&request);
        let link = self.link.clone();
        let reply = link.request(request);
        tokio::pin!(reply);
        let result = loop {
            tokio::select! {
                result = &mut reply => break result,
                event = self.events.recv(), if self.events_open => match event {
                    Some(event) => buffer_event(&mut self.backlog, event),
                    None => self.events_open = false,
                },
            }
        };
        match result {
            Ok(response) => Ok(Ok(response)),
            Err(LinkError::Refused(error)) => Ok(Err(error)),
            Err(LinkError::Closed) => Err(self.forwarder_gone().await),
            Err(error) => Err(anyhow::anyhow!("forwarder ({what}): {error}")),
        }
    }

    /// The SA channel closed: most likely the forwarder died; say how, if it tells us within
    /// a moment.
    pub(super) async fn forwarder_gone(&mut self) -> anyhow::Error {
        if self.child.is_none() {
            return forwarder_gone(None);
        }
        match tokio::time::timeout(Duration::from_secs(1), child_exit(&mut self.child)).await {
            Ok(status) => forwarder_gone(Some(status)),
            Err(_) => forwarder_gone(None),
        }
    }
}

/// The error the daemon stops with when its forwarder is gone.
pub(super) fn forwarder_gone(
    status: Option<std::io::Result<std::process::ExitStatus>>,
) -> anyhow::Error {
    let how = match status {
        Some(Ok(status)) => format!("the forwarder exited ({status})"),
        Some(Err(error)) => format!("the forwarder is gone ({error})"),
        None => "the forwarder closed the SA channel".to_string(),
    };
    anyhow::anyhow!("{how}; stopping rather than running without it")
}

pub(super) fn buffer_event(backlog: &mut VecDeque<Event>, event: Event) {
    if matches!(event, Event::IkeReceived { .. }) && backlog.len() >= MAX_BUFFERED_IKE {
        tracing::debug!("IKE message from port 4500 dropped: backlog full");
        return;
    }
    backlog.push_back(event);
}

/// The log line of an installed CHILD SA pair.
fn install_line(sa: &hometun_control::ChildSa) -> String {
    let join = |nets: &[ipnet::Ipv6Net]| {
        nets.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "CHILD SA {}_i {}_o installed: {} === {} ({}, {})",
        sa.spi_in,
        sa.spi_out,
        join(&sa.local_ts),
        join(&sa.remote_ts),
        sa.key_out.alg().name(),
        sa.endpoint
    )
}

fn request_name(request: &Request) -> &'static str {
    match request {
        Request::Configure(_) => "Configure",
        Request::Install(_) => "Install",
        Request::AllowPeer { .. } => "AllowPeer",
        Request::SetPeerPool { .. } => "SetPeerPool",
        Request::NamePeer { .. } => "NamePeer",
        Request::Delete { .. } => "Delete",
        Request::UpdateEndpoint { .. } => "UpdateEndpoint",
        Request::GetCounters => "GetCounters",
        Request::SendIke { .. } => "SendIke",
        Request::Shutdown => "Shutdown",
    }
}
