//! The scenario of `ike_initiator`: the home connects, and whoever is on the path answers its
//! IKE_SA_INIT (unauthenticated) with whatever the fuzzer builds, knowing the request (its
//! SPI, nonce, KE, addresses). A real server is there too: the fuzzer may let the home's
//! requests reach it and deliver its answers, changed or not.
//!
//! Input: 8 bytes seed, 1 byte [`Config`], then events (an opcode byte and its arguments).
//! What must hold: the home installs a pair only with keys the real server installed too (no
//! forged answer leads to an install), its selectors stay inside its prefix, it holds a
//! bounded number of IKE SAs, no timer stays due, and after closing nothing is left.

use std::collections::BTreeSet;
use std::net::SocketAddrV4;
use std::time::Duration;

use hometun_ike::crypto::{DhGroup as Group, KeyExchange, natd_hash};
use hometun_ike::wire::{
    ExchangeType, Flags, Header, Message, Notify, NotifyType, Payload, PayloadType,
};

use crate::choices::Choices;
use crate::craft::{self, Known};
use crate::hostile::{HeaderEdit, edit_payloads};
use crate::ike_world::{Config, Datagram, SERVER_ADDR, Side, World};

/// At most this many IKE SAs on the home at once (one connecting, one current, one replaced).
const MAX_HOME_SAS: usize = 3;

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut c = Choices::new(data);
    let (Some(seed), Some(config)) = (c.u64(), c.byte()) else {
        return;
    };
    let mut world = World::new(Config::from_byte(config), seed, Side::Home, &[]);
    let mut installed_by_server: BTreeSet<(u32, Vec<u8>)> = BTreeSet::new();
    while let Some(op) = c.byte() {
        if world.trace {
            eprintln!("event at {:?}: {op}", world.clock.offset);
        }
        if event(&mut world, op, &mut c).is_none() {
            break;
        }
        check(&world, &mut installed_by_server);
    }
    world.run(Duration::from_secs(60));
    check(&world, &mut installed_by_server);
    world.close_and_check();
}

/// The home's pairs are the real server's, mirrored.
fn check(world: &World, installed_by_server: &mut BTreeSet<(u32, Vec<u8>)>) {
    world.check();
    for i in world.server.forwarder.installed.values() {
        installed_by_server.insert((i.sa.spi_in.0, key_bytes(&i.sa.key_in)));
    }
    for i in world.home.forwarder.installed.values() {
        assert!(
            installed_by_server.contains(&(i.sa.spi_out.0, key_bytes(&i.sa.key_out))),
            "the home installed pair {:08x}/{:08x}, which the server never made",
            i.sa.spi_in.0,
            i.sa.spi_out.0
        );
    }
    let sas = world.home.endpoint.counters().ike_sas;
    assert!(sas <= MAX_HOME_SAS, "the home holds {sas} IKE SAs");
}

fn key_bytes(key: &hometun_control::AeadKey) -> Vec<u8> {
    let mut bytes = key.key().to_vec();
    bytes.extend_from_slice(&key.salt());
    bytes
}

/// The home's latest request of an exchange type, parsed.
fn latest_request(world: &World, exchange: ExchangeType) -> Option<(Datagram, Message)> {
    world.captured.iter().rev().find_map(|d| {
        let m = Message::parse(&d.data).ok()?;
        (d.to == Side::Server && m.header.exchange_type == exchange && !m.header.flags.response())
            .then(|| (d.clone(), m))
    })
}

