//! Building the engine's [`ServerConfig`] from the raw config: the top-level keys, then
//! `[limits]`, then each route ([`super::routes`]).
//!
//! Each route's limits are the engine defaults, then `[limits]`, then its own
//! `[routes.limits]`; every value is checked where it is written, so errors point at its line.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use ringstream_engine::config::{
    AccessLogConfig, AccessLogFormat, AccessLogTarget, ConnectionLimits, DEFAULT_BACKLOG,
    DEFAULT_DRAIN_TIMEOUT, HttpLimits, IoDriver, ReceiveMode, RingSetup, Route, ServerConfig,
    WsLimits, bounds,
};
use ringstream_engine::limits::identity::ClientIdSource;
use toml::Spanned;

use super::checker::Checker;
use super::error::{ConfigError, Source};
use super::raw::{RawConfig, RawLimits};
use super::units::format_size;

/// `listen` when the file does not say.
const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080);
/// Most workers a config may ask for (`--workers` shares the bound).
pub const MAX_WORKERS: u16 = 1024;
/// Largest `listen(2)` backlog accepted (`--backlog` shares the bound).
pub const MAX_BACKLOG: u16 = u16::MAX;
/// Largest `max_connections` accepted: far beyond any open-file limit (the engine lowers the
/// value to fit the one it finds), low enough to print in a message.
const MAX_CONNECTIONS: usize = 10_000_000;
/// Least `max_buffered_bytes`.
const MIN_BUFFERED_BYTES: u64 = 64 * 1024;
/// Largest `max_buffered_bytes`.
const MAX_BUFFERED_BYTES: u64 = 1 << 40;
/// Least `max_header_bytes`: a real browser request head rarely fits in less.
const MIN_HEADER_BYTES: u64 = 1024;
/// Least `max_uri_bytes`.
const MIN_URI_BYTES: u64 = 16;

/// Checks every value of `raw` (in file order: top-level keys, `[limits]`, routes) and builds
/// the config the engine runs with.
pub fn resolve(raw: &RawConfig, source: &Source<'_>) -> Result<ServerConfig, ConfigError> {
    let checker = Checker { source };
    let listen = match &raw.listen {
        Some(value) => checker.listen(value)?,
        None => DEFAULT_LISTEN,
    };
    let workers = match &raw.workers {
        Some(value) => checker.int(value, "workers", 0..=usize::from(MAX_WORKERS))?,
        None => 0,
    };
    let backlog = match &raw.backlog {
        Some(value) => checker.int(value, "backlog", 1..=u32::from(MAX_BACKLOG))?,
        None => DEFAULT_BACKLOG,
    };
    let io_driver = match &raw.io_driver {
        Some(value) => checker.io_driver(value)?,
        None => IoDriver::Auto,
    };
    let io_uring_setup = match &raw.io_uring_setup {
        Some(value) => checker.ring_setup(value)?,
        None => RingSetup::default(),
    };
    let receive = match &raw.receive {
        Some(value) => checker.receive(value)?,
        None => ReceiveMode::default(),
    };
    let access_log = checker.access_log(raw)?;
    let cluster = checker.cluster(raw.cluster.as_ref())?;
    let tls = checker.tls(raw.tls.as_ref())?;
    if let (None, Some(value)) = (&cluster, &raw.limits.on_redis_error) {
        return Err(source.error_at(
            value.span(),
            "limits.on_redis_error",
            "on_redis_error says what per-client rules do while Redis is away; it needs a \
             [cluster] section"
                .to_owned(),
        ));
    }
    let drain_timeout = match &raw.drain_timeout {
        Some(value) => checker.duration(value, "drain_timeout", Duration::ZERO)?,
        None => DEFAULT_DRAIN_TIMEOUT,
    };
    let max_connections = match &raw.limits.max_connections {
        Some(value) => checker.int(value, "limits.max_connections", 1..=MAX_CONNECTIONS)?,
        None => ConnectionLimits::default().max_connections,
    };
    let clients = checker.client_limits(&raw.limits)?;
    let limits = checker.limits(&HttpLimits::default(), &raw.limits, "limits")?;
    let ws = checker.ws_limits(&WsLimits::default(), &raw.limits, "limits")?;
    let mut routes: Vec<Route> = Vec::with_capacity(raw.routes.len());
    for (index, route) in raw.routes.iter().enumerate() {
        let resolved = checker.route(index, route.get_ref(), &limits, &ws)?;
        if let Some(first) = routes.iter().position(|r| r.path == resolved.path) {
            let path = &route.get_ref().path;
            return Err(source.error_at(
                path.span(),
                &format!("routes[{index}].path"),
                format!(
                    "{} is already the path of routes[{first}]; each path may appear once",
                    source.written(path.span())
                ),
            ));
        }
        routes.push(resolved);
    }
    if routes.is_empty() {
        return Err(source.error_in_file(
            "routes",
            "at least one [[routes]] entry is required (e.g. path = \"/health\", kind = \"health\")"
                .to_owned(),
        ));
    }
    if clients.client_id == ClientIdSource::Auth
        && !routes.iter().any(|route| route.auth.is_some())
        && let Some(value) = &raw.limits.client_id
    {
        return Err(source.error_at(
            value.span(),
            "limits.client_id",
            "\"auth\" names clients by the answer of a route's auth hook, and no route has \
             `auth`"
                .to_owned(),
        ));
    }
    let config = ServerConfig {
        access_log,
        listen,
        workers,
        backlog,
        io_driver,
        io_uring_setup,
        receive,
        drain_timeout,
        allow_shared_port: raw.allow_shared_port.unwrap_or(false),
        connection_limits: ConnectionLimits {
            max_connections,
            max_buffered_bytes: 0,
        },
        clients,
        limits,
        routes,
        cluster,
        tls,
    };
    buffer_budget(config, &raw.limits, &checker)
}

