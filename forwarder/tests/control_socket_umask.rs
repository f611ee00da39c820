//! The control socket's mode does not depend on the umask: bound under umask 000 it is still
//! 0600 (0660 when another user is allowed in). A test binary of its own, because the umask is
//! the whole process's and the other tests create files.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;

use hometun_forwarder::control_socket::{PeerPolicy, bind_control_socket};

#[test]
fn socket_mode_is_0600_under_umask_000() {
    // SAFETY: umask has no preconditions; this binary has only this test.
    let previous = unsafe { libc::umask(0) };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let policy = PeerPolicy::new(Vec::new());
    let _listener = bind_control_socket(&path, policy.socket_mode()).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "control socket mode {mode:o} under umask 000");
    UnixStream::connect(&path).unwrap();

    // Another user allowed in: group-writable, never world-writable.
    let path = dir.path().join("shared.sock");
    // SAFETY: geteuid has no preconditions.
    let other = unsafe { libc::geteuid() } + 1;
    let policy = PeerPolicy::new(vec![other]);
    let _listener = bind_control_socket(&path, policy.socket_mode()).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        mode, 0o660,
        "shared control socket mode {mode:o} under umask 000"
    );
    // SAFETY: as above.
    unsafe { libc::umask(previous) };
}
