//! The `hometun` command: clap wiring only; the work happens in the crates.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod manual;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// hometun: a static IPv6 address or prefix for a home with a dynamic IPv4 address, through an
/// IPsec ESP tunnel (IPv6 in IPv4) keyed by IKEv2, that survives changes of the home address.
#[derive(Debug, Parser)]
#[command(name = "hometun", version, propagate_version = true)]
struct Cli {
    /// More log detail (-v: protocol detail, -vv: packet detail).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The server daemon (IKE responder + forwarder) on the VPS.
    Server(hometun_daemon::cli::ServerArgs),
    /// The client daemon (IKE initiator + forwarder) at home.
    Client(hometun_daemon::cli::ClientArgs),
    /// The ESP data plane on its own (manual keying, or under a daemon).
    Forwarder(hometun_forwarder::cli::ForwarderArgs),
    /// Peers, endpoints, SAs, bytes and limits of a running daemon.
    Status(hometun_daemon::cli::StatusArgs),
    /// IKE debugging tools.
    #[command(subcommand)]
    Ike(hometun_daemon::cli::IkeCommand),
    /// Certificate authority and prefix allocation.
    #[command(subcommand)]
    Pki(hometun_pki::cli::PkiCommand),
    /// Enroll this home online with a one-time token (the key stays here).
    Enroll(hometun_pki::cli::EnrollArgs),
    /// Renew this home's certificate before it expires (same name, same prefix).
    Renew(hometun_pki::cli::RenewArgs),
    /// The whole story in network namespaces: CA, enrollment, tunnel, address change, status.
    Demo(hometun_demo::DemoArgs),
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (section 1), one per command.
    Manpages {
        /// Where to write them (e.g. /usr/local/share/man/man1).
        #[arg(long, value_name = "DIR")]
        dir: std::path::PathBuf,
    },
}

/// The `hometun` command with its manual pages.
fn command() -> clap::Command {
    manual::with_manual(Cli::command())
}

fn main() {
    let cli = Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit());
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Server(args) => hometun_daemon::cli::run_server(args),
        Command::Client(args) => hometun_daemon::cli::run_client(args),
        Command::Forwarder(args) => hometun_forwarder::cli::run(args),
        Command::Status(args) => hometun_daemon::cli::run_status(args),
        Command::Ike(command) => hometun_daemon::cli::run_ike(command),
        Command::Pki(command) => hometun_pki::cli::run_pki(command),
        Command::Enroll(args) => hometun_pki::cli::run_enroll(args),
        Command::Renew(args) => hometun_pki::cli::run_renew(args),
        Command::Demo(args) => hometun_demo::run(&args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut command(), "hometun", &mut std::io::stdout());
            Ok(())
        }
        Command::Manpages { dir } => write_manpages(&dir),
    };
    if let Err(error) = result {
        // One line: the chain of causes joined, as the style asks for operator-facing errors.
        eprintln!("hometun: {error:#}");
        std::process::exit(1);
    }
}

/// `hometun manpages --dir DIR`: `hometun.1`, `hometun-server.1`, `hometun-pki-token.1`, ...
/// from the same text as `--help` (the manual pages of src/manual.rs); prints their names.
fn write_manpages(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    clap_mangen::generate_to(command(), dir)
        .map_err(|e| anyhow::anyhow!("writing manual pages to {}: {e}", dir.display()))?;
    let mut written: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("hometun") && name.ends_with(".1"))
        .collect();
    written.sort();
    println!("{} manual pages in {}", written.len(), dir.display());
    Ok(())
}

