//! hometun's lab toolkit (docs/ARCHITECTURE.md, "Tests"): one crate for what the tests,
//! benchmarks and the demo build their labs with.
//!
//! - [`netns`] (always): network namespaces, veth pairs, sysctls, nftables rules and child
//!   processes that clean up after themselves. `hometun demo` uses this part alone (without the
//!   default features), so it holds nothing that only tests may do.
//! - `strongswan`: the one charon launcher ([`strongswan::Charon`]) and swanctl.
//! - `trace`: the one reader of the strongSwan trace in testdata/ ([`trace`]).
//! - `postgres`: a throwaway PostgreSQL server for the registry's tests ([`postgres_lab`]).
//! - `daemons`: labs that run the `hometun` binary: two static forwarders ([`forwarder_lab`]),
//!   the IKE daemons with a PKI ([`ike_lab`], [`pki_lab`]), and the roaming labs with an ISP,
//!   a NAT and an attacker ([`roaming_lab`], [`roaming_ike_lab`]), and two servers a home fails
//!   over between, with BIRD carrying its route ([`failover_lab`], [`bird`], [`ping_log`]).

#![cfg_attr(test, allow(clippy::unwrap_used))]
// A driver of tests and labs: wall-clock timeouts are what it is for.
#![allow(clippy::disallowed_methods)]

pub mod netns;
pub use netns::{
    Guarded, Netns, enter, monotonic_ns, namespaces_with_prefix, one_line, printed,
    remove_namespace, run, run_command, veth, wait_for,
};

#[cfg(feature = "harness")]
mod harness;
#[cfg(feature = "harness")]
pub use harness::{hometun_bin, require_root, skip_or_fail, workspace_root};

#[cfg(feature = "daemons")]
pub mod bird;
#[cfg(feature = "daemons")]
pub mod failover_lab;
#[cfg(feature = "daemons")]
pub mod forwarder_lab;
#[cfg(feature = "daemons")]
pub mod ike_lab;
#[cfg(feature = "daemons")]
pub mod lan_lab;
#[cfg(feature = "daemons")]
pub mod ping_log;
#[cfg(feature = "daemons")]
pub mod pki_lab;
#[cfg(feature = "postgres")]
pub mod postgres_lab;
#[cfg(all(feature = "daemons", feature = "postgres"))]
pub mod registry_lab;
#[cfg(feature = "daemons")]
pub mod roaming_ike_lab;
#[cfg(feature = "daemons")]
pub mod roaming_lab;
#[cfg(feature = "strongswan")]
pub mod strongswan;
#[cfg(feature = "trace")]
pub mod trace;
