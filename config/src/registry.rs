//! The `[registry]` table of server.toml: where the registry lives when it is not the file
//! `registry.json` of the PKI directory (several servers sharing one PostgreSQL database).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// The `[registry]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    /// The PostgreSQL database: `postgresql://USER@HOST/DB`, or over a Unix socket
    /// `postgresql://USER@localhost/DB?host=/run/postgresql`. No password here: server.toml is
    /// readable by all.
    pub url: String,
    /// A file (mode 0600) holding the database password, if the database wants one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

impl RegistrySection {
    /// Checks the URL's form (the database itself is reached only when used).
    pub fn check(&self, file: &Path) -> Result<(), ConfigError> {
        let Some(rest) = self
            .url
            .strip_prefix("postgresql://")
            .or_else(|| self.url.strip_prefix("postgres://"))
        else {
            return Err(ConfigError::new(
                file,
                "registry.url",
                format!(
                    "{:?} is not a postgresql:// URL (leave [registry] out to keep registry.json)",
                    self.url
                ),
            ));
        };
        let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
        if authority
            .rsplit_once('@')
            .is_some_and(|(user, _)| user.contains(':'))
        {
            return Err(ConfigError::new(
                file,
                "registry.url",
                "holds a password, and server.toml is readable by all: put the password in registry.password_file (mode 0600)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str) -> Result<(), String> {
        RegistrySection {
            url: url.into(),
            password_file: None,
        }
        .check(Path::new("server.toml"))
        .map_err(|e| e.to_string())
    }

    #[test]
    fn urls() {
        assert_eq!(check("postgresql://hometun@db.example/registry"), Ok(()));
        assert_eq!(
            check("postgres://hometun@localhost/registry?host=/run/postgresql"),
            Ok(())
        );
        assert_eq!(
            check("mysql://db.example/registry"),
            Err("server.toml: registry.url: \"mysql://db.example/registry\" is not a postgresql:// URL (leave [registry] out to keep registry.json)".into())
        );
        let e = check("postgresql://hometun:secret@db.example/registry").unwrap_err();
        assert!(
            e.starts_with("server.toml: registry.url: holds a password"),
            "{e}"
        );
    }
}
