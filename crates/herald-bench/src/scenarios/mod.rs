//! The scenarios. Each returns its figures and leaves no topics behind.

pub mod broker;
pub mod gateway;
pub mod latency;
pub mod peer;
pub mod peer_md;
mod peer_settle;
pub mod throughput;