/// Quiet by default (warnings and the events that matter at info level), `-v` for protocol
/// detail, `-vv` for packet detail. `RUST_LOG` overrides.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only on a terminal (a file or a pipe would get escape codes); module paths only
    // with -v, where they help to find the code.
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(verbose > 0)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every visible command below `command`, with its path ("" for `hometun` itself).
    fn walk(command: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
        out.push((path.to_string(), command.clone()));
        for sub in command.get_subcommands() {
            if sub.is_hide_set() || sub.get_name() == "help" {
                continue;
            }
            let sub_path = format!("{path} {}", sub.get_name());
            walk(sub, sub_path.trim(), out);
        }
    }

    fn all_commands() -> Vec<(String, clap::Command)> {
        let mut command = command();
        command.build();
        let mut out = Vec::new();
        walk(&command, "", &mut out);
        out
    }

    #[test]
    fn every_command_has_a_manual_page_file() {
        let dir = std::env::temp_dir().join(format!("hometun-man-{}", std::process::id()));
        write_manpages(&dir).unwrap();
        for (path, _) in all_commands() {
            let file = match path.as_str() {
                "" => "hometun.1".to_string(),
                path => format!("hometun-{}.1", path.replace(' ', "-")),
            };
            let page = std::fs::read_to_string(dir.join(&file))
                .unwrap_or_else(|e| panic!("`hometun {path}`: no {file}: {e}"));
            assert!(page.contains(".TH "), "{file}:\n{page}");
            if !path.is_empty() {
                assert!(
                    page.contains("Exit status"),
                    "{file}: no exit status\n{page}"
                );
                assert!(page.contains("EXAMPLES"), "{file}: no examples\n{page}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_command_line_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_command_has_a_manual_page_with_examples() {
        let commands = all_commands();
        assert!(commands.len() > 20, "{} commands", commands.len());
        for (path, mut command) in commands {
            let about = command.get_long_about().map(|s| s.to_string());
            let about = about.unwrap_or_else(|| panic!("`hometun {path}` has no long_about"));
            assert!(
                about.contains("Exit status"),
                "`hometun {path}`: no exit status"
            );
            let help = command.render_long_help().to_string();
            assert!(
                help.contains("EXAMPLES:\n  "),
                "`hometun {path} --help` has no EXAMPLES section:\n{help}"
            );
            // The examples run the command itself.
            let examples = help.split("EXAMPLES:").nth(1).unwrap();
            assert!(
                examples.contains(format!("hometun {path}").trim()),
                "`hometun {path}`: no example runs it:{examples}"
            );
        }
    }

    #[test]
    fn completions_name_every_command() {
        for shell in ["bash", "zsh", "fish"] {
            let shell: clap_complete::Shell = shell.parse().unwrap();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command(), "hometun", &mut script);
            let script = String::from_utf8(script).unwrap();
            for (path, _) in all_commands() {
                let words: Vec<&str> = path.split_whitespace().collect();
                let Some((leaf, parents)) = words.split_last() else {
                    continue;
                };
                // How each generator spells "LEAF is a subcommand of PARENTS".
                let spelled = match shell {
                    clap_complete::Shell::Bash => {
                        let parent: String =
                            parents.iter().map(|p| format!("__subcmd__{p}")).collect();
                        format!("hometun{parent},{leaf})")
                    }
                    clap_complete::Shell::Zsh => format!("'{leaf}:"),
                    _ => format!("-a \"{leaf}\""),
                };
                assert!(
                    script.contains(&spelled),
                    "{shell} completions lack `{path}` ({spelled})"
                );
            }
            for flag in ["config", "check", "control", "accept-moves", "dir"] {
                let spelled = match shell {
                    clap_complete::Shell::Fish => format!("-l {flag}"),
                    _ => format!("--{flag}"),
                };
                assert!(
                    script.contains(&spelled),
                    "{shell} completions lack --{flag}"
                );
            }
        }
    }

    /// examples/systemd/*.service: file name -> (key, value) lines.
    fn units() -> Vec<(String, Vec<(String, String)>)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/systemd");
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "service") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let settings = text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.starts_with('['))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            found.push((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                settings,
            ));
        }
        found.sort();
        found
    }

    fn setting<'a>(settings: &'a [(String, String)], key: &str) -> Vec<&'a str> {
        settings
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Parses a unit's command line with the real `hometun` command (nothing runs).
    fn parse(unit: &str, line: &str) -> Cli {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[0], "/usr/bin/hometun", "{unit}");
        let matches = command()
            .try_get_matches_from(&words)
            .unwrap_or_else(|e| panic!("{unit}: {line}: {e}"));
        Cli::from_arg_matches(&matches).unwrap()
    }

    #[test]
    fn systemd_units_match_the_command_line_and_the_sample_configs() {
        let units = units();
        let names: Vec<&str> = units.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "hometun-client-forwarder.service",
                "hometun-client.service",
                "hometun-server-forwarder.service",
                "hometun-server.service",
            ]
        );
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let server = hometun_config::ServerConfig::load(&root.join("examples/config/server.toml"))
            .unwrap()
            .server;
        let client = hometun_config::ClientConfig::load(&root.join("examples/config/client.toml"))
            .unwrap()
            .client;
        for (role, socket, state_dir, status_socket) in [
            (
                "server",
                &server.forwarder_socket,
                &server.state_dir,
                &server.status_socket,
            ),
            (
                "client",
                &client.forwarder_socket,
                &client.state_dir,
                &client.status_socket,
            ),
        ] {
            let daemon = &units
                .iter()
                .find(|(n, _)| *n == format!("hometun-{role}.service"))
                .unwrap()
                .1;
            let forwarder_unit = format!("hometun-{role}-forwarder.service");
            let forwarder = &units.iter().find(|(n, _)| *n == forwarder_unit).unwrap().1;

            // The daemon: its config, checked first; only CAP_NET_BIND_SERVICE (UDP 500);
            // after and bound to its forwarder; SIGHUP reloads.
            let [start] = setting(daemon, "ExecStart")[..] else {
                panic!("one ExecStart")
            };
            match parse(role, start).command {
                Command::Server(args) if role == "server" => {
                    assert_eq!(
                        args.config,
                        std::path::Path::new("/etc/hometun/server.toml")
                    );
                    assert!(!args.check);
                }
                Command::Client(args) if role == "client" => {
                    assert_eq!(
                        args.config,
                        std::path::Path::new("/etc/hometun/client.toml")
                    );
                    assert!(!args.check);
                }
                other => panic!("hometun-{role}.service runs {other:?}"),
            }
            let [pre] = setting(daemon, "ExecStartPre")[..] else {
                panic!("one ExecStartPre")
            };
            assert_eq!(pre, format!("{start} --check"));
            parse(role, pre);
            assert_eq!(setting(daemon, "ExecReload"), ["/bin/kill -HUP $MAINPID"]);
            for key in ["CapabilityBoundingSet", "AmbientCapabilities"] {
                assert_eq!(
                    setting(daemon, key),
                    ["CAP_NET_BIND_SERVICE"],
                    "{role} {key}"
                );
            }
            assert_eq!(setting(daemon, "Requires"), [forwarder_unit.as_str()]);
            assert!(setting(daemon, "After")[0].contains(&forwarder_unit));
            // The sample config's state and status socket lie where the unit may write.
            let state = format!("/var/lib/{}", setting(daemon, "StateDirectory")[0]);
            assert_eq!(*state_dir, std::path::Path::new(&state), "{role}");
            let run = format!("/run/{}", setting(daemon, "RuntimeDirectory")[0]);
            assert_eq!(
                status_socket.parent(),
                Some(std::path::Path::new(&run)),
                "{role}"
            );

            // The forwarder: only CAP_NET_ADMIN and CAP_NET_RAW, the roaming flags the daemon
            // gives its own child, its socket where the sample config looks for it.
            for key in ["CapabilityBoundingSet", "AmbientCapabilities"] {
                assert_eq!(
                    setting(forwarder, key),
                    ["CAP_NET_ADMIN CAP_NET_RAW"],
                    "{role} {key}"
                );
            }
            assert_eq!(setting(forwarder, "NoNewPrivileges"), ["yes"]);
            assert_eq!(setting(forwarder, "ProtectSystem"), ["strict"]);
            assert_eq!(
                setting(forwarder, "PartOf"),
                [format!("hometun-{role}.service")]
            );
            let [start] = setting(forwarder, "ExecStart")[..] else {
                panic!("one ExecStart")
            };
            let Command::Forwarder(args) = parse(&forwarder_unit, start).command else {
                panic!("{forwarder_unit} does not run the forwarder");
            };
            let roaming = (args.accept_moves, args.follow_local_address);
            assert_eq!(
                roaming,
                (role == "server", role == "client"),
                "{forwarder_unit}"
            );
            assert_eq!(args.control.as_ref(), socket.as_ref(), "{forwarder_unit}");
            // Two users: the forwarder cannot read the daemon's key; the daemon reaches the
            // forwarder's socket through its group and is the one user --allow-uid lets in.
            let [daemon_user] = setting(daemon, "User")[..] else {
                panic!("hometun-{role}.service: one User")
            };
            let [forwarder_user] = setting(forwarder, "User")[..] else {
                panic!("{forwarder_unit}: one User")
            };
            assert_ne!(daemon_user, forwarder_user, "{role}");
            assert_eq!(
                args.allow_uid,
                [hometun_forwarder::control_socket::UserSpec::Name(
                    daemon_user.to_string()
                )],
                "{forwarder_unit}"
            );
            assert_eq!(
                setting(daemon, "SupplementaryGroups"),
                setting(forwarder, "Group"),
                "{role}: the daemon must be in the group of the forwarder's socket"
            );
            let sysusers =
                std::fs::read_to_string(root.join("examples/systemd/hometun.sysusers.conf"))
                    .unwrap();
            for user in [daemon_user, forwarder_user] {
                assert!(
                    sysusers
                        .lines()
                        .any(|l| l.split_whitespace().take(2).eq(["u", user])),
                    "hometun.sysusers.conf makes no user {user}"
                );
            }
            let run = format!("/run/{}", setting(forwarder, "RuntimeDirectory")[0]);
            assert_eq!(
                args.control.as_deref().and_then(std::path::Path::parent),
                Some(std::path::Path::new(&run))
            );
        }
    }
}
