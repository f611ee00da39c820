//! A home whose server does not answer the DELETE of its SIGTERM waits for the answer a while
//! (retransmitting it), then stops all the same: exit 0, one line saying so, nothing left.

#![allow(clippy::unwrap_used)]

use hometun_lab::ike_lab::{Setup, assert_nothing_left};
use hometun_lab::require_root;

#[test]
fn a_client_whose_server_does_not_answer_stops_after_the_wait_for_its_delete() {
    if !require_root("a_client_whose_server_does_not_answer_stops_after_the_wait_for_its_delete") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    let lab = &setup.lab;
    let (server, client) = setup.start_first_home_up().unwrap();
    // The server daemon stops answering (its forwarder still runs).
    let signal = |signal: i32| {
        // SAFETY: kill has no memory preconditions; the pid is a daemon this test started.
        assert_eq!(unsafe { libc::kill(server.pid() as i32, signal) }, 0);
    };
    signal(libc::SIGSTOP);
    let client_log = client.log.clone();
    let status = client.stop();
    signal(libc::SIGCONT);
    assert!(status.unwrap().success());
    let text = std::fs::read_to_string(&client_log).unwrap();
    assert!(
        text.contains("not every peer answered its DELETE within 2s; stopping anyway"),
        "{text}"
    );
    assert!(text.contains("stopped"), "{text}");
    assert_nothing_left(&lab.homes[0].ns, "home");
    assert!(server.stop().unwrap().success());
}
