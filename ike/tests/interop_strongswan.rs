//! Interoperability of the state machine with a real strongSwan 5.9.8 (charon, kernel-libipsec)
//! in two network namespaces made here: our `Endpoint`, driven by a minimal UDP loop in a
//! thread that entered one namespace, talks IKE with charon in the other. ESP is not carried
//! (no forwarder here); the IKE exchanges are: IKE_SA_INIT, IKE_AUTH with Ed25519 certificates,
//! CHILD SA rekeys from both sides, IKE SA rekeys, strongSwan's liveness checks, DELETEs.
//!
//! Needs root, `ip` and strongSwan (`/usr/lib/ipsec/charon`, `swanctl`). Without them the tests
//! print why and pass, unless `CI=true`, where they fail.

#![allow(clippy::unwrap_used)]
// This file is an I/O driver with real sockets and processes: it reads the real clock (and
// passes it to the endpoint as an argument, as the daemon's driver does).
#![allow(clippy::disallowed_methods)]

mod sim_support;

use std::fs;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use hometun_control::{Encapsulation, Event, Request, Spi};
use hometun_ike::endpoint::{Endpoint, Now, Output, PeerStatus};
use hometun_ike::wire::{Port4500, add_non_esp_marker, classify_port_4500};
use hometun_lab::strongswan::{Charon, CharonConfig, lab_can_run};
use hometun_lab::{Netns, veth};
use sim_support::*;

fn now() -> Now {
    Now {
        mono: Instant::now(),
        wall: SystemTime::now(),
    }
}

/// Two namespaces joined by a veth pair, charon (the lab's launcher) in one of them.
/// Everything is removed on drop (also when the test fails).
struct Lab {
    // Fields drop in order: charon before the namespaces.
    charon: Option<Charon>,
    swan: Netns,
    ours: Netns,
    dir: tempfile::TempDir,
}

impl Lab {
    /// `swan_addr` for charon's side, `our_addr` for ours, both in 192.0.2.0/24.
    fn new(tag: &str, swan_addr: Ipv4Addr, our_addr: Ipv4Addr) -> Self {
        let lab = Self {
            charon: None,
            swan: Netns::new(&format!("{tag}s")).unwrap(),
            ours: Netns::new(&format!("{tag}h")).unwrap(),
            dir: tempfile::tempdir().unwrap(),
        };
        veth(&lab.swan, "sw0", &lab.ours, "ho0").unwrap();
        for (ns, dev, addr) in [(&lab.swan, "sw0", swan_addr), (&lab.ours, "ho0", our_addr)] {
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", dev])
                .unwrap();
            ns.ip(&["link", "set", dev, "up"]).unwrap();
        }
        // kernel-libipsec routes the inner traffic from an address of the local selector.
        for inner in ["2001:db8:1::2/128", "2001:db8:ffff::1/128"] {
            lab.swan
                .ip(&["-6", "addr", "add", inner, "dev", "lo"])
                .unwrap();
        }
        lab
    }

    /// Starts charon with our PKI's CA, its own certificate and key, and `connection`.
    fn start_charon(&mut self, pki: &Pki, swan_is_server: bool, connection: &str) {
        let pem = rustls_pki_types_pem;
        let leaf = if swan_is_server {
            &pki.server
        } else {
            &pki.client
        };
        let config = CharonConfig {
            files: vec![
                ("x509ca/ca.pem".into(), pem(&pki.ca.der).into_bytes()),
                ("x509/me.pem".into(), pem(&leaf.der).into_bytes()),
                ("private/me.pem".into(), key_pem(&leaf.key_der).into_bytes()),
            ],
            connections: connection.to_string(),
            charon_extra: "  retransmit_timeout = 1".into(),
        };
        self.charon = Some(Charon::launch(&self.swan, self.dir.path(), &config).unwrap());
    }

    fn charon(&self) -> &Charon {
        self.charon.as_ref().expect("charon started")
    }

    /// `swanctl ARGS`: whether it succeeded, and what it printed.
    fn swanctl(&self, args: &[&str]) -> (bool, String) {
        match self.charon().swanctl(args) {
            Ok(text) => (true, text),
            Err(error) => (false, format!("{error:#}")),
        }
    }

