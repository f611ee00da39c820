//! `[[lan]]` and `[upstream]`: defaults, the /64 each LAN gets, and one-line errors that name
//! the file and the field.

use std::path::Path;

use crate::minimal::{CLIENT_TOML, SERVER_TOML as SERVER};
use crate::{ClientConfig, ServerConfig, UpstreamMode};

/// The minimal client holding a /56, so that its LANs have /64s to choose from.
fn client_toml() -> String {
    CLIENT_TOML.replace("2001:db8:100:1::/64", "2001:db8:100:100::/56")
}

fn client(lans: &str) -> Result<ClientConfig, String> {
    ClientConfig::from_toml(
        Path::new("client.toml"),
        &format!("{}\n{lans}", client_toml()),
    )
    .map_err(|e| e.to_string())
}

fn server(upstream: &str) -> Result<ServerConfig, String> {
    ServerConfig::from_toml(Path::new("server.toml"), &format!("{SERVER}\n{upstream}"))
        .map_err(|e| e.to_string())
}

#[test]
fn each_lan_gets_its_own_64_of_the_prefix() {
    let c = client(
        "[[lan]]\ninterface = \"eth1\"\ndns = [\"2001:db8:53::53\"]\nsearch = [\"Home.Example.\"]\n\n[[lan]]\ninterface = \"eth2\"\nsubnet = 255\n",
    )
    .unwrap();
    assert_eq!(
        c.lan_subnets(),
        vec![
            "2001:db8:100:100::/64".parse().unwrap(),
            "2001:db8:100:1ff::/64".parse().unwrap()
        ]
    );
    assert_eq!(c.lan[0].subnet, 0, "subnet defaults to 0");
    assert_eq!(c.lan[0].search, vec!["home.example".to_string()]);
    assert!(c.tunnel.clamp_mss, "clamp_mss defaults to on");
    assert_eq!(c.tunnel.route_metric, 1024);
    let again = ClientConfig::from_toml(Path::new("client.toml"), &c.to_toml()).unwrap();
    assert_eq!(again, c);
}

#[test]
fn a_config_without_lan_tables_has_none_and_writes_none() {
    let c = client("").unwrap();
    assert!(c.lan.is_empty() && c.client.updown.is_none());
    assert!(!c.to_toml().contains("lan"));
}

