//! A server on one core (a small VPS): it starts no IKE worker threads and runs every crypto
//! job (key pairs, key derivation, the IKE_AUTH signature work) on its driver's task, where a
//! hand-over to another thread could only cost (docs/ARCHITECTURE.md, "Crypto jobs"). Homes
//! still come up: 24 handshakes, 4 in flight, each with its DELETE answered.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use hometun_lab::ike_lab::{Daemon, Setup, edit_server};
use hometun_lab::require_root;

/// The calling thread's CPU affinity (inherited by the processes it starts).
fn affinity() -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let ret = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        assert_eq!(
            ret,
            0,
            "sched_getaffinity: {}",
            std::io::Error::last_os_error()
        );
        set
    }
}

fn set_affinity(set: &libc::cpu_set_t) {
    // SAFETY: set is a valid cpu_set_t of the size given.
    let ret = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
    assert_eq!(
        ret,
        0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
}

/// One CPU this thread may run on.
fn one_cpu(of: &libc::cpu_set_t) -> libc::cpu_set_t {
    let cpu = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads the set within its size.
        .find(|&cpu| unsafe { libc::CPU_ISSET(cpu, of) })
        .expect("no CPU in this thread's affinity");
    // SAFETY: as above; CPU_SET writes within the set's size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    }
}

fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}

#[test]
fn a_server_on_one_core_runs_its_crypto_jobs_itself_and_homes_come_up() {
    if !require_root("a_server_on_one_core_runs_its_crypto_jobs_itself_and_homes_come_up") {
        return;
    }
    let setup = Setup::new(1).unwrap();
    let configs = setup.identities("home", 4).unwrap();
    // Each identity makes several IKE SAs in a row here: no bound of new ones.
    edit_server(&setup.server_toml, |c| c.dos.new_ike_sas_per_identity = 0).unwrap();
    // The server sees one core, as on a single-vCPU VPS.
    let all = affinity();
    set_affinity(&one_cpu(&all));
    let server = Daemon::start(
        &setup.lab.vps.ns,
        "server",
        &setup.server_toml,
        &setup.lab.dir().join("server.log"),
    );
    set_affinity(&all);
    let server = server.unwrap();
    assert!(
        server.wait_log("IKE on", std::time::Duration::from_secs(20)),
        "{}",
        server.log_text()
    );

    // One config per handshake in flight: each home has its own identity.
    let output = setup
        .ike_bench(&configs, &["--count", "24", "--concurrency", "4"])
        .unwrap()
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("ok 24 failed 0"),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.log_text()
    );

    let names = thread_names(server.pid());
    assert!(
        names.iter().any(|name| name == "hometun"),
        "not the server's threads: {names:?}"
    );
    assert!(
        !names.iter().any(|name| name.starts_with("ike-worker")),
        "a worker thread on one core: {names:?}"
    );
    server.stop().unwrap();
}
