//! DNS names: the IKE identities (ID_FQDN) of the server and the homes, and the dNSNames of
//! their certificates. One rule and one form everywhere: DNS compares names without case
//! (RFC 4343) and so does IKE identity matching, so every name hometun takes in (a config, a
//! CSR, a token, the command line, the registry) is put in lower case before it is compared
//! or stored. Otherwise `Home.example` and `home.example` would be two homes to the registry
//! and one to IKE.

/// The longest DNS name (RFC 1035 2.3.4).
pub const MAX_NAME_LEN: usize = 253;

/// Checks that `name` is a DNS name (letters, digits, hyphens; dot-separated labels of 1..=63
/// characters that neither start nor end with a hyphen; at most 253 in total) and returns it
/// in lower case. The error says what is wrong, for a one-line message.
pub fn normalize_dns_name(name: &str) -> Result<String, NotADnsName> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if valid {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(NotADnsName(name.to_string()))
    }
}

/// A name [`normalize_dns_name`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a DNS name")]
pub struct NotADnsName(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_lower_cased() {
        for (given, normal) in [
            ("home.example", "home.example"),
            ("Home.EXAMPLE", "home.example"),
            ("a", "a"),
            ("H-1.Example", "h-1.example"),
        ] {
            assert_eq!(normalize_dns_name(given).as_deref(), Ok(normal));
        }
        for bad in ["", "a..b", "-a.example", "a-.example", "a b", "ä.example"] {
            assert!(normalize_dns_name(bad).is_err(), "{bad}");
        }
        assert!(normalize_dns_name(&"a".repeat(64)).is_err());
        assert!(normalize_dns_name(&["a"; 128].join(".")).is_err());
    }
}
