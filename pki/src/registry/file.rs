//! The file backend: one JSON file (`registry.json`), changed only under an exclusive `flock`
//! on `registry.lock` and replaced atomically (write a temporary, fsync, rename, fsync the
//! directory). A change is therefore all-or-nothing: a crash or error in the middle of `sign`
//! leaves the previous file, so there is neither a half-allocated nor a lost prefix, and two
//! concurrent runs (threads or processes) on one machine never hand out the same prefix.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

use super::data::{REGISTRY_FORMAT, RegistryData};
use super::{Change, Check, RegistryBackend, Subscription, events_between};
use crate::{PkiError, files};

/// How often a subscriber looks at the file for revocations and claims made by others. The
/// file is for one machine, where the daemon's CRL check (every two seconds) already cuts a
/// revoked home; this only makes the events of both backends look alike.
pub const FILE_POLL: Duration = Duration::from_millis(500);

/// The registry file and its lock.
#[derive(Debug, Clone)]
pub struct FileBackend {
    path: PathBuf,
    lock_path: PathBuf,
}

impl FileBackend {
    /// The registry at `path` (its lock beside it, `registry.lock`).
    pub fn at(path: &Path) -> Self {
        FileBackend {
            path: path.to_path_buf(),
            lock_path: path.with_extension("lock"),
        }
    }

    fn serialize(data: &RegistryData) -> Vec<u8> {
        to_file_bytes(data)
    }

    fn lock(&self) -> Result<Flock<std::fs::File>, PkiError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(|e| PkiError::io(&self.lock_path, e))?;
        // Blocks until other writers (threads or processes) are done; released on drop,
        // and by the kernel if the holder dies.
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| PkiError::io(&self.lock_path, errno.into()))
    }
}

impl RegistryBackend for FileBackend {
    fn location(&self) -> PathBuf {
        self.path.clone()
    }

    fn exists(&self) -> Result<bool, PkiError> {
        Ok(self.path.exists())
    }

    fn create(&self, data: &RegistryData) -> Result<(), PkiError> {
        files::write_new(&self.path, &Self::serialize(data), files::PUBLIC_MODE)
    }

    /// Consistent without the lock, because writers replace the file atomically.
    fn load(&self) -> Result<RegistryData, PkiError> {
        from_file_bytes(&self.path, &files::read(&self.path)?)
    }

    fn transact(&self, change: Change<'_>, before_commit: Check<'_>) -> Result<(), PkiError> {
        let _lock = self.lock()?;
        let mut data = self.load()?;
        change(&mut data)?;
        before_commit(&data)?;
        files::write_atomic(&self.path, &Self::serialize(&data), files::PUBLIC_MODE)
    }

    /// Each batch rewrites (and syncs) the whole file, whose size grows with the homes: with a
    /// thousand homes, 50 ms batches of 256 were a tenth of a server's CPU per handshake in a
    /// reconnection storm (bench/README.md, "handshakes.sh"). Other servers read the file
    /// every [`FILE_POLL`], so a claim up to half of that later changes little.
    fn holder_batching(&self) -> super::HolderBatching {
        super::HolderBatching {
            window: FILE_POLL / 2,
            max: 4096,
        }
    }

    fn subscribe(&self) -> Result<Subscription, PkiError> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        // Taken before the read: a change in between is seen at the next look.
        let mut seen_version = files::FileVersion::of(&self.path);
        let mut seen = self.load()?;
        let backend = self.clone();
        std::thread::Builder::new()
            .name("registry-poll".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(FILE_POLL);
                    if tx.is_closed() {
                        return;
                    }
                    // Read and parsed only when it changed: with a thousand homes the file is
                    // a megabyte and a read costs milliseconds (bench/README.md, "memory.sh").
                    let version = files::FileVersion::of(&backend.path);
                    if version.is_some() && version == seen_version {
                        continue;
                    }
                    // A file being replaced or briefly damaged is looked at again next time.
                    let Ok(now) = backend.load() else { continue };
                    seen_version = version;
                    for event in events_between(&seen, &now) {
                        if tx.send(event).is_err() {
                            return;
                        }
                    }
                    seen = now;
                }
            })
            .map_err(|e| PkiError::io(&self.path, e))?;
        Ok(rx)
    }
}

/// The registry file's text for `data`.
pub fn to_file_bytes(data: &RegistryData) -> Vec<u8> {
    let mut text =
        serde_json::to_vec_pretty(data).expect("registry data is plain strings and numbers");
    text.push(b'\n');
    text
}

/// The registry in `bytes`, read from the file at `path` (named in the error). Other servers
/// and `hometun pki` write it, and a damaged file must not take the server down: anything else
/// than a registry of the supported format with names that do not clash is an error.
pub fn from_file_bytes(path: &Path, bytes: &[u8]) -> Result<RegistryData, PkiError> {
    let mut data: RegistryData = serde_json::from_slice(bytes).map_err(|e| PkiError::Registry {
        path: path.to_path_buf(),
        problem: format!(
            "damaged: {}",
            hometun_config::one_line::escape_controls(&e.to_string())
        ),
    })?;
    if data.format != REGISTRY_FORMAT {
        return Err(PkiError::Registry {
            path: path.to_path_buf(),
            problem: format!(
                "format {} is not the supported {REGISTRY_FORMAT}",
                data.format
            ),
        });
    }
    data.normalise_names().map_err(|clash| PkiError::Registry {
        path: path.to_path_buf(),
        problem: clash.to_string(),
    })?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_file_is_one_error_line_even_when_it_quotes_a_line_break() {
        let path = Path::new("/var/lib/hometun/registry.json");
        let error = from_file_bytes(path, b"{\"format\": 1, \"pool\\n[fake] line\": 2}")
            .unwrap_err()
            .to_string();
        assert!(!error.contains('\n'), "{error}");
        assert!(error.contains("pool\\n[fake] line"), "{error}");
        assert!(error.contains("registry.json"), "{error}");
    }
}
