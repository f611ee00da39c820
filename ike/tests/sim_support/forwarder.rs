//! The fake forwarder: records the SA channel requests and reports counters like the real one
//! (`hometun_ike::sim`, shared with the fuzz harnesses).

pub use hometun_ike::sim::{FakeForwarder, InstalledSa, drain_outputs};
