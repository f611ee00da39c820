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
        let mut text =
            serde_json::to_vec_pretty(data).expect("registry data is plain strings and numbers");
        text.push(b'\n');
        text
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
        let bytes = files::read(&self.path)?;
        let mut data: RegistryData =
            serde_json::from_slice(&bytes).map_err(|e| PkiError::Registry {
                path: self.path.clone(),
                problem: format!("damaged: {e}"),
            })?;
        if data.format != REGISTRY_FORMAT {
            return Err(PkiError::Registry {
                path: self.path.clone(),
                problem: format!(
                    "format {} is not the supported {REGISTRY_FORMAT}",
                    data.format
                ),
            });
        }
        data.normalise_names().map_err(|clash| PkiError::Registry {
            path: self.path.clone(),
            problem: clash.to_string(),
        })?;
        Ok(data)
    }

    fn transact(&self, change: Change<'_>, before_commit: Check<'_>) -> Result<(), PkiError> {
        let _lock = self.lock()?;
        let mut data = self.load()?;
        change(&mut data)?;
        before_commit(&data)?;
        files::write_atomic(&self.path, &Self::serialize(&data), files::PUBLIC_MODE)
    }

    fn subscribe(&self) -> Result<Subscription, PkiError> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
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
                    // A file being replaced or briefly damaged is looked at again next time.
                    let Ok(now) = backend.load() else { continue };
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
