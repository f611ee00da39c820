//! Online enrollment against the real listener on 127.0.0.1: works once, then refuses.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{csr_der, now, server};
use hometun_config::ClientConfig;
use hometun_pki::PkiError;
use hometun_pki::ca::KeyType;
use hometun_pki::client_dir::ClientDir;
use hometun_pki::enroll::client::enroll;
use hometun_pki::enroll::protocol::{Message, RefusalCode, Request};
use hometun_pki::enroll::server::EnrollmentServer;
use hometun_pki::server_dir::ServerDir;
use hometun_pki::token::Token;
use rustls_pki_types::UnixTime;
use tokio::net::TcpListener;

async fn start(dir: &std::path::Path) -> std::net::SocketAddr {
    let service = Arc::new(EnrollmentServer::new(dir).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(service.serve(listener));
    addr
}

/// A CA with the pool 2001:db8:100::/48 in /64s, in a temporary directory, and its enrollment
/// listener.
async fn listening(key: KeyType) -> (tempfile::TempDir, ServerDir, std::net::SocketAddr) {
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(&tmp.path().join("srv"), "2001:db8:100::/48", 64, key);
    let addr = start(srv.dir()).await;
    (tmp, srv, addr)
}

fn refusal(e: PkiError) -> RefusalCode {
    match e {
        PkiError::Refused { code, .. } => code,
        other => panic!("expected a refusal, got {other}"),
    }
}

#[tokio::test]
async fn token_enrolls_once_and_is_refused_the_second_time() {
    let (tmp, srv, addr) = listening(KeyType::Ed25519).await;
    let token_text = srv
        .make_token("home.example", 24 * 60, Some(addr), now())
        .unwrap()
        .encode();
    let token = Token::parse(&token_text).unwrap();

    let home = ClientDir::new(&tmp.path().join("home"));
    let (bundle, config) = enroll(&home, &token, addr, KeyType::Ed25519, UnixTime::now())
        .await
        .unwrap();
    assert_eq!(bundle.prefix.to_string(), "2001:db8:100:1::/64");
    assert_eq!(config.client.prefix, bundle.prefix);
    let loaded = ClientConfig::load(&home.client_toml()).unwrap();
    assert_eq!(loaded.client.name, "home.example");
    assert_eq!(loaded.client.prefix, bundle.prefix);
    // The key stayed here: the registry has the certificate, not the key.
    let registry = std::fs::read_to_string(srv.registry().unwrap().location()).unwrap();
    assert!(!registry.contains("PRIVATE KEY"));
    assert!(!registry.contains(&format!("{:?}", token.secret)));
    let data = srv.registry().unwrap().load().unwrap();
    assert_eq!(
        data.tokens[0].used_serial.as_deref(),
        Some(data.clients[0].serial.as_str())
    );

    // Second use, from a fresh home: refused, nothing issued.
    let again = ClientDir::new(&tmp.path().join("again"));
    let e = enroll(&again, &token, addr, KeyType::Ed25519, UnixTime::now())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("token was already used at"), "{e}");
    assert_eq!(refusal(e), RefusalCode::TOKEN_USED);
    assert!(!again.client_toml().exists());
    assert_eq!(srv.registry().unwrap().load().unwrap().clients.len(), 1);
}

#[tokio::test]
async fn wrong_and_expired_tokens_are_refused() {
    let (tmp, srv, addr) = listening(KeyType::P256).await;
    let token = srv
        .make_token("home.example", 60, Some(addr), now())
        .unwrap();

    // A wrong secret with the right CA pin.
    let mut wrong = token.clone();
    wrong.secret[0] ^= 1;
    let home = ClientDir::new(&tmp.path().join("home"));
    let e = enroll(&home, &wrong, addr, KeyType::Ed25519, UnixTime::now())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unknown token"), "{e}");
    assert_eq!(refusal(e), RefusalCode::UNKNOWN_TOKEN);

    // Expired: the server's signing step at a time past the token's expiry.
    let service = EnrollmentServer::new(srv.dir()).unwrap();
    let (csr, _) = home.request("home.example", KeyType::Ed25519).unwrap();
    let expired_csr = csr_der(&csr);
    let request = Request {
        secret: token.secret,
        csr_der: expired_csr.clone(),
    };
    let late = now() + time::Duration::hours(2);
    match service.answer(&request, addr, late) {
        Message::Refused(r) => {
            assert_eq!(r.code, RefusalCode::TOKEN_EXPIRED);
            assert!(r.message.contains("token expired at"), "{}", r.message);
        }
        other => panic!("{other:?}"),
    }
    // A CSR for another name than the token's is refused and does not use the token up.
    let (other_csr, _) = ClientDir::new(&tmp.path().join("o"))
        .request("other.example", KeyType::Ed25519)
        .unwrap();
    let mismatch = Request {
        secret: token.secret,
        csr_der: csr_der(&other_csr),
    };
    match service.answer(&mismatch, addr, now()) {
        Message::Refused(r) => assert_eq!(r.code, RefusalCode::NAME_MISMATCH),
        other => panic!("{other:?}"),
    }
    // The token is still good within its hour.
    enroll(&home, &token, addr, KeyType::Ed25519, UnixTime::now())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_server_of_another_ca_is_not_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(
        &tmp.path().join("srv"),
        "2001:db8:100::/48",
        64,
        KeyType::Ed25519,
    );
    let impostor = server(
        &tmp.path().join("imp"),
        "2001:db8:100::/48",
        64,
        KeyType::Ed25519,
    );
    let addr = start(impostor.dir()).await;
    // The token pins srv's CA; the listener presents impostor's chain.
    let token = srv
        .make_token("home.example", 24 * 60, Some(addr), now())
        .unwrap();
    let home = ClientDir::new(&tmp.path().join("home"));
    let e = enroll(&home, &token, addr, KeyType::Ed25519, UnixTime::now())
        .await
        .unwrap_err();
    assert!(matches!(e, PkiError::Enrollment { .. }), "{e}");
    assert!(e.to_string().contains("TLS handshake"), "{e}");
    assert!(
        e.to_string()
            .contains("this server is not the CA the token was made for"),
        "{e}"
    );
    assert!(!home.client_toml().exists());
    // No token was consumed on the real CA.
    assert!(
        srv.registry().unwrap().load().unwrap().tokens[0]
            .used
            .is_none()
    );
}

