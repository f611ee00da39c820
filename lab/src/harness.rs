//! What every test of the labs needs: whether it may run, where the workspace and the
//! `hometun` binary are.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// True when the test may run: as root. When not root it prints why it skips, unless
/// `CI=true`, where it panics (CI must run every test).
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    skip_or_fail(test, "needs root for network namespaces and TUN devices");
    false
}

/// Prints why `test` skips, or panics under `CI=true` (CI must run every test).
pub fn skip_or_fail(test: &str, reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {reason}, and CI=true forbids skipping");
    }
    eprintln!("{test}: skipped: {reason}");
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("lab/ lives in the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The `hometun` binary: `$HOMETUN_BIN`, else the target directory's (release first), built if
/// missing.
pub fn hometun_bin() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("HOMETUN_BIN") {
        return Ok(PathBuf::from(path));
    }
    let target = target_dir();
    for profile in ["release", "debug"] {
        let candidate = target.join(profile).join("hometun");
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    let status = Command::new(env!("CARGO"))
        .args(["build", "-p", "hometun", "--bin", "hometun"])
        .current_dir(workspace_root())
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --bin hometun failed");
    }
    Ok(target.join("debug").join("hometun"))
}
