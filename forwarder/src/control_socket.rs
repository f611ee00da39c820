//! The control socket's file and who may use it. Whoever reaches the SA channel can install
//! keys and routes, so the socket is made without a moment in which others could connect
//! (bound inside a fresh 0700 directory, its mode set, then renamed into place), and every
//! accepted connection's peer is checked with `SO_PEERCRED`: root, the forwarder's own user, or
//! a user named with `--allow-uid`.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Who may talk to the forwarder over its control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPolicy {
    /// The forwarder's own effective uid.
    own: u32,
    /// Further uids (`--allow-uid`), e.g. the IKE daemon's user under systemd.
    allowed: Vec<u32>,
}

impl PeerPolicy {
    /// Root, our own user, and `allowed`.
    pub fn new(allowed: Vec<u32>) -> Self {
        // SAFETY: geteuid has no preconditions.
        let own = unsafe { libc::geteuid() };
        PeerPolicy { own, allowed }
    }

    /// Whether a peer running as `uid` may use the channel.
    pub fn admits(&self, uid: u32) -> bool {
        uid == 0 || uid == self.own || self.allowed.contains(&uid)
    }

    /// The socket file's mode: 0600, or 0660 when a user other than ours and root must be able
    /// to connect (connect(2) needs write permission on the file; the group must then be one
    /// that user is in, and `SO_PEERCRED` still refuses every other member).
    pub fn socket_mode(&self) -> u32 {
        if self.allowed.iter().any(|&uid| uid != 0 && uid != self.own) {
            0o660
        } else {
            0o600
        }
    }

    /// Checks an accepted connection's peer.
    pub fn check(&self, stream: &UnixStream) -> Result<PeerCredentials, Refusal> {
        let peer = peer_credentials(stream).map_err(Refusal::NoCredentials)?;
        if self.admits(peer.uid) {
            Ok(peer)
        } else {
            Err(Refusal::Uid {
                peer,
                own: self.own,
                allowed: self.allowed.clone(),
            })
        }
    }
}

/// The process at the other end of a Unix stream, as the kernel recorded it at connect time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    /// Its process id.
    pub pid: i32,
    /// Its effective uid.
    pub uid: u32,
    /// Its effective gid.
    pub gid: u32,
}

/// Why a connection was closed unanswered.
#[derive(Debug)]
pub enum Refusal {
    /// `SO_PEERCRED` failed.
    NoCredentials(io::Error),
    /// The peer's user may not use the channel.
    Uid {
        /// Who it was.
        peer: PeerCredentials,
        /// The forwarder's own uid.
        own: u32,
        /// The `--allow-uid` users.
        allowed: Vec<u32>,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoCredentials(error) => write!(
                f,
                "control socket: closed a connection whose credentials cannot be read: {error}"
            ),
            Refusal::Uid { peer, own, allowed } => {
                write!(
                    f,
                    "control socket: refused uid {} (pid {}): only root, uid {own}",
                    peer.uid, peer.pid
                )?;
                for uid in allowed {
                    write!(f, ", uid {uid}")?;
                }
                write!(f, " may connect (--allow-uid)")
            }
        }
    }
}

/// `SO_PEERCRED` of a connected Unix stream.
pub fn peer_credentials(stream: &UnixStream) -> io::Result<PeerCredentials> {
    // SAFETY: ucred is plain data, filled in by getsockopt below.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the buffer and its length are valid for the call; the fd is open (borrowed).
    let ret = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PeerCredentials {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// Binds the control socket at `path` with exactly `mode`, whatever the umask: it is bound in a
/// fresh 0700 directory beside `path` (nobody but us and root can reach it there), given its
/// mode, then renamed into place. A stale socket file left by a crash is replaced; one a live
/// forwarder answers on is waited for (it may be stopping: it removes its file first), up to
/// [`crate::takeover::PATIENCE`], and then not taken over (`AddrInUse`).
pub fn bind_control_socket(path: &Path, mode: u32) -> io::Result<UnixListener> {
    let tries = crate::takeover::PATIENCE.as_millis() / LIVE_SOCKET_POLL.as_millis();
    let mut tried = 0;
    while path.exists() && UnixStream::connect(path).is_ok() {
        if tried == tries {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "another forwarder is listening on it (still after {:?})",
                    crate::takeover::PATIENCE
                ),
            ));
        }
        tried += 1;
        std::thread::sleep(LIVE_SOCKET_POLL);
    }
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let staging = StagingDir::create(parent)?;
    let staged = staging.path.join("s");
    let listener = UnixListener::bind(&staged)?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
    // rename(2) replaces a stale socket file atomically.
    std::fs::rename(&staged, path)?;
    Ok(listener)
}

/// How often a live socket at our path is looked at again.
const LIVE_SOCKET_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// A private directory for binding, removed when dropped.
struct StagingDir {
    path: PathBuf,
}

