//! Destination kinds. A kind turns a delivery into an HTTP request; the
//! adapter loop, retries and DLQ are the same for every kind. Adding a kind
//! is one folder here and one line in [`build`].

pub mod webhook;

use herald_core::config::{DestinationConfig, DestinationKind};
use herald_core::envelope::Delivery;

/// Builds requests for one destination.
pub trait RequestBuilder: Send + Sync {
    /// The request for one attempt. The adapter adds the trace context
    /// (`traceparent`, `tracestate`) to whatever a kind builds.
    fn build(&self, client: &reqwest::Client, delivery: &Delivery) -> reqwest::RequestBuilder;
}

/// The request builder for a configured destination.
pub fn build(name: &str, config: &DestinationConfig) -> anyhow::Result<Box<dyn RequestBuilder>> {
    Ok(match config.kind {
        DestinationKind::Webhook => Box::new(webhook::Webhook::new(name, config)?),
    })
}
