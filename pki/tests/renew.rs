//! Certificate renewal against the real enrollment listener on loopback: a home renews with
//! its current certificate and keeps its name and prefix; a revoked, expired or foreign
//! certificate, or a request for another name, is refused and changes nothing; a lost answer
//! can be fetched again; revoking a home revokes the certificate its renewal replaced too.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use common::{now, server};
use hometun_config::ClientConfig;
use hometun_pki::PkiError;
use hometun_pki::ca::KeyType;
use hometun_pki::client_dir::ClientDir;
use hometun_pki::enroll::client::enroll;
use hometun_pki::enroll::protocol::RefusalCode;
use hometun_pki::enroll::server::EnrollmentServer;
use hometun_pki::renew::{RenewOptions, RenewOutcome, Renewed, next_key_path, renew, renewal_due};
use hometun_pki::renewal::RenewalRefusal;
use hometun_pki::server_dir::ServerDir;
use rustls_pki_types::UnixTime;
use tokio::net::TcpListener;

const FORCE: RenewOptions = RenewOptions {
    force: true,
    new_key: None,
};

struct Lab {
    tmp: tempfile::TempDir,
    srv: ServerDir,
    addr: SocketAddr,
}

impl Lab {
    async fn new() -> Lab {
        let tmp = tempfile::tempdir().unwrap();
        let srv = server(
            &tmp.path().join("srv"),
            "2001:db8:100::/48",
            64,
            KeyType::Ed25519,
        );
        let service = Arc::new(EnrollmentServer::new(srv.dir()).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(service.serve(listener));
        Lab { tmp, srv, addr }
    }

    /// A home enrolled online: its client.toml names this listener for renewals.
    async fn enrolled(&self, name: &str) -> ClientDir {
        let token = self
            .srv
            .make_token(name, 24 * 60, Some(self.addr), now())
            .unwrap();
        let home = ClientDir::new(&self.tmp.path().join(name));
        enroll(&home, &token, self.addr, KeyType::Ed25519, UnixTime::now())
            .await
            .unwrap();
        home
    }
}

fn files_of(home: &ClientDir) -> (Vec<u8>, Vec<u8>) {
    (
        std::fs::read(home.cert()).unwrap(),
        std::fs::read(home.key()).unwrap(),
    )
}

fn refusal(e: PkiError) -> (RefusalCode, String) {
    match e {
        PkiError::Refused { code, message } => (code, message),
        other => panic!("expected a refusal, got {other}"),
    }
}

async fn renewed(config: &Path) -> Renewed {
    match renew(config, &FORCE, UnixTime::now()).await.unwrap() {
        RenewOutcome::Renewed(r) => r,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn renewal_keeps_the_name_and_the_prefix_and_replaces_the_key() {
    let lab = Lab::new().await;
    let home = lab.enrolled("home.example").await;
    let config = ClientConfig::load(&home.client_toml()).unwrap();
    assert_eq!(config.renew.server, Some(lab.addr));
    let (old_cert, old_key) = files_of(&home);

    // A fresh certificate is not due: two thirds of 730 days from now.
    let (due, not_after) = renewal_due(&config).unwrap();
    assert!(due > now().unix_timestamp() + 480 * 86_400, "{due}");
    let outcome = renew(
        &home.client_toml(),
        &RenewOptions::default(),
        UnixTime::now(),
    )
    .await
    .unwrap();
    assert_eq!(outcome, RenewOutcome::NotDue { due, not_after });
    assert_eq!(files_of(&home), (old_cert.clone(), old_key.clone()));

    let r = renewed(&home.client_toml()).await;
    assert_eq!(
        (r.name.as_str(), r.prefix),
        ("home.example", config.client.prefix)
    );
    assert!(r.new_key);
    let (new_cert, new_key) = files_of(&home);
    assert_ne!(new_cert, old_cert);
    assert_ne!(new_key, old_key);
    assert!(!next_key_path(&home.key()).exists());
    let mode = std::fs::metadata(home.key()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The new pair loads as the daemon loads it, and chains to the CA with the same prefix.
    let reloaded = ClientConfig::load(&home.client_toml()).unwrap();
    assert_eq!(reloaded.client.prefix, config.client.prefix);
    let store = hometun_pki::files::trust_store(&lab.srv.ca_cert(), None).unwrap();
    let der = hometun_pki::files::load_certificate(&home.cert()).unwrap();
    let peer = store.verify_client(&der, &[], UnixTime::now()).unwrap();
    assert_eq!(peer.prefixes, [config.client.prefix]);

    // The registry: the old certificate superseded (valid until it expires), the new one current.
    let list = lab.srv.list(now(), true).unwrap();
    let states: Vec<(&str, &str)> = list
        .iter()
        .map(|e| (e.serial.as_str(), e.status.as_str()))
        .collect();
    assert_eq!(states.len(), 2);
    assert_eq!(states[0].1, "superseded");
    assert_eq!(states[1], (r.serial.as_str(), "active"));
    assert!(list.iter().all(|e| e.prefix == config.client.prefix));

    // A renewal that stopped after writing the certificate, before moving the new key in, is
    // finished by the next run (which then finds nothing due).
    std::fs::rename(home.key(), next_key_path(&home.key())).unwrap();
    std::fs::write(home.key(), &old_key).unwrap();
    let outcome = renew(
        &home.client_toml(),
        &RenewOptions::default(),
        UnixTime::now(),
    )
    .await
    .unwrap();
    assert!(
        matches!(outcome, RenewOutcome::NotDue { .. }),
        "{outcome:?}"
    );
    assert_eq!(files_of(&home), (new_cert.clone(), new_key.clone()));
    assert!(!next_key_path(&home.key()).exists());

    // --keep-key renews the certificate for the key the home has.
    let again = match renew(
        &home.client_toml(),
        &RenewOptions {
            force: true,
            new_key: Some(false),
        },
        UnixTime::now(),
    )
    .await
    .unwrap()
    {
        RenewOutcome::Renewed(r) => r,
        other => panic!("{other:?}"),
    };
    assert!(!again.new_key);
    assert_eq!(files_of(&home).1, new_key);
}

#[tokio::test]
async fn a_revoked_certificate_cannot_renew() {
    let lab = Lab::new().await;
    let home = lab.enrolled("home.example").await;
    lab.srv.revoke("home.example", true, now()).unwrap();
    let before = files_of(&home);
    let e = renew(&home.client_toml(), &FORCE, UnixTime::now())
        .await
        .unwrap_err();
    let (code, message) = refusal(e);
    assert_eq!(code, RefusalCode::CERTIFICATE_REFUSED);
    assert!(message.contains("certificate is revoked"), "{message}");
    assert_eq!(
        files_of(&home),
        before,
        "a failed renewal changed the files"
    );
    assert_eq!(lab.srv.registry().unwrap().load().unwrap().clients.len(), 1);
}

#[tokio::test]
async fn an_expired_certificate_cannot_renew() {
    let lab = Lab::new().await;
    let home = ClientDir::new(&lab.tmp.path().join("late"));
    home.request("late.example", KeyType::Ed25519).unwrap();
    // Issued 10 days ago for 2 days; imported while it was valid.
    let then = now() - time::Duration::days(10);
    let issued = lab
        .srv
        .sign(&std::fs::read(home.csr()).unwrap(), 2, then)
        .unwrap();
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        (then.unix_timestamp() + 3600) as u64,
    ));
    home.import_for_renewal(&issued.bundle, at, Some(lab.addr))
        .unwrap();
    let e = renew(&home.client_toml(), &FORCE, UnixTime::now())
        .await
        .unwrap_err();
    let (code, message) = refusal(e);
    assert_eq!(code, RefusalCode::CERTIFICATE_REFUSED);
    assert!(message.contains("certificate expired at"), "{message}");
}

#[tokio::test]
async fn a_certificate_of_another_ca_cannot_renew() {
    let lab = Lab::new().await;
    let other = server(
        &lab.tmp.path().join("other-ca"),
        "2001:db8:100::/48",
        64,
        KeyType::Ed25519,
    );
    let home = ClientDir::new(&lab.tmp.path().join("foreign"));
    home.request("home.example", KeyType::Ed25519).unwrap();
    let issued = other
        .sign(&std::fs::read(home.csr()).unwrap(), 730, now())
        .unwrap();
    home.import_for_renewal(&issued.bundle, UnixTime::now(), Some(lab.addr))
        .unwrap();
    // The home trusts the listener's CA, but its certificate is the other CA's.
    std::fs::copy(lab.srv.ca_cert(), home.ca()).unwrap();
    let e = renew(&home.client_toml(), &FORCE, UnixTime::now())
        .await
        .unwrap_err();
    let (code, message) = refusal(e);
    assert_eq!(code, RefusalCode::CERTIFICATE_REFUSED);
    assert!(message.contains("not issued by this CA"), "{message}");
    assert!(
        lab.srv
            .registry()
            .unwrap()
            .load()
            .unwrap()
            .clients
            .is_empty()
    );
}

#[tokio::test]
async fn a_renewal_for_another_name_is_refused() {
    let lab = Lab::new().await;
    let home = lab.enrolled("home.example").await;
    let victim = lab.enrolled("victim.example").await;
    drop(victim);
    // The home asks, with its own certificate, for a certificate for another name.
    let path = home.client_toml();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("name = \"home.example\"", "name = \"victim.example\"");
    std::fs::write(&path, text).unwrap();
    let e = renew(&path, &FORCE, UnixTime::now()).await.unwrap_err();
    let (code, message) = refusal(e);
    assert_eq!(code, RefusalCode::NAME_MISMATCH);
    assert!(
        message.contains("the certificate is for home.example"),
        "{message}"
    );
    assert_eq!(lab.srv.registry().unwrap().load().unwrap().clients.len(), 2);
}

/// The server's side alone: a retry with the same new key after a lost answer gets the same
/// certificate again; the replaced certificate cannot renew for another key.
#[tokio::test]
async fn a_lost_answer_is_fetched_again_and_nothing_else() {
    let lab = Lab::new().await;
    let home = lab.enrolled("home.example").await;
    let old = hometun_pki::files::load_certificate(&home.cert()).unwrap();
    let csr_for = |key: &rcgen::KeyPair| {
        let pem = hometun_pki::csr::make_csr(key, "home.example").unwrap();
        pem.into_bytes()
    };
    let new_key = KeyType::Ed25519.generate().unwrap();
    let first = lab.srv.renew(&old, &csr_for(&new_key), now()).unwrap();
    let again = lab.srv.renew(&old, &csr_for(&new_key), now()).unwrap();
    assert_eq!(again.record, first.record);
    let other_key = KeyType::Ed25519.generate().unwrap();
    let e = lab
        .srv
        .renew(&old, &csr_for(&other_key), now())
        .unwrap_err();
    assert!(
        matches!(e, PkiError::Renewal(RenewalRefusal::NotCurrent { .. })),
        "{e}"
    );
    assert_eq!(lab.srv.registry().unwrap().load().unwrap().clients.len(), 2);

    // Revoking the home revokes both of its live certificates, and the CRL lists both.
    lab.srv.revoke("home.example", false, now()).unwrap();
    let data = lab.srv.registry().unwrap().load().unwrap();
    assert!(data.clients.iter().all(|c| c.revoked.is_some()));
    assert_eq!(data.revoked().len(), 2);
}
