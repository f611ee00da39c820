//! What a full handshake and a CHILD SA rekey cost the responder, without I/O: the sans-IO
//! responder [`Endpoint`] answers fresh initiator endpoints in memory (IKE_SA_INIT, IKE_AUTH
//! with Ed25519 certificates, X25519, AES-GCM, one CHILD SA; then the initiator's DELETE), and
//! the time spent inside the responder's calls is the protocol's CPU floor per handshake. Beside
//! it, each cryptographic primitive the responder runs, alone, so the floor can be read as a
//! sum of parts.
//!
//! Times are the thread's CPU time (a busy machine slows them less than wall time).
//!
//! `cargo bench -p hometun-ike --bench handshake` (bench/handshakes.sh prints it next to the
//! daemons' measured CPU per handshake).
#![allow(clippy::unwrap_used, missing_docs, dead_code)]
// A benchmark is a driver that must read the clock.
#![allow(clippy::disallowed_methods)]

#[path = "../tests/sim_support/mod.rs"]
mod sim_support;

use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddrV4;
use std::time::Duration;

use hometun_control::{AeadAlg, Direction, Event, LimitKind, Request, Spi};
use hometun_ike::crypto::auth::{self, AuthRole};
use hometun_ike::crypto::{DhGroup, IkeSaKeys, KeyExchange, PeerIdentity, SkGcm, VerifiedPeer};
use hometun_ike::endpoint::{Authorizer, Endpoint, Output, PrefixRefusal, Transmit};
use hometun_ike::settings::IkeRekeyPolicy;
use ipnet::Ipv6Net;
use sim_support::{CLIENT_NAME, Clock, Pki, SeededRandom, Setup, client_config, server_config};

const HANDSHAKES: usize = 400;
const REKEYS: usize = 400;
const ROUNDS: usize = 5;
/// Homes up on the responder while `handshakes` measures, in the second figure.
const HELD_HOMES: usize = 1000;

/// Median of `ROUNDS` runs of `f`, each returning µs per operation.
fn median(mut f: impl FnMut() -> f64) -> f64 {
    let mut runs: Vec<f64> = (0..ROUNDS).map(|_| f()).collect();
    runs.sort_by(f64::total_cmp);
    runs[ROUNDS / 2]
}

/// This thread's CPU time: what a busy machine's other work does not add to.
fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// µs of CPU per call of `f`, over `n` calls.
fn per_call(n: usize, mut f: impl FnMut()) -> f64 {
    let start = cpu_time();
    for _ in 0..n {
        f();
    }
    (cpu_time() - start).as_secs_f64() * 1e6 / n as f64
}

/// Time spent inside the responder, added up.
struct Responder {
    endpoint: Endpoint,
    busy: Duration,
}

impl Responder {
    fn call<T>(&mut self, f: impl FnOnce(&mut Endpoint) -> T) -> T {
        let start = cpu_time();
        let result = f(&mut self.endpoint);
        self.busy += cpu_time() - start;
        result
    }

    /// Hands the responder an event, then asks for its next deadline, as the daemon's driver
    /// does after every event.
    fn event(&mut self, f: impl FnOnce(&mut Endpoint)) {
        self.call(|e| {
            f(e);
            black_box(e.poll_timeout());
        })
    }

    /// Takes the responder's messages, answering its forwarder requests as a forwarder that
    /// accepts everything would (nothing to tell the endpoint).
    fn drain(&mut self) -> Vec<Transmit> {
        self.call(|e| {
            while e.poll_output().is_some() {}
            let mut out = Vec::new();
            while let Some(t) = e.poll_transmit() {
                out.push(t);
            }
            out
        })
    }
}

/// Passes messages between an initiator and the responder until neither has more to say.
fn exchange(
    initiator: &mut Endpoint,
    responder: &mut Responder,
    clock: &Clock,
    rng: &mut SeededRandom,
    installs: &mut Vec<u32>,
) {
    loop {
        let mut to_responder = Vec::new();
        while let Some(t) = initiator.poll_transmit() {
            to_responder.push(t);
        }
        while let Some(output) = initiator.poll_output() {
            if let Output::Forwarder(Request::Install(sa)) = output {
                installs.push(sa.spi_in.0);
            }
        }
        if to_responder.is_empty() {
            return;
        }
        for t in to_responder {
            let now = clock.now();
            responder.event(|e| e.handle_datagram(now, t.remote, t.local, &t.data, rng));
            for answer in responder.drain() {
                initiator.handle_datagram(
                    clock.now(),
                    answer.remote,
                    answer.local,
                    &answer.data,
                    rng,
                );
            }
        }
    }
}

