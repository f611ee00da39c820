//! init -> request -> sign -> import with real files, checked by independent tools (openssl)
//! and by the verifier the IKE daemon uses.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{have, now, run, server, signed_home};
use hometun_certs::addrblock;
use hometun_certs::verify::{PeerPublicKey, VerifyError};
use hometun_config::{ClientConfig, ServerConfig};
use hometun_pki::PkiError;
use hometun_pki::bundle::Bundle;
use hometun_pki::ca::KeyType;
use hometun_pki::client_dir::ClientDir;
use hometun_pki::server_dir::ServerDir;
use rustls_pki_types::UnixTime;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_request_sign_import_gives_a_loadable_client_toml() {
    for key in [KeyType::Ed25519, KeyType::P256] {
        let tmp = tempfile::tempdir().unwrap();
        let srv = server(&tmp.path().join("srv"), "2001:db8:100::/48", 64, key);
        // server.toml is ready to run: it loads, and names files that exist.
        let sc = ServerConfig::load(&srv.server_toml()).unwrap();
        assert_eq!(sc.server.pool.to_string(), "2001:db8:100::/48");
        assert_eq!(sc.tunnel.link_local.to_string(), "fe80::1/64");
        for p in [
            &sc.server.certificate,
            &sc.server.private_key,
            &sc.server.ca,
        ] {
            assert!(p.exists(), "{}", p.display());
        }
        assert!(sc.server.crl.as_ref().unwrap().exists());
        assert_eq!(mode(&srv.ca_key()), 0o600);
        assert_eq!(mode(&srv.server_key()), 0o600);
        hometun_config::check_private_key_mode(
            &sc.server.private_key,
            "server.private_key",
            &srv.server_toml(),
        )
        .unwrap();

        let home = ClientDir::new(&tmp.path().join("home"));
        home.request("home.example", key).unwrap();
        assert_eq!(mode(&home.key()), 0o600);
        let issued = srv
            .sign(&std::fs::read(home.csr()).unwrap(), 730, now())
            .unwrap();
        assert_eq!(issued.record.prefix.to_string(), "2001:db8:100:1::/64");

        // The bundle travels as a file.
        let bundle_path = tmp.path().join("home.bundle");
        std::fs::write(&bundle_path, issued.bundle.to_toml()).unwrap();
        let bundle = Bundle::parse(&std::fs::read(&bundle_path).unwrap()).unwrap();
        assert_eq!(bundle, issued.bundle);
        home.import(&bundle, UnixTime::now()).unwrap();

        let cc = ClientConfig::load(&home.client_toml()).unwrap();
        assert_eq!(cc.client.prefix.to_string(), "2001:db8:100:1::/64");
        assert_eq!(cc.client.name, "home.example");
        assert_eq!(cc.client.server_name.as_slice(), ["vps.example"]);
        assert_eq!(cc.client.server.to_string(), "192.0.2.1");
        assert_eq!(cc.tunnel.link_local.to_string(), "fe80::2/64");
        assert_eq!(cc.client.certificate, home.cert());
        hometun_config::check_private_key_mode(
            &cc.client.private_key,
            "client.private_key",
            &home.client_toml(),
        )
        .unwrap();

        // The CA's check of a home certificate (with the server's CRL and pool) accepts it and
        // reads its prefix and key.
        let store = hometun_pki::files::trust_store(&sc.server.ca, sc.server.crl.as_deref())
            .unwrap()
            .with_pool(sc.server.pool);
        let cert = hometun_pki::files::load_certificate(&home.cert()).unwrap();
        let peer = store.verify_client(&cert, &[], UnixTime::now()).unwrap();
        assert_eq!(peer.names, ["home.example"]);
        assert_eq!(peer.prefixes, [cc.client.prefix]);
        match (key, &peer.public_key) {
            (KeyType::Ed25519, PeerPublicKey::Ed25519(_)) => {}
            (KeyType::P256, PeerPublicKey::EcdsaP256(p)) => assert_eq!(p.len(), 65),
            other => panic!("{other:?}"),
        }
        // ... and the client accepts the server's certificate for its name and address.
        let server_cert = hometun_pki::files::load_certificate(&sc.server.certificate).unwrap();
        let client_store = hometun_pki::files::trust_store(&cc.client.ca, None).unwrap();
        let s = client_store
            .verify_server(&server_cert, &[], Some("vps.example"), UnixTime::now())
            .unwrap();
        assert_eq!(s.prefixes, ["::/0".parse().unwrap()]);
        client_store
            .verify_server(&server_cert, &[], Some("192.0.2.1"), UnixTime::now())
            .unwrap();
        assert!(matches!(
            client_store.verify_server(&server_cert, &[], Some("other.example"), UnixTime::now()),
            Err(VerifyError::WrongName(_))
        ));
        // A home certificate cannot pass as the server (EKU clientAuth only), nor the server
        // as a home.
        for name in [Some("home.example"), None] {
            assert!(matches!(
                client_store.verify_server(&cert, &[], name, UnixTime::now()),
                Err(VerifyError::Chain(_))
            ));
        }
        assert!(
            store
                .verify_client(&server_cert, &[], UnixTime::now())
                .is_err()
        );
        // Another server's pool does not accept this home's prefix.
        let narrow = hometun_pki::files::trust_store(&sc.server.ca, None)
            .unwrap()
            .with_pool("2001:db8:200::/48".parse().unwrap());
        assert!(matches!(
            narrow.verify_client(&cert, &[], UnixTime::now()),
            Err(VerifyError::OutsidePool { .. })
        ));
    }
}

