//! Per-client admission, shared by every worker: who a client is, the allow and deny lists,
//! bans, and the per-client rules of PROTECTIONS.md (concurrent connections, connection rate,
//! request rate, WebSocket message and byte rates across a client's connections).
//!
//! A connection is admitted once, at accept when its address names the client, or at its first
//! request head when the client is named by a header, a query parameter or a trusted proxy's
//! `Forwarded`. Admission yields a [`ClientSlot`] the connection keeps to its end: it holds
//! the client's place in the connection count (released on drop, on every path) and the
//! client's shared state, so each later check is an atomic compare-and-swap, exact across
//! cores. Every refusal is a violation: one log line and a counter (in shadow mode the same,
//! and the traffic goes through).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ringstream_limits::bans::BanPolicy;
use ringstream_limits::client::{ClientIdSource, ClientIdentity, ClientKey};
use ringstream_limits::clients::{
    ClientState, ClientTable, ConnectionPass, ConnectionPolicy, Denial, Rule,
};
use ringstream_limits::clock::nanos;
use ringstream_limits::gcra::{AtomicGcraState, Decision, Gcra};
use ringstream_protocol::http::Request;

use crate::config::{ClientLimits, DenyAction, LimitMode, RequestRate, RouteKind, ServerConfig};
use crate::protections::loopback_watch::{LoopbackShare, LoopbackWatch};
use crate::server::coarse_clock;
use crate::server::metrics::Metrics;

/// Rate buckets of a client: the server-wide request budget, one per route with its own
/// quota, and the WebSocket message and byte budgets.
const SERVER_REQUESTS_BUCKET: usize = 0;
/// Violation log lines per second, server-wide; the rest are counted, not written.
const LOG_LINES_PER_SECOND: u64 = 50;
/// Clients unseen for this long are forgotten (unless their bans or quotas need longer).
const MIN_CLIENT_MEMORY: Duration = Duration::from_secs(120);
/// The window of `rate_limit_requests` and the `w` of its `RateLimit-Policy`.
const REQUEST_WINDOW: Duration = Duration::from_secs(60);

/// What a refused client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// 400 (a trusted proxy named a client that is not an address), 403 or 429.
    pub status: u16,
    /// Whole seconds for `Retry-After`, if any.
    pub retry_after: Option<u64>,
    /// Close without an answer (a denied address under `deny_action = "close"`).
    pub silent: bool,
}

/// What admission decided.
#[derive(Debug)]
pub enum Admission {
    /// Serve the connection; keep the slot until it ends.
    Admit(ClientSlot),
    /// The client is named by its first request head: decide then.
    AtFirstRequest,
    /// Refuse it.
    Refuse(Refusal),
}

/// One admitted connection's client: its address, its place in the count, its shared state.
#[derive(Debug)]
pub struct ClientSlot {
    address: IpAddr,
    /// `None` for an exempt client (no per-client rule applies).
    pass: Option<ConnectionPass>,
}

impl ClientSlot {
    /// The client's address (after trusted proxies).
    pub fn address(&self) -> IpAddr {
        self.address
    }

    fn limited(&self) -> Option<&Arc<ClientState>> {
        self.pass.as_ref().map(ConnectionPass::client)
    }
}

