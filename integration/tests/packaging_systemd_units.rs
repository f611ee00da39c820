//! examples/systemd/*.service pass `systemd-analyze verify` (Debian's `systemd` package): every
//! key known, every value parsed, every unit they name present. It runs against a scratch root
//! (the system's own units, the examples, a stand-in /usr/bin/hometun), so nothing is installed
//! and no systemd needs to run. That the command lines fit the `hometun` binary is tested in
//! src/main.rs.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use hometun_lab::workspace_root;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            let link = std::fs::read_link(entry.path()).unwrap();
            std::os::unix::fs::symlink(link, target).unwrap();
        } else if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let system_units = Path::new("/usr/lib/systemd/system");
    let available = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        && system_units.is_dir();
    if !available {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "systemd-analyze is missing (Debian package systemd) and CI=true forbids skipping"
        );
        eprintln!("systemd_units_pass_systemd_analyze_verify: skipped: no systemd-analyze");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    copy_dir(system_units, &root.path().join("usr/lib/systemd/system"));
    let units = root.path().join("etc/systemd/system");
    let examples = workspace_root().join("examples/systemd");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "service") {
            std::fs::create_dir_all(&units).unwrap();
            std::fs::copy(&path, units.join(path.file_name().unwrap())).unwrap();
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert_eq!(names.len(), 4, "{names:?}");
    // verify checks that each command exists and is executable under the root.
    for program in ["usr/bin/hometun", "bin/kill"] {
        let path = root.path().join(program);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    names.sort();
    for name in &names {
        let output = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(format!("--root={}", root.path().display()))
            .arg(name)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{name}: {}\n{said}", output.status);
        assert!(
            said.trim().is_empty(),
            "{name}: systemd-analyze verify says:\n{said}"
        );
        eprintln!("{name}: systemd-analyze verify: clean");
    }
}
