//! Per-route counters and the set of delivered `webhook-id`s.

use std::collections::HashSet;

use serde::Serialize;

/// What one route has seen since the sink started. Counters survive
/// [`crate::Sink::set_behaviour`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RouteStats {
    /// All requests seen on the route.
    pub requests: u64,
    /// Requests answered 2xx.
    pub delivered: u64,
    /// Distinct `webhook-id`s answered 2xx.
    pub unique_delivered: u64,
    /// 2xx answers for a `webhook-id` already answered 2xx.
    pub duplicate_deliveries: u64,
    /// Requests answered 401 because their signature did not verify.
    pub bad_signatures: u64,
    /// Requests without one of `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    pub missing_headers: u64,
    /// Requests carrying a `traceparent` header.
    pub traceparents: u64,
    /// The `traceparent` of the latest request carrying one, so tests can
    /// follow a trace into the destination.
    pub last_traceparent: Option<String>,
}

/// A route's counters with the ids behind `unique_delivered`.
#[derive(Debug, Default)]
pub(crate) struct RouteState {
    pub stats: RouteStats,
    pub delivered_ids: HashSet<String>,
    /// Requests per `webhook-id`, answered or not: what a receiver's log
    /// would show per event.
    pub requests_by_id: std::collections::HashMap<String, u32>,
}

impl RouteState {
    /// Counts one 2xx answer. Without an id the answer counts as delivered
    /// but can be neither unique nor a duplicate.
    pub fn record_delivery(&mut self, id: Option<&str>) {
        self.stats.delivered += 1;
        let Some(id) = id else { return };
        if self.delivered_ids.contains(id) {
            self.stats.duplicate_deliveries += 1;
        } else {
            self.delivered_ids.insert(id.to_owned());
            self.stats.unique_delivered += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_split_into_unique_and_duplicate() {
        let mut s = RouteState::default();
        for id in [Some("a"), Some("b"), Some("a"), None, Some("a")] {
            s.record_delivery(id);
        }
        assert_eq!(s.stats.delivered, 5);
        assert_eq!(s.stats.unique_delivered, 2);
        assert_eq!(s.stats.duplicate_deliveries, 2);
        assert_eq!(s.delivered_ids.len(), 2);
    }
}
