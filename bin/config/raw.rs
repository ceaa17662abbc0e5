//! The config file as written: serde structs that keep each value's span for error messages.
//!
//! Every table denies unknown keys. Values stay as loose as TOML allows here (a route's `kind`
//! is any string, numbers are unchecked); `resolve` checks them with the span at hand.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;

use super::units::{UnitError, duration_from_secs, parse_duration, parse_size};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `listen = "0.0.0.0:8080"`.
    pub listen: Option<Spanned<String>>,
    /// `workers = 0`.
    pub workers: Option<Spanned<Int>>,
    /// `backlog = 4096`.
    pub backlog: Option<Spanned<Int>>,
    /// `io_driver = "auto"`.
    pub io_driver: Option<Spanned<String>>,
    /// `io_uring_setup = "coop_taskrun"`.
    pub io_uring_setup: Option<Spanned<String>>,
    /// `drain_timeout = "10s"`.
    pub drain_timeout: Option<Spanned<Seconds>>,
    /// `allow_shared_port = false`.
    pub allow_shared_port: Option<bool>,
    /// `[limits]`: defaults for every route plus the server-wide keys.
    #[serde(default)]
    pub limits: RawLimits,
    /// `[[routes]]`, in file order; each spans its `[[routes]]` header.
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
}

/// One `[limits]` or `[routes.limits]` table; absent keys inherit.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Open connections; server-wide only.
    pub max_connections: Option<Spanned<Int>>,
    /// Bytes held for partial messages and bodies across all connections; server-wide only.
    pub max_buffered_bytes: Option<Spanned<Size>>,
    /// Request head timeout; server-wide only.
    pub header_timeout: Option<Spanned<Seconds>>,
    /// Request head size.
    pub max_header_bytes: Option<Spanned<Size>>,
    /// Header field count.
    pub max_headers: Option<Spanned<Int>>,
    /// Request-target length.
    pub max_uri_bytes: Option<Spanned<Size>>,
    /// Request body size.
    pub max_body_size: Option<Spanned<Size>>,
    /// Whole-body timeout.
    pub upload_timeout: Option<Spanned<Seconds>>,
    /// Minimum body rate in bytes per second.
    pub min_upload_rate: Option<Spanned<Size>>,
    /// Grace period before the minimum rate applies.
    pub min_upload_rate_after: Option<Spanned<Seconds>>,
    /// Idle keep-alive timeout; server-wide only.
    pub keepalive_timeout: Option<Spanned<Seconds>>,
    /// No-progress send timeout.
    pub send_timeout: Option<Spanned<Seconds>>,
    /// WebSocket message size (also the sum of the fragments).
    pub max_message_size: Option<Spanned<Size>>,
    /// WebSocket fragments per message.
    pub max_fragments: Option<Spanned<Int>>,
    /// WebSocket frames per second per connection.
    pub rate_limit: Option<Spanned<Int>>,
    /// WebSocket frames per minute per connection.
    pub messages_per_minute: Option<Spanned<Int>>,
    /// WebSocket payload bytes per minute per connection.
    pub bytes_per_minute: Option<Spanned<Size>>,
    /// `"close"` or `"drop"` when a WebSocket rate is exceeded.
    pub on_limit: Option<Spanned<String>>,
    /// Interval of the server's WebSocket pings.
    pub heartbeat_interval: Option<Spanned<Seconds>>,
    /// WebSocket idle / no-pong timeout (BustAPI's `timeout`, RateThrottle's `ws_idle_timeout`).
    #[serde(alias = "ws_idle_timeout")]
    pub timeout: Option<Spanned<Seconds>>,
    /// Origins allowed to open a WebSocket; empty allows any.
    pub allowed_origins: Option<Spanned<Vec<String>>>,
    /// Longest time one file response may take.
    pub download_timeout: Option<Spanned<Seconds>>,
    /// Download bytes per second per connection.
    pub rate_limit_bandwidth: Option<Spanned<Size>>,
    /// Download bytes per second per client, across its connections.
    pub client_bandwidth: Option<Spanned<Size>>,
    /// Download bytes per second for the whole route.
    pub global_bandwidth: Option<Spanned<Size>>,
    /// Bytes of a response sent before the bandwidth caps apply.
    pub rate_after: Option<Spanned<Size>>,
    /// Bytes queued for one WebSocket client (handler sends, broadcast frames).
    pub max_backpressure: Option<Spanned<Size>>,
    /// `"close"`, `"drop"` or `"keep_latest"` for a broadcast member whose queue is full.
    pub slow_consumer: Option<Spanned<String>>,
    /// Close code of `slow_consumer = "close"`: 1008 or 1013.
    pub slow_consumer_code: Option<Spanned<Int>>,
    /// Requests per client per minute on a route.
    pub rate_limit_requests: Option<Spanned<Int>>,
    /// Requests allowed at once.
    pub burst: Option<Spanned<Int>>,
    /// Whether allowed responses carry the rate headers too.
    pub rate_limit_headers: Option<Spanned<bool>>,
    /// `"enforce"` or `"shadow"`.
    pub mode: Option<Spanned<String>>,
    /// What names a client; server-wide only.
    pub client_id: Option<Spanned<String>>,
    /// CIDRs whose forwarding headers are believed; server-wide only.
    pub trusted_proxies: Option<Spanned<Vec<String>>>,
    /// `"x-forwarded-for"` or `"forwarded"`: the header trusted proxies set; server-wide only.
    pub forwarded_header: Option<Spanned<String>>,
    /// IPv6 grouping prefix; server-wide only.
    pub ipv6_prefix: Option<Spanned<Int>>,
    /// CIDRs no per-client rule applies to; server-wide only.
    pub exempt: Option<Spanned<Vec<String>>>,
    /// CIDRs served exclusively when set; server-wide only.
    pub allow: Option<Spanned<Vec<String>>>,
    /// CIDRs never served; server-wide only.
    pub deny: Option<Spanned<Vec<String>>>,
    /// `"403"` or `"close"`; server-wide only.
    pub deny_action: Option<Spanned<String>>,
    /// Clients tracked at once; server-wide only.
    pub max_tracked_clients: Option<Spanned<Int>>,
    /// Open connections per client; server-wide only (RateThrottle's
    /// `ws_max_connections_per_user`).
    #[serde(alias = "ws_max_connections_per_user")]
    pub max_concurrent_connections: Option<Spanned<Int>>,
    /// New connections per client per minute; server-wide only.
    pub connections_per_minute: Option<Spanned<Int>>,
    /// Violations that ban; server-wide only.
    pub ban_after_violations: Option<Spanned<Int>>,
    /// Window the violations are counted in; server-wide only.
    pub ban_window: Option<Spanned<Seconds>>,
    /// Length of a ban; server-wide only.
    pub ban_duration: Option<Spanned<Seconds>>,
    /// WebSocket frames per client per minute across its connections; server-wide only.
    pub client_messages_per_minute: Option<Spanned<Int>>,
    /// WebSocket bytes per client per minute across its connections; server-wide only.
    pub client_bytes_per_minute: Option<Spanned<Size>>,
}