/// Sets `max_buffered_bytes`: the value written, which must hold the largest message or head
/// one connection may buffer, or else the default (at least four times the largest message
/// the ceilings allow).
fn buffer_budget(
    mut config: ServerConfig,
    raw: &RawLimits,
    checker: &Checker<'_, '_>,
) -> Result<ServerConfig, ConfigError> {
    let largest = config.largest_buffered_allowance();
    let key = "limits.max_buffered_bytes";
    config.connection_limits.max_buffered_bytes = match &raw.max_buffered_bytes {
        Some(value) => {
            let range = MIN_BUFFERED_BYTES..=MAX_BUFFERED_BYTES;
            let bytes = checker.size(value, key, range, "")?;
            if bytes < largest {
                let source = checker.source;
                return Err(source.error_at(
                    value.span(),
                    key,
                    format!(
                        "{} is less than one connection may need to buffer ({}: the largest \
                         max_message_size or max_header_bytes); raise it or lower those",
                        source.written(value.span()),
                        format_size(largest as u64)
                    ),
                ));
            }
            bytes
        }
        None => ConnectionLimits::default().max_buffered_bytes,
    };
    Ok(config)
}

impl Checker<'_, '_> {
    /// `base` with the values of `raw` applied, each checked; `key` names the table.
    pub(super) fn limits(
        &self,
        base: &HttpLimits,
        raw: &RawLimits,
        key: &str,
    ) -> Result<HttpLimits, ConfigError> {
        let mut out = base.clone();
        let name = |field: &str| format!("{key}.{field}");
        if let Some(value) = &raw.header_timeout {
            out.header_timeout = self.timeout(value, &name("header_timeout"))?;
        }
        if let Some(value) = &raw.max_header_bytes {
            let ceiling = to_u64(bounds::MAX_HEADER_BYTES_CEILING);
            out.max_header_bytes = self.size(
                value,
                &name("max_header_bytes"),
                MIN_HEADER_BYTES..=ceiling,
                "",
            )?;
        }
        if let Some(value) = &raw.max_headers {
            out.max_headers =
                self.int(value, &name("max_headers"), 1..=bounds::MAX_HEADERS_CEILING)?;
        }
        if let Some(value) = &raw.max_uri_bytes {
            let header_bytes = to_u64(out.max_header_bytes);
            let ceiling = to_u64(bounds::MAX_URI_BYTES_CEILING);
            let (ceiling, why) = if header_bytes < ceiling {
                (header_bytes, ", at most max_header_bytes")
            } else {
                (ceiling, "")
            };
            out.max_uri_bytes =
                self.size(value, &name("max_uri_bytes"), MIN_URI_BYTES..=ceiling, why)?;
        } else if let Some(value) = &raw.max_header_bytes
            && out.max_uri_bytes > out.max_header_bytes
        {
            return Err(self.source.error_at(
                value.span(),
                &name("max_header_bytes"),
                format!(
                    "{} is less than max_uri_bytes ({}); lower max_uri_bytes here as well",
                    self.source.written(value.span()),
                    format_size(to_u64(out.max_uri_bytes))
                ),
            ));
        }
        if let Some(value) = &raw.max_body_size {
            out.max_body_size = value.get_ref().0;
        }
        if let Some(value) = &raw.upload_timeout {
            out.upload_timeout = self.timeout(value, &name("upload_timeout"))?;
        }
        if let Some(value) = &raw.min_upload_rate {
            out.min_upload_rate = value.get_ref().0;
        }
        if let Some(value) = &raw.min_upload_rate_after {
            if value.get_ref().0.is_zero() {
                return Err(self.source.error_at(
                    value.span(),
                    &name("min_upload_rate_after"),
                    "0 leaves a client no time to start sending; to turn the minimum rate off \
                     set min_upload_rate = 0"
                        .to_owned(),
                ));
            }
            out.min_upload_rate_after =
                self.duration(value, &name("min_upload_rate_after"), Duration::ZERO)?;
        }
        if let Some(value) = &raw.keepalive_timeout {
            out.keepalive_timeout = self.timeout(value, &name("keepalive_timeout"))?;
        }
        if let Some(value) = &raw.send_timeout {
            out.send_timeout = self.timeout(value, &name("send_timeout"))?;
        }
        if let Some(value) = &raw.download_timeout {
            out.download_timeout = self.timeout(value, &name("download_timeout"))?;
        }
        for (value, field) in [
            (&raw.rate_limit_bandwidth, &mut out.bandwidth.per_connection),
            (&raw.client_bandwidth, &mut out.bandwidth.per_client),
            (&raw.global_bandwidth, &mut out.bandwidth.global),
            (&raw.rate_after, &mut out.bandwidth.rate_after),
        ] {
            if let Some(value) = value {
                *field = value.get_ref().0;
            }
        }
        self.rate_limits(&mut out, raw, key)?;
        Ok(out)
    }

