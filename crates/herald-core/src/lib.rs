//! Herald's core: what every Herald service shares.
//!
//! The envelope types and their Avro codecs ([`envelope`], [`codec`]), the
//! configuration ([`config`]), topic names ([`topics`]), Kafka header names
//! ([`headers`]), failure classification ([`classify`]), the retry ladder
//! ([`retry`]), Standard Webhooks signing ([`signature`]), Kafka client set-up
//! ([`kafka`]), broker-side consumer lag and retention headroom ([`lagprobe`]),
//! metrics ([`metrics`]), the admin HTTP server ([`admin`]),
//! logging ([`telemetry`]) and distributed tracing ([`otel`]).

pub mod actions;
pub mod admin;
pub mod batch;
pub mod classify;
pub mod codec;
pub mod config;
pub mod envelope;
pub mod headers;
pub mod host;
pub mod identity;
pub mod kafka;
pub mod lagprobe;
pub mod metrics;
pub mod otel;
pub mod ratelimit;
pub mod registry;
pub mod retry;
pub mod routing;
pub mod signal;
pub mod signature;
pub mod sources;
pub mod telemetry;
pub mod time;
pub mod topics;
