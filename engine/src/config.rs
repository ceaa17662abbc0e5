//! The resolved server configuration the engine runs with: typed, validated, defaults applied.
//!
//! Parsing (TOML, command-line overrides, error messages with line numbers) belongs to the
//! `ringstream` binary; the engine only ever sees these checked values.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ringstream_limits::cidr::{Cidr, CidrSet};
use ringstream_limits::client::{ClientIdSource, ForwardedHeader};

use crate::routes::broadcast::member_queue::SlowConsumer;
use crate::routes::handler::WsHandler;
use crate::routes::sink::file::SinkFileConfig;

/// `backlog` when the configuration does not say.
pub const DEFAULT_BACKLOG: u32 = 4096;
/// `drain_timeout` when the configuration does not say.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything one `ringstream serve` process needs to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Address every worker binds with `SO_REUSEPORT`; port 0 picks one port shared by all workers.
    pub listen: SocketAddr,
    /// Worker threads, one per core; 0 means one per online CPU.
    pub workers: usize,
    /// `listen(2)` backlog of each worker's socket.
    pub backlog: u32,
    /// Which completion driver the workers run on.
    pub io_driver: IoDriver,
    /// io_uring set-up flags (ignored on the poll driver).
    pub io_uring_setup: RingSetup,
    /// How long a graceful drain waits for in-flight requests before closing them.
    pub drain_timeout: Duration,
    /// Start even if another process already serves the port through `SO_REUSEPORT`.
    pub allow_shared_port: bool,
    /// Server-wide connection limits.
    pub connection_limits: ConnectionLimits,
    /// Who clients are and the per-client rules (server-wide).
    pub clients: ClientLimits,
    /// The global `[limits]` table (defaults applied): every route starts from it, and it
    /// governs a connection until a request head has named its route (`header_timeout`,
    /// `keepalive_timeout` are therefore server-wide).
    pub limits: HttpLimits,
    /// Routes in configuration order; the longest matching prefix wins.
    pub routes: Vec<Route>,
}

impl ServerConfig {
    /// A server on `listen` with every default and no routes yet: how a program that
    /// registers its own WebSocket handlers starts (`examples/ws_chat.rs`).
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            workers: 0,
            backlog: DEFAULT_BACKLOG,
            io_driver: IoDriver::Auto,
            io_uring_setup: RingSetup::default(),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            allow_shared_port: false,
            connection_limits: ConnectionLimits::default(),
            clients: ClientLimits::default(),
            limits: HttpLimits::default(),
            routes: Vec::new(),
        }
    }

    /// Adds a route with the server's global limits (adjust `route.limits` / `route.ws` for
    /// per-route values).
    pub fn route(mut self, path: impl Into<String>, kind: RouteKind) -> Self {
        self.routes.push(Route {
            path: path.into(),
            kind,
            limits: self.limits.clone(),
            ws: WsLimits::default(),
        });
        self
    }
}

/// The I/O driver each worker runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDriver {
    /// io_uring where it can be set up, otherwise the poll driver with one log line.
    Auto,
    /// io_uring or fail to start.
    Uring,
    /// The readiness (epoll) driver.
    Poll,
}

/// io_uring ring set-up flags; they change the CPU cost of every operation (BENCHMARKS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RingSetup {
    /// No task-run flags: the kernel interrupts the worker to run completions.
    Default,
    /// `IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG`: completions run when the worker
    /// next enters the kernel, no inter-processor interrupts.
    #[default]
    CoopTaskrun,
    /// `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN`: completions run only when the
    /// worker waits for them.
    DeferTaskrun,
}

impl std::fmt::Display for RingSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Default => "default",
            Self::CoopTaskrun => "coop_taskrun",
            Self::DeferTaskrun => "defer_taskrun",
        })
    }
}

/// Limits that apply to the whole server rather than to one route.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionLimits {
    /// Open connections across all workers; past it new connections get 503 + `Retry-After`.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
        }
    }
}

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

