//! `hometun demo` as a user runs it: the real binary, its story read from its output,
//! and nothing left behind afterwards (namespaces `htdemo-<pid>-*`, processes, its temporary
//! directory): after a whole run, after SIGINT to its process group (what Ctrl-C sends) once the
//! tunnel is up, and after a deliberate panic. The three tests run at once, which also shows that
//! demos can run side by side.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hometun_lab::{hometun_bin, require_root};

/// A running `hometun demo` in its own process group; removes whatever it left if a test fails.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
    stderr: Option<JoinHandle<String>>,
    /// Its temporary directory, from the `hometun pki init` line.
    dir: Option<PathBuf>,
    started: Instant,
}

/// How a demo ended.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        let mut child = Command::new(hometun_bin().unwrap())
            .arg("demo")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Demo {
            child,
            lines,
            stdout: Vec::new(),
            stderr: Some(stderr),
            dir: None,
            started: Instant::now(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn take_line(&mut self, line: String) {
        println!("demo {}| {line}", self.pid());
        if self.dir.is_none()
            && let Some(dir) = line
                .split_whitespace()
                .find_map(|w| w.strip_suffix("/vps/server.toml"))
        {
            self.dir = Some(PathBuf::from(dir));
        }
        self.stdout.push(line);
    }

    /// Reads its output until a line contains `needle`.
    fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.take_line(line.clone());
                    if found {
                        return line;
                    }
                }
                Err(error) => panic!(
                    "no line with {needle:?} from the demo ({error}); so far:\n{}",
                    self.stdout.join("\n")
                ),
            }
        }
    }

    /// Waits for it to exit and reads the rest of its output.
    fn finish(&mut self, timeout: Duration) -> Finished {
        let began = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                began.elapsed() < timeout,
                "hometun demo still runs after {timeout:?}; its output:\n{}",
                self.stdout.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = began.elapsed();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.take_line(line);
        }
        let stderr = self.stderr.take().unwrap().join().unwrap();
        eprintln!("demo {} stderr:\n{stderr}", self.pid());
        Finished {
            status,
            stdout: self.stdout.join("\n"),
            stderr,
            took,
        }
    }

    /// Asserts that nothing it made is left: namespaces, processes, the temporary directory.
    fn assert_nothing_left(&self) {
        let pid = self.pid();
        let namespaces = demo_namespaces(pid);
        assert!(namespaces.is_empty(), "namespaces left: {namespaces:?}");
        let dir = self.dir.as_ref().expect("the demo printed its directory");
        let processes = processes_of(pid, dir.to_str().unwrap());
        assert!(processes.is_empty(), "processes left: {processes:?}");
        assert!(!dir.exists(), "{} left", dir.display());
    }
}

