//! Several servers, one CA, one PostgreSQL registry. The server here has its own certificate
//! from `pki server-cert`, the CA certificate, a CRL copied once, and the database; it has no
//! CA key and runs (IKE, status, revocation checks) all the same. A home revoked on the CA's
//! machine (`hometun pki revoke`, which writes the CA's CRL and the database, not this
//! server's CRL) is cut at this server within a second, learnt from the database's
//! notification, and refused when it comes back.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use hometun_lab::ike_lab::{
    Daemon, IkeLab, VPS_ADDR, VPS_INNER, VPS_NAME, hometun, logs, wait_ping,
};
use hometun_lab::postgres_lab::{PostgresLab, require_postgres};
use hometun_lab::registry_lab::{has_ca_key, init_shared_ca, second_server};
use hometun_lab::{require_root, wait_for};

/// The bound the registry promises: a revocation reaches every server within a second.
const BOUND: Duration = Duration::from_secs(1);

#[test]
fn a_revocation_in_the_registry_cuts_the_home_at_another_server_within_a_second() {
    let test = "a_revocation_in_the_registry_cuts_the_home_at_another_server_within_a_second";
    if !require_root(test) || !require_postgres(test) {
        return;
    }
    let pg = PostgresLab::start().unwrap();
    let url = pg.create_database().unwrap();
    let lab = IkeLab::new(1).unwrap();
    let ca = init_shared_ca(&lab.dir().join("ca"), &url).unwrap();
    let ca_dir = ca.dir().to_str().unwrap().to_string();
    // The home enrolls on the CA's machine (pki sign reads [registry] from its server.toml).
    let home_dir = lab.dir().join("home0");
    hometun(&[
        "pki",
        "request",
        "--dir",
        home_dir.to_str().unwrap(),
        "--name",
        "home.example",
    ])
    .unwrap();
    let bundle = home_dir.join("bundle.toml");
    hometun(&[
        "pki",
        "sign",
        "--dir",
        &ca_dir,
        "--csr",
        home_dir.join("client.csr").to_str().unwrap(),
        "--out",
        bundle.to_str().unwrap(),
    ])
    .unwrap();
    hometun(&[
        "pki",
        "import",
        "--dir",
        home_dir.to_str().unwrap(),
        bundle.to_str().unwrap(),
    ])
    .unwrap();

    // Server B: its own certificate, no CA key.
    let b_dir = lab.dir().join("b");
    let b_toml = second_server(&ca, &b_dir, VPS_NAME, VPS_ADDR, &url).unwrap();
    assert!(!has_ca_key(&b_dir));
    let server = Daemon::start(
        &lab.vps.ns,
        "server",
        &b_toml,
        &lab.dir().join("server.log"),
    )
    .unwrap();
    assert!(
        server.wait_log("IKE on", Duration::from_secs(20)),
        "server B did not start without the CA key:\n{}",
        server.log_text()
    );
    let client = Daemon::start(
        &lab.homes[0].ns,
        "client",
        &home_dir.join("client.toml"),
        &lab.dir().join("client0.log"),
    )
    .unwrap();
    assert!(
        wait_ping(&lab.homes[0].ns, VPS_INNER, Duration::from_secs(30)),
        "the home did not come up at server B\n{}",
        logs(&[&server, &client])
    );
    let b_crl = std::fs::read(b_dir.join("crl.pem")).unwrap();

    let before = Instant::now();
    hometun(&["pki", "revoke", "--dir", &ca_dir, "--name", "home.example"]).unwrap();
    let committed = Instant::now();
    let line = "deleted the SAs of home.example";
    assert!(
        wait_for(Duration::from_secs(10), || server.log_text().contains(line)),
        "server B kept the revoked home\n{}",
        logs(&[&server, &client])
    );
    let cut = Instant::now();
    // From the start of `pki revoke` (a process that connects, signs the CRL and commits) to
    // the line of server B that says the home's SAs are gone.
    let took = cut - before;
    eprintln!(
        "revocation applied at server B {took:?} after `pki revoke` started ({:?} after it returned)",
        cut.saturating_duration_since(committed)
    );
    assert!(took <= BOUND, "took {took:?}");
    // Learnt from the registry, not from a CRL: B's CRL file is the one it started with.
    assert_eq!(std::fs::read(b_dir.join("crl.pem")).unwrap(), b_crl);
    let log = server.log_text();
    assert!(log.contains("registry: home.example"), "{log}");

    // Any directory sees it with --registry (here one without server.toml or registry.json).
    let elsewhere = lab.dir().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let out = hometun(&[
        "pki",
        "list",
        "--dir",
        elsewhere.to_str().unwrap(),
        "--registry",
        &url,
        "--json",
    ])
    .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["name"], "home.example", "{listed}");
    assert_eq!(listed[0]["status"], "revoked", "{listed}");

    // It comes back and is refused by B.
    assert!(
        wait_for(Duration::from_secs(15), || {
            server.log_text().lines().any(|l| {
                l.contains("refused")
                    && l.contains("home.example")
                    && l.contains("revoked in the registry")
            })
        }),
        "{}",
        logs(&[&server, &client])
    );

    // And it stops cleanly on SIGTERM, its registry connections closed on the way out.
    drop(client);
    let log = lab.dir().join("server.log");
    let status = server.stop().unwrap();
    assert!(
        status.success(),
        "{status}\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}
