//! The `hometun pki` commands treat names that differ only in case as one name (IKE matches
//! identities without case), and keep the server's name for the server: a token or a
//! certificate for `Home.Example` after `home.example` is enrolled, or for the server's own
//! name, is refused with one line. No root needed: files only.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::Path;
use std::process::Output;

use hometun_lab::hometun_bin;
use hometun_lab::pki_lab::{arg, printed};

/// `hometun ARGS...`, whether it succeeds or not.
fn hometun(args: &[&str]) -> Output {
    std::process::Command::new(hometun_bin().unwrap())
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = hometun(args);
    assert!(out.status.success(), "hometun {args:?}: {}", printed(&out));
    printed(&out)
}

/// The one line a refused command prints (exit status 1).
fn refused(args: &[&str]) -> String {
    let out = hometun(args);
    assert!(
        !out.status.success(),
        "hometun {args:?} succeeded: {}",
        printed(&out)
    );
    let text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(text.lines().count(), 1, "{text}");
    text
}

fn enrolled_ca(dir: &Path) -> (String, String) {
    let ca = dir.join("ca");
    let home = dir.join("home");
    ok(&[
        "pki",
        "init",
        "--dir",
        arg(&ca).unwrap(),
        "--server-ipv4",
        "192.0.2.1",
        "--pool",
        "2001:db8:100::/48",
        "--server-name",
        "vps.example",
    ]);
    ok(&[
        "pki",
        "request",
        "--dir",
        arg(&home).unwrap(),
        "--name",
        "home.example",
    ]);
    ok(&[
        "pki",
        "sign",
        "--dir",
        arg(&ca).unwrap(),
        "--csr",
        arg(&home.join("client.csr")).unwrap(),
        "--out",
        arg(&dir.join("home.bundle")).unwrap(),
    ]);
    (
        arg(&ca).unwrap().to_string(),
        arg(&home).unwrap().to_string(),
    )
}

#[test]
fn pki_token_refuses_a_case_variant_of_an_enrolled_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, _) = enrolled_ca(tmp.path());
    let line = refused(&["pki", "token", "--dir", &ca, "--name", "Home.Example"]);
    assert!(
        line.contains("client home.example already holds 2001:db8:100:1::/64"),
        "{line}"
    );
    // A CSR made for the variant is the same name too.
    let other = tmp.path().join("other");
    ok(&[
        "pki",
        "request",
        "--dir",
        arg(&other).unwrap(),
        "--name",
        "HOME.example",
    ]);
    let line = refused(&[
        "pki",
        "sign",
        "--dir",
        &ca,
        "--csr",
        arg(&other.join("client.csr")).unwrap(),
        "--out",
        arg(&tmp.path().join("other.bundle")).unwrap(),
    ]);
    assert!(line.contains("client home.example already holds"), "{line}");
    // One home in the registry, revoked under another spelling of its name.
    ok(&["pki", "revoke", "--dir", &ca, "--name", "HOME.EXAMPLE"]);
    let list = ok(&["pki", "list", "--dir", &ca, "--json"]);
    let entries: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(entries[0]["name"], "home.example");
    assert_eq!(entries[0]["status"], "revoked");
}

#[test]
fn pki_token_and_sign_refuse_the_servers_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, _) = enrolled_ca(tmp.path());
    for name in ["vps.example", "VPS.Example"] {
        let line = refused(&["pki", "token", "--dir", &ca, "--name", name]);
        assert!(
            line.ends_with("vps.example is the server's name; no home can have it"),
            "{line}"
        );
    }
    let impostor = tmp.path().join("impostor");
    ok(&[
        "pki",
        "request",
        "--dir",
        arg(&impostor).unwrap(),
        "--name",
        "vps.example",
    ]);
    let line = refused(&[
        "pki",
        "sign",
        "--dir",
        &ca,
        "--csr",
        arg(&impostor.join("client.csr")).unwrap(),
        "--out",
        arg(&tmp.path().join("impostor.bundle")).unwrap(),
    ]);
    assert!(
        line.ends_with("vps.example is the server's name; no home can have it"),
        "{line}"
    );
}
