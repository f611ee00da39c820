//! Client and server names: DNS names, as the IKE identities (ID_FQDN) and the certificates'
//! subjectAltName carry them.

use crate::PkiError;

/// Checks that `name` is a DNS name (letters, digits, hyphens; dot-separated labels of 1..=63
/// characters; at most 253 in total), the same rule as server.toml / client.toml.
pub fn check_dns_name(name: &str) -> Result<(), PkiError> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if valid {
        Ok(())
    } else {
        Err(PkiError::Invalid(format!("{name:?} is not a DNS name")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        for ok in ["home.example", "a", "h-1.example", "x.y.z"] {
            assert!(check_dns_name(ok).is_ok(), "{ok}");
        }
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