/// The quota of one request-rate budget, with its bucket.
#[derive(Debug, Clone, Copy)]
struct RequestQuota {
    bucket: usize,
    quota: Gcra,
    rate: RequestRate,
    mode: LimitMode,
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

/// The server's per-client admission and rules.
#[derive(Debug)]
pub struct ClientGate {
    limits: ClientLimits,
    identity: ClientIdentity,
    table: ClientTable,
    connections: ConnectionPolicy,
    bans: Option<BanPolicy>,
    /// Per route, then one for requests no route matched.
    requests: Box<[Option<RequestQuota>]>,
    messages: Option<(usize, Gcra)>,
    bytes: Option<(usize, Gcra)>,
    /// Per route: a files route's `client_bandwidth` budget, with its bucket.
    bandwidth: Box<[Option<(usize, Gcra)>]>,
    metrics: Arc<Metrics>,
    log_budget: AtomicGcraState,
    log_quota: Option<Gcra>,
    loopback: LoopbackWatch,
}

impl ClientGate {
    /// The gate for `config`, counting into `metrics`.
    pub fn new(config: &ServerConfig, metrics: Arc<Metrics>) -> Self {
        let limits = config.clients.clone();
        let minute = Duration::from_secs(60);
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
        let mut next_bucket = SERVER_REQUESTS_BUCKET + 1;
        let server_quota = quota(&config.limits.request_rate).map(|q| RequestQuota {
            bucket: SERVER_REQUESTS_BUCKET,
            quota: q,
            rate: config.limits.request_rate,
            mode: config.limits.mode,
        });
        let mut requests: Vec<Option<RequestQuota>> = Vec::new();
        for route in &config.routes {
            let rate = route.limits.request_rate;
            let bucket = if rate.own_budget {
                next_bucket += 1;
                next_bucket - 1
            } else {
                SERVER_REQUESTS_BUCKET
            };
            requests.push(quota(&rate).map(|q| RequestQuota {
                bucket,
                quota: q,
                rate,
                mode: route.limits.mode,
            }));
        }
        requests.push(server_quota);
        let messages = Gcra::new(limits.client_messages_per_minute, minute, {
            limits.client_messages_per_minute
        })
        .map(|q| (next_bucket, q));
        let bytes = Gcra::new(limits.client_bytes_per_minute, minute, {
            limits.client_bytes_per_minute
        })
        .map(|q| (next_bucket + 1, q));
        let mut buckets = next_bucket + 2;
        let bandwidth: Box<[Option<(usize, Gcra)>]> = config
            .routes
            .iter()
            .map(|route| {
                let RouteKind::Files(files) = &route.kind else {
                    return None;
                };
                let rate = route.limits.bandwidth.per_client;
                let burst = crate::routes::files::pace::cap_burst(rate, files.chunk_size as u64);
                let quota = Gcra::new(rate, Duration::from_secs(1), burst)?;
                buckets += 1;
                Some((buckets - 1, quota))
            })
            .collect();
        let bans = (limits.ban_after_violations > 0).then(|| BanPolicy {
            after_violations: limits.ban_after_violations,
            window_ns: nanos(limits.ban_window),
            duration_ns: nanos(limits.ban_duration),
        });
        let memory = MIN_CLIENT_MEMORY
            .max(limits.ban_window)
            .max(limits.ban_duration);
        Self {
            identity: ClientIdentity::new(
                limits.client_id.clone(),
                limits.trusted_proxies.clone(),
                limits.forwarded_header,
                limits.ipv6_prefix,
            ),
            table: ClientTable::new(limits.max_tracked_clients, nanos(memory), buckets),
            connections: ConnectionPolicy {
                max_concurrent: limits.max_concurrent_connections,
                rate: Gcra::new(
                    u64::from(limits.connections_per_minute),
                    minute,
                    u64::from(limits.connections_per_minute),
                ),
                bans,
            },
            bans,
            requests: requests.into_boxed_slice(),
            messages,
            bytes,
            bandwidth,
            metrics,
            log_budget: AtomicGcraState::default(),
            log_quota: Gcra::new(
                LOG_LINES_PER_SECOND,
                Duration::from_secs(1),
                LOG_LINES_PER_SECOND,
            ),
            loopback: LoopbackWatch::new(
                limits.trusted_proxies.is_empty(),
                limits.exempt.contains(IpAddr::from([127, 0, 0, 1]))
                    || limits
                        .exempt
                        .contains(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
            ),
            limits,
        }
    }

    /// Ends a window of the loopback watch; see [`LoopbackWatch::end_window`].
    pub fn end_loopback_window(&self) -> Option<LoopbackShare> {
        self.loopback.end_window()
    }

    /// The shared client table (for `/stats` and the sweeper).
    pub fn table(&self) -> &ClientTable {
        &self.table
    }

    /// Asks the `client_bandwidth` budget of files route `route` for `bytes` at `now`, for
    /// the client of `slot` (a client the limits do not track, such as an exempt one, has
    /// no budget: always allowed).
    pub fn check_bandwidth(
        &self,
        slot: &ClientSlot,
        route: usize,
        bytes: u64,
        now: u64,
    ) -> Decision {
        match (slot.limited(), self.bandwidth.get(route)) {
            (Some(client), Some(Some((bucket, quota)))) => client.check(*bucket, quota, now, bytes),
            _ => Decision::Allow {
                remaining: 0,
                reset_after: Duration::ZERO,
            },
        }
    }

    /// Nanoseconds on the gate's clock (the coarse monotonic clock).
    pub fn now(&self) -> u64 {
        coarse_clock::now_ns()
    }

    /// Admission at accept, from the TCP peer's address alone.
    pub fn on_accept(&self, peer: IpAddr) -> Admission {
        let by_address = self.limits.client_id == ClientIdSource::Ip;
        if !by_address || self.limits.trusted_proxies.contains(peer) {
            // The lists still apply to the proxy's (or the client's) own address right away.
            if let Some(refusal) = self.check_lists(peer, "") {
                return Admission::Refuse(refusal);
            }
            return Admission::AtFirstRequest;
        }
        match self.admit(peer, self.identity.address_key(peer), "") {
            Ok(slot) => Admission::Admit(slot),
            Err(refusal) => Admission::Refuse(refusal),
        }
    }

    /// Admission at the first request head of a connection [`Self::on_accept`] deferred.
    /// The client's address is read from every line of the configured forwarding header when
    /// `peer` is a trusted proxy (the other forwarding header is never read); a client the
    /// proxy names by something other than an address is refused 400, so it can never pass
    /// for the proxy (PROTECTIONS.md, "client identity").
    pub fn on_first_request(
        &self,
        peer: IpAddr,
        request: &Request<'_, '_>,
        route: &str,
    ) -> Result<ClientSlot, Refusal> {
        let header = self.identity.forwarded_header().name();
        let lines = request
            .headers
            .iter()
            .filter(|field| field.name.eq_ignore_ascii_case(header))
            .map(|field| field.value);
        let address = match self.identity.client_address(peer, lines) {
            Ok(address) => address,
            Err(unknown) => {
                if self.may_log(self.now()) {
                    tracing::warn!(
                        target: "ringstream::violation",
                        proxy = %peer,
                        route,
                        header,
                        action = "refused",
                        "400: {unknown}"
                    );
                }
                return Err(Refusal {
                    status: 400,
                    retry_after: None,
                    silent: false,
                });
            }
        };
        let key = self
            .identity
            .key(address, |name| request.header(name), request.query());
        self.admit(address, key, route)
    }

    fn admit(&self, address: IpAddr, key: ClientKey, route: &str) -> Result<ClientSlot, Refusal> {
        if let Some(refusal) = self.check_lists(address, route) {
            return Err(refusal);
        }
        let exempt = self.limits.exempt.contains(address);
        self.loopback.record(address, exempt);
        if exempt {
            return Ok(ClientSlot {
                address,
                pass: None,
            });
        }
        let now = self.now();
        let client = self.table.client(key, now);
        let (pass, denial) = self.table.admit_connection(&client, &self.connections, now);
        let slot = ClientSlot {
            address,
            pass: Some(pass),
        };
        match denial {
            None => Ok(slot),
            Some(denial) => {
                self.violation(address, route, denial, self.limits.mode, Some(&client));
                if self.limits.mode == LimitMode::Shadow {
                    return Ok(slot);
                }
                let status = if denial.rule == Rule::Banned {
                    403
                } else {
                    429
                };
                Err(Refusal {
                    status,
                    retry_after: denial.retry_after.map(whole_seconds),
                    silent: false,
                })
            }
        }
    }

    /// The allow and deny lists, for any client (exempt or not).
    fn check_lists(&self, address: IpAddr, route: &str) -> Option<Refusal> {
        let listed = self.limits.deny.contains(address)
            || (!self.limits.allow.is_empty() && !self.limits.allow.contains(address));
        if !listed {
            return None;
        }
        let denial = Denial {
            rule: Rule::Denied,
            observed: 1,
            limit: 0,
            retry_after: None,
        };
        self.violation(address, route, denial, self.limits.mode, None);
        (self.limits.mode == LimitMode::Enforce).then_some(Refusal {
            status: 403,
            retry_after: None,
            silent: self.limits.deny_action == DenyAction::Close,
        })
    }

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
        match client.check(quota.bucket, &quota.quota, now, 1) {
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
                && let Decision::Deny { retry_after } = client.check(bucket, &quota, now, cost)
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
    fn may_log(&self, now: u64) -> bool {
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
    fn violation(
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

/// A wait as whole seconds for `Retry-After`, rounded up (at least 1).
fn whole_seconds(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(30)), 30);
        assert_eq!(whole_seconds(Duration::ZERO), 1);
    }
}