/// Carries out one event; `None` when the input ran out.
fn event(world: &mut World, op: u8, c: &mut Choices<'_>) -> Option<()> {
    match op % 10 {
        0 => {
            let Some((request, message)) = latest_request(world, ExchangeType::IKE_SA_INIT) else {
                return Some(());
            };
            let answer = crafted_answer(world, c, &message)?;
            answer_home(world, &request, answer, c)?;
        }
        1 => {
            // Any bytes behind the request's SPIs.
            let raw = c.bytes16(1500)?;
            let Some((request, message)) = latest_request(world, ExchangeType::IKE_SA_INIT) else {
                return Some(());
            };
            let mut data = message.header.spi_i.to_be_bytes().to_vec();
            data.extend_from_slice(raw);
            answer_home(world, &request, data, c)?;
        }
        2 => {
            let i = c.byte()?;
            if !world.in_flight.is_empty() {
                let d = world
                    .in_flight
                    .remove(usize::from(i) % world.in_flight.len());
                world.deliver(&d, None);
            }
        }
        3 => {
            let i = c.byte()?;
            if !world.in_flight.is_empty() {
                world
                    .in_flight
                    .remove(usize::from(i) % world.in_flight.len());
            }
        }
        4 => world.advance(Duration::from_millis(50) * u32::from(c.byte()?), false),
        5 => world.run(Duration::from_millis(200) * u32::from(c.byte()?)),
        6 => {
            // A datagram the home saw or sent before, again, maybe with a byte changed.
            let (j, flip) = (c.byte()?, c.u16()?);
            if world.captured.is_empty() {
                return Some(());
            }
            let mut d = world.captured[usize::from(j) % world.captured.len()].clone();
            if flip & 0x8000 != 0 && !d.data.is_empty() {
                let at = usize::from(flip) % d.data.len();
                d.data[at] ^= 0x5a;
            }
            if d.to == Side::Server {
                // The home's own request reflected back at it.
                d.to = Side::Home;
                std::mem::swap(&mut d.src, &mut d.dst);
            }
            world.deliver(&d, None);
        }
        7 => world.home_moves(c.byte()?),
        8 => {
            // The real server's answer, changed on the way (payloads and header).
            let i = c.byte()?;
            let answers: Vec<usize> = world
                .in_flight
                .iter()
                .enumerate()
                .filter(|(_, d)| d.to == Side::Home)
                .map(|(k, _)| k)
                .collect();
            if answers.is_empty() {
                return Some(());
            }
            let d = world
                .in_flight
                .remove(answers[usize::from(i) % answers.len()]);
            let Ok(mut message) = Message::parse(&d.data) else {
                world.deliver(&d, None);
                return Some(());
            };
            if message.header.exchange_type == ExchangeType::IKE_SA_INIT {
                let known = Known::default();
                if let Some(edit) = edit_payloads(c, &mut message.payloads, &known) {
                    edit.apply(&mut message.header);
                }
                if let Ok(data) = message.to_bytes() {
                    world.deliver(&Datagram { data, ..d }, None);
                }
            } else {
                // A protected answer: change one byte (it must not open).
                let mut data = d.data.clone();
                if !data.is_empty() {
                    let at = usize::from(c.u16()?) % data.len();
                    data[at] ^= c.byte()?.max(1);
                }
                world.deliver(&Datagram { data, ..d }, None);
            }
        }
        _ => {
            // An unauthenticated answer to the home's IKE_AUTH: its SPIs, any SK payload.
            let Some((request, message)) = latest_request(world, ExchangeType::IKE_AUTH) else {
                return Some(());
            };
            let mut header = message.header.clone();
            header.flags = Flags::new(false, true);
            header.next_payload = PayloadType::SK;
            let body = c.bytes(120)?;
            let mut data = vec![0u8; 28];
            header.length = (28 + 4 + body.len()) as u32;
            header.emit(&mut data).ok()?;
            data.extend_from_slice(&[0, 0]);
            data.extend_from_slice(&((4 + body.len()) as u16).to_be_bytes());
            data.extend_from_slice(body);
            answer_home(world, &request, data, c)?;
        }
    }
    Some(())
}

/// Delivers `data` to the home as an answer to `request`: from the server's address, or (now
/// and then) from another.
fn answer_home(
    world: &mut World,
    request: &Datagram,
    data: Vec<u8>,
    c: &mut Choices<'_>,
) -> Option<()> {
    let from_elsewhere = c.byte()? % 8 == 0;
    let d = Datagram {
        to: Side::Home,
        src: if from_elsewhere {
            SocketAddrV4::new(crate::ike_world::FORGED, request.dst.port())
        } else {
            request.dst
        },
        dst: world.nat_out(request.src),
        data,
        at: world.clock.offset,
    };
    world.deliver(&d, None);
    Some(())
}

