//! The numbering of each client's rate buckets by the rule that uses them, kept for the
//! server's life: a rule a reloaded configuration keeps (the server's request rate, a route's
//! own, the WebSocket rates, a files route's `client_bandwidth`) keeps its bucket, so what a
//! client spent of it carries over; a rule added gets a new number.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A rule with a rate bucket in each client's state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum BucketRule {
    /// `rate_limit_requests` of `[limits]` (and of routes without a budget of their own).
    ServerRequests,
    /// A route's own request budget, by its path.
    RouteRequests(String),
    /// `client_messages_per_minute`.
    Messages,
    /// `client_bytes_per_minute`.
    Bytes,
    /// A files route's `client_bandwidth`, by its path.
    Bandwidth(String),
    /// `connections_per_minute` as a lease, when the node is one of a cluster (alone, the
    /// client's own connection-rate state is used).
    Connections,
}

/// Bucket numbers, given out in the order rules are first seen.
#[derive(Debug, Default)]
pub(super) struct BucketNumbers {
    numbers: Mutex<HashMap<BucketRule, usize>>,
}

impl BucketNumbers {
    /// The bucket of `rule`: its number from before, or the next one.
    pub(super) fn number(&self, rule: BucketRule) -> usize {
        let mut numbers = self
            .numbers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = numbers.len();
        *numbers.entry(rule).or_insert(next)
    }

    /// Per bucket, the name of its rule that every node of a cluster shares (`None`: a rule
    /// each node keeps to itself).
    pub(super) fn shared_names(&self) -> Box<[Option<Arc<str>>]> {
        let numbers = self
            .numbers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut names = vec![None; numbers.len()];
        for (rule, &number) in numbers.iter() {
            names[number] = match rule {
                BucketRule::ServerRequests => Some("requests".into()),
                BucketRule::RouteRequests(path) => Some(format!("requests:{path}").into()),
                BucketRule::Messages => Some("messages".into()),
                BucketRule::Bytes => Some("bytes".into()),
                BucketRule::Connections => Some("connections".into()),
                BucketRule::Bandwidth(_) => None,
            };
        }
        names.into_boxed_slice()
    }

    /// Buckets numbered so far.
    pub(super) fn count(&self) -> usize {
        self.numbers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_keeps_its_number_and_new_rules_come_after() {
        let numbers = BucketNumbers::default();
        assert_eq!(numbers.number(BucketRule::ServerRequests), 0);
        assert_eq!(numbers.number(BucketRule::RouteRequests("/a".into())), 1);
        assert_eq!(numbers.number(BucketRule::Messages), 2);
        // A reload: the same rules, in another order, and one more.
        assert_eq!(numbers.number(BucketRule::Messages), 2);
        assert_eq!(numbers.number(BucketRule::Bandwidth("/f/".into())), 3);
        assert_eq!(numbers.number(BucketRule::RouteRequests("/a".into())), 1);
        assert_eq!(numbers.count(), 4);
        let shared = numbers.shared_names();
        let names: Vec<Option<&str>> = shared.iter().map(|n| n.as_deref()).collect();
        assert_eq!(
            names,
            [
                Some("requests"),
                Some("requests:/a"),
                Some("messages"),
                None
            ]
        );
    }
}
