//! Violations: every refusal (or, in shadow mode, what would have been one) is counted, logged
//! within a server-wide budget of log lines, and recorded against the client when bans are on.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ringstream_limits::client_table::{ClientState, Denial, Rule};
use ringstream_limits::gcra::Gcra;

use super::ClientGate;
use crate::config::LimitMode;

/// Violation log lines per second, server-wide; the rest are counted, not written.
const LOG_LINES_PER_SECOND: u64 = 50;

/// The budget of violation log lines (`LOG_LINES_PER_SECOND`).
pub(super) fn log_quota() -> Option<Gcra> {
    Gcra::new(
        LOG_LINES_PER_SECOND,
        Duration::from_secs(1),
        LOG_LINES_PER_SECOND,
    )
}

impl ClientGate {
    /// Logs and counts a violation of a per-connection rule (no client state involved).
    pub fn connection_violation(&self, address: IpAddr, path: &str, rule: Rule, mode: LimitMode) {
        let denial = Denial {
            rule,
            observed: 0,
            limit: 0,
            retry_after: None,
        };
        self.violation(address, path, denial, mode, None);
    }

    /// Whether a violation line may be logged at `now` (at most `LOG_LINES_PER_SECOND`
    /// server-wide); one that may not is counted as suppressed.
    pub(super) fn may_log(&self, now: u64) -> bool {
        let logged = self
            .log_quota
            .is_none_or(|quota| self.log_budget.check(&quota, now, 1).is_allowed());
        if !logged {
            self.metrics
                .suppressed_logs
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        logged
    }

    /// One violation: counted, logged (within the log's own budget), and, when enforced and
    /// bans are on, recorded against the client.
    pub(super) fn violation(
        &self,
        address: IpAddr,
        route: &str,
        denial: Denial,
        mode: LimitMode,
        client: Option<&Arc<ClientState>>,
    ) {
        self.metrics.violation(denial.rule, mode);
        let now = self.now();
        let banned_for = match (client, &self.bans) {
            (Some(client), Some(bans)) if mode == LimitMode::Enforce => {
                if denial.rule == Rule::Banned {
                    None
                } else {
                    client.record_violation(bans, now)
                }
            }
            _ => None,
        };
        if let (Some(duration), Some(client), Some(cluster)) = (banned_for, client, &self.cluster) {
            cluster.banned(client, duration);
        }
        if !self.may_log(now) {
            return;
        }
        let action = match mode {
            LimitMode::Enforce => "refused",
            LimitMode::Shadow => "shadow",
        };
        tracing::warn!(
            target: "ringstream::violation",
            client = %address,
            route,
            rule = denial.rule.key(),
            observed = denial.observed,
            limit = denial.limit,
            action,
            banned_for_s = banned_for.map(|d| d.as_secs()),
            "limit exceeded"
        );
    }
}
