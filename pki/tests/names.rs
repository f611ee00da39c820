//! Names that differ only in case are one name: IKE matches identities without case, so the
//! registry must too. Every entry point (CSR, token, revoke, export, bundle, an old registry
//! with mixed-case entries) puts the name in lower case, and a case variant of an enrolled home
//! is refused as the same name.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use common::{now, server};
use hometun_pki::PkiError;
use hometun_pki::ca::KeyType;
use hometun_pki::client_dir::ClientDir;
use hometun_pki::csr::check_csr;
use hometun_pki::registry::{ClientRecord, Registry, RegistryData};
use hometun_pki::server_dir::ServerDir;

/// A CSR whose dNSName keeps the case given (`pki request` would lower it).
fn csr_as_spelled(name: &str) -> Vec<u8> {
    let key = KeyType::Ed25519.generate().unwrap();
    let params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    params.serialize_request(&key).unwrap().der().to_vec()
}

#[test]
fn a_case_variant_of_an_enrolled_home_is_the_same_name() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(
        &tmp.path().join("srv"),
        "2001:db8:100::/48",
        64,
        KeyType::Ed25519,
    );
    let home = ClientDir::new(&tmp.path().join("home"));
    home.request("home.example", KeyType::Ed25519).unwrap();
    srv.sign(&std::fs::read(home.csr()).unwrap(), 730, now())
        .unwrap();

    // A token for the variant: refused as the enrolled name.
    let e = srv
        .make_token("Home.Example", 24 * 60, None, now())
        .unwrap_err();
    assert!(
        matches!(&e, PkiError::NameTaken { name, .. } if name == "home.example"),
        "{e}"
    );
    // A CSR for the variant: its name is read in lower case, and refused the same way.
    assert_eq!(
        check_csr(&csr_as_spelled("HOME.example")).unwrap().name,
        "home.example"
    );
    let e = srv
        .sign(&csr_as_spelled("HOME.example"), 730, now())
        .unwrap_err();
    assert!(matches!(e, PkiError::NameTaken { .. }), "{e}");
    // Nothing new was recorded: one home, one prefix.
    let data = srv.registry().unwrap().load().unwrap();
    assert_eq!(data.clients.len(), 1);
    assert!(data.tokens.is_empty());

    // Export and revoke find it under any spelling.
    assert_eq!(srv.export("HOME.EXAMPLE").unwrap().name, "home.example");
    let revoked = srv.revoke("Home.example", false, now()).unwrap();
    assert_eq!(revoked.name, "home.example");
}

#[test]
fn requests_and_tokens_carry_the_name_in_lower_case() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(
        &tmp.path().join("srv"),
        "2001:db8:100::/48",
        64,
        KeyType::Ed25519,
    );
    let home = ClientDir::new(&tmp.path().join("home"));
    let (csr, _) = home.request("Mixed.Example", KeyType::Ed25519).unwrap();
    assert_eq!(check_csr(csr.as_bytes()).unwrap().name, "mixed.example");
    let token = srv
        .make_token("Other.EXAMPLE", 24 * 60, None, now())
        .unwrap();
    assert_eq!(token.name, "other.example");
    assert_eq!(
        srv.registry().unwrap().load().unwrap().tokens[0].name,
        "other.example"
    );
    let issued = srv.sign(csr.as_bytes(), 730, now()).unwrap();
    assert_eq!(issued.record.name, "mixed.example");
    assert_eq!(issued.bundle.name, "mixed.example");
}

fn record(name: &str, serial: &str) -> ClientRecord {
    ClientRecord {
        name: name.into(),
        prefix: "2001:db8:100:1::/64".parse().unwrap(),
        serial: serial.into(),
        issued: 0,
        not_after: i64::MAX,
        certificate: String::new(),
        revoked: None,
        superseded: None,
    }
}

/// A server's registry file and what it holds, to write an older or hand-made registry over.
fn registry_file(tmp: &tempfile::TempDir) -> (ServerDir, PathBuf, RegistryData) {
    let srv = server(
        &tmp.path().join("srv"),
        "2001:db8:100::/48",
        64,
        KeyType::Ed25519,
    );
    let path = srv.registry().unwrap().location().to_path_buf();
    let data = srv.registry().unwrap().load().unwrap();
    (srv, path, data)
}