#[test]
fn lan_mistakes_are_one_line_naming_file_and_field() {
    let cases = [
        (
            "[[lan]]\ninterface = \"eth1\"\nsubnet = 256\n",
            "client.toml: lan[0].subnet: 256 is outside client.prefix 2001:db8:100:100::/56 (it holds /64s 0 to 255)",
        ),
        (
            "[[lan]]\ninterface = \"eth1\"\n[[lan]]\ninterface = \"eth1\"\nsubnet = 1\n",
            "client.toml: lan[1].interface: eth1 is also lan[0].interface",
        ),
        (
            "[[lan]]\ninterface = \"eth1\"\n[[lan]]\ninterface = \"eth2\"\n",
            "client.toml: lan[1].subnet: 0 is also lan[0].subnet: two links cannot share one /64",
        ),
        (
            "[[lan]]\ninterface = \"hometun0\"\n",
            "client.toml: lan[0].interface: hometun0 is the tunnel interface (tunnel.interface)",
        ),
        (
            "[[lan]]\ninterface = \"\"\n",
            "client.toml: lan[0].interface: \"\" is not an interface name (1 to 15 characters, none of '/', ':', '=' or spaces)",
        ),
        (
            "[[lan]]\ninterface = \"eth1 eth2\"\n",
            "client.toml: lan[0].interface: \"eth1 eth2\" is not an interface name (1 to 15 characters, none of '/', ':', '=' or spaces)",
        ),
        (
            "[[lan]]\ninterface = \"a=b\"\n",
            "client.toml: lan[0].interface: \"a=b\" is not an interface name (1 to 15 characters, none of '/', ':', '=' or spaces)",
        ),
        (
            "[[lan]]\ninterface = \"eth1\"\ndns = [\"ff02::1\"]\n",
            "client.toml: lan[0].dns: ff02::1 is not a unicast address a LAN host can reach",
        ),
        (
            "[[lan]]\ninterface = \"eth1\"\nsearch = [\"bad name\"]\n",
            "client.toml: lan[0].search[0]: \"bad name\" is not a DNS name",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(client(text).unwrap_err(), expected, "{text}");
    }
    let error = client("[[lan]]\ninterface = \"eth1\"\nmtu = 1400\n").unwrap_err();
    assert!(
        error.starts_with("client.toml: lan[0].mtu: ") && !error.contains('\n'),
        "{error}"
    );
}

#[test]
fn a_prefix_longer_than_64_cannot_serve_a_lan() {
    let text = client_toml().replace("2001:db8:100:100::/56", "2001:db8:100::2/128");
    let error = ClientConfig::from_toml(
        Path::new("client.toml"),
        &format!("{text}\n[[lan]]\ninterface = \"eth1\"\n"),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        error,
        "client.toml: lan[0].subnet: client.prefix 2001:db8:100::2/128 is longer than /64: a LAN needs a whole /64 (SLAAC, RFC 4862)"
    );
    // A /64 home has exactly one LAN /64: subnet 0.
    let text = client_toml().replace("2001:db8:100:100::/56", "2001:db8:100:1::/64");
    let one = |subnet: u32| {
        ClientConfig::from_toml(
            Path::new("client.toml"),
            &format!("{text}\n[[lan]]\ninterface = \"eth1\"\nsubnet = {subnet}\n"),
        )
    };
    assert_eq!(
        one(0).unwrap().lan_subnets(),
        vec!["2001:db8:100:1::/64".parse().unwrap()]
    );
    assert_eq!(
        one(1).unwrap_err().to_string(),
        "client.toml: lan[0].subnet: 1 is outside client.prefix 2001:db8:100:1::/64 (it holds /64s 0 to 0)"
    );
}

#[test]
fn updown_is_taken_relative_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.toml");
    let text = client_toml().replace("[tunnel]", "updown = \"updown.sh\"\n\n[tunnel]");
    std::fs::write(&path, text).unwrap();
    let c = ClientConfig::load(&path).unwrap();
    assert_eq!(c.client.updown, Some(dir.path().join("updown.sh")));
}

#[test]
fn upstream_defaults_to_routed_with_forwarding() {
    let s = server("").unwrap();
    assert!(s.upstream.forwarding);
    assert_eq!(s.upstream.mode, UpstreamMode::Routed);
    assert_eq!(s.upstream.ndp_proxy_interface(), None);
    let proxy = server("[upstream]\nmode = \"ndp-proxy\"\ninterface = \"eth0\"\n").unwrap();
    assert_eq!(proxy.upstream.ndp_proxy_interface(), Some("eth0"));
    let again = ServerConfig::from_toml(Path::new("server.toml"), &proxy.to_toml()).unwrap();
    assert_eq!(again, proxy);
}

#[test]
fn upstream_mistakes_are_one_line_naming_file_and_field() {
    let cases = [
        (
            "[upstream]\nmode = \"ndp-proxy\"\n",
            "server.toml: upstream.interface: mode = \"ndp-proxy\" needs the interface towards the provider (e.g. \"eth0\")",
        ),
        (
            "[upstream]\nmode = \"ndp-proxy\"\ninterface = \"eth0\"\nforwarding = false\n",
            "server.toml: upstream.forwarding: mode = \"ndp-proxy\" needs forwarding: the proxied packets must reach the tunnel",
        ),
        (
            "[upstream]\ninterface = \"eth0\"\n",
            "server.toml: upstream.interface: only used with mode = \"ndp-proxy\"",
        ),
        (
            "[upstream]\nmode = \"ndp-proxy\"\ninterface = \"hometun0\"\n",
            "server.toml: upstream.interface: hometun0 is the tunnel interface (tunnel.interface)",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(server(text).unwrap_err(), expected, "{text}");
    }
    let error = server("[upstream]\nmode = \"bridged\"\n").unwrap_err();
    assert!(
        error.starts_with("server.toml: upstream.mode: ") && error.contains("bridged"),
        "{error}"
    );
}
