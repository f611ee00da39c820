//! Two strongSwan charons (userspace ESP via kernel-libipsec) in network namespaces this test
//! makes, authenticating with hometun-issued certificates, with strongSwan's addrblock plugin
//! loaded (as it is by default): the home's tunnel comes up with exactly its allocated prefix
//! as traffic selector, and a revoked home is refused in IKE_AUTH because of hometun's CRL.
//! This shows the certificates, the RFC 3779 blocks (CA and server `::/0`, home its prefix)
//! and the CRL work with strongSwan; the same scenario against the hometun daemon comes with
//! the IKE daemon. Needs root; skips with a reason otherwise (fails under CI=true).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{now, server};
use hometun_pki::ca::KeyType;
use hometun_pki::client_dir::ClientDir;
use rustls_pki_types::UnixTime;

const CHARON: &str = "/usr/lib/ipsec/charon";
/// The charon plugins every strongswan.conf of the tests loads (scripts/install-deps.sh names
/// the package of each).
const PLUGINS: &str = include_str!("../../testdata/strongswan-plugins");

fn sh(cmd: &str) -> std::process::Output {
    Command::new("sh").args(["-c", cmd]).output().unwrap()
}

fn ok(cmd: &str) {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes the namespaces and the charons, also when the test fails.
struct Lab {
    netns: Vec<String>,
    charons: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.charons {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.netns {
            // Any charon left in the namespace dies with its processes gone above.
            let _ = sh(&format!("ip netns del {n}"));
        }
    }
}

fn can_run() -> bool {
    let root = sh("id -u").stdout.starts_with(b"0");
    let tools =
        Path::new(CHARON).exists() && sh("command -v swanctl && command -v ip").status.success();
    if root && tools {
        return true;
    }
    let reason = if root {
        "strongSwan (charon, swanctl) or iproute2 missing"
    } else {
        "needs root for network namespaces"
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "cannot run: {reason}"
    );
    eprintln!("skipping: {reason}");
    false
}

struct Peer {
    ns: String,
    dir: PathBuf,
}

impl Peer {
    fn swanctl(&self, args: &str) -> std::process::Output {
        sh(&format!(
            "ip netns exec {} swanctl {args} --uri unix://{}/charon.vici",
            self.ns,
            self.dir.display()
        ))
    }
}

fn charon_conf(dir: &Path) -> String {
    format!(
        r#"charon {{
  load = {plugins}
  install_routes = yes
  filelog {{ log {{ path = {d}/charon.log
    flush_line = yes
    default = 1
    ike = 2
    cfg = 2
  }} }}
  plugins {{ vici {{ socket = unix://{d}/charon.vici }}
            kernel-libipsec {{ allow_peer_ts = yes }}
            revocation {{ enable_ocsp = no }} }}
}}
"#,
        d = dir.display(),
        plugins = PLUGINS.trim(),
    )
}

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

fn make_peer(lab: &mut Lab, ns: &str, dir: &Path, files: &[(&Path, &str)], conns: &str) -> Peer {
    for sub in ["x509ca", "x509", "private", "x509crl"] {
        std::fs::create_dir_all(dir.join("swanctl").join(sub)).unwrap();
    }
    for (src, dst) in files {
        std::fs::copy(src, dir.join("swanctl").join(dst)).unwrap();
    }
    std::fs::write(dir.join("strongswan.conf"), charon_conf(dir)).unwrap();
    std::fs::write(
        dir.join("swanctl/swanctl.conf"),
        format!("connections {{\n{conns}}}\n"),
    )
    .unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs none /run && cd {d} && STRONGSWAN_CONF={d}/strongswan.conf exec {CHARON}",
            d = dir.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lab.charons.push(child);
    let peer = Peer {
        ns: ns.to_string(),
        dir: dir.to_path_buf(),
    };
    // Up to 10 s for charon to open its control socket.
    for _ in 0..100 {
        if dir.join("charon.vici").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        dir.join("charon.vici").exists(),
        "charon in {ns} did not start"
    );
    let out = peer.swanctl(&format!(
        "--load-all --file {}/swanctl/swanctl.conf",
        dir.display()
    ));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "swanctl --load-all in {ns}: {text}");
    peer
}

