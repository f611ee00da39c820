//! A home fails over between two servers, and BGP moves its prefix with it: the home comes up
//! on server A, whose BIRD announces the home's prefix to the core router; an Internet host
//! behind the core reaches the LAN host behind the home. Server A crashes (SIGKILL to the
//! server and its forwarder): the home moves to server B, B's BIRD announces the prefix, and the
//! Internet host reaches the LAN host again; the outage is measured from the kill with pings
//! every 100 ms. Server A comes back: nothing moves (the home stays on B, the core's route stays
//! via B, and no ping goes unanswered meanwhile). Both servers share one registry file, which
//! says that B holds the home.
//!
//! When the home loses its path to A while A stays up, it fails over to B, and A, told by the
//! registry (its file, or PostgreSQL) that B holds the home, drops it and withdraws its route.
//!
//! The home's liveness settings are short here (README.md, "Failover and BGP": ike.dpd_seconds,
//! ike.retransmit_ms and ike.retransmit_tries decide how soon a home notices that its server
//! died).

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant, SystemTime};

use hometun_lab::failover_lab::{FailoverLab, Vps};
use hometun_lab::ike_lab::{Daemon, logs, wait_ping};
use hometun_lab::ping_log::{PingLog, between, outage_after, unix_seconds};
use hometun_lab::postgres_lab::{PostgresLab, require_postgres};
use hometun_lab::{require_root, skip_or_fail, wait_for};

/// The outage the design aims at (from the kill to answered pings), printed beside the real one.
const GOAL: Duration = Duration::from_secs(5);
/// What the test asserts: generous, for a loaded machine.
const BOUND: Duration = Duration::from_secs(15);

/// Whether BIRD 2 is installed (scripts/install-deps.sh installs it).
fn have_bird(test: &str) -> bool {
    let found = ["/usr/sbin/bird", "/usr/sbin/birdc"]
        .iter()
        .all(|p| std::path::Path::new(p).exists());
    if !found {
        skip_or_fail(
            test,
            "needs BIRD 2 (the bird2 package: scripts/install-deps.sh)",
        );
    }
    found
}

fn all_logs(lab: &FailoverLab, daemons: &[&Daemon]) -> String {
    format!(
        "{}\n--- core bird:\n{}\n--- bird a:\n{}\n--- bird b:\n{}",
        logs(daemons),
        lab.core_bird.log_text(),
        lab.bird_a.log_text(),
        lab.bird_b.log_text()
    )
}

/// The protocol through which the core's BIRD routes the home's prefix now (its best route),
/// waiting at most `timeout` for it to be `expected` alone.
fn wait_core_route(lab: &FailoverLab, expected: Vps, timeout: Duration) -> Vec<String> {
    let mut seen = Vec::new();
    wait_for(timeout, || {
        seen = lab.core_routes().unwrap_or_default();
        seen == [expected.protocol()]
    });
    seen
}

#[test]
fn the_home_fails_over_to_the_second_server_and_bgp_moves_its_prefix() {
    let test = "the_home_fails_over_to_the_second_server_and_bgp_moves_its_prefix";
    if !require_root(test) || !have_bird(test) {
        return;
    }
    crash_moves_the_home(test, None);
}

/// The same with both servers on one PostgreSQL registry (started by the test).
#[test]
fn on_postgresql_the_home_fails_over_to_the_second_server_and_bgp_moves_its_prefix() {
    let test = "on_postgresql_the_home_fails_over_to_the_second_server_and_bgp_moves_its_prefix";
    if !require_root(test) || !have_bird(test) || !require_postgres(test) {
        return;
    }
    let pg = PostgresLab::start().unwrap();
    let url = pg.create_database().unwrap();
    crash_moves_the_home(test, Some(&url));
    // The servers are gone before the database.
    drop(pg);
}

