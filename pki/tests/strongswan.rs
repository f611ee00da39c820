//! strongSwan's own tooling reads hometun's certificates and CRL: `pki --print` shows the
//! RFC 3779 block as strongSwan's x509 plugin parsed it, `pki --verify` accepts the chain and
//! honours the CRL. (The tunnel-level checks come with the IKE daemon.)
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{have, now, run, server};
use hometun_pki::ca::KeyType;
use hometun_pki::client_dir::ClientDir;
use rustls_pki_types::UnixTime;

fn pki(args: &[&str]) -> (bool, String) {
    let out = Command::new("pki").args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn strongswan_pki_reads_and_verifies_hometun_certificates() {
    if !have("pki") {
        return;
    }
    for key in [KeyType::Ed25519, KeyType::P256] {
        let tmp = tempfile::tempdir().unwrap();
        let srv = server(&tmp.path().join("srv"), "2001:db8:100::/48", 56, key);
        let home = ClientDir::new(&tmp.path().join("home"));
        home.request("home.example", key).unwrap();
        let issued = srv
            .sign(&std::fs::read(home.csr()).unwrap(), 730, now())
            .unwrap();
        home.import(&issued.bundle, UnixTime::now()).unwrap();
        let cert = home.cert();
        let ca = srv.ca_cert();

        let printed = run("pki", &["--print", "--in", cert.to_str().unwrap()]);
        assert!(printed.contains("altNames:  home.example"), "{printed}");
        assert!(
            printed.contains("addresses: 2001:db8:100:100::/56"),
            "{printed}"
        );
        let printed = run("pki", &["--print", "--in", ca.to_str().unwrap()]);
        assert!(printed.contains("addresses: ::/0"), "{printed}");
        assert!(printed.contains("CA"), "{printed}");
        let printed = run(
            "pki",
            &["--print", "--in", srv.server_cert().to_str().unwrap()],
        );
        assert!(printed.contains("serverAuth"), "{printed}");
        assert!(printed.contains("vps.example"), "{printed}");

        let (ok, text) = pki(&[
            "--verify",
            "--in",
            cert.to_str().unwrap(),
            "--cacert",
            ca.to_str().unwrap(),
        ]);
        assert!(ok && text.contains("certificate trusted"), "{text}");

        srv.revoke("home.example", true, now()).unwrap();
        let crl = srv.config().unwrap().server.crl.unwrap();
        let printed = run(
            "pki",
            &["--print", "--type", "crl", "--in", crl.to_str().unwrap()],
        );
        let serial: String = issued
            .record
            .serial
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert!(printed.contains(&serial), "{serial} in {printed}");
        assert!(printed.contains("key compromise"), "{printed}");
        let (ok, text) = pki(&[
            "--verify",
            "--in",
            cert.to_str().unwrap(),
            "--cacert",
            ca.to_str().unwrap(),
            "--crl",
            crl.to_str().unwrap(),
        ]);
        assert!(!ok && text.contains("revoked"), "{text}");
    }
}
