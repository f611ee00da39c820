//! The IKE debug tools of `hometun ike`: decode messages and captures, probe a responder,
//! measure handshakes.

pub mod bench;
pub mod decode;
pub mod probe;