    fn log(&self) -> String {
        self.charon.as_ref().map(Charon::log).unwrap_or_default()
    }

    fn list_sas(&self) -> String {
        self.swanctl(&["--list-sas", "--raw"]).1
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- charon.log ---\n{}", self.log());
        }
    }
}

fn rustls_pki_types_pem(der: &[u8]) -> String {
    pem_block("CERTIFICATE", der)
}

fn key_pem(der: &[u8]) -> String {
    pem_block("PRIVATE KEY", der)
}

fn pem_block(label: &str, der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::new();
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                text.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// What the test asks of the driver thread.
enum Cmd {
    Event(Event),
    RekeyIke,
    Close,
    Stop,
}

/// Our endpoint in a thread inside `ns`: UDP 500 and 4500 (with the non-ESP marker), timers,
/// outputs collected for the test.
struct Driver {
    commands: Sender<Cmd>,
    outputs: Arc<Mutex<Vec<Output>>>,
    status: Arc<Mutex<Vec<PeerStatus>>>,
    thread: Option<JoinHandle<()>>,
}

impl Driver {
    fn start(
        ns: &str,
        addr: Ipv4Addr,
        make: impl FnOnce(Now, &mut SeededRandom) -> Endpoint + Send + 'static,
    ) -> Self {
        let (commands, rx): (Sender<Cmd>, Receiver<Cmd>) = mpsc::channel();
        let outputs = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(Mutex::new(Vec::new()));
        let (o, s) = (outputs.clone(), status.clone());
        let ns_file = fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            // SAFETY: setns on a valid namespace fd moves only this thread into it.
            let rc = unsafe { libc::setns(ns_file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns");
            let s500 = UdpSocket::bind(SocketAddrV4::new(addr, 500)).unwrap();
            let s4500 = UdpSocket::bind(SocketAddrV4::new(addr, 4500)).unwrap();
            s500.set_nonblocking(true).unwrap();
            s4500.set_nonblocking(true).unwrap();
            let seed = now()
                .wall
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            let mut rng = SeededRandom::new(seed);
            let mut endpoint = make(now(), &mut rng);
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 65536];
            loop {
                match rx.try_recv() {
                    Ok(Cmd::Event(e)) => endpoint.handle_forwarder_event(now(), &e, &mut rng),
                    Ok(Cmd::RekeyIke) => {
                        let peers = endpoint.status(now());
                        for p in peers {
                            endpoint.rekey_ike_sa(now(), p.peer, &mut rng);
                        }
                    }
                    Ok(Cmd::Close) => endpoint.close(now(), &mut rng),
                    Ok(Cmd::Stop) => return,
                    Err(_) => {}
                }
                for (sock, port) in [(&s500, 500u16), (&s4500, 4500u16)] {
                    loop {
                        match sock.recv_from(&mut buf) {
                            Ok((n, std::net::SocketAddr::V4(from))) => {
                                let data = &buf[..n];
                                let local = SocketAddrV4::new(addr, port);
                                if port == 500 {
                                    endpoint.handle_datagram(now(), local, from, data, &mut rng);
                                } else if let Ok(Port4500::Ike(m)) = classify_port_4500(data) {
                                    endpoint.handle_datagram(now(), local, from, m, &mut rng);
                                }
                            }
                            Ok(_) => {}
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(e) => panic!("recv: {e}"),
                        }
                    }
                }
                if endpoint.poll_timeout().is_some_and(|t| t <= now().mono) {
                    endpoint.handle_timeout(now(), &mut rng);
                }
                while let Some(t) = endpoint.poll_transmit() {
                    if t.local.port() == 4500 {
                        s4500
                            .send_to(&add_non_esp_marker(&t.data), t.remote)
                            .unwrap();
                    } else {
                        s500.send_to(&t.data, t.remote).unwrap();
                    }
                }
                {
                    let mut outs = o.lock().unwrap();
                    while let Some(out) = endpoint.poll_output() {
                        outs.push(out);
                    }
                }
                *s.lock().unwrap() = endpoint.status(now());
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        Self {
            commands,
            outputs,
            status,
            thread: Some(thread),
        }
    }

    fn outputs(&self) -> Vec<Output> {
        self.outputs.lock().unwrap().clone()
    }

    fn status(&self) -> Vec<PeerStatus> {
        self.status.lock().unwrap().clone()
    }

    /// Waits until `f` holds on the outputs (or panics after `secs`).
    fn wait(&self, secs: u64, what: &str, f: impl Fn(&[Output]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f(&self.outputs()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.outputs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn installs(&self) -> Vec<hometun_control::ChildSa> {
        self.outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Forwarder(Request::Install(sa)) => Some(sa),
                _ => None,
            })
            .collect()
    }

    fn deletes(&self) -> Vec<u32> {
        self.outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Forwarder(Request::Delete { spi_in }) => Some(spi_in.0),
                _ => None,
            })
            .collect()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.commands.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn swan_pki() -> Pki {
    // strongSwan checks validity with the real clock: certificates valid 2020..2035.
    let pki = Pki::new(&rcgen::PKCS_ED25519);
    Pki {
        client: pki.ca.leaf(CLIENT_NAME, 100, Validity::Wide),
        server: pki.ca.server_leaf(SERVER_NAME, 101, Validity::Wide),
        ..pki
    }
}

fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn strongswan_client_to_our_server() {
    if !lab_can_run("strongswan interop") {
        return;
    }
    let client_ip = Ipv4Addr::new(192, 0, 2, 2);
    let mut lab = Lab::new("a", client_ip, SERVER_ADDR);
    let pki = swan_pki();
    let setup = Setup {
        server_allows: vec![client_prefix()],
        server_esp: vec!["aes128gcm16-x25519-ecp256", "aes256gcm16-x25519-ecp256"],
        ..Setup::default()
    };
    let config = server_config(&setup, &pki);
    let driver = Driver::start(lab.ours.name(), SERVER_ADDR, move |now, rng| {
        Endpoint::responder(config, now, rng)
    });
    lab.start_charon(
        &pki,
        false,
        &format!(
            r#"connections {{
  home {{
    version = 2
    local_addrs = {client_ip}
    remote_addrs = {SERVER_ADDR}
    proposals = aes128gcm16-prfsha256-curve25519
    encap = yes
    dpd_delay = 3s
    local {{ auth = pubkey
            certs = me.pem
            id = {CLIENT_NAME} }}
    remote {{ auth = pubkey
             id = {SERVER_NAME} }}
    children {{
      v6 {{ local_ts = 2001:db8:1::2/128
           remote_ts = ::/0
           esp_proposals = aes128gcm16-x25519
           mode = tunnel
           life_time = 0
           start_action = none }}
    }}
  }}
}}
"#
        ),
    );
    let (ok, text) = lab.swanctl(&["--initiate", "--child", "v6", "--timeout", "15"]);
    assert!(ok, "strongSwan could not establish: {text}");
    driver.wait(5, "PeerUp", |o| {
        o.iter()
            .any(|o| matches!(o, Output::PeerUp { name, .. } if name == CLIENT_NAME))
    });
    let installs = driver.installs();
    assert_eq!(installs.len(), 1);
    let sa = &installs[0];
    // strongSwan's `encap = yes` fakes a NAT: UDP encapsulation on 4500, its /128 narrowed in.
    assert_eq!(
        sa.endpoint.encap,
        Encapsulation::Udp {
            local_port: 4500,
            remote_port: 4500
        }
    );
    assert_eq!(sa.remote_ts, vec![net("2001:db8:1::2/128")]);
    assert_eq!(sa.local_ts, vec![net("::/0")]);
    let sas = lab.list_sas();
    assert!(sas.contains("state=ESTABLISHED"), "{sas}");
    assert!(
        sas.contains(&format!("spi-in={:08x}", sa.spi_out.0)),
        "{sas}"
    );
    assert!(
        sas.contains(&format!("spi-out={:08x}", sa.spi_in.0)),
        "{sas}"
    );

    // strongSwan's liveness checks (dpd_delay 3 s) are answered: the SA stays up.
    std::thread::sleep(Duration::from_secs(8));
    assert!(lab.list_sas().contains("state=ESTABLISHED"));
    assert!(
        lab.log().contains("sending INFORMATIONAL request")
            || lab.log().contains("generating INFORMATIONAL request")
    );

    // strongSwan rekeys the CHILD SA: we install the new pair, then delete the old one when
    // its DELETE comes.
    let (ok, text) = lab.swanctl(&["--rekey", "--child", "v6"]);
    assert!(ok, "{text}");
    driver.wait(10, "CHILD SA rekey", |o| {
        o.iter().any(|o| matches!(o, Output::Rekeyed { .. }))
    });
    wait_for(10, "old pair deleted", || {
        driver.deletes().contains(&sa.spi_in.0)
    });
    let new = driver.installs()[1].clone();
    wait_for(5, "strongSwan lists the new pair", || {
        lab.list_sas()
            .contains(&format!("spi-in={:08x}", new.spi_out.0))
    });

    // Our rekey of the CHILD SA (a soft limit): strongSwan answers, we delete the old pair
    // after the grace period (no ESP here).
    driver
        .commands
        .send(Cmd::Event(Event::SoftLimit {
            peer: new.peer,
            spi_in: Spi(new.spi_in.0),
            direction: hometun_control::Direction::Outbound,
            kind: hometun_control::LimitKind::Bytes,
        }))
        .unwrap();
    wait_for(10, "our CHILD SA rekey", || driver.installs().len() == 3);
    wait_for(20, "old pair deleted after the grace period", || {
        driver.deletes().contains(&new.spi_in.0)
    });
    let newest = driver.installs()[2].clone();
    wait_for(5, "strongSwan lists our new pair", || {
        let sas = lab.list_sas();
        sas.contains(&format!("spi-out={:08x}", newest.spi_in.0))
            && !sas.contains(&format!("spi-out={:08x}", new.spi_in.0))
    });

    // strongSwan rekeys the IKE SA; the CHILD SA moves along.
    let before = driver.status()[0].ike_spis.clone();
    let (ok, text) = lab.swanctl(&["--rekey", "--ike", "home"]);
    assert!(ok, "{text}");
    wait_for(10, "IKE SA rekeyed", || {
        driver
            .status()
            .first()
            .is_some_and(|s| s.ike_spis != before)
    });
    assert_eq!(driver.status()[0].children.len(), 1);
    // Our IKE SA rekey.
    let before = driver.status()[0].ike_spis.clone();
    driver.commands.send(Cmd::RekeyIke).unwrap();
    wait_for(10, "our IKE SA rekey", || {
        driver
            .status()
            .first()
            .is_some_and(|s| s.ike_spis != before)
    });
    std::thread::sleep(Duration::from_secs(2));
    let sas = lab.list_sas();
    assert_eq!(sas.matches("state=ESTABLISHED").count(), 1, "{sas}");
    assert!(sas.contains(&driver.status()[0].ike_spis.0), "{sas}");

    // strongSwan terminates: the peer goes down, its CHILD SA is deleted.
    let (ok, text) = lab.swanctl(&["--terminate", "--ike", "home", "--timeout", "10"]);
    assert!(ok, "{text}");
    driver.wait(5, "PeerDown", |o| {
        o.iter().any(|o| matches!(o, Output::PeerDown { .. }))
    });
    assert!(driver.deletes().contains(&newest.spi_in.0));
    assert!(!lab.log().contains("received AUTHENTICATION_FAILED"));
}

#[test]
fn our_client_to_a_strongswan_server() {
    if !lab_can_run("strongswan interop") {
        return;
    }
    let client_ip = Ipv4Addr::new(192, 0, 2, 2);
    let mut lab = Lab::new("b", SERVER_ADDR, client_ip);
    let pki = swan_pki();
    lab.start_charon(
        &pki,
        true,
        &format!(
            r#"connections {{
  home {{
    version = 2
    local_addrs = {SERVER_ADDR}
    remote_addrs = {client_ip}
    proposals = aes128gcm16-prfsha256-curve25519
    encap = yes
    local {{ auth = pubkey
            certs = me.pem
            id = {SERVER_NAME} }}
    remote {{ auth = pubkey
             id = {CLIENT_NAME} }}
    children {{
      v6 {{ local_ts = ::/0
           remote_ts = 2001:db8:1::/64
           esp_proposals = aes128gcm16-x25519
           mode = tunnel
           life_time = 0
           start_action = none }}
    }}
  }}
}}
"#
        ),
    );
    let setup = Setup {
        client_ike: vec!["aes128gcm16-prfsha256-x25519"],
        client_esp: vec!["aes128gcm16-x25519"],
        ..Setup::default()
    };
    let mut config = client_config(&setup, &pki);
    config.local_addr = client_ip;
    let driver = Driver::start(lab.ours.name(), client_ip, move |now, rng| {
        Endpoint::initiator(config, now, rng)
    });
    driver.wait(15, "PeerUp", |o| {
        o.iter()
            .any(|o| matches!(o, Output::PeerUp { name, .. } if name == SERVER_NAME))
    });
    let sa = driver.installs()[0].clone();
    assert_eq!(sa.local_ts, vec![client_prefix()]);
    assert_eq!(sa.remote_ts, vec![net("::/0")]);
    assert_eq!(
        sa.endpoint.encap,
        Encapsulation::Udp {
            local_port: 4500,
            remote_port: 4500
        }
    );
    // strongSwan fakes its own NAT_DETECTION_SOURCE_IP: the NAT is in front of it, so it
    // sends the keepalives, not we.
    assert_eq!(sa.nat_keepalive_seconds, None);
    let sas = lab.list_sas();
    assert!(sas.contains("state=ESTABLISHED"), "{sas}");
    assert!(
        sas.contains(&format!("spi-in={:08x}", sa.spi_out.0)),
        "{sas}"
    );

    // strongSwan rekeys the CHILD SA (we answer), and we rekey it (strongSwan answers).
    let (ok, text) = lab.swanctl(&["--rekey", "--child", "v6"]);
    assert!(ok, "{text}");
    wait_for(10, "strongSwan's rekey", || {
        driver.deletes().contains(&sa.spi_in.0)
    });
    let second = driver.installs()[1].clone();
    driver
        .commands
        .send(Cmd::Event(Event::SoftLimit {
            peer: second.peer,
            spi_in: second.spi_in,
            direction: hometun_control::Direction::Outbound,
            kind: hometun_control::LimitKind::Packets,
        }))
        .unwrap();
    wait_for(
        25,
        "our rekey and the delete after the grace period",
        || driver.installs().len() == 3 && driver.deletes().contains(&second.spi_in.0),
    );
    let third = driver.installs()[2].clone();
    wait_for(5, "strongSwan has our new pair only", || {
        let sas = lab.list_sas();
        sas.contains(&format!("spi-in={:08x}", third.spi_out.0))
            && !sas.contains(&format!("spi-in={:08x}", second.spi_out.0))
    });

    // IKE SA rekeys both ways.
    let before = driver.status()[0].ike_spis.clone();
    driver.commands.send(Cmd::RekeyIke).unwrap();
    wait_for(10, "our IKE SA rekey", || {
        driver
            .status()
            .first()
            .is_some_and(|s| s.ike_spis != before)
    });
    let before = driver.status()[0].ike_spis.clone();
    let (ok, text) = lab.swanctl(&["--rekey", "--ike", "home"]);
    assert!(ok, "{text}");
    wait_for(10, "strongSwan's IKE SA rekey", || {
        driver
            .status()
            .first()
            .is_some_and(|s| s.ike_spis != before)
    });
    std::thread::sleep(Duration::from_secs(2));
    let sas = lab.list_sas();
    assert_eq!(sas.matches("state=ESTABLISHED").count(), 1, "{sas}");

    // Shutdown: our DELETE reaches strongSwan.
    driver.commands.send(Cmd::Close).unwrap();
    wait_for(10, "strongSwan has no SA", || {
        !lab.list_sas().contains("state=")
    });
    assert!(!lab.log().contains("AUTHENTICATION_FAILED"));
}

