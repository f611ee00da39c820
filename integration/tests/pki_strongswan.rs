//! A stock strongSwan 5.9 client with a hometun-issued certificate against `hometun server`:
//! an all-NIST set-up (`hometun pki init --key p256`, `pki request --key p256` on the home,
//! `pki sign`, `pki import`; IKE with ECDH P-256) as a stock client would have it. charon
//! loads the key `pki request` wrote as it is (PKCS#8 PEM: no conversion is needed), verifies
//! the server's ECDSA certificate (with its `addrblock` plugin loaded, which wants the CA's
//! address blocks to contain the server's), and the tunnel carries ping6 both ways with the
//! prefix from the certificate. (`ike_strongswan.rs` runs the Ed25519 / X25519 case.)

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use hometun_lab::ike_lab::{
    Daemon, IkeLab, POOL, VPS_ADDR, VPS_INNER, VPS_NAME, hometun, ping6, wait_ping,
};
use hometun_lab::pki_lab::{arg, listed_prefix, logs, printed};
use hometun_lab::strongswan::{Charon, CharonSpec, lab_can_run};

#[test]
fn strongswan_client_with_a_hometun_p256_certificate() {
    let test = "strongswan_client_with_a_hometun_p256_certificate";
    if !lab_can_run(test) {
        return;
    }
    let started = Instant::now();
    let lab = IkeLab::new(1).unwrap();
    let ca = lab.dir().join("ca");
    let home = lab.dir().join("home");
    hometun(&[
        "pki",
        "init",
        "--dir",
        arg(&ca).unwrap(),
        "--server-ipv4",
        &VPS_ADDR.to_string(),
        "--pool",
        POOL,
        "--server-name",
        VPS_NAME,
        "--key",
        "p256",
    ])
    .unwrap();
    hometun(&[
        "pki",
        "request",
        "--dir",
        arg(&home).unwrap(),
        "--name",
        "home.example",
        "--key",
        "p256",
    ])
    .unwrap();
    let bundle = lab.dir().join("bundle.toml");
    hometun(&[
        "pki",
        "sign",
        "--dir",
        arg(&ca).unwrap(),
        "--csr",
        arg(&home.join("client.csr")).unwrap(),
        "--out",
        arg(&bundle).unwrap(),
    ])
    .unwrap();
    hometun(&[
        "pki",
        "import",
        "--dir",
        arg(&home).unwrap(),
        arg(&bundle).unwrap(),
    ])
    .unwrap();
    let prefix = listed_prefix(&ca, "home.example").unwrap();
    // The key as `pki request` left it: PKCS#8 PEM, which charon's pkcs8 plugin reads.
    let key_pem = std::fs::read_to_string(home.join("client.key")).unwrap();
    assert!(
        key_pem.starts_with("-----BEGIN PRIVATE KEY-----"),
        "{key_pem}"
    );
    let cert_text = printed(
        &std::process::Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(home.join("client.pem"))
            .output()
            .unwrap(),
    );
    assert!(cert_text.contains("prime256v1"), "{cert_text}");
    assert!(cert_text.contains("sbgp-ipAddrBlock"), "{cert_text}");

    let server = Daemon::start(
        &lab.vps.ns,
        "server",
        &ca.join("server.toml"),
        &lab.dir().join("server.log"),
    )
    .unwrap();
    assert!(
        server.wait_log("IKE on", Duration::from_secs(20)),
        "{}",
        logs(&[&server])
    );

    // strongSwan takes its inner source address from a local interface inside its TS.
    let home_address = prefix.hosts().next().unwrap();
    lab.home()
        .ns
        .ip(&[
            "-6",
            "addr",
            "add",
            &format!("{home_address}/128"),
            "dev",
            "lo",
        ])
        .unwrap();
    let charon_dir = lab.dir().join("charon-home");
    std::fs::create_dir_all(&charon_dir).unwrap();
    let charon = Charon::start(
        &lab.home().ns,
        &charon_dir,
        &CharonSpec {
            local_addr: lab.home().addr.to_string(),
            remote_addr: lab.vps.addr.to_string(),
            local_id: "home.example".into(),
            remote_id: VPS_NAME.into(),
            cert: home.join("client.pem"),
            key: home.join("client.key"),
            ca: home.join("ca.pem"),
            local_ts: prefix.to_string(),
            remote_ts: "::/0".into(),
            proposals: "aes128gcm16-prfsha256-ecp256".into(),
            esp_proposals: "aes128gcm16-x25519".into(),
            charon_extra: String::new(),
            connection_extra: String::new(),
            child_extra: String::new(),
        },
    )
    .unwrap();
    let charon_logs = |charon: &Charon| {
        format!(
            "{}\n--- charon.log:\n{}\n--- swanctl --list-sas:\n{}",
            logs(&[&server]),
            charon.log(),
            charon.list_sas()
        )
    };
    if let Err(error) = charon.initiate() {
        panic!(
            "strongSwan could not connect: {error:#}\n{}",
            charon_logs(&charon)
        );
    }
    assert!(
        wait_ping(&lab.home().ns, VPS_INNER, Duration::from_secs(20)),
        "no ping6 through the tunnel\n{}",
        charon_logs(&charon)
    );
    let up = started.elapsed();
    assert!(
        ping6(&lab.vps.ns, home_address, 3).unwrap(),
        "ping6 VPS -> {home_address}\n{}",
        charon_logs(&charon)
    );
    // charon checked our server certificate with the P-256 CA and its address blocks.
    let charon_log = charon.log();
    assert!(
        charon_log.contains("authentication of 'vps.example' with ECDSA"),
        "{}",
        charon_logs(&charon)
    );
    let sas = charon.list_sas();
    assert!(sas.contains("ECP_256"), "{sas}");
    assert!(sas.contains(&prefix.to_string()), "{sas}");

    let status = server.status().unwrap();
    let peer = &status["peers"][0];
    assert_eq!(peer["name"], "home.example", "{status:#}");
    assert_eq!(peer["prefixes"][0], prefix.to_string(), "{status:#}");
    assert_eq!(
        peer["children"][0]["remote_ts"][0],
        prefix.to_string(),
        "{status:#}"
    );
    eprintln!("{}", server.status_table().unwrap());
    eprintln!("swanctl --list-sas:\n{sas}");

    charon
        .swanctl(&["--terminate", "--ike", "home", "--timeout", "10"])
        .unwrap();
    assert!(
        hometun_lab::wait_for(Duration::from_secs(10), || server
            .status()
            .is_ok_and(|s| s["peers"].as_array().is_some_and(|p| p.is_empty()))),
        "the server kept the peer after strongSwan's DELETE\n{}",
        charon_logs(&charon)
    );
    charon.stop();
    assert!(server.stop().unwrap().success());
    eprintln!(
        "timings: tunnel up {:.2} s after the start (PKI included), total {:.1} s",
        up.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