/// Homes that keep an IKE SA with its CHILD SA up while others come and go, as on a server
/// with many homes: each its own certificate and /64.
struct HeldHomes {
    homes: Vec<HeldHome>,
}

struct HeldHome {
    name: String,
    leaf: sim_support::Leaf,
    prefix: Ipv6Net,
}

impl HeldHomes {
    fn new(pki: &Pki, count: usize) -> Self {
        let homes = (0..count)
            .map(|i| {
                let name = format!("held{i}.example");
                let leaf = pki
                    .ca
                    .leaf(&name, 1000 + i as u64, sim_support::Validity::Good);
                let prefix = format!("2001:db8:{:x}:{:x}::/64", 0x100 + i / 0x10000, i % 0x10000);
                HeldHome {
                    name,
                    leaf,
                    prefix: prefix.parse().unwrap(),
                }
            })
            .collect();
        Self { homes }
    }

    /// The responder's authorizer: the bench's home and every held one.
    fn authorizer(&self, setup: &Setup) -> NamedAuthorizer {
        let mut homes: HashMap<String, Vec<Ipv6Net>> = self
            .homes
            .iter()
            .map(|home| (home.name.clone(), vec![home.prefix]))
            .collect();
        homes.insert(CLIENT_NAME.into(), setup.server_allows.clone());
        NamedAuthorizer(homes)
    }

    /// Brings every held home up against `responder`; returns their endpoints, which must
    /// stay alive (each keeps its IKE SA).
    fn bring_up(
        &self,
        setup: &Setup,
        pki: &Pki,
        responder: &mut Responder,
        clock: &Clock,
        rng: &mut SeededRandom,
    ) -> Vec<Endpoint> {
        self.homes
            .iter()
            .map(|home| {
                let mut config = client_config(setup, pki);
                config.common.chain = vec![home.leaf.der.clone()];
                config.common.key = std::sync::Arc::new(home.leaf.private_key());
                config.common.identity = PeerIdentity::Fqdn(home.name.clone());
                config.local_prefixes = vec![home.prefix];
                let mut endpoint = Endpoint::initiator(config, clock.now(), rng);
                let mut installs = Vec::new();
                exchange(&mut endpoint, responder, clock, rng, &mut installs);
                assert_eq!(installs.len(), 1, "held home {} did not come up", home.name);
                endpoint
            })
            .collect()
    }
}

/// Prefixes by identity, looked up in a hash map as the daemon's registry does (the test
/// support's list would add a linear search per handshake).
struct NamedAuthorizer(HashMap<String, Vec<Ipv6Net>>);

impl Authorizer for NamedAuthorizer {
    fn prefixes(
        &self,
        identity: &PeerIdentity,
        _peer: &VerifiedPeer,
    ) -> Result<Vec<Ipv6Net>, PrefixRefusal> {
        self.0
            .get(&identity.to_string())
            .cloned()
            .ok_or_else(|| PrefixRefusal::NoPrefix(identity.clone()))
    }
}

/// µs of responder time per full handshake (IKE_SA_INIT, IKE_AUTH, DELETE of the IKE SA),
/// while `held` other homes keep their SAs up.
fn handshakes(setup: &Setup, pki: &Pki, held: &HeldHomes) -> f64 {
    let clock = Clock::new();
    let mut rng = SeededRandom::new(11);
    let mut config = server_config(setup, pki);
    config.authorizer = Box::new(held.authorizer(setup));
    let mut responder = Responder {
        endpoint: Endpoint::responder(config, clock.now(), &mut rng),
        busy: Duration::ZERO,
    };
    let _held_up = held.bring_up(setup, pki, &mut responder, &clock, &mut rng);
    responder.busy = Duration::ZERO;
    for _ in 0..HANDSHAKES {
        let mut initiator = Endpoint::initiator(client_config(setup, pki), clock.now(), &mut rng);
        let mut installs = Vec::new();
        exchange(
            &mut initiator,
            &mut responder,
            &clock,
            &mut rng,
            &mut installs,
        );
        assert_eq!(installs.len(), 1, "the handshake did not complete");
        initiator.close(clock.now(), &mut rng);
        exchange(
            &mut initiator,
            &mut responder,
            &clock,
            &mut rng,
            &mut installs,
        );
    }
    responder.busy.as_secs_f64() * 1e6 / HANDSHAKES as f64
}

