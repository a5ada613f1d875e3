//! Tools for exercising Herald without real destinations. [`Sink`] is a
//! fault-injecting HTTP destination: each route answers by a [`Behaviour`]
//! (timeouts, 503s, 429s, fixed statuses, signature checks) and counts what it
//! saw in [`RouteStats`], so end-to-end tests, the demo and benchmarks can
//! check delivery (at-least-once, duplicates, signatures, trace context)
//! against a server they control. [`registry::TestRegistry`] is a
//! Confluent-compatible Schema Registry for tests.

mod behaviour;
pub mod provider;
pub mod registry;
mod sink;
mod stats;

pub use behaviour::{Behaviour, DEFAULT_HANG};
pub use sink::{Sink, DEFAULT_SEED, SEED_ENV};
pub use stats::RouteStats;
