//! Client and server names: DNS names, as the IKE identities (ID_FQDN) and the certificates'
//! subjectAltName carry them. Every name that comes in (command line, CSR, token, bundle,
//! registry) goes through [`normalize_dns_name`]: lower case is the only form stored and
//! compared, because IKE matches identities without case and the registry must not hold
//! `Home.example` and `home.example` as two homes.

use crate::PkiError;

/// Checks that `name` is a DNS name (the rule of server.toml / client.toml,
/// [`hometun_config::names::normalize_dns_name`]) and returns it in lower case.
pub fn normalize_dns_name(name: &str) -> Result<String, PkiError> {
    hometun_config::names::normalize_dns_name(name).map_err(|e| PkiError::Invalid(e.to_string()))
}

/// Checks that `name` is a DNS name, whatever its case.
pub fn check_dns_name(name: &str) -> Result<(), PkiError> {
    normalize_dns_name(name).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        for ok in ["home.example", "a", "h-1.example", "x.y.z"] {
            assert!(check_dns_name(ok).is_ok(), "{ok}");
        }
        assert_eq!(normalize_dns_name("Home.EXAMPLE").unwrap(), "home.example");
        for bad in [
            "",
            "a..b",
            "-a.example",
            "a b",
            "ä.example",
            &"a".repeat(64),
        ] {
            assert!(check_dns_name(bad).is_err(), "{bad}");
        }
    }
}
