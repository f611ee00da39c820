//! server.toml and client.toml text through `ServerConfig::from_toml` and
//! `ClientConfig::from_toml`: never a panic; an error is one line (the config crate's promise
//! to operators); a config that loads writes out (`to_toml`) to text that loads to the same
//! config.
//!
//! Input: the first byte picks a mode. Mode 0 takes the rest as the file. The other modes edit
//! a complete, valid file (server or client, every table used) so that the checks behind the
//! TOML parser are reached: the rest is a list of edits, each 3 header bytes (position high and
//! low, then length L and kind: bit 7 set = insert, else overwrite) and L & 0x1f data bytes.
#![no_main]

use std::path::Path;

use hometun_config::{ClientConfig, ServerConfig};
use libfuzzer_sys::fuzz_target;

const SERVER: &str = r#"# hometun server config
[server]
name = "vps.example"
listen = "192.0.2.1"
ike_port = 500
nat_port = 4500
certificate = "server.pem"
private_key = "server.key"
ca = "ca.pem"
crl = "crl.pem"
pool = "2001:db8:100::/48"
state_dir = "state"
control_socket = "state/control.sock"

[tunnel]
interface = "hometun0"
mtu = 1400
link_local = "fe80::1/64"
manage_routes = true
route_metric = 1024

[limits]
rekey_bytes = 2147483648
rekey_packets = 1073741824
hard_bytes = 4294967296
hard_packets = 2147483648
rekey_seconds = 3600
hard_seconds = 7200

[ike]
proposals = ["aes128gcm16-prfsha256-x25519", "aes128gcm16-prfsha256-ecp256"]
esp_proposals = ["aes128gcm16", "aes256gcm16-esn"]
dpd_seconds = 30
retransmit_ms = 500
retransmit_tries = 5
replay_window = 1024
nat_keepalive_seconds = 20

[dos]
cookie_threshold = 64
half_open_per_source = 8
half_open_total = 1024

[[clients]]
name = "static.example"
prefix = "2001:db8:100:5::/64"

[[clients]]
name = "other.example"
prefix = "2001:db8:100:6::/64"

[enroll]
listen = "192.0.2.1:8443"
address = "192.0.2.1:8443"
pki_dir = "."
"#;

const CLIENT: &str = r#"[client]
name = "home.example"
server = "192.0.2.1"
server_name = "vps.example"
server_port = 500
local = "192.0.2.2"
nat_port = 4500
certificate = "client.pem"
private_key = "client.key"
ca = "ca.pem"
prefix = "2001:db8:100:1::/64"
address = "2001:db8:100:1::1"
state_dir = "state"
control_socket = "state/control.sock"

[tunnel]
interface = "hometun0"
mtu = 1400
link_local = "fe80::2/64"

[limits]
rekey_bytes = 1000000
hard_bytes = 2000000

[ike]
proposals = ["aes256gcm16-prfsha256-x25519"]
dpd_seconds = 0
"#;

fn edited(template: &str, mut edits: &[u8]) -> Vec<u8> {
    let mut text = template.as_bytes().to_vec();
    while let [hi, lo, kind, rest @ ..] = edits {
        let len = usize::from(kind & 0x1f).min(rest.len());
        let (data, tail) = rest.split_at(len);
        let pos = usize::from(u16::from_be_bytes([*hi, *lo])) % (text.len() + 1);
        if kind & 0x80 != 0 {
            text.splice(pos..pos, data.iter().copied());
        } else {
            let end = (pos + data.len()).min(text.len());
            text.splice(pos..end, data.iter().copied());
        }
        edits = tail;
    }
    text
}

fn one_line(error: &impl std::fmt::Display, text: &str) {
    let message = error.to_string();
    assert!(
        !message.contains('\n'),
        "a config error spans lines: {message:?}\nfor: {text:?}"
    );
}

fn check(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let path = Path::new("/etc/hometun/fuzz.toml");
    match ServerConfig::from_toml(path, text) {
        Ok(config) => {
            let again = ServerConfig::from_toml(path, &config.to_toml())
                .unwrap_or_else(|e| panic!("written server config does not load: {e}"));
            assert_eq!(again, config);
        }
        Err(e) => one_line(&e, text),
    }
    match ClientConfig::from_toml(path, text) {
        Ok(config) => {
            let again = ClientConfig::from_toml(path, &config.to_toml())
                .unwrap_or_else(|e| panic!("written client config does not load: {e}"));
            assert_eq!(again, config);
            // Defined for every config that loads (client.address lies inside client.prefix).
            assert!(config.client.prefix.contains(&config.tunnel_address()));
        }
        Err(e) => one_line(&e, text),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if rest.is_empty() {
        // The templates themselves must load, or the edit modes fuzz only the TOML parser.
        let path = Path::new("template.toml");
        ServerConfig::from_toml(path, SERVER).expect("the server template loads");
        ClientConfig::from_toml(path, CLIENT).expect("the client template loads");
    }
    match mode % 3 {
        0 => check(rest),
        1 => check(&edited(SERVER, rest)),
        _ => check(&edited(CLIENT, rest)),
    }
});
