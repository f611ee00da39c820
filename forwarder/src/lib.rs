//! ESP data plane: ESP codec, anti-replay, SA database, TUN and outer sockets.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod aead;
pub mod cli;
pub mod replay;
pub mod wire;
