//! What the driver does besides carrying packets and forwarder requests: reading the
//! configuration again (SIGHUP, a new CRL, a renewed certificate), following a client's network
//! when it changed, the operator's commands from the status socket, and a home that another
//! server took.

use hometun_control::Request;
use hometun_ike::endpoint::Initiated;

use super::{Driver, now};
use crate::operator::{Command, Refusal};

impl Driver {
    /// SIGHUP (or a new CRL, `why`): the configuration again; the endpoint takes it, or the
    /// running one stays.
    pub(super) async fn reload(&mut self, why: &str) -> anyhow::Result<()> {
        let Some(reloader) = self.config.reloader.as_mut() else {
            tracing::warn!("{why}: this daemon has no configuration file to read again");
            return Ok(());
        };
        let path = reloader.path().display().to_string();
        // The CRL followed if the reload moved it.
        let crl = reloader.crl().map(std::path::Path::to_path_buf);
        match reloader.reload() {
            Ok(reloaded) => match self.endpoint.reload(now(), &mut self.rng, reloaded.reload) {
                Ok(refused) => {
                    let new_crl = self.config.reloader.as_ref().and_then(|r| r.crl());
                    if new_crl != crl.as_deref() {
                        self.crl = new_crl.map(crate::crl_watch::FileWatch::new);
                    }
                    if why == "SIGHUP" || refused.is_empty() {
                        tracing::info!("{why}: reloaded {path}: {}", reloaded.summary);
                    } else {
                        // The line that matters is the one per home cut off.
                        tracing::debug!("{why}: reloaded {path}: {}", reloaded.summary);
                    }
                    // What failed may work now: a client waiting to reconnect tries at once.
                    self.endpoint.reset_backoff(now(), &mut self.rng);
                    for refusal in refused {
                        tracing::warn!("{why}: deleted the SAs of {refusal}");
                    }
                    if let Some(pool) = reloaded.peer_pool {
                        self.forward(Request::SetPeerPool { pool: Some(pool) })
                            .await?;
                    }
                }
                Err(error) => tracing::error!(
                    "{why}: reload of {path} refused, the running configuration stays: {error}"
                ),
            },
            Err(error) => {
                tracing::error!("{why}: reload refused, the running configuration stays: {error:#}")
            }
        }
        Ok(())
    }

    /// Something the shared registry committed: a revocation is applied at once, as a new CRL
    /// would be (the home's SAs are deleted and it is refused from then on).
    pub(super) async fn registry_event(
        &mut self,
        event: hometun_pki::registry::RegistryEvent,
    ) -> anyhow::Result<()> {
        use hometun_pki::registry::RegistryEvent;
        match event {
            RegistryEvent::Revoked { name, serial } => {
                let new = self
                    .registry
                    .as_ref()
                    .is_some_and(|watch| watch.revoked.insert(serial.clone()));
                if new {
                    self.reload(&format!("registry: {name} (serial {serial}) revoked"))
                        .await?;
                }
            }
            RegistryEvent::Claimed { home, holder } => {
                tracing::debug!("registry: {home} claimed by {}", holder.server);
            }
        }
        Ok(())
    }

    /// A client's forwarder saw the network change without moving an SA (none may be up):
    /// learn the source address towards the server now; a client that is down connects at
    /// once, from there.
    pub(super) fn network_changed(&mut self) {
        // The server in use: a client that failed over follows the route to its new one.
        let Some(server) = self.endpoint.current_server() else {
            return;
        };
        match crate::netconf::route_source(server) {
            Ok(local) => {
                let down = self
                    .endpoint
                    .handle_network_change(now(), local, &mut self.rng);
                if down && local != self.config.local_addr {
                    tracing::info!(
                        "our outer address is now {local} (was {})",
                        self.config.local_addr
                    );
                    self.config.local_addr = local;
                }
            }
            Err(error) => tracing::debug!("network changed: {error:#}"),
        }
    }

    /// Another server holds `lost.home` now (the registry says so): whatever this server still
    /// has of it goes, its route with its CHILD SAs, so that only the holder routes and
    /// announces the home's prefix.
    pub(super) fn home_lost(&mut self, lost: crate::holders::Lost) {
        let deleted = self.endpoint.terminate(now(), &lost.home, &mut self.rng);
        if deleted > 0 {
            tracing::info!(
                "{} is held by {} now: dropped its {deleted} IKE SA(s) here, and its route",
                lost.home,
                lost.by
            );
        }
    }

    /// An operator's command from the status socket.
    pub(super) fn command(&mut self, command: Command) -> crate::operator::Answer {
        match command {
            Command::Terminate(name) => {
                let deleted = self.endpoint.terminate(now(), &name, &mut self.rng);
                if deleted == 0 {
                    return Err(Refusal::NoIkeSa(name));
                }
                tracing::info!("terminate: deleted the IKE SA of {name}, on request");
                Ok(format!(
                    "terminated {name}: {deleted} IKE SA deleted with its CHILD SAs, DELETE sent"
                ))
            }
            Command::Initiate => match self.endpoint.initiate(now(), &mut self.rng) {
                Initiated::Started => {
                    tracing::info!("initiate: connecting now, on request");
                    Ok("connecting now (see hometun status)".into())
                }
                Initiated::AlreadyUp => Ok("already connected: nothing to do".into()),
                Initiated::NotAClient => Err(Refusal::NotAClient),
                Initiated::Closed => Err(Refusal::Stopping),
            },
        }
    }
}
