//! IKEv2 (RFC 7296): sans-IO state machine, tokio driver, and the hometun daemons.

pub mod cli;
pub mod crypto;
pub mod decode;
pub mod wire;