impl StagingDir {
    fn create(parent: &Path) -> io::Result<Self> {
        // Short (a socket path holds at most 107 bytes) and unique per process and attempt.
        let pid = std::process::id();
        for attempt in 0..100u32 {
            let path = parent.join(format!(".ht{pid}.{attempt}"));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(StagingDir { path }),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(error),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free name for a staging directory",
        ))
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path.join("s"));
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Removes the socket file when dropped, unless another process has bound a new socket at the
/// same path meanwhile.
pub struct SocketFile {
    path: PathBuf,
    inode: Option<(u64, u64)>,
}

impl SocketFile {
    /// Remembers the socket file now at `path`.
    pub fn new(path: PathBuf) -> Self {
        let inode = identity(&path);
        SocketFile { path, inode }
    }
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.inode.is_some() && identity(&self.path) == self.inode {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A user named on the command line: a number, or a name looked up in the user database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSpec {
    /// A uid.
    Uid(u32),
    /// A user name.
    Name(String),
}

impl std::str::FromStr for UserSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err("an empty user".into());
        }
        Ok(match text.parse() {
            Ok(uid) => UserSpec::Uid(uid),
            Err(_) => UserSpec::Name(text.to_string()),
        })
    }
}

impl fmt::Display for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserSpec::Uid(uid) => write!(f, "{uid}"),
            UserSpec::Name(name) => f.write_str(name),
        }
    }
}

impl UserSpec {
    /// The uid: the number itself, or the named user's (getpwnam_r).
    pub fn resolve(&self) -> io::Result<u32> {
        let name = match self {
            UserSpec::Uid(uid) => return Ok(*uid),
            UserSpec::Name(name) => name,
        };
        let c_name = std::ffi::CString::new(name.as_str())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a user name"))?;
        // SAFETY: passwd is plain data, filled in by getpwnam_r.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let mut buffer = vec![0u8; 16 * 1024];
        // SAFETY: every pointer is valid for the call and the buffer's length is its own.
        let ret = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                &mut found,
            )
        };
        if ret != 0 {
            return Err(io::Error::from_raw_os_error(ret));
        }
        if found.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no user {name:?}"),
            ));
        }
        Ok(entry.pw_uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_our_own_user_are_admitted_and_others_only_when_named() {
        let policy = PeerPolicy {
            own: 1000,
            allowed: vec![],
        };
        assert!(policy.admits(0) && policy.admits(1000));
        assert!(!policy.admits(65534));
        assert_eq!(policy.socket_mode(), 0o600);
        let policy = PeerPolicy {
            own: 1000,
            allowed: vec![1001],
        };
        assert!(policy.admits(1001) && !policy.admits(1002));
        assert_eq!(policy.socket_mode(), 0o660);
        // Naming ourselves or root changes nothing.
        let policy = PeerPolicy {
            own: 1000,
            allowed: vec![0, 1000],
        };
        assert_eq!(policy.socket_mode(), 0o600);
    }

    #[test]
    fn a_refusal_names_the_peer_and_who_may_connect() {
        let refusal = Refusal::Uid {
            peer: PeerCredentials {
                pid: 4242,
                uid: 65534,
                gid: 65534,
            },
            own: 1000,
            allowed: vec![1001],
        };
        assert_eq!(
            refusal.to_string(),
            "control socket: refused uid 65534 (pid 4242): only root, uid 1000, uid 1001 may \
             connect (--allow-uid)"
        );
    }

    #[test]
    fn peer_credentials_are_the_connecting_process() {
        let (a, _b) = UnixStream::pair().unwrap();
        let peer = peer_credentials(&a).unwrap();
        assert_eq!(peer.pid, std::process::id() as i32);
        // SAFETY: geteuid has no preconditions.
        assert_eq!(peer.uid, unsafe { libc::geteuid() });
        assert!(PeerPolicy::new(Vec::new()).check(&a).is_ok());
    }

    #[test]
    fn users_are_numbers_or_names() {
        assert_eq!("0".parse::<UserSpec>(), Ok(UserSpec::Uid(0)));
        assert_eq!("root".parse::<UserSpec>().unwrap().resolve().unwrap(), 0);
        let missing = UserSpec::Name("no-such-user-hometun".into()).resolve();
        assert!(missing.is_err(), "{missing:?}");
        assert!("".parse::<UserSpec>().is_err());
    }

    #[test]
    fn a_live_socket_is_not_taken_over_and_a_stale_one_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let live = bind_control_socket(&path, 0o600).unwrap();
        let error = bind_control_socket(&path, 0o600).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        drop(live);
        // The file stays behind, as after a crash: the next bind replaces it.
        assert!(path.exists());
        let _again = bind_control_socket(&path, 0o600).unwrap();
        UnixStream::connect(&path).unwrap();
        // No staging directory is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["control.sock"]);
    }
}
