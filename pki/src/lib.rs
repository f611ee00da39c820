//! CA, enrollment and prefix allocation for hometun.

pub mod cli;
