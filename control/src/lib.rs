//! The SA channel between the IKE daemon and the forwarder (docs/ARCHITECTURE.md, "The SA
//! channel").
//!
//! The IKE daemon negotiates SAs and pushes them to the forwarder as [`Request`]s; the forwarder
//! answers each request with a [`Response`] and reports [`Event`]s on its own (limits reached,
//! IKE packets that arrived on its UDP 4500 socket, endpoint moves). The same types travel over an
//! in-process channel in tests and, framed by [`codec`], over a Unix socket between processes.
//!
//! Both `hometun-ike` and `hometun-forwarder` depend on this crate and on nothing of each other.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod codec;
pub mod error;
pub mod heap_trim;
pub mod message;
pub mod roaming;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
pub mod types;

pub use codec::{CodecError, FrameDecoder, MAX_FRAME_LEN, decode_frame, encode_frame};
pub use error::{ControlError, EndpointError, PlatformError, PlatformOp};
pub use message::{
    CounterReport, Direction, DropReason, Envelope, Event, FromForwarder, LimitKind, Request,
    Response, SaCounters,
};
pub use roaming::{MoveRefusal, PeerRoaming, RoamingConfig, RoamingReport};
pub use types::{
    AeadAlg, AeadKey, ChildSa, Encapsulation, Endpoint, InterfaceConfig, KeyError, Limits, MAX_MTU,
    MAX_REPLAY_WINDOW, PeerId, Spi,
};
