//! Tests of the config crate: parsing, defaults, checks and their one-line errors.

use super::*;
use crate::minimal::CLIENT_TOML as CLIENT;

const SERVER: &str = r#"
[server]
name = "vps.example"
listen = "192.0.2.1"
certificate = "server.pem"
private_key = "server.key"
ca = "ca.pem"
pool = "2001:db8:100::/48"

[tunnel]
link_local = "fe80::1/64"

[[clients]]
name = "home.example"
prefix = "2001:db8:100:1::/64"
"#;

fn server_err(text: &str) -> String {
    ServerConfig::from_toml(Path::new("server.toml"), text)
        .unwrap_err()
        .to_string()
}

#[test]
fn minimal_server_config_gets_defaults() {
    let c = ServerConfig::from_toml(Path::new("server.toml"), SERVER).unwrap();
    assert_eq!(c.tunnel.mtu, 1400);
    assert_eq!(c.server.nat_port, 4500);
    assert_eq!(c.limits.rekey_bytes, 1 << 31);
    assert_eq!(c.limits.rekey_seconds, None);
    assert_eq!(c.clients.len(), 1);
}

#[test]
fn server_config_round_trips_through_toml() {
    let c = ServerConfig::from_toml(Path::new("server.toml"), SERVER).unwrap();
    let again = ServerConfig::from_toml(Path::new("server.toml"), &c.to_toml()).unwrap();
    assert_eq!(c, again);
}

#[test]
fn client_address_defaults_to_prefix_one() {
    let c = ClientConfig::from_toml(Path::new("client.toml"), CLIENT).unwrap();
    assert_eq!(
        c.tunnel_address(),
        "2001:db8:100:1::1".parse::<Ipv6Addr>().unwrap()
    );
}

#[test]
fn a_single_address_is_its_own_tunnel_address() {
    // `pki init --prefix-len 128` hands out single addresses: ::2/128's ::1 is another's.
    let text = CLIENT.replace("2001:db8:100:1::/64", "2001:db8:100::2/128");
    let c = ClientConfig::from_toml(Path::new("client.toml"), &text).unwrap();
    assert_eq!(
        c.tunnel_address(),
        "2001:db8:100::2".parse::<Ipv6Addr>().unwrap()
    );
}

