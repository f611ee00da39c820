//! The enrollment listener's log names the peer of each answer. Alone in its test binary: it
//! captures log lines with a scoped subscriber, and tracing's per-callsite interest, shared by
//! every thread of the process, made it miss the `enrolled` line when other tests enrolled at
//! the same time.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{csr_der, now, server};
use hometun_pki::ca::KeyType;
use hometun_pki::client_dir::ClientDir;
use hometun_pki::enroll::protocol::{Message, Request};
use hometun_pki::enroll::server::EnrollmentServer;

#[test]
fn refusals_are_logged_with_the_peer() {
    use std::io::Write;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let tmp = tempfile::tempdir().unwrap();
    let srv = server(
        &tmp.path().join("srv"),
        "2001:db8:100::/48",
        64,
        KeyType::Ed25519,
    );
    let service = EnrollmentServer::new(srv.dir()).unwrap();
    let token = srv
        .make_token("home.example", 24 * 60, None, now())
        .unwrap();
    let (csr, _) = ClientDir::new(&tmp.path().join("home"))
        .request("home.example", KeyType::Ed25519)
        .unwrap();
    let request = Request {
        secret: token.secret,
        csr_der: csr_der(&csr),
    };
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let peer = "198.51.100.7:40000".parse().unwrap();
    tracing::subscriber::with_default(subscriber, || {
        assert!(matches!(
            service.answer(&request, peer, now()),
            Message::Bundle(_)
        ));
        assert!(matches!(
            service.answer(&request, peer, now()),
            Message::Refused(_)
        ));
    });
    let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("enrolled") && log.contains("prefix=2001:db8:100:1::/64"),
        "{log}"
    );
    assert!(
        log.contains("enrollment refused") && log.contains("token was already used"),
        "{log}"
    );
    assert!(log.contains("peer=198.51.100.7:40000"), "{log}");
}