/// Keys of `[limits]` that make no sense per route: the connection count, and the timeouts
/// that run before a request head has named its route.
pub const SERVER_WIDE_LIMITS: &[&str] = &[
    "max_connections",
    "max_buffered_bytes",
    "header_timeout",
    "keepalive_timeout",
    "client_id",
    "trusted_proxies",
    "forwarded_header",
    "ipv6_prefix",
    "exempt",
    "allow",
    "deny",
    "deny_action",
    "max_tracked_clients",
    "max_concurrent_connections",
    "connections_per_minute",
    "ban_after_violations",
    "ban_window",
    "ban_duration",
    "client_messages_per_minute",
    "client_bytes_per_minute",
    // The alias of max_concurrent_connections (reported under that name).
    "ws_max_connections_per_user",
];

impl RawLimits {
    /// The first server-wide key set in this table, with the span of its value.
    pub fn server_wide_key(&self) -> Option<(&'static str, Range<usize>)> {
        // In the order of SERVER_WIDE_LIMITS.
        let spans = [
            self.max_connections.as_ref().map(Spanned::span),
            self.max_buffered_bytes.as_ref().map(Spanned::span),
            self.header_timeout.as_ref().map(Spanned::span),
            self.keepalive_timeout.as_ref().map(Spanned::span),
            self.client_id.as_ref().map(Spanned::span),
            self.trusted_proxies.as_ref().map(Spanned::span),
            self.forwarded_header.as_ref().map(Spanned::span),
            self.ipv6_prefix.as_ref().map(Spanned::span),
            self.exempt.as_ref().map(Spanned::span),
            self.allow.as_ref().map(Spanned::span),
            self.deny.as_ref().map(Spanned::span),
            self.deny_action.as_ref().map(Spanned::span),
            self.max_tracked_clients.as_ref().map(Spanned::span),
            self.max_concurrent_connections.as_ref().map(Spanned::span),
            self.connections_per_minute.as_ref().map(Spanned::span),
            self.ban_after_violations.as_ref().map(Spanned::span),
            self.ban_window.as_ref().map(Spanned::span),
            self.ban_duration.as_ref().map(Spanned::span),
            self.client_messages_per_minute.as_ref().map(Spanned::span),
            self.client_bytes_per_minute.as_ref().map(Spanned::span),
        ];
        SERVER_WIDE_LIMITS
            .iter()
            .zip(spans)
            .find_map(|(name, span)| Some((*name, span?)))
    }
}