/// One `[[routes]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Path prefix, matched on segment boundaries (`/health` matches `/health` and `/health/x`,
    /// not `/healthz`); a prefix ending in `/` matches everything below it.
    pub path: String,
    /// What the route serves.
    pub kind: RouteKind,
    /// The global `[limits]` with this route's overrides applied.
    pub limits: HttpLimits,
    /// The WebSocket protections, resolved the same way (used by WebSocket kinds only).
    pub ws: WsLimits,
}

/// What a route serves.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteKind {
    /// 200 `ok`, for load balancers and probes.
    Health,
    /// A fixed body with a fixed content type.
    StaticText {
        /// The response body.
        body: String,
        /// The `Content-Type` header value.
        content_type: String,
    },
    /// WebSocket echo: every message comes back to its sender, unmasked in place.
    Echo {
        /// Bytes put in front of every echoed message (BustAPI's `response_prefix`).
        response_prefix: Vec<u8>,
        /// Subprotocols offered to clients, in order of preference; empty offers none.
        subprotocols: Vec<String>,
    },
    /// WebSocket served by a handler registered in code: every protection of the route applies
    /// before the handler sees a message (see [`crate::routes::handler`]).
    Handler {
        /// Runs once per connection, on the worker that accepted it.
        handler: WsHandler,
        /// Subprotocols offered to clients, in order of preference; empty offers none.
        subprotocols: Vec<String>,
    },
    /// WebSocket pub/sub: each connection joins a topic, and every message a member sends is
    /// delivered to every member of the topic, on every worker (see [`crate::routes::broadcast`]).
    Broadcast {
        /// Where the topic's name comes from.
        topic: TopicSource,
        /// Whether a member also receives its own messages.
        echo_to_sender: bool,
        /// Subprotocols offered to clients, in order of preference; empty offers none.
        subprotocols: Vec<String>,
    },
    /// `POST` a message to a topic's members over HTTP (notifications out); answers with the
    /// number of members it reached.
    Publish {
        /// Where the topic's name comes from.
        topic: TopicSource,
        /// When set, a request must carry `Authorization: Bearer <token>` (401 otherwise).
        token: Option<String>,
        /// Addresses allowed to publish (403 for others).
        allowed_clients: CidrSet,
    },
    /// WebSocket telemetry in: messages are received under every protection, counted, never
    /// answered, and appended as JSON lines to a file when one is configured.
    Sink {
        /// The file messages are appended to (none: they are only counted).
        file: Option<SinkFileConfig>,
        /// Subprotocols offered to clients, in order of preference; empty offers none.
        subprotocols: Vec<String>,
    },
    /// Static files below a root directory: `GET` and `HEAD`, ranges, conditionals, and the
    /// bandwidth caps of the route's limits (see [`crate::routes::files`]).
    Files(Box<FilesConfig>),
    /// Uploads: `PUT` or `POST /upload/NAME` streams the body to a temporary file in the
    /// directory, renamed to NAME only once complete (see [`crate::routes::upload`]).
    Upload(Box<UploadConfig>),
    /// `/stats`: the server's counters and configured limits as JSON.
    Stats {
        /// Addresses allowed to read it (403 for others).
        allowed_clients: CidrSet,
    },
    /// `/metrics`: the same counters in the Prometheus text format.
    Metrics {
        /// Addresses allowed to read it (403 for others).
        allowed_clients: CidrSet,
    },
}

impl RouteKind {
    /// A WebSocket route served by `handler`, offering no subprotocol.
    pub fn handler(handler: WsHandler) -> Self {
        Self::Handler {
            handler,
            subprotocols: Vec::new(),
        }
    }

