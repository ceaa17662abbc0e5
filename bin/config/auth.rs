//! Checking a route's auth hook: `auth` (the endpoint's URL), `auth_failure`, `auth_cache`,
//! `auth_timeout`.

use std::net::SocketAddr;
use std::time::Duration;

use ringstream_engine::config::{AuthConfig, AuthFailure, UpstreamAddr};

use super::checker::Checker;
use super::error::ConfigError;
use super::raw::RawRoute;

impl Checker<'_, '_> {
    /// The route's auth hook, if `auth` is set (its options are refused without it).
    pub(super) fn auth(
        &self,
        key: &str,
        raw: &RawRoute,
    ) -> Result<Option<Box<AuthConfig>>, ConfigError> {
        let name = |field: &str| format!("{key}.{field}");
        let Some(url) = &raw.auth else {
            let options = [
                (
                    "auth_failure",
                    raw.auth_failure.as_ref().map(toml::Spanned::span),
                ),
                (
                    "auth_cache",
                    raw.auth_cache.as_ref().map(toml::Spanned::span),
                ),
                (
                    "auth_timeout",
                    raw.auth_timeout.as_ref().map(toml::Spanned::span),
                ),
            ];
            if let Some((option, Some(span))) = options.into_iter().find(|(_, span)| span.is_some())
            {
                return Err(self.source.error_at(
                    span,
                    &name(option),
                    format!("{option} needs auth (the endpoint's URL) on the same route"),
                ));
            }
            return Ok(None);
        };
        let (endpoint, host, path) = endpoint(url.get_ref()).ok_or_else(|| {
            self.source.error_at(
                url.span(),
                &name("auth"),
                format!(
                    "{} is not an auth endpoint (\"http://IP:PORT/path\", e.g. \
                     \"http://127.0.0.1:8000/auth\")",
                    self.source.written(url.span())
                ),
            )
        })?;
        let mut auth = AuthConfig::new(endpoint, host, path);
        if let Some(value) = &raw.auth_failure {
            auth.failure = match value.get_ref().as_str() {
                "closed" => AuthFailure::Closed,
                "open" => AuthFailure::Open,
                _ => {
                    return Err(self.source.error_at(
                        value.span(),
                        &name("auth_failure"),
                        format!(
                            "{} is not an auth failure mode (expected \"closed\" or \"open\")",
                            self.source.written(value.span())
                        ),
                    ));
                }
            };
        }
        if let Some(value) = &raw.auth_cache {
            auth.cache = self.duration(value, &name("auth_cache"), Duration::ZERO)?;
        }
        if let Some(value) = &raw.auth_timeout {
            auth.timeout = self.timeout(value, &name("auth_timeout"))?;
        }
        Ok(Some(Box::new(auth)))
    }
}

/// `http://IP:PORT/path`: the address, the `Host` it is asked with, and the path (`/` when
/// none is written).
fn endpoint(url: &str) -> Option<(UpstreamAddr, String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority.parse().ok()?;
    let path_ok = path.bytes().all(|b| b.is_ascii_graphic());
    path_ok.then(|| {
        (
            UpstreamAddr::Tcp(addr),
            authority.to_owned(),
            path.to_owned(),
        )
    })
}
