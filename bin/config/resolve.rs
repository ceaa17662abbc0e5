//! Checking the raw config and building the engine's [`ServerConfig`] from it.
//!
//! Each route's limits are the engine defaults, then `[limits]`, then its own
//! `[routes.limits]`; every value is checked where it is written, so errors point at its line.

use std::net::{Ipv4Addr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use ringstream_engine::config::{
    ConnectionLimits, DEFAULT_BACKLOG, DEFAULT_DRAIN_TIMEOUT, HttpLimits, IoDriver, RingSetup,
    Route, RouteKind, ServerConfig, TopicSource, WsLimits, bounds,
};
use toml::Spanned;

use super::broadcast::TOPIC_PLACEHOLDER;
use super::error::{ConfigError, Source};
use super::raw::{Int, RawConfig, RawLimits, RawRoute, Seconds, Size};
use super::units::{format_duration, format_size};

/// `listen` when the file does not say.
const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080);
/// `content_type` of a `static_text` route when the file does not say.
const DEFAULT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// Most workers a config may ask for (`--workers` shares the bound).
pub const MAX_WORKERS: u16 = 1024;
/// Largest `listen(2)` backlog accepted (`--backlog` shares the bound).
pub const MAX_BACKLOG: u16 = u16::MAX;
/// Largest `max_connections` accepted: far beyond any open-file limit (the engine lowers the
/// value to fit the one it finds), low enough to print in a message.
const MAX_CONNECTIONS: usize = 10_000_000;
/// Least `max_header_bytes`: a real browser request head rarely fits in less.
const MIN_HEADER_BYTES: u64 = 1024;
/// Least `max_uri_bytes`.
const MIN_URI_BYTES: u64 = 16;
/// Longest duration anywhere in the file; far beyond any sane timeout, and short enough that
/// `Instant + duration` can never overflow in the engine.
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Route kinds this build serves.
const AVAILABLE_KINDS: &[&str] = &[
    "health",
    "static_text",
    "echo",
    "broadcast",
    "publish",
    "sink",
    "files",
    "upload",
    "stats",
    "metrics",
];
/// Checks a route kind name; the error is the message to show at the `kind` value.
pub fn check_route_kind(name: &str) -> Result<(), String> {
    if AVAILABLE_KINDS.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "unknown route kind `{name}` (expected one of: {})",
            AVAILABLE_KINDS.join(", ")
        ))
    }
}

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
    Ok(ServerConfig {
        listen,
        workers,
        backlog,
        io_driver,
        io_uring_setup,
        drain_timeout,
        allow_shared_port: raw.allow_shared_port.unwrap_or(false),
        connection_limits: ConnectionLimits { max_connections },
        clients,
        limits,
        routes,
    })
}

/// A kind-specific route option: its name as the message says it, where it is written, the
/// kinds that take it, and how the message names them.
type KindOption<'a> = (&'a str, Option<Range<usize>>, &'a [&'a str], &'a str);

/// Where an optional value is written.
fn at<T>(value: &Option<Spanned<T>>) -> Option<Range<usize>> {
    value.as_ref().map(Spanned::span)
}

/// Checks values against their bounds, with the source at hand for messages.
pub(super) struct Checker<'a, 'src> {
    pub(super) source: &'a Source<'src>,
}

