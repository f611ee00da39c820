//! scripts/install-deps.sh names, explicitly, the Debian package of everything the tests, the
//! benchmarks and the fuzz smoke run use: every charon plugin a test's strongswan.conf loads
//! (testdata/strongswan-plugins) and every program a test starts. The script installs with
//! `--no-install-recommends`, so a package that only comes as a recommendation is missing on a
//! fresh machine (strongSwan's gcm and openssl plugins, in libstrongswan-standard-plugins, were:
//! charon then refused AES-GCM).
//!
//! Ownership comes from `dpkg -S` on the installed file: a file no package owns means the script
//! did not install it. No root, no namespaces: this holds on any Debian machine the script ran
//! on; without dpkg it skips with a reason (fails under CI=true).

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use hometun_lab::{strongswan, workspace_root};

/// The programs the tests, benchmarks and scripts start, as they name them (a name looked up on
/// PATH, or an absolute path). `the_audit_lists_every_program_the_tests_start` keeps this list
/// complete for the Rust tests; the shell scripts' programs are listed by hand:
/// bench/*.sh use ip, iperf3, ping, charon, swanctl, openssl, python3, pgrep, bc, wg, mount;
/// ops_status scrapes the metrics endpoint with curl;
/// scripts/test.sh python3; the fuzz smoke builds libFuzzer and ring with gcc and g++ (`cc`
/// and `c++` are alternatives for them).
const PROGRAMS: &[&str] = &[
    "ip",
    "nft",
    "ping",
    "sysctl",
    "pgrep",
    "iperf3",
    "tcpdump",
    "tshark",
    "openssl",
    "/usr/bin/python3",
    "/usr/lib/ipsec/charon",
    "swanctl",
    "pki",
    "wg",
    "setpriv",
    "mount",
    "systemd-analyze",
    "sh",
    "env",
    "bc",
    "curl",
    "gcc",
    "g++",
    // lab/src/bird.rs and the check that BIRD is there (integration/tests/multi_failover.rs).
    "bird",
    "birdc",
    "/usr/sbin/bird",
    "/usr/sbin/birdc",
    // integration/tests/lan_radvd.rs: the updown example's RA daemon.
    "radvd",
    "/usr/sbin/radvd",
    // lab/src/postgres_lab.rs: the registry's PostgreSQL (started as the postgres user).
    "runuser",
    "chown",
    "/usr/lib/postgresql/15/bin/initdb",
    "/usr/lib/postgresql/15/bin/pg_ctl",
    "/usr/lib/postgresql/15/bin/createdb",
    "/usr/lib/postgresql/15/bin/psql",
];

/// Files that are not programs but that tests load: Scapy and the cryptography module it uses
/// for ESP (forwarder/tests/kat_scapy.rs, with Debian's /usr/bin/python3).
const MODULES: &[&str] = &[
    "/usr/lib/python3/dist-packages/scapy/__init__.py",
    "/usr/lib/python3/dist-packages/cryptography/__init__.py",
];

/// Source trees whose programs the audit reads.
const SOURCES: &[&str] = &[
    "lab",
    "integration",
    "ike/tests",
    "pki/tests",
    "forwarder/tests",
    "demo/src",
];

fn dpkg_available() -> bool {
    let ok = Command::new("dpkg")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "dpkg is missing (not Debian?) and CI=true forbids skipping"
        );
        eprintln!("packaging_install_deps: skipped: no dpkg on this machine");
    }
    ok
}

/// The packages the script installs for the tests: the words of its first `packages=(...)`
/// array, comments removed.
fn named_packages() -> BTreeSet<String> {
    let script = std::fs::read_to_string(workspace_root().join("scripts/install-deps.sh")).unwrap();
    let start = script
        .find("packages=(")
        .expect("install-deps.sh has packages=(");
    let mut named = BTreeSet::new();
    for line in script[start + "packages=(".len()..].lines() {
        let code = line.split('#').next().unwrap_or("");
        let (words, closed) = match code.split_once(')') {
            Some((words, _)) => (words, true),
            None => (code, false),
        };
        named.extend(words.split_whitespace().map(str::to_string));
        if closed {
            break;
        }
    }
    named
}

