//! The scenario of the two established-SA targets: a real IKE_SA_INIT and IKE_AUTH between a
//! home and a server, one of them hostile, then whatever order of events the fuzzer picks.
//!
//! Input: 8 bytes seed (the endpoints' randomness), 1 byte [`Config`], 2 bytes N, then N bytes
//! of events and the rest as the hostile peer's script ([`crate::hostile`]). Each event is an
//! opcode byte and its arguments (see [`event`]). After the events the hostile peer turns
//! honest, the world runs for two minutes, the status and the forwarders must agree (but for
//! pairs deleted in the last 2 s, whose inbound SA lingers for packets in flight), and after
//! closing both endpoints nothing may be left: no pair, no SPI.

use std::net::SocketAddrV4;
use std::time::Duration;

use crate::choices::{Choices, Script};
use crate::ike_world::{Config, Datagram, FORGED, Side, World};

/// Runs one input with the peer of `victim` hostile.
pub fn run(data: &[u8], victim: Side) {
    let mut c = Choices::new(data);
    let (Some(seed), Some(config), Some(split)) = (c.u64(), c.byte(), c.u16()) else {
        return;
    };
    let rest = c.rest();
    let split = usize::from(split).min(rest.len());
    let (events, script) = rest.split_at(split);
    let mut world = World::new(Config::from_byte(config), seed, victim, script);
    // The handshake, unless the events say otherwise: the first event runs after it.
    world.run(Duration::from_millis(100));
    world.check();
    let mut c = Choices::new(events);
    let mut count = 0;
    while let Some(op) = c.byte() {
        if world.trace {
            eprintln!("event {count} at {:?}: {op}", world.clock.offset);
        }
        if event(&mut world, op, &mut c).is_none() {
            break;
        }
        world.check();
        if world.trace {
            eprintln!(
                "  home SPIs {:?}, pairs {:x?}; server SPIs {:?}, pairs {:x?}; in flight {} captured {}",
                world.home.endpoint.spis_reserved(),
                world.home.forwarder.installed.keys().collect::<Vec<_>>(),
                world.server.endpoint.spis_reserved(),
                world.server.forwarder.installed.keys().collect::<Vec<_>>(),
                world.in_flight.len(),
                world.captured.len()
            );
        }
        count += 1;
    }
    // The peer turns honest; everything settles.
    world.hostile.state().script = Script::default();
    for _ in 0..4 {
        world.run(Duration::from_secs(30));
        world.check();
        if world.trace {
            eprintln!(
                "  settling: home SPIs {:?}, pairs {:x?}; server SPIs {:?}, pairs {:x?}",
                world.home.endpoint.spis_reserved(),
                world.home.forwarder.installed.keys().collect::<Vec<_>>(),
                world.server.endpoint.spis_reserved(),
                world.server.forwarder.installed.keys().collect::<Vec<_>>(),
            );
        }
    }
    world.check_settled();
    world.close_and_check();
}