/// µs of responder time per CHILD SA rekey with a key exchange (CREATE_CHILD_SA with KE, the
/// default; then the INFORMATIONAL that deletes the old pair), under `policy` for the IKE SA
/// (the default rekeys it too after each CHILD SA rekey, also with a key exchange).
fn rekeys(setup: &Setup, pki: &Pki, policy: IkeRekeyPolicy) -> f64 {
    let mut setup = setup.clone();
    setup.ike_rekey = policy;
    let mut clock = Clock::new();
    let mut rng = SeededRandom::new(12);
    let mut responder = Responder {
        endpoint: Endpoint::responder(server_config(&setup, pki), clock.now(), &mut rng),
        busy: Duration::ZERO,
    };
    let mut initiator = Endpoint::initiator(client_config(&setup, pki), clock.now(), &mut rng);
    let mut installs = Vec::new();
    exchange(
        &mut initiator,
        &mut responder,
        &clock,
        &mut rng,
        &mut installs,
    );
    responder.busy = Duration::ZERO;
    for _ in 0..REKEYS {
        let spi_in = *installs.last().unwrap();
        let peer = hometun_control::PeerId(1);
        initiator.handle_forwarder_event(
            clock.now(),
            &Event::SoftLimit {
                peer,
                spi_in: Spi(spi_in),
                direction: Direction::Outbound,
                kind: LimitKind::Bytes,
            },
            &mut rng,
        );
        let before = installs.len();
        exchange(
            &mut initiator,
            &mut responder,
            &clock,
            &mut rng,
            &mut installs,
        );
        assert_eq!(installs.len(), before + 1, "the rekey did not complete");
        // Make-before-break: the old pair goes once the new one is old enough. 21 s: the
        // responder grants a peer one rekey per 10 s beyond a small burst, and each round here
        // asks for two (the CHILD SA's and, by default, the IKE SA's).
        clock.offset += Duration::from_secs(21);
        initiator.handle_timeout(clock.now(), &mut rng);
        let now = clock.now();
        responder.event(|e| e.handle_timeout(now, &mut rng));
        exchange(
            &mut initiator,
            &mut responder,
            &clock,
            &mut rng,
            &mut installs,
        );
    }
    responder.busy.as_secs_f64() * 1e6 / REKEYS as f64
}

