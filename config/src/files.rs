//! The files a config names: errors that say which key named the file and what is wrong with
//! it, in words, and the check that private keys are private.

use std::path::Path;

use crate::ConfigError;

/// A file named by `key` of `config` could not be read: `server.toml: server.certificate:
/// /etc/hometun/servr.pem: not found`.
pub fn file_error(config: &Path, key: &str, path: &Path, error: &std::io::Error) -> ConfigError {
    ConfigError::new(
        config,
        key,
        format!("{}: {}", path.display(), io_problem(error)),
    )
}

/// An I/O error in words, without the `(os error N)` tail, with the next step where the cause
/// is known.
pub fn io_problem(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "not found".into(),
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (run as root, or give the daemon's user read access)".into()
        }
        std::io::ErrorKind::IsADirectory => "is a directory, not a file".into(),
        _ => {
            let text = error.to_string();
            match text.find(" (os error") {
                Some(at) => text[..at].to_string(),
                None => text,
            }
        }
    }
}

/// Refuses a private key file that anyone but its owner can read or write.
#[cfg(unix)]
pub fn check_private_key_mode(path: &Path, key: &str, config: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| file_error(config, key, path, &e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::new(
            config,
            key,
            format!(
                "{} is readable by others (mode {mode:04o}); run chmod 600 on it",
                path.display()
            ),
        ));
    }
    Ok(())
}
