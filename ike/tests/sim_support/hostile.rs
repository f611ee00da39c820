//! Hostile peers built from the real state machine (the tamper hook).

use super::*;

/// A [`Tamper`] from a closure: changes the inner payloads of each protected message a node
/// sends (a misbehaving peer built from the real state machine).
pub struct TamperWith<F>(pub F);

impl<F> hometun_ike::io::Tamper for TamperWith<F>
where
    F: FnMut(&hometun_ike::wire::Header, &mut Vec<hometun_ike::wire::Payload>) + Send,
{
    fn outgoing(
        &mut self,
        header: &hometun_ike::wire::Header,
        payloads: &mut Vec<hometun_ike::wire::Payload>,
    ) {
        (self.0)(header, payloads)
    }
}

impl Node {
    /// Makes this node misbehave: `f` changes the inner payloads of every protected message.
    pub fn tamper<F>(&mut self, f: F)
    where
        F: FnMut(&hometun_ike::wire::Header, &mut Vec<hometun_ike::wire::Payload>) + Send + 'static,
    {
        self.endpoint.set_tamper(Box::new(TamperWith(f)));
    }

    /// The remote selectors of every pair this node's forwarder was asked to install.
    pub fn installed_remote_selectors(&self) -> Vec<Ipv6Net> {
        self.forwarder
            .installs()
            .iter()
            .flat_map(|sa| sa.remote_ts.clone())
            .collect()
    }
}

/// A TS payload of these prefixes.
pub fn ts(prefixes: &[&str]) -> hometun_ike::wire::TrafficSelectors {
    let nets: Vec<Ipv6Net> = prefixes.iter().map(|p| net(p)).collect();
    hometun_ike::selectors::to_payload(&nets)
}
