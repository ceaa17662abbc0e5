//! Request rates per client and route (`rate_limit_requests` + `burst`): the quotas built from
//! the configuration, the check of each request, and the `RateLimit` / `RateLimit-Policy`
//! headers an answer carries.

use std::time::Duration;

use ringstream_limits::client_table::{Denial, RateBudget, Rule};
use ringstream_limits::gcra::{Decision, Gcra};

use super::ClientGate;
use super::admission::ClientSlot;
use super::buckets::{BucketNumbers, BucketRule};
use super::refusal::{Refusal, whole_seconds};
use super::shared::Taken;
use crate::config::{LimitMode, RequestRate, ServerConfig};
use crate::protections::gate::admission::REDIS_AWAY_RETRY;

/// The bucket of the server-wide request budget: [`BucketRule::ServerRequests`] is numbered
/// first ([`ClientGate::new`]).
pub(super) const SERVER_REQUESTS_BUCKET: usize = 0;
/// The window of `rate_limit_requests` and the `w` of its `RateLimit-Policy`.
const REQUEST_WINDOW: Duration = Duration::from_secs(60);

/// The quota of one request-rate budget, with its bucket.
#[derive(Debug, Clone, Copy)]
pub(super) struct RequestQuota {
    bucket: usize,
    quota: Gcra,
    rate: RequestRate,
    mode: LimitMode,
}

impl RequestQuota {
    /// The budget's bucket and quota, for reports.
    pub(super) fn budget(&self) -> RateBudget {
        RateBudget {
            bucket: self.bucket,
            quota: self.quota,
        }
    }
}

/// The `RateLimit-Policy` and `RateLimit` header values of one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateHeaders {
    /// `RateLimit-Policy`.
    pub policy: String,
    /// `RateLimit`.
    pub state: String,
}

/// The outcome of a request-rate check.
#[derive(Debug)]
pub enum RequestCheck {
    /// Serve it; add these headers to the response, if any.
    Allowed(Option<RateHeaders>),
    /// 429 with `Retry-After` and these headers.
    Refused {
        /// The 429.
        refusal: Refusal,
        /// Always present on a 429.
        headers: RateHeaders,
    },
}

/// The request quotas of `config`, one per route then one for requests no route matched, and
/// the first bucket they leave free. A route that inherits the server-wide quota shares its
/// bucket; a route with its own quota gets a bucket of its own.
pub(super) fn request_quotas(
    config: &ServerConfig,
    numbers: &BucketNumbers,
) -> Box<[Option<RequestQuota>]> {
    let quota = |rate: &RequestRate| {
        let at_once = if rate.burst > 0 {
            rate.burst
        } else {
            rate.per_minute
        };
        Gcra::new(
            u64::from(rate.per_minute),
            REQUEST_WINDOW,
            u64::from(at_once),
        )
    };
    let server_bucket = numbers.number(BucketRule::ServerRequests);
    let server_quota = quota(&config.limits.request_rate).map(|q| RequestQuota {
        bucket: server_bucket,
        quota: q,
        rate: config.limits.request_rate,
        mode: config.limits.mode,
    });
    let mut requests: Vec<Option<RequestQuota>> = Vec::new();
    for route in &config.routes {
        let rate = route.limits.request_rate;
        let bucket = if rate.own_budget {
            numbers.number(BucketRule::RouteRequests(route.path.clone()))
        } else {
            server_bucket
        };
        requests.push(quota(&rate).map(|q| RequestQuota {
            bucket,
            quota: q,
            rate,
            mode: route.limits.mode,
        }));
    }
    requests.push(server_quota);
    requests.into_boxed_slice()
}

impl ClientGate {
    /// Checks a request of `slot`'s client on route `route` (`None`: no route matched) against
    /// its request rate; `path` names the route in the violation log.
    pub fn check_request(
        &self,
        slot: &ClientSlot,
        route: Option<usize>,
        path: &str,
    ) -> RequestCheck {
        let index = route.unwrap_or(self.requests.len() - 1);
        let Some(Some(quota)) = self.requests.get(index) else {
            return RequestCheck::Allowed(None);
        };
        let Some(client) = slot.limited() else {
            return RequestCheck::Allowed(None);
        };
        let now = self.now();
        let policy = format!(
            "\"requests\";q={};w={}",
            quota.rate.per_minute,
            REQUEST_WINDOW.as_secs()
        );
        let decision = match self.take(client, quota.bucket, &quota.quota, now, 1) {
            Taken::Decided(decision) => decision,
            Taken::RedisAway => {
                self.count_redis_away(true);
                return RequestCheck::Refused {
                    refusal: Refusal {
                        status: 503,
                        retry_after: Some(REDIS_AWAY_RETRY),
                        silent: false,
                    },
                    headers: RateHeaders {
                        policy,
                        state: format!("\"requests\";r=0;t={REDIS_AWAY_RETRY}"),
                    },
                };
            }
        };
        match decision {
            Decision::Allow {
                remaining,
                reset_after,
            } => RequestCheck::Allowed(quota.rate.headers.then(|| RateHeaders {
                policy,
                state: format!(
                    "\"requests\";r={remaining};t={}",
                    whole_seconds(reset_after)
                ),
            })),
            Decision::Deny { retry_after } => {
                let denial = Denial {
                    rule: Rule::RequestRate,
                    observed: quota.quota.burst() + 1,
                    limit: quota.quota.burst(),
                    retry_after,
                };
                self.violation(slot.address, path, denial, quota.mode, Some(client));
                if quota.mode == LimitMode::Shadow {
                    return RequestCheck::Allowed(None);
                }
                let wait = retry_after.map_or(REQUEST_WINDOW.as_secs(), whole_seconds);
                RequestCheck::Refused {
                    refusal: Refusal {
                        status: 429,
                        retry_after: Some(wait),
                        silent: false,
                    },
                    headers: RateHeaders {
                        policy,
                        state: format!("\"requests\";r=0;t={wait}"),
                    },
                }
            }
        }
    }
}
