//! `pki server-cert`: another server of the same CA gets its own key and certificate, with the
//! serverAuth EKU like the first server's, and no CA key; a home's name is refused.
#![allow(clippy::unwrap_used)]

mod common;

use common::{now, server};
use hometun_pki::ca::KeyType;
use hometun_pki::client_dir::ClientDir;
use x509_parser::prelude::{FromDer, X509Certificate};

fn server_auth_and_names(pem_path: &std::path::Path) -> (bool, Vec<String>) {
    let der = hometun_pki::files::load_certificate(pem_path).unwrap();
    let (_, cert) = X509Certificate::from_der(der.as_ref()).unwrap();
    let eku = cert
        .extended_key_usage()
        .unwrap()
        .unwrap()
        .value
        .server_auth;
    let names = hometun_certs::verify::describe(der.as_ref()).unwrap().names;
    (eku, names)
}

#[test]
fn a_second_server_gets_a_server_certificate_and_no_ca_key() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(
        &tmp.path().join("ca"),
        "2001:db8:100::/48",
        64,
        KeyType::Ed25519,
    );
    let out = tmp.path().join("vps2");
    let cert = srv
        .issue_server_cert(
            "VPS2.example",
            "198.51.100.2".parse().unwrap(),
            KeyType::Ed25519,
            &out,
            now(),
        )
        .unwrap();
    let (first_eku, _) = server_auth_and_names(&srv.server_cert());
    let (eku, names) = server_auth_and_names(&cert);
    assert!(first_eku && eku, "serverAuth like the first server's");
    assert_eq!(names, ["vps2.example"]);
    assert!(out.join("server.key").exists() && out.join("ca.pem").exists());
    assert!(!out.join("ca.key").exists());
    assert_eq!(
        std::fs::read(out.join("ca.pem")).unwrap(),
        std::fs::read(srv.ca_cert()).unwrap()
    );
    // Issuing again into the same directory does not overwrite its key.
    assert!(
        srv.issue_server_cert(
            "vps2.example",
            "198.51.100.2".parse().unwrap(),
            KeyType::Ed25519,
            &out,
            now()
        )
        .is_err()
    );

    // A home's name cannot become a server's.
    let home = ClientDir::new(&tmp.path().join("home"));
    home.request("home.example", KeyType::Ed25519).unwrap();
    srv.sign(&std::fs::read(home.csr()).unwrap(), 730, now())
        .unwrap();
    let e = srv
        .issue_server_cert(
            "home.example",
            "198.51.100.3".parse().unwrap(),
            KeyType::Ed25519,
            &tmp.path().join("x"),
            now(),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("home.example already holds"), "{e}");
}