#[test]
fn strongswan_pair_with_hometun_certificates() {
    if !can_run() {
        return;
    }
    let pid = std::process::id();
    let (a, b) = (format!("htpki-a-{pid}"), format!("htpki-b-{pid}"));
    let mut lab = Lab {
        netns: vec![a.clone(), b.clone()],
        charons: Vec::new(),
    };
    let (va, vb) = (format!("hpk{pid}a"), format!("hpk{pid}b"));
    ok(&format!("ip netns add {a} && ip netns add {b}"));
    ok(&format!(
        "ip link add {va} netns {a} type veth peer name {vb} netns {b}"
    ));
    ok(&format!(
        "ip -n {a} addr add 192.0.2.2/24 dev {va} && ip -n {b} addr add 192.0.2.1/24 dev {vb}"
    ));
    ok(&format!(
        "ip -n {a} link set lo up && ip -n {b} link set lo up && ip -n {a} link set {va} up && ip -n {b} link set {vb} up"
    ));

    let tmp = tempfile::tempdir().unwrap();
    let srv = server(
        &tmp.path().join("srv"),
        "2001:db8:100::/48",
        64,
        KeyType::Ed25519,
    );
    let home = ClientDir::new(&tmp.path().join("home"));
    home.request("home.example", KeyType::Ed25519).unwrap();
    let issued = srv
        .sign(&std::fs::read(home.csr()).unwrap(), 730, now())
        .unwrap();
    home.import(&issued.bundle, UnixTime::now()).unwrap();
    let prefix = issued.record.prefix.to_string();
    // Addresses the routes through the tunnel start from: the home's first address of its
    // prefix, and one on the server side (documentation space).
    let home_address = std::net::Ipv6Addr::from(u128::from(issued.record.prefix.network()) | 1);
    ok(&format!(
        "ip -n {a} -6 addr add {home_address}/128 dev lo && ip -n {b} -6 addr add 2001:db8:ffff::1/128 dev lo"
    ));
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
        &mut lab,
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
        &mut lab,
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

    let out = homeside.swanctl("--initiate --child v6 --ike home --timeout 20");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let server_log = std::fs::read_to_string(vps.dir.join("charon.log")).unwrap_or_default();
    let home_log = std::fs::read_to_string(homeside.dir.join("charon.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "initiate failed: {text}\n--- server log\n{server_log}\n--- home log\n{home_log}"
    );
    // The server's addrblock plugin narrowed the home's selector to its certificate's prefix.
    assert!(
        server_log.contains("checking certificate-based traffic selector constraints"),
        "{server_log}"
    );
    let sas = String::from_utf8_lossy(&vps.swanctl("--list-sas").stdout).into_owned();
    assert!(sas.contains(&format!("remote {prefix}")), "{sas}");
    assert!(
        sas.contains("local  ::/0") || sas.contains("local ::/0"),
        "{sas}"
    );
    let sas = String::from_utf8_lossy(&homeside.swanctl("--list-sas").stdout).into_owned();
    assert!(
        sas.contains(&format!("local  {prefix}")) || sas.contains(&format!("local {prefix}")),
        "{sas}"
    );
    assert!(sas.contains("remote ::/0"), "{sas}");

    // The revoked home is refused in IKE_AUTH.
    let out = homeside.swanctl("--initiate --child v6 --ike bad --timeout 20");
    let server_log = std::fs::read_to_string(vps.dir.join("charon.log")).unwrap_or_default();
    assert!(
        !out.status.success(),
        "revoked client came up:\n{server_log}"
    );
    assert!(
        server_log.contains("certificate was revoked"),
        "{server_log}"
    );
    drop(lab);
}