#[test]
fn init_refuses_to_overwrite_a_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(tmp.path(), "2001:db8:100::/48", 64, KeyType::Ed25519);
    let before = std::fs::read(srv.ca_key()).unwrap();
    let e = srv
        .init(
            &common::init_options("2001:db8:100::/48", 64, KeyType::Ed25519),
            now(),
        )
        .unwrap_err();
    assert!(matches!(e, PkiError::CaExists(_)));
    assert_eq!(
        e.to_string(),
        format!(
            "{}: a CA already exists here; refusing to overwrite it",
            tmp.path().display()
        )
    );
    assert!(!e.to_string().contains('\n'));
    assert_eq!(std::fs::read(srv.ca_key()).unwrap(), before);
}

#[test]
fn openssl_reads_the_address_block_and_verifies_the_chain() {
    if !have("openssl") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (srv, home, issued) = signed_home(tmp.path(), 60);
    home.import(&issued.bundle, UnixTime::now()).unwrap();
    let cert = home.cert();
    let text = run(
        "openssl",
        &["x509", "-text", "-noout", "-in", cert.to_str().unwrap()],
    );
    assert!(text.contains("sbgp-ipAddrBlock"), "{text}");
    assert!(text.contains("IPv6:"), "{text}");
    // A /60: 2001:db8:100:10::/60 (the pool's first /60 stays with the server).
    assert!(text.contains("2001:db8:100:10::/60"), "{text}");
    // Non-critical (webpki rejects unknown critical extensions).
    assert!(!text.contains("sbgp-ipAddrBlock: critical"), "{text}");
    assert!(text.contains("DNS:home.example"), "{text}");
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(text.contains("Digital Signature"), "{text}");
    assert!(text.contains("ED25519"), "{text}");
    // openssl checks RFC 3779 nesting (client block inside the CA's ::/0) while verifying.
    let ca = srv.ca_cert();
    let out = run(
        "openssl",
        &[
            "verify",
            "-CAfile",
            ca.to_str().unwrap(),
            cert.to_str().unwrap(),
        ],
    );
    assert!(out.contains(": OK"), "{out}");
    let server_cert = srv.server_cert();
    let out = run(
        "openssl",
        &[
            "verify",
            "-CAfile",
            ca.to_str().unwrap(),
            "-purpose",
            "sslserver",
            server_cert.to_str().unwrap(),
        ],
    );
    assert!(out.contains(": OK"), "{out}");
    let text = run(
        "openssl",
        &[
            "x509",
            "-text",
            "-noout",
            "-in",
            server_cert.to_str().unwrap(),
        ],
    );
    assert!(
        text.contains("DNS:vps.example, IP Address:192.0.2.1"),
        "{text}"
    );
    let text = run(
        "openssl",
        &["x509", "-text", "-noout", "-in", ca.to_str().unwrap()],
    );
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
    assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
}