    /// `listen`: a socket address.
    fn listen(&self, value: &Spanned<String>) -> Result<SocketAddr, ConfigError> {
        value.get_ref().parse().map_err(|_| {
            self.source.error_at(
                value.span(),
                "listen",
                format!(
                    "{} is not a socket address (use e.g. \"0.0.0.0:8080\" or \"[::]:8080\")",
                    self.source.written(value.span())
                ),
            )
        })
    }

    /// `io_driver`: one of the drivers' names.
    fn io_driver(&self, value: &Spanned<String>) -> Result<IoDriver, ConfigError> {
        match value.get_ref().as_str() {
            "auto" => Ok(IoDriver::Auto),
            "uring" => Ok(IoDriver::Uring),
            "poll" => Ok(IoDriver::Poll),
            _ => Err(self.one_of(value, "io_driver", &["auto", "uring", "poll"])),
        }
    }

    /// `io_uring_setup`: one of the setups' names.
    fn ring_setup(&self, value: &Spanned<String>) -> Result<RingSetup, ConfigError> {
        let all = [
            RingSetup::Default,
            RingSetup::CoopTaskrun,
            RingSetup::DeferTaskrun,
        ];
        all.into_iter()
            .find(|setup| setup.to_string() == *value.get_ref())
            .ok_or_else(|| {
                self.one_of(
                    value,
                    "io_uring_setup",
                    &["default", "coop_taskrun", "defer_taskrun"],
                )
            })
    }

    /// `receive`: `auto`, `per_read` or `ring`.
    fn receive(&self, value: &Spanned<String>) -> Result<ReceiveMode, ConfigError> {
        let all = [ReceiveMode::Auto, ReceiveMode::PerRead, ReceiveMode::Ring];
        all.into_iter()
            .find(|mode| mode.to_string() == *value.get_ref())
            .ok_or_else(|| self.one_of(value, "receive", &["auto", "per_read", "ring"]))
    }

    /// `access_log` (a file path or `"stdout"`) and `access_log_format`; off without
    /// `access_log`, and a format without it is an error (it would log nothing).
    fn access_log(&self, raw: &RawConfig) -> Result<Option<AccessLogConfig>, ConfigError> {
        let format = match &raw.access_log_format {
            Some(value) => match value.get_ref().as_str() {
                "combined" => AccessLogFormat::Combined,
                "json" => AccessLogFormat::Json,
                _ => return Err(self.one_of(value, "access_log_format", &["combined", "json"])),
            },
            None => AccessLogFormat::default(),
        };
        let Some(target) = &raw.access_log else {
            return match &raw.access_log_format {
                Some(value) => Err(self.source.error_at(
                    value.span(),
                    "access_log_format",
                    "access_log_format applies to an access log; set access_log = \"PATH\" or \
                     \"stdout\" as well"
                        .to_owned(),
                )),
                None => Ok(None),
            };
        };
        let text = target.get_ref();
        let target = match text.as_str() {
            "stdout" => AccessLogTarget::Stdout,
            "" => {
                return Err(self.source.error_at(
                    target.span(),
                    "access_log",
                    "\"\" is not a file path (\"stdout\", or leave access_log out to log nothing)"
                        .to_owned(),
                ));
            }
            path if path.ends_with('/') => {
                return Err(self.source.error_at(
                    target.span(),
                    "access_log",
                    format!("{} is not a file path", self.source.written(target.span())),
                ));
            }
            path => AccessLogTarget::File(path.into()),
        };
        Ok(Some(AccessLogConfig { target, format }))
    }
}

/// Sizes in the engine are `usize`; bounds compare as `u64` (lossless on 64-bit Linux).
fn to_u64(bytes: usize) -> u64 {
    u64::try_from(bytes).unwrap_or(u64::MAX)
}