/// The packages that own `path` according to dpkg, or why none does.
fn owners(path: &Path) -> Result<Vec<String>, String> {
    let query = |p: &Path| -> Option<Vec<String>> {
        let out = Command::new("dpkg").arg("-S").arg(p).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut found = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with("diversion by")) {
            let (packages, _) = line.split_once(": ")?;
            for package in packages.split(", ") {
                // "libstrongswan:amd64" -> "libstrongswan"
                found.push(package.split(':').next().unwrap_or(package).to_string());
            }
        }
        (!found.is_empty()).then_some(found)
    };
    // dpkg records a file under the path its package ships; with merged /usr, /usr/bin/x may be
    // /bin/x there, and a name may be a symlink (alternatives) to the file a package owns.
    let mut candidates = vec![path.to_path_buf()];
    let text = path.to_string_lossy();
    if let Some(rest) = text.strip_prefix("/usr") {
        candidates.push(PathBuf::from(rest));
    } else {
        candidates.push(PathBuf::from(format!("/usr{text}")));
    }
    if let Ok(real) = std::fs::canonicalize(path) {
        candidates.push(real);
    }
    candidates
        .iter()
        .find_map(|p| query(p))
        .ok_or_else(|| format!("no installed package owns {}", path.display()))
}

/// `name` looked up on PATH (plus the sbin directories, which a non-root PATH may lack).
fn locate(name: &str) -> Option<PathBuf> {
    if name.starts_with('/') {
        return Path::new(name).exists().then(|| PathBuf::from(name));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Checks that each file is owned by a package the script names; returns the problems.
fn unnamed(files: &[(String, Option<PathBuf>)], named: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (what, file) in files {
        let Some(file) = file else {
            problems.push(format!(
                "{what}: not installed (scripts/install-deps.sh must name its package)"
            ));
            continue;
        };
        match owners(file) {
            Ok(packages) if packages.iter().any(|p| named.contains(p)) => {}
            Ok(packages) => problems.push(format!(
                "{what}: {} comes from {} which scripts/install-deps.sh does not name",
                file.display(),
                packages.join(", ")
            )),
            Err(e) => problems.push(format!("{what}: {e}")),
        }
    }
    problems
}

/// The plugins of testdata/strongswan-plugins and of every literal `load = ...` line in the
/// tests, benchmarks and scripts (a copy that does not use the shared list is checked too).
fn charon_plugins() -> BTreeSet<String> {
    let mut plugins: BTreeSet<String> = strongswan::plugins()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let mut files = Vec::new();
    for dir in SOURCES.iter().chain(&["bench", "scripts", "examples"]) {
        collect_files(&workspace_root().join(dir), &mut files);
    }
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for line in text.lines() {
            if let Some(list) = line.trim().strip_prefix("load = ")
                && !list.contains(['{', '$'])
            {
                plugins.extend(list.split_whitespace().map(str::to_string));
            }
        }
    }
    plugins
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                collect_files(&path, out);
            }
        } else if path
            .extension()
            .is_some_and(|e| e == "rs" || e == "sh" || e == "conf")
        {
            out.push(path);
        }
    }
}

