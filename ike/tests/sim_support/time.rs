//! Randomness and time: the seeded generator and the virtual clock of `hometun_ike::sim`.

pub use hometun_ike::sim::{Clock, SeededRandom, wall_2028};
