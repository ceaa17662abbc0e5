//! The protection settings a route or a client is held to: HTTP limits, WebSocket limits,
//! per-client rules, request rates, bandwidth caps, and the ceilings no setting may exceed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ringstream_limits::cidr::{Cidr, CidrSet};
use ringstream_limits::identity::{ClientIdSource, ForwardedHeader};

use crate::routes::broadcast::member_queue::SlowConsumer;

/// Whether a rule refuses what it catches, or only reports it (nginx's dry run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LimitMode {
    /// Refuse, log and count.
    #[default]
    Enforce,
    /// Log and count what would be refused, and let it through.
    Shadow,
}

/// What a client on the deny list (or off the allow list) gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DenyAction {
    /// 403, then close.
    #[default]
    Forbidden,
    /// Close before reading anything.
    Close,
}

/// Who a client is and the rules kept per client across every worker (PROTECTIONS.md,
/// "Connections", and the per-client WebSocket rates). All server-wide.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientLimits {
    /// What names a client: its address, a header or a query parameter.
    pub client_id: ClientIdSource,
    /// Peers whose forwarding header is believed.
    pub trusted_proxies: CidrSet,
    /// The one header those peers set, naming the client (`X-Forwarded-For` by default); the
    /// other one is ignored.
    pub forwarded_header: ForwardedHeader,
    /// IPv6 clients are grouped by this many leading bits.
    pub ipv6_prefix: u8,
    /// Clients no per-client rule applies to (global limits still do).
    pub exempt: CidrSet,
    /// When not empty, only these addresses are served.
    pub allow: CidrSet,
    /// Addresses never served.
    pub deny: CidrSet,
    /// What a denied client gets.
    pub deny_action: DenyAction,
    /// Clients tracked at once (memory bound); past it the least recently seen are forgotten.
    pub max_tracked_clients: usize,
    /// Open connections per client across all workers (0 = no cap): 429 past it.
    pub max_concurrent_connections: u32,
    /// New connections per client per minute (0 = off): 429 past it.
    pub connections_per_minute: u32,
    /// Violations within `ban_window` that ban a client (0 = never).
    pub ban_after_violations: u32,
    /// The window violations are counted in.
    pub ban_window: Duration,
    /// How long a ban lasts: 403 until it ends.
    pub ban_duration: Duration,
    /// WebSocket frames per minute per client, across its connections (0 = off).
    pub client_messages_per_minute: u64,
    /// WebSocket payload bytes per minute per client, across its connections (0 = off).
    pub client_bytes_per_minute: u64,
    /// Enforce the connection rules, or only report them.
    pub mode: LimitMode,
    /// What the per-client rules do while Redis is away (`None`: `[cluster]`'s policy).
    pub on_redis_error: Option<super::RedisErrorPolicy>,
}

/// `exempt` when the configuration does not say: loopback (see PROTECTIONS.md).
pub fn loopback() -> CidrSet {
    let ranges = [
        Cidr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
        Cidr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
    ];
    CidrSet::new(ranges.into_iter().flatten().collect())
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            client_id: ClientIdSource::Ip,
            trusted_proxies: CidrSet::default(),
            forwarded_header: ForwardedHeader::XForwardedFor,
            ipv6_prefix: 64,
            exempt: loopback(),
            allow: CidrSet::default(),
            deny: CidrSet::default(),
            deny_action: DenyAction::Forbidden,
            max_tracked_clients: 1_000_000,
            max_concurrent_connections: 64,
            connections_per_minute: 0,
            ban_after_violations: 0,
            ban_window: Duration::from_secs(60),
            ban_duration: Duration::from_secs(600),
            client_messages_per_minute: 0,
            client_bytes_per_minute: 0,
            mode: LimitMode::Enforce,
            on_redis_error: None,
        }
    }
}

/// Requests per client per minute on a route (`rate_limit_requests` + `burst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestRate {
    /// Requests per minute (0 = off).
    pub per_minute: u32,
    /// Requests allowed at once beyond the steady rate.
    pub burst: u32,
    /// Whether allowed responses carry `RateLimit` / `RateLimit-Policy` too (429s always do).
    pub headers: bool,
    /// `true` when the route set its own quota: it then has its own budget per client;
    /// otherwise it shares the server-wide one with every route that inherits it.
    pub own_budget: bool,
}

/// Download bandwidth caps in bytes per second (0 = off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bandwidth {
    /// Per connection (`rate_limit_bandwidth`).
    pub per_connection: u64,
    /// One budget for all of a client's connections, on every core (`client_bandwidth`).
    pub per_client: u64,
    /// One budget for the whole route (`global_bandwidth`).
    pub global: u64,
    /// Bytes of each response sent at full speed before the caps apply (`rate_after`).
    pub rate_after: u64,
}

