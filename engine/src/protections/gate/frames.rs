//! WebSocket rates per client, across all of its connections: frames and payload bytes per
//! minute (`client_messages_per_minute`, `client_bytes_per_minute`).

use ringstream_limits::client_table::{Denial, Rule};
use ringstream_limits::gcra::Decision;

use super::ClientGate;
use super::admission::ClientSlot;
use super::shared::Taken;
use crate::config::LimitMode;

impl ClientGate {
    /// Whether the client's WebSocket rates (across its connections) take a frame of `bytes`;
    /// the rule it broke otherwise (already logged and counted). `mode` is the route's.
    pub fn check_frame(
        &self,
        slot: &ClientSlot,
        bytes: u64,
        path: &str,
        mode: LimitMode,
    ) -> Option<Rule> {
        let client = slot.limited()?;
        let now = self.now();
        let checks = [
            (self.messages, 1, Rule::ClientMessageRate),
            (self.bytes, bytes, Rule::ClientByteRate),
        ];
        for (quota, cost, rule) in checks {
            if let Some((bucket, quota)) = quota
                && cost > 0
                && let Some(Decision::Deny { retry_after }) =
                    match self.take(client, bucket, &quota, now, cost) {
                        Taken::Decided(decision) => Some(decision),
                        // A WebSocket is not closed for Redis's absence: `closed` lets its
                        // frames pass, counted.
                        Taken::RedisAway => {
                            self.count_redis_away(false);
                            None
                        }
                    }
            {
                let denial = Denial {
                    rule,
                    observed: cost,
                    limit: quota.burst(),
                    retry_after,
                };
                self.violation(slot.address, path, denial, mode, Some(client));
                return (mode == LimitMode::Enforce).then_some(rule);
            }
        }
        None
    }

    /// Whether any per-client WebSocket rate is configured (frames are not checked otherwise).
    pub fn has_frame_rates(&self) -> bool {
        self.messages.is_some() || self.bytes.is_some()
    }
}
