//! The `client.updown` examples (examples/updown/, README.md "The home's LAN") parse as POSIX
//! shell: `sh -n` on each, the three RA daemons all covered.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/updown")
}

/// `sh -n FILE`: its error output, or `None` when it parses.
fn syntax_error(file: &Path) -> Option<String> {
    let output = Command::new("sh").arg("-n").arg(file).output().unwrap();
    (!output.status.success()).then(|| String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn every_updown_example_parses_as_posix_shell() {
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(examples())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "sh"))
        .collect();
    scripts.sort();
    let names: Vec<String> = scripts
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["updown-networkd.sh", "updown-odhcpd.sh", "updown-radvd.sh"]
    );
    for script in &scripts {
        assert_eq!(syntax_error(script), None, "{}", script.display());
        let text = std::fs::read_to_string(script).unwrap();
        assert!(text.starts_with("#!/bin/sh\n"), "{}", script.display());
    }
    // The check can fail: an unterminated `if` does not parse.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.sh");
    std::fs::write(
        &broken,
        "#!/bin/sh\nif [ \"$HOMETUN_STATE\" = up ]; then\n  echo up\n",
    )
    .unwrap();
    assert!(syntax_error(&broken).is_some());
}
