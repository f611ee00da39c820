//! The smallest valid configs, every required key and nothing else: what tests start from
//! (this crate's and the daemon's), and the required keys at a glance.

/// A server.toml with only its required keys.
pub const SERVER_TOML: &str = r#"
[server]
name = "vps.example"
listen = "192.0.2.1"
certificate = "server.pem"
private_key = "server.key"
ca = "ca.pem"
pool = "2001:db8:100::/48"

[tunnel]
link_local = "fe80::1/64"
"#;

/// A client.toml with only its required keys (the home holds 2001:db8:100:1::/64).
pub const CLIENT_TOML: &str = r#"
[client]
name = "home.example"
server = "192.0.2.1"
server_name = "vps.example"
certificate = "client.pem"
private_key = "client.key"
ca = "ca.pem"
prefix = "2001:db8:100:1::/64"

[tunnel]
link_local = "fe80::2/64"
"#;
