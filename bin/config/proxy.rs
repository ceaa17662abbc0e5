//! Checking the `proxy` route: its upstreams, how one is chosen, and its timeouts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ringstream_engine::config::{Balance, ProxyConfig, RouteKind, UpstreamAddr};

use super::checker::Checker;
use super::error::ConfigError;
use super::raw::RawRoute;

/// Most upstreams one route may name.
const MAX_UPSTREAMS: usize = 256;

impl Checker<'_, '_> {
    /// The `proxy` kind: `upstreams` (required), `connect_timeout`, `upstream_timeout`,
    /// `balance`, `max_fails`, `fail_timeout`, `pool_idle_timeout`, `pool_size`,
    /// `strip_prefix`, `host`, `health_check`, `health_interval`.
    pub(super) fn proxy_kind(&self, key: &str, raw: &RawRoute) -> Result<RouteKind, ConfigError> {
        let missing = || {
            self.source.error_at(
                raw.kind.span(),
                key,
                "a proxy route needs its upstreams (add upstreams = [\"127.0.0.1:8000\"])"
                    .to_owned(),
            )
        };
        let listed = raw.upstreams.as_ref().ok_or_else(missing)?;
        let name = |field: &str| format!("{key}.{field}");
        if listed.get_ref().is_empty() || listed.get_ref().len() > MAX_UPSTREAMS {
            return Err(self.source.error_at(
                listed.span(),
                &name("upstreams"),
                format!("between 1 and {MAX_UPSTREAMS} upstreams are needed"),
            ));
        }
        let mut upstreams = Vec::with_capacity(listed.get_ref().len());
        for written in listed.get_ref() {
            let addr = upstream_addr(written).ok_or_else(|| {
                self.source.error_at(
                    listed.span(),
                    &name("upstreams"),
                    format!(
                        "\"{written}\" is not an upstream (\"HOST_IP:PORT\", \"[IPv6]:PORT\" or \
                         \"unix:/path/to.sock\")"
                    ),
                )
            })?;
            upstreams.push(addr);
        }
        let mut config = ProxyConfig::new(upstreams);
        if let Some(value) = &raw.connect_timeout {
            config.connect_timeout = self.timeout(value, &name("connect_timeout"))?;
        }
        if let Some(value) = &raw.upstream_timeout {
            config.upstream_timeout = self.timeout(value, &name("upstream_timeout"))?;
        }
        if let Some(value) = &raw.balance {
            config.balance = match value.get_ref().as_str() {
                "least_conn" => Balance::LeastConn,
                "round_robin" => Balance::RoundRobin,
                _ => {
                    return Err(self.source.error_at(
                        value.span(),
                        &name("balance"),
                        format!(
                            "{} is not a balance (expected \"least_conn\" or \"round_robin\")",
                            self.source.written(value.span())
                        ),
                    ));
                }
            };
        }
        if let Some(value) = &raw.max_fails {
            config.max_fails = self.int(value, &name("max_fails"), 0..=1000)?;
        }
        if let Some(value) = &raw.fail_timeout {
            config.fail_timeout = self.timeout(value, &name("fail_timeout"))?;
        }
        if let Some(value) = &raw.pool_idle_timeout {
            config.pool_idle_timeout =
                self.duration(value, &name("pool_idle_timeout"), Duration::ZERO)?;
        }
        if let Some(value) = &raw.pool_size {
            config.pool_size = self.int(value, &name("pool_size"), 0..=100_000)?;
        }
        if let Some(value) = &raw.strip_prefix {
            let prefix = value.get_ref();
            if !prefix.is_empty() && !prefix.starts_with('/') {
                return Err(self.source.error_at(
                    value.span(),
                    &name("strip_prefix"),
                    format!(
                        "{} is not a path prefix (it starts with '/')",
                        self.source.written(value.span())
                    ),
                ));
            }
            config.strip_prefix = prefix.clone();
        }
        if let Some(value) = &raw.host {
            let host = value.get_ref();
            let valid = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b));
            if !valid {
                return Err(self.source.error_at(
                    value.span(),
                    &name("host"),
                    format!(
                        "{} is not a host (a name or address, with an optional :port)",
                        self.source.written(value.span())
                    ),
                ));
            }
            config.host = Some(host.clone());
        }
        if let Some(value) = &raw.health_check {
            let path = value.get_ref();
            if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(self.source.error_at(
                    value.span(),
                    &name("health_check"),
                    format!(
                        "{} is not a path (it starts with '/' and holds no spaces)",
                        self.source.written(value.span())
                    ),
                ));
            }
            config.health_check = Some(path.clone());
        }
        if let Some(value) = &raw.health_interval {
            config.health_interval = self.timeout(value, &name("health_interval"))?;
        }
        Ok(RouteKind::Proxy(Box::new(config)))
    }
}

/// `"127.0.0.1:8000"`, `"[::1]:8000"` or `"unix:/run/app.sock"`.
fn upstream_addr(written: &str) -> Option<UpstreamAddr> {
    if let Some(path) = written.strip_prefix("unix:") {
        return (!path.is_empty()).then(|| UpstreamAddr::Unix(PathBuf::from(path)));
    }
    written.parse::<SocketAddr>().ok().map(UpstreamAddr::Tcp)
}