impl Checker<'_, '_> {
    fn route(
        &self,
        index: usize,
        raw: &RawRoute,
        global: &HttpLimits,
        global_ws: &WsLimits,
    ) -> Result<Route, ConfigError> {
        let key = format!("routes[{index}]");
        let path = raw.path.get_ref();
        if !path.starts_with('/')
            || path.contains(|c: char| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
        {
            return Err(self.source.error_at(
                raw.path.span(),
                &format!("{key}.path"),
                format!(
                    "{} is not a route path (it starts with '/' and holds no spaces, '?' or '#')",
                    self.source.written(raw.path.span())
                ),
            ));
        }
        if let Some((name, span)) = raw.limits.server_wide_key() {
            let why = if name == "max_connections" {
                ""
            } else {
                " (it runs before a request names its route)"
            };
            return Err(self.source.error_at(
                span,
                &format!("{key}.limits.{name}"),
                format!("{name} applies to the whole server{why}; set it in [limits]"),
            ));
        }
        let kind = self.route_kind(&key, raw)?;
        let path = match kind.topic() {
            Some(TopicSource::Path) => path
                .strip_suffix(TOPIC_PLACEHOLDER)
                .unwrap_or(path)
                .to_owned(),
            _ => path.clone(),
        };
        if path.contains(['{', '}']) {
            return Err(self.source.error_at(
                raw.path.span(),
                &format!("{key}.path"),
                format!(
                    "{} holds a placeholder; only broadcast and publish paths may, and only a \
                     final /{{topic}}",
                    self.source.written(raw.path.span())
                ),
            ));
        }
        let mut limits = self.limits(global, &raw.limits, &format!("{key}.limits"))?;
        // A route that names its own request quota gets its own budget per client.
        limits.request_rate.own_budget =
            raw.limits.rate_limit_requests.is_some() || raw.limits.burst.is_some();
        let ws = self.ws_limits(global_ws, &raw.limits, &format!("{key}.limits"))?;
        Ok(Route {
            path,
            kind,
            limits,
            ws,
        })
    }

    fn route_kind(&self, key: &str, raw: &RawRoute) -> Result<RouteKind, ConfigError> {
        let kind = raw.kind.get_ref().as_str();
        check_route_kind(kind).map_err(|message| {
            self.source
                .error_at(raw.kind.span(), &format!("{key}.kind"), message)
        })?;
        self.refuse_foreign_options(key, kind, raw)?;
        match kind {
            "static_text" => self.static_text_kind(key, raw),
            "stats" | "metrics" => self.observe_kind(key, raw),
            "echo" => self.echo_kind(key, raw),
            "broadcast" => self.broadcast_kind(key, raw),
            "publish" => self.publish_kind(key, raw),
            "sink" => self.sink_kind(key, raw),
            "files" => self.files_kind(key, raw),
            "upload" => self.upload_kind(key, raw),
            _ => Ok(RouteKind::Health),
        }
    }

    /// An error for the first option of `raw` that its kind does not take.
    fn refuse_foreign_options(
        &self,
        key: &str,
        kind: &str,
        raw: &RawRoute,
    ) -> Result<(), ConfigError> {
        let options: [KindOption; 23] = [
            (
                "a body",
                at(&raw.body),
                &["static_text"],
                "static_text routes",
            ),
            (
                "a content_type",
                at(&raw.content_type),
                &["static_text"],
                "static_text routes",
            ),
            (
                "a response_prefix",
                at(&raw.response_prefix),
                &["echo"],
                "echo routes",
            ),
            (
                "subprotocols",
                at(&raw.subprotocols),
                &["echo", "broadcast", "sink"],
                "WebSocket routes",
            ),
            (
                "allowed_clients",
                at(&raw.allowed_clients),
                &["stats", "metrics", "publish"],
                "stats, metrics and publish routes",
            ),
            (
                "topic",
                at(&raw.topic),
                &["broadcast", "publish"],
                "broadcast and publish routes",
            ),
            (
                "echo_to_sender",
                at(&raw.echo_to_sender),
                &["broadcast"],
                "broadcast routes",
            ),
            ("token", at(&raw.token), &["publish"], "publish routes"),
            ("sink_file", at(&raw.sink_file), &["sink"], "sink routes"),
            (
                "sink_max_bytes",
                at(&raw.sink_max_bytes),
                &["sink"],
                "sink routes",
            ),
            ("sink_keep", at(&raw.sink_keep), &["sink"], "sink routes"),
            ("root", at(&raw.root), &["files"], "files routes"),
            ("index", at(&raw.index), &["files"], "files routes"),
            ("hidden", at(&raw.hidden), &["files"], "files routes"),
            (
                "attachment",
                at(&raw.attachment),
                &["files"],
                "files routes",
            ),
            (
                "max_ranges",
                at(&raw.max_ranges),
                &["files"],
                "files routes",
            ),
            (
                "chunk_size",
                at(&raw.chunk_size),
                &["files"],
                "files routes",
            ),
            ("send", at(&raw.send), &["files"], "files routes"),
            (
                "upload_dir",
                at(&raw.upload_dir),
                &["upload"],
                "upload routes",
            ),
            (
                "max_upload_size",
                at(&raw.max_upload_size),
                &["upload"],
                "upload routes",
            ),
            (
                "overwrite",
                at(&raw.overwrite),
                &["upload"],
                "upload routes",
            ),
            ("fsync", at(&raw.fsync), &["upload"], "upload routes"),
            (
                "max_uploads_per_client",
                at(&raw.max_uploads_per_client),
                &["upload"],
                "upload routes",
            ),
        ];
        for (option, span, kinds, owners) in options {
            if let Some(span) = span
                && !kinds.contains(&kind)
            {
                let name = option.rsplit(' ').next().unwrap_or(option);
                return Err(self.source.error_at(
                    span,
                    &format!("{key}.{name}"),
                    format!("only {owners} take {option}"),
                ));
            }
        }
        Ok(())
    }

    /// The `static_text` kind: its body and content type.
    fn static_text_kind(&self, key: &str, raw: &RawRoute) -> Result<RouteKind, ConfigError> {
        let Some(body) = &raw.body else {
            return Err(self.source.error_at(
                raw.kind.span(),
                key,
                "a static_text route needs a body (add body = \"...\")".to_owned(),
            ));
        };
        let content_type = match &raw.content_type {
            Some(value) => self.content_type(value, &format!("{key}.content_type"))?,
            None => DEFAULT_CONTENT_TYPE.to_owned(),
        };
        Ok(RouteKind::StaticText {
            body: body.get_ref().clone(),
            content_type,
        })
    }

    /// `base` with the values of `raw` applied, each checked; `key` names the table.
    fn limits(
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

    pub(super) fn int<T>(
        &self,
        value: &Spanned<Int>,
        key: &str,
        range: RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: TryFrom<i128> + PartialOrd + std::fmt::Display,
    {
        match T::try_from(value.get_ref().0) {
            Ok(v) if range.contains(&v) => Ok(v),
            _ => Err(self.source.error_at(
                value.span(),
                key,
                format!(
                    "{} is out of range ({}..={})",
                    self.source.written(value.span()),
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    /// A size within `range` (`why` explains a bound that is not a constant).
    pub(super) fn size(
        &self,
        value: &Spanned<Size>,
        key: &str,
        range: RangeInclusive<u64>,
        why: &str,
    ) -> Result<usize, ConfigError> {
        let bytes = value.get_ref().0;
        if range.contains(&bytes)
            && let Ok(bytes) = usize::try_from(bytes)
        {
            return Ok(bytes);
        }
        Err(self.source.error_at(
            value.span(),
            key,
            format!(
                "{} is out of range ({}..={}{why})",
                self.source.written(value.span()),
                format_size(*range.start()),
                format_size(*range.end())
            ),
        ))
    }

    /// A protection's timeout: more than zero, at most [`MAX_DURATION`].
    pub(super) fn timeout(
        &self,
        value: &Spanned<Seconds>,
        key: &str,
    ) -> Result<Duration, ConfigError> {
        if value.get_ref().0.is_zero() {
            return Err(self.source.error_at(
                value.span(),
                key,
                format!(
                    "{} would switch this protection off, which is not allowed (use a duration \
                     above 0, e.g. \"10s\")",
                    self.source.written(value.span())
                ),
            ));
        }
        self.duration(value, key, Duration::ZERO)
    }

    /// A duration from `min` to [`MAX_DURATION`].
    fn duration(
        &self,
        value: &Spanned<Seconds>,
        key: &str,
        min: Duration,
    ) -> Result<Duration, ConfigError> {
        let duration = value.get_ref().0;
        if (min..=MAX_DURATION).contains(&duration) {
            return Ok(duration);
        }
        Err(self.source.error_at(
            value.span(),
            key,
            format!(
                "{} is out of range ({}..={})",
                self.source.written(value.span()),
                format_duration(min),
                format_duration(MAX_DURATION)
            ),
        ))
    }

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

    fn io_driver(&self, value: &Spanned<String>) -> Result<IoDriver, ConfigError> {
        match value.get_ref().as_str() {
            "auto" => Ok(IoDriver::Auto),
            "uring" => Ok(IoDriver::Uring),
            "poll" => Ok(IoDriver::Poll),
            _ => Err(self.one_of(value, "io_driver", &["auto", "uring", "poll"])),
        }
    }

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

    pub(super) fn one_of(
        &self,
        value: &Spanned<String>,
        key: &str,
        expected: &[&str],
    ) -> ConfigError {
        self.source.error_at(
            value.span(),
            key,
            format!(
                "{} is not one of: {}",
                self.source.written(value.span()),
                expected.join(", ")
            ),
        )
    }

    /// A header value: visible ASCII and spaces only, so that it cannot split the response head.
    fn content_type(&self, value: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
        let text = value.get_ref();
        if !text.is_empty()
            && text
                .bytes()
                .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
        {
            return Ok(text.clone());
        }
        Err(self.source.error_at(
            value.span(),
            key,
            format!(
                "{} is not a valid header value (printable ASCII, e.g. \"text/plain; charset=utf-8\")",
                self.source.written(value.span())
            ),
        ))
    }
}

/// Sizes in the engine are `usize`; bounds compare as `u64` (lossless on 64-bit Linux).
fn to_u64(bytes: usize) -> u64 {
    u64::try_from(bytes).unwrap_or(u64::MAX)
}
