//! The hometun daemons around the sans-IO protocol crate `hometun_ike`: `hometun server` and
//! `hometun client` (configuration, credentials, the tokio driver and its forwarder link),
//! what they serve besides IKE (status socket, metrics, reload, the enrollment listener) and
//! the IKE debug tools of the command line (`decode`, `probe`, `bench`).
//! See docs/ARCHITECTURE.md, "Crates".

pub mod authorizer;
pub mod cli;
pub mod clock;
pub mod crl_watch;
pub mod driver;
pub mod enrollment;
pub mod forwarder_link;
pub mod holders;
pub mod homes;
pub mod lan;
pub mod malloc_arenas;
pub mod metrics;
pub mod ndp;
pub mod ndp_socket;
pub mod netconf;
pub mod operator;
pub mod peers_up;
pub mod port_wait;
pub mod refusals;
pub mod registry_watch;
pub mod reload;
pub mod renewal;
pub mod setup;
pub mod site;
pub mod state_file;
pub mod status;
pub mod status_client;
#[cfg(test)]
mod string_error_count;
pub mod tools;
pub mod upstream;
