//! One IKE SA: one type per exchange step, each consumed on its transition (DESIGN.md style 3,
//! rustls `client/tls13.rs`).