#[test]
fn an_old_registry_loads_normalised_and_a_collision_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (srv, path, mut data) = registry_file(&tmp);

    // One mixed-case home, as an older version wrote it: loads in lower case.
    data.clients.push(record("Home.Example", "01"));
    std::fs::write(&path, serde_json::to_vec(&data).unwrap()).unwrap();
    let loaded = Registry::at(&path).load().unwrap();
    assert_eq!(loaded.clients[0].name, "home.example");
    assert!(loaded.active("home.example").is_some());

    // Two live certificates whose names differ only in case: refused, in one line.
    data.clients.push(record("home.example", "02"));
    std::fs::write(&path, serde_json::to_vec(&data).unwrap()).unwrap();
    let e = Registry::at(&path).load().unwrap_err().to_string();
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("\"Home.Example\" (serial 01) and \"home.example\" (serial 02) are one name in different case"),
        "{e}"
    );
    // Every operation refuses it rather than pick one.
    assert!(srv.make_token("new.example", 24 * 60, None, now()).is_err());

    // Once one of them is revoked, the other is the name's certificate.
    data.clients[0].revoked = Some(hometun_pki::registry::Revocation {
        at: 1,
        key_compromise: false,
    });
    std::fs::write(&path, serde_json::to_vec(&data).unwrap()).unwrap();
    let loaded = Registry::at(&path).load().unwrap();
    assert_eq!(loaded.active("home.example").unwrap().serial, "02");
}

#[test]
fn a_collision_among_many_homes_names_the_first_live_pair() {
    let tmp = tempfile::tempdir().unwrap();
    let (_srv, path, mut data) = registry_file(&tmp);
    for i in 0..300 {
        data.clients
            .push(record(&format!("home{i}.example"), &format!("{i:04x}")));
    }
    // A revoked spelling first: passed over; then two live ones far apart.
    data.clients.push(record("Far.Example", "a0"));
    data.clients.last_mut().unwrap().revoked = Some(hometun_pki::registry::Revocation {
        at: 1,
        key_compromise: false,
    });
    data.clients.push(record("FAR.example", "a1"));
    for i in 300..600 {
        data.clients
            .push(record(&format!("home{i}.example"), &format!("{i:04x}")));
    }
    data.clients.push(record("far.example", "a2"));
    std::fs::write(&path, serde_json::to_vec(&data).unwrap()).unwrap();
    let e = Registry::at(&path).load().unwrap_err().to_string();
    assert!(
        e.contains("\"FAR.example\" (serial a1) and \"far.example\" (serial a2) are one name in different case"),
        "{e}"
    );
    // The same name twice in the same spelling is no clash of spellings.
    data.clients.pop();
    data.clients.push(record("FAR.example", "a3"));
    std::fs::write(&path, serde_json::to_vec(&data).unwrap()).unwrap();
    let loaded = Registry::at(&path).load().unwrap();
    assert_eq!(loaded.clients.len(), data.clients.len());
    assert!(
        loaded
            .clients
            .iter()
            .all(|c| c.name == c.name.to_ascii_lowercase())
    );
}

#[test]
fn the_servers_name_is_reserved() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(
        &tmp.path().join("srv"),
        "2001:db8:100::/48",
        64,
        KeyType::Ed25519,
    );
    let config = srv.config().unwrap();
    assert_eq!(srv.reserved_names(&config).unwrap(), ["vps.example"]);
    for name in ["vps.example", "VPS.Example"] {
        let e = srv.make_token(name, 24 * 60, None, now()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "vps.example is the server's name; no home can have it"
        );
        let e = srv.sign(&csr_as_spelled(name), 730, now()).unwrap_err();
        assert!(matches!(e, PkiError::ReservedName { .. }), "{e}");
    }
    let data = srv.registry().unwrap().load().unwrap();
    assert!(data.clients.is_empty() && data.tokens.is_empty());
}