/// An IKE_SA_INIT answer built from the fuzzer's choices and the request: mostly the parts
/// the home checks (its SPI, its group, NAT detection that matches or not), sometimes not.
fn crafted_answer(world: &World, c: &mut Choices<'_>, request: &Message) -> Option<Vec<u8>> {
    let spi_i = request.header.spi_i;
    let spi_r = match c.byte()? % 4 {
        0 => 0,
        _ => c.u64()? | 1,
    };
    let mut header = Header::new(
        ExchangeType::IKE_SA_INIT,
        spi_i,
        spi_r,
        Flags::new(false, true),
        0,
    );
    let their_ke = request.payloads.iter().find_map(|p| match p {
        Payload::Ke(k) => Some(k.clone()),
        _ => None,
    });
    let known = Known {
        ke: their_ke.clone(),
        ..Known::default()
    };
    let mut payloads = Vec::new();
    for _ in 0..c.byte()? % 10 {
        let payload = match c.byte()? % 12 {
            0 => {
                // The home's own proposal back (the one it can accept), with one group.
                let sa = request.payloads.iter().find_map(|p| match p {
                    Payload::Sa(sa) => Some(sa.clone()),
                    _ => None,
                })?;
                let mut proposal = sa.proposals.first()?.clone();
                let group = their_ke.as_ref().map(|k| k.group);
                proposal.transforms.retain(|t| {
                    t.transform_type != hometun_ike::wire::TransformType::DH
                        || Some(hometun_ike::wire::DhGroup(t.transform_id)) == group
                });
                Payload::Sa(hometun_ike::wire::SecurityAssociation::new(vec![proposal]))
            }
            1 => {
                // A real public key of the home's group.
                let group = their_ke
                    .as_ref()
                    .and_then(|k| Group::from_id(k.group.0))
                    .unwrap_or(Group::Curve25519);
                let mut random = [0u8; 32];
                random.copy_from_slice(c.take(32)?);
                let ke = KeyExchange::new(group, &random).ok()?;
                Payload::Ke(hometun_ike::wire::KeyExchange::new(
                    group.to_wire(),
                    ke.public_ke_data().to_vec(),
                ))
            }
            2 => Payload::Nonce(hometun_ike::wire::Nonce::new(vec![c.byte()?; 32])),
            3 | 4 => {
                // NAT detection: right for the addresses, or for others (a NAT).
                let server = SocketAddrV4::new(SERVER_ADDR, 500);
                let home = world.nat_out(SocketAddrV4::new(world.home_addr, 500));
                let (source, destination) = if c.byte()? % 2 == 0 {
                    (server, home)
                } else {
                    (SocketAddrV4::new(crate::ike_world::FORGED, 500), home)
                };
                let (kind, addr) = if c.byte()? % 2 == 0 {
                    (NotifyType::NAT_DETECTION_SOURCE_IP, source)
                } else {
                    (NotifyType::NAT_DETECTION_DESTINATION_IP, destination)
                };
                let hash = natd_hash(spi_i, spi_r, (*addr.ip()).into(), addr.port());
                Payload::Notify(Notify::new(kind, hash.to_vec()))
            }
            5 => Payload::Notify(Notify::new(NotifyType::COOKIE, c.bytes(64)?.to_vec())),
            6 => Payload::Notify(Notify::new(
                NotifyType::INVALID_KE_PAYLOAD,
                match c.byte()? % 3 {
                    0 => 19u16.to_be_bytes().to_vec(),
                    1 => 31u16.to_be_bytes().to_vec(),
                    _ => c.bytes(3)?.to_vec(),
                },
            )),
            7 => Payload::Notify(Notify::new(
                NotifyType::SIGNATURE_HASH_ALGORITHMS,
                match c.byte()? % 2 {
                    0 => vec![0, 2, 0, 5],
                    _ => c.bytes(8)?.to_vec(),
                },
            )),
            _ => craft::payload(c, &known)?,
        };
        payloads.push(payload);
    }
    if c.byte()? % 8 == 0 {
        let edit = match c.byte()? % 4 {
            0 => HeaderEdit::MessageId(1),
            1 => HeaderEdit::FlipResponse,
            2 => HeaderEdit::FlipInitiator,
            _ => HeaderEdit::Exchange(35),
        };
        edit.apply(&mut header);
    }
    Message::new(header, payloads).to_bytes().ok()
}