/// Carries out one event; `None` when the input ran out.
pub fn event(world: &mut World, op: u8, c: &mut Choices<'_>) -> Option<()> {
    let side = |b: u8| if b & 1 == 0 { Side::Home } else { Side::Server };
    match op % 20 {
        // The network: deliver, drop, duplicate one datagram in flight (any order).
        0 => {
            let i = c.byte()?;
            if !world.in_flight.is_empty() {
                let d = world
                    .in_flight
                    .remove(usize::from(i) % world.in_flight.len());
                world.deliver(&d, None);
            }
        }
        1 => {
            let batch = std::mem::take(&mut world.in_flight);
            for d in &batch {
                world.deliver(d, None);
            }
        }
        2 => {
            let i = c.byte()?;
            if !world.in_flight.is_empty() {
                world
                    .in_flight
                    .remove(usize::from(i) % world.in_flight.len());
            }
        }
        3 => {
            let i = c.byte()?;
            if !world.in_flight.is_empty() {
                let d = world.in_flight[usize::from(i) % world.in_flight.len()].clone();
                world.in_flight.push(d);
            }
        }
        // A captured datagram again: as it was, from a forged source, on the other port, to
        // its sender, or with one byte changed.
        4 => {
            let (j, variant) = (c.byte()?, c.byte()?);
            if world.captured.is_empty() {
                return Some(());
            }
            let mut d: Datagram = world.captured[usize::from(j) % world.captured.len()].clone();
            let mut forged = None;
            if variant & 1 != 0 {
                forged = Some(SocketAddrV4::new(FORGED, 500));
            }
            if variant & 2 != 0 {
                let port = if d.dst.port() == 500 { 4500 } else { 500 };
                d.dst = SocketAddrV4::new(*d.dst.ip(), port);
            }
            if variant & 4 != 0 {
                d.to = d.to.other();
                let (src, dst) = (d.src, d.dst);
                d.dst = src;
                d.src = dst;
            }
            if variant & 8 != 0 && !d.data.is_empty() {
                let at = usize::from(c.u16()?) % d.data.len();
                d.data[at] ^= c.byte()?.max(1);
            }
            world.deliver(&d, forged);
        }
        // Time: quietly (the network holds its datagrams), or with the network running.
        5 => {
            let step = Duration::from_millis(20) * u32::from(c.byte()?);
            world.advance(step, false);
        }
        6 => world.run(Duration::from_millis(100) * u32::from(c.byte()?)),
        7 => world.run(Duration::from_secs(u64::from(c.byte()?))),
        // The forwarder: limits, counters, traffic, refused installs, moves.
        8 | 9 => {
            let (who, index, kind) = (c.byte()?, c.byte()?, c.byte()?);
            let kind = if op % 20 == 8 { 0 } else { kind };
            world.limit(side(who), index, kind);
        }
        10 => {
            let who = side(c.byte()?);
            let now = world.clock.now();
            let peers: Vec<_> = world
                .node_ref(who)
                .endpoint
                .status(now)
                .iter()
                .map(|p| p.peer)
                .collect();
            let rng = &mut world.rng;
            let node = match who {
                Side::Home => &mut world.home,
                Side::Server => &mut world.server,
            };
            for peer in peers {
                node.endpoint.rekey_ike_sa(now, peer, rng);
            }
            world.flush();
        }
        11 => world.home_moves(c.byte()?),
        12 => {
            let (who, mask) = (side(c.byte()?), c.byte()?);
            let offset = world.clock.offset;
            for (k, installed) in world.node(who).forwarder.installed.values_mut().enumerate() {
                if mask & (1 << (k % 8)) != 0 {
                    installed.rx_packets += 1;
                    installed.tx_packets += 1;
                    installed.last_rx = Some(offset);
                }
            }
            world.report_counters();
        }
        13 => world.node(side(c.byte()?)).forwarder.refuse_installs += 1,
        14 => world.server_forwarder_moves_home(),
        15 => world.esp(side(c.byte()?)),
        // The hostile peer: starts over, re-authenticates, shuts down.
        16 => {
            let reauthenticate = c.byte()? & 1 == 0;
            world.restart_hostile(reauthenticate);
        }
        17 => {
            // Unauthenticated bytes for the victim with a real header (its SPIs).
            let raw = c.bytes(120)?;
            if let Some(template) = world.captured.last().cloned() {
                let mut data = template.data.get(..28).unwrap_or_default().to_vec();
                data.extend_from_slice(raw);
                let len = (data.len() as u32).to_be_bytes();
                if data.len() >= 28 {
                    data[24..28].copy_from_slice(&len);
                }
                let d = Datagram { data, ..template };
                world.deliver(&d, None);
            }
        }
        18 => {
            let hostile = world.victim.other();
            let now = world.clock.now();
            let rng = &mut world.rng;
            match hostile {
                Side::Home => world.home.endpoint.close(now, rng),
                Side::Server => world.server.endpoint.close(now, rng),
            }
            world.flush();
        }
        _ => {
            // A NAT rebinding: the home's traffic comes from another public port.
            world.nat_base = world.nat_base.wrapping_add(1000);
        }
    }
    Some(())
}
