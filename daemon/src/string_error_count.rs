//! Keeps the workspace's errors typed: a test counts the `Result<_, String>` signatures left in
//! the library code of every workspace crate (outside `#[cfg(test)]` items and test files) and
//! fails on any: none is left, so a new one is a decision made here rather than a habit. A typed
//! error lets the caller tell refusals apart without reading their text.

use std::path::{Path, PathBuf};

/// The workspace's member crates, as the root Cargo.toml lists them.
fn members(root: &Path) -> Vec<PathBuf> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("the root Cargo.toml");
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("a members line in the root Cargo.toml");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(|member| root.join(member))
        .collect()
}

/// Every .rs file below `dir`, except test files (`tests.rs`, and below a `tests` folder).
fn library_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "tests" {
                library_files(&path, files);
            }
        } else if path.extension().is_some_and(|e| e == "rs") && name != "tests.rs" {
            files.push(path);
        }
    }
}

/// Whether `line` names a `Result` whose error type is `String`.
fn has_string_error(line: &str) -> bool {
    let mut rest = line;
    while let Some(at) = rest.find("Result<") {
        let args = &rest[at + "Result<".len()..];
        // The text up to the `>` that closes this Result, and where its last argument starts.
        let mut depth = 0usize;
        let mut last_start = 0;
        for (i, c) in args.char_indices() {
            match c {
                '<' | '(' | '[' => depth += 1,
                ')' | ']' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => last_start = i + 1,
                '>' if depth == 0 => {
                    if last_start > 0 && args[last_start..i].trim() == "String" {
                        return true;
                    }
                    break;
                }
                '>' => depth -= 1,
                _ => {}
            }
        }
        rest = args;
    }
    false
}

/// The lines of `text` outside `#[cfg(test)]` items and comments.
fn non_test_lines(text: &str) -> Vec<&str> {
    let mut kept = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        if trimmed != "#[cfg(test)]" {
            kept.push(line);
            continue;
        }
        // Skip the item: up to a `;` that ends it, or until its braces close.
        let mut depth = 0i64;
        for item_line in lines.by_ref() {
            depth += item_line.matches('{').count() as i64;
            depth -= item_line.matches('}').count() as i64;
            let t = item_line.trim_end();
            if depth <= 0 && (t.ends_with(';') || t.ends_with('}')) {
                break;
            }
        }
    }
    kept
}

/// `file:line: text` of every `Result<_, String>` in the workspace's library code.
fn string_errors(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for member in members(root) {
        library_files(&member.join("src"), &mut files);
    }
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a readable source file");
        for line in non_test_lines(&text) {
            if has_string_error(line) {
                let shown = file.strip_prefix(root).unwrap_or(&file).display();
                found.push(format!("{shown}: {}", line.trim()));
            }
        }
    }
    found
}

// The tests' own text names such signatures: inside `cfg(test)`, the scan passes over it.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_code_holds_no_string_errors() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the workspace root");
        let found = string_errors(root);
        assert!(
            found.is_empty(),
            "{} `Result<_, String>` signatures in library code, where none is left: give these a \
             thiserror enum:\n{}",
            found.len(),
            found.join("\n")
        );
    }

    #[test]
    fn the_scan_finds_string_errors_and_skips_tests() {
        assert!(has_string_error("pub fn f() -> Result<(), String> {"));
        assert!(has_string_error(") -> Result<Vec<String>, String> {"));
        assert!(has_string_error(
            "pub type Answer = Result<String, String>;"
        ));
        assert!(has_string_error("x: Result<HashMap<u8, u8>, String>,"));
        assert!(!has_string_error("fn f() -> Result<Vec<String>, Error> {"));
        assert!(!has_string_error("fn f() -> anyhow::Result<String> {"));
        assert!(!has_string_error(
            "fn f() -> Result<String, &'static str> {"
        ));
        let text = "fn a() -> Result<(), String> {}\n\
                    // fn b() -> Result<(), String>\n\
                    #[cfg(test)]\n\
                    mod tests {\n\
                        fn c() -> Result<(), String> {\n\
                        }\n\
                    }\n\
                    #[cfg(test)]\n\
                    mod more;\n\
                    fn d() -> Result<u8, String> { 0 }\n";
        let kept: Vec<_> = non_test_lines(text)
            .into_iter()
            .filter(|l| has_string_error(l))
            .collect();
        assert_eq!(
            kept,
            [
                "fn a() -> Result<(), String> {}",
                "fn d() -> Result<u8, String> { 0 }"
            ]
        );
    }
}