#[tokio::test]
async fn garbage_requests_get_a_typed_refusal() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(
        &tmp.path().join("srv"),
        "2001:db8:100::/48",
        64,
        KeyType::Ed25519,
    );
    let service = EnrollmentServer::new(srv.dir()).unwrap();
    let garbage_csr = vec![0x30, 0x03, 0x02, 0x01, 0x00];
    // The token is checked first: a wrong one is the refusal, whatever the CSR.
    let request = Request {
        secret: [0; 32],
        csr_der: garbage_csr.clone(),
    };
    match service.answer(&request, "127.0.0.1:1".parse().unwrap(), now()) {
        Message::Refused(r) => assert_eq!(r.code, RefusalCode::UNKNOWN_TOKEN),
        other => panic!("{other:?}"),
    }
    let token = srv
        .make_token("home.example", 24 * 60, None, now())
        .unwrap();
    let request = Request {
        secret: token.secret,
        csr_der: garbage_csr,
    };
    match service.answer(&request, "127.0.0.1:1".parse().unwrap(), now()) {
        Message::Refused(r) => assert_eq!(r.code, RefusalCode::BAD_CSR),
        other => panic!("{other:?}"),
    }
}

/// Enrolling again after a revocation brings a new key: the old one may be why the home was
/// revoked, and a certificate for it would give it back its rights. A refused attempt leaves
/// the home's directory as it was.
#[tokio::test]
async fn enrolling_again_after_a_revocation_brings_a_new_key() {
    let (tmp, srv, addr) = listening(KeyType::Ed25519).await;
    let home = ClientDir::new(&tmp.path().join("home"));
    let first = srv
        .make_token("home.example", 60, Some(addr), now())
        .unwrap();
    let (bundle, _) = enroll(&home, &first, addr, KeyType::Ed25519, UnixTime::now())
        .await
        .unwrap();
    let old_key = std::fs::read(home.key()).unwrap();
    let old_cert = std::fs::read(home.cert()).unwrap();
    srv.revoke("home.example", true, now()).unwrap();

    // A used token is refused: nothing in the directory changes.
    let e = enroll(&home, &first, addr, KeyType::Ed25519, UnixTime::now())
        .await
        .unwrap_err();
    assert_eq!(refusal(e), RefusalCode::TOKEN_USED);
    assert_eq!(std::fs::read(home.key()).unwrap(), old_key);
    assert_eq!(std::fs::read(home.cert()).unwrap(), old_cert);

    let second = srv
        .make_token("home.example", 60, Some(addr), now())
        .unwrap();
    // A client that sends the revoked key again (an old or modified one) is refused, by the
    // listener and by `pki sign`, and the token stays unused.
    let (old_csr, created) = home.request("home.example", KeyType::Ed25519).unwrap();
    assert!(!created, "the CSR is for the revoked key in client.key");
    let old_csr_der = csr_der(&old_csr);
    let service = EnrollmentServer::new(srv.dir()).unwrap();
    let request = Request {
        secret: second.secret,
        csr_der: old_csr_der,
    };
    match service.answer(&request, "198.51.100.7:40000".parse().unwrap(), now()) {
        Message::Refused(r) => {
            assert_eq!(r.code, RefusalCode::KEY_REVOKED, "{}", r.message);
            assert!(r.message.contains("make a new key"), "{}", r.message);
        }
        other => panic!("the revoked key got {other:?}"),
    }
    let e = srv.sign(old_csr.as_bytes(), 30, now()).unwrap_err();
    assert!(matches!(e, PkiError::KeyRevoked { .. }), "{e}");
    let (again, config) = enroll(&home, &second, addr, KeyType::Ed25519, UnixTime::now())
        .await
        .unwrap();
    assert_eq!(again.prefix, bundle.prefix, "the name keeps its prefix");
    let new_key = std::fs::read(home.key()).unwrap();
    assert_ne!(new_key, old_key, "the revoked key was kept");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(home.key()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // The certificate and client.toml belong to the new key (ClientConfig::load checks that the
    // files are there; the import compared the certificate's key with the one written).
    assert_ne!(std::fs::read(home.cert()).unwrap(), old_cert);
    assert_eq!(config.client.name, "home.example");
    let text = std::fs::read_to_string(home.client_toml()).unwrap();
    assert!(
        text.starts_with("# hometun client config, written by `hometun enroll`"),
        "{text}"
    );
}

/// A first enrollment that fails leaves no key behind.
#[tokio::test]
async fn a_failed_first_enrollment_leaves_nothing() {
    let (tmp, srv, addr) = listening(KeyType::Ed25519).await;
    let mut token = srv
        .make_token("home.example", 60, Some(addr), now())
        .unwrap();
    token.secret[0] ^= 1;
    let home = ClientDir::new(&tmp.path().join("home"));
    let e = enroll(&home, &token, addr, KeyType::Ed25519, UnixTime::now())
        .await
        .unwrap_err();
    assert_eq!(refusal(e), RefusalCode::UNKNOWN_TOKEN);
    assert!(!home.key().exists() && !home.client_toml().exists());
}
