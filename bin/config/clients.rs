//! Checking the per-client keys: who a client is, the lists, bans and per-client rates of
//! `[limits]`, the request rate and mode of any limits table, the `stats`, `metrics` and
//! `dashboard` kinds, and the `allowed_clients` of a route.

use ringstream_engine::config::{
    ClientLimits, DenyAction, HttpLimits, LimitMode, RouteKind, loopback,
};
use ringstream_engine::limits::cidr::{Cidr, CidrSet};
use ringstream_engine::limits::identity::{ClientIdSource, ForwardedHeader};
use toml::Spanned;

use super::checker::Checker;
use super::error::ConfigError;
use super::raw::{RawLimits, RawRoute};

/// Most requests, frames or connections per minute a rate may name.
const MAX_PER_MINUTE: u32 = 100_000_000;
/// Most clients the table may be asked to track (about 300 bytes each).
const MAX_TRACKED_CLIENTS: usize = 100_000_000;

impl Checker<'_, '_> {
    /// The server-wide client keys of `[limits]`, each checked.
    pub(super) fn client_limits(&self, raw: &RawLimits) -> Result<ClientLimits, ConfigError> {
        let mut out = ClientLimits::default();
        let name = |field: &str| format!("limits.{field}");
        if let Some(value) = &raw.client_id {
            out.client_id = self.client_id(value)?;
        }
        if let Some(value) = &raw.trusted_proxies {
            out.trusted_proxies = self.cidrs(value, &name("trusted_proxies"))?;
        }
        if let Some(value) = &raw.forwarded_header {
            out.forwarded_header = match value.get_ref().as_str() {
                "x-forwarded-for" => ForwardedHeader::XForwardedFor,
                "forwarded" => ForwardedHeader::Forwarded,
                _ => {
                    return Err(self.one_of(
                        value,
                        &name("forwarded_header"),
                        &["x-forwarded-for", "forwarded"],
                    ));
                }
            };
        }
        if let Some(value) = &raw.ipv6_prefix {
            out.ipv6_prefix = self.int(value, &name("ipv6_prefix"), 1..=128)?;
        }
        if let Some(value) = &raw.exempt {
            out.exempt = self.cidrs(value, &name("exempt"))?;
        }
        if let Some(value) = &raw.allow {
            out.allow = self.cidrs(value, &name("allow"))?;
        }
        if let Some(value) = &raw.deny {
            out.deny = self.cidrs(value, &name("deny"))?;
        }
        if let Some(value) = &raw.deny_action {
            out.deny_action = match value.get_ref().as_str() {
                "403" => DenyAction::Forbidden,
                "close" => DenyAction::Close,
                _ => return Err(self.one_of(value, &name("deny_action"), &["403", "close"])),
            };
        }
        if let Some(value) = &raw.max_tracked_clients {
            out.max_tracked_clients =
                self.int(value, &name("max_tracked_clients"), 1..=MAX_TRACKED_CLIENTS)?;
        }
        if let Some(value) = &raw.max_concurrent_connections {
            out.max_concurrent_connections = self.int(
                value,
                &name("max_concurrent_connections"),
                0..=MAX_PER_MINUTE,
            )?;
        }
        if let Some(value) = &raw.connections_per_minute {
            out.connections_per_minute =
                self.int(value, &name("connections_per_minute"), 0..=MAX_PER_MINUTE)?;
        }
        if let Some(value) = &raw.ban_after_violations {
            out.ban_after_violations =
                self.int(value, &name("ban_after_violations"), 0..=MAX_PER_MINUTE)?;
        }
        if let Some(value) = &raw.ban_window {
            out.ban_window = self.timeout(value, &name("ban_window"))?;
        }
        if let Some(value) = &raw.ban_duration {
            out.ban_duration = self.timeout(value, &name("ban_duration"))?;
        }
        if let Some(value) = &raw.client_messages_per_minute {
            out.client_messages_per_minute = self.int(
                value,
                &name("client_messages_per_minute"),
                0..=u64::from(MAX_PER_MINUTE),
            )?;
        }
        if let Some(value) = &raw.client_bytes_per_minute {
            out.client_bytes_per_minute = value.get_ref().0;
        }
        if let Some(value) = &raw.mode {
            out.mode = self.mode(value, &name("mode"))?;
        }
        if let Some(value) = &raw.on_redis_error {
            out.on_redis_error = Some(self.redis_error_policy(value, &name("on_redis_error"))?);
        }
        Ok(out)
    }