    /// The kind's name in the configuration file.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::StaticText { .. } => "static_text",
            Self::Echo { .. } => "echo",
            Self::Handler { .. } => "handler",
            Self::Broadcast { .. } => "broadcast",
            Self::Publish { .. } => "publish",
            Self::Sink { .. } => "sink",
            Self::Files(_) => "files",
            Self::Upload(_) => "upload",
            Self::Stats { .. } => "stats",
            Self::Metrics { .. } => "metrics",
        }
    }

    /// Whether the route speaks WebSocket after an HTTP upgrade.
    pub fn is_websocket(&self) -> bool {
        matches!(
            self,
            Self::Echo { .. } | Self::Handler { .. } | Self::Broadcast { .. } | Self::Sink { .. }
        )
    }

    /// Where a broadcast or publish route takes its topic from (`None` for other kinds).
    pub fn topic(&self) -> Option<&TopicSource> {
        match self {
            Self::Broadcast { topic, .. } | Self::Publish { topic, .. } => Some(topic),
            _ => None,
        }
    }

    /// The subprotocols a WebSocket route offers (none for other kinds).
    pub fn subprotocols(&self) -> &[String] {
        match self {
            Self::Echo { subprotocols, .. }
            | Self::Handler { subprotocols, .. }
            | Self::Broadcast { subprotocols, .. }
            | Self::Sink { subprotocols, .. } => subprotocols,
            Self::Health
            | Self::StaticText { .. }
            | Self::Publish { .. }
            | Self::Files(_)
            | Self::Upload(_)
            | Self::Stats { .. }
            | Self::Metrics { .. } => &[],
        }
    }
}

/// A `files` route: where the files are and how they are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesConfig {
    /// The root directory; nothing outside it is ever served.
    pub root: PathBuf,
    /// When the root does not exist, serve nothing (404) after one warning instead of refusing
    /// to start (the embedded default's `./public`).
    pub root_optional: bool,
    /// The file a directory request serves (`index.html`); without it directories are 404.
    pub index: Option<String>,
    /// Whether names starting with `.` are served.
    pub allow_hidden: bool,
    /// Whether every file is sent with `Content-Disposition: attachment`.
    pub attachment: bool,
    /// Most ranges one request may ask for; past it the whole file is sent. Only 1 is
    /// supported (no `multipart/byteranges`).
    pub max_ranges: usize,
    /// Bytes read from the file and sent at a time (per connection, the most a download keeps
    /// in memory).
    pub chunk_size: usize,
    /// How the file's bytes reach the socket (BENCHMARKS.md compares them).
    pub send: SendPath,
}

/// How a files route sends a file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendPath {
    /// `sendfile(2)` from the page cache: no copy through a buffer.
    #[default]
    Sendfile,
    /// An io_uring read into the connection's buffer, then a send that copies it.
    Copy,
    /// An io_uring read into the buffer, then `IORING_OP_SEND_ZC` (no copy on the send).
    Zerocopy,
}

impl FilesConfig {
    /// `root` with every default: no index, hidden names refused, no attachment, one range,
    /// 64 KiB pieces.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            root_optional: false,
            index: None,
            allow_hidden: false,
            attachment: false,
            max_ranges: 1,
            chunk_size: 64 * 1024,
            send: SendPath::Sendfile,
        }
    }
}

/// An `upload` route: where uploads go and how they are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadConfig {
    /// The directory uploads are stored in (it must exist).
    pub dir: PathBuf,
    /// Largest upload in bytes: 413 before reading when `Content-Length` says more, and
    /// mid-stream for a chunked body.
    pub max_upload_size: u64,
    /// Replace an existing file of the same name (409 otherwise).
    pub overwrite: bool,
    /// `fsync` the file and the directory before answering 201.
    pub fsync: bool,
    /// Uploads one client may have in progress at once (429 past it).
    pub max_uploads_per_client: u32,
}

impl UploadConfig {
    /// `dir` with every default: 1 GiB, no overwrite, no fsync, 4 at once per client.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_upload_size: 1024 * 1024 * 1024,
            overwrite: false,
            fsync: false,
            max_uploads_per_client: 4,
        }
    }
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

/// Where a broadcast or publish route's topic name comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicSource {
    /// The path segment after the route's prefix (`path = "/ws/broadcast/{topic}"` in the
    /// file, stored as the prefix `/ws/broadcast/`).
    Path,
    /// One topic for the whole route.
    Fixed(String),
}

impl TopicSource {
    /// The topic a request for `path` on a route with prefix `prefix` names, if valid.
    pub fn resolve<'a>(&'a self, prefix: &str, path: &'a str) -> Option<&'a str> {
        let name = match self {
            Self::Fixed(name) => name.as_str(),
            Self::Path => path.strip_prefix(prefix)?,
        };
        crate::routes::broadcast::valid_topic(name).then_some(name)
    }
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
