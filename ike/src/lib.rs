//! IKEv2 (RFC 7296): sans-IO state machine, tokio driver, and the hometun daemons.

pub mod cli;
pub mod crypto;
pub mod daemon;
pub mod decode;
pub mod driver;
pub mod endpoint;
pub mod forwarder_link;
pub mod io;
pub mod proposal;
pub mod sa;
pub mod selectors;
pub mod settings;
pub mod status;
pub mod window;
pub mod wire;
