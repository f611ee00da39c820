//! IKEv2 (RFC 7296), sans-IO state machine and tokio driver.
