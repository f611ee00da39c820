//! Online enrollment: a home sends its CSR with a one-time token's secret over TLS and gets
//! its bundle back; its private key never leaves it.
//!
//! - [`protocol`]: the messages (length-prefixed, size-limited, typed refusals).
//! - [`server`]: the listener (`hometun pki serve`; the server daemon may run the same).
//! - [`limits`]: its connection cap, rate limits and deadlines.
//! - [`client_auth`]: its optional TLS client authentication (renewals).
//! - [`client`]: `hometun enroll`.

pub mod client;
pub mod client_auth;
pub mod limits;
pub mod protocol;
pub mod server;