fn main() {
    // The daemon's default proposals: CHILD SA rekeys carry a key exchange (PFS).
    let setup = Setup {
        client_esp: vec!["aes128gcm16-x25519-ecp256", "aes256gcm16-x25519-ecp256"],
        server_esp: vec!["aes128gcm16-x25519-ecp256", "aes256gcm16-x25519-ecp256"],
        ..Setup::default()
    };
    let pki = Pki::new(setup.alg);
    println!("responder CPU, sans-IO endpoint in memory (median of {ROUNDS} runs):");
    let alone = HeldHomes::new(&pki, 0);
    let full = median(|| handshakes(&setup, &pki, &alone));
    println!("  full handshake (IKE_SA_INIT + IKE_AUTH + DELETE)      {full:>7.1} us");
    let many = HeldHomes::new(&pki, HELD_HOMES);
    let among = median(|| handshakes(&setup, &pki, &many));
    println!("  the same while {HELD_HOMES} other homes are up            {among:>7.1} us");
    let never = IkeRekeyPolicy {
        after_child_rekeys: 0,
        ..IkeRekeyPolicy::default()
    };
    let rekey = median(|| rekeys(&setup, &pki, never));
    println!("  CHILD SA rekey with KE (CREATE_CHILD_SA + DELETE)     {rekey:>7.1} us");
    let both = median(|| rekeys(&setup, &pki, IkeRekeyPolicy::default()));
    println!("  the same and the IKE SA rekey that follows (default)  {both:>7.1} us");

    println!("primitives (median of {ROUNDS} runs):");
    let mut rng = SeededRandom::new(3);
    let random = |rng: &mut SeededRandom| {
        let mut bytes = [0u8; 32];
        hometun_ike::endpoint::Random::fill(rng, &mut bytes);
        bytes
    };
    let keygen = median(|| {
        per_call(500, || {
            black_box(KeyExchange::new(DhGroup::Curve25519, &random(&mut rng)).unwrap());
        })
    });
    let ours = KeyExchange::new(DhGroup::Curve25519, &random(&mut rng)).unwrap();
    let theirs = KeyExchange::new(DhGroup::Curve25519, &random(&mut rng)).unwrap();
    let dh = median(|| {
        per_call(500, || {
            black_box(ours.shared_secret(theirs.public_ke_data()).unwrap());
        })
    });
    let key = pki.server.private_key();
    let octets = vec![0x5au8; 520];
    let sign = median(|| {
        per_call(500, || {
            black_box(auth::sign(&key, &octets));
        })
    });
    let signature = auth::sign(&key, &octets);
    let public = key.public_key();
    let verify = median(|| {
        per_call(500, || {
            black_box(auth::verify(&public, &octets, &signature).unwrap());
        })
    });
    let verifier = pki.ca.verifier();
    let identity = PeerIdentity::Fqdn(CLIENT_NAME.into());
    let wall = sim_support::wall_2028();
    // A home's first handshake checks the CA's signature on its certificate; later ones find
    // the check remembered (hometun_certs::signature_memo).
    let chain_first = median(|| {
        per_call(300, || {
            hometun_certs::signature_memo::forget_all();
            black_box(
                verifier
                    .verify(&pki.client.der, &[], &identity, wall)
                    .unwrap(),
            );
        })
    });
    let chain_again = median(|| {
        per_call(300, || {
            black_box(
                verifier
                    .verify(&pki.client.der, &[], &identity, wall)
                    .unwrap(),
            );
        })
    });
    let (ni, nr) = ([1u8; 32], [2u8; 32]);
    let g_ir = ours.shared_secret(theirs.public_ke_data()).unwrap();
    let keys = median(|| {
        per_call(2000, || {
            black_box(IkeSaKeys::initial(AeadAlg::AesGcm128, &ni, &nr, &g_ir, 1, 2).unwrap());
        })
    });
    let ike_keys = IkeSaKeys::initial(AeadAlg::AesGcm128, &ni, &nr, &g_ir, 1, 2).unwrap();
    let child = median(|| {
        per_call(2000, || {
            black_box(
                ike_keys
                    .child_sa_keys(AeadAlg::AesGcm128, Some(&g_ir), &ni, &nr)
                    .unwrap(),
            );
        })
    });
    let octets_auth = median(|| {
        per_call(2000, || {
            black_box(auth::auth_octets(
                AuthRole::Initiator,
                &ike_keys,
                &octets,
                &nr,
                b"\x02\0\0\0home.example",
            ));
        })
    });
    let cipher = SkGcm::new(AeadAlg::AesGcm128, ike_keys.sk_er()).unwrap();
    let mut message = vec![0u8; 1200];
    let sk = median(|| {
        per_call(2000, || {
            let icv = cipher
                .seal_in_place(&[9; 8], &[0; 32], &mut message)
                .unwrap();
            cipher
                .open_in_place(&[9; 8], &[0; 32], &mut message, &icv)
                .unwrap();
        })
    });
    let rows = [
        ("X25519 key pair", keygen, 1.0),
        ("X25519 shared secret", dh, 1.0),
        ("Ed25519 sign (our AUTH)", sign, 1.0),
        ("Ed25519 verify (the peer's AUTH)", verify, 1.0),
        (
            "certificate chain check, first (Ed25519 verify inside)",
            chain_first,
            1.0,
        ),
        ("SKEYSEED and SK_* (HKDF-SHA256)", keys, 1.0),
        ("CHILD SA KEYMAT", child, 1.0),
        ("AUTH octets (two, with prf)", octets_auth, 2.0),
        ("SK payload seal + open, 1200 bytes (x2 messages)", sk, 2.0),
    ];
    let mut floor = 0.0;
    for (what, us, times) in rows {
        println!(
            "  {what:<52} {us:>7.1} us{}",
            if times > 1.0 {
                format!(" x{times:.0}")
            } else {
                String::new()
            }
        );
        floor += us * times;
    }
    println!("  sum for one full handshake (the crypto floor)        {floor:>7.1} us");
    // The handshakes above repeat one home, whose certificate's signature is then remembered.
    let floor_again = floor - chain_first + chain_again;
    println!("  certificate chain check, again (signature remembered) {chain_again:>6.1} us");
    println!("  the floor for a home seen before                     {floor_again:>7.1} us");
    println!(
        "  the endpoint's own work beyond the primitives        {:>7.1} us (full handshake of a \
         home seen before, less its floor)",
        full - floor_again
    );
    let _ = SocketAddrV4::new(sim_support::SERVER_ADDR, 500);
}
