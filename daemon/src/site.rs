//! What a daemon sets up around its tunnel, beside the forwarder: the home's LANs
//! ([`crate::lan`]) or the VPS's upstream ([`crate::upstream`]). The driver starts it once the
//! tunnel interface exists, shows it every endpoint output, and stops it before the forwarder.

use hometun_config::{ClientConfig, ServerConfig};
use hometun_control::Request;
use hometun_ike::endpoint::Output;

use crate::lan::HomeLans;
use crate::upstream::Upstream;

/// What to set up, from the configuration.
#[derive(Debug, Clone, Default)]
pub enum SitePlan {
    /// Nothing (tools, tests).
    #[default]
    Nothing,
    /// A home: `[[lan]]` and `client.updown`.
    Home(Box<ClientConfig>),
    /// A VPS: `[upstream]` and `server.pool`.
    Vps(Box<ServerConfig>),
}

/// What was set up.
#[derive(Default)]
pub enum Site {
    /// Nothing to follow.
    #[default]
    Nothing,
    /// The home's LANs follow the tunnel's state.
    Home(HomeLans),
    /// The upstream follows the homes' grants.
    Vps(Upstream),
}

impl Site {
    /// Sets up what `plan` asks for (call after the tunnel interface exists). What cannot be
    /// set up is logged, one error line each, and left out: the tunnel runs without it.
    pub fn start(plan: &SitePlan) -> Self {
        match plan {
            SitePlan::Nothing => Site::Nothing,
            SitePlan::Home(config) => match HomeLans::start(config) {
                Some(lans) => Site::Home(lans),
                None => Site::Nothing,
            },
            SitePlan::Vps(config) => Site::Vps(Upstream::start(config)),
        }
    }

    /// Follows one endpoint output: the home's tunnel up or down, a home's grant.
    pub async fn observe(&mut self, output: &Output) {
        match (self, output) {
            (Site::Home(lans), Output::PeerUp { .. }) => lans.up(),
            (Site::Home(lans), Output::PeerDown { .. }) => lans.down().await,
            (Site::Vps(upstream), Output::Forwarder(Request::AllowPeer { peer, prefixes })) => {
                upstream.grant(*peer, prefixes)
            }
            _ => {}
        }
    }

    /// Called every second or so: what waits for a time (the home's LANs after the tunnel
    /// went down) does it.
    pub async fn tick(&mut self) {
        if let Site::Home(lans) = self {
            lans.tick().await;
        }
    }

    /// The forwarder made the TUN device again (it was deleted): what `start` and the outputs
    /// since put on it goes back on the new one.
    pub fn tunnel_recreated(&mut self) {
        if let Site::Home(lans) = self {
            lans.tunnel_recreated();
        }
    }

    /// Sets back what `start` and the outputs since did.
    pub async fn stop(&mut self) {
        match self {
            Site::Nothing => {}
            Site::Home(lans) => lans.stop().await,
            Site::Vps(upstream) => upstream.stop(),
        }
        *self = Site::Nothing;
    }
}