/// One `[[routes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Path prefix.
    pub path: Spanned<String>,
    /// Route kind name.
    pub kind: Spanned<String>,
    /// `static_text` body.
    pub body: Option<Spanned<String>>,
    /// `static_text` content type.
    pub content_type: Option<Spanned<String>>,
    /// `echo`: bytes put in front of every echoed message.
    pub response_prefix: Option<Spanned<String>>,
    /// WebSocket kinds: subprotocols offered, in order of preference.
    pub subprotocols: Option<Spanned<Vec<String>>>,
    /// `stats`, `metrics` and `publish`: CIDRs allowed to use them.
    pub allowed_clients: Option<Spanned<Vec<String>>>,
    /// `broadcast` and `publish`: the one topic of the route (instead of `{topic}` in the path).
    pub topic: Option<Spanned<String>>,
    /// `broadcast`: whether a member receives its own messages.
    pub echo_to_sender: Option<Spanned<bool>>,
    /// `publish`: the bearer token a request must carry.
    pub token: Option<Spanned<String>>,
    /// `sink`: the file messages are appended to as JSON lines.
    pub sink_file: Option<Spanned<String>>,
    /// `sink`: rotate the file past this size (0 = never).
    pub sink_max_bytes: Option<Spanned<Size>>,
    /// `sink`: rotated files kept.
    pub sink_keep: Option<Spanned<Int>>,
    /// `files`: the root directory.
    pub root: Option<Spanned<String>>,
    /// `files`: the file a directory request serves.
    pub index: Option<Spanned<String>>,
    /// `files`: whether names starting with `.` are served.
    pub hidden: Option<Spanned<bool>>,
    /// `files`: send every file as an attachment.
    pub attachment: Option<Spanned<bool>>,
    /// `files`: ranges honoured per request (0 or 1).
    pub max_ranges: Option<Spanned<Int>>,
    /// `files`: bytes read and sent at a time.
    pub chunk_size: Option<Spanned<Size>>,
    /// `files`: how bytes are sent: `"sendfile"`, `"copy"` or `"zerocopy"`.
    pub send: Option<Spanned<String>>,
    /// `upload`: the directory uploads are stored in.
    pub upload_dir: Option<Spanned<String>>,
    /// `upload`: largest upload.
    pub max_upload_size: Option<Spanned<Size>>,
    /// `upload`: replace an existing file.
    pub overwrite: Option<Spanned<bool>>,
    /// `upload`: fsync before answering.
    pub fsync: Option<Spanned<bool>>,
    /// `upload`: uploads one client may have in progress.
    pub max_uploads_per_client: Option<Spanned<Int>>,
    /// `proxy`: the upstreams (`"127.0.0.1:8000"`, `"unix:/run/app.sock"`).
    pub upstreams: Option<Spanned<Vec<String>>>,
    /// `proxy`: time to open an upstream connection.
    pub connect_timeout: Option<Spanned<Seconds>>,
    /// `proxy`: time from the request sent to the response head, and between reads.
    pub upstream_timeout: Option<Spanned<Seconds>>,
    /// `proxy`: `"least_conn"` or `"round_robin"`.
    pub balance: Option<Spanned<String>>,
    /// `proxy`: failures that mark an upstream down.
    pub max_fails: Option<Spanned<Int>>,
    /// `proxy`: the window of `max_fails`, and how long an upstream stays down.
    pub fail_timeout: Option<Spanned<Seconds>>,
    /// `proxy`: how long an idle upstream connection is kept.
    pub pool_idle_timeout: Option<Spanned<Seconds>>,
    /// `proxy`: idle connections kept per upstream and worker.
    pub pool_size: Option<Spanned<Int>>,
    /// `proxy`: removed from the path before it goes upstream.
    pub strip_prefix: Option<Spanned<String>>,
    /// `proxy`: the `Host` sent upstream.
    pub host: Option<Spanned<String>>,
    /// `proxy`: the path every upstream is asked for, to tell it is up.
    pub health_check: Option<Spanned<String>>,
    /// `proxy`: how often it is asked.
    pub health_interval: Option<Spanned<Seconds>>,
    /// Any route: the app endpoint asked who may (`"http://127.0.0.1:8000/auth"`).
    pub auth: Option<Spanned<String>>,
    /// Any route with `auth`: `"closed"` (503) or `"open"` when the endpoint fails.
    pub auth_failure: Option<Spanned<String>>,
    /// Any route with `auth`: how long an answer is kept per credential.
    pub auth_cache: Option<Spanned<Seconds>>,
    /// Any route with `auth`: how long the endpoint may take.
    pub auth_timeout: Option<Spanned<Seconds>>,
    /// `[routes.limits]` overrides.
    #[serde(default)]
    pub limits: RawLimits,
}