/// Per-route HTTP protections (PROTECTIONS.md, "HTTP").
#[derive(Debug, Clone, PartialEq)]
pub struct HttpLimits {
    /// Time allowed to receive a whole request head (slowloris): 408, then close.
    pub header_timeout: Duration,
    /// Largest request head in bytes: 431, close.
    pub max_header_bytes: usize,
    /// Most header fields in one request: 431, close.
    pub max_headers: usize,
    /// Longest request-target in bytes: 414, close.
    pub max_uri_bytes: usize,
    /// Largest request body in bytes: 413 before the body is read, close.
    pub max_body_size: u64,
    /// Time allowed to receive a whole request body: 408, close.
    pub upload_timeout: Duration,
    /// Slowest acceptable body rate in bytes per second once `min_upload_rate_after` has passed
    /// (0 = no minimum): 408, close.
    pub min_upload_rate: u64,
    /// Grace period before `min_upload_rate` is enforced.
    pub min_upload_rate_after: Duration,
    /// How long an idle keep-alive connection is kept open.
    pub keepalive_timeout: Duration,
    /// Longest time a response write may make no progress (slow reader): close.
    pub send_timeout: Duration,
    /// Requests per client on this route: 429 past it.
    pub request_rate: RequestRate,
    /// Longest time one file response may take as a whole: the connection is closed.
    pub download_timeout: Duration,
    /// Download bandwidth caps of a files route.
    pub bandwidth: Bandwidth,
    /// Whether this route's rate rules (requests, WebSocket frames and bytes) refuse or only
    /// report.
    pub mode: LimitMode,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            max_uri_bytes: 8 * 1024,
            max_body_size: 1024 * 1024,
            upload_timeout: Duration::from_secs(300),
            min_upload_rate: 16 * 1024,
            min_upload_rate_after: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
            request_rate: RequestRate::default(),
            download_timeout: Duration::from_secs(3600),
            bandwidth: Bandwidth::default(),
            mode: LimitMode::Enforce,
        }
    }
}

/// What a connection gets when it exceeds a message or byte rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnLimit {
    /// Close 1008 with a reason naming the limit.
    #[default]
    Close,
    /// Drop the message, count it, and keep the connection.
    Drop,
}

/// Per-route WebSocket protections (PROTECTIONS.md, "WebSocket").
#[derive(Debug, Clone, PartialEq)]
pub struct WsLimits {
    /// Largest message (also the sum of its fragments): close 1009 as soon as a header announces
    /// more, before the payload is buffered.
    pub max_message_size: u64,
    /// Most fragments in one message: close 1009.
    pub max_fragments: usize,
    /// Frames per second per connection, control frames included (0 = off).
    pub rate_limit: u32,
    /// Frames per minute per connection (0 = off).
    pub messages_per_minute: u32,
    /// Payload bytes per minute per connection (0 = off).
    pub bytes_per_minute: u64,
    /// What exceeding `rate_limit`, `messages_per_minute` or `bytes_per_minute` does.
    pub on_limit: OnLimit,
    /// Interval of the server's pings.
    pub heartbeat_interval: Duration,
    /// A connection that sends nothing (not even a pong) for this long is closed with 1000
    /// "idle timeout".
    pub timeout: Duration,
    /// `Origin` values allowed to upgrade (exact match, case-insensitive); empty allows any.
    pub allowed_origins: Vec<String>,
    /// Bytes a handler may queue for one client before `send` waits for the client to read;
    /// on a broadcast route, the bytes a member's queue holds before `slow_consumer` acts.
    pub max_backpressure: usize,
    /// What a broadcast member whose queue is full gets.
    pub slow_consumer: SlowConsumer,
    /// The close code of `slow_consumer = "close"`: 1008 (policy) or 1013 (try again later).
    pub slow_consumer_code: u16,
    /// Offer permessage-deflate (RFC 7692) to clients that ask for it.
    pub permessage_deflate: bool,
    /// Keep each side's compression context between messages (better ratios, a window of
    /// memory per connection); `false` asks both sides to start each message afresh.
    pub deflate_context_takeover: bool,
    /// The largest compression window either side may use, 2^bits bytes (9 to 15).
    pub deflate_window_bits: u8,
}

/// zlib's level for every message the server compresses: 1, the cheapest, which takes most of
/// the gain on the text and JSON messages WebSockets carry.
pub const DEFLATE_LEVEL: u32 = 1;

impl WsLimits {
    /// The permessage-deflate settings to negotiate with, when the route offers it.
    pub fn deflate(&self) -> Option<ringstream_protocol::ws::deflate::DeflateConfig> {
        self.permessage_deflate
            .then_some(ringstream_protocol::ws::deflate::DeflateConfig {
                server_no_context_takeover: !self.deflate_context_takeover,
                client_no_context_takeover: !self.deflate_context_takeover,
                server_max_window_bits: self.deflate_window_bits,
                client_max_window_bits: self.deflate_window_bits,
            })
    }
}

impl Default for WsLimits {
    fn default() -> Self {
        Self {
            max_message_size: 64 * 1024,
            max_fragments: 128,
            rate_limit: 0,
            messages_per_minute: 0,
            bytes_per_minute: 0,
            on_limit: OnLimit::Close,
            heartbeat_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            allowed_origins: Vec::new(),
            max_backpressure: 1024 * 1024,
            slow_consumer: SlowConsumer::Close,
            slow_consumer_code: 1008,
            permessage_deflate: false,
            // Kept contexts cost about 340 KB per connection (BENCHMARKS.md, "permessage-deflate").
            deflate_context_takeover: false,
            deflate_window_bits: 15,
        }
    }
}

/// Hard ceilings the configuration loader enforces so that no setting can defeat a protection.
pub mod bounds {
    /// `max_headers` is at most this (the parser keeps header slots on the stack).
    pub const MAX_HEADERS_CEILING: usize = 256;
    /// `max_header_bytes` is at most this.
    pub const MAX_HEADER_BYTES_CEILING: usize = 1024 * 1024;
    /// `max_uri_bytes` is at most this, and never more than `max_header_bytes`.
    pub const MAX_URI_BYTES_CEILING: usize = 1024 * 1024;
    /// `max_message_size` is at most this: a message is buffered whole before it is echoed.
    pub const MAX_MESSAGE_SIZE_CEILING: u64 = 64 * 1024 * 1024;
}