    /// The request rate and mode keys of a limits table, applied to `out`.
    pub(super) fn rate_limits(
        &self,
        out: &mut HttpLimits,
        raw: &RawLimits,
        key: &str,
    ) -> Result<(), ConfigError> {
        let name = |field: &str| format!("{key}.{field}");
        if let Some(value) = &raw.rate_limit_requests {
            out.request_rate.per_minute =
                self.int(value, &name("rate_limit_requests"), 0..=MAX_PER_MINUTE)?;
        }
        if let Some(value) = &raw.burst {
            out.request_rate.burst = self.int(value, &name("burst"), 0..=MAX_PER_MINUTE)?;
        }
        if let Some(value) = &raw.rate_limit_headers {
            out.request_rate.headers = *value.get_ref();
        }
        if let Some(value) = &raw.mode {
            out.mode = self.mode(value, &name("mode"))?;
        }
        Ok(())
    }

    /// The `stats` kind with its allowlist.
    pub(super) fn stats_kind(&self, key: &str, raw: &RawRoute) -> Result<RouteKind, ConfigError> {
        Ok(RouteKind::Stats {
            allowed_clients: self.allowed_clients(key, raw)?,
        })
    }

    /// The `metrics` kind with its allowlist.
    pub(super) fn metrics_kind(&self, key: &str, raw: &RawRoute) -> Result<RouteKind, ConfigError> {
        Ok(RouteKind::Metrics {
            allowed_clients: self.allowed_clients(key, raw)?,
        })
    }

    /// The `dashboard` kind with its allowlist.
    pub(super) fn dashboard_kind(
        &self,
        key: &str,
        raw: &RawRoute,
    ) -> Result<RouteKind, ConfigError> {
        Ok(RouteKind::Dashboard {
            allowed_clients: self.allowed_clients(key, raw)?,
        })
    }

    /// A route's `allowed_clients` (stats, metrics, dashboard, publish): loopback when not set.
    pub(super) fn allowed_clients(
        &self,
        key: &str,
        raw: &RawRoute,
    ) -> Result<CidrSet, ConfigError> {
        match &raw.allowed_clients {
            Some(value) => self.cidrs(value, &format!("{key}.allowed_clients")),
            None => Ok(loopback()),
        }
    }

    fn client_id(&self, value: &Spanned<String>) -> Result<ClientIdSource, ConfigError> {
        let text = value.get_ref();
        let named = |prefix: &str| {
            text.strip_prefix(prefix)
                .filter(|name| !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()))
                .map(str::to_owned)
        };
        if text == "ip" {
            Ok(ClientIdSource::Ip)
        } else if text == "auth" {
            Ok(ClientIdSource::Auth)
        } else if let Some(name) = named("header:") {
            Ok(ClientIdSource::Header(name.to_ascii_lowercase()))
        } else if let Some(name) = named("query:") {
            Ok(ClientIdSource::Query(name))
        } else {
            Err(self.source.error_at(
                value.span(),
                "limits.client_id",
                format!(
                    "{} is not a client identity (use \"ip\", \"header:NAME\", \"query:NAME\" or \"auth\")",
                    self.source.written(value.span())
                ),
            ))
        }
    }

    fn mode(&self, value: &Spanned<String>, key: &str) -> Result<LimitMode, ConfigError> {
        match value.get_ref().as_str() {
            "enforce" => Ok(LimitMode::Enforce),
            "shadow" => Ok(LimitMode::Shadow),
            _ => Err(self.one_of(value, key, &["enforce", "shadow"])),
        }
    }

    /// A list of address ranges (`"10.0.0.0/8"`, `"::1"`).
    pub(super) fn cidrs(
        &self,
        value: &Spanned<Vec<String>>,
        key: &str,
    ) -> Result<CidrSet, ConfigError> {
        let mut ranges = Vec::with_capacity(value.get_ref().len());
        for item in value.get_ref() {
            let cidr: Cidr = item.parse().map_err(|e| {
                self.source.error_at(
                    value.span(),
                    key,
                    format!("{item:?} is not an address range: {e}"),
                )
            })?;
            ranges.push(cidr);
        }
        Ok(CidrSet::new(ranges))
    }
}
