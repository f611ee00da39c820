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

/// An IKE_SA_INIT request (aes128gcm16-prfsha256-x25519) with `ke_data` as its X25519 KE data,
/// optionally with a COOKIE first.
pub fn raw_sa_init(spi_i: u64, ni: &[u8], cookie: Option<&[u8]>, ke_data: &[u8]) -> Vec<u8> {
    use hometun_ike::proposal::IkeProposal;
    use hometun_ike::wire::{self, Notify, NotifyType, Payload};
    let mut payloads = Vec::new();
    if let Some(c) = cookie {
        payloads.push(Payload::Notify(Notify::new(NotifyType::COOKIE, c.to_vec())));
    }
    payloads.push(Payload::Sa(IkeProposal::sa_payload(
        &[IkeProposal::parse("aes128gcm16-prfsha256-x25519").unwrap()],
        &[],
    )));
    payloads.push(Payload::Ke(wire::KeyExchange::new(
        wire::DhGroup::CURVE25519,
        ke_data.to_vec(),
    )));
    payloads.push(Payload::Nonce(wire::Nonce::new(ni.to_vec())));
    sa_init_bytes(spi_i, payloads)
}

/// An initiator's IKE_SA_INIT request (message ID 0) carrying `payloads`, as bytes.
pub fn sa_init_bytes(spi_i: u64, payloads: Vec<hometun_ike::wire::Payload>) -> Vec<u8> {
    use hometun_ike::wire::{ExchangeType, Flags, Header, Message};
    let header = Header::new(
        ExchangeType::IKE_SA_INIT,
        spi_i,
        0,
        Flags::new(true, false),
        0,
    );
    Message::new(header, payloads).to_bytes().unwrap()
}
