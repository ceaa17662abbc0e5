//! A route's auth hook: the app endpoint asked before a request is answered or upgraded.

use std::time::Duration;

use super::UpstreamAddr;

/// What a route does when the auth endpoint cannot answer (a failed connection, a timeout,
/// a status other than 2xx, 401 and 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthFailure {
    /// 503: nobody passes while the app cannot say who may.
    #[default]
    Closed,
    /// The request passes as if allowed.
    Open,
}

/// `auth = "http://127.0.0.1:8000/auth"` on a route, with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Where the endpoint listens.
    pub endpoint: UpstreamAddr,
    /// The `Host` sent to it (the URL's authority).
    pub host: String,
    /// Its path (and query), as sent.
    pub path: String,
    /// What a failure means.
    pub failure: AuthFailure,
    /// How long an answer is kept per credential (the `Authorization` and `Cookie` values);
    /// zero asks every time.
    pub cache: Duration,
    /// How long the endpoint may take to answer (a failure past it).
    pub timeout: Duration,
}

impl AuthConfig {
    /// The endpoint at `endpoint`, `host` and `path`, with every default: failures closed,
    /// no cache, 5 s.
    pub fn new(endpoint: UpstreamAddr, host: String, path: String) -> Self {
        Self {
            endpoint,
            host,
            path,
            failure: AuthFailure::Closed,
            cache: Duration::ZERO,
            timeout: Duration::from_secs(5),
        }
    }
}
