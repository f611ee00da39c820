//! The harnesses do what they stand for: an honest run brings the tunnel up and leaves nothing
//! behind, the invariants fire on what they must catch, and a hostile peer's edit reaches the
//! victim (a harness that never got past the handshake, or whose checks cannot fail, would
//! fuzz nothing).

use std::time::Duration;

use hometun_control::Request;
use hometun_fuzz::ike_world::{Config, Side, World};

fn up(world: &World) {
    assert_eq!(world.home.peer_ups, 1, "the home is up");
    assert_eq!(world.server.peer_ups, 1, "the server is up");
    assert_eq!(world.home.forwarder.installed.len(), 1);
    assert_eq!(world.server.forwarder.installed.len(), 1);
    let home = world.home.forwarder.installed.values().next().unwrap();
    let server = world.server.forwarder.installed.values().next().unwrap();
    assert_eq!(home.sa.spi_out, server.sa.spi_in);
    assert_eq!(home.sa.key_out, server.sa.key_in);
}

#[test]
fn an_honest_run_brings_the_tunnel_up_and_leaves_nothing_behind() {
    for config in [0u8, 1, 0x12, 0x2c, 0x46, 0xff] {
        let mut world = World::new(Config::from_byte(config), 7, Side::Server, &[]);
        world.run(Duration::from_secs(2));
        up(&world);
        world.check();
        // A CHILD SA rekey and an IKE SA rekey, then quiet.
        world.limit(Side::Home, 0, 0);
        world.run(Duration::from_secs(60));
        world.check();
        world.check_settled();
        // Configs with bits 1-2 both set offer PFS groups the other side does not take: their
        // rekeys fail by design.
        let rekeys = world.home.endpoint.counters().child_rekeys;
        assert!(rekeys >= 1 || config & 6 == 6, "config {config:#x}");
        world.close_and_check();
    }
}

#[test]
#[should_panic(expected = "outside the home's")]
fn an_install_outside_the_home_prefix_is_caught() {
    let mut world = World::new(Config::from_byte(0), 7, Side::Server, &[]);
    world.run(Duration::from_secs(2));
    let mut sa = world
        .server
        .forwarder
        .installed
        .values()
        .next()
        .unwrap()
        .sa
        .clone();
    sa.spi_in.0 ^= 1;
    sa.remote_ts = vec!["2001:db8:2::/64".parse().unwrap()];
    world
        .server
        .forwarder
        .apply(&Request::Install(sa), world.clock.offset)
        .ok();
    world.flush();
}

#[test]
#[should_panic(expected = "in the status but not installed")]
fn a_child_sa_without_its_pair_is_caught() {
    let mut world = World::new(Config::from_byte(0), 7, Side::Server, &[]);
    world.run(Duration::from_secs(2));
    let spi = *world.server.forwarder.installed.keys().next().unwrap();
    world.server.forwarder.installed.remove(&spi);
    world.check();
}

/// The hostile home answers the server's rekey with another home's prefix and ::/0 (the
/// script: nothing for IKE_AUTH, then one edit of the rekey answer's selectors). The edit
/// reaches the server, which refuses it and installs nothing new.
#[test]
fn a_hostile_edit_reaches_the_server_and_is_refused() {
    let script = [0, 1, 6, 1, 0, 2, 1, 0, 4];
    let mut world = World::new(Config::from_byte(0), 7, Side::Server, &script);
    world.run(Duration::from_secs(2));
    up(&world);
    world.limit(Side::Server, 0, 0);
    world.run(Duration::from_secs(1));
    world.check();
    assert_eq!(world.hostile.state().changed, 1, "the answer was changed");
    assert!(world.server.endpoint.counters().child_rekeys_failed >= 1);
    assert_eq!(
        world.server.forwarder.installs().len(),
        1,
        "nothing new installed"
    );
}

/// A full established-target input: handshake, events, settle, close.
#[test]
fn an_established_input_runs_to_the_end() {
    let mut input = vec![0, 0, 0, 0, 0, 0, 0, 9, 0x40, 0, 12];
    // Soft limit at the home, run 1 s, IKE rekey by the server, run 20 s, NAT rebinding,
    // deliver all.
    input.extend_from_slice(&[8, 0, 0, 0, 7, 1, 10, 1, 7, 20, 19, 1]);
    hometun_fuzz::established::run(&input, Side::Server);
    hometun_fuzz::established::run(&input, Side::Home);
}