#[test]
fn revocation_publishes_a_crl_that_openssl_and_the_verifier_honour() {
    let tmp = tempfile::tempdir().unwrap();
    let (srv, home, issued) = signed_home(tmp.path(), 64);
    home.import(&issued.bundle, UnixTime::now()).unwrap();
    let sc = srv.config().unwrap();
    let crl = sc.server.crl.clone().unwrap();
    let cert = hometun_pki::files::load_certificate(&home.cert()).unwrap();

    let store = hometun_pki::files::trust_store(&sc.server.ca, Some(&crl)).unwrap();
    store.verify_client(&cert, &[], UnixTime::now()).unwrap();

    let revoked = srv.revoke("home.example", false, now()).unwrap();
    assert_eq!(revoked.serial, issued.record.serial);
    let store = hometun_pki::files::trust_store(&sc.server.ca, Some(&crl)).unwrap();
    assert_eq!(
        store.verify_client(&cert, &[], UnixTime::now()),
        Err(VerifyError::Revoked)
    );
    // A second revoke finds nothing to revoke.
    assert!(matches!(
        srv.revoke("home.example", false, now()),
        Err(PkiError::UnknownClient(_))
    ));

    if have("openssl") {
        let text = run(
            "openssl",
            &["crl", "-text", "-noout", "-in", crl.to_str().unwrap()],
        );
        let serial = issued.record.serial.to_uppercase();
        assert!(
            text.contains(&format!("Serial Number: {serial}")),
            "{serial} in\n{text}"
        );
        assert!(text.contains("Cessation Of Operation"), "{text}");
        let out = std::process::Command::new("openssl")
            .args([
                "verify",
                "-crl_check",
                "-CAfile",
                sc.server.ca.to_str().unwrap(),
                "-CRLfile",
                crl.to_str().unwrap(),
                home.cert().to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success() && all.contains("certificate revoked"),
            "{all}"
        );
    }

    // The prefix is held through the grace period: a new home gets the next one...
    let other = ClientDir::new(&tmp.path().join("other"));
    other.request("other.example", KeyType::Ed25519).unwrap();
    let next = srv
        .sign(&std::fs::read(other.csr()).unwrap(), 730, now())
        .unwrap();
    assert_eq!(next.record.prefix.to_string(), "2001:db8:100:2::/64");
    // ... and after it, the freed prefix is handed out again.
    let later = now() + time::Duration::days(31);
    let third = ClientDir::new(&tmp.path().join("third"));
    third.request("third.example", KeyType::Ed25519).unwrap();
    let again = srv
        .sign(&std::fs::read(third.csr()).unwrap(), 730, later)
        .unwrap();
    assert_eq!(again.record.prefix, issued.record.prefix);

    let list = srv.list(now(), true).unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0].status, "revoked");
    assert!(list[0].prefix_free_at.is_some());
    assert_eq!(list[1].status, "active");
    let list = srv.list(later, true).unwrap();
    assert_eq!(list[0].status, "revoked, prefix free");
}

#[test]
fn signing_refuses_a_taken_name_and_an_exhausted_pool() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(
        &tmp.path().join("srv"),
        "2001:db8:100::/63",
        64,
        KeyType::Ed25519,
    );
    let home = ClientDir::new(&tmp.path().join("home"));
    home.request("home.example", KeyType::Ed25519).unwrap();
    let csr = std::fs::read(home.csr()).unwrap();
    let first = srv.sign(&csr, 730, now()).unwrap();
    let e = srv.sign(&csr, 730, now()).unwrap_err();
    assert!(matches!(e, PkiError::NameTaken { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("client home.example already holds 2001:db8:100:1::/64"),
        "{e}"
    );
    // /63 of /64s: one for the server, one for the home, none left.
    let other = ClientDir::new(&tmp.path().join("other"));
    other.request("other.example", KeyType::Ed25519).unwrap();
    let e = srv
        .sign(&std::fs::read(other.csr()).unwrap(), 730, now())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "pool 2001:db8:100::/63 is exhausted: all 1 /64 prefixes are allocated or in their revocation grace period"
    );
    // export writes the same bundle again.
    assert_eq!(srv.export("home.example").unwrap(), first.bundle);
    // After expiry the same name renews onto the same prefix.
    let expired = now() + time::Duration::days(731);
    let renewed = srv.sign(&csr, 730, expired).unwrap();
    assert_eq!(renewed.record.prefix, first.record.prefix);
    assert_ne!(renewed.record.serial, first.record.serial);
}