/// A strongSwan client with P-256 certificates (ECDSA with SHA-256 under RFC 7427) that
/// guesses P-256 for its KE while our server prefers X25519 and takes P-256 too: no
/// INVALID_KE round trip; then a server that takes X25519 only: INVALID_KE_PAYLOAD, and
/// strongSwan retries with X25519.
#[test]
fn strongswan_client_with_p256_certificates_and_group_negotiation() {
    if !lab_can_run("strongswan interop") {
        return;
    }
    for (tag, server_ike, expect) in [
        (
            "c",
            vec!["aes128gcm16-prfsha256-x25519-ecp256"],
            "aes128gcm16-prfsha256-ecp256",
        ),
        (
            "d",
            vec!["aes256gcm16-prfsha256-x25519"],
            "aes256gcm16-prfsha256-x25519",
        ),
    ] {
        let client_ip = Ipv4Addr::new(192, 0, 2, 2);
        let mut lab = Lab::new(tag, client_ip, SERVER_ADDR);
        let pki = Pki::new(&rcgen::PKCS_ECDSA_P256_SHA256);
        let pki = Pki {
            client: pki.ca.leaf(CLIENT_NAME, 100, Validity::Wide),
            server: pki.ca.server_leaf(SERVER_NAME, 101, Validity::Wide),
            ..pki
        };
        let setup = Setup {
            alg: &rcgen::PKCS_ECDSA_P256_SHA256,
            server_ike,
            server_esp: vec!["aes128gcm16-x25519-ecp256", "aes256gcm16-x25519-ecp256"],
            ..Setup::default()
        };
        let config = server_config(&setup, &pki);
        let driver = Driver::start(lab.ours.name(), SERVER_ADDR, move |now, rng| {
            Endpoint::responder(config, now, rng)
        });
        lab.start_charon(
            &pki,
            false,
            &format!(
                r#"connections {{
  home {{
    version = 2
    local_addrs = {client_ip}
    remote_addrs = {SERVER_ADDR}
    proposals = aes128gcm16-aes256gcm16-prfsha256-ecp256-curve25519
    local {{ auth = pubkey
            certs = me.pem
            id = {CLIENT_NAME} }}
    remote {{ auth = pubkey
             id = {SERVER_NAME} }}
    children {{
      v6 {{ local_ts = 2001:db8:1::2/128
           remote_ts = ::/0
           esp_proposals = aes256gcm16-aes128gcm16-x25519
           mode = tunnel
           start_action = none }}
    }}
  }}
}}
"#
            ),
        );
        let (ok, text) = lab.swanctl(&["--initiate", "--child", "v6", "--timeout", "15"]);
        assert!(ok, "{tag}: strongSwan could not establish: {text}");
        driver.wait(5, "PeerUp", |o| {
            o.iter().any(|o| matches!(o, Output::PeerUp { .. }))
        });
        assert_eq!(driver.status()[0].ike_proposal, expect, "{tag}");
        let sa = &driver.installs()[0];
        // strongSwan lists AES-256 first; we take our own first preference it offers.
        assert_eq!(
            sa.key_in.alg(),
            hometun_control::AeadAlg::AesGcm128,
            "{tag}"
        );
        let log = lab.log();
        assert!(
            log.contains("authentication of 'vps.example' with ECDSA_WITH_SHA256_DER successful"),
            "{tag}"
        );
        let retried = log.contains("peer didn't accept DH group ECP_256, it requested CURVE_25519");
        assert_eq!(retried, tag == "d", "{tag}: INVALID_KE_PAYLOAD round trip");
        // No NAT, but kernel-libipsec forces UDP encapsulation by faking one: we follow.
        assert_eq!(
            sa.endpoint.encap,
            Encapsulation::Udp {
                local_port: 4500,
                remote_port: 4500
            },
            "{tag}"
        );
    }
}
