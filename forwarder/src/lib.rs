//! ESP data plane: ESP codec, anti-replay, SA database, TUN and outer sockets.

pub mod cli;