#[test]
fn import_checks_the_key_and_the_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, home, issued) = signed_home(tmp.path(), 64);
    // Another home's directory has another key.
    let stranger = ClientDir::new(&tmp.path().join("stranger"));
    stranger.request("home.example", KeyType::Ed25519).unwrap();
    let e = stranger
        .import(&issued.bundle, UnixTime::now())
        .unwrap_err();
    assert!(matches!(e, PkiError::KeyMismatch { .. }), "{e}");
    assert!(!stranger.client_toml().exists());
    // A bundle whose prefix was edited no longer matches its certificate.
    let edited = issued
        .bundle
        .to_toml()
        .replace("2001:db8:100:1::/64", "2001:db8:100:7::/64");
    let e = Bundle::parse(edited.as_bytes()).unwrap_err();
    assert!(
        e.to_string()
            .contains("prefix 2001:db8:100:7::/64 but the certificate grants"),
        "{e}"
    );
    // A bundle whose CA is another one does not verify.
    let other = server(
        &tmp.path().join("other-ca"),
        "2001:db8:100::/48",
        64,
        KeyType::Ed25519,
    );
    let mut forged = issued.bundle.clone();
    forged.ca_certificate = std::fs::read_to_string(other.ca_cert()).unwrap();
    assert!(forged.verify(UnixTime::now()).is_err());
    // The certificate's own extension is what the bundle says.
    let cert = issued.bundle.certificate_der().unwrap();
    assert_eq!(
        addrblock::prefixes_from_certificate(&cert).unwrap(),
        [issued.record.prefix]
    );
    // Re-import keeps the existing client.toml's own settings.
    home.import(&issued.bundle, UnixTime::now()).unwrap();
    let text = std::fs::read_to_string(home.client_toml()).unwrap();
    std::fs::write(home.client_toml(), text.replace("mtu = 1400", "mtu = 1300")).unwrap();
    let cc = home.import(&issued.bundle, UnixTime::now()).unwrap();
    assert_eq!(cc.tunnel.mtu, 1300);
}

#[test]
fn a_new_bundle_keeps_every_setting_of_client_toml_and_its_failover_servers() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, home, issued) = signed_home(tmp.path(), 64);
    let first = home.import(&issued.bundle, UnixTime::now()).unwrap();
    let ours = (issued.bundle.server, issued.bundle.server_name.clone());
    assert_eq!(first.client.server.as_slice(), [ours.0]);

    // The operator adds a second server to fail over to and settings of their own.
    let text = std::fs::read_to_string(home.client_toml()).unwrap();
    let edited = text
        .replace(
            &format!("server = \"{}\"", ours.0),
            &format!("server = [\"{}\", \"198.51.100.7\"]", ours.0),
        )
        .replace(
            &format!("server_name = \"{}\"", ours.1),
            &format!("server_name = [\"{}\", \"vps2.example\"]", ours.1),
        )
        .replace(
            "[client]\n",
            "[client]\nmetrics = \"127.0.0.1:9109\"\nforwarder_socket = \"/run/hometun/forwarder.sock\"\nforce_udp_encapsulation = true\n",
        );
    assert_ne!(edited, text);
    std::fs::write(home.client_toml(), &edited).unwrap();
    let kept = |config: &ClientConfig| {
        assert_eq!(
            config.client.metrics,
            Some("127.0.0.1:9109".parse().unwrap())
        );
        assert_eq!(
            config.client.forwarder_socket.as_deref(),
            Some(std::path::Path::new("/run/hometun/forwarder.sock"))
        );
        assert!(config.client.force_udp_encapsulation);
    };
    kept(&ClientConfig::load(&home.client_toml()).unwrap());

    // A bundle for a server the list names: the list and its order stay, and so does the rest.
    let again = home.import(&issued.bundle, UnixTime::now()).unwrap();
    let servers: Vec<(String, String)> = again
        .servers()
        .into_iter()
        .map(|t| (t.address.to_string(), t.name))
        .collect();
    assert_eq!(
        servers,
        [
            (ours.0.to_string(), ours.1.clone()),
            ("198.51.100.7".into(), "vps2.example".into())
        ]
    );
    kept(&again);
    kept(&ClientConfig::load(&home.client_toml()).unwrap());

    // A bundle that names a server the list lacks: that server first, then the others.
    let mut moved = issued.bundle.clone();
    moved.server = "203.0.113.9".parse().unwrap();
    moved.server_name = "vps3.example".into();
    let moved_config = home.import(&moved, UnixTime::now()).unwrap();
    let servers: Vec<(String, String)> = moved_config
        .servers()
        .into_iter()
        .map(|t| (t.address.to_string(), t.name))
        .collect();
    assert_eq!(
        servers,
        [
            ("203.0.113.9".into(), "vps3.example".into()),
            (ours.0.to_string(), ours.1.clone()),
            ("198.51.100.7".into(), "vps2.example".into())
        ]
    );
    kept(&ClientConfig::load(&home.client_toml()).unwrap());
}

