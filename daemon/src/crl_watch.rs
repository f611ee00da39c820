//! The server notices a new CRL by itself. `hometun pki revoke` writes the CRL that
//! `server.crl` names (a new file put in place under the name); the running server looks at the
//! file's version (`hometun_pki::files::FileVersion`: inode, size, times) every
//! [`CHECK_PERIOD`] and, when it changed, reads its configuration again as on SIGHUP: the
//! homes the new CRL revokes get a DELETE and are refused from then on. A `stat` every two
//! seconds costs nothing; a file watch (inotify) would need a crate and a thread for the same
//! result, and would miss an editor's rename of the directory entry unless it watched the
//! directory.
//!
//! The registry needs no watch: the enrollment listener reads it at each request, and IKE
//! trusts only the CA and the CRL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hometun_pki::files::FileVersion;

/// How often the CRL file is looked at (what `hometun pki revoke` promises).
pub const CHECK_PERIOD: Duration = Duration::from_secs(hometun_config::CRL_CHECK_SECONDS);

/// One file, as it was when last looked at.
#[derive(Debug)]
pub struct FileWatch {
    path: PathBuf,
    seen: Option<FileVersion>,
}

impl FileWatch {
    /// Watches `path` from its current version on.
    pub fn new(path: &Path) -> Self {
        FileWatch {
            path: path.to_path_buf(),
            seen: FileVersion::of(path),
        }
    }

    /// The watched file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file changed (appeared, went, or was replaced or rewritten) since the last
    /// call. A file that disappears counts as no change: the CRL in use stays until a new one
    /// comes.
    pub fn changed(&mut self) -> bool {
        let now = FileVersion::of(&self.path);
        if now.is_none() || now == self.seen {
            return false;
        }
        self.seen = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_put_in_place_or_rewritten_is_a_change_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crl.pem");
        std::fs::write(&path, "first").unwrap();
        let mut watch = FileWatch::new(&path);
        assert!(!watch.changed(), "nothing changed yet");
        // Written elsewhere and renamed into place, as `pki revoke` does (same size even).
        let next = dir.path().join("crl.pem.new");
        std::fs::write(&next, "secnd").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert!(watch.changed());
        assert!(!watch.changed(), "a change is reported once");
        // Rewritten in place with other content.
        std::fs::write(&path, "third, longer").unwrap();
        assert!(watch.changed());
        // Gone: the CRL in use stays; back: a change.
        std::fs::remove_file(&path).unwrap();
        assert!(!watch.changed());
        std::fs::write(&path, "fourth").unwrap();
        assert!(watch.changed());
    }
}
