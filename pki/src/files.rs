//! Files: atomic replacement, private-key modes, PEM loading (through rustls-pki-types).
//!
//! Every file this crate writes is written to a temporary name in the same directory, synced,
//! and renamed over the target, then the directory is synced: a crash leaves either the old
//! or the new file, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::PkiError;

/// Mode of private keys: owner read/write only.
pub const PRIVATE_MODE: u32 = 0o600;
/// Mode of certificates, CRLs, configs and bundles.
pub const PUBLIC_MODE: u32 = 0o644;

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}

fn write_temp(path: &Path, bytes: &[u8], mode: u32) -> Result<PathBuf, PkiError> {
    let tmp = temp_path(path);
    // A stale temporary from a crashed run of this pid is replaced, never trusted.
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| PkiError::io(&tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| PkiError::io(&tmp, e))?;
    Ok(tmp)
}

fn sync_dir(path: &Path) -> Result<(), PkiError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| PkiError::io(dir, e))
}

/// Refuses a private key that anyone but its owner can read or write (the daemons refuse
/// their own keys the same way).
pub fn check_private_mode(path: &Path) -> Result<(), PkiError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|e| PkiError::file(path, format!("cannot read: {e}")))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(PkiError::file(
            path,
            format!("readable by others (mode {mode:04o}); run chmod 600 on it"),
        ));
    }
    Ok(())
}

/// Replaces `path` atomically with `bytes`, created with `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let tmp = write_temp(path, bytes, mode)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(PkiError::io(path, e));
    }
    sync_dir(path)
}

/// Creates `path` atomically with `bytes`; fails if it already exists (never overwrites).
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let tmp = write_temp(path, bytes, mode)?;
    // link(2) fails with EEXIST instead of replacing: atomic create-if-absent.
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    linked.map_err(|e| PkiError::io(path, e))?;
    sync_dir(path)
}

/// Reads a whole file.
pub fn read(path: &Path) -> Result<Vec<u8>, PkiError> {
    fs::read(path).map_err(|e| PkiError::io(path, e))
}

/// Reads a whole text file.
pub fn read_to_string(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|e| PkiError::io(path, e))
}

/// All certificates in a PEM file, in order.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let bytes = read(path)?;
    certificates_from_pem(&bytes).map_err(|problem| PkiError::file(path, problem.to_string()))
}

/// The first certificate in a PEM file.
pub fn load_certificate(path: &Path) -> Result<CertificateDer<'static>, PkiError> {
    load_certificates(path)?
        .into_iter()
        .next()
        .ok_or_else(|| PkiError::file(path, "no CERTIFICATE in the file"))
}

/// PEM text that does not read.
#[derive(Debug, thiserror::Error)]
#[error("bad PEM: {0}")]
pub struct BadPem(#[from] rustls_pki_types::pem::Error);

/// All certificates in PEM text.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, BadPem> {
    Ok(CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>()?)
}

/// The private key in a PEM file (PKCS#8, SEC1 or PKCS#1).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| PkiError::file(path, format!("no usable private key: {e}")))
}

/// The CRLs in a PEM file (for [`hometun_certs::verify::TrustStore`] or any rustls-webpki verifier).
/// A file with no CRL in it yields an empty list.
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, PkiError> {
    let bytes = read(path)?;
    CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::file(path, format!("bad PEM: {e}")))
}

/// The CA's trust store from its certificate file (PEM) and, if given, its CRL file (PEM; may
/// hold no CRL).
pub fn trust_store(
    ca: &Path,
    crl: Option<&Path>,
) -> Result<hometun_certs::verify::TrustStore, PkiError> {
    let ca_der = load_certificate(ca)?;
    let crls = match crl {
        Some(path) => load_crls(path)?,
        None => Vec::new(),
    };
    hometun_certs::verify::TrustStore::new(ca_der, &crls)
        .map_err(|e| PkiError::Verify(e.to_string()))
}

/// Makes a directory (and parents) if missing.
pub fn ensure_dir(path: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(path).map_err(|e| PkiError::io(path, e))
}

/// What tells a changed file from the one read before without reading it: writers replace it
/// (a new inode), and an edit in place changes its size or its times. For files looked at
/// again and again (the CRL, the registry) and read only when they changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileVersion {
    device: u64,
    inode: u64,
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl FileVersion {
    /// The version of the file at `path`, or `None` if it cannot be looked at.
    pub fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileVersion {
            device: m.dev(),
            inode: m.ino(),
            len: m.len(),
            modified: (m.mtime(), m.mtime_nsec()),
            changed: (m.ctime(), m.ctime_nsec()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_or_edited_file_is_another_version_and_an_untouched_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        assert_eq!(FileVersion::of(&path), None, "no file");
        std::fs::write(&path, b"{}").unwrap();
        let first = FileVersion::of(&path).unwrap();
        assert_eq!(FileVersion::of(&path), Some(first), "untouched");
        // As a writer replaces it: same size, a new inode.
        write_atomic(&path, b"[]", PUBLIC_MODE).unwrap();
        let replaced = FileVersion::of(&path).unwrap();
        assert_ne!(replaced, first);
        // Edited in place, same size: its change time moves on.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, b"{}").unwrap();
        assert_ne!(FileVersion::of(&path).unwrap(), replaced);
    }

    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_writes_set_the_mode_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.key");
        write_atomic(&key, b"one", PRIVATE_MODE).unwrap();
        write_atomic(&key, b"two", PRIVATE_MODE).unwrap();
        assert_eq!(fs::read(&key).unwrap(), b"two");
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // No temporaries left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_new_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.key");
        write_new(&p, b"first", PRIVATE_MODE).unwrap();
        let e = write_new(&p, b"second", PRIVATE_MODE).unwrap_err();
        assert!(e.to_string().contains("File exists"), "{e}");
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
