//! Every fuzz target has a committed seed corpus (fuzz/README.md, "Campaigns, corpora,
//! coverage"): the CI smoke run starts each target from it, so a target without one would only
//! ever see what ten seconds of mutation find. A corpus directory must also be let through
//! .gitignore, or it stays on the machine that made it.

use std::path::Path;

fn fuzz_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The targets as fuzz/Cargo.toml declares them (`[[bin]]` names).
fn targets() -> Vec<String> {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(value) = line.strip_prefix("name = ") {
            names.push(value.trim_matches('"').to_string());
        }
    }
    names
}

#[test]
fn every_target_has_a_committed_corpus() {
    let targets = targets();
    assert!(
        targets.len() >= 20,
        "targets read from Cargo.toml: {targets:?}"
    );
    let gitignore = std::fs::read_to_string(fuzz_dir().join("../.gitignore")).unwrap();
    for target in &targets {
        let dir = fuzz_dir().join("corpus").join(target);
        let inputs = std::fs::read_dir(&dir).map_or(0, |entries| entries.count());
        assert!(inputs > 0, "{target}: no seed corpus in {}", dir.display());
        let allowed = format!("!/fuzz/corpus/{target}/");
        assert!(
            gitignore.lines().any(|l| l.trim() == allowed),
            "{target}: .gitignore lacks {allowed:?}, so its corpus is never committed"
        );
    }
}
