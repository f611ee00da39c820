//! examples/updown/updown-radvd.sh against a real radvd: a `[[lan]]` with `advertise = false`,
//! the hook writing radvd's configuration as the tunnel comes up, radvd advertising it, and the
//! LAN host taking its address from the home's prefix by SLAAC and reaching the Internet host;
//! when the client stops, the hook's `down` makes radvd deprecate the prefix.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use hometun_lab::ike_lab::{edit_client, logs, wait_ping};
use hometun_lab::lan_lab::{INTERNET_HOST, LAN_INTERFACE, LanLab, Mode, ip_text};
use hometun_lab::{Guarded, require_root, skip_or_fail, wait_for, workspace_root};

#[test]
fn the_radvd_example_gives_the_lan_host_the_prefix() {
    let test = "the_radvd_example_gives_the_lan_host_the_prefix";
    if !require_root(test) {
        return;
    }
    if !std::path::Path::new("/usr/sbin/radvd").exists() {
        skip_or_fail(test, "radvd is not installed (scripts/install-deps.sh)");
        return;
    }
    let lab = LanLab::new(Mode::Routed).unwrap();
    let conf = lab.dir().join("radvd.conf");
    let pid = lab.dir().join("radvd.pid");
    // The example as it is, told where the test's radvd keeps its files.
    let hook = lab.dir().join("updown.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nexport RADVD_CONF={} RADVD_PID={}\nexec sh {}\n",
            conf.display(),
            pid.display(),
            workspace_root()
                .join("examples/updown/updown-radvd.sh")
                .display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    edit_client(&lab.client_toml, |c| {
        c.client.updown = Some(hook.clone());
        c.lan[0].advertise = false;
    })
    .unwrap();
    let server = lab.start_server().unwrap();
    let started = Instant::now();
    let client = lab.start_client().unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || conf.exists()),
        "the hook wrote no radvd configuration:\n{}",
        logs(&[&server, &client])
    );
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(
        text.contains(&format!("interface {LAN_INTERFACE}"))
            && text.contains(&format!("prefix {}", lab.mode.lan_subnet()))
            && text.contains("AdvLinkMTU 1400;"),
        "{text}"
    );
    let mut command = lab.home.command("radvd");
    command
        .args(["-n", "-m", "stderr", "-C"])
        .arg(&conf)
        .arg("-p")
        .arg(&pid);
    let mut radvd = Guarded::spawn(command, "radvd", &lab.dir().join("radvd.log")).unwrap();
    let (address, after) = lab
        .wait_slaac(started, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}\n{}\n{}", radvd.log_text(), client.log_text()));
    eprintln!(
        "{test}: LAN host {address} by SLAAC from radvd, {} ms after the client's start",
        after.as_millis()
    );
    // No advertisement from hometun itself: only radvd's.
    assert!(
        !client.log_text().contains("sending Router Advertisements"),
        "{}",
        client.log_text()
    );
    assert!(
        wait_ping(&lab.lan, INTERNET_HOST, Duration::from_secs(10)),
        "{}\n{}",
        radvd.log_text(),
        logs(&[&server, &client])
    );

    // The client stops: the hook's `down` rewrites the configuration with lifetimes 0 and
    // makes radvd read it again.
    assert!(client.stop().unwrap().success());
    assert!(
        wait_for(Duration::from_secs(20), || lab
            .lan_host_addresses()
            .iter()
            .all(|(_, deprecated)| *deprecated)),
        "{}\n{}",
        ip_text(&lab.lan, &["-6", "addr", "show", "dev", "eth0"]),
        radvd.log_text()
    );
    radvd.check_running().unwrap();
    assert!(server.stop().unwrap().success());
}