/// A whole number, kept wide so that range errors can quote any value the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int(pub i128);

/// A size in bytes: a bare integer or a unit string (`"64KiB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

/// A duration: bare seconds (`10`, `0.5`) or a unit string (`"500ms"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IntVisitor)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SizeVisitor)
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecondsVisitor)
    }
}

struct IntVisitor;

impl Visitor<'_> for IntVisitor {
    type Value = Int;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
        Ok(Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
        Ok(Int(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Int, E> {
        Ok(Int(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Int, E> {
        Ok(Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Int, E> {
        Err(E::custom(format_args!("{v:?} is not a whole number")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Int, E> {
        if v.trim().parse::<i128>().is_ok() {
            Err(E::custom(format_args!(
                "{v:?} is a string: write the number without quotes"
            )))
        } else {
            Err(E::custom(format_args!("{v:?} is not a whole number")))
        }
    }
}

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = Size;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a size in bytes or with a unit, e.g. 512, "64KiB", "1MiB""#)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
        self.visit_i128(v.into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
        Ok(Size(v))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Size, E> {
        match u64::try_from(v) {
            Ok(bytes) => Ok(Size(bytes)),
            Err(_) if v < 0 => Err(E::custom(format_args!(
                "{v} is not a size: sizes cannot be negative"
            ))),
            Err(_) => Err(E::custom(format_args!("{v} is too large for a size"))),
        }
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Size, E> {
        u64::try_from(v)
            .map(Size)
            .map_err(|_| E::custom(format_args!("{v} is too large for a size")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Size, E> {
        Err(E::custom(format_args!(
            r#"{v:?} is not a whole number of bytes (for a fraction use a unit, e.g. "1.5MiB")"#
        )))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
        parse_size(v).map(Size).map_err(|e| {
            E::custom(match e {
                UnitError::Malformed => format!(
                    r#"{v:?} is not a size (use bytes or a unit: B, KB, MB, GB, KiB, MiB, GiB; e.g. 512, "64KiB", "1.5MiB")"#
                ),
                UnitError::Fractional => format!("{v:?} is not a whole number of bytes"),
                UnitError::TooLarge => format!("{v:?} is too large for a size"),
            })
        })
    }
}

struct SecondsVisitor;

impl SecondsVisitor {
    fn error<E: de::Error>(written: &dyn fmt::Display, e: UnitError) -> E {
        E::custom(match e {
            UnitError::TooLarge => format!("{written} is too large for a duration"),
            UnitError::Malformed | UnitError::Fractional => {
                format!(r#"{written} is not a duration (use e.g. "500ms", "10s", "5m")"#)
            }
        })
    }
}

impl Visitor<'_> for SecondsVisitor {
    type Value = Seconds;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a duration in seconds or with a unit, e.g. 10, "500ms", "10s", "5m""#)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
        self.visit_i128(v.into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
        Ok(Seconds(Duration::from_secs(v)))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Seconds, E> {
        match u64::try_from(v) {
            Ok(secs) => self.visit_u64(secs),
            Err(_) if v < 0 => Err(E::custom(format_args!(
                "{v} is not a duration: durations cannot be negative"
            ))),
            Err(_) => Err(Self::error(&v, UnitError::TooLarge)),
        }
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Seconds, E> {
        match u64::try_from(v) {
            Ok(secs) => self.visit_u64(secs),
            Err(_) => Err(Self::error(&v, UnitError::TooLarge)),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
        if v < 0.0 {
            return Err(E::custom(format_args!(
                "{v:?} is not a duration: durations cannot be negative"
            )));
        }
        duration_from_secs(v)
            .map(Seconds)
            .map_err(|e| Self::error(&format_args!("{v:?}"), e))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
        parse_duration(v)
            .map(Seconds)
            .map_err(|e| Self::error(&format_args!("{v:?}"), e))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct One<T> {
        v: T,
    }

    fn value<T: for<'de> Deserialize<'de>>(toml_value: &str) -> Result<T, String> {
        toml::from_str::<One<T>>(&format!("v = {toml_value}"))
            .map(|one| one.v)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn ints() {
        assert_eq!(value::<Int>("42"), Ok(Int(42)));
        assert_eq!(value::<Int>("-3"), Ok(Int(-3)));
        assert_eq!(value::<Int>("0x10"), Ok(Int(16)));
        assert_eq!(
            value::<Int>(r#""4""#),
            Err(r#""4" is a string: write the number without quotes"#.into())
        );
        assert_eq!(value::<Int>("1.5"), Err("1.5 is not a whole number".into()));
        assert_eq!(value::<Int>("2.0"), Err("2.0 is not a whole number".into()));
        assert!(
            value::<Int>("true")
                .unwrap_err()
                .contains("expected a whole number")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(value::<Size>("1024"), Ok(Size(1024)));
        assert_eq!(value::<Size>(r#""16KiB""#), Ok(Size(16384)));
        assert_eq!(value::<Size>(r#""1.5 MB""#), Ok(Size(1_500_000)));
        assert_eq!(
            value::<Size>("-1"),
            Err("-1 is not a size: sizes cannot be negative".into())
        );
        assert!(
            value::<Size>("1.5")
                .unwrap_err()
                .contains("not a whole number of bytes")
        );
        assert!(
            value::<Size>(r#""16kb""#)
                .unwrap_err()
                .starts_with(r#""16kb" is not a size"#)
        );
        assert_eq!(
            value::<Size>(r#""0.5B""#),
            Err(r#""0.5B" is not a whole number of bytes"#.into())
        );
        assert_eq!(
            value::<Size>(r#""20000000000GiB""#),
            Err(r#""20000000000GiB" is too large for a size"#.into())
        );
    }

    #[test]
    fn durations() {
        assert_eq!(value::<Seconds>("10"), Ok(Seconds(Duration::from_secs(10))));
        assert_eq!(
            value::<Seconds>("0.5"),
            Ok(Seconds(Duration::from_millis(500)))
        );
        assert_eq!(
            value::<Seconds>(r#""500ms""#),
            Ok(Seconds(Duration::from_millis(500)))
        );
        assert_eq!(
            value::<Seconds>(r#""10 seconds""#),
            Err(r#""10 seconds" is not a duration (use e.g. "500ms", "10s", "5m")"#.into())
        );
        assert_eq!(
            value::<Seconds>("-2"),
            Err("-2 is not a duration: durations cannot be negative".into())
        );
        assert_eq!(
            value::<Seconds>("-0.5"),
            Err("-0.5 is not a duration: durations cannot be negative".into())
        );
        assert_eq!(
            value::<Seconds>("inf"),
            Err("inf is too large for a duration".into())
        );
        assert!(
            value::<Seconds>("nan")
                .unwrap_err()
                .contains("is not a duration")
        );
    }
}
