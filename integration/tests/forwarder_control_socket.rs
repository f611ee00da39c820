//! Who may use a forwarder's control socket (`hometun forwarder --control PATH`): whoever reaches
//! it can install keys and routes. The socket is 0600 even under umask 000, and a connection
//! from a user other than root, the forwarder's own or an `--allow-uid` one is closed unanswered
//! with one log line naming its uid and pid, even when the file's mode would let it in. The
//! client side runs as `nobody` through setpriv. Nothing here touches the network: the
//! forwarders are never configured.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use hometun_lab::{Guarded, hometun_bin, require_root, wait_for};

/// `hometun forwarder --control SOCKET ARGS...` under umask 000; waits until it listens.
fn start_forwarder(socket: &Path, args: &[&str], log: &Path) -> Guarded {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("umask 000; exec \"$@\"")
        .arg("sh")
        .arg(hometun_bin().unwrap())
        .args(["forwarder", "--control"])
        .arg(socket)
        .args(args);
    let forwarder = Guarded::spawn(command, "hometun forwarder", log).unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || socket.exists()),
        "the forwarder did not bind {}:\n{}",
        socket.display(),
        std::fs::read_to_string(log).unwrap_or_default()
    );
    forwarder
}

/// `hometun forwarder --control SOCKET --counters` as `nobody` (or as root).
fn counters(socket: &Path, as_nobody: bool) -> Output {
    let mut command = if as_nobody {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]);
        command.arg(hometun_bin().unwrap());
        command
    } else {
        Command::new(hometun_bin().unwrap())
    };
    command
        .args(["forwarder", "--counters", "--control"])
        .arg(socket)
        .output()
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A directory `nobody` can enter (the binary under target/ must be reachable too).
fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new().prefix("htsock").tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let socket = dir.path().join("control.sock");
    (dir, socket)
}

#[test]
fn only_root_our_user_and_allowed_users_reach_the_control_socket() {
    if !require_root("only_root_our_user_and_allowed_users_reach_the_control_socket") {
        return;
    }
    let (dir, socket) = scratch();
    let log = dir.path().join("forwarder.log");
    let forwarder = start_forwarder(&socket, &[], &log);
    assert_eq!(mode(&socket), 0o600, "socket mode under umask 000");

    // The file's mode keeps nobody out...
    let output = counters(&socket, true);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "nobody got in: {said}");
    assert!(said.contains("Permission denied"), "{said}");

    // ...and where it would not (a careless chmod), the peer's uid does.
    chmod(&socket, 0o666);
    let output = counters(&socket, true);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "nobody got an answer: {said}");
    assert!(
        output.stdout.is_empty(),
        "counters leaked to nobody: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        wait_for(Duration::from_secs(5), || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("control socket: refused uid 65534 (pid ")),
        "no refusal line:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let refusals = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("refused uid"))
        .count();
    assert_eq!(refusals, 1, "one line per refused connection");

    // Root still gets its answer, and the forwarder kept running.
    let output = counters(&socket, false);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        report["sas"].as_array().is_some_and(Vec::is_empty),
        "{report}"
    );
    drop(forwarder);

    // --allow-uid nobody: the socket is group-writable, and nobody, once in its group, gets in.
    let socket = dir.path().join("shared.sock");
    let log = dir.path().join("shared.log");
    let forwarder = start_forwarder(&socket, &["--allow-uid", "nobody"], &log);
    assert_eq!(mode(&socket), 0o660, "socket mode with --allow-uid");
    std::os::unix::fs::chown(&socket, None, Some(65534)).unwrap();
    let output = counters(&socket, true);
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap();
    drop(forwarder);
}

#[test]
fn an_unknown_allow_uid_user_is_refused_with_one_line() {
    let (dir, socket) = scratch();
    let output = Command::new(hometun_bin().unwrap())
        .args([
            "forwarder",
            "--allow-uid",
            "no-such-user-hometun",
            "--control",
        ])
        .arg(&socket)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(
        said.starts_with("hometun: --allow-uid no-such-user-hometun: no user"),
        "{said}"
    );
    assert!(!socket.exists());
    drop(dir);
}
