//! What hometun's tests, benchmarks and demo build their labs with (docs/ARCHITECTURE.md,
//! "Tests"): the strongSwan trace reader ([`trace`]).

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod trace;
