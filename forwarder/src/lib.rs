//! ESP data plane: ESP codec, anti-replay, SA database, TUN and outer sockets.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod aead;
pub mod cli;
pub mod clock;
pub mod control_socket;
pub mod counters;
pub mod dataplane;
pub mod esp;
pub mod events;
pub mod gro;
pub mod inbound;
pub mod keepalive;
pub mod lifetime;
pub mod mss;
pub mod netlink;
pub mod peer_names;
pub mod read_failures;
pub mod replay;
pub mod requests;
pub mod roaming;
pub mod sad;
pub mod send_batch;
pub mod server;
pub mod signals;
pub mod sockets;
pub mod takeover;
pub mod tun_device;
pub mod tun_writer;
pub mod wire;
