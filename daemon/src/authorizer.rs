//! The server's answer to "which prefix may this client use": a `[[clients]]` entry of
//! server.toml with its name, else the IPv6 prefixes its certificate carries (RFC 3779, issued
//! by `hometun pki sign`), which must lie inside `server.pool`.

use hometun_config::StaticClient;

use crate::registry_watch::RevokedSerials;
use ipnet::Ipv6Net;

use hometun_ike::crypto::{PeerIdentity, VerifiedPeer};
use hometun_ike::endpoint::Authorizer;
use hometun_ike::endpoint::PrefixRefusal;

/// Static clients first, then the certificate's prefixes within the pool.
#[derive(Debug, Clone)]
pub struct ConfigAuthorizer {
    clients: Vec<StaticClient>,
    pool: Ipv6Net,
    /// Serials the shared registry revoked (empty without one).
    revoked: RevokedSerials,
}

impl ConfigAuthorizer {
    /// From server.toml's `[[clients]]` and `server.pool`.
    pub fn new(clients: Vec<StaticClient>, pool: Ipv6Net) -> Self {
        ConfigAuthorizer {
            clients,
            pool,
            revoked: RevokedSerials::default(),
        }
    }

    /// Also refuses every certificate whose serial is in `revoked` (the shared registry's).
    pub fn refusing(mut self, revoked: RevokedSerials) -> Self {
        self.revoked = revoked;
        self
    }

    /// The decision, from the identity and the certificate's DER.
    pub fn decide(
        &self,
        identity: &PeerIdentity,
        certificate: &[u8],
    ) -> Result<Vec<Ipv6Net>, PrefixRefusal> {
        // Before the static entries: a revoked certificate is refused whatever it names.
        if !self.revoked.is_empty()
            && let Ok(serial) = hometun_certs::verify::serial(certificate)
        {
            let serial: String = serial.iter().map(|b| format!("{b:02x}")).collect();
            if self.revoked.contains(&serial) {
                return Err(PrefixRefusal::Revoked { serial });
            }
        }
        if let PeerIdentity::Fqdn(name) = identity
            && let Some(client) = self
                .clients
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(name))
        {
            return Ok(vec![client.prefix]);
        }
        let prefixes = hometun_certs::addrblock::prefixes_from_certificate(certificate)?;
        if prefixes.is_empty() {
            return Err(PrefixRefusal::NoPrefix(identity.clone()));
        }
        for prefix in &prefixes {
            if !self.pool.contains(prefix) {
                return Err(PrefixRefusal::OutsidePool {
                    prefix: *prefix,
                    pool: self.pool,
                });
            }
            if let Some(other) = self
                .clients
                .iter()
                .find(|c| c.prefix.contains(prefix) || prefix.contains(&c.prefix))
            {
                return Err(PrefixRefusal::OverlapsStaticClient {
                    prefix: *prefix,
                    theirs: other.prefix,
                    name: other.name.clone(),
                });
            }
        }
        Ok(prefixes)
    }
}

impl Authorizer for ConfigAuthorizer {
    fn prefixes(
        &self,
        identity: &PeerIdentity,
        peer: &VerifiedPeer,
    ) -> Result<Vec<Ipv6Net>, PrefixRefusal> {
        self.decide(identity, peer.certificate_der())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str, prefixes: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        if !prefixes.is_empty() {
            let nets: Vec<Ipv6Net> = prefixes.iter().map(|p| p.parse().unwrap()).collect();
            let value = hometun_certs::addrblock::encode_ipv6_prefixes(&nets).unwrap();
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 5, 5, 7, 1, 7],
                    value,
                ));
        }
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn authorizer() -> ConfigAuthorizer {
        ConfigAuthorizer::new(
            vec![StaticClient {
                name: "static.example".into(),
                prefix: "2001:db8:100:5::/64".parse().unwrap(),
            }],
            "2001:db8:100::/48".parse().unwrap(),
        )
    }

    fn fqdn(name: &str) -> PeerIdentity {
        PeerIdentity::Fqdn(name.into())
    }

    #[test]
    fn a_serial_the_registry_revoked_is_refused() {
        let der = cert("home.example", &["2001:db8:100:1::/64"]);
        let serial: String = hometun_certs::verify::describe(&der)
            .unwrap()
            .serial
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let revoked = RevokedSerials::default();
        let authorizer = authorizer().refusing(revoked.clone());
        assert!(authorizer.decide(&fqdn("home.example"), &der).is_ok());
        revoked.insert(serial.clone());
        assert_eq!(
            authorizer.decide(&fqdn("home.example"), &der),
            Err(PrefixRefusal::Revoked { serial })
        );
    }

    #[test]
    fn static_entry_wins() {
        let der = cert("static.example", &[]);
        assert_eq!(
            authorizer().decide(&fqdn("static.example"), &der),
            Ok(vec!["2001:db8:100:5::/64".parse().unwrap()])
        );
    }

    #[test]
    fn certificate_prefix_inside_the_pool() {
        let der = cert("home.example", &["2001:db8:100:1::/64"]);
        assert_eq!(
            authorizer().decide(&fqdn("home.example"), &der),
            Ok(vec!["2001:db8:100:1::/64".parse().unwrap()])
        );
    }

    #[test]
    fn certificate_prefix_outside_the_pool_is_refused() {
        let der = cert("home.example", &["2001:db8:999::/64"]);
        let reason = authorizer()
            .decide(&fqdn("home.example"), &der)
            .unwrap_err()
            .to_string();
        assert!(
            reason.contains("2001:db8:999::/64 is outside server.pool 2001:db8:100::/48"),
            "{reason}"
        );
    }

    #[test]
    fn certificate_prefix_overlapping_a_static_client_is_refused() {
        let der = cert("thief.example", &["2001:db8:100:5::/64"]);
        let reason = authorizer()
            .decide(&fqdn("thief.example"), &der)
            .unwrap_err()
            .to_string();
        assert!(
            reason.contains("overlaps 2001:db8:100:5::/64 of [[clients]] static.example"),
            "{reason}"
        );
    }

    #[test]
    fn neither_entry_nor_prefix_is_refused() {
        let der = cert("stranger.example", &[]);
        let reason = authorizer()
            .decide(&fqdn("stranger.example"), &der)
            .unwrap_err()
            .to_string();
        assert!(
            reason.contains("no [[clients]] entry names stranger.example"),
            "{reason}"
        );
    }
}