#[test]
fn every_charon_plugin_comes_from_a_named_package() {
    if !dpkg_available() {
        return;
    }
    let named = named_packages();
    let files: Vec<(String, Option<PathBuf>)> = charon_plugins()
        .into_iter()
        .map(|plugin| {
            let file = PathBuf::from(format!("/usr/lib/ipsec/plugins/libstrongswan-{plugin}.so"));
            let found = file.exists().then_some(file);
            (format!("charon plugin {plugin}"), found)
        })
        .collect();
    let problems = unnamed(&files, &named);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_program_the_tests_start_comes_from_a_named_package() {
    if !dpkg_available() {
        return;
    }
    let named = named_packages();
    let files: Vec<(String, Option<PathBuf>)> = PROGRAMS
        .iter()
        .map(|p| (format!("program {p}"), locate(p)))
        .chain(MODULES.iter().map(|m| {
            let found = Path::new(m).exists().then(|| PathBuf::from(m));
            (format!("module {m}"), found)
        }))
        .collect();
    let problems = unnamed(&files, &named);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The string literal that starts `text` (after blanks), if it does.
fn leading_literal(text: &str) -> Option<&str> {
    let rest = text.trim_start().strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

/// Programs the Rust sources start: `Command::new("x")`, `ns.output("x", ..)`, `run("x", ..)`,
/// `command(Path::new("x"))`, `"exec", NS, "x"` (ip netns exec), and absolute paths of
/// programs (`"/usr/lib/ipsec/charon"`).
fn programs_in(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for opener in ["Command::new(", ".output(", "run(", "command(Path::new("] {
        for (at, _) in text.match_indices(opener) {
            // `run(` only as a whole name: `can_run("test name")` takes a test's name.
            let whole_name = !opener.starts_with(|c: char| c.is_ascii_alphabetic())
                || !text[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
            if !whole_name {
                continue;
            }
            if let Some(name) = leading_literal(&text[at + opener.len()..]) {
                found.insert(name.to_string());
            }
        }
    }
    for (at, _) in text.match_indices("\"exec\",") {
        let rest = &text[at + "\"exec\",".len()..];
        // Skip the namespace argument, then take the program.
        if let Some(comma) = rest.find(',')
            && let Some(name) = leading_literal(&rest[comma + 1..])
        {
            found.insert(name.to_string());
        }
    }
    for (at, _) in text.match_indices("\"/usr/") {
        let rest = &text[at + 1..];
        if let Some(end) = rest.find('"') {
            let path = Path::new(&rest[..end]);
            let executable = path.is_file()
                && std::os::unix::fs::PermissionsExt::mode(&path.metadata().unwrap().permissions())
                    & 0o111
                    != 0;
            if executable {
                found.insert(rest[..end].to_string());
            }
        }
    }
    found
}

#[test]
fn the_audit_lists_every_program_the_tests_start() {
    let mut files = Vec::new();
    for dir in SOURCES {
        collect_files(&workspace_root().join(dir), &mut files);
    }
    let listed: BTreeSet<&str> = PROGRAMS.iter().copied().collect();
    let mut missing = Vec::new();
    // This file names programs too (dpkg, its own examples); it is the audit, not a test of
    // the product.
    let audited = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "rs"))
        .filter(|f| !f.ends_with(file!().rsplit('/').next().unwrap()));
    for file in audited {
        let text = std::fs::read_to_string(file).unwrap();
        for program in programs_in(&text) {
            // Our own binaries, arguments that are not programs, and this file's patterns.
            let plausible = !program.is_empty()
                && program
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._+/-".contains(c));
            let ours = program.contains("hometun") || program.starts_with('-');
            if plausible && !ours && !listed.contains(program.as_str()) {
                missing.push(format!("{program} (in {})", file.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "programs the tests start that PROGRAMS (and so scripts/install-deps.sh) leaves out:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_audit_reads_calls_of_every_shape() {
    let text = r#"Command::new("tshark"); ns.output(
        "ping", &[]); run("pki", &[]); can_run("a_test"); ns.command(Path::new("setpriv"));
        .args(["netns", "exec", lab.isp.name(), "tcpdump", "-i"]);
        const CHARON: &str = "/usr/lib/ipsec/charon";
        if can_run("a_test_name") {}"#;
    let mut expected: BTreeSet<String> = ["tshark", "ping", "pki", "setpriv", "tcpdump"]
        .map(String::from)
        .into();
    if Path::new("/usr/lib/ipsec/charon").exists() {
        expected.insert("/usr/lib/ipsec/charon".into());
    }
    assert_eq!(programs_in(text), expected);
}

/// On a machine without rustup, the script says in one line what to install instead of failing
/// on the first cargo command (Debian's own rustc is too old for the workspace). Runs only where
/// every named package is installed already, so that the script installs nothing (CI runs it
/// after install-deps.sh).
#[test]
fn without_a_rust_toolchain_the_script_says_so_in_one_line() {
    if !dpkg_available() {
        return;
    }
    let missing: Vec<String> = named_packages()
        .into_iter()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if !missing.is_empty() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "packages named by install-deps.sh are missing under CI: {missing:?}"
        );
        eprintln!("skipped: install-deps.sh would install {missing:?} first");
        return;
    }
    let home = std::env::temp_dir().join(format!("hometun-no-rust-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let output = Command::new(workspace_root().join("scripts/install-deps.sh"))
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", &home)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&home).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "install-deps: needs a Rust toolchain from rustup (cargo, rustup): install it from \
         https://rustup.rs, then run this again"
    );
}