impl Drop for Demo {
    /// Only after a failed test: stop the demo's process group and remove what it made.
    fn drop(&mut self) {
        let pid = self.pid();
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: kill has no memory preconditions; the group is the demo's.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            let _ = self.child.wait();
        }
        for name in demo_namespaces(pid) {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
        for (process, _) in processes_of(pid, "\0") {
            // SAFETY: as above; these are processes of the demo's group.
            unsafe { libc::kill(process, libc::SIGKILL) };
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The namespaces demo `pid` named after itself.
fn demo_namespaces(pid: u32) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let prefix = format!("htdemo-{pid}-");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(String::from)
        .collect()
}

/// Processes in process group `pgid` or whose command line names `path`, with their command lines.
fn processes_of(pgid: u32, path: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // After the command name in parentheses: state, ppid, pgrp.
        let group = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2))
            .and_then(|g| g.parse::<u32>().ok());
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        if group == Some(pgid) || cmdline.contains(path) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// The number right before `unit` after `after` in `line` (`outage 25 ms` -> 25).
fn number_before(line: &str, after: &str, unit: &str) -> f64 {
    let rest = line
        .split_once(after)
        .unwrap_or_else(|| panic!("no {after:?} in {line:?}"))
        .1;
    let number = rest
        .split_once(unit)
        .unwrap_or_else(|| panic!("no {unit:?} after {after:?} in {line:?}"))
        .0
        .split_whitespace()
        .last()
        .unwrap_or_else(|| panic!("no number before {unit:?} in {line:?}"));
    number
        .parse()
        .unwrap_or_else(|_| panic!("{number:?} is not a number in {line:?}"))
}

#[test]
fn demo_tells_the_whole_story_and_leaves_nothing() {
    if !require_root("demo_tells_the_whole_story_and_leaves_nothing") {
        return;
    }
    let mut demo = Demo::start(&[]);
    let long = Duration::from_secs(90);
    let enrolled = demo.wait_line("hometun enroll:", long);
    let prefix = enrolled
        .split_whitespace()
        .skip_while(|w| *w != "holds")
        .nth(1)
        .expect("the enroll line names the prefix")
        .trim_end_matches(';')
        .to_string();
    assert!(prefix.starts_with("2001:db8:100:"), "{enrolled}");
    let up = demo.wait_line("tunnel up in", long);
    assert!(up.contains("hometun client:"), "{up}");
    let ping = demo.wait_line("(the home's static address):", long);
    let answered: u32 = ping
        .split("address): ")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no answered count in {ping:?}"));
    assert!(answered > 0, "{ping}");
    let moved = demo.wait_line("the server moved home.example to 198.51.100.3", long);
    let moved_ms = number_before(&moved, "198.51.100.3 ", "ms after the change");
    assert!(moved_ms >= 0.0, "{moved}");
    let outage = demo.wait_line("tunnel recovered:", long);
    let outage_ms = number_before(&outage, "outage ", "ms");
    assert!(outage_ms > 0.0, "{outage}");
    let finished = demo.finish(long);
    assert!(
        finished.status.success(),
        "hometun demo exited with {}; stderr:\n{}",
        finished.status,
        finished.stderr
    );
    let out = &finished.stdout;
    let table_begins = out.find("hometun status:").expect("the status table");
    let table = &out[table_begins..];
    assert!(table.contains("peer: home.example"), "{table}");
    assert!(table.contains(&format!("prefix: {prefix}")), "{table}");
    assert!(table.contains("endpoint: 198.51.100.3:"), "{table}");
    assert!(
        out.contains("DELETE sent, the server forgot the home"),
        "{out}"
    );
    let cleaned = out
        .lines()
        .find(|l| l.contains("cleaned up:"))
        .expect("the clean-up line");
    assert!(
        cleaned.contains("deleted") && cleaned.contains("removed") && !cleaned.contains("LEFT"),
        "{cleaned}"
    );
    demo.assert_nothing_left();
    println!(
        "demo {}: moved after {moved_ms} ms, outage {outage_ms} ms, {:.1} s in all",
        demo.pid(),
        demo.started.elapsed().as_secs_f64()
    );
}

#[test]
fn demo_cleans_up_after_ctrl_c() {
    if !require_root("demo_cleans_up_after_ctrl_c") {
        return;
    }
    let mut demo = Demo::start(&[]);
    demo.wait_line("tunnel up in", Duration::from_secs(90));
    // What Ctrl-C in a terminal does: SIGINT to the whole foreground process group (the demo,
    // its daemons and its ping alike).
    // SAFETY: kill has no memory preconditions; the group is the demo's.
    assert_eq!(unsafe { libc::kill(-(demo.pid() as i32), libc::SIGINT) }, 0);
    // The daemons get a 10 s grace each to stop; anything near that is a hang.
    let finished = demo.finish(Duration::from_secs(30));
    println!(
        "demo {}: exited {:.2} s after SIGINT",
        demo.pid(),
        finished.took.as_secs_f64()
    );
    assert_eq!(finished.status.code(), Some(1), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("interrupted by SIGINT"),
        "{}",
        finished.stderr
    );
    assert!(
        !finished.stdout.contains("tunnel recovered"),
        "{}",
        finished.stdout
    );
    assert!(
        finished.stdout.contains("cleaned up:") && finished.stdout.contains("deleted"),
        "{}",
        finished.stdout
    );
    demo.assert_nothing_left();
}

#[test]
fn demo_cleans_up_after_a_panic() {
    if !require_root("demo_cleans_up_after_a_panic") {
        return;
    }
    // Step 6 is the tunnel: both daemons run when it panics.
    let mut demo = Demo::start(&["--panic-after", "6"]);
    let finished = demo.finish(Duration::from_secs(90));
    assert!(!finished.status.success(), "{}", finished.stdout);
    assert!(
        finished.stderr.contains("a deliberate panic"),
        "{}",
        finished.stderr
    );
    let cleaned = finished
        .stderr
        .lines()
        .find(|l| l.contains("hometun demo: cleaned up:"))
        .unwrap_or_else(|| panic!("no clean-up line in:\n{}", finished.stderr));
    assert!(
        cleaned.contains("client stopped")
            && cleaned.contains("server stopped")
            && cleaned.contains("deleted")
            && cleaned.contains("removed"),
        "{cleaned}"
    );
    demo.assert_nothing_left();
}