#[test]
fn unknown_key_is_named() {
    let e = server_err(&SERVER.replace("[tunnel]", "[tunnel]\nmtuu = 1400"));
    assert!(
        e.starts_with("server.toml: tunnel.mtuu: line 11, column 1: unknown field `mtuu`"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn wrong_type_is_named_with_its_key() {
    let e = server_err(&SERVER.replace("[tunnel]", "[tunnel]\nmtu = \"big\""));
    assert!(e.starts_with("server.toml: tunnel.mtu: "), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn missing_key_is_named() {
    let e = server_err(&SERVER.replace("ca = \"ca.pem\"\n", ""));
    assert!(e.contains("missing field `ca`"), "{e}");
}

#[test]
fn out_of_range_mtu_is_refused() {
    let e = server_err(&SERVER.replace("[tunnel]", "[tunnel]\nmtu = 1500"));
    assert!(
        e.starts_with("server.toml: tunnel.mtu: 1500 is outside"),
        "{e}"
    );
}

#[test]
fn contradictory_limits_are_refused() {
    let e = server_err(&format!(
        "{SERVER}\n[limits]\nrekey_bytes = 100\nhard_bytes = 50\n"
    ));
    assert_eq!(
        e,
        "server.toml: limits.hard_bytes: 50 must be above limits.rekey_bytes (100)"
    );
}

#[test]
fn overlapping_static_clients_are_refused() {
    let text = format!(
        "{SERVER}\n[[clients]]\nname = \"other.example\"\nprefix = \"2001:db8:100::/56\"\n"
    );
    let e = server_err(&text);
    assert!(
        e.contains("clients[1].prefix: 2001:db8:100::/56 overlaps clients[0].prefix"),
        "{e}"
    );
}

#[test]
fn client_prefix_outside_pool_is_refused() {
    let e = server_err(&SERVER.replace("2001:db8:100:1::/64", "2001:db8:999::/64"));
    assert!(
        e.contains("clients[0].prefix: 2001:db8:999::/64 is outside server.pool"),
        "{e}"
    );
}

#[test]
fn broken_toml_is_one_line() {
    let e = server_err("[server\nname=");
    assert!(e.starts_with("server.toml: not valid TOML"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

/// A second `[upstream]` table (appended instead of edited): the message shows the line, since
/// toml's own says only "duplicate key".
#[test]
fn a_duplicate_table_names_its_line() {
    let e = server_err("[upstream]\nforwarding = true\n\n[upstream]\nforwarding = false\n");
    assert!(e.starts_with("server.toml: not valid TOML: line 4"), "{e}");
    assert!(e.ends_with("(`[upstream]`)"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn load_resolves_paths_relative_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.toml");
    std::fs::write(&path, SERVER).unwrap();
    let c = ServerConfig::load(&path).unwrap();
    assert_eq!(c.server.ca, dir.path().join("ca.pem"));
    assert_eq!(
        c.server.status_socket,
        dir.path().join("state/control.sock")
    );
}

#[test]
fn enroll_table_parses_resolves_and_round_trips() {
    let text = format!("{SERVER}\n[enroll]\nlisten = \"192.0.2.1:8443\"\n");
    let c = ServerConfig::from_toml(Path::new("server.toml"), &text).unwrap();
    let enroll = c.enroll.clone().unwrap();
    assert_eq!(enroll.public_address(), "192.0.2.1:8443".parse().unwrap());
    assert_eq!(enroll.pki_dir, PathBuf::from("."));
    let again = ServerConfig::from_toml(Path::new("server.toml"), &c.to_toml()).unwrap();
    assert_eq!(c, again);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.toml");
    std::fs::write(&path, &text).unwrap();
    let loaded = ServerConfig::load(&path).unwrap();
    assert_eq!(loaded.enroll.unwrap().pki_dir, dir.path().join("."));
    // Without the table there is no enrollment, and to_toml writes no [enroll].
    let plain = ServerConfig::from_toml(Path::new("server.toml"), SERVER).unwrap();
    assert_eq!(plain.enroll, None);
    assert!(!plain.to_toml().contains("[enroll]"));
}

#[test]
fn wildcard_enroll_listen_needs_an_address() {
    let e = server_err(&format!("{SERVER}\n[enroll]\nlisten = \"0.0.0.0:8443\"\n"));
    assert!(
        e.starts_with("server.toml: enroll.listen: 0.0.0.0:8443 cannot go into enrollment tokens"),
        "{e}"
    );
    let ok =
        format!("{SERVER}\n[enroll]\nlisten = \"0.0.0.0:8443\"\naddress = \"192.0.2.1:8443\"\n");
    assert!(ServerConfig::from_toml(Path::new("server.toml"), &ok).is_ok());
    let e = server_err(&format!("{SERVER}\n[enroll]\nlisten = \"192.0.2.1:0\"\n"));
    assert!(
        e.starts_with("server.toml: enroll.listen: needs a port"),
        "{e}"
    );
}

#[test]
fn constructors_match_parsed_defaults() {
    let parsed = ServerConfig::from_toml(Path::new("server.toml"), SERVER).unwrap();
    let built = ServerSection::new(
        "vps.example".into(),
        "192.0.2.1".parse().unwrap(),
        "server.pem".into(),
        "server.key".into(),
        "ca.pem".into(),
        "2001:db8:100::/48".parse().unwrap(),
    );
    assert_eq!(built, parsed.server);
    assert_eq!(
        TunnelSection::new("fe80::1/64".parse().unwrap()),
        parsed.tunnel
    );
    let parsed = ClientConfig::from_toml(Path::new("client.toml"), CLIENT).unwrap();
    let built = ClientSection::new(
        "home.example".into(),
        "192.0.2.1".parse().unwrap(),
        "vps.example".into(),
        "client.pem".into(),
        "client.key".into(),
        "ca.pem".into(),
        "2001:db8:100:1::/64".parse().unwrap(),
    );
    assert_eq!(built, parsed.client);
}

#[test]
fn world_readable_key_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.key");
    std::fs::write(&key, "x").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = check_private_key_mode(&key, "server.private_key", Path::new("server.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("server.private_key") && e.contains("mode 0644"),
        "{e}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(check_private_key_mode(&key, "server.private_key", Path::new("s")).is_ok());
}

#[test]
fn names_are_lower_cased_and_case_variants_of_a_client_collide() {
    let text = SERVER
        .replace("\"vps.example\"", "\"VPS.Example\"")
        .replace("\"home.example\"", "\"Home.Example\"");
    let c = ServerConfig::from_toml(Path::new("server.toml"), &text).unwrap();
    assert_eq!(c.server.name, "vps.example");
    assert_eq!(c.clients[0].name, "home.example");
    // The same home twice, in two spellings, is one name: refused like any duplicate.
    let twice = format!(
        "{SERVER}\n[[clients]]\nname = \"HOME.example\"\nprefix = \"2001:db8:100:2::/64\"\n"
    );
    assert_eq!(
        server_err(&twice),
        "server.toml: clients[1].name: home.example is also clients[0].name"
    );
    let client = CLIENT
        .replace("\"home.example\"", "\"Home.example\"")
        .replace("\"vps.example\"", "\"Vps.EXAMPLE\"");
    let c = ClientConfig::from_toml(Path::new("client.toml"), &client).unwrap();
    assert_eq!(
        (
            c.client.name.as_str(),
            c.client.server_name.first().as_str()
        ),
        ("home.example", "vps.example")
    );
}

#[test]
fn the_status_socket_is_found_in_a_config_with_errors() {
    let path = Path::new("/etc/hometun/server.toml");
    // A valid file: the same answer as a full load would give.
    let named = SERVER.replace(
        "[server]",
        "[server]\ncontrol_socket = \"/run/hometun.sock\"",
    );
    assert_eq!(
        status_socket_in(path, &named),
        PathBuf::from("/run/hometun.sock")
    );
    // A field of the wrong type elsewhere: the full load fails, the socket is still read.
    let wrong_field = named.replace("pool = \"2001:db8:100::/48\"", "pool = 7");
    assert!(ServerConfig::from_toml(path, &wrong_field).is_err());
    assert_eq!(
        status_socket_in(path, &wrong_field),
        PathBuf::from("/run/hometun.sock")
    );
    // Not TOML at all: the line is still found, relative paths from the file's directory.
    let broken = CLIENT.replace("[client]", "[client]\ncontrol_socket = \"run/c.sock\"\n[[[");
    assert_eq!(
        status_socket_in(path, &broken),
        PathBuf::from("/etc/hometun/run/c.sock")
    );
    // Not named: the default.
    assert_eq!(
        status_socket_in(path, "[[["),
        PathBuf::from("/etc/hometun/state/control.sock")
    );
}

#[test]
fn route_protocol_defaults_to_57_and_refuses_the_kernels_own() {
    let c = ServerConfig::from_toml(Path::new("server.toml"), SERVER).unwrap();
    assert_eq!(c.tunnel.route_protocol, DEFAULT_ROUTE_PROTOCOL);
    assert_eq!(DEFAULT_ROUTE_PROTOCOL, 57);
    let e = server_err(&SERVER.replace("[tunnel]", "[tunnel]\nroute_protocol = 2"));
    assert!(
        e.starts_with("server.toml: tunnel.route_protocol: 2 is the kernel's own"),
        "{e}"
    );
    let e = server_err(&SERVER.replace("[tunnel]", "[tunnel]\nroute_protocol = 300"));
    assert!(e.starts_with("server.toml: tunnel.route_protocol: "), "{e}");
}
