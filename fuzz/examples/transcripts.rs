//! Seeds from the harnesses' own transcripts: an honest home and server (the IKE world of the
//! deep targets) connect, rekey a CHILD SA both ways and the IKE SA, check liveness, move and
//! close; what went over the wire and through the SA channel becomes seeds of the targets that
//! parse it. Written as `DIR/<target>/transcript-<n>`:
//!
//! - `ike_message`: every IKE message;
//! - `ike_responder`: the home's IKE_SA_INIT and IKE_AUTH requests as datagram records;
//! - `ike_sk_chain`: the inner payloads of every protected message, as the target reads them
//!   (first payload type, then the chain and a zero pad length);
//! - `control_message`: the SA channel requests (Install, Delete, UpdateEndpoint, AllowPeer)
//!   as frames.
//!
//! Usage: `cargo run --example transcripts -- fuzz/corpus` (from the repository root, with
//! `--manifest-path fuzz/Cargo.toml`), then minimize with `cargo fuzz cmin`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hometun_control::{Envelope, Request, encode_frame};
use hometun_fuzz::ike_world::{Config, Side, World};
use hometun_ike::io::Tamper;
use hometun_ike::wire::{Header, Payload, emit_payloads, first_payload_type, payloads_len};

/// Records the inner payloads of every protected message an endpoint sends.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

impl Tamper for Recorder {
    fn outgoing(&mut self, _header: &Header, payloads: &mut Vec<Payload>) {
        let mut chain = vec![first_payload_type(payloads).0];
        let start = chain.len();
        chain.resize(start + payloads_len(payloads), 0);
        if emit_payloads(payloads, &mut chain[start..]).is_ok() {
            // No padding: the pad length byte.
            chain.push(0);
            self.0.lock().expect("not poisoned").push(chain);
        }
    }
}

fn write(dir: &Path, target: &str, n: usize, bytes: &[u8]) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(format!("transcript-{n}")), bytes).expect("seed written");
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    let mut requests: Vec<Request> = Vec::new();
    let mut datagrams = Vec::new();
    let recorder = Recorder::default();
    for config in [0u8, 0x13] {
        let mut world = World::new(Config::from_byte(config), 11, Side::Server, &[]);
        world.home.endpoint.set_tamper(Box::new(recorder.clone()));
        world.server.endpoint.set_tamper(Box::new(recorder.clone()));
        world.run(Duration::from_secs(2));
        let mut seen = |world: &World| {
            for node in [&world.home, &world.server] {
                for i in node.forwarder.installed.values() {
                    requests.push(Request::Install(i.sa.clone()));
                    requests.push(Request::Delete {
                        spi_in: i.sa.spi_in,
                    });
                    requests.push(Request::UpdateEndpoint {
                        peer: i.sa.peer,
                        endpoint: i.sa.endpoint,
                    });
                }
                for (peer, prefixes) in &node.forwarder.grants {
                    requests.push(Request::AllowPeer {
                        peer: hometun_control::PeerId(*peer),
                        prefixes: prefixes.clone(),
                    });
                }
            }
        };
        seen(&world);
        world.limit(Side::Home, 0, 0);
        world.run(Duration::from_secs(12));
        world.limit(Side::Server, 0, 0);
        world.run(Duration::from_secs(40));
        seen(&world);
        world.home_moves(1);
        world.run(Duration::from_secs(5));
        datagrams.extend(world.captured.iter().cloned());
        world.close_and_check();
    }
    for (n, d) in datagrams.iter().enumerate() {
        write(&dir, "ike_message", n, &d.data);
    }
    // ike_responder records: tag (datagram, source 0, port bit 7), length, bytes.
    for (k, d) in datagrams
        .iter()
        .filter(|d| {
            d.to == Side::Server && (d.data.get(18) == Some(&34) || d.data.get(18) == Some(&35))
        })
        .take(4)
        .enumerate()
    {
        let tag = if d.dst.port() == 4500 { 0x81 } else { 0x01 };
        let mut record = vec![tag];
        record.extend_from_slice(&(d.data.len() as u16).to_be_bytes());
        record.extend_from_slice(&d.data);
        // Then a second later (the timers run).
        record.extend_from_slice(&[0, 10]);
        write(&dir, "ike_responder", k, &record);
    }
    let chains = recorder.0.lock().expect("not poisoned").clone();
    for (k, chain) in chains.iter().enumerate() {
        write(&dir, "ike_sk_chain", k, chain);
    }
    for (k, request) in requests.into_iter().enumerate() {
        let frame = encode_frame(&Envelope {
            id: k as u64,
            request,
        })
        .expect("a request encodes");
        write(&dir, "control_message", k, &frame);
    }
    eprintln!(
        "wrote {} IKE messages, {} inner chains into {}",
        datagrams.len(),
        chains.len(),
        dir.display()
    );
}
