//! The top clients for `/stats` and the dashboard: the clients with the most open connections
//! and those using the largest share of a rate budget, with the budgets they are ranked by.
//!
//! Finding them walks the whole client table on the worker that answers (roughly 20 ms per
//! 100,000 tracked clients on this project's 2-core machine), so a report is kept for
//! [`REPORT_MAX_AGE`] and shared by every reader: several dashboards polling every second cost
//! one walk a second, and a walk under way is never waited for (the reader that finds the
//! cache busy takes the previous report).

use std::sync::{Arc, Mutex, PoisonError, TryLockError};

use ringstream_limits::client_table::{RateBudget, TopClients};
use ringstream_limits::gcra::Gcra;

use super::ClientGate;
use super::requests::SERVER_REQUESTS_BUCKET;

/// How long a report is reused, in nanoseconds on the gate's clock.
const REPORT_MAX_AGE: u64 = 900_000_000;

/// What a per-client rate budget limits, as reports name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetName {
    /// `rate_limit_requests`: the server's budget (`None`), or route `index`'s own.
    Requests(Option<usize>),
    /// `client_messages_per_minute`.
    Messages,
    /// `client_bytes_per_minute`.
    Bytes,
    /// `client_bandwidth` of files route `index`.
    Bandwidth(usize),
}

/// One report of the top clients.
#[derive(Debug, Default)]
pub struct TopReport {
    /// The budgets clients are ranked by, in the order each client's use of them is listed.
    pub budgets: Vec<(BudgetName, RateBudget)>,
    /// The top clients.
    pub top: TopClients,
}

/// The last report and when it was made, and the lock a walk of the table holds (so that
/// readers of the last report never wait for a walk).
#[derive(Debug, Default)]
pub(super) struct TopCache {
    last: Mutex<Option<(u64, Arc<TopReport>)>>,
    walking: Mutex<()>,
}

impl TopCache {
    fn last(&self) -> Option<(u64, Arc<TopReport>)> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ClientGate {
    /// The `n` clients with the most open connections and the `n` using the largest share of
    /// a rate budget: the request budgets (the server's, then routes' own), the WebSocket
    /// message and byte budgets, and the files routes' `client_bandwidth`. A report younger
    /// than [`REPORT_MAX_AGE`] is reused, and so is an older one while another worker walks.
    pub fn top_clients(&self, n: usize) -> Arc<TopReport> {
        let now = self.now();
        let last = self.top.last();
        if let Some((made, report)) = &last
            && now.saturating_sub(*made) < REPORT_MAX_AGE
        {
            return Arc::clone(report);
        }
        let _walking = match self.top.walking.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return last.map_or_else(Arc::default, |(_, report)| report);
            }
        };
        let budgets = self.rate_budgets();
        let rates: Vec<RateBudget> = budgets.iter().map(|(_, b)| *b).collect();
        let top = self.table.top_clients(n, &rates, now);
        let report = Arc::new(TopReport { budgets, top });
        *self.top.last.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((now, Arc::clone(&report)));
        report
    }

    /// The rate budgets clients are ranked by, with their names.
    fn rate_budgets(&self) -> Vec<(BudgetName, RateBudget)> {
        let mut budgets: Vec<(BudgetName, RateBudget)> = Vec::new();
        let routes = self.requests.len().saturating_sub(1);
        for (index, quota) in self.requests.iter().enumerate().take(routes) {
            let Some(budget) = quota.as_ref().map(|q| q.budget()) else {
                continue;
            };
            if budgets.iter().all(|(_, b)| b.bucket != budget.bucket) {
                let name = if budget.bucket == SERVER_REQUESTS_BUCKET {
                    BudgetName::Requests(None)
                } else {
                    BudgetName::Requests(Some(index))
                };
                budgets.push((name, budget));
            }
        }
        let named = |name, budget: &Option<(usize, Gcra)>| {
            budget.map(|(bucket, quota)| (name, RateBudget { bucket, quota }))
        };
        budgets.extend(named(BudgetName::Messages, &self.messages));
        budgets.extend(named(BudgetName::Bytes, &self.bytes));
        for (index, budget) in self.bandwidth.iter().enumerate() {
            budgets.extend(named(BudgetName::Bandwidth(index), budget));
        }
        budgets
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use std::net::IpAddr;

    use ringstream_limits::identity::ClientKey;

    use super::*;
    use crate::config::ServerConfig;
    use crate::protections::gate::Admission;
    use crate::server::metrics::Metrics;

    #[test]
    fn a_report_names_its_budgets_and_is_shared_while_it_is_young() {
        let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
        config.clients.client_messages_per_minute = 600;
        let gate = ClientGate::new(&config, Arc::new(Metrics::new(1)));
        let admit = |address: &str| match gate.on_accept(address.parse::<IpAddr>().unwrap()) {
            Admission::Admit(slot) => slot,
            other => panic!("{other:?}"),
        };
        let _first = admit("10.0.0.1");
        let report = gate.top_clients(10);
        assert_eq!(report.budgets.len(), 1);
        assert_eq!(report.budgets[0].0, BudgetName::Messages);
        let ranked: Vec<ClientKey> = report.top.by_connections.iter().map(|r| r.key).collect();
        assert_eq!(ranked, vec![ClientKey::V4(0x0a00_0001)]);
        let _second = admit("10.0.0.2");
        assert!(
            Arc::ptr_eq(&report, &gate.top_clients(10)),
            "a young report is reused"
        );
    }
}