/// Server A is killed (SIGKILL) under pings from the Internet host to the LAN host: the home
/// moves to B, the core's route follows, and A's return moves nothing.
fn crash_moves_the_home(test: &str, registry_url: Option<&str>) {
    let lab = FailoverLab::new(registry_url, |ike| {
        // Dead within 2.6 s of the last packet from the server: a liveness check after 1 s
        // without traffic (seen at the next look at the counters, once a second), then
        // 0.2 + 0.4 s of retransmissions.
        ike.dpd_seconds = 1;
        ike.retransmit_ms = 200;
        ike.retransmit_tries = 2;
    })
    .unwrap();
    let server_a = lab.start_server(Vps::A, 1).unwrap();
    let server_b = lab.start_server(Vps::B, 1).unwrap();
    let client = lab.start_client().unwrap();

    // Up on A, the first of the home's list.
    assert!(
        client.wait_log("lan lan0: ", Duration::from_secs(30)),
        "the home did not come up:\n{}",
        all_logs(&lab, &[&server_a, &server_b, &client])
    );
    let lan_host = lab
        .wait_lan_host_address(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", all_logs(&lab, &[&server_a, &client])));
    let routes = wait_core_route(&lab, Vps::A, Duration::from_secs(20));
    assert_eq!(
        routes,
        [Vps::A.protocol()],
        "the core's BIRD has the home's prefix via A:\n{}\n{}",
        lab.core_bird
            .birdc(&["show", "route", "all"])
            .unwrap_or_default(),
        all_logs(&lab, &[&server_a, &server_b, &client])
    );
    let route_a = lab.vps_route(Vps::A);
    assert!(route_a.contains("proto 57"), "A's route: {route_a}");
    assert!(
        lab.vps_route(Vps::B).is_empty(),
        "B has no route for the home"
    );
    assert!(
        wait_ping(&lab.inet, lan_host, Duration::from_secs(20)),
        "the Internet host does not reach the LAN host {lan_host} via A:\n{}",
        all_logs(&lab, &[&server_a, &server_b, &client])
    );
    assert!(
        lab.core_kernel_route()
            .contains(&Vps::A.link_address().to_string())
    );

    // A crashes: the home moves to B.
    let pings = PingLog::start(
        &lab.inet,
        lan_host,
        Duration::from_millis(100),
        &lab.dir().join("ping.log"),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let killed_at = SystemTime::now();
    let kill_clock = Instant::now();
    lab.kill_hometun(Vps::A).unwrap();
    let back = wait_for(BOUND + Duration::from_secs(10), || {
        outage_after(&pings.probes(), unix_seconds(killed_at)).is_some()
    });
    assert!(
        back,
        "no answer from the LAN host {:?} after A's crash:\n{}\n{}",
        kill_clock.elapsed(),
        pings.text(),
        all_logs(&lab, &[&server_a, &server_b, &client])
    );
    let outage = outage_after(&pings.probes(), unix_seconds(killed_at)).unwrap();
    eprintln!(
        "{test}: outage from the SIGKILL of server A to answered pings (every 100 ms): {} ms \
         (goal {} ms)",
        outage.as_millis(),
        GOAL.as_millis()
    );
    assert!(
        outage <= BOUND,
        "outage {outage:?} above {BOUND:?}:\n{}",
        all_logs(&lab, &[&server_a, &server_b, &client])
    );
    assert!(
        client.log_text().contains("failing over from"),
        "{}",
        client.log_text()
    );
    let routes = wait_core_route(&lab, Vps::B, Duration::from_secs(10));
    assert_eq!(
        routes,
        [Vps::B.protocol()],
        "the core's BIRD has the home's prefix via B alone:\n{}",
        lab.core_bird
            .birdc(&["show", "route", "all"])
            .unwrap_or_default()
    );
    assert!(
        lab.core_kernel_route()
            .contains(&Vps::B.link_address().to_string())
    );
    assert!(lab.vps_route(Vps::B).contains("proto 57"));
    // B recorded that it holds the home.
    assert_eq!(
        lab.wait_holder("home.example", Vps::B.name(), Duration::from_secs(5))
            .unwrap()
            .as_deref(),
        Some(Vps::B.name())
    );

    // A comes back: nothing moves.
    drop(server_a);
    let restart_at = unix_seconds(SystemTime::now());
    let server_a = lab.start_server(Vps::A, 2).unwrap();
    std::thread::sleep(Duration::from_secs(10));
    let until = unix_seconds(SystemTime::now());
    let (replies, missing) = between(&pings.probes(), restart_at, until);
    assert!(
        replies >= 50 && missing == 0,
        "pings during A's start: {replies} answered, {missing} missing:\n{}",
        pings.text()
    );
    assert_eq!(
        lab.core_routes().unwrap(),
        [Vps::B.protocol()],
        "the core's route stays via B"
    );
    assert!(
        lab.vps_route(Vps::A).is_empty(),
        "A routes nothing for the home"
    );
    let status = server_a.status().unwrap();
    assert!(
        status["peers"].as_array().is_some_and(Vec::is_empty),
        "the home stays on B: {status:#}"
    );
    eprintln!(
        "{test}: after A's restart {replies} pings answered, {missing} missing; the core routes \
         via B"
    );
    drop((client, server_a, server_b));
}

/// The home loses its path to server A, which stays up: it fails over to B, and A, told by the
/// registry that B holds the home now, drops the home's SAs and so its route, well before its
/// own liveness check would: the core router never keeps a route via A.
#[test]
fn a_server_that_lost_its_home_to_another_withdraws_its_route() {
    let test = "a_server_that_lost_its_home_to_another_withdraws_its_route";
    if !require_root(test) || !have_bird(test) {
        return;
    }
    lost_home_withdraws_its_route(test, None);
}

/// The same with the registry in PostgreSQL: the claim reaches the other server by its
/// notification.
#[test]
fn on_postgresql_a_server_that_lost_its_home_to_another_withdraws_its_route() {
    let test = "on_postgresql_a_server_that_lost_its_home_to_another_withdraws_its_route";
    if !require_root(test) || !have_bird(test) || !require_postgres(test) {
        return;
    }
    let pg = PostgresLab::start().unwrap();
    let url = pg.create_database().unwrap();
    lost_home_withdraws_its_route(test, Some(&url));
    // The servers are gone before the database.
    drop(pg);
}

fn lost_home_withdraws_its_route(test: &str, registry_url: Option<&str>) {
    let lab = FailoverLab::new(registry_url, |ike| {
        ike.dpd_seconds = 1;
        ike.retransmit_ms = 200;
        ike.retransmit_tries = 2;
    })
    .unwrap();
    // The servers check their homes' liveness only after a minute of silence here: what
    // makes A let go is B's claim.
    for vps in [Vps::A, Vps::B] {
        hometun_lab::ike_lab::edit_server(&lab.server_toml(vps), |c| c.ike.dpd_seconds = 60)
            .unwrap();
    }
    let server_a = lab.start_server(Vps::A, 1).unwrap();
    let server_b = lab.start_server(Vps::B, 1).unwrap();
    let client = lab.start_client().unwrap();
    assert_eq!(
        wait_core_route(&lab, Vps::A, Duration::from_secs(30)),
        [Vps::A.protocol()],
        "{}",
        all_logs(&lab, &[&server_a, &server_b, &client])
    );

    // The ISP loses the way to A (both directions); A itself stays up.
    lab.isp
        .nft(&format!(
            "table inet cut {{\n chain forward {{\n  type filter hook forward priority 0;\n  \
             ip daddr {a} drop\n  ip saddr {a} drop\n }}\n}}\n",
            a = Vps::A.outer()
        ))
        .unwrap();
    let cut = Instant::now();
    assert!(
        client.wait_log("failing over from", Duration::from_secs(15)),
        "{}",
        all_logs(&lab, &[&server_a, &server_b, &client])
    );
    let routes = wait_core_route(&lab, Vps::B, Duration::from_secs(15));
    assert_eq!(
        routes,
        [Vps::B.protocol()],
        "the core routes via B alone:\n{}\n{}",
        lab.core_bird
            .birdc(&["show", "route", "all"])
            .unwrap_or_default(),
        all_logs(&lab, &[&server_a, &server_b, &client])
    );
    let took = cut.elapsed();
    assert_eq!(
        lab.wait_holder("home.example", Vps::B.name(), Duration::from_secs(5))
            .unwrap()
            .as_deref(),
        Some(Vps::B.name())
    );
    assert!(
        server_a.log_text().contains("is held by b.example now"),
        "A says why it let go:\n{}",
        server_a.log_text()
    );
    assert!(
        lab.vps_route(Vps::A).is_empty(),
        "{}",
        lab.vps_route(Vps::A)
    );
    assert!(
        took < Duration::from_secs(30),
        "A let go after {took:?}, as late as its own liveness check would"
    );
    eprintln!(
        "{test}: {} ms from the cut to a core routing via B alone",
        took.as_millis()
    );
    drop((client, server_a, server_b));
}
