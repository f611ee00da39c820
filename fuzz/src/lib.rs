//! What the fuzz targets share: a reader of the fuzzer's bytes, the certificates of the IKE
//! harnesses, a hostile IKE peer built from the real state machine, the two-peer world it
//! plays in and the scenarios of the deep IKE targets, and the forwarder's receive path with
//! keys the harness knows.

pub mod choices;
pub mod craft;
pub mod credentials;
pub mod endpoints;
pub mod established;
pub mod hostile;
pub mod ike_world;
pub mod initiator;
pub mod receive;
