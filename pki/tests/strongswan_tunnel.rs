//! Two strongSwan charons (userspace ESP via kernel-libipsec) in network namespaces this test
//! makes, authenticating with hometun-issued certificates, with strongSwan's addrblock plugin
//! loaded (as it is by default): the home's tunnel comes up with exactly its allocated prefix
//! as traffic selector, and a revoked home is refused in IKE_AUTH because of hometun's CRL.
//! This shows the certificates, the RFC 3779 blocks (CA and server `::/0`, home its prefix)
//! and the CRL work with strongSwan; the same scenario against the hometun daemon comes with
//! the IKE daemon. Needs root; skips with a reason otherwise (fails under CI=true).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{now, signed_home};
use hometun_lab::strongswan::{Charon, CharonConfig, lab_can_run};
use hometun_lab::{Netns, veth};
use hometun_pki::ca::KeyType;
use hometun_pki::client_dir::ClientDir;
use rustls_pki_types::UnixTime;

// One swanctl connection block: its fields are exactly swanctl's, in swanctl's order.
#[allow(clippy::too_many_arguments)]
fn connection(
    name: &str,
    local: &str,
    remote: &str,
    cert: &str,
    id: &str,
    remote_id: &str,
    local_ts: &str,
    remote_ts: &str,
) -> String {
    format!(
        r#"  {name} {{
    version = 2
    local_addrs = {local}
    remote_addrs = {remote}
    proposals = aes128gcm16-prfsha256-curve25519
    encap = yes
    local {{ auth = pubkey
            certs = {cert}
            id = {id} }}
    remote {{ auth = pubkey
             id = {remote_id} }}
    children {{
      v6 {{ local_ts = {local_ts}
           remote_ts = {remote_ts}
           esp_proposals = aes128gcm16-x25519
           mode = tunnel
           start_action = none }}
    }}
  }}
"#
    )
}

/// A charon in `ns` with `files` (source, place under swanctl/) and the connection blocks
/// `conns`.
fn make_peer(ns: &Netns, dir: &Path, files: &[(&Path, &str)], conns: &str) -> Charon {
    let mut config = CharonConfig {
        connections: format!("connections {{\n{conns}}}\n"),
        ..CharonConfig::default()
    };
    for (src, dst) in files {
        config = config.with_file(dst, src).unwrap();
    }
    Charon::launch(ns, dir, &config).unwrap()
}

#[test]
fn strongswan_pair_with_hometun_certificates() {
    if !lab_can_run("strongswan_pair_with_hometun_certificates") {
        return;
    }
    let a = Netns::new("pka").unwrap();
    let b = Netns::new("pkb").unwrap();
    veth(&a, "pka0", &b, "pkb0").unwrap();
    a.ip(&["addr", "add", "192.0.2.2/24", "dev", "pka0"])
        .unwrap();
    b.ip(&["addr", "add", "192.0.2.1/24", "dev", "pkb0"])
        .unwrap();
    a.ip(&["link", "set", "pka0", "up"]).unwrap();
    b.ip(&["link", "set", "pkb0", "up"]).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let (srv, home, issued) = signed_home(tmp.path(), 64);
    home.import(&issued.bundle, UnixTime::now()).unwrap();
    let prefix = issued.record.prefix.to_string();
    // Addresses the routes through the tunnel start from: the home's first address of its
    // prefix, and one on the server side (documentation space).
    let home_address = std::net::Ipv6Addr::from(u128::from(issued.record.prefix.network()) | 1);
    a.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{home_address}/128"),
        "dev",
        "lo",
    ])
    .unwrap();
    b.ip(&["-6", "addr", "add", "2001:db8:ffff::1/128", "dev", "lo"])
        .unwrap();
    // A second home, revoked before it ever connects.
    let bad = ClientDir::new(&tmp.path().join("bad"));
    bad.request("bad.example", KeyType::Ed25519).unwrap();
    let bad_issued = srv
        .sign(&std::fs::read(bad.csr()).unwrap(), 730, now())
        .unwrap();
    bad.import(&bad_issued.bundle, UnixTime::now()).unwrap();
    srv.revoke("bad.example", true, now()).unwrap();
    let bad_prefix = bad_issued.record.prefix.to_string();

    let crl = srv.config().unwrap().server.crl.unwrap();
    let server_conns = connection(
        "homes",
        "192.0.2.1",
        "%any",
        "server.pem",
        "vps.example",
        "%any",
        "::/0",
        "::/0",
    );
    let vps = make_peer(
        &b,
        &tmp.path().join("vps"),
        &[
            (&srv.ca_cert(), "x509ca/ca.pem"),
            (&srv.server_cert(), "x509/server.pem"),
            (&srv.server_key(), "private/server.key"),
            (&crl, "x509crl/crl.pem"),
        ],
        &server_conns,
    );
    let client_conns = connection(
        "home",
        "192.0.2.2",
        "192.0.2.1",
        "client.pem",
        "home.example",
        "vps.example",
        &prefix,
        "::/0",
    ) + &connection(
        "bad",
        "192.0.2.2",
        "192.0.2.1",
        "bad.pem",
        "bad.example",
        "vps.example",
        &bad_prefix,
        "::/0",
    );
    let bad_key = tmp.path().join("bad/client.key");
    let bad_cert = tmp.path().join("bad/client.pem");
    let homeside = make_peer(
        &a,
        &tmp.path().join("homeside"),
        &[
            (&home.ca(), "x509ca/ca.pem"),
            (&home.cert(), "x509/client.pem"),
            (&home.key(), "private/client.key"),
            (&bad_cert, "x509/bad.pem"),
            (&bad_key, "private/bad.key"),
        ],
        &client_conns,
    );

    let initiated = homeside.swanctl(&[
        "--initiate",
        "--child",
        "v6",
        "--ike",
        "home",
        "--timeout",
        "20",
    ]);
    let server_log = vps.log();
    assert!(
        initiated.is_ok(),
        "initiate failed: {initiated:?}\n--- server log\n{server_log}\n--- home log\n{}",
        homeside.log()
    );
    // The server's addrblock plugin narrowed the home's selector to its certificate's prefix.
    assert!(
        server_log.contains("checking certificate-based traffic selector constraints"),
        "{server_log}"
    );
    let sas = vps.list_sas();
    assert!(sas.contains(&format!("remote {prefix}")), "{sas}");
    assert!(
        sas.contains("local  ::/0") || sas.contains("local ::/0"),
        "{sas}"
    );
    let sas = homeside.list_sas();
    assert!(
        sas.contains(&format!("local  {prefix}")) || sas.contains(&format!("local {prefix}")),
        "{sas}"
    );
    assert!(sas.contains("remote ::/0"), "{sas}");

    // The revoked home is refused in IKE_AUTH.
    let refused = homeside.swanctl(&[
        "--initiate",
        "--child",
        "v6",
        "--ike",
        "bad",
        "--timeout",
        "20",
    ]);
    let server_log = vps.log();
    assert!(refused.is_err(), "revoked client came up:\n{server_log}");
    assert!(
        server_log.contains("certificate was revoked"),
        "{server_log}"
    );
    drop((homeside, vps));
}