#[test]
fn registry_survives_a_restart_in_another_handle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("srv");
    server(&dir, "2001:db8:100::/48", 64, KeyType::Ed25519);
    let mut prefixes = Vec::new();
    for i in 0..3 {
        // A fresh ServerDir each time, as separate `hometun pki sign` runs would be.
        let srv = ServerDir::new(&dir);
        let home = ClientDir::new(&tmp.path().join(format!("h{i}")));
        home.request(&format!("h{i}.example"), KeyType::Ed25519)
            .unwrap();
        prefixes.push(
            srv.sign(&std::fs::read(home.csr()).unwrap(), 730, now())
                .unwrap()
                .record
                .prefix
                .to_string(),
        );
    }
    assert_eq!(
        prefixes,
        [
            "2001:db8:100:1::/64",
            "2001:db8:100:2::/64",
            "2001:db8:100:3::/64"
        ]
    );
}

#[test]
fn a_revoked_name_enrolled_again_keeps_its_prefix_and_lists_once() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(
        &tmp.path().join("srv"),
        "2001:db8:100::/48",
        64,
        KeyType::Ed25519,
    );
    let sign = |dir: &str, name: &str, at| {
        let home = ClientDir::new(&tmp.path().join(dir));
        home.request(name, KeyType::Ed25519).unwrap();
        srv.sign(&std::fs::read(home.csr()).unwrap(), 730, at)
            .unwrap()
    };
    let first = sign("a", "home.example", now());
    let _other = sign("b", "other.example", now());
    srv.revoke("home.example", false, now()).unwrap();
    // Re-enrolled within the grace period (a new key): the same prefix, not the next free one.
    let again = sign("a2", "home.example", now());
    assert_eq!(again.record.prefix, first.record.prefix);
    assert_ne!(again.record.serial, first.record.serial);
    // `pki list` shows each name once (its latest certificate); --all shows the history.
    let list = srv.list(now(), false).unwrap();
    let names: Vec<(&str, &str)> = list
        .iter()
        .map(|e| (e.name.as_str(), e.status.as_str()))
        .collect();
    assert_eq!(
        names,
        [("other.example", "active"), ("home.example", "active")]
    );
    assert_eq!(srv.list(now(), true).unwrap().len(), 3);
    // After the grace period the prefix may have gone to another home: then a new one.
    let later = now() + time::Duration::days(31);
    srv.revoke("home.example", false, now()).unwrap();
    let third = sign("c", "third.example", later);
    assert_eq!(third.record.prefix, first.record.prefix);
    let back = sign("a3", "home.example", later);
    assert_ne!(back.record.prefix, first.record.prefix);
}

#[test]
fn pending_tokens_are_listed_and_can_be_revoked_and_a_full_pool_gets_none() {
    let tmp = tempfile::tempdir().unwrap();
    // /63 of /64s: one for the server, one for a home.
    let srv = server(
        &tmp.path().join("srv"),
        "2001:db8:100::/63",
        64,
        KeyType::Ed25519,
    );
    let addr = Some("192.0.2.1:8443".parse().unwrap());
    srv.make_token("home.example", 30, addr, now()).unwrap();
    let pending = srv.pending_tokens(now()).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].name, "home.example");
    // Minutes: gone 31 minutes later.
    assert!(
        srv.pending_tokens(now() + time::Duration::minutes(31))
            .unwrap()
            .is_empty()
    );
    assert_eq!(srv.revoke_tokens("home.example", now()).unwrap(), 1);
    assert!(srv.pending_tokens(now()).unwrap().is_empty());
    let e = srv.revoke_tokens("home.example", now()).unwrap_err();
    assert!(e.to_string().contains("has no pending token"), "{e}");
    // The pool's one prefix goes to a home: a token for another is refused now, not at
    // enrollment.
    let home = ClientDir::new(&tmp.path().join("home"));
    home.request("home.example", KeyType::Ed25519).unwrap();
    srv.sign(&std::fs::read(home.csr()).unwrap(), 730, now())
        .unwrap();
    let e = srv
        .make_token("other.example", 60, addr, now())
        .unwrap_err();
    assert!(e.to_string().contains("is exhausted"), "{e}");
}

#[test]
fn a_ca_key_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(
        &tmp.path().join("srv"),
        "2001:db8:100::/48",
        64,
        KeyType::Ed25519,
    );
    std::fs::set_permissions(srv.ca_key(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let addr = Some("192.0.2.1:8443".parse().unwrap());
    let e = srv.make_token("home.example", 60, addr, now()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: readable by others (mode 0644); run chmod 600 on it",
            srv.ca_key().display()
        )
    );
}
