//! The config file as written: serde structs that keep each value's span for error messages.
//!
//! Every table denies unknown keys. Values stay as loose as TOML allows here (a route's `kind`
//! is any string, numbers are unchecked); `resolve` checks them with the span at hand.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

pub use super::values::{Int, Seconds, Size};

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
    /// `receive = "per_read"`.
    pub receive: Option<Spanned<String>>,
    /// `drain_timeout = "10s"`.
    pub drain_timeout: Option<Spanned<Seconds>>,
    /// `allow_shared_port = false`.
    pub allow_shared_port: Option<bool>,
    /// `access_log = "PATH" | "stdout"` (off when absent).
    pub access_log: Option<Spanned<String>>,
    /// `access_log_format = "combined" | "json"`.
    pub access_log_format: Option<Spanned<String>>,
    /// `[limits]`: defaults for every route plus the server-wide keys.
    #[serde(default)]
    pub limits: RawLimits,
    /// `[[routes]]`, in file order; each spans its `[[routes]]` header.
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
    /// `[cluster]`: topics and per-client limits shared through Redis.
    pub cluster: Option<Spanned<RawCluster>>,
    /// `[tls]`: https and wss.
    pub tls: Option<Spanned<RawTls>>,
}

/// The `[tls]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// `cert = "/etc/ringstream/cert.pem"`: the PEM chain, end-entity certificate first.
    pub cert: Option<Spanned<String>>,
    /// `key = "/etc/ringstream/key.pem"`: its PEM private key.
    pub key: Option<Spanned<String>>,
    /// `min_version = "1.2" | "1.3"`.
    pub min_version: Option<Spanned<String>>,
    /// `alpn = ["http/1.1"]`.
    pub alpn: Option<Spanned<Vec<Spanned<String>>>>,
    /// `[[tls.sni]]`: more certificates, each for the host name clients ask for.
    #[serde(default)]
    pub sni: Vec<Spanned<RawSni>>,
}

/// One `[[tls.sni]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSni {
    /// `name = "api.example.com"`.
    pub name: Option<Spanned<String>>,
    /// `cert = "..."`.
    pub cert: Option<Spanned<String>>,
    /// `key = "..."`.
    pub key: Option<Spanned<String>>,
}

/// The `[cluster]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// `redis = "redis://127.0.0.1:6379"`, or a list of servers to spread over.
    pub redis: Option<Spanned<RedisUrls>>,
    /// `node_id = "web-1"` (default: host name and pid).
    pub node_id: Option<Spanned<String>>,
    /// `on_redis_error = "local" | "open" | "closed"`.
    pub on_redis_error: Option<Spanned<String>>,
    /// `secret = "..."`: what named clients are hashed with (default: the `redis` URL).
    pub secret: Option<Spanned<String>>,
}

/// `redis`: one URL, or a list of them (each with its span).
#[derive(Debug)]
pub enum RedisUrls {
    /// `redis = "redis://h:6379"` (its span is the key's value's).
    One(String),
    /// `redis = ["redis://a:6379", "redis://b:6379"]`.
    Many(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for RedisUrls {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Urls;
        impl<'de> serde::de::Visitor<'de> for Urls {
            type Value = RedisUrls;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a Redis URL or a list of them")
            }
            fn visit_str<E: serde::de::Error>(self, url: &str) -> Result<RedisUrls, E> {
                Ok(RedisUrls::One(url.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RedisUrls, A::Error> {
                let mut urls = Vec::new();
                while let Some(url) = seq.next_element()? {
                    urls.push(url);
                }
                Ok(RedisUrls::Many(urls))
            }
        }
        deserializer.deserialize_any(Urls)
    }
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
    /// Offer permessage-deflate.
    pub permessage_deflate: Option<Spanned<bool>>,
    /// Keep compression contexts between messages.
    pub deflate_context_takeover: Option<Spanned<bool>>,
    /// The compression window, in bits.
    pub deflate_window_bits: Option<Spanned<Int>>,
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
    /// What the per-client rules do while Redis is away (`[cluster]`); server-wide only.
    pub on_redis_error: Option<Spanned<String>>,
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
    "on_redis_error",
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
            self.on_redis_error.as_ref().map(Spanned::span),
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
    /// `stats`, `metrics`, `dashboard` and `publish`: CIDRs allowed to use them.
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
    /// `files`: how bytes are sent: `"auto"`, `"sendfile"`, `"copy"` or `"zerocopy"`.
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
